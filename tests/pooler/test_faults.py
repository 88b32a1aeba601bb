"""Faults: a server login refused while the upstream cannot take connections (SQLSTATE 57P03)
leaves the clients already queued waiting (pgbouncer 1.25), and the pooler survives it."""

from __future__ import annotations

import subprocess
import threading

import psycopg
import pytest

from tests.procs import PGBIN, as_postgres

from .helpers import base_args, connect, pool_row
from .test_limits import wait_for


def _start_refusing(pg) -> None:
    """Start ``pg`` as a standby with hot_standby off: it runs, and every login gets FATAL 57P03
    ("the database system is not accepting connections") until it is promoted."""
    pg._write(pg.data / "standby.signal", "")
    with open(pg.data / "postgresql.conf", "a") as f:
        f.write("hot_standby = off\n")
    log = open(pg.root / "postgres.log", "ab")
    pg.proc = subprocess.Popen(as_postgres() + [str(PGBIN / "postgres"), "-D", str(pg.data)],
                               stdout=log, stderr=subprocess.STDOUT, cwd="/tmp", start_new_session=True)
    log.close()

    def refusing() -> bool:
        assert pg.proc.poll() is None, (pg.root / "postgres.log").read_text()[-2000:]
        r = subprocess.run([str(PGBIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(pg.port), "-q"])
        return r.returncode == 1  # up, rejecting connections

    wait_for(refusing, 60, "the standby to reject connections")


def test_queued_client_survives_logins_refused_in_recovery(pg_private, pooler_factory):
    pg = pg_private
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "--admin-users", "postgres",
                                 "-s", "server_login_retry=0.2", "-s", "query_wait_timeout=300"))
    c = connect(p)
    assert c.execute("select 1").fetchone() == (1,)  # logged in: the pool has its welcome
    pg.stop("fast")
    wait_for(lambda: pool_row(p)["sv_idle"] + pool_row(p)["sv_active"] == 0, 30, "the pool to lose its server")
    _start_refusing(pg)

    result: list[object] = []

    def query() -> None:
        try:
            result.append(c.execute("select 42").fetchone())
        except Exception as exc:  # reported by the assertion below
            result.append(exc)

    t = threading.Thread(target=query, daemon=True)
    t.start()
    # The query waits in the queue while logins keep being refused (and retried).
    wait_for(lambda: p.log().count("not accepting connections") >= 3, 60, "three refused logins")
    assert not result, result
    assert pool_row(p)["cl_waiting"] == 1
    assert p.alive()

    subprocess.run(as_postgres() + [str(PGBIN / "pg_ctl"), "promote", "-w", "-D", str(pg.data)],
                   check=True, capture_output=True, cwd="/tmp")
    t.join(120)
    assert result == [(42,)], result  # served once logins work again, never told of the failures
    c.close()
    with connect(p) as c2:
        assert c2.execute("select 1").fetchone() == (1,)
    assert p.alive()


def test_copy_refused_by_the_client_frees_the_server(pg, pooler_factory):
    """psycopg's test_execute_copy (tests/test_cursor.py) in transaction mode: `cursor.execute()` of a
    COPY leaves the server in COPY IN / COPY OUT, psycopg raises ProgrammingError and the test closes
    the connection.  The one server must then be closed (not ready) and the next client served --
    psycopg's suite once hung here for 30 s per test."""
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "--pool-size", "1",
                                 "-s", "query_wait_timeout=20"))
    for q in ["copy testcopy from stdin", "copy testcopy to stdout"] * 2:
        conn = connect(p, autocommit=False)
        cur = conn.cursor()
        cur.execute("create temp table testcopy (id int)")
        with pytest.raises(psycopg.ProgrammingError, match="use copy"):
            cur.execute(q)
        conn.close()
        with connect(p) as c2:
            assert c2.execute("select 1").fetchone() == (1,)
