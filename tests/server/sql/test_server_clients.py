"""Real clients against ``pgbundle server``: psycopg 3 CRUD with parameters,
transactions, unique violation and rollback; asyncpg; psql meta-commands;
pgbench; the pg_stat_* views."""

from __future__ import annotations

import asyncio
import decimal
import json
import subprocess

import psycopg
import pytest
from sqlalchemy import ForeignKey, Integer, Numeric, String, create_engine, inspect, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, joinedload, mapped_column, relationship

Decimal = decimal.Decimal


def test_psycopg_crud_with_parameters(server):
    with psycopg.connect(server.dsn()) as conn:
        conn.execute("DROP TABLE IF EXISTS crud")
        conn.execute("CREATE TABLE crud (id serial PRIMARY KEY, name text NOT NULL, qty int, "
                     "price numeric(10,2), created timestamptz DEFAULT now())")
        rid = conn.execute("INSERT INTO crud (name, qty, price) VALUES (%s, %s, %s) RETURNING id",
                           ("apple", 3, decimal.Decimal("1.25"))).fetchone()[0]
        assert rid == 1
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO crud (name, qty, price) VALUES (%s, %s, %s)",
                            [("pear", 5, decimal.Decimal("0.5")), ("plum", 7, None)])
        rows = conn.execute("SELECT id, name, qty, price FROM crud WHERE qty > %s ORDER BY id", (1,)).fetchall()
        assert rows == [(1, "apple", 3, decimal.Decimal("1.25")), (2, "pear", 5, decimal.Decimal("0.50")),
                        (3, "plum", 7, None)]
        assert conn.execute("UPDATE crud SET qty = qty + %s WHERE name = %s", (1, "apple")).rowcount == 1
        assert conn.execute("DELETE FROM crud WHERE id = %s", (3,)).rowcount == 1
        conn.commit()
        with conn.cursor(binary=True) as cur:
            assert cur.execute("SELECT count(*), sum(qty) FROM crud WHERE name <> %s", ("x",)).fetchone() == (2, 9)
        # prepared after 5 executions (psycopg's prepare_threshold)
        for i in range(8):
            conn.execute("SELECT name FROM crud WHERE id = %s", (i,))
        conn.rollback()
        with conn.pipeline():
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO crud (name, qty) VALUES (%s, %s)", [(f"n{i}", i) for i in range(5)])
        conn.commit()
        assert conn.execute("SELECT count(*) FROM crud").fetchone() == (7,)


def test_transactions_unique_violation_and_rollback(server):
    with psycopg.connect(server.dsn()) as conn:
        conn.execute("DROP TABLE IF EXISTS tx")
        conn.execute("CREATE TABLE tx (id int PRIMARY KEY, v text)")
        conn.commit()
        conn.execute("INSERT INTO tx VALUES (%s, %s)", (1, "a"))
        conn.commit()
        conn.execute("INSERT INTO tx VALUES (%s, %s)", (2, "b"))
        with pytest.raises(psycopg.errors.UniqueViolation) as ei:
            conn.execute("INSERT INTO tx VALUES (%s, %s)", (1, "dup"))
        assert ei.value.diag.message_primary == 'duplicate key value violates unique constraint "tx_pkey"'
        assert ei.value.diag.message_detail == "Key (id)=(1) already exists."
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        assert conn.execute("SELECT id, v FROM tx ORDER BY id").fetchall() == [(1, "a")]
        conn.commit()
        # savepoints
        conn.execute("INSERT INTO tx VALUES (3, 'c')")
        with pytest.raises(psycopg.errors.UniqueViolation):
            with conn.transaction():
                conn.execute("INSERT INTO tx VALUES (3, 'again')")
        conn.execute("INSERT INTO tx VALUES (4, 'd')")
        conn.commit()
        assert [r[0] for r in conn.execute("SELECT id FROM tx ORDER BY id")] == [1, 3, 4]
        conn.commit()
    with psycopg.connect(server.dsn(), autocommit=True) as c2:
        with pytest.raises(psycopg.errors.UndefinedTable) as ei:
            c2.execute("SELECT * FROM nosuch")
        assert ei.value.diag.message_primary == 'relation "nosuch" does not exist'
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            c2.execute("SELECT 'x'::int")
        with pytest.raises(psycopg.errors.SyntaxError):
            c2.execute("SELEC 1")
        with pytest.raises(psycopg.errors.UndefinedColumn):
            c2.execute("SELECT nosuch FROM tx")


def test_pg_stat_views(server):
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS st")
        conn.execute("CREATE TABLE st (id int PRIMARY KEY)")
        conn.execute("INSERT INTO st SELECT g FROM generate_series(1, 10) g")
        types = {r[0] for r in conn.execute("SELECT backend_type FROM pg_stat_activity WHERE pid IS NOT NULL")}
        assert {"client backend", "checkpointer", "background writer", "autovacuum launcher"} <= types
        me = conn.execute("SELECT pid, state, query FROM pg_stat_activity WHERE pid = pg_backend_pid()").fetchone()
        assert me[1] == "active"
        d = conn.execute("SELECT xact_commit, blks_hit FROM pg_stat_database WHERE datname = current_database()"
                         ).fetchone()
        assert d[0] > 0
        conn.execute("CHECKPOINT")
        conn.execute("SELECT * FROM pg_stat_bgwriter").fetchone()
        conn.execute("SELECT num_requested FROM pg_stat_checkpointer").fetchone()
        assert conn.execute("SELECT count(*) FROM pg_settings WHERE name = 'shared_buffers'").fetchone() == (1,)
        assert conn.execute("SHOW transaction isolation level").fetchone() == ("read committed",)
        conn.execute("VACUUM st")


def test_asyncpg(server):
    import asyncpg

    async def main():
        c = await asyncpg.connect(server.url())
        await c.execute("DROP TABLE IF EXISTS crud_apg")
        await c.execute("CREATE TABLE crud_apg (id serial PRIMARY KEY, name text NOT NULL, qty int, "
                        "price numeric(10,2), created timestamptz DEFAULT now())")
        async with c.transaction():
            rid = await c.fetchval("INSERT INTO crud_apg (name, qty, price) VALUES ($1, $2, $3) RETURNING id",
                                   "apple", 3, decimal.Decimal("1.25"))
            await c.executemany("INSERT INTO crud_apg (name, qty, price) VALUES ($1, $2, $3)",
                                [("pear", 5, decimal.Decimal("0.5")), ("plum", 1, None)])
        rows = await c.fetch("SELECT id, name, qty, price FROM crud_apg WHERE qty > $1 ORDER BY id", 1)
        j = await c.fetchval("SELECT $1::jsonb", json.dumps({"a": 1}))
        arr = await c.fetchval("SELECT array_agg(id ORDER BY id) FROM crud_apg")
        await c.execute("SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;")
        await c.close()
        return rid, [tuple(r) for r in rows], j, arr
    rid, rows, j, arr = asyncio.run(main())
    assert rid == 1
    assert rows == [(1, "apple", 3, decimal.Decimal("1.25")), (2, "pear", 5, decimal.Decimal("0.50"))]
    assert json.loads(j) == {"a": 1}
    assert arr == [1, 2, 3]


def _psql(server, cmd: str) -> str:
    out = subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", "-d",
                          "postgres", "-c", cmd], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_psql_meta_commands(server):
    _psql(server, "CREATE TABLE IF NOT EXISTS shown (id serial PRIMARY KEY, name varchar(20) NOT NULL)")
    assert "shown" in _psql(server, r"\d")
    assert "shown" in _psql(server, r"\dt")
    assert "postgres" in _psql(server, r"\l")
    t = _psql(server, r"\d shown")
    assert "nextval('shown_id_seq'::regclass)" in t
    assert "character varying(20)" in t
    assert '"shown_pkey" PRIMARY KEY, btree (id)' in t


def test_pgbench_init_and_run(server):
    base = ["-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres"]
    r = subprocess.run(["pgbench", "-i", "-s", "1", *base, "postgres"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for mode in ("simple", "extended", "prepared"):
        # -n: no vacuum/truncate before the run, so pgbench_history keeps every transaction
        r = subprocess.run(["pgbench", "-n", "-c", "1", "-t", "30", "-M", mode, *base, "postgres"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        assert "number of transactions actually processed: 30/30" in r.stdout
    r = subprocess.run(["pgbench", "-n", "-S", "-c", "2", "-t", "50", *base, "postgres"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        a, = conn.execute("SELECT sum(abalance) FROM pgbench_accounts").fetchone()
        t, = conn.execute("SELECT sum(tbalance) FROM pgbench_tellers").fetchone()
        b, = conn.execute("SELECT sum(bbalance) FROM pgbench_branches").fetchone()
        h, n = conn.execute("SELECT sum(delta), count(*) FROM pgbench_history").fetchone()
        assert n == 90
        assert a == t == b == h


def test_sqlalchemy_orm_and_reflection(server):
    class Base(DeclarativeBase):
        pass

    class Owner(Base):
        __tablename__ = "sa_owner"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(50))
        items: Mapped[list["Item"]] = relationship(back_populates="owner")

    class Item(Base):
        __tablename__ = "sa_item"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(50))
        qty: Mapped[int] = mapped_column(Integer)
        price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
        owner_id: Mapped[int] = mapped_column(ForeignKey("sa_owner.id"))
        owner: Mapped[Owner] = relationship(back_populates="items")

    eng = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/postgres")
    try:
        Base.metadata.drop_all(eng)
        Base.metadata.create_all(eng)
        with Session(eng) as s:
            o = Owner(name="ann")
            s.add(o)
            s.add_all([Item(name=f"i{i}", qty=i, price=Decimal("1.25") * i, owner=o) for i in range(5)])
            s.commit()
            got = s.scalars(select(Item).where(Item.qty > 1).order_by(Item.id)).all()
            assert [(i.name, i.qty, i.price) for i in got] == [("i2", 2, Decimal("2.50")), ("i3", 3, Decimal("3.75")),
                                                                ("i4", 4, Decimal("5.00"))]
            s.get(Item, 2).qty = 40
            s.delete(s.get(Item, 1))
            s.commit()
            ow = s.scalars(select(Owner).options(joinedload(Owner.items))).unique().one()
            assert sorted(i.name for i in ow.items) == ["i1", "i2", "i3", "i4"]
        insp = inspect(eng)
        assert {"sa_owner", "sa_item"} <= set(insp.get_table_names())
        assert [c["name"] for c in insp.get_columns("sa_item")] == ["id", "name", "qty", "price", "owner_id"]
        assert insp.get_pk_constraint("sa_item")["constrained_columns"] == ["id"]
        fk = insp.get_foreign_keys("sa_item")
        assert fk[0]["referred_table"] == "sa_owner" and fk[0]["constrained_columns"] == ["owner_id"]
        Base.metadata.drop_all(eng)
    finally:
        eng.dispose()


def test_asyncpg_enum_column(server):
    import asyncpg

    async def main():
        c = await asyncpg.connect(server.url())
        await c.execute("DROP TABLE IF EXISTS moods; DROP TYPE IF EXISTS mood CASCADE")
        await c.execute("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')")
        await c.execute("CREATE TABLE moods (id serial PRIMARY KEY, m mood)")
        await c.execute("INSERT INTO moods (m) VALUES ('ok')")
        await c.execute("INSERT INTO moods (m) VALUES ($1)", "happy")
        found = await c.fetch("SELECT id, m FROM moods WHERE m = $1::mood", "happy")
        labels = await c.fetch("SELECT enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid "
                               "WHERE t.typname = 'mood' ORDER BY enumsortorder")
        try:
            await c.execute("INSERT INTO moods (m) VALUES ('angry')")
            bad = None
        except asyncpg.PostgresError as e:
            bad = e.sqlstate
        await c.execute("DROP TABLE moods; DROP TYPE mood")
        await c.close()
        return [tuple(r) for r in found], [r[0] for r in labels], bad
    found, labels, bad = asyncio.run(main())
    assert found == [(2, "happy")]
    assert labels == ["sad", "ok", "happy"]
    assert bad == "22P02"


def test_psql_more_meta_commands(server):
    _psql(server, "CREATE TABLE IF NOT EXISTS shown2 (id int PRIMARY KEY)")
    assert "shown2_pkey" in _psql(server, r"\di")
    assert "public" in _psql(server, r"\dn")
    assert "postgres" in _psql(server, r"\du")
    out = subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", "-d", "postgres",
                          "-c", r"\x", "-c", "select 1 as a, 2 as b", "-c", r"\copy (select 7 as x) to stdout"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "-[ RECORD 1 ]" in out.stdout and "\n7\n" in out.stdout


def test_cursors_and_copy(server):
    import asyncpg

    async def main():
        c = await asyncpg.connect(server.url())
        async with c.transaction():
            total = 0
            async for r in c.cursor("SELECT g FROM generate_series(1, 250) g"):
                total += r[0]
            cur = await c.cursor("SELECT g FROM generate_series(1, 10) g")
            first = [r[0] for r in await cur.fetch(3)]
        arrays = (await c.fetchval("SELECT $1::int[]", [1, 2, 3]), await c.fetchval("SELECT $1::text[]", ["a", None]))
        await c.close()
        return total, first, arrays
    total, first, arrays = asyncio.run(main())
    assert total == sum(range(1, 251)) and first == [1, 2, 3]
    assert arrays == ([1, 2, 3], ["a", None])
    with psycopg.connect(server.dsn()) as conn:
        with conn.cursor(name="srv") as cur:
            cur.execute("SELECT g FROM generate_series(1, 1000) g")
            assert sum(r[0] for r in cur) == 500500
        with conn.cursor() as cur:
            with cur.copy("COPY (SELECT g, 'x' FROM generate_series(1, 3) g) TO STDOUT") as cp:
                assert list(cp.rows()) == [("1", "x"), ("2", "x"), ("3", "x")]
            cur.execute("DROP TABLE IF EXISTS cpt")
            cur.execute("CREATE TABLE cpt (a int, b text)")
            with cur.copy("COPY cpt (a, b) FROM STDIN") as cp:
                for i in range(5):
                    cp.write_row((i, f"r{i}"))
            assert cur.execute("SELECT count(*), sum(a) FROM cpt").fetchone() == (5, 10)


def test_cancel_long_statements(server):
    import threading
    import time

    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        for sql in ("SELECT pg_sleep(30)", "SELECT count(*) FROM generate_series(1, 30000000) a"):
            timer = threading.Timer(0.5, conn.cancel)
            timer.start()
            t0 = time.monotonic()
            with pytest.raises(psycopg.errors.QueryCanceled) as ei:
                conn.execute(sql)
            timer.join()
            assert ei.value.diag.message_primary == "canceling statement due to user request"
            assert time.monotonic() - t0 < 25
        assert conn.execute("SELECT 1").fetchone() == (1,)
