"""Real clients through transaction mode: psql, psycopg 3, asyncpg (statement cache off)."""

from __future__ import annotations

import asyncio

import asyncpg
import psycopg

from .helpers import connect, psql


def test_psql_crud(tx_pooler):
    port = tx_pooler.port
    psql(port, "drop table if exists t_psql; create table t_psql(id serial primary key, v text)")
    psql(port, "insert into t_psql(v) values ('a'), ('b'), ('c')")
    psql(port, "update t_psql set v = 'bb' where v = 'b'")
    psql(port, "delete from t_psql where v = 'c'")
    out = psql(port, "select string_agg(v, ',' order by id) from t_psql").stdout.strip()
    assert out == "a,bb"
    psql(port, "drop table t_psql")


def test_psycopg_crud_and_transactions(tx_pooler):
    with connect(tx_pooler, autocommit=False) as conn:
        conn.execute("drop table if exists t_pg")
        conn.execute("create table t_pg(id serial primary key, name text not null, qty int)")
        conn.commit()
        with conn.cursor() as cur:
            cur.executemany("insert into t_pg(name, qty) values (%s, %s)", [(f"n{i}", i) for i in range(50)])
        conn.commit()
        cur = conn.execute("select count(*), sum(qty) from t_pg where qty > %s", (9,))
        assert cur.fetchone() == (40, sum(range(10, 50)))
        conn.execute("update t_pg set qty = qty + %s where name = %s", (100, "n1"))
        conn.rollback()
        assert conn.execute("select qty from t_pg where name = 'n1'").fetchone() == (1,)
        with conn.transaction():
            conn.execute("delete from t_pg where qty < %s", (10,))
        assert conn.execute("select count(*) from t_pg").fetchone() == (40,)
        try:
            with conn.transaction():
                conn.execute("insert into t_pg(id, name) values (%s, %s)", (11, "dup"))
        except psycopg.errors.UniqueViolation:
            pass
        else:
            raise AssertionError("expected a unique violation")
        assert conn.execute("select count(*) from t_pg").fetchone() == (40,)
        row = conn.execute("insert into t_pg(name, qty) values (%s, %s) returning id, name", ("r", 7)).fetchone()
        assert row[1] == "r"
        conn.commit()
        conn.execute("drop table t_pg")
        conn.commit()


def test_psycopg_many_connections_share_few_servers(tx_pooler):
    conns = [connect(tx_pooler) for _ in range(20)]
    try:
        for i, c in enumerate(conns):
            assert c.execute("select %s::int + 1", (i,)).fetchone() == (i + 1,)
        backends = {c.execute("select pg_backend_pid()").fetchone()[0] for c in conns}
        assert 1 <= len(backends) <= 5
    finally:
        for c in conns:
            c.close()


def test_asyncpg_crud(tx_pooler):
    async def main():
        conn = await asyncpg.connect(host="127.0.0.1", port=tx_pooler.port, user="postgres", database="postgres",
                                     statement_cache_size=0)
        try:
            await conn.execute("drop table if exists t_apg; create table t_apg(id serial primary key, v text, n int)")
            await conn.executemany("insert into t_apg(v, n) values ($1, $2)", [(f"v{i}", i) for i in range(30)])
            assert await conn.fetchval("select count(*) from t_apg") == 30
            row = await conn.fetchrow("select v, n from t_apg where n = $1", 7)
            assert tuple(row) == ("v7", 7)
            async with conn.transaction():
                await conn.execute("update t_apg set n = n * 2 where n < $1", 5)
            # 0..4 doubled to 0,2,4,6,8; 5..9 unchanged
            assert await conn.fetchval("select sum(n) from t_apg where n < 10") == 20 + 35
            rows = await conn.fetch("select n from t_apg order by n limit 3")
            assert [r["n"] for r in rows] == [0, 2, 4]
            new_id = await conn.fetchval("insert into t_apg(v, n) values ($1, $2) returning id", "x", 1000)
            assert await conn.fetchval("select n from t_apg where id = $1", new_id) == 1000
            await conn.execute("drop table t_apg")
        finally:
            await conn.close()

    asyncio.run(main())


def test_asyncpg_concurrent_clients(tx_pooler):
    async def one(i):
        conn = await asyncpg.connect(host="127.0.0.1", port=tx_pooler.port, user="postgres", database="postgres",
                                     statement_cache_size=0)
        try:
            total = 0
            for j in range(20):
                total += await conn.fetchval("select $1::int * $2::int", i, j)
            return total
        finally:
            await conn.close()

    async def main():
        return await asyncio.gather(*(one(i) for i in range(30)))

    results = asyncio.run(main())
    assert results == [i * sum(range(20)) for i in range(30)]
