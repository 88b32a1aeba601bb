"""The postmaster: the server's supervisor process (PostgreSQL's postmaster.c).

A plain synchronous loop — ``selectors`` on the listening sockets and a self-pipe fed by
``signal.set_wakeup_fd`` — that never runs trio and only touches shared memory to create
it (and to leave a reason code before a SIGQUIT).  It:

* writes ``postmaster.pid`` and refuses to start on a directory a live server owns;
* initialises an empty data directory (initdb), reads postgresql.conf (+ ``-c``);
* with ``ssl = on`` loads the TLS context once, before forking (FATAL when the certificate
  or key cannot be used), and again on SIGHUP (see :mod:`pgbundle.server.tcop.be_secure`);
  backends inherit it and do their handshakes themselves;
* starts the logging collector first and sends its own stderr and every child's there;
* creates the one anonymous shared mmap and its locks before forking anything;
* runs the startup process (recovery), then starts checkpointer, background writer,
  WAL writer, statistics collector and autovacuum launcher;
* forks one backend per accepted connection (a *dead-end* backend that only reports
  57P03 while starting, recovering or shutting down); backends enforce
  ``max_connections`` themselves (FATAL 53300) when they take a slot;
* reaps children: a child that dies abnormally (a backend or worker exiting with a
  status other than 0/1, or any auxiliary process dying unexpectedly) makes it send
  SIGQUIT to every other child (their clients get 57P02), wait for them (SIGKILL after
  5 s), drop and recreate shared memory, and run the startup process again (crash
  recovery); connections meanwhile get 57P03 'the database system is in recovery mode';
* shuts down on SIGTERM (smart: wait for clients), SIGINT (fast: terminate them) and
  SIGQUIT (immediate: no checkpoint, recovery at next start); smart and fast end with
  the checkpointer's shutdown checkpoint.

Children notice the postmaster's death through EOF on the postmaster-alive pipe.
"""

from __future__ import annotations

import errno
import gc
import importlib
import os
import selectors
import signal
import socket
import sys
import time
from typing import Any

import pgbundle.server.access.engine  # noqa: F401  (children use it: loaded before the first fork)
from pgbundle.server.access import control
from pgbundle.server.catalog import bootstrap
from pgbundle.server.parser import literals
from pgbundle.server.postmaster import (
    autovacuum,
    bgworker,
    bgwriter,
    checkpointer,
    ioworker,
    launch,
    pgarch,
    pgstat_collector,
    startup,
    syslogger,
    walsummarizer,
    walwriter,
)
from pgbundle.server.storage import bufmgr, clog, lwlock, pmsignal, shmem
from pgbundle.server.storage.pmsignal import PMSignalReason, PMState
from pgbundle.server.tcop import async_notify, be_secure, postgres
from pgbundle.server.utils import elog, pgstat
from pgbundle.server.utils.guc import SERVER_VERSION

SIGKILL_AFTER = 5.0


#: Set by ``pgbundle pooler`` for its bundled server: the fd of a pipe whose EOF means the pooler died.
PARENT_FD_ENV = "PGBUNDLE_PARENT_FD"

class Child:
    __slots__ = ("pid", "kind", "started", "dead_end", "extra")

    def __init__(self, pid: int, kind: str, dead_end: bool = False) -> None:
        self.pid = pid
        self.kind = kind
        self.started = time.time()
        self.dead_end = dead_end
        self.extra: str = ""


# Imported before forking: backends share the code copy-on-write and start without
# compiling anything (PYTHONDONTWRITEBYTECODE leaves no .pyc to load).
_BACKEND_MODULES = (
    "pgbundle.server.tcop.session",
    "pgbundle.server.tcop.session_report",
    "pgbundle.server.tcop.async_notify",
    "pgbundle.server.catalog.tempns",
    "pgbundle.server.commands.utility",
    "pgbundle.server.executor.modify",
    "pgbundle.server.executor.constraints",
    "pgbundle.server.utils.adt.ruleutils",
    "pgbundle.server.commands.copy",
    "pgbundle.server.access.vacuum",
)


class Postmaster:
    def __init__(self, datadir: str, settings: Any) -> None:
        self.datadir = os.path.abspath(datadir)
        self.settings = settings
        self.children: dict[int, Child] = {}
        self.state = PMState.INIT
        self.shutdown_mode: str | None = None
        self.crash_started = 0.0
        self.ctx = launch.ChildContext(self.datadir, settings)
        self.sel = selectors.DefaultSelector()
        self.pending_signals: list[int] = []
        self.syslogger_pid = 0
        self.av_workers = 0
        self.clean_start = True
        self.exit_code = 0
        self._bgw_restart_at: dict[str, float] = {}

    # ------------------------------------------------------------------ startup
    def run(self) -> int:
        if not bootstrap.is_initialized(self.datadir):
            bootstrap.initdb(self.datadir, echo=lambda *a, **k: print(*a, file=sys.stderr))
        self._load_config()
        self._create_pidfile()
        try:
            return self._run()
        finally:
            self._remove_pidfile()

    def _load_config(self) -> None:
        s = self.settings
        cmdline = s.cmdline
        s.load_file(os.path.join(self.datadir, "postgresql.conf"))
        s.load_file(os.path.join(self.datadir, "postgresql.auto.conf"), strict=False)
        s.apply_options(cmdline)
        s.set("data_directory", self.datadir, source="override")
        s.set_internal("wal_segment_size", control.read(self.datadir).wal_segment_size)

    def _pidfile(self) -> str:
        return os.path.join(self.datadir, "postmaster.pid")

    def _create_pidfile(self) -> None:
        path = self._pidfile()
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                try:
                    with open(path) as f:
                        other = int(f.readline().strip() or 0)
                except (OSError, ValueError):
                    other = 0
                if other and other != os.getpid() and _alive(other) and _is_server(other):
                    raise SystemExit(
                        f'FATAL:  lock file "postmaster.pid" already exists\n'
                        f'HINT:  Is another postmaster (PID {other}) running in data directory '
                        f'"{self.datadir}"?') from None
                os.unlink(path)
                continue
            self._pid_lines = [str(os.getpid()), self.datadir, str(int(time.time())),
                               str(self.settings.value("port")), str(self.settings.value("unix_socket_directories")),
                               str(self.settings.value("listen_addresses")), "0", "starting"]
            os.write(fd, ("\n".join(self._pid_lines) + "\n").encode())
            os.close(fd)
            return
        raise SystemExit(f'FATAL:  could not create lock file "{path}"')

    def _pid_status(self, status: str) -> None:
        self._pid_lines[-1] = status
        tmp = self._pidfile() + ".tmp"
        with open(tmp, "w") as f:
            f.write("\n".join(self._pid_lines) + "\n")
        os.rename(tmp, self._pidfile())

    def _remove_pidfile(self) -> None:
        try:
            with open(self._pidfile()) as f:
                if int(f.readline().strip() or 0) == os.getpid():
                    os.unlink(self._pidfile())
        except (OSError, ValueError):
            pass

    def _listen(self) -> None:
        port = int(self.settings.value("port"))
        addrs = [a.strip() for a in str(self.settings.value("listen_addresses")).split(",") if a.strip()]
        socks = []
        for a in addrs:
            host = {"*": "0.0.0.0", "localhost": "127.0.0.1"}.get(a, a)
            fam = socket.AF_INET6 if ":" in host else socket.AF_INET
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as exc:
                s.close()
                elog.log(f'could not bind IPv{6 if fam == socket.AF_INET6 else 4} address "{host}": '
                         f"{os.strerror(exc.errno or errno.EADDRINUSE)}", "LOG",
                         hint=f"Is another postmaster already running on port {port}? If not, wait a few "
                              f"seconds and retry.")
                continue
            s.listen(512)
            s.setblocking(False)
            elog.log(f'listening on IPv{6 if fam == socket.AF_INET6 else 4} address "{host}", port {port}')
            socks.append(s)
        sockdir = str(self.settings.value("unix_socket_directories"))
        for d in [x.strip() for x in sockdir.split(",") if x.strip()]:
            path = os.path.join(d, f".s.PGSQL.{port}")
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.bind(path)
            except OSError:
                s.close()
                continue
            s.listen(512)
            s.setblocking(False)
            elog.log(f'listening on Unix socket "{path}"')
            socks.append(s)
        if not socks:
            raise SystemExit("FATAL:  could not create any TCP/IP sockets")
        self.ctx.listen = socks
        for s in socks:
            self.sel.register(s, selectors.EVENT_READ, "listen")

    def _start_syslogger(self) -> None:
        if self.ctx.log_pipe_r < 0:
            r, w = os.pipe()
            self.ctx.log_pipe_r = r
            self.ctx.log_pipe_w = w
            self._log_pipe_w = w
        self.syslogger_pid = launch.fork_child(self.ctx, "pgbundle: logger", _syslogger_main,
                                               keep_fds=(self.ctx.log_pipe_r,))
        self.children[self.syslogger_pid] = Child(self.syslogger_pid, "syslogger")

    def _run(self) -> int:
        s = self.settings
        self._load_tls()
        self._listen()  # before the logger takes stderr: a bind failure must reach the terminal
        _remove_temp_files(self.datadir)
        if s.value("logging_collector"):
            logdir = str(s.value("log_directory"))
            print(f"{elog._stamp()} [{os.getpid()}] LOG:  redirecting log output to logging collector process",
                  file=sys.stderr)
            print(f"{elog._stamp()} [{os.getpid()}] HINT:  Future log output will appear in directory "
                  f'"{logdir}".', file=sys.stderr, flush=True)
            self._start_syslogger()
            os.dup2(self._log_pipe_w, 2)
            os.dup2(self._log_pipe_w, 1)
            sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
            sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
        if os.geteuid() == 0:
            elog.log("running the server as root: pgbundle does not refuse, but PostgreSQL would "
                     "(\"root\" execution of the PostgreSQL server is not permitted)", "WARNING")
        elog.log(f"starting PostgreSQL {SERVER_VERSION} compatible pgbundle server")
        # children exit when this pipe's write end (ours only) closes
        r, w = os.pipe()
        self.ctx.pm_alive_fd, self.ctx.pm_alive_w = r, w
        # signals: handled in the loop via the wakeup pipe
        wr, ww = os.pipe()
        os.set_blocking(wr, False)
        os.set_blocking(ww, False)
        self._wake_r = wr
        signal.set_wakeup_fd(ww)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR1,
                    signal.SIGUSR2):
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        self.sel.register(wr, selectors.EVENT_READ, "signal")
        parent_fd = os.environ.pop(PARENT_FD_ENV, "")
        if parent_fd.isdigit():
            # Started by a pooler (pgbundle pooler's bundled server): the pipe's other end is
            # held by the pooler, and its EOF -- the pooler is gone, even by kill -9 -- is a
            # fast shutdown, as PostgreSQL's children watch the postmaster.
            self.sel.register(int(parent_fd), selectors.EVENT_READ, "parent")
        self.ctx.stats_recv, self.ctx.stats_sock = pgstat.make_socketpair()
        # import what children use so fork shares it copy-on-write (the engine and the
        # protocol loop are imported with this module)
        try:
            for mod in _BACKEND_MODULES:
                importlib.import_module(mod)

            literals.extract("select 1")  # libpg_query's per-process setup, inherited by every child
        except ImportError as exc:
            elog.log(f"SQL layer not importable: {exc}", "WARNING")
        self._init_shmem()
        self._start_startup(recovery=False)
        self._pid_status("starting")
        return self._loop()

    def _load_tls(self) -> None:
        """secure_initialize at server start: a TLS setup that does not load is FATAL."""
        if not self.settings.value("ssl"):
            return
        try:
            self.ctx.tls = be_secure.load(self.settings, self.datadir, server_start=True)
        except be_secure.SslConfigError as exc:
            elog.log(exc.message, "FATAL", detail=exc.detail)
            elog.log("database system is shut down")
            raise SystemExit(1) from None

    def _init_shmem(self) -> None:
        async_notify.clear_all(self.datadir)  # AsyncShmemInit: no listener survives a (re)start
        shm = shmem.create(self.settings)
        bufmgr.init_descriptors(shm)
        clog.init(shm)
        shm.control.set("postmaster_pid", os.getpid())
        shm.control.set("start_time", time.time())
        shm.control.set("stats_reset", time.time())
        self.ctx.shm = shm
        self.ctx.locks = lwlock.Locks()

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.pending_signals.append(signum)

    # ------------------------------------------------------------------ children
    def _fork(self, kind: str, title: str, fn: Any, *args: Any, keep_fds: tuple[int, ...] = ()) -> int:
        pid = launch.fork_child(self.ctx, title, fn, *args, keep_fds=keep_fds)
        self.children[pid] = Child(pid, kind)
        return pid

    def _start_startup(self, recovery: bool) -> None:
        self.state = PMState.RECOVERY if recovery else PMState.STARTUP
        self._fork("startup", "pgbundle: startup", startup.main)

    def _start_aux(self) -> None:
        kinds = {c.kind for c in self.children.values()}
        if "checkpointer" not in kinds:
            self._fork("checkpointer", "pgbundle: checkpointer", checkpointer.main)
        if "bgwriter" not in kinds:
            self._fork("bgwriter", "pgbundle: background writer", bgwriter.main)
        if "walwriter" not in kinds:
            self._fork("walwriter", "pgbundle: walwriter", walwriter.main)
        if "statscollector" not in kinds and self.ctx.stats_recv is not None:
            self._fork("statscollector", "pgbundle: stats collector", pgstat_collector.main, self.clean_start,
                       keep_fds=(self.ctx.stats_recv.fileno(),))
        if "avlauncher" not in kinds and self.settings.value("autovacuum"):
            self._fork("avlauncher", "pgbundle: autovacuum launcher", autovacuum.launcher_main)
        self._start_optional()

    def _start_optional(self) -> None:
        """Processes that exist only when configured: archiver, WAL summarizer, io workers,
        user background workers."""
        s = self.settings
        kinds = [c.kind for c in self.children.values()]
        if s.value("archive_mode") != "off" and "archiver" not in kinds:
            self._fork("archiver", "pgbundle: archiver", pgarch.main)
        if s.value("summarize_wal") and "walsummarizer" not in kinds:
            self._fork("walsummarizer", "pgbundle: walsummarizer", walsummarizer.main)
        if s.value("io_method") == "worker":
            for i in range(int(s.value("io_workers")) - kinds.count("ioworker")):
                self._fork("ioworker", f"pgbundle: io worker {i}", ioworker.main, i)
        now = time.time()
        running = {c.extra for c in self.children.values() if c.kind == "bgworker"}
        for entry in bgworker.entries(s):
            if entry in running or self._bgw_restart_at.get(entry, 0) > now:
                continue
            if self._bgw_restart_at.get(entry) == -1:
                continue
            pid = self._fork("bgworker", f"pgbundle: background worker {entry}", bgworker.main, entry)
            self.children[pid].extra = entry

    def _kinds(self, *kinds: str) -> list[Child]:
        return [c for c in self.children.values() if c.kind in kinds]

    def _signal_children(self, sig: int, kinds: tuple[str, ...] | None = None, *, except_kinds: tuple[str, ...] = (
            "syslogger",)) -> None:
        for c in list(self.children.values()):
            if c.kind in except_kinds:
                continue
            if kinds is not None and c.kind not in kinds:
                continue
            try:
                os.kill(c.pid, sig)
            except ProcessLookupError:
                pass

    # ------------------------------------------------------------------ main loop
    def _loop(self) -> int:
        while True:
            timeout = 1.0
            try:
                events = self.sel.select(timeout)
            except InterruptedError:
                events = []
            for key, _ in events:
                if key.data == "signal":
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                elif key.data == "listen":
                    self._accept(key.fileobj)
                elif key.data == "parent":
                    self.sel.unregister(key.fileobj)
                    elog.log("the process that started this server is gone: fast shutdown")
                    self.pending_signals.append(signal.SIGINT)
            sigs, self.pending_signals = self.pending_signals, []
            for sig in sigs:
                self._handle_signal(sig)
            self._reap()
            if self.state == PMState.RUN and not self.shutdown_mode and self._bgw_restart_at:
                self._start_optional()
            done = self._advance()
            if done is not None:
                return done

    def _handle_signal(self, sig: int) -> None:
        if sig == signal.SIGTERM and self.shutdown_mode is None:
            elog.log("received smart shutdown request")
            self.shutdown_mode = "smart"
            self._begin_shutdown()
        elif sig == signal.SIGINT and self.shutdown_mode in (None, "smart"):
            elog.log("received fast shutdown request")
            self.shutdown_mode = "fast"
            self._begin_shutdown()
        elif sig == signal.SIGQUIT:
            elog.log("received immediate shutdown request")
            self.shutdown_mode = "immediate"
            if self.ctx.shm is not None:
                pmsignal.set_pm_state(self.ctx.shm.control, PMState.IMMEDIATE)
            self._signal_children(signal.SIGQUIT)
            self.state = PMState.IMMEDIATE
            self.crash_started = time.time()
        elif sig == signal.SIGHUP:
            elog.log("received SIGHUP, reloading configuration files")
            self.settings.reload_files(self.datadir, log=elog.log)
            self.ctx.tls = be_secure.reload(self.settings, self.datadir, self.ctx.tls)
            self._signal_children(signal.SIGHUP)
        elif sig == signal.SIGUSR1:
            self._pmsignal()

    def _pmsignal(self) -> None:
        shm, locks = self.ctx.shm, self.ctx.locks
        if shm is None or locks is None or self.state != PMState.RUN or self.shutdown_mode:
            return
        ctl = shm.control
        with locks.AutovacuumLock:
            flags = pmsignal.take_reasons(ctl)
            want = ctl.get("av_request_pending")
            dboid = ctl.get("av_request_db")
            ctl.set("av_request_pending", 0)
        if flags & PMSignalReason.START_AUTOVAC_WORKER and want:
            if len(self._kinds("avworker")) < int(self.settings.value("autovacuum_max_workers")):
                self._fork("avworker", "pgbundle: autovacuum worker", autovacuum.worker_main, dboid)

    def _begin_shutdown(self) -> None:
        if self.state in (PMState.STARTUP, PMState.RECOVERY):
            self._signal_children(signal.SIGQUIT, ("startup",))
        if self.shutdown_mode == "fast":
            self._signal_children(signal.SIGTERM, ("backend", "avworker", "bgworker"))
        if self.state in (PMState.RUN, PMState.STARTUP, PMState.RECOVERY):
            self.state = PMState.WAIT_BACKENDS
        self._pid_status("stopping")

    def _accept(self, ls: Any) -> None:
        for _ in range(64):
            try:
                conn, addr = ls.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                elog.log(f"could not accept new connection: {exc}")
                return
            conn.setblocking(True)
            dead_end = self._dead_end_reason()
            if dead_end is None and len(self._kinds("backend")) >= 2 * int(self.settings.value("max_connections")):
                dead_end = ("53300", "sorry, too many clients already")
            try:
                pid = launch.fork_child(self.ctx, "pgbundle: startup" if dead_end else "pgbundle: backend",
                                        postgres.backend_main, conn, addr, dead_end, keep_fds=())
            except OSError as exc:
                elog.log(f"could not fork new process for connection: {exc}")
                conn.close()
                continue
            self.children[pid] = Child(pid, "deadend" if dead_end else "backend", dead_end is not None)
            conn.close()

    def _dead_end_reason(self) -> tuple[str, str] | None:
        if self.shutdown_mode is not None or self.state in (PMState.WAIT_BACKENDS, PMState.SHUTDOWN, PMState.IMMEDIATE):
            return ("57P03", "the database system is shutting down")
        if self.state == PMState.STARTUP:
            return ("57P03", "the database system is starting up")
        if self.state in (PMState.RECOVERY, PMState.CRASH):
            return ("57P03", "the database system is in recovery mode")
        return None

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is None:
                continue
            self._child_exited(child, status)

    def _describe(self, child: Child, status: int) -> str:
        name = {"backend": "server process", "startup": "startup process", "checkpointer": "checkpointer process",
                "bgwriter": "background writer process", "walwriter": "WAL writer process",
                "statscollector": "statistics collector process", "avlauncher": "autovacuum launcher process",
                "avworker": "autovacuum worker process", "syslogger": "system logger process",
                "archiver": "archiver process", "walsummarizer": "WAL summarizer process",
                "ioworker": "io worker", "bgworker": f"background worker \"{child.extra}\""}.get(child.kind,
                                                                                                  child.kind)
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            try:
                sname = signal.Signals(sig).name
                desc = {"SIGKILL": "Killed", "SIGSEGV": "Segmentation fault", "SIGTERM": "Terminated",
                        "SIGABRT": "Aborted", "SIGQUIT": "Quit"}.get(sname, sname)
            except ValueError:
                desc = str(sig)
            return f"{name} (PID {child.pid}) was terminated by signal {sig}: {desc}"
        return f"{name} (PID {child.pid}) exited with exit code {os.WEXITSTATUS(status)}"

    def _child_exited(self, child: Child, status: int) -> None:
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
        if child.kind == "syslogger":
            if self.state not in (PMState.SHUTDOWN,) and not (self.shutdown_mode and not self.children):
                self._start_syslogger()
            return
        if child.kind == "deadend":
            return
        if child.kind == "startup":
            if self.state in (PMState.CRASH, PMState.IMMEDIATE) or self.shutdown_mode:
                return
            if code == 0:
                self.state = PMState.RUN
                if self.ctx.shm is not None:
                    pmsignal.set_pm_state(self.ctx.shm.control, PMState.RUN)
                self._start_aux()
                self._pid_status("ready")
                elog.log("database system is ready to accept connections")
                return
            elog.log(self._describe(child, status))
            elog.log("aborting startup due to startup process failure")
            self.exit_code = 1
            self.shutdown_mode = "abort"
            self.state = PMState.SHUTDOWN
            return
        normal = code in (0, 1) and child.kind in ("backend", "avworker", "bgworker")
        if child.kind == "bgworker" and normal and self.state == PMState.RUN and not self.shutdown_mode:
            delay = int(self.settings.value("bgworker_restart_time"))
            self._bgw_restart_at[child.extra] = -1 if code == 0 or delay < 0 else time.time() + delay
        if child.kind in ("checkpointer",) and code == 0 and self.state == PMState.SHUTDOWN:
            normal = True
        if child.kind in ("bgwriter", "walwriter", "statscollector", "avlauncher", "archiver", "walsummarizer",
                          "ioworker") and code == 0 and self.shutdown_mode:
            normal = True
        if self.state in (PMState.CRASH, PMState.IMMEDIATE):
            return
        if normal:
            return
        if self.shutdown_mode == "immediate":
            return
        # a crash
        elog.log(self._describe(child, status))
        if not self.settings.value("restart_after_crash"):
            elog.log("shutting down because restart_after_crash is off")
        elog.log("terminating any other active server processes")
        if self.ctx.shm is not None:
            pmsignal.set_pm_state(self.ctx.shm.control, PMState.CRASH)
        self._signal_children(signal.SIGQUIT)
        self.state = PMState.CRASH
        self.crash_started = time.time()
        self.clean_start = False
        if not self.settings.value("restart_after_crash"):
            self.shutdown_mode = "immediate"
            self.exit_code = 1

    def _others(self) -> list[Child]:
        return [c for c in self.children.values() if c.kind not in ("syslogger", "deadend")]

    def _advance(self) -> int | None:
        """State transitions that depend on which children are left."""
        now = time.time()
        if self.state in (PMState.CRASH, PMState.IMMEDIATE):
            others = self._others()
            if others and now - self.crash_started > SIGKILL_AFTER:
                for c in others:
                    try:
                        os.kill(c.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            if others:
                return None
            if self.state == PMState.IMMEDIATE or self.shutdown_mode:
                return self._finish()
            elog.log("all server processes terminated; reinitializing")
            self.ctx.shm = None
            self.ctx.locks = None
            gc.collect()
            for old in (self.ctx.stats_recv, self.ctx.stats_sock):
                if old is not None:
                    old.close()
            self.ctx.stats_recv, self.ctx.stats_sock = pgstat.make_socketpair()
            self._init_shmem()
            self._start_startup(recovery=True)
            return None
        if self.state == PMState.WAIT_BACKENDS:
            if self._kinds("backend", "avworker", "startup"):
                return None
            if self.shutdown_mode == "smart" and self._kinds("bgworker"):
                self._signal_children(signal.SIGTERM, ("bgworker",))
            # no clients left: stop the helpers, then the checkpointer writes the shutdown checkpoint
            self._signal_children(signal.SIGTERM, ("avlauncher", "bgwriter", "walwriter", "walsummarizer",
                                                   "ioworker", "bgworker"))
            if self._kinds("avlauncher", "bgwriter", "walwriter", "walsummarizer", "ioworker", "bgworker"):
                return None
            if self._kinds("checkpointer"):
                self._signal_children(signal.SIGUSR2, ("checkpointer",))
            self.state = PMState.SHUTDOWN
            return None
        if self.state == PMState.SHUTDOWN:
            if self._kinds("checkpointer", "avlauncher", "bgwriter", "walwriter", "startup"):
                return None
            if self._kinds("statscollector", "archiver"):
                self._signal_children(signal.SIGTERM, ("statscollector", "archiver"))
                return None
            return self._finish()
        return None

    def _finish(self) -> int:
        if self.shutdown_mode == "immediate":
            elog.log("database system is shut down")
        else:
            elog.log("database system is shut down")
        for s in self.ctx.listen:
            try:
                if s.family == socket.AF_UNIX:
                    os.unlink(s.getsockname())
            except OSError:
                pass
            s.close()
        self._remove_pidfile()
        # let the logger drain: close our copies of the pipe, wait for it a moment
        if self.syslogger_pid:
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)
                os.dup2(devnull, 1)
                os.close(devnull)
                os.close(self._log_pipe_w)
            except OSError:
                pass
            deadline = time.time() + 5
            while time.time() < deadline:
                try:
                    pid, _ = os.waitpid(self.syslogger_pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid:
                    break
                time.sleep(0.02)
        return self.exit_code


def _syslogger_main(ctx: Any) -> int:
    return syslogger.main(ctx)


def _is_server(pid: int) -> bool:
    """Is ``pid`` a pgbundle server process (and not an unrelated one that got a dead server's PID)?
    PostgreSQL checks its shared memory segment; here the command line tells."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"pgbundle" in f.read()
    except OSError:
        return True  # cannot tell: assume it is one, as PostgreSQL errs on the safe side


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_temp_files(datadir: str) -> None:
    """RemovePgTempFiles: sort spill files a crashed or killed backend left behind."""
    tmp = os.path.join(datadir, "base", "pgsql_tmp")
    try:
        names = os.listdir(tmp)
    except OSError:
        return
    for name in names:
        if name.startswith("pgsql_tmp"):
            try:
                os.unlink(os.path.join(tmp, name))
            except OSError:
                pass
