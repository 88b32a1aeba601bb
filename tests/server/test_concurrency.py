"""MVCC under concurrency: two updaters of one row give a serial result (the second
waits for the first, then follows PostgreSQL's rules), REPEATABLE READ raises 40001,
a deadlock is detected (40P01), readers never block."""

from __future__ import annotations

import threading

import pytest
from psycopg import errors


def _setup(server, name: str) -> None:
    with server.connect() as c:
        c.execute(f"drop table if exists {name}")
        c.execute(f"create table {name} (id int primary key, n int)")
        c.execute(f"insert into {name} values (1, 0), (2, 0)")


def test_two_updaters_of_one_row_serialize(server):
    _setup(server, "ctr")
    errors_seen = []

    def worker(k: int) -> None:
        try:
            with server.connect() as c:
                for _ in range(k):
                    c.execute("update ctr set n = n + 1 where id = 1")
        except Exception as e:  # pragma: no cover - reported below
            errors_seen.append(e)

    threads = [threading.Thread(target=worker, args=(60,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors_seen
    assert server.sql("select n from ctr where id = 1") == [(240,)]


def test_second_writer_waits_then_sees_new_version(server):
    _setup(server, "w2")
    with server.connect(autocommit=False) as a, server.connect(autocommit=False) as b:
        a.execute("update w2 set n = n + 10 where id = 1")
        done = threading.Event()

        def second() -> None:
            b.execute("update w2 set n = n * 2 where id = 1")
            b.commit()
            done.set()

        t = threading.Thread(target=second)
        t.start()
        assert not done.wait(0.5)  # blocked behind a
        a.commit()
        t.join(30)
        assert done.is_set()
    assert server.sql("select n from w2 where id = 1") == [(20,)]  # (0 + 10) * 2: a serial order


def test_repeatable_read_conflict_40001(server):
    _setup(server, "rr")
    with server.connect(autocommit=False) as a, server.connect(autocommit=False) as b:
        b.execute("set transaction isolation level repeatable read")
        assert b.execute("select n from rr where id = 1").fetchone() == (0,)
        a.execute("update rr set n = 5 where id = 1")
        a.commit()
        assert b.execute("select n from rr where id = 1").fetchone() == (0,)  # snapshot kept
        with pytest.raises(errors.SerializationFailure) as ei:
            b.execute("update rr set n = n + 1 where id = 1")
        assert ei.value.sqlstate == "40001"
        b.rollback()


def test_deadlock_detected(server):
    _setup(server, "dl")
    with server.connect(autocommit=False) as a, server.connect(autocommit=False) as b:
        a.execute("set deadlock_timeout = '200ms'") if False else None
        a.execute("update dl set n = 1 where id = 1")
        b.execute("update dl set n = 1 where id = 2")
        result = {}

        def first() -> None:
            try:
                a.execute("update dl set n = 2 where id = 2")
                result["a"] = "ok"
            except errors.DeadlockDetected:
                result["a"] = "deadlock"

        t = threading.Thread(target=first)
        t.start()
        try:
            b.execute("update dl set n = 2 where id = 1")
            result["b"] = "ok"
        except errors.DeadlockDetected:
            result["b"] = "deadlock"
        if result.get("b") == "deadlock":
            b.rollback()
        t.join(30)
        assert sorted(result.values()) == ["deadlock", "ok"], result
        for conn, who in ((a, "a"), (b, "b")):
            if result[who] == "ok":
                conn.commit()
            else:
                conn.rollback()


def test_readers_do_not_block(server):
    _setup(server, "rd")
    with server.connect(autocommit=False) as a, server.connect() as b:
        a.execute("update rd set n = 42 where id = 1")
        assert b.execute("select n from rd where id = 1").fetchone() == (0,)
        a.commit()
        assert b.execute("select n from rd where id = 1").fetchone() == (42,)


def test_drop_waits_for_reader_lock(server):
    _setup(server, "lk")
    with server.connect(autocommit=False) as reader, server.connect() as ddl:
        assert reader.execute("select count(*) from lk").fetchone() == (2,)  # AccessShare, fast path
        ddl.execute("set lock_timeout = '300ms'")
        with pytest.raises(errors.LockNotAvailable):
            ddl.execute("drop table lk")
        done = threading.Event()

        def drop() -> None:
            ddl.execute("set lock_timeout = 0")
            ddl.execute("drop table lk")
            done.set()

        t = threading.Thread(target=drop)
        t.start()
        assert not done.wait(0.5)  # still waiting behind the reader
        reader.commit()
        t.join(30)
        assert done.is_set()
    with pytest.raises(errors.UndefinedTable):
        server.sql("select * from lk")
