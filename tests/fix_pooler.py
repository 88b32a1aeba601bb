"""``pgbundle pooler`` for tests, run as a real subprocess, as a user would run it.

Fixture: ``pooler_factory(args, port=None, env=None, cwd=None)`` starts poolers; every one is
stopped afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import free_port, wait_port


class PoolerProcess:
    """``pgbundle pooler`` run as a real subprocess, as a user would run it."""

    def __init__(self, args: list[str], *, port: int | None = None, env: dict[str, str] | None = None,
                 cwd: str | None = None) -> None:
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="pgbundle-pooler-"))
        self.log_path = self.root / "pooler.log"
        self.args = [sys.executable, "-m", "pgbundle.shared.cli", "pooler", "--listen-addr", "127.0.0.1",
                     "--listen-port", str(self.port), *args]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})}, cwd=cwd or str(self.root))
        log.close()
        try:
            wait_port(self.port, 20, self.proc)
        except Exception:
            self.stop()
            raise RuntimeError("pooler did not start:\n" + self.log()) from None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def dsn(self, user: str = "postgres", dbname: str = "postgres", password: str | None = None) -> str:
        s = f"host=127.0.0.1 port={self.port} user={user} dbname={dbname}"
        return s + (f" password='{password}'" if password else "")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15) -> int | None:
        if self.proc.poll() is None:
            # pgbouncer's SIGTERM waits for the clients to leave; a second one stops at once
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(1)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
        return self.proc.returncode

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def pooler_factory() -> Iterator:
    """Start poolers with ``pooler_factory(args)``; every one is stopped afterwards."""
    started: list[PoolerProcess] = []

    def make(args: list[str], **kw) -> PoolerProcess:
        p = PoolerProcess(args, **kw)
        started.append(p)
        return p

    yield make
    for p in started:
        p.close()
