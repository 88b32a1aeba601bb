"""Fixtures for the server's tests: ``pgbundle server`` run as a real process group on a
free port in a temp data directory, exactly as a user runs it.

``server_factory(**settings)`` starts one (settings become ``-c name=value``);
``server`` is a shared one for tests that do not stop or crash it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

FAST = {
    "shared_buffers": "4MB",
    "autovacuum_naptime": "1s",
    "checkpoint_timeout": "300s",
    "max_connections": "100",
}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgbServer:
    """One ``pgbundle server`` process group."""

    def __init__(self, datadir: Path | None = None, *, port: int | None = None, **settings: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="pgbundle-srv-"))
        self.datadir = datadir or (self.root / "data")
        self.port = port or _free_port()
        self.settings = {**FAST, **{k: str(v) for k, v in settings.items()}}
        self.proc: subprocess.Popen | None = None
        self.out_path = self.root / "stdout.log"

    # -- process
    def start(self, wait: bool = True, timeout: float = 60) -> None:
        args = [sys.executable, "-m", "pgbundle.shared.cli", "server", "-D", str(self.datadir), "--port",
                str(self.port), "--listen-addresses", "127.0.0.1"]
        for k, v in self.settings.items():
            args += ["-c", f"{k}={v}"]
        out = open(self.out_path, "ab")
        self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                     cwd=str(self.root))
        out.close()
        if wait:
            self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2) as c:
                    c.execute("select 1")
                return
            except psycopg.Error as e:
                last = e
            time.sleep(0.1)
        raise TimeoutError(f"server not ready: {last}\n{self.log()[-4000:]}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, mode: str = "fast", timeout: float = 60) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        sig = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode]
        os.kill(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise

    def kill9(self) -> None:
        """SIGKILL the postmaster and every child (the whole process group)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        # children are in the same group; wait until none is left
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.group_pids():
            time.sleep(0.05)

    def group_pids(self) -> list[int]:
        if self.proc is None:
            return []
        out = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[2]) == self.proc.pid and fields[0] != "Z":
                    out.append(int(d))
            except (OSError, IndexError, ValueError):
                continue
        return out

    def children(self) -> dict[int, str]:
        """pid -> process title of the postmaster's live children."""
        out = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) != self.pid or fields[0] == "Z":
                    continue
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    out[int(d)] = f.read().replace(b"\0", b" ").decode().strip()
            except (OSError, IndexError, ValueError):
                continue
        return out

    # -- clients
    def dsn(self, user: str = "postgres", dbname: str = "postgres", password: str | None = None) -> str:
        s = f"host=127.0.0.1 port={self.port} user={user} dbname={dbname}"
        return s + (f" password='{password}'" if password else "")

    def connect(self, **kw: object) -> psycopg.Connection:
        autocommit = kw.pop("autocommit", True)
        return psycopg.connect(self.dsn(**kw), autocommit=autocommit, connect_timeout=10)  # type: ignore[arg-type]

    def sql(self, query: str, dbname: str = "postgres") -> list[tuple]:
        with self.connect(dbname=dbname) as c:
            cur = c.execute(query)
            return cur.fetchall() if cur.description else []

    def psql(self, *args: str, dbname: str = "postgres", check: bool = True) -> subprocess.CompletedProcess:
        cmd = ["psql", "-X", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", dbname, *args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise RuntimeError(f"psql failed: {r.stderr}")
        return r

    def log(self) -> str:
        text = ""
        with contextlib.suppress(OSError):
            text += self.out_path.read_text(errors="replace")
        logdir = self.datadir / "log"
        if logdir.is_dir():
            for p in sorted(logdir.iterdir()):
                text += p.read_text(errors="replace")
        return text

    def close(self) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.stop("immediate", timeout=20)
        except Exception:
            self.kill9()
        finally:
            self.kill9()
            import shutil

            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def server_factory() -> Iterator:
    started: list[PgbServer] = []

    def make(start: bool = True, **settings: str) -> PgbServer:
        s = PgbServer(**settings)
        started.append(s)
        if start:
            s.start()
        return s

    yield make
    for s in started:
        s.close()


@pytest.fixture(scope="module")
def server() -> Iterator[PgbServer]:
    """A server shared by the tests of one module (do not stop it)."""
    s = PgbServer()
    s.start()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def module_server_factory() -> Iterator:
    """Like server_factory, but the servers live for the whole test module."""
    started: list[PgbServer] = []

    def make(start: bool = True, **settings: str) -> PgbServer:
        s = PgbServer(**settings)
        started.append(s)
        if start:
            s.start()
        return s

    yield make
    for s in started:
        s.close()
