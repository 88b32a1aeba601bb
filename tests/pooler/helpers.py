"""Helpers for the pooler's tests: upstream URLs and arguments, psql/psycopg shortcuts, the admin
console, raw protocol exchanges."""

from __future__ import annotations

import subprocess

import psycopg


def upstream(pg, user: str | None = None) -> str:
    """The upstream URL; a user in it would be a forced server user (pgbouncer's user=)."""
    return f"postgresql://{user + '@' if user else ''}127.0.0.1:{pg.port}"


def base_args(pg, *extra: str) -> list[str]:
    return ["--upstream", upstream(pg), "--unix-socket-dir", "", *extra]


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


def raw_exchange(port: int, data: bytes, *, timeout: float = 10.0, until_close: bool = True,
                 source: str | None = None) -> list:
    """Send raw bytes to 127.0.0.1:port (from address ``source``, e.g. 127.0.0.2, if given); return the
    backend messages read until the peer closes (or ReadyForQuery when ``until_close`` is false).
    Untyped 'N'/'S' answers come back as bytes."""
    import socket

    from pgbundle.shared.protocol import FrameBuffer, decode_backend, messages as m

    out: list = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                  source_address=(source, 0) if source else None) as s:
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
