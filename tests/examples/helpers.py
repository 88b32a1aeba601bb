"""Helpers for the examples' tests: the web app and the load test run as subprocesses (exactly as
the READMEs tell a user to run them), fresh databases, descriptor limits."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import psycopg

from tests.procs import REPO, free_port, wait_port

WEBAPP = REPO / "examples" / "webapp" / "app.py"
LOADTEST = REPO / "examples" / "loadtest" / "loadtest.py"


def raise_fd_limit(needed: int) -> None:
    """Make room for ``needed`` descriptors (children started afterwards inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise RuntimeError(f"RLIMIT_NOFILE hard limit {hard} is below the {needed} this test needs")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


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
