"""Fixtures for the examples' tests: a real ``pgbundle server``, the web app and the load
test run as subprocesses (exactly as the READMEs tell a user to run them)."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import REPO, free_port, wait_port

WEBAPP = REPO / "examples" / "webapp" / "app.py"
LOADTEST = REPO / "examples" / "loadtest" / "loadtest.py"


def raise_fd_limit(needed: int) -> None:
    """Make room for ``needed`` descriptors (children started afterwards inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise RuntimeError(f"RLIMIT_NOFILE hard limit {hard} is below the {needed} this test needs")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


class PgbundleServer:
    """``pgbundle server -D DIR --port N`` as a process group on 127.0.0.1."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="pgbundle-ex-srv-"))
        self.port = free_port()
        self.out_path = self.root / "server.log"
        with open(self.out_path, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pgbundle.shared.cli", "server", "-D", str(self.root / "data"),
                 "--port", str(self.port), "--listen-addresses", "127.0.0.1", "-c", "max_connections=100",
                 "-c", "shared_buffers=8MB"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=str(self.root))
        deadline = time.monotonic() + 60
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgbundle server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2) as c:
                    c.execute("select 1")
                return
            except psycopg.Error as e:
                last = e
                time.sleep(0.1)
        self.close()
        raise TimeoutError(f"pgbundle server not ready: {last}")

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def log(self) -> str:
        return self.out_path.read_text(errors="replace")[-4000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever is left of the group
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pgb_server() -> Iterator[PgbundleServer]:
    s = PgbundleServer()
    try:
        yield s
    finally:
        s.close()


class WebApp:
    """examples/webapp/app.py served by Werkzeug in its own process on 127.0.0.1."""

    def __init__(self, database_url: str) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="pgbundle-webapp-"))
        self.log_path = self.root / "app.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(WEBAPP), "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, cwd=str(self.root),
                env={**os.environ, "DATABASE_URL": database_url})
        try:
            wait_port(self.port, 30, self.proc)
        except (RuntimeError, TimeoutError):
            self.close()
            raise RuntimeError("web app did not start:\n" + self.log()) from None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def request(self, method: str, path: str, *, json_body=None, form: dict | None = None,
                timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
        """A real HTTP request (urllib); returns status, headers, body (redirects followed)."""
        data, headers = None, {}
        if json_body is not None:
            data, headers["Content-Type"] = json.dumps(json_body).encode(), "application/json"
        elif form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def json(self, method: str, path: str, **kw) -> tuple[int, object]:
        status, _, body = self.request(method, path, **kw)
        return status, (json.loads(body) if body else None)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def webapp_factory() -> Iterator:
    started: list[WebApp] = []

    def make(database_url: str) -> WebApp:
        app = WebApp(database_url)
        started.append(app)
        return app

    yield make
    for app in started:
        app.close()


def run_loadtest(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python examples/loadtest/loadtest.py ARGS`` as documented; fails the test on a non-zero exit."""
    r = subprocess.run([sys.executable, str(LOADTEST), *args], check=False, capture_output=True, text=True,
                       timeout=timeout, cwd=str(REPO))
    if r.returncode != 0:
        raise AssertionError(f"load test exited with {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return r


def fresh_database(dsn: str, name: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}"')
        c.execute(f'CREATE DATABASE "{name}"')
