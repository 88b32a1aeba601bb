"""Fixtures for the SQL layer's unit tests: a Session over the in-memory engine."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

_spec = importlib.util.spec_from_file_location("pgbundle_test_memengine",
                                               pathlib.Path(__file__).with_name("memengine.py"))
memengine = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(memengine)


class Client:
    """Drives a Session like a client would, decoding the answers."""

    def __init__(self) -> None:
        from pgbundle.server.sql.session import Session
        self.engine = memengine.MemEngine()
        self.s = Session(self.engine, database="postgres", user="postgres", settings=self.engine.settings)

    def q(self, sql: str) -> list:
        return self.s.simple_query(sql)

    def rows(self, sql: str) -> list[tuple]:
        """Text rows of the last result set; raises on ErrorResponse."""
        from pgbundle.shared.protocol import messages as M
        out = self.q(sql)
        err = [m for m in out if isinstance(m, M.ErrorResponse)]
        if err:
            raise AssertionError(f"{sql!r} failed: {err[0].fields}")
        rows = []
        for m in out:
            if isinstance(m, M.RowDescription):
                rows = []
            if isinstance(m, M.DataRow):
                rows.append(tuple(None if v is None else v.decode() for v in m.values))
        return rows

    def error(self, sql: str) -> dict:
        from pgbundle.shared.protocol import messages as M
        out = self.q(sql)
        err = [m for m in out if isinstance(m, M.ErrorResponse)]
        assert err, f"{sql!r} did not fail: {out}"
        return err[0].fields

    def tags(self, sql: str) -> list[str]:
        from pgbundle.shared.protocol import messages as M
        return [m.tag for m in self.q(sql) if isinstance(m, M.CommandComplete)]


@pytest.fixture
def db() -> Client:
    return Client()


@pytest.fixture(scope="session")
def client_cls() -> type:
    return Client


# ----------------------------------------------------------------------------- a real pgbundle server

import os  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402


class ServerProcess:
    """``pgbundle server`` on a fresh data directory and a free port (127.0.0.1)."""

    def __init__(self, *conf: str) -> None:
        from tests_conftest_helpers import free_port, wait_port  # type: ignore[import-not-found]
        self.port = free_port()
        self.root = tempfile.mkdtemp(prefix="pgbundle-sqlsrv-")
        self.data = os.path.join(self.root, "data")
        args = [sys.executable, "-m", "pgbundle.shared.cli", "server", "-D", self.data, "-p", str(self.port),
                "-h", "127.0.0.1"]
        for c in conf:
            args += ["-c", c]
        self.log = open(os.path.join(self.root, "server.out"), "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_port(self.port, 60, self.proc)
            self._wait_ready(60)
        except Exception:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        """Until a connection is accepted (the server says 57P03 while it starts up)."""
        import time

        import psycopg
        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.dsn(), connect_timeout=5).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.2)

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _load_root_helpers() -> None:
    """Expose free_port/wait_port of tests/conftest.py without importing it by name."""
    import importlib.util as iu
    root = pathlib.Path(__file__).resolve().parents[2] / "conftest.py"
    spec = iu.spec_from_file_location("tests_conftest_helpers", root)
    mod = iu.module_from_spec(spec)
    sys.modules["tests_conftest_helpers"] = mod
    spec.loader.exec_module(mod)


_load_root_helpers()


@pytest.fixture(scope="module")
def server():
    s = ServerProcess("synchronous_commit=off")
    try:
        yield s
    finally:
        s.close()
