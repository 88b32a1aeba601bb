"""LISTEN/NOTIFY across backends, session-state reporting, temporary relations, pg_cursors,
advisory locks in pg_locks and pg_stat_activity's client identity, against a real
``pgbundle server`` driven by psycopg 3, asyncpg and a raw protocol client."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import asyncpg
import psycopg
import pytest

from pgbundle.shared.protocol import FrameBuffer, decode_backend, encode, messages as m

# ----------------------------------------------------------------------------- helpers

class Raw:
    """A minimal protocol client: every backend message is visible, in order."""

    def __init__(self, port: int, **params: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.fb = FrameBuffer()
        self.sock.sendall(encode(m.StartupMessage(3 << 16, {"user": "postgres", "database": "postgres", **params})))
        self.startup = self.until_ready()
        self.pid = next(x.process_id for x in self.startup if isinstance(x, m.BackendKeyData))

    def next(self, timeout: float = 10) -> object:
        self.sock.settimeout(timeout)
        while (f := self.fb.next_frame()) is None:
            data = self.sock.recv(65536)
            assert data, "server closed the connection"
            self.fb.receive_data(data)
        return decode_backend(*f)

    def until_ready(self) -> list:
        out = []
        while True:
            msg = self.next()
            out.append(msg)
            if isinstance(msg, m.ReadyForQuery):
                return out

    def query(self, sql: str) -> list:
        self.sock.sendall(encode(m.Query(sql)))
        return self.until_ready()

    def close(self) -> None:
        try:
            self.sock.sendall(encode(m.Terminate()))
        finally:
            self.sock.close()


def _drain(conn: psycopg.Connection, timeout: float = 0.3) -> list[tuple[str, str, int]]:
    """Whatever arrives within ``timeout`` (to show that nothing does)."""
    return [(n.channel, n.payload, n.pid) for n in conn.notifies(timeout=timeout)]


def _take(conn: psycopg.Connection, n: int) -> list[tuple[str, str, int]]:
    return [(x.channel, x.payload, x.pid) for x in conn.notifies(timeout=10, stop_after=n)]


def _wait_active(server, pid: int, what: str) -> None:
    deadline = time.monotonic() + 20
    with server.connect() as c:
        while time.monotonic() < deadline:
            row = c.execute("select state, query from pg_stat_activity where pid = %s", (pid,)).fetchone()
            if row and row[0] == "active" and what in row[1]:
                return
            time.sleep(0.02)
    raise AssertionError(f"backend {pid} never ran {what!r}")


def _wait_gone(conn: psycopg.Connection, pids: list[int]) -> None:
    """Until these backends have finished their exit (cleanup done, slot released)."""
    deadline = time.monotonic() + 20
    while conn.execute("select count(*) from pg_stat_activity where pid = any(%s)", (pids,)).fetchone()[0]:
        assert time.monotonic() < deadline, f"backends {pids} did not exit"
        time.sleep(0.02)


# ----------------------------------------------------------------------------- LISTEN / NOTIFY

def test_idle_listener_gets_notification_at_once(server):
    with server.connect() as lis, server.connect() as no:
        lis.execute("listen chan_a")
        no.execute("notify chan_a, 'hello'")
        no.execute("select pg_notify('chan_a', 'h\u00e9llo \u2713 \u65e5\u672c')")
        got = [(n.channel, n.payload, n.pid) for n in lis.notifies(timeout=10, stop_after=2)]
        assert got == [("chan_a", "hello", no.info.backend_pid),
                       ("chan_a", "h\u00e9llo \u2713 \u65e5\u672c", no.info.backend_pid)]


def test_raw_protocol_idle_and_after_running_command(server):
    """Idle: the NotificationResponse comes unasked.  Busy: it follows the command's
    CommandComplete, just before its ReadyForQuery, never inside another message."""
    lis = Raw(server.port)
    try:
        lis.query("listen chan_r")
        with server.connect() as no:
            no.execute("notify chan_r, 'idle'")
            msg = lis.next()
            assert isinstance(msg, m.NotificationResponse) and (msg.channel, msg.payload) == ("chan_r", "idle")
            assert msg.process_id == no.info.backend_pid
            # busy: the listener waits for a lock the notifier holds until after its NOTIFY committed
            no.execute("select pg_advisory_lock(99)")
            lis.sock.sendall(encode(m.Query("select pg_advisory_lock(99), 'done'")))
            _wait_active(server, lis.pid, "pg_advisory_lock(99)")
            no.execute("notify chan_r, 'busy'")
            no.execute("select pg_advisory_unlock(99)")
            out = lis.until_ready()
        kinds = [type(x).__name__ for x in out]
        assert kinds == ["RowDescription", "DataRow", "CommandComplete", "NotificationResponse", "ReadyForQuery"]
        assert out[3].payload == "busy"
    finally:
        lis.close()


def test_in_transaction_listener_waits_for_its_commit(server):
    with server.connect() as lis, server.connect() as no:
        lis.execute("listen chan_t")
        lis.execute("begin")
        lis.execute("select 1")
        no.execute("notify chan_t, 'later'")
        assert _drain(lis) == []  # held while the listener is in a transaction block
        lis.execute("commit")
        assert [p for _c, p, _pid in _take(lis, 1)] == ["later"]


def test_commit_rollback_savepoints_duplicates(server):
    with server.connect() as lis, server.connect(autocommit=False) as no:
        lis.execute("listen chan_x")
        no.execute("notify chan_x, 'rolled back'")
        no.rollback()
        no.execute("notify chan_x, 'one'")
        no.execute("notify chan_x, 'one'")  # identical: collapsed
        no.execute("notify chan_x, 'two'")
        no.execute("savepoint s1")
        no.execute("notify chan_x, 'in rolled-back savepoint'")
        no.execute("rollback to savepoint s1")
        no.execute("savepoint s2")
        no.execute("notify chan_x, 'in released savepoint'")
        no.execute("release savepoint s2")
        no.commit()
        got = [p for _c, p, _pid in lis.notifies(timeout=10, stop_after=3)]
        assert got == ["one", "two", "in released savepoint"]
        assert _drain(lis) == []


def test_self_notify_and_unlisten(server):
    with server.connect() as c:
        c.execute("listen me; listen other")
        assert sorted(r[0] for r in c.execute("select pg_listening_channels()").fetchall()) == ["me", "other"]
        c.execute("notify me, 'myself'")
        assert _take(c, 1) == [("me", "myself", c.info.backend_pid)]
        c.execute("unlisten me")
        c.execute("notify me, 'gone'; notify other, 'still'")
        assert _take(c, 1) == [("other", "still", c.info.backend_pid)]
        c.execute("unlisten *")
        c.execute("notify other, 'gone too'")
        assert _drain(c) == []
        c.execute("listen again")
        c.execute("discard all")
        c.execute("notify again, 'after discard'")
        assert _drain(c) == []
        # LISTEN in a rolled-back transaction never listens
        c.execute("begin; listen never; rollback")
        c.execute("notify never, 'x'")
        assert _drain(c) == [] and c.execute("select pg_listening_channels()").fetchall() == []


def test_databases_do_not_see_each_other(server):
    with server.connect() as admin:
        admin.execute("drop database if exists notify_db2")
        admin.execute("create database notify_db2")
    with server.connect(dbname="notify_db2") as lis2, server.connect() as lis1, server.connect() as no1, \
            server.connect(dbname="notify_db2") as no2:
        lis1.execute("listen shared_name")
        lis2.execute("listen shared_name")
        no1.execute("notify shared_name, 'for postgres'")
        no2.execute("notify shared_name, 'for db2'")
        assert [p for _c, p, _pid in lis1.notifies(timeout=10, stop_after=1)] == ["for postgres"]
        assert [p for _c, p, _pid in lis2.notifies(timeout=10, stop_after=1)] == ["for db2"]
        assert _drain(lis1) == [] and _drain(lis2) == []


def test_payload_limits(server):
    with server.connect() as c:
        c.execute("listen big")
        payload = "\u00e9" * 3999  # 7998 bytes
        c.execute("select pg_notify('big', %s)", (payload,))
        assert _take(c, 1) == [("big", payload, c.info.backend_pid)]
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="payload string too long"):
            c.execute("select pg_notify('big', %s)", ("x" * 8000,))
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="channel name cannot be empty"):
            c.execute("select pg_notify('', 'x')")


def test_queue_is_trimmed_and_session_end_unregisters(server):
    dboid = server.sql("select oid from pg_database where datname = 'postgres'")[0][0]
    queue = server.datadir / "pg_notify" / f"{dboid}.queue"
    listeners = server.datadir / "pg_notify" / f"{dboid}.listeners"
    payload = "p" * 7000
    with server.connect() as lis, server.connect() as no:
        pids = (lis.info.backend_pid, no.info.backend_pid)
        lis.execute("listen trim")
        for i in range(40):  # 280 kB through the queue; the listener keeps up
            no.execute(f"notify trim, '{i}{payload}'")
            assert [p[:2] for _c, p, _pid in lis.notifies(timeout=10, stop_after=1)] == [f"{i}{payload}"[:2]]
        assert queue.stat().st_size < 150_000
    # both sessions ended: no listener left, and the next NOTIFY empties the queue
    with server.connect() as no:
        _wait_gone(no, list(pids))
        no.execute("notify trim, 'nobody listens'")
    data = listeners.read_bytes()
    assert all(int.from_bytes(data[i:i + 4], "little") == 0 for i in range(0, len(data), 32))
    assert queue.stat().st_size <= 64


def test_asyncpg_add_listener(server):
    async def main():
        lis = await asyncpg.connect(host="127.0.0.1", port=server.port, user="postgres", database="postgres")
        no = await asyncpg.connect(host="127.0.0.1", port=server.port, user="postgres", database="postgres")
        got: asyncio.Queue = asyncio.Queue()
        try:
            await lis.add_listener("apg", lambda conn, pid, channel, payload: got.put_nowait((pid, channel, payload)))
            await no.execute("notify apg, 'first \u2603'")
            first = await asyncio.wait_for(got.get(), 10)
            async with no.transaction():
                await no.execute("select pg_notify('apg', $1)", "second")
            second = await asyncio.wait_for(got.get(), 10)
            return first, second, no.get_server_pid()
        finally:
            await lis.close()
            await no.close()

    first, second, pid = asyncio.run(main())
    assert first == (pid, "apg", "first \u2603") and second == (pid, "apg", "second")


# ----------------------------------------------------------------------------- session state

def test_session_state_parameter_status(server):
    c = Raw(server.port, **{"pgbundle.report_session_state": "on"})
    try:
        def state(msgs):
            vals = [x.value for x in msgs if isinstance(x, m.ParameterStatus) and x.name == "pgbundle.session_state"]
            return vals[-1] if vals else None

        assert state(c.startup) == "clean"
        assert state(c.query("select pg_advisory_lock(5)")) == "advisory_lock"
        assert state(c.query("select 1")) is None  # unchanged: not sent again
        assert state(c.query("create temp table st(a int)")) == "advisory_lock,temp_table"
        assert state(c.query("declare hc cursor with hold for select 1")) == "advisory_lock,hold_cursor,temp_table"
        assert state(c.query("listen st")) == "advisory_lock,hold_cursor,listen,temp_table"
        assert state(c.query("select pg_advisory_unlock(5); close hc")) == "listen,temp_table"
        out = c.query("begin; drop table st")
        assert state(out) == "listen"  # dropped in the open transaction already
        assert state(c.query("rollback")) == "listen,temp_table"  # the drop rolled back
        assert state(c.query("discard all")) == "clean"
        # without the request nothing is reported
        plain = Raw(server.port)
        try:
            assert state(plain.startup) is None and state(plain.query("select pg_advisory_lock(6)")) is None
        finally:
            plain.close()
    finally:
        c.close()


def test_temp_tables_are_private_and_dropped_at_session_end(server):
    with server.connect() as a, server.connect() as b:
        a.execute("create temp table tmp_t(id serial primary key, v text)")
        a.execute("insert into tmp_t(v) values ('a1'), ('a2')")
        b.execute("create table tmp_t(v text)")  # a permanent table of the same name
        b.execute("insert into tmp_t values ('perm')")
        assert a.execute("select count(*) from tmp_t").fetchone() == (2,)  # the temp table comes first
        assert a.execute("select count(*) from pg_temp.tmp_t").fetchone() == (2,)
        assert b.execute("select v from tmp_t").fetchall() == [("perm",)]
        nsp = a.execute("select pg_my_temp_schema()::regnamespace::text").fetchone()[0]
        assert nsp.startswith("pg_temp_")
        assert b.execute("select pg_my_temp_schema()").fetchone() == (0,)
        assert a.execute("select relpersistence from pg_class where relname = 'tmp_t' "
                         "and relnamespace = pg_my_temp_schema()").fetchone() == ("t",)
        with pytest.raises(psycopg.errors.InvalidTableDefinition):
            a.execute("create temp table public.nope(a int)")
        a.execute("create temp table tmp_as as select generate_series(1, 3) as x")
        assert a.execute("select relname from pg_class where relnamespace = pg_my_temp_schema() and relkind = 'r' "
                         "order by relname").fetchall() == [("tmp_as",), ("tmp_t",)]
        assert a.execute("select count(*) from tmp_as, tmp_t").fetchone() == (6,)
        b.execute("drop table tmp_t")
        apid = a.info.backend_pid
    with server.connect() as c:
        _wait_gone(c, [apid])
        rows = c.execute("select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                         "where n.nspname = %s", (nsp,)).fetchone()
        assert rows == (0,)


def test_pg_cursors_and_pg_locks(server):
    with server.connect() as a, server.connect() as b:
        a.execute("declare c1 cursor with hold for select generate_series(1, 5)")
        a.execute("begin")
        a.execute("declare c2 scroll cursor for select 1")
        rows = a.execute("select name, statement, is_holdable, is_scrollable, creation_time is not null "
                         "from pg_cursors order by name").fetchall()
        assert rows == [("c1", "declare c1 cursor with hold for select generate_series(1, 5)", True, True, True),
                        ("c2", "declare c2 scroll cursor for select 1", False, True, True)]
        a.execute("commit")
        assert a.execute("select name from pg_cursors").fetchall() == [("c1",)]
        a.execute("select pg_advisory_lock(1234567890123)")
        a.execute("select pg_advisory_lock_shared(77)")
        rows = b.execute("select classid, objid, objsubid, pid, mode, granted from pg_locks "
                         "where locktype = 'advisory' order by objid").fetchall()
        key = 1234567890123
        assert rows == [(0, 77, 1, a.info.backend_pid, "ShareLock", True),
                        (key >> 32, key & 0xFFFFFFFF, 1, a.info.backend_pid, "ExclusiveLock", True)]
        assert b.execute("select pg_try_advisory_lock_shared(77), pg_try_advisory_lock(77)").fetchone() == (True,
                                                                                                            False)
        t = threading.Thread(target=lambda: b.execute("select pg_advisory_lock(1234567890123)"))
        t.start()
        _wait_active(server, b.info.backend_pid, "pg_advisory_lock(1234567890123)")
        a.execute("select pg_advisory_unlock_all()")
        t.join(20)
        assert not t.is_alive()
        assert a.execute("select pid from pg_locks where locktype = 'advisory' and objid = %s",
                         (key & 0xFFFFFFFF,)).fetchall() == [(b.info.backend_pid,)]


# ----------------------------------------------------------------------------- pg_stat_activity

def test_activity_shows_application_name_and_pooled_client(server):
    with server.connect() as c, server.connect() as viewer:
        pid = c.info.backend_pid
        q = "select application_name, client_addr::text, client_port from pg_stat_activity where pid = %s"
        _app, addr, port = viewer.execute(q, (pid,)).fetchone()
        real = (addr, port)
        c.execute("set application_name = 'my app'")
        assert viewer.execute(q, (pid,)).fetchone()[0] == "my app"
        c.execute("select set_config('pgbundle.client_addr', '10.1.2.3:4567', false)")
        assert viewer.execute(q, (pid,)).fetchone() == ("my app", "10.1.2.3", 4567)
        c.execute("begin; set local application_name = 'local'")
        assert viewer.execute(q, (pid,)).fetchone()[0] == "local"
        c.execute("commit")
        assert viewer.execute(q, (pid,)).fetchone()[0] == "my app"
        c.execute("reset all")
        assert viewer.execute(q, (pid,)).fetchone() == ("", *real)


def test_activity_query_of_extended_protocol_statements(server):
    """pg_stat_activity.query shows the statement an Execute runs (Parse/Bind/Execute), as
    for a simple Query: psycopg's prepared statements and asyncpg's."""
    q = "select state, query from pg_stat_activity where pid = %s"
    with server.connect() as c, server.connect() as viewer:
        pid = c.info.backend_pid
        c.execute("select 1")  # simple protocol first: the query below must replace it
        for _ in range(2):  # the second run is a named, server-side prepared statement
            assert c.execute("select %s::int + 41 as answer", (1,), prepare=True).fetchone() == (42,)
            assert viewer.execute(q, (pid,)).fetchone() == ("idle", "select $1::int + 41 as answer")

    async def run():
        conn = await asyncpg.connect(host="127.0.0.1", port=server.port, user="postgres", database="postgres")
        try:
            stmt = await conn.prepare("select $1::int * 2 as twice")
            assert await stmt.fetchval(21) == 42
            with server.connect() as viewer:
                return viewer.execute(q, (conn.get_server_pid(),)).fetchone()
        finally:
            await conn.close()

    assert asyncio.run(run()) == ("idle", "select $1::int * 2 as twice")
