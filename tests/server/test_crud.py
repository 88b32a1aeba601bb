"""psycopg 3 CRUD against pgbundle server: parameters, transactions, unique violation,
rollback, savepoints, NOT NULL, COPY, binary results."""

from __future__ import annotations

import datetime
import decimal

import psycopg
import pytest
from psycopg import errors


def test_crud_with_parameters(server):
    with server.connect() as c:
        c.execute("create table items (id serial primary key, name text not null, qty int, price numeric(10,2), "
                  "created timestamptz default now())")
        for i in range(20):
            c.execute("insert into items (name, qty, price) values (%s, %s, %s)", (f"n{i}", i, decimal.Decimal("1.50")))
        cur = c.execute("select id, name, qty, price from items where qty > %s order by id", (15,))
        rows = cur.fetchall()
        assert [r[2] for r in rows] == [16, 17, 18, 19]
        assert rows[0][3] == decimal.Decimal("1.50")
        c.execute("update items set qty = qty + %s where name = %s", (100, "n3"))
        assert c.execute("select qty from items where name = 'n3'").fetchone() == (103,)
        c.execute("delete from items where qty < %s", (5,))
        assert c.execute("select count(*) from items").fetchone() == (16,)
        r = c.execute("insert into items (name, qty) values ('ret', 1) returning id, name").fetchone()
        assert r[1] == "ret" and r[0] > 20
        created = c.execute("select created from items where name = 'ret'").fetchone()[0]
        assert isinstance(created, datetime.datetime)
        c.execute("drop table items")


def test_transactions_commit_and_rollback(server):
    with server.connect() as a, server.connect() as b:
        a.execute("create table tx (id int primary key, v text)")
        with a.transaction():
            a.execute("insert into tx values (1, 'one')")
            # not visible to another session before commit
            assert b.execute("select count(*) from tx").fetchone() == (0,)
        assert b.execute("select v from tx where id = 1").fetchone() == ("one",)
        with pytest.raises(RuntimeError):
            with a.transaction():
                a.execute("insert into tx values (2, 'two')")
                raise RuntimeError("roll back")
        assert b.execute("select count(*) from tx").fetchone() == (1,)
        a.execute("drop table tx")


def test_unique_violation_and_aborted_transaction(server):
    with server.connect(autocommit=False) as c:
        c.execute("create table u (id int primary key, email text unique)")
        c.execute("insert into u values (1, 'a@x')")
        c.commit()
        with pytest.raises(errors.UniqueViolation) as ei:
            c.execute("insert into u values (1, 'b@x')")
        assert ei.value.sqlstate == "23505"
        assert 'violates unique constraint "u_pkey"' in str(ei.value)
        assert ei.value.diag.message_detail == "Key (id)=(1) already exists."
        with pytest.raises(errors.InFailedSqlTransaction):
            c.execute("select 1")
        c.rollback()
        with pytest.raises(errors.UniqueViolation):
            c.execute("insert into u values (2, 'a@x')")
        c.rollback()
        c.execute("insert into u values (2, 'b@x')")
        c.commit()
        assert c.execute("select count(*) from u").fetchone() == (2,)
        c.commit()
        c.execute("drop table u")
        c.commit()


def test_savepoints_and_not_null(server):
    with server.connect() as c:
        c.execute("create table sp (id int primary key, v text not null)")
        with c.transaction():
            c.execute("insert into sp values (1, 'keep')")
            with pytest.raises(errors.UniqueViolation):
                with c.transaction():
                    c.execute("insert into sp values (2, 'gone')")
                    c.execute("insert into sp values (1, 'dup')")
            c.execute("insert into sp values (3, 'keep too')")
        assert c.execute("select id from sp order by id").fetchall() == [(1,), (3,)]
        with pytest.raises(errors.NotNullViolation):
            c.execute("insert into sp values (4, null)")
        c.execute("drop table sp")


def test_copy_in_and_out(server):
    with server.connect() as c:
        c.execute("create table cp (id int primary key, v text)")
        with c.cursor() as cur:
            with cur.copy("copy cp from stdin") as cp:
                for i in range(500):
                    cp.write_row((i, f"v{i}"))
        assert c.execute("select count(*), sum(id) from cp").fetchone() == (500, sum(range(500)))
        out = []
        with c.cursor() as cur:
            with cur.copy("copy (select id, v from cp where id < 3 order by id) to stdout") as cp:
                for row in cp.rows():
                    out.append(row)
        assert out == [("0", "v0"), ("1", "v1"), ("2", "v2")]
        c.execute("drop table cp")


def test_bad_sql_is_an_error_not_a_disconnect(server):
    with server.connect() as c:
        with pytest.raises(errors.UndefinedTable):
            c.execute("select * from no_such_table")
        with pytest.raises(psycopg.errors.SyntaxError):
            c.execute("selec 1")
        assert c.execute("select 1").fetchone() == (1,)
