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
    os.kill(b.info.backend_pid, signal.SIGKILL)
    with pytest.raises(psycopg.OperationalError) as ei:
        for _ in range(100):
            a.execute("select 1")
            time.sleep(0.05)
    assert ei.value.sqlstate == "57P02", str(ei.value)
    assert "crash of another server process" in str(ei.value)
    a.close()
    b.close()
    srv.wait_ready(60)
