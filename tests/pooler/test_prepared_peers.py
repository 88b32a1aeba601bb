"""pgbouncer 1.25's own test/test_prepared.py cases, run through pgbundle in transaction mode in
front of PostgreSQL 15: live ``SET max_prepared_statements``, eviction, pipelines (with an
error in the middle), Close and Describe of
unknown statements."""

from __future__ import annotations

import random
import select
import time

import psycopg
import pytest
from psycopg import pq, sql

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


def _until_sync(pg: pq.abc.PGconn) -> list[pq.abc.PGresult]:
    """A pipeline's results up to its PipelineSync (the None between requests skipped); then it ends."""
    got = []
    while True:
        r = pg.get_result()
        if r is None:
            continue
        got.append(r)
        if r.status == pq.ExecStatus.PIPELINE_SYNC:
            pg.exit_pipeline_mode()
            return got


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


def test_pipeline_stress_with_eviction(pooler):
    """pgbouncer's test_prepared_statement_pipeline_stress: 100 distinct statements through a cache
    of 66, pipelines of 0..9 statements, 100 rounds each.  A pipeline's unsynced requests were once
    sent unmatched, so the pooler's own ParseComplete of a later batch overtook their replies and
    psycopg waited forever (the test runs under `timeout` in CI's suite via pytest-timeout)."""
    admin(pooler, "set max_prepared_statements=66")
    rnd = random.Random(1)
    for length in range(10):
        with psycopg.connect(pooler.dsn(), autocommit=True) as conn, conn.pipeline():
            curs = [conn.cursor() for _ in range(length)]
            for _ in range(100):
                for i in range(length):
                    q = sql.SQL("SELECT %s, %s::text as {}").format(sql.Identifier(f"s{rnd.randint(1, 100)}"))
                    curs[i].execute(q, params=(i, str(i).zfill(512)), prepare=True)
                for i in range(length):
                    assert curs[i].fetchall() == [(i, str(i).zfill(512))]


def test_unsynced_plain_batch_then_edited_batch(pooler):
    """The class behind the stress hang, by hand: a Bind/Execute with no Sync goes out unedited, then
    a Parse the pooler answers itself; its ParseComplete must come after the first Bind's replies."""
    with psycopg.connect(pooler.dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT 7", prepare=True).fetchone()[0] == 7  # the server holds it now
        pg = conn.pgconn
        assert pg.prepare(b"slow", b"SELECT 1 FROM pg_sleep(0.3)").status == pq.ExecStatus.COMMAND_OK
        pg.enter_pipeline_mode()
        pg.send_query_prepared(b"slow", None)  # Bind/Execute only: sent as it is; replies come late
        pg.flush()
        pg.send_prepare(b"again", b"SELECT 7")
        pg.send_query_prepared(b"again", None)
        pg.pipeline_sync()
        statuses = [(r.status, r.get_value(0, 0) if r.ntuples else None) for r in _until_sync(pg)]
        assert statuses == [(pq.ExecStatus.TUPLES_OK, b"1"), (pq.ExecStatus.COMMAND_OK, None),
                            (pq.ExecStatus.TUPLES_OK, b"7"), (pq.ExecStatus.PIPELINE_SYNC, None)]


def test_failed_prepare_in_pipeline(pooler):
    """pgbouncer's test_prepared_failed_prepare_pipeline."""
    with psycopg.connect(pooler.dsn(), autocommit=True) as conn, conn.pipeline() as p, conn.cursor() as cur:
        cur.execute("SELECT 1", prepare=True)
        cur.execute("SELECT * FROM doesnotexistyet", prepare=True)
        cur.execute("SELECT 2", prepare=True)
        with pytest.raises(psycopg.errors.UndefinedTable):
            p.sync()
        cur.execute("SELECT 1", prepare=True)
        p.sync()
        cur.execute("SELECT 2", prepare=True)
        p.sync()
        assert cur.fetchall() == [(2,)]
        cur.execute("CREATE TABLE doesnotexistyet (a int)")
        cur.execute("SELECT * FROM doesnotexistyet", prepare=True)
        p.sync()
        assert cur.fetchall() == []
        cur.execute("DROP TABLE doesnotexistyet")


def test_pipeline_error_delayed_sync(pooler):
    """pgbouncer's test_prepared_statement_pipeline_error_delayed_sync: after an error every request
    up to the Sync is skipped, even those the client sends later."""
    with psycopg.connect(pooler.dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT 1", prepare=True).fetchone()[0] == 1
    with psycopg.connect(pooler.dsn(), autocommit=True) as conn, conn.pipeline() as p, conn.cursor() as cur:
        cur.execute("SELECT aaaa")
        # the error is in the socket before the next execute (pgbouncer's test sleeps 0.1 s for it)
        assert select.select([conn.pgconn.socket], [], [], 30)[0], "no reply to the failing query"
        with pytest.raises(psycopg.errors.UndefinedColumn, match='column "aaaa" does not exist'):
            cur.execute("SELECT 123")
        with pytest.raises(psycopg.errors.PipelineAborted):
            cur.fetchall()
        p.sync()
        cur.execute("SELECT 1", prepare=True)
        assert cur.fetchall() == [(1,)]


def test_server_stays_linked_until_last_sync(pooler):
    """pgbouncer's test_pause_before_last_sync: requests sent after a Sync keep the server linked even
    when that Sync's ReadyForQuery comes back first."""
    with psycopg.connect(pooler.dsn(), autocommit=True) as conn1, \
            psycopg.connect(pooler.dsn(), autocommit=True) as conn2:
        pg = conn1.pgconn
        pg.enter_pipeline_mode()
        pg.send_prepare(b"", b"SELECT $1::text")
        pg.send_query_prepared(b"", [b"a"])
        pg.pipeline_sync()
        pg.send_prepare(b"", b"SELECT $1::text")
        pg.flush()
        with conn2.transaction():
            time.sleep(0.5)
            assert conn2.execute("SELECT 1").fetchone()[0] == 1
            pg.send_query_prepared(b"", [b"b"])
            pg.pipeline_sync()
            want = [pq.ExecStatus.COMMAND_OK, None, pq.ExecStatus.TUPLES_OK, None, pq.ExecStatus.PIPELINE_SYNC] * 2
            got = []
            for _ in want:
                r = pg.get_result()
                got.append(None if r is None else r.status)
            assert got == want


def test_skipped_eviction_keeps_the_statement(pg, pooler_factory):
    """An error early in a pipeline makes the server skip the pooler's eviction Close and its Parse:
    the pooler's record must say so (the server still holds the old statement, not the new one), or
    the next Parse of the old one fails with `already exists` and the new one's Bind with `does not exist`."""
    pooler = pooler_factory(base_args(pg, "--pool-mode", "transaction", "--pool-size", "1",
                                      "--admin-users", "postgres"))
    admin(pooler, "set max_prepared_statements=1")
    with psycopg.connect(pooler.dsn(), autocommit=True) as conn:
        cur = conn.cursor()
        assert cur.execute("SELECT 1", prepare=True).fetchone() == (1,)
        pg = conn.pgconn  # libpq's pipeline: all of it is sent before any result is read
        pg.enter_pipeline_mode()
        pg.send_query_params(b"SELECT aaaa", None)
        pg.send_prepare(b"two", b"SELECT 2")
        pg.send_query_prepared(b"two", None)
        pg.pipeline_sync()
        assert [r.status for r in _until_sync(pg)] == [
            pq.ExecStatus.FATAL_ERROR, pq.ExecStatus.PIPELINE_ABORTED, pq.ExecStatus.PIPELINE_ABORTED,
            pq.ExecStatus.PIPELINE_SYNC]
        assert _held(pooler) == [1]
    with psycopg.connect(pooler.dsn(), autocommit=True) as conn:
        cur = conn.cursor()
        assert cur.execute("SELECT 1", prepare=True).fetchone() == (1,)
        assert cur.execute("SELECT 2", prepare=True).fetchone() == (2,)
        assert cur.execute("SELECT 1", prepare=True).fetchone() == (1,)


@pytest.fixture
def one_server(pg, pooler_factory):
    return pooler_factory(base_args(pg, "--pool-mode", "transaction", "--pool-size", "1",
                                    "--admin-users", "postgres"))


def _stale_setup(pooler, name: str) -> psycopg.Connection:
    """A table, and a client holding `SELECT * FROM` it prepared on the only server; then the table
    gains a column, so the shared server-side statement's result type is stale."""
    with psycopg.connect(pooler.dsn(), autocommit=True) as c:
        c.execute(f"DROP TABLE IF EXISTS {name}; CREATE TABLE {name} (a int); INSERT INTO {name} VALUES (1)")
    a = psycopg.connect(pooler.dsn(), autocommit=True)
    assert a.pgconn.prepare(b"s1", f"SELECT * FROM {name}".encode()).status == pq.ExecStatus.COMMAND_OK
    assert a.pgconn.exec_prepared(b"s1", []).get_value(0, 0) == b"1"
    with psycopg.connect(pooler.dsn(), autocommit=True) as c:
        c.execute(f"ALTER TABLE {name} ADD COLUMN b int DEFAULT 2", prepare=False)
    return a


def test_stale_shared_statement_is_reprepared(one_server):
    """PostgreSQL refuses a statement prepared before the change (`cached plan must not change result
    type`); a client that prepares the same text afterwards holds a fresh one.  Through the pooler
    both share one server-side statement: it is re-prepared transparently, for psycopg's one-batch
    Parse/Bind/Describe/Execute/Sync and for a libpq Bind/Execute/Sync alike."""
    a = _stale_setup(one_server, "stale1")
    with a, psycopg.connect(one_server.dsn(), autocommit=True) as b:
        assert b.execute("SELECT * FROM stale1", prepare=True).fetchall() == [(1, 2)]
        assert b.execute("SELECT * FROM stale1", prepare=True).fetchall() == [(1, 2)]
        r = a.pgconn.exec_prepared(b"s1", [])  # PostgreSQL itself would refuse this one: the pooler heals it
        assert r.status == pq.ExecStatus.TUPLES_OK and r.get_value(0, 1) == b"2"
    with psycopg.connect(one_server.dsn(), autocommit=True) as c:  # a table change under a fresh one, again
        c.execute("ALTER TABLE stale1 ADD COLUMN c int DEFAULT 3", prepare=False)
        assert c.execute("SELECT * FROM stale1", prepare=True).fetchall() == [(1, 2, 3)]


def test_stale_shared_statement_in_a_pipeline(one_server):
    """Not re-planned when other requests share the Sync: the error reaches the client as PostgreSQL
    sends it, and the server's statements are dropped, so the next attempt is fresh."""
    a = _stale_setup(one_server, "stale2")
    with a, psycopg.connect(one_server.dsn(), autocommit=True) as b:
        pg = b.pgconn
        assert pg.prepare(b"mine", b"SELECT * FROM stale2").status == pq.ExecStatus.COMMAND_OK
        pg.enter_pipeline_mode()
        pg.send_query_prepared(b"mine", [])
        pg.send_query_params(b"SELECT 5", None)
        pg.pipeline_sync()
        got = [r.status for r in _until_sync(pg)]
        assert got == [pq.ExecStatus.FATAL_ERROR, pq.ExecStatus.PIPELINE_ABORTED, pq.ExecStatus.PIPELINE_SYNC]
        r = pg.exec_prepared(b"mine", [])
        assert r.status == pq.ExecStatus.TUPLES_OK and r.get_value(0, 1) == b"2"


def test_stale_shared_statement_in_a_failed_transaction(one_server):
    """The error inside a transaction block fails it: the statements are dropped only once the
    client has rolled back (DEALLOCATE ALL would be refused in the failed transaction)."""
    a = _stale_setup(one_server, "stale3")
    with a, psycopg.connect(one_server.dsn(), autocommit=True) as b:
        pg = b.pgconn
        assert pg.prepare(b"mine", b"SELECT * FROM stale3").status == pq.ExecStatus.COMMAND_OK
        assert pg.exec_(b"BEGIN").status == pq.ExecStatus.COMMAND_OK
        pg.enter_pipeline_mode()
        pg.send_query_prepared(b"mine", [])
        pg.send_query_params(b"SELECT 5", None)
        pg.pipeline_sync()
        assert [r.status for r in _until_sync(pg)][0] == pq.ExecStatus.FATAL_ERROR
        assert pg.exec_(b"ROLLBACK").status == pq.ExecStatus.COMMAND_OK
        r = pg.exec_prepared(b"mine", [])
        assert r.status == pq.ExecStatus.TUPLES_OK and r.get_value(0, 1) == b"2", r.error_message
