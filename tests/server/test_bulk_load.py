"""Bulk loading (what ``pgbench -i`` does): COPY FROM places tuples page by page with one
WAL record per page (XLOG_HEAP_MULTI_INSERT), ADD PRIMARY KEY / CREATE INDEX sort the
keys and write the B-tree bottom-up.  Checked here: crash recovery replays both (with and
without full-page writes, on new pages and on pages that already hold rows or free line
pointers), an uncommitted COPY leaves nothing, the index agrees with the heap and keeps
working for later inserts, and errors inside a COPY batch leave nothing behind."""

from __future__ import annotations

import random

import psycopg
import pytest


def _copy(c: psycopg.Connection, table: str, rows: list[tuple]) -> None:
    with c.cursor().copy(f"copy {table} from stdin") as cp:
        for r in rows:
            cp.write_row(r)


def _agree(c: psycopg.Connection, table: str, keys: list[int], rnd: random.Random) -> None:
    """Index scans give what sequential scans give."""
    c.execute("set enable_seqscan = off")
    for _ in range(40):
        lo = rnd.randint(-10, 300_000)
        hi = lo + rnd.randint(0, 40_000)
        q = f"select count(*), coalesce(sum(a), 0) from {table} where a between %s and %s"
        by_index = c.execute(q, (lo, hi)).fetchone()
        c.execute("set enable_indexscan = off; set enable_seqscan = on")
        by_heap = c.execute(q, (lo, hi)).fetchone()
        c.execute("set enable_indexscan = on; set enable_seqscan = off")
        assert by_index == by_heap, (lo, hi)
    for k in rnd.sample(keys, min(len(keys), 100)):
        assert c.execute(f"select a from {table} where a = %s", (k,)).fetchall() == [(k,)]
    plan = "\n".join(r[0] for r in c.execute(f"explain select a from {table} where a = 5").fetchall())
    assert "Index" in plan
    c.execute("reset enable_seqscan; reset enable_indexscan")


@pytest.mark.parametrize("fpw", ["on", "off"])
def test_copy_and_index_build_survive_kill9(server_factory, fpw):
    srv = server_factory(synchronous_commit="on", fsync="on", full_page_writes=fpw)
    rnd = random.Random(7)
    keys = rnd.sample(range(1, 200_000), 30_000)
    with srv.connect() as c:
        c.execute("create table seeded (a int, b text)")
        c.execute("insert into seeded select g, 'seed' from generate_series(-300, -1) g")
        c.execute("delete from seeded where a % 3 = 0")
        c.execute("vacuum seeded")  # free line pointers on its page
        c.execute("checkpoint")
        # a new table (pages initialised by the records) ...
        c.execute("create table bl (a int not null, b text, c int)")
        _copy(c, "bl", [(k, "x" * (k % 50), k % 7) for k in keys])
        c.execute("delete from bl where c = 3")
        c.execute("alter table bl add primary key (a)")
        c.execute("create index bl_b on bl (b)")
        # ... and pages that already hold rows and free line pointers
        _copy(c, "seeded", [(k, "copied") for k in range(1, 2000)])
        # an uncommitted COPY must not survive
        loser = srv.connect(autocommit=False)
        _copy(loser, "bl", [(k, "loser", 0) for k in range(300_001, 302_000)])
        expect = sorted(k for k in keys if k % 7 != 3)
        seeded = c.execute("select a, b from seeded order by a").fetchall()
    srv.kill9()
    loser.close()
    srv.start()
    assert "automatic recovery in progress" in srv.log()
    with srv.connect() as c:
        assert [r[0] for r in c.execute("select a from bl order by a").fetchall()] == expect
        assert c.execute("select a, b from seeded order by a").fetchall() == seeded
        _agree(c, "bl", expect, rnd)
        c.execute("set enable_seqscan = off")
        assert c.execute("select count(*) from bl where b = 'xxx'").fetchone() == \
            (sum(1 for k in expect if k % 50 == 3),)
        c.execute("reset enable_seqscan")
        # the rebuilt tree takes more keys (leaf splits) and still refuses duplicates
        have = set(expect)  # built once: the same list, without 28,000 copies of a 26,000-key set
        more = [k for k in range(1, 200_000, 7) if k % 7 != 3 and k not in have][:3000]
        _copy(c, "bl", [(k, "more", 1) for k in more])
        with pytest.raises(psycopg.errors.UniqueViolation):
            c.execute("insert into bl values (%s, 'dup', 1)", (expect[10],))
        _agree(c, "bl", expect + more, rnd)


def test_copy_errors_leave_nothing(server):
    with server.connect() as c:
        c.execute("create table ce (a int primary key, b text not null)")
        c.execute("insert into ce values (5, 'x')")
        with pytest.raises(psycopg.errors.UniqueViolation):
            _copy(c, "ce", [(1, "a"), (5, "b"), (6, "c")])
        # NOT NULL is checked as each row is read, before the batch goes in (as PostgreSQL)
        with pytest.raises(psycopg.errors.NotNullViolation):
            _copy(c, "ce", [(1, "a"), (5, "b"), (6, None)])
        with pytest.raises(psycopg.errors.UniqueViolation):
            _copy(c, "ce", [(k, "a") for k in range(10, 1500)] + [(1, "b"), (1, "c")])
        assert c.execute("select a from ce").fetchall() == [(5,)]
        # a failed COPY inside a savepoint leaves no row behind
        with c.transaction():
            c.execute("insert into ce values (7, 'y')")
            with pytest.raises(psycopg.errors.UniqueViolation), c.transaction():
                _copy(c, "ce", [(k, "z") for k in range(100, 3000)] + [(7, "dup")] + [(4000, "w")])
            assert c.execute("select count(*) from ce").fetchone() == (2,)
            _copy(c, "ce", [(k, "z") for k in range(100, 3000)])
        assert c.execute("select count(*) from ce").fetchone() == (2902,)
        c.execute("set enable_seqscan = off")
        assert c.execute("select count(*) from ce where a between 100 and 199").fetchone() == (100,)


def test_unique_index_build_reports_the_duplicate(server):
    with server.connect() as c:
        c.execute("create table ud (a int, b int)")
        _copy(c, "ud", [(k, k % 10) for k in range(5000)] + [(17, 0)])
        with pytest.raises(psycopg.errors.UniqueViolation) as e:
            c.execute("alter table ud add primary key (a)")
        assert e.value.diag.message_primary == 'could not create unique index "ud_pkey"'
        assert e.value.diag.message_detail == "Key (a)=(17) is duplicated."
        c.execute("delete from ud where a = 17 and b = 0")  # the later row is gone: dead, still indexed
        c.execute("alter table ud add primary key (a)")
        c.execute("set enable_seqscan = off")
        assert c.execute("select b from ud where a = 17").fetchall() == [(7,)]
        assert c.execute("select count(*) from ud where a >= 0").fetchone() == (5000,)
        with pytest.raises(psycopg.errors.UniqueViolation):
            c.execute("insert into ud values (4000, 1)")


def test_copy_text_pieces_as_postgresql(server):
    """Rows split across CopyData messages anyhow, escapes, \\N, column lists with
    defaults, char(n) padding, CRLF, the end-of-data marker (what follows it is
    ignored, as PostgreSQL 15 does), COPY BINARY of the result back in."""
    with server.connect() as c:
        c.execute("create table ct (a int, b text default 'dflt', c char(5), d numeric(6,2) not null default 0)")

        def copy(sql: str, pieces: list[bytes]) -> str:
            with c.cursor() as cur:
                with cur.copy(sql) as cp:
                    for p in pieces:
                        cp.write(p)
                return cur.statusmessage

        data = [b"1\tx\\ty\tab\t1.234\n2\t\\N\tabc", b"de\t2\n3\tlast\\\\\t\\N\t3.5"]
        assert copy("copy ct from stdin", data) == "COPY 3"
        assert copy("copy ct (a, c) from stdin", [b"4\tq\n5", b"\tqq\n"]) == "COPY 2"
        assert copy("copy ct from stdin", [b"10\ta\tb\t1\n\\.\n11\ta\tb\t1\n", b"12\ta\tb\t1\n"]) == "COPY 1"
        assert copy("copy ct from stdin", [b"30\tr\xc3\xa9\tc\t1\r\n"]) == "COPY 1"
        rows = [(1, "x\ty", "ab   ", "1.23"), (2, None, "abcde", "2.00"), (3, "last\\", None, "3.50"),
                (4, "dflt", "q    ", "0.00"), (5, "dflt", "qq   ", "0.00"), (10, "a", "b    ", "1.00"),
                (30, "ré", "c    ", "1.00")]
        got = c.execute("select a, b, c, d::text from ct order by a").fetchall()
        assert got == rows
        with pytest.raises(psycopg.errors.StringDataRightTruncation):
            copy("copy ct from stdin", [b"9\ta\ttoolongvalue\t1\n"])
        with pytest.raises(psycopg.errors.BadCopyFileFormat):
            copy("copy ct from stdin", [b"7\ta\tb\t1\textra\n"])
        data = []
        with c.cursor().copy("copy ct to stdout with (format binary)") as cp:
            data = [bytes(b) for b in cp]
        c.execute("create table ct2 (a int, b text, c char(5), d numeric(6,2) not null)")
        assert copy("copy ct2 from stdin with (format binary)", data) == "COPY 7"
        assert c.execute("select a, b, c, d::text from ct2 order by a").fetchall() == rows
