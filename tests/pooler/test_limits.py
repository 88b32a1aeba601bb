"""Limits and queueing: max_client_conn, pool size with a FIFO queue, reserve pool,
min_pool_size, max_db/user_connections, query_wait_timeout."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from .helpers import base_args, connect, error_of, pool_row, raw_exchange, startup_bytes


def wait_for(pred, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_max_client_conn(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "--max-connections", "3", "--admin-users", "postgres"))
    conns = [connect(p) for _ in range(3)]
    try:
        with pytest.raises(psycopg.OperationalError) as ei:
            connect(p)
        assert "no more connections allowed (max_client_conn)" in str(ei.value)
        err = error_of(raw_exchange(p.port, startup_bytes()))
        assert (err.sqlstate, err.severity) == ("53300", "FATAL")
        # the admin console is not limited
        with psycopg.connect(p.dsn(dbname="pgbouncer"), autocommit=True) as a:
            a.execute("SHOW VERSION", prepare=False)
    finally:
        for c in conns:
            c.close()
    with connect(p) as c:  # room again
        assert c.execute("select 1").fetchone() == (1,)


def test_queue_pool_of_two_serves_ten_sleepers(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "--pool-size", "2",
                                 "--admin-users", "postgres"))
    seen_waiting = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            row = pool_row(p)
            seen_waiting.append(row["cl_waiting"])
            assert row["sv_active"] + row["sv_idle"] + row["sv_used"] + row["sv_login"] <= 2
            time.sleep(0.05)

    def sleeper(i):
        with connect(p) as c:
            return c.execute("select pg_sleep(0.5), %s::int", (i,)).fetchone()[1]

    with connect(p) as c:
        c.execute("select 1")  # the pool exists before the watcher looks
    with ThreadPoolExecutor(11) as ex:
        w = ex.submit(watch)
        results = list(ex.map(sleeper, range(10)))
        stop.set()
        w.result()
    assert results == list(range(10))
    assert max(seen_waiting) >= 1
    backends = int(pg.sql("select count(*) from pg_stat_activity where backend_type = 'client backend' "
                          "and usename = 'postgres' and application_name = ''"))
    assert backends <= 3  # the pool's two, plus this psql


def test_fifo_order(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "--pool-size", "1",
                                 "--admin-users", "postgres"))
    pg.sql("drop table if exists fifo_log; create table fifo_log(n int, at timestamptz default clock_timestamp())")
    holder = connect(p, autocommit=False)
    holder.execute("select 1")  # holds the only server: inside a transaction
    threads = []
    for i in range(4):
        def run(i=i):
            with connect(p) as c:
                c.execute("insert into fifo_log(n) values (%s)", (i,))
        t = threading.Thread(target=run)
        t.start()
        threads.append(t)
        wait_for(lambda i=i: pool_row(p)["cl_waiting"] == i + 1, what=f"{i + 1} waiting")
    holder.commit()
    holder.close()
    for t in threads:
        t.join(30)
    order = pg.sql("select string_agg(n::text, ',' order by at) from fifo_log")
    assert order == "0,1,2,3"


@pytest.mark.parametrize("round_robin", [False, True])
def test_client_gets_its_last_server_back(pg, pooler_factory, round_robin):
    """Transaction mode: a client whose last server is idle gets that one again (its settings
    and prepared statements are there already) -- not the most recently released one.
    With server_round_robin the idle list is a plain FIFO queue, as in pgbouncer."""
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "--pool-size", "2",
                                 "-s", f"server_round_robin={int(round_robin)}"))
    a, b = connect(p, autocommit=False), connect(p, autocommit=False)
    try:
        pid = lambda c: c.execute("select pg_backend_pid()").fetchone()[0]  # noqa: E731
        first_a, first_b = pid(a), pid(b)  # both inside a transaction: two servers
        assert first_a != first_b
        a.commit()
        b.commit()
        a.autocommit = b.autocommit = True
        alone = [pid(a) for _ in range(4)]
        seen_a, seen_b = [], []
        for _ in range(4):
            seen_a.append(pid(a))  # a released last, then b runs: LIFO alone would swap them
            seen_b.append(pid(b))
        if round_robin:
            assert set(alone) == {first_a, first_b}  # FIFO: one client alone goes round both
        else:
            assert alone == seen_a == [first_a] * 4 and seen_b == [first_b] * 4
    finally:
        a.close()
        b.close()


def test_query_wait_timeout(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "--pool-size", "1",
                                 "-s", "query_wait_timeout=1"))
    holder = connect(p, autocommit=False)
    holder.execute("select 1")
    try:
        with connect(p) as c:
            with pytest.raises(psycopg.OperationalError) as ei:
                c.execute("select 2")
            assert "query_wait_timeout" in str(ei.value)
            assert ei.value.sqlstate == "08P01"
    finally:
        holder.rollback()
        holder.close()
    with connect(p) as c:
        assert c.execute("select 3").fetchone() == (3,)


def test_reserve_pool(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "--pool-size", "1", "--reserve-pool-size", "1",
                                 "-s", "reserve_pool_timeout=0.3", "--admin-users", "postgres"))
    holder = connect(p, autocommit=False)
    holder.execute("select 1")
    try:
        with connect(p) as c:  # waits reserve_pool_timeout, then gets the reserve connection
            assert c.execute("select 2").fetchone() == (2,)
        row = pool_row(p)
        assert row["sv_active"] + row["sv_idle"] == 2
    finally:
        holder.rollback()
        holder.close()


def test_min_pool_size(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "--min-pool-size", "3",
                                 "--admin-users", "postgres"))
    with connect(p) as c:  # pgbouncer: enforced while the pool has a client (or a forced user)
        c.execute("select 1")
        wait_for(lambda: pool_row(p)["sv_idle"] >= 3, timeout=60, what="min_pool_size servers")


def test_max_db_connections(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "-s", "max_db_connections=1",
                                 "-s", "query_wait_timeout=2", "--admin-users", "postgres"))
    holder = connect(p, autocommit=False)
    holder.execute("select 1")
    try:
        # another user on the same database must wait: the database's one connection is taken
        with connect(p, user="md5_user", password="md5 secret pw") as c:
            with pytest.raises(psycopg.OperationalError) as ei:
                c.execute("select 1")
            assert "query_wait_timeout" in str(ei.value)
    finally:
        holder.rollback()
        holder.close()
    # with the holder's server idle, the other pool takes its place (idle server evicted)
    with connect(p, user="md5_user", password="md5 secret pw") as c:
        assert c.execute("select current_user").fetchone() == ("md5_user",)


def test_max_user_connections(pg, pooler_factory):
    pg.sql("select 1 from pg_database where datname = 'otherdb'") or pg.sql("create database otherdb")
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "-s", "max_user_connections=1",
                                 "-s", "query_wait_timeout=1"))
    other = connect(p, dbname="otherdb")  # logged in (the pool knows its server) and idle
    holder = connect(p, autocommit=False)
    holder.execute("select 1")
    try:
        with pytest.raises(psycopg.OperationalError) as ei:  # same user: the user's one connection is taken
            other.execute("select 1")
        assert "query_wait_timeout" in str(ei.value)
    finally:
        holder.rollback()
        holder.close()
        other.close()
    with connect(p, dbname="otherdb") as c:
        assert c.execute("select current_database()").fetchone() == ("otherdb",)


def test_server_connect_timeout(pooler_factory):
    """An upstream that accepts but never answers: the login gives up after server_connect_timeout."""
    import socket as _socket

    silent = _socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    try:
        p = pooler_factory(["--upstream", f"postgresql://127.0.0.1:{port}", "--unix-socket-dir", "",
                            "-s", "server_connect_timeout=0.5", "-s", "query_wait_timeout=30"])
        start = time.monotonic()
        with pytest.raises(psycopg.OperationalError) as ei:
            psycopg.connect(p.dsn(), connect_timeout=20)
        assert time.monotonic() - start < 15  # not query_wait_timeout: the login failed fast
        assert "server connect timeout" in str(ei.value) or "server login has been failing" in str(ei.value)
        assert p.alive()
    finally:
        silent.close()


def test_max_db_and_user_client_connections(pg, pooler_factory):
    pg.sql("select 1 from pg_database where datname = 'otherdb'") or pg.sql("create database otherdb")
    p = pooler_factory(base_args(pg, "-s", "max_db_client_connections=2", "-s", "max_user_client_connections=3"))
    a, b = connect(p), connect(p)
    try:
        with pytest.raises(psycopg.OperationalError) as ei:
            connect(p)
        assert "max_db_client_connections" in str(ei.value)
        c = connect(p, dbname="otherdb")
        with pytest.raises(psycopg.OperationalError) as ei:
            connect(p, dbname="otherdb")  # the user's third is taken
        assert "max_user_client_connections" in str(ei.value)
        c.close()
    finally:
        a.close()
        b.close()
