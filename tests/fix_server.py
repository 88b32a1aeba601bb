"""``pgbundle server`` for tests: a real process group on a free port in a temp data directory,
exactly as a user runs it (settings become ``-c name=value``).

* ``running_server(**settings)``: a context manager that starts one and closes it;
* ``server_factory(start=True, **settings)`` / ``module_server_factory``: servers for one test
  / one module, with :data:`QUICK` settings under the test's own;
* ``server``: one quick server shared by the tests of a module (do not stop it);
* ``kill_backend_expect_crash_notice(victim, other)``: a crash and the notice other clients get.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.procs import children, free_port, group_pids

# Small and lively: little shared memory, autovacuum every second, no timed checkpoints.
QUICK = {
    "shared_buffers": "4MB",
    "autovacuum_naptime": "1s",
    "checkpoint_timeout": "300s",
    "max_connections": "100",
}


class PgbServer:
    """One ``pgbundle server`` process group."""

    def __init__(self, datadir: Path | None = None, *, port: int | None = None, **settings: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="pgbundle-srv-"))
        self.datadir = datadir or (self.root / "data")
        self.port = port or free_port()
        self.settings = {k: str(v) for k, v in settings.items()}
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
        """Live members of the server's process group (the postmaster and its children)."""
        return [] if self.proc is None else group_pids(self.proc.pid)

    def children(self) -> dict[int, str]:
        """pid -> process title of the postmaster's live children."""
        return children(self.pid)

    # -- clients
    def dsn(self, user: str = "postgres", dbname: str = "postgres", password: str | None = None) -> str:
        s = f"host=127.0.0.1 port={self.port} user={user} dbname={dbname}"
        return s + (f" password='{password}'" if password else "")

    def url(self, dbname: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

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
            shutil.rmtree(self.root, ignore_errors=True)


def kill_backend_expect_crash_notice(victim: psycopg.Connection, other: psycopg.Connection) -> None:
    """SIGKILL ``victim``'s backend; ``other`` must then fail with the 57P02 crash notice."""
    os.kill(victim.info.backend_pid, signal.SIGKILL)
    # Wait (bounded) until other's backend has sent its notice and gone, before sending anything:
    # a query arriving as the backend exits is unread data at its close, and the kernel's RST
    # for it can reach the client first (seen once in eight full-suite runs: EOF, no 57P02).
    select.select([other.fileno()], [], [], 30)
    with pytest.raises(psycopg.OperationalError) as ei:
        for _ in range(100):
            other.execute("select 1")
            time.sleep(0.05)
    assert ei.value.sqlstate == "57P02", str(ei.value)
    assert "crash of another server process" in str(ei.value)


@contextlib.contextmanager
def running_server(**settings: str) -> Iterator[PgbServer]:
    """A started server with exactly ``settings``; closed (and its directory removed) on exit."""
    s = PgbServer(**settings)
    try:
        s.start()
        yield s
    finally:
        s.close()


@contextlib.contextmanager
def _factory() -> Iterator[Callable[..., PgbServer]]:
    started: list[PgbServer] = []

    def make(start: bool = True, **settings: str) -> PgbServer:
        s = PgbServer(**{**QUICK, **settings})
        started.append(s)
        if start:
            s.start()
        return s

    try:
        yield make
    finally:
        for s in started:
            s.close()


@pytest.fixture
def server_factory() -> Iterator[Callable[..., PgbServer]]:
    """``server_factory(start=True, **settings)``: servers that live for one test."""
    with _factory() as make:
        yield make


@pytest.fixture(scope="module")
def module_server_factory() -> Iterator[Callable[..., PgbServer]]:
    """Like server_factory, but the servers live for the whole test module."""
    with _factory() as make:
        yield make


@pytest.fixture(scope="module")
def server(module_server_factory: Callable[..., PgbServer]) -> PgbServer:
    """A quick server shared by the tests of one module (do not stop it)."""
    return module_server_factory()
