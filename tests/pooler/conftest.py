"""Fixtures for pooler tests: a pooler subprocess in front of the shared PostgreSQL 15."""

from __future__ import annotations

import subprocess

import psycopg
import pytest


def upstream(pg, user: str | None = None) -> str:
    """The upstream URL; a user in it would be a forced server user (pgbouncer's user=)."""
    return f"postgresql://{user + '@' if user else ''}127.0.0.1:{pg.port}"


def base_args(pg, *extra: str) -> list[str]:
    return ["--upstream", upstream(pg), "--unix-socket-dir", "", *extra]


@pytest.fixture
def tx_pooler(pg, pooler_factory):
    """Transaction mode, pool size 5, in front of the shared cluster."""
    return pooler_factory(base_args(pg, "--pool-mode", "transaction", "--pool-size", "5",
                                    "--admin-users", "postgres"))


def psql(port: int, sql: str, *, user: str = "postgres", db: str = "postgres", env=None,
         check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port),
                        "-U", user, "-d", db, "-c", sql], capture_output=True, text=True, timeout=60, env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"psql failed ({r.returncode}): {r.stderr}")
    return r


def connect(p, **kw) -> psycopg.Connection:
    kw.setdefault("autocommit", True)
    return psycopg.connect(p.dsn(**{k: kw.pop(k) for k in ("user", "dbname", "password") if k in kw}),
                           connect_timeout=10, **kw)


def admin(p, sql: str) -> list[tuple]:
    """Run an admin console command through psycopg's simple protocol."""
    with psycopg.connect(p.dsn(dbname="pgbouncer"), autocommit=True) as conn:
        cur = conn.execute(sql, prepare=False)
        return cur.fetchall() if cur.description else []


def pool_row(p, db: str = "postgres", user: str = "postgres") -> dict:
    with psycopg.connect(p.dsn(dbname="pgbouncer"), autocommit=True) as conn:
        cur = conn.execute("SHOW POOLS", prepare=False)
        cols = [d.name for d in cur.description]
        for row in cur.fetchall():
            d = dict(zip(cols, row))
            if d["database"] == db and d["user"] == user:
                return d
    raise AssertionError(f"no pool {db}/{user}")


def raw_exchange(port: int, data: bytes, *, timeout: float = 10.0, until_close: bool = True) -> list:
    """Send raw bytes to 127.0.0.1:port; return the backend messages read until the peer closes
    (or ReadyForQuery when ``until_close`` is false).  Untyped 'N'/'S' answers come back as bytes."""
    import socket

    from pgbundle.shared.protocol import FrameBuffer, decode_backend, messages as m

    out: list = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        fb = FrameBuffer()
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            fb.receive_data(chunk)
            while (f := fb.next_frame()) is not None:
                msg = decode_backend(*f)
                out.append(msg)
                if not until_close and isinstance(msg, m.ReadyForQuery):
                    return out
    return out


def startup_bytes(user: str = "postgres", database: str = "postgres", **params: str) -> bytes:
    from pgbundle.shared.protocol import encode, messages as m

    return encode(m.StartupMessage(3 << 16, {"user": user, "database": database, **params}))


def error_of(msgs: list):
    from pgbundle.shared.protocol import messages as m

    errs = [x for x in msgs if isinstance(x, m.ErrorResponse)]
    assert errs, f"no ErrorResponse in {msgs}"
    return errs[0]


@pytest.fixture(scope="module")
def pgb_server():
    """A ``pgbundle server`` (the bundled server) for pooler tests that run against it."""
    import os
    import shutil
    import signal
    import sys
    import tempfile
    import time
    from pathlib import Path

    from tests.conftest import free_port

    root = Path(tempfile.mkdtemp(prefix="pgbundle-upstream-"))
    port = free_port()
    log = open(root / "server.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "pgbundle.shared.cli", "server", "-D", str(root / "data"),
                             "--port", str(port), "--listen-addresses", "127.0.0.1", "-c", "max_connections=100"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=str(root))
    log.close()

    class Upstream:
        pass

    up = Upstream()
    up.port = port
    up.root = root
    up.dsn = lambda: f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, (root / "server.log").read_text()[-3000:]
        try:
            with psycopg.connect(up.dsn(), connect_timeout=2) as c:
                c.execute("select 1")
            break
        except psycopg.Error:
            assert time.monotonic() < deadline, "pgbundle server did not start"
            time.sleep(0.1)
    try:
        yield up
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)
