"""The bundled server: ``pgbundle pooler`` with no upstream runs ``pgbundle server`` itself.

:class:`EmbeddedServer` initialises the data directory on first use (initdb's
progress goes to the terminal), starts the server as a child process on a
private port on 127.0.0.1, waits until it accepts connections, and becomes the
pooler's ``*`` database.  If the server dies, it is started again (and the log
says so); when the pooler stops, the server gets a fast shutdown (SIGINT, which
writes a shutdown checkpoint) and the pooler waits for it.

Resources: one child process, owned by the task running :meth:`run`; its
stdout/stderr go to ``<data dir>/pgbundle-server.log``.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

import trio

from pgbundle.shared.netio import ConnectionLost, MessageConn, open_connection
from pgbundle.shared.protocol import PROTOCOL_3_0, RemoteProtocolError, decode_backend_as, messages as m

from .config import DatabaseConfig

log = logging.getLogger("pgbundle.pooler")

READY_TIMEOUT = 60.0  # seconds to wait for the server to accept connections
STOP_TIMEOUT = 60.0  # seconds a fast shutdown may take before SIGKILL


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _initialised(data_dir: str) -> bool:
    return os.path.exists(os.path.join(data_dir, "PG_VERSION"))


class EmbeddedServer:
    def __init__(self, data_dir: str, port: int | None = None, max_connections: int | None = None) -> None:
        self.data_dir = os.path.abspath(data_dir)
        self.port = port or _free_port()
        self.max_connections = max_connections
        self.proc: trio.Process | None = None
        self.restarts = 0
        self.on_restart: Callable[[], None] | None = None  # called once a restarted server accepts logins
        self._lifeline: tuple[int, int] | None = None  # (the server's end, the pooler's end) of its pipe

    def database(self) -> DatabaseConfig:
        return DatabaseConfig(host=["127.0.0.1"], port=self.port)

    def initialise(self) -> None:
        """Create the data directory if needed, showing initdb's progress (synchronous, before trio)."""
        if _initialised(self.data_dir):
            return
        print(f"pgbundle: initialising the bundled server's data directory {self.data_dir}", file=sys.stderr,
              flush=True)
        r = subprocess.run([sys.executable, "-m", "pgbundle.shared.cli", "initdb", "-D", self.data_dir])
        if r.returncode != 0:
            raise RuntimeError(f"initdb of {self.data_dir} failed (exit code {r.returncode})")

    def _command(self) -> list[str]:
        cmd = [sys.executable, "-m", "pgbundle.shared.cli", "server", "-D", self.data_dir, "--port", str(self.port),
               "--listen-addresses", "127.0.0.1"]
        if self.max_connections:
            cmd += ["--max-connections", str(self.max_connections)]
        return cmd

    async def _start(self) -> trio.Process:
        """Start the server process (it becomes ``self.proc``) and wait until it accepts logins."""
        logf = open(os.path.join(self.data_dir, "pgbundle-server.log"), "ab")
        # The server watches this pipe: when the pooler is gone (even by kill -9) its end closes
        # and the server shuts down fast.  The pooler keeps the write end for its whole life.
        if self._lifeline is None:
            self._lifeline = os.pipe()
        watch, _keep = self._lifeline
        try:
            proc = self.proc = await trio.lowlevel.open_process(
                self._command(), stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
                pass_fds=(watch,), env={**os.environ, "PGBUNDLE_PARENT_FD": str(watch)})
        finally:
            logf.close()
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the bundled server exited with code {proc.returncode} while starting; "
                                   f"see {self.data_dir}/pgbundle-server.log")
            if await self._accepts_logins():
                return proc
            if time.monotonic() > deadline:
                raise RuntimeError("the bundled server did not start accepting connections")
            await trio.sleep(0.05)

    async def _accepts_logins(self) -> bool:
        """Does a startup packet get past 'the database system is starting up' (57P03)?"""
        try:
            conn = await open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        mc = MessageConn(conn)
        try:
            with trio.move_on_after(5):
                await mc.send(m.StartupMessage(PROTOCOL_3_0, {"user": "postgres", "database": "postgres"}))
                t, payload = await mc.receive()
                if t == m.ErrorResponse.TYPE[0]:
                    err = decode_backend_as(m.ErrorResponse, t, payload)
                    return err.sqlstate not in ("57P03",)  # any other answer: it is up (and says why not)
                await mc.send(m.Terminate())
                return True
            return False
        except (OSError, EOFError, ConnectionLost, RemoteProtocolError):
            return False
        finally:
            conn.close()

    async def run(self, task_status: trio.TaskStatus[EmbeddedServer] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the server, report readiness, restart it if it dies; stop it when cancelled."""
        try:
            proc = await self._start()
            log.info("bundled server running on 127.0.0.1:%d (data directory %s, pid %d)", self.port,
                     self.data_dir, proc.pid)
            task_status.started(self)
            while True:
                running = self.proc  # the one _start began last, even if it then failed to come up
                assert running is not None
                code = await running.wait()
                self.restarts += 1
                log.warning("bundled server exited with code %s; restarting it (restart %d)", code, self.restarts)
                await trio.sleep(min(5.0, 0.2 * self.restarts))
                try:
                    proc = await self._start()
                    log.info("bundled server restarted on 127.0.0.1:%d (pid %d)", self.port, proc.pid)
                    if self.on_restart is not None:
                        self.on_restart()
                except RuntimeError as exc:
                    log.error("%s", exc)
        finally:
            with trio.CancelScope(shield=True):
                await self.stop()

    async def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        try:
            proc.send_signal(signal.SIGINT)  # fast shutdown, with a shutdown checkpoint
        except ProcessLookupError:
            return
        with trio.move_on_after(STOP_TIMEOUT):
            await proc.wait()
            log.info("bundled server stopped")
            return
        log.error("the bundled server did not stop in %ds; killing it", STOP_TIMEOUT)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await proc.wait()
