"""pgbouncer 1.25's own test/test_prepared.py cases, run through pgbundle in transaction mode in
front of PostgreSQL 15: live ``SET max_prepared_statements``, eviction, pipelines (with an
error in the middle), Close and Describe of
unknown statements."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import pq

from .helpers import admin, base_args

pytestmark = pytest.mark.slow


@pytest.fixture
def pooler(pg, pooler_factory):
    return pooler_factory(base_args(pg, "--pool-mode", "transaction", "--pool-size", "2",
                                    "--admin-users", "postgres"))


def _held(pooler) -> list[int]:
    """Statements each server connection holds (SHOW SERVERS' prepared_statements)."""
    with psycopg.connect(pooler.dsn(dbname="pgbouncer"), autocommit=True) as a:
        cur = a.execute("SHOW SERVERS", prepare=False)
        col = [d.name for d in cur.description].index("prepared_statements")
        return [row[col] for row in cur.fetchall()]


def test_set_max_prepared_statements_is_live_and_evicts(pooler):
    with psycopg.connect(pooler.dsn(), autocommit=True) as conn:
        cur = conn.cursor()
        for i in range(3):  # the servers hold statements under the default limit (200)
            assert cur.execute(f"SELECT '{i}'", prepare=True).fetchone()[0] == str(i)
        assert sum(_held(pooler)) == 3
        admin(pooler, "set max_prepared_statements=1")
        for i in range(3, 8):
            assert cur.execute(f"SELECT '{i}'", prepare=True).fetchone()[0] == str(i)
        held = _held(pooler)
        assert held and max(held) == 1, held  # evicted down to the new limit at the next insertion
        admin(pooler, "set max_prepared_statements=5")
        for i in range(8, 18):
            assert cur.execute(f"SELECT '{i}'", prepare=True).fetchone()[0] == str(i)
        held = _held(pooler)
        assert max(held) <= 5 and sum(held) > len(held), held
        admin(pooler, "set max_prepared_statements=2")
        assert cur.execute("SELECT '18'", prepare=True).fetchone()[0] == "18"
        assert min(_held(pooler)) <= 2
        # with handling off, the client's own name reaches the server, which does not know it
        admin(pooler, "set max_prepared_statements=0")
        with pytest.raises(psycopg.errors.InvalidSqlStatementName):
            cur.execute("SELECT '10'", prepare=True)


@pytest.mark.parametrize("value", ["-1", "3147483648", "abc"])
def test_set_max_prepared_statements_out_of_range_fails(pooler, value):
    with pytest.raises(psycopg.errors.ProtocolViolation, match="SET failed"):
        admin(pooler, f"set max_prepared_statements='{value}'")


def test_pipeline_with_error_evicting(pooler):
    admin(pooler, "set max_prepared_statements=1")
    with psycopg.connect(pooler.dsn(), autocommit=True) as conn, conn.pipeline() as p:
        curs = [conn.cursor() for _ in range(4)]
        curs[0].execute("SELECT 1", prepare=True)
        curs[1].execute("bad query", prepare=True)
        with pytest.raises(psycopg.errors.SyntaxError):
            p.sync()
        assert curs[0].fetchall() == [(1,)]
        curs[0].execute("SELECT 1", prepare=True)
        p.sync()
        assert curs[0].fetchall() == [(1,)]


def test_pipeline_mixed_prepared(pooler):
    with psycopg.connect(pooler.dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT 1", prepare=True).fetchone()[0] == 1
    for _ in range(2):
        with psycopg.connect(pooler.dsn(), autocommit=True) as conn, conn.pipeline():
            curs = [conn.cursor() for _ in range(4)]
            curs[0].execute("SELECT 2", prepare=True)
            curs[1].execute("SELECT 1", prepare=True)
            curs[2].execute("SELECT 3")
            curs[3].execute("SELECT 1", prepare=True)
            assert [c.fetchall() for c in curs] == [[(2,)], [(1,)], [(3,)], [(1,)]]


def test_describe_unknown_statement(pooler):
    with psycopg.connect(pooler.dsn(), autocommit=True) as conn:
        r = conn.pgconn.describe_prepared(b"doesnotexist")
        assert r.status == pq.ExecStatus.FATAL_ERROR
        # the session still works (pgbouncer closes it; we answer as PostgreSQL does)
        assert conn.execute("SELECT 5").fetchone()[0] == 5
