"""Transaction pooling that keeps session semantics: prepared statements (protocol and SQL),
every SET, LISTEN/NOTIFY, pinning for advisory locks / temp tables / WITH HOLD cursors,
pipelines."""

from __future__ import annotations

import asyncio

import asyncpg
import psycopg
import pytest
from sqlalchemy import ForeignKey, String, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, selectinload

from .helpers import base_args, connect, pool_row
from .test_limits import wait_for
from .test_pgbench import failed, pgbench, processed


@pytest.fixture
def tx5(pg, pooler_factory):
    return pooler_factory(base_args(pg, "--pool-mode", "transaction", "--pool-size", "5",
                                    "--admin-users", "postgres", "--max-connections", "200"))


@pytest.mark.parametrize("mode", ["prepared", "extended"])
def test_pgbench_prepared_and_extended(pg, tx5, mode):
    pgbench(pg.port, "-i", "-s", "1", "-q")
    out = pgbench(tx5.port, "-n", "-M", mode, "-c", "20", "-j", "2", "-T", "5")
    assert failed(out) == 0 and processed(out) > 0, out
    out = pgbench(tx5.port, "-n", "-M", mode, "-S", "-c", "20", "-j", "2", "-T", "3")
    assert failed(out) == 0 and processed(out) > 0, out


def test_asyncpg_default_settings_50_clients(pg, tx5):
    pg.sql("drop table if exists apg_items; create table apg_items(id serial primary key, owner int, v text)")

    async def worker(i: int):
        conn = await asyncpg.connect(host="127.0.0.1", port=tx5.port, user="postgres", database="postgres")
        try:
            await conn.executemany("insert into apg_items(owner, v) values ($1, $2)",
                                   [(i, f"{i}-{j}") for j in range(5)])
            for _ in range(3):
                assert await conn.fetchval("select count(*) from apg_items where owner = $1", i) == 5
                row = await conn.fetchrow("select owner, v from apg_items where owner = $1 and v = $2", i, f"{i}-3")
                assert tuple(row) == (i, f"{i}-3")
                rows = await conn.fetch("select v from apg_items where owner = $1 order by v", i)
                assert [r["v"] for r in rows] == [f"{i}-{j}" for j in range(5)]
            async with conn.transaction():
                await conn.execute("update apg_items set v = v || '!' where owner = $1", i)
                assert await conn.fetchval("select count(*) from apg_items where owner = $1 and v like '%!'", i) == 5
            try:
                async with conn.transaction():
                    await conn.execute("delete from apg_items where owner = $1", i)
                    raise RuntimeError("roll back")
            except RuntimeError:
                pass
            return await conn.fetchval("select count(*) from apg_items where owner = $1", i)
        finally:
            await conn.close()

    async def main():
        return await asyncio.gather(*(worker(i) for i in range(50)))

    assert asyncio.run(main()) == [5] * 50
    assert int(pg.sql("select count(*) from apg_items")) == 250


def test_asyncpg_pool_reset_and_statement_cache(tx5):
    async def main():
        pool = await asyncpg.create_pool(host="127.0.0.1", port=tx5.port, user="postgres", database="postgres",
                                         min_size=3, max_size=10)
        try:
            async def job(i):
                async with pool.acquire() as c:
                    return await c.fetchval("select $1::int * 2", i)
            return await asyncio.gather(*(job(i) for i in range(100)))
        finally:
            await pool.close()

    assert asyncio.run(main()) == [i * 2 for i in range(100)]


def test_psycopg_prepare_threshold_zero_and_pipeline(tx5):
    with psycopg.connect(tx5.dsn(), autocommit=True, prepare_threshold=0) as conn:
        conn.execute("drop table if exists ps_items")
        conn.execute("create table ps_items(id int primary key, v text)")
        for i in range(10):
            conn.execute("insert into ps_items values (%s, %s)", (i, f"v{i}"))
        assert conn.execute("select count(*) from ps_items where id < %s", (5,)).fetchone() == (5,)
        with conn.pipeline():
            cur = conn.cursor()
            for i in range(10, 40):
                cur.execute("insert into ps_items values (%s, %s)", (i, f"v{i}"))
            cur.executemany("update ps_items set v = v || %s where id = %s", [("+", i) for i in range(10, 20)])
            cur.execute("select count(*) from ps_items where v like %s", ("%+",))
        assert cur.fetchone() == (10,)
        assert conn.execute("select count(*) from ps_items").fetchone() == (40,)


def test_psycopg_executemany_many_connections(tx5):
    conns = [psycopg.connect(tx5.dsn(), autocommit=True) for _ in range(10)]
    try:
        conns[0].execute("drop table if exists em_items; create table em_items(c int, n int)")
        for k, c in enumerate(conns):
            c.cursor().executemany("insert into em_items values (%s, %s)", [(k, n) for n in range(20)])
        for k, c in enumerate(conns):
            assert c.execute("select sum(n) from em_items where c = %s", (k,)).fetchone() == (190,)
    finally:
        for c in conns:
            c.close()


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "sa_author"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    books: Mapped[list[Book]] = relationship(back_populates="author")


class Book(Base):
    __tablename__ = "sa_book"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(100))
    author_id: Mapped[int] = mapped_column(ForeignKey("sa_author.id"))
    author: Mapped[Author] = relationship(back_populates="books")


def test_sqlalchemy_orm_on_asyncpg(tx5):
    async def main():
        engine = create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{tx5.port}/postgres")
        try:
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.drop_all)
                await conn.run_sync(Base.metadata.create_all)
            Session = async_sessionmaker(engine, expire_on_commit=False)
            async with Session() as s:
                for i in range(5):
                    a = Author(name=f"a{i}", books=[Book(title=f"b{i}-{j}") for j in range(3)])
                    s.add(a)
                await s.commit()
            async with Session() as s:
                authors = (await s.scalars(select(Author).options(selectinload(Author.books))
                                           .order_by(Author.name))).all()
                result = [(a.name, sorted(b.title for b in a.books)) for a in authors]
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.drop_all)
            return result
        finally:
            await engine.dispose()

    result = asyncio.run(main())
    assert result == [(f"a{i}", [f"b{i}-{j}" for j in range(3)]) for i in range(5)]


def test_settings_follow_each_client(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "--pool-size", "2"))
    a = connect(p)
    b = connect(p)
    try:
        pg.sql("create schema if not exists sch_a; create schema if not exists sch_b")
        a.execute("set search_path = sch_a, public")
        a.execute("set TimeZone = 'Asia/Tokyo'")
        a.execute("set statement_timeout = '7s'")
        a.execute("set application_name = 'client_a'")
        b.execute("select set_config('search_path', 'sch_b', false)")
        b.execute("set statement_timeout = 1234")
        for _ in range(6):
            for conn, expect in ((a, ("sch_a, public", "Asia/Tokyo", "7s", "client_a")),
                                 (b, ("sch_b", "Etc/UTC", "1234ms", ""))):
                got = conn.execute("select current_setting('search_path'), current_setting('TimeZone'), "
                                   "current_setting('statement_timeout'), current_setting('application_name')"
                                   ).fetchone()
                assert got == expect
        # SET LOCAL is not carried past its transaction; RESET is
        with a.transaction():
            a.execute("set local statement_timeout = '99s'")
        a.execute("reset search_path")
        assert a.execute("select current_setting('statement_timeout'), current_setting('search_path')"
                         ).fetchone() == ("7s", '"$user", public')
        # a SET rolled back with its transaction is undone
        with pytest.raises(RuntimeError):
            with a.transaction():
                a.execute("set statement_timeout = '5min'")
                raise RuntimeError
        assert a.execute("show statement_timeout").fetchone() == ("7s",)
        assert b.execute("show statement_timeout").fetchone() == ("1234ms",)
    finally:
        a.close()
        b.close()


def test_sql_prepare_execute_deallocate(tx5):
    a = connect(tx5)
    b = connect(tx5)
    try:
        a.execute("prepare q(int) as select $1 * 10", prepare=False)
        b.execute("prepare q(int) as select $1 + 1000", prepare=False)  # same name, other client
        for i in range(8):
            assert a.execute(f"execute q({i})", prepare=False).fetchone() == (i * 10,)
            assert b.execute(f"execute q({i})", prepare=False).fetchone() == (i + 1000,)
        a.execute("deallocate q", prepare=False)
        with pytest.raises(psycopg.errors.InvalidSqlStatementName):
            a.execute("execute q(1)", prepare=False)
        a.execute("prepare q(int) as select $1 - 1", prepare=False)
        assert a.execute("execute q(5)", prepare=False).fetchone() == (4,)
        assert b.execute("execute q(5)", prepare=False).fetchone() == (1005,)
        b.execute("deallocate all", prepare=False)
        with pytest.raises(psycopg.errors.InvalidSqlStatementName):
            b.execute("execute q(1)", prepare=False)
        assert a.execute("execute q(6)", prepare=False).fetchone() == (5,)
    finally:
        a.close()
        b.close()


def test_close_and_deallocate_all_spare_other_clients(tx5):
    with psycopg.connect(tx5.dsn(), autocommit=True, prepare_threshold=0) as a, \
            psycopg.connect(tx5.dsn(), autocommit=True, prepare_threshold=0) as b:
        for i in range(3):
            assert a.execute("select %s::int + 1", (i,)).fetchone() == (i + 1,)
            assert b.execute("select %s::int + 1", (i,)).fetchone() == (i + 1,)
        a.execute("deallocate all")  # psycopg does this itself after a ROLLBACK or DDL
        for i in range(3):
            assert b.execute("select %s::int + 1", (i,)).fetchone() == (i + 1,)
            assert a.execute("select %s::int + 1", (i,)).fetchone() == (i + 1,)


def test_listen_notify_in_transaction_mode(tx5):
    listener = connect(tx5)
    notifier = connect(tx5)
    try:
        listener.execute("listen chan_x")
        for i in range(5):  # the listener's server connections change; delivery does not
            listener.execute("select 1")
            notifier.execute("select pg_notify('chan_x', %s)", (f"payload {i} ✓",))
        got = []
        gen = listener.notifies(timeout=5, stop_after=5)
        for n in gen:
            got.append((n.channel, n.payload))
        assert got == [("chan_x", f"payload {i} ✓") for i in range(5)]
        listener.execute("unlisten chan_x")
        notifier.execute("notify chan_x, 'after'")
        assert list(listener.notifies(timeout=0.5)) == []
    finally:
        listener.close()
        notifier.close()


def test_asyncpg_listener(tx5):
    async def main():
        got = asyncio.Queue()
        lc = await asyncpg.connect(host="127.0.0.1", port=tx5.port, user="postgres", database="postgres")
        nc = await asyncpg.connect(host="127.0.0.1", port=tx5.port, user="postgres", database="postgres")
        try:
            await lc.add_listener("chan_y", lambda c, pid, ch, payload: got.put_nowait(payload))
            for i in range(3):
                await nc.execute(f"notify chan_y, 'm{i}'")
            return [await asyncio.wait_for(got.get(), 5) for _ in range(3)]
        finally:
            await lc.close()
            await nc.close()

    assert asyncio.run(main()) == ["m0", "m1", "m2"]


def _server_of(p, client_app: str) -> int:
    return pool_row(p)["sv_active"]


def test_advisory_lock_pins_and_releases(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "--pool-size", "2", "--admin-users", "postgres"))
    a = connect(p)
    other = connect(p)
    try:
        a.execute("select pg_advisory_lock(4242)")
        assert pool_row(p)["sv_active"] == 1  # a keeps its server between transactions
        pid = a.execute("select pg_backend_pid()").fetchone()[0]
        for _ in range(5):
            assert other.execute("select pg_backend_pid()").fetchone()[0] != pid
            assert a.execute("select pg_backend_pid()").fetchone()[0] == pid
        a.execute("select pg_advisory_unlock(4242)")
        wait_for(lambda: pool_row(p)["sv_active"] == 0, what="server released")
    finally:
        a.close()
        other.close()


def test_temp_table_and_hold_cursor_pin(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "--pool-size", "2", "--admin-users", "postgres"))
    a = connect(p)
    try:
        a.execute("create temp table tt(a int)")
        a.execute("insert into tt values (1), (2)")
        assert pool_row(p)["sv_active"] == 1
        with connect(p) as other:
            other.execute("select 1")
        assert a.execute("select count(*) from tt").fetchone() == (2,)
        a.execute("drop table tt")
        wait_for(lambda: pool_row(p)["sv_active"] == 0, what="unpinned after drop")
        a.execute("declare cur cursor with hold for select generate_series(1, 3)")
        assert pool_row(p)["sv_active"] == 1
        assert a.execute("fetch 2 from cur").fetchall() == [(1,), (2,)]
        a.execute("close cur")
        wait_for(lambda: pool_row(p)["sv_active"] == 0, what="unpinned after close")
    finally:
        a.close()


def test_psycopg_statement_cache_eviction(tx5):
    """psycopg evicts from its statement cache with a SQL DEALLOCATE of a protocol-level name."""
    with psycopg.connect(tx5.dsn(), autocommit=True, prepare_threshold=0) as a, \
            psycopg.connect(tx5.dsn(), autocommit=True, prepare_threshold=0) as b:
        a.prepared_max = 2
        for round_ in range(3):
            for k in range(6):
                assert a.execute(f"select %s::int + {k}", (round_,)).fetchone() == (round_ + k,)
                assert b.execute(f"select %s::int * {k}", (round_,)).fetchone() == (round_ * k,)
