"""Transaction pooling with session semantics, in front of pgbundle's own server."""

from __future__ import annotations

import asyncio

import asyncpg
import psycopg
import pytest

from .test_pgbench import failed, pgbench, processed


@pytest.fixture
def tx_pgb(pgb_server, pooler_factory):
    return pooler_factory(["--upstream", f"postgresql://127.0.0.1:{pgb_server.port}", "--unix-socket-dir", "",
                           "--pool-mode", "transaction", "--pool-size", "5", "--max-connections", "200"])


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

