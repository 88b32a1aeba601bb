"""Transaction pooling with session semantics, in front of pgbundle's own server."""

from __future__ import annotations

import asyncio

import asyncpg
import psycopg
import pytest

from .helpers import connect, pool_row
from .test_limits import wait_for
from .test_pgbench import failed, pgbench, processed


@pytest.fixture
def tx_pgb(pgb_server, pooler_factory):
    return pooler_factory(["--upstream", f"postgresql://127.0.0.1:{pgb_server.port}", "--unix-socket-dir", "",
                           "--pool-mode", "transaction", "--pool-size", "5", "--max-connections", "200"])


@pytest.fixture
def tx2_pgb(pgb_server, pooler_factory):
    """Pool size 2 and an admin console: pinning is visible in SHOW POOLS."""
    return pooler_factory(["--upstream", f"postgresql://127.0.0.1:{pgb_server.port}", "--unix-socket-dir", "",
                           "--pool-mode", "transaction", "--pool-size", "2", "--admin-users", "postgres"])


@pytest.mark.parametrize("mode", ["prepared", "extended", "simple"])
def test_pgbench_through_pooler(pgb_server, tx_pgb, mode):
    pgbench(pgb_server.port, "-i", "-s", "1", "-q")
    out = pgbench(tx_pgb.port, "-n", "-M", mode, "-c", "10", "-j", "2", "-T", "3")
    assert failed(out) == 0 and processed(out) > 0, out


def test_asyncpg_default_settings(tx_pgb):
    async def worker(i: int):
        conn = await asyncpg.connect(host="127.0.0.1", port=tx_pgb.port, user="postgres", database="postgres")
        try:
            total = 0
            for j in range(5):
                total += await conn.fetchval("select $1::int * $2::int", i, j)
            async with conn.transaction():
                assert await conn.fetchval("select $1::text || 'x'", str(i)) == f"{i}x"
            return total
        finally:
            await conn.close()

    async def main():
        return await asyncio.gather(*(worker(i) for i in range(20)))

    assert asyncio.run(main()) == [i * 10 for i in range(20)]


def test_psycopg_prepared_and_pipeline(tx_pgb):
    with psycopg.connect(tx_pgb.dsn(), autocommit=True, prepare_threshold=0) as conn:
        conn.execute("drop table if exists pp_items")
        conn.execute("create table pp_items(id int primary key, v text)")
        with conn.pipeline():
            cur = conn.cursor()
            for i in range(20):
                cur.execute("insert into pp_items values (%s, %s)", (i, f"v{i}"))
            cur.execute("select count(*) from pp_items where id >= %s", (10,))
        assert cur.fetchone() == (10,)


def test_settings_follow_clients(tx_pgb):
    a = psycopg.connect(tx_pgb.dsn(), autocommit=True)
    b = psycopg.connect(tx_pgb.dsn(), autocommit=True)
    try:
        a.execute("set statement_timeout = '7s'")
        a.execute("set application_name = 'aa'")
        b.execute("set search_path = x, public")
        for _ in range(4):
            assert a.execute("select current_setting('statement_timeout'), current_setting('application_name')"
                             ).fetchone() == ("7s", "aa")
            assert b.execute("select current_setting('search_path'), current_setting('statement_timeout')"
                             ).fetchone() == ("x, public", "0")
    finally:
        a.close()
        b.close()



def test_listen_notify(tx_pgb):
    listener = psycopg.connect(tx_pgb.dsn(), autocommit=True)
    notifier = psycopg.connect(tx_pgb.dsn(), autocommit=True)
    try:
        listener.execute("listen chan_p")
        for i in range(3):
            listener.execute("select 1")
            notifier.execute(f"notify chan_p, 'n{i}'")
        got = [n.payload for n in listener.notifies(timeout=5, stop_after=3)]
        assert got == ["n0", "n1", "n2"]
    finally:
        listener.close()
        notifier.close()


def _pinned_to(p, conn, other) -> int:
    """conn keeps one server connection (same backend every time, sv_active 1) while other
    clients come and go on the rest of the pool."""
    assert pool_row(p)["sv_active"] == 1
    pid = conn.execute("select pg_backend_pid()").fetchone()[0]
    for _ in range(3):
        assert other.execute("select pg_backend_pid()").fetchone()[0] != pid
        assert conn.execute("select pg_backend_pid()").fetchone()[0] == pid
    assert pool_row(p)["sv_active"] == 1
    return pid


def test_advisory_lock_pins_and_releases(tx2_pgb):
    p = tx2_pgb
    a, other = connect(p), connect(p)
    try:
        a.execute("select pg_advisory_lock(4242)")
        pid = _pinned_to(p, a, other)
        # the lock is real: visible in pg_locks, and nobody else gets it
        assert other.execute("select locktype, pid, mode, granted from pg_locks where locktype = 'advisory' "
                             "and objid = 4242").fetchall() == [("advisory", pid, "ExclusiveLock", True)]
        assert other.execute("select pg_try_advisory_lock(4242)").fetchone() == (False,)
        a.execute("select pg_advisory_unlock(4242)")
        wait_for(lambda: pool_row(p)["sv_active"] == 0, what="server released after unlock")
        # a transaction-level lock never pins; a shared session lock does, until unlock_all
        a.execute("select pg_advisory_xact_lock(7)")
        assert pool_row(p)["sv_active"] == 0
        a.execute("select pg_advisory_lock_shared(8)")
        _pinned_to(p, a, other)
        a.execute("select pg_advisory_unlock_all()")
        wait_for(lambda: pool_row(p)["sv_active"] == 0, what="server released after unlock_all")
    finally:
        a.close()
        other.close()


def test_temp_table_and_hold_cursor_pin(tx2_pgb):
    p = tx2_pgb
    a, other = connect(p), connect(p)
    try:
        a.execute("create temp table tt(a int)")
        a.execute("insert into tt values (1), (2)")
        _pinned_to(p, a, other)
        assert a.execute("select count(*) from tt").fetchone() == (2,)
        assert a.execute("select count(*) from pg_class where relnamespace = pg_my_temp_schema()").fetchone() == (1,)
        a.execute("drop table tt")
        wait_for(lambda: pool_row(p)["sv_active"] == 0, what="unpinned after drop")
        a.execute("declare cur cursor with hold for select generate_series(1, 3)")
        _pinned_to(p, a, other)
        assert a.execute("select name, is_holdable from pg_cursors").fetchall() == [("cur", True)]
        assert a.execute("fetch 2 from cur").fetchall() == [(1,), (2,)]
        a.execute("close cur")
        wait_for(lambda: pool_row(p)["sv_active"] == 0, what="unpinned after close")
    finally:
        a.close()
        other.close()
