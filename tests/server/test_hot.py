"""Heap-only tuples and page pruning: repeated updates of the same rows neither grow the
table nor slow index lookups, stay correct under concurrency, and survive a crash."""

from __future__ import annotations

import threading

import psycopg
import pytest


def _pages(conn, table: str) -> int:
    return conn.execute(f"select pg_relation_size('{table}') / 8192").fetchone()[0]


def test_hot_updates_keep_the_table_small(server_factory):
    srv = server_factory(autovacuum="off")
    with srv.connect() as c:
        c.execute("create table hot_t (id int primary key, v int, note text)")
        c.execute("insert into hot_t select g, 0, 'x' from generate_series(1, 20) g")
        for i in range(1, 401):  # 8000 versions of 20 rows: without pruning ~40 pages
            c.execute("update hot_t set v = v + 1 where id = %s", (i % 20 + 1,))
            c.execute("update hot_t set v = v + 1, note = %s where id between 1 and 19", (f"n{i}",))
        assert _pages(c, "hot_t") <= 2
        rows = c.execute("select id, v from hot_t order by id").fetchall()
        assert rows == [(i, 420 if i < 20 else 20) for i in range(1, 21)]
        # index lookups (through redirects and chains) agree with a sequential scan
        for i in (1, 7, 20):
            assert c.execute("select v from hot_t where id = %s", (i,)).fetchone()[0] == (420 if i < 20 else 20)
        # the unique check follows HOT chains: the updated rows are still duplicates
        with pytest.raises(psycopg.errors.UniqueViolation):
            c.execute("insert into hot_t values (5, 0, 'dup')")
        # changing the key is not a HOT update: old key gone, new key found
        c.execute("update hot_t set id = 100 where id = 3")
        assert c.execute("select count(*) from hot_t where id = 3").fetchone()[0] == 0
        assert c.execute("select v from hot_t where id = 100").fetchone()[0] == 420
        c.execute("insert into hot_t values (3, 1, 'new')")
    # a crash: redo of HOT updates and prune records rebuilds the same pages
    srv.kill9()
    srv.start()
    with srv.connect() as c:
        rows = c.execute("select id, v from hot_t order by id").fetchall()
        assert len(rows) == 21
        assert dict(rows)[100] == 420 and dict(rows)[3] == 1
        for i in (1, 3, 7, 100):
            assert c.execute("select v from hot_t where id = %s", (i,)).fetchone()[0] == dict(rows)[i]
        c.execute("update hot_t set v = v + 1 where id = 1")
        assert c.execute("select v from hot_t where id = 1").fetchone()[0] == 421
        c.execute("vacuum hot_t")
        assert c.execute("select count(*) from hot_t where v > 0").fetchone()[0] == 21


def test_hot_concurrent_updaters_and_old_snapshots(server_factory):
    srv = server_factory(autovacuum="off")
    with srv.connect() as c:
        c.execute("create table hc (id int primary key, v int)")
        c.execute("insert into hc select g, 0 from generate_series(1, 5) g")
    # a repeatable-read reader keeps its snapshot while the rows are updated many times:
    # pruning must keep the versions it still sees
    reader = srv.connect(autocommit=False)
    reader.execute("set transaction isolation level repeatable read")
    assert reader.execute("select sum(v) from hc").fetchone()[0] == 0
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            with srv.connect() as w:
                for i in range(150):
                    w.execute("update hc set v = v + 1 where id = %s", ((i + n) % 5 + 1,))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert reader.execute("select sum(v) from hc").fetchone()[0] == 0
    assert reader.execute("select v from hc where id = 2").fetchone()[0] == 0
    reader.rollback()
    reader.close()
    with srv.connect() as c:
        assert c.execute("select sum(v) from hc").fetchone()[0] == 600
        assert c.execute("select count(*) from hc where id = 3").fetchone()[0] == 1
        hot = c.execute("select n_tup_hot_upd from pg_stat_user_tables where relname = 'hc'").fetchone()
        assert hot is not None
