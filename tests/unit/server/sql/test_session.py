"""Session protocol behaviour without processes (in-memory engine):
transactions and their status, extended protocol, parameters, notices, COPY,
SET/SHOW, command tags."""

from __future__ import annotations

import struct

from pgbundle.shared.protocol import messages as M
from pgbundle.shared.types import oids as T


def _kinds(msgs):
    return [type(m).__name__ for m in msgs]


def test_transaction_status_and_aborted_block(db):
    db.q("create table a (id int primary key, v text)")
    assert db.q("begin")[-1] == M.ReadyForQuery("T")
    assert db.tags("insert into a values (1, 'x')") == ["INSERT 0 1"]
    err = db.error("insert into a values (1, 'y')")
    assert err["C"] == "23505"
    assert err["M"] == 'duplicate key value violates unique constraint "a_pkey"'
    assert db.s.transaction_status == "E"
    err = db.error("select 1")
    assert (err["C"], err["M"]) == ("25P02", "current transaction is aborted, commands ignored until end of "
                                             "transaction block")
    out = db.q("commit")
    assert [m.tag for m in out if isinstance(m, M.CommandComplete)] == ["ROLLBACK"]
    assert out[-1] == M.ReadyForQuery("I")
    assert db.rows("select count(*) from a") == [("0",)]


def test_savepoints_and_end(db):
    db.q("create table a (id int primary key)")
    assert db.tags("begin; insert into a values (1); savepoint s1; insert into a values (2)") == [
        "BEGIN", "INSERT 0 1", "SAVEPOINT", "INSERT 0 1"]
    db.error("insert into a values (2)")
    assert db.tags("rollback to savepoint s1") == ["ROLLBACK"]
    assert db.s.transaction_status == "T"
    assert db.tags("release s1; end") == ["RELEASE", "COMMIT"]
    assert db.rows("select id from a") == [("1",)]
    err = db.error("savepoint x")
    assert err["C"] == "25P01"


def test_commit_outside_block_warns(db):
    out = db.q("commit")
    notices = [m for m in out if isinstance(m, M.NoticeResponse)]
    assert notices and notices[0].fields["M"] == "there is no transaction in progress"
    assert notices[0].fields["S"] == "WARNING"


def test_multi_statement_error_stops_rest(db):
    db.q("create table a (id int primary key)")
    out = db.q("insert into a values (1); select 1/0; insert into a values (2)")
    assert [k for k in _kinds(out) if k != "RowDescription"] == ["CommandComplete", "ErrorResponse", "ReadyForQuery"]
    # implicit transaction of the whole string rolled back
    assert db.rows("select count(*) from a") == [("0",)]


def test_drop_if_exists_notice_and_tags(db):
    out = db.q("drop table if exists x1, x2")
    notes = [m.fields["M"] for m in out if isinstance(m, M.NoticeResponse)]
    assert notes == ['table "x1" does not exist, skipping', 'table "x2" does not exist, skipping']
    assert [m.tag for m in out if isinstance(m, M.CommandComplete)] == ["DROP TABLE"]
    err = db.error("drop table x1")
    assert (err["C"], err["M"]) == ("42P01", 'table "x1" does not exist')


def test_empty_query(db):
    assert _kinds(db.q("")) == ["EmptyQueryResponse", "ReadyForQuery"]
    assert _kinds(db.q(";")) == ["EmptyQueryResponse", "ReadyForQuery"]


def test_extended_protocol_int2_params_and_suspend(db):
    s = db.s
    db.q("create table p (id serial primary key, name text not null, qty int, price numeric(10,2))")
    assert s.parse("", "INSERT INTO p (name, qty, price) VALUES ($1, $2, $3) RETURNING id", (0, T.INT2, T.NUMERIC)) \
        == [M.ParseComplete()]
    assert s.bind("", "", (0, 1, 0), (b"apple", struct.pack("!h", 3), b"1.25"), ()) == [M.BindComplete()]
    d = s.describe("P", "")
    assert d[0].fields[0].name == "id" and d[0].fields[0].type_oid == T.INT4
    out = s.execute("", 1)
    assert _kinds(out) == ["DataRow", "PortalSuspended"]
    assert out[0].values == (b"1",)
    assert s.sync() == [M.ReadyForQuery("I")]
    # Describe S with unspecified types: inferred from context
    s.parse("q", "SELECT name FROM p WHERE qty > $1 AND name <> $2", (0, 0))
    d = s.describe("S", "q")
    assert d[0] == M.ParameterDescription((T.INT4, T.TEXT))
    assert d[1].fields[0].type_oid == T.TEXT
    s.bind("", "q", (), (b"1", b"x"), (1,))
    out = s.execute("", 0)
    assert out == [M.DataRow((b"apple",)), M.CommandComplete("SELECT 1")]
    s.sync()
    # binary results
    s.parse("", "SELECT count(*), sum(qty) FROM p", ())
    s.bind("", "", (), (), (1,))
    out = s.execute("", 0)
    assert out[0].values == (struct.pack("!q", 1), struct.pack("!q", 3))
    s.sync()


def test_extended_error_skips_until_sync(db):
    s = db.s
    s.parse("", "SELECT 1/0", ())
    s.bind("", "", (), (), ())
    out = s.execute("", 0)
    assert out[0].fields["C"] == "22012"
    assert s.parse("", "SELECT 1", ()) == []
    assert s.sync() == [M.ReadyForQuery("I")]
    assert s.parse("", "SELECT 1", ()) == [M.ParseComplete()]


def test_set_show_and_parameter_status(db):
    out = db.q("set application_name = 'myapp'")
    assert M.ParameterStatus("application_name", "myapp") in out
    assert db.rows("show application_name") == [("myapp",)]
    assert db.rows("show transaction isolation level") == [("read committed",)]
    assert db.rows("select current_setting('application_name')") == [("myapp",)]
    assert db.tags("reset all") == ["RESET"]
    out = db.q("SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;")
    assert [m.tag for m in out if isinstance(m, M.CommandComplete)] == ["SELECT 1", "CLOSE CURSOR ALL", "UNLISTEN",
                                                                      "RESET"]


def test_copy_from_stdin(db):
    db.q("create table c (aid int not null, bid int, abalance int, filler char(84))")
    out = db.q("copy c from stdin with (freeze on)")
    assert isinstance(out[-1], M.CopyInResponse)
    assert db.s.copy_data(b"1\t1\t0\t\n2\t1\t0\t\n") == []
    assert db.s.copy_data(b"3\t1\t0\t\\N\n") == []
    out = db.s.copy_done()
    assert out == [M.CommandComplete("COPY 3"), M.ReadyForQuery("I")]
    assert db.rows("select count(*), sum(aid), count(filler) from c") == [("3", "6", "2")]
    out = db.q("copy (select aid from c order by aid) to stdout")
    assert [m.data for m in out if isinstance(m, M.CopyData)] == [b"1\n", b"2\n", b"3\n"]


def test_pgbench_statements(db):
    db.q("create table pgbench_accounts(aid int not null, bid int, abalance int, filler char(84)) "
         "with (fillfactor=100)")
    db.q("insert into pgbench_accounts select g, 1, 0, '' from generate_series(1, 50) g")
    assert db.tags("alter table pgbench_accounts add primary key (aid)") == ["ALTER TABLE"]
    assert db.tags("BEGIN;") == ["BEGIN"]
    assert db.tags("UPDATE pgbench_accounts SET abalance = abalance + 4783 WHERE aid = 7;") == ["UPDATE 1"]
    assert db.rows("SELECT abalance FROM pgbench_accounts WHERE aid = 7;") == [("4783",)]
    assert db.tags("END;") == ["COMMIT"]
    rows = db.rows("select o.n, p.partstrat, pg_catalog.count(i.inhparent) from pg_catalog.pg_class as c join "
                   "pg_catalog.pg_namespace as n on (n.oid = c.relnamespace) cross join lateral (select "
                   "pg_catalog.array_position(pg_catalog.current_schemas(true), n.nspname)) as o(n) left join "
                   "pg_catalog.pg_partitioned_table as p on (p.partrelid = c.oid) left join pg_catalog.pg_inherits "
                   "as i on (c.oid = i.inhparent) where c.relname = 'pgbench_accounts' and o.n is not null group "
                   "by 1, 2 order by 1 asc limit 1")
    assert rows == [("2", None, "0")]


def test_sql_cursors(db):
    db.q("create table cu (id int)")
    db.q("insert into cu select generate_series(1, 10)")
    err = db.error("declare c cursor for select id from cu")
    assert err["C"] == "25P01"
    assert db.tags("begin; declare c cursor for select id from cu order by id") == ["BEGIN", "DECLARE CURSOR"]
    assert db.rows("fetch forward 3 from c") == [("1",), ("2",), ("3",)]
    assert db.tags("move 2 in c") == ["MOVE 2"]
    assert db.rows("fetch all from c") == [("6",), ("7",), ("8",), ("9",), ("10",)]
    assert db.tags("close c; commit") == ["CLOSE CURSOR", "COMMIT"]


def test_explain_shows_index_scan(db):
    db.q("create table ex (id int primary key, v int)")
    plan = [r[0] for r in db.rows("explain select v from ex where id = 5")]
    assert any("Index Scan using ex_pkey on ex" in ln for ln in plan)
    plan = [r[0] for r in db.rows("explain select v from ex where v = 5")]
    assert any("Seq Scan on ex" in ln for ln in plan)
