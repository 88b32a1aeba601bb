"""Real clients, unmodified, against pgbundle server and PostgreSQL 15: the same script on
both, in a fresh database on each, gives the same output wherever the output is
deterministic (issue 7).

* psql: meta-commands (\\d, \\dt, \\di, \\ds, \\dv, \\dT, \\d table, \\d+, \\x, \\timing,
  \\copy) over tables with serials, defaults, CHECK, FOREIGN KEY, DESC indexes, enums, views,
  comments; and a broad SQL script (joins, LATERAL, subqueries, CTEs, set operations,
  aggregates incl. ordered-set ones, window functions with frames, grouping sets, to_char and
  friends, intervals, enums, FETCH directions on a scroll cursor, ON CONFLICT, constraints,
  ALTER TABLE, COPY with options, views), errors included.
* psycopg 3: parameters, binary results, pipeline mode, COPY text and binary, named and
  scrollable cursors, auto-prepared statements, error details.
* asyncpg: enum and jsonb columns, arrays, executemany, cursors (MOVE on a portal), prepared
  statements and their introspection, COPY in and out.
* SQLAlchemy 2 ORM: create_all, relationships loaded with joins and selectin,
  insertmanyvalues, delete cascades, and Alembic-style reflection through the Inspector.
* pgbench: -i, then tpcb-like, simple-update and select-only in simple, extended and
  prepared mode with -C (a connection per transaction); balances stay consistent and
  ``\\d pgbench_accounts`` matches.
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import json
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest

SCRIPTS = Path(__file__).with_name("scripts")


def _fresh_db(dsn_port: int, name: str) -> None:
    with psycopg.connect(f"host=127.0.0.1 port={dsn_port} user=postgres dbname=postgres", autocommit=True) as c:
        c.execute(f"drop database if exists {name}")
        c.execute(f"create database {name}")


@pytest.fixture(scope="module")
def both(pg, server):
    """(PostgreSQL port, pgbundle port)."""
    return pg.port, server.port


def _psql(port: int, db: str, script: Path) -> str:
    r = subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", db, "-f",
                        str(script)], capture_output=True, text=True, timeout=120, cwd=str(script.parent))
    lines = (r.stdout + r.stderr).splitlines()
    return "\n".join(ln for ln in lines if not ln.startswith("Time: "))


@pytest.mark.parametrize("script", ["psql_meta.sql", "sql_breadth.sql"])
def test_psql_script_matches_postgres(both, script):
    outs = []
    for port in both:
        _fresh_db(port, "cmp_psql")
        outs.append(_psql(port, "cmp_psql", SCRIPTS / script))
    pg_out, ours = outs
    assert "ERROR" not in pg_out or script == "sql_breadth.sql"
    assert ours == pg_out


def test_psql_dn_du_l_list_our_objects(server):
    _fresh_db(server.port, "cmp_list")
    base = ["psql", "-X", "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", "-d", "cmp_list"]
    subprocess.run(base + ["-c", "create schema listed; create role listed_role"], check=True, capture_output=True)
    try:
        assert "listed" in subprocess.run(base + ["-c", r"\dn"], capture_output=True, text=True).stdout
        assert "listed_role" in subprocess.run(base + ["-c", r"\du"], capture_output=True, text=True).stdout
        out = subprocess.run(base + ["-c", r"\l"], capture_output=True, text=True).stdout
        assert "cmp_list" in out and "UTF8" in out
    finally:
        subprocess.run(base + ["-c", "drop role listed_role"], capture_output=True)


# ----------------------------------------------------------------------------- psycopg 3


def _psycopg_script(port: int) -> list:
    out: list = []
    with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=cmp_pg3") as c:
        c.execute("create table pg3_t (id serial primary key, name text not null, qty int, price numeric(10,2), "
                  "created timestamptz default '2024-01-01', j jsonb, tags text[])")
        with c.cursor() as cur:
            cur.executemany("insert into pg3_t (name, qty, price, j, tags) values (%s, %s, %s, %s, %s)",
                            [(f"n{i}", i, decimal.Decimal(i) / 4, psycopg.types.json.Jsonb({"i": i}), [str(i), "x"])
                             for i in range(20)])
            out.append(cur.execute("select count(*), sum(qty), sum(price) from pg3_t").fetchone())
            out.append(cur.execute("select * from pg3_t where qty > %s order by id limit 3", (15,)).fetchall())
        with c.cursor(binary=True) as cur:
            out.append(cur.execute("select id, name, qty, price, created, j, tags from pg3_t where id = %s",
                                   (3,)).fetchone())
            out.append(cur.execute("select %s::int8, %s::float8, %s::bool, %s::date, %s::bytea, %s::uuid",
                                   (2**40, 1.5, True, datetime.date(2020, 1, 1), b"ab", uuid.UUID(int=7))).fetchone())
        c.commit()
        with c.pipeline():
            for i in range(5):
                c.execute("update pg3_t set qty = qty + %s where id = %s", (100, i + 1))
            cur = c.execute("select sum(qty) from pg3_t")
        out.append(cur.fetchone())
        c.commit()
        with c.cursor() as cur:
            with cur.copy("copy pg3_t (name, qty) from stdin") as cp:
                for i in range(5):
                    cp.write_row((f"c{i}", i))
            with cur.copy("copy (select name, qty from pg3_t where name like 'c%%' order by id) to stdout") as cp:
                out.append(list(cp.rows()))
            with cur.copy("copy pg3_t (name, qty) from stdin (format binary)") as cp:
                cp.set_types(["text", "int4"])
                cp.write_row(("bin", 7))
            with cur.copy("copy (select name, qty from pg3_t where qty = 7 order by id) to stdout (format binary)"
                          ) as cp:
                cp.set_types(["text", "int4"])
                out.append(list(cp.rows()))
        c.commit()
        with c.cursor("named") as cur:
            cur.execute("select id from pg3_t order by id")
            out.append(cur.fetchmany(3))
            out.append(cur.fetchone())
            cur.scroll(2)
            out.append(cur.fetchone())
        c.commit()
        with c.cursor("scr", scrollable=True) as cur:
            cur.execute("select id from pg3_t order by id")
            out.append(cur.fetchmany(3))
            cur.scroll(-2)
            out.append(cur.fetchone())
            cur.scroll(0, mode="absolute")
            out.append(cur.fetchone())
        c.commit()
        for i in range(7):  # the 6th and 7th go through an auto-prepared statement
            out.append(c.execute("select name from pg3_t where id = %s", (i + 1,)).fetchone())
        try:
            c.execute("insert into pg3_t (id, name) values (1, 'dup')")
        except psycopg.errors.UniqueViolation as e:
            out.append(("uv", e.diag.constraint_name, e.diag.table_name, e.diag.message_detail))
        c.rollback()
        c.execute("create type pg3_e as enum ('a', 'b')")
        info = psycopg.types.enum.EnumInfo.fetch(c, "pg3_e")
        out.append((info.name, info.labels))
        out.append(str(psycopg.types.TypeInfo.fetch(c, "int4")))
        c.commit()
    return out


def test_psycopg_matches_postgres(both):
    res = []
    for port in both:
        _fresh_db(port, "cmp_pg3")
        res.append(_psycopg_script(port))
    assert res[1] == res[0]


# ----------------------------------------------------------------------------- asyncpg


async def _asyncpg_script(port: int) -> list:
    import asyncpg
    out: list = []
    c = await asyncpg.connect(host="127.0.0.1", port=port, user="postgres", database="cmp_apg")
    try:
        await c.execute("create type apg_mood as enum ('sad', 'ok', 'happy')")
        await c.execute("create table apg_t (id serial primary key, m apg_mood, j jsonb, a int[], t text[], "
                        "n numeric(10,3), ts timestamptz, d date, b bytea, u uuid, f float8, iv interval, bo bool)")
        await c.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
        await c.executemany(
            "insert into apg_t (m, j, a, t, n, ts, d, b, u, f, iv, bo) values ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)",
            [("sad", {"k": 1, "l": [1, 2]}, [1, 2, 3], ["x", "y"], decimal.Decimal("1.500"),
              datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc), datetime.date(2024, 2, 29),
              b"\x00\x01", uuid.UUID(int=5), 1.5, datetime.timedelta(days=3, seconds=7), True),
             ("happy", {"k": 2}, [], ["z"], decimal.Decimal("-2"), None, None, None, None, None, None, None),
             ("ok", None, None, None, None, None, None, None, None, None, None, False)])
        out.append([list(r.items()) for r in await c.fetch("select * from apg_t order by id")])
        out.append(await c.fetchval("select count(*) from apg_t where m = $1", "happy"))
        out.append(tuple(await c.fetchrow("select m, j->'k' as k from apg_t where id = $1", 1)))
        out.append([r["m"] for r in await c.fetch("select m from apg_t order by m")])
        out.append([r["m"] for r in await c.fetch("select m from apg_t where m > 'sad' order by m desc")])
        out.append(await c.fetchval("select $1::int[] || 4", [1, 2]))
        async with c.transaction():
            cur = await c.cursor("select generate_series(1, 10) as g")
            out.append([r["g"] for r in await cur.fetch(3)])
            out.append((await cur.fetchrow())["g"])
            await cur.forward(2)
            out.append([r["g"] for r in await cur.fetch(2)])
            n = 0
            async for r in c.cursor("select * from generate_series(1, 25) g", prefetch=4):
                n += r["g"]
            out.append(n)
        st = await c.prepare("select id, m from apg_t where id > $1 order by id")
        out.append([tuple(r) for r in await st.fetch(1)])
        out.append([(p.name, p.kind) for p in st.get_parameters()])
        out.append([a.name for a in st.get_attributes()])
        try:
            await c.execute("insert into apg_t (id) values (1)")
        except asyncpg.UniqueViolationError as e:
            out.append(("unique", e.sqlstate, e.constraint_name, e.table_name))
        await c.copy_records_to_table("apg_t", records=[(100, "ok")], columns=["id", "m"])
        out.append(await c.fetchval("select m from apg_t where id = 100"))
        chunks: list[bytes] = []

        async def sink(b: bytes) -> None:
            chunks.append(bytes(b))
        await c.copy_from_query("select id, m from apg_t order by id", output=sink)
        out.append(b"".join(chunks))
    finally:
        await c.close()
    return out


def test_asyncpg_matches_postgres(both):
    res = []
    for port in both:
        _fresh_db(port, "cmp_apg")
        res.append(asyncio.run(_asyncpg_script(port)))
    assert res[1] == res[0]


# ----------------------------------------------------------------------------- SQLAlchemy 2


import enum  # noqa: E402

from sqlalchemy import (  # noqa: E402
    Boolean,
    CheckConstraint,
    Enum as SAEnum,  # noqa: E402
    ForeignKey,
    Index,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB  # noqa: E402
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, joinedload, mapped_column, relationship, selectinload  # noqa: E402


class Base(DeclarativeBase):
    pass


class Color(enum.Enum):
    red = 1
    green = 2


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    fullname: Mapped[str | None] = mapped_column(Text, comment="full name")
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    color: Mapped[Color] = mapped_column(SAEnum(Color), default=Color.red)
    data: Mapped[dict | None] = mapped_column(JSONB)
    tags: Mapped[list | None] = mapped_column(ARRAY(String))
    addresses: Mapped[list[Address]] = relationship(back_populates="user", cascade="all, delete-orphan",
                                                    order_by="Address.id")
    __table_args__ = (CheckConstraint("length(name) > 0", name="name_nonempty"), {"comment": "people"})


class Address(Base):
    __tablename__ = "addresses"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(100), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    amount: Mapped[decimal.Decimal] = mapped_column(Numeric(10, 2), default=0)
    user: Mapped[User] = relationship(back_populates="addresses")
    __table_args__ = (UniqueConstraint("user_id", "email", name="uq_user_email"),
                      Index("ix_amount_desc", amount.desc()))


def _sqlalchemy_script(port: int) -> list:
    out: list = []
    eng = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/cmp_sa")
    try:
        Base.metadata.create_all(eng)
        with Session(eng) as s:
            s.add_all([User(name=f"u{i}", fullname=f"User {i}", data={"i": i}, tags=["a", str(i)],
                            addresses=[Address(email=f"{i}@x", amount=decimal.Decimal("1.5") * i),
                                       Address(email=f"{i}@y")]) for i in range(5)])  # insertmanyvalues
            s.commit()
            for u in s.scalars(select(User).options(joinedload(User.addresses)).order_by(User.id)).unique():
                out.append((u.id, u.name, u.active, u.color.name, u.data, u.tags,
                            [(a.email, str(a.amount)) for a in u.addresses]))
            for u in s.scalars(select(User).options(selectinload(User.addresses))
                               .where(User.name.in_(["u1", "u3"])).order_by(User.id)):
                out.append((u.name, len(u.addresses)))
            out.append(s.execute(select(func.count(Address.id), func.sum(Address.amount)).join(User)
                                 .where(User.active)).all())
            s.delete(s.get(User, 2))
            s.commit()
            out.append(s.scalar(select(func.count()).select_from(Address)))
            out.append(s.execute(select(User.name, func.count(Address.id)).outerjoin(Address).group_by(User.name)
                                 .order_by(User.name)).all())
        insp = inspect(eng)
        out.append(sorted(insp.get_table_names()))
        for t in ("users", "addresses"):
            out.append([(c["name"], str(c["type"]), c["nullable"], c.get("default"), c.get("comment"))
                        for c in insp.get_columns(t)])
            out.append(insp.get_pk_constraint(t))
            out.append(insp.get_foreign_keys(t))
            out.append(sorted(insp.get_indexes(t), key=lambda i: i["name"]))
            out.append(insp.get_unique_constraints(t))
            out.append(insp.get_check_constraints(t))
            out.append(insp.get_table_comment(t))
        out.append(insp.get_enums())
        out.append(sorted(insp.get_sequence_names()))
        Base.metadata.drop_all(eng)
        out.append(inspect(eng).get_table_names())
    finally:
        eng.dispose()
    return out


def test_sqlalchemy_orm_and_reflection_match_postgres(both):
    res = []
    for port in both:
        _fresh_db(port, "cmp_sa")
        res.append(_sqlalchemy_script(port))
    assert res[1] == res[0]


# ----------------------------------------------------------------------------- pgbench


def test_pgbench_builtin_scripts_all_modes_with_connect(both):
    pg_port, port = both
    base = ["-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
    _fresh_db(port, "cmp_bench")
    r = subprocess.run(["pgbench", "-i", "-s", "1", "-q", *base, "cmp_bench"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    for builtin in ("tpcb-like", "simple-update", "select-only"):
        for mode in ("simple", "extended", "prepared"):
            r = subprocess.run(["pgbench", "-n", "-C", "-c", "2", "-t", "8", "-b", builtin, "-M", mode, *base,
                                "cmp_bench"], capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, (builtin, mode, r.stdout, r.stderr)
            assert "number of transactions actually processed: 16/16" in r.stdout, r.stdout
    with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=cmp_bench") as c:
        a, t, b = c.execute("select (select sum(abalance) from pgbench_accounts), "
                            "(select sum(tbalance) from pgbench_tellers), "
                            "(select sum(bbalance) from pgbench_branches)").fetchone()
        h, n = c.execute("select sum(delta), count(*) from pgbench_history").fetchone()
    # simple-update changes accounts and history only, tpcb-like all four
    assert a == h and t == b and n == 3 * 16 * 2
    # \d of pgbench's table as on PostgreSQL
    _fresh_db(pg_port, "cmp_bench")
    r = subprocess.run(["pgbench", "-i", "-s", "1", "-q", "-h", "127.0.0.1", "-p", str(pg_port), "-U", "postgres",
                        "cmp_bench"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    outs = []
    for p in (pg_port, port):
        outs.append(subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-p", str(p), "-U", "postgres", "-d",
                                    "cmp_bench", "-c", r"\d pgbench_accounts", "-c", r"\d pgbench_history"],
                                   capture_output=True, text=True).stdout)
    assert outs[1] == outs[0]
