"""Databases, settings (postgresql.conf, -c, SHOW, pg_settings), statistics views, log
rotation, and bad input on the wire."""

from __future__ import annotations

import socket
import struct
import time

import psycopg
import pytest
from psycopg import errors


def test_create_and_drop_database(server):
    with server.connect() as c:
        c.execute("create database app")
        with pytest.raises(errors.DuplicateDatabase):
            c.execute("create database app")
    with server.connect(dbname="app") as a:
        a.execute("create table only_here (id int)")
        a.execute("insert into only_here values (7)")
        assert a.execute("select current_database()").fetchone() == ("app",)
        with server.connect() as c:
            with pytest.raises(errors.ObjectInUse) as ei:
                c.execute("drop database app")
            assert "is being accessed by other users" in str(ei.value)
    with server.connect() as c:
        with pytest.raises(errors.UndefinedTable):
            c.execute("select * from only_here")
        deadline = time.monotonic() + 10
        while True:
            try:
                c.execute("drop database app")
                break
            except errors.ObjectInUse:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with pytest.raises(errors.InvalidCatalogName):
            c.execute("drop database app")
    with pytest.raises(psycopg.OperationalError) as ei:
        psycopg.connect(server.dsn(dbname="app"))
    assert 'database "app" does not exist' in str(ei.value)


def test_create_database_in_transaction_block_refused(server):
    with server.connect(autocommit=False) as c:
        with pytest.raises(errors.ActiveSqlTransaction):
            c.execute("create database nope")


def test_settings_from_file_and_command_line(server_factory):
    srv = server_factory(start=False, work_mem="8MB")
    srv.datadir.parent.mkdir(parents=True, exist_ok=True)
    srv.start()  # initialises the directory
    srv.stop()
    with open(srv.datadir / "postgresql.conf", "a") as f:
        f.write("deadlock_timeout = '2s'\nwork_mem = 1MB\n")
    srv.start()
    with srv.connect() as c:
        assert c.execute("show deadlock_timeout").fetchone() == ("2s",)
        assert c.execute("show work_mem").fetchone() == ("8MB",)  # -c wins over the file
        row = c.execute("select setting, unit, source from pg_settings where name = 'work_mem'").fetchone()
        assert row == ("8192", "kB", "command line")
        row = c.execute("select setting, source from pg_settings where name = 'deadlock_timeout'").fetchone()
        assert row == ("2000", "configuration file")
        assert c.execute("show shared_buffers").fetchone() == ("4MB",)
        with pytest.raises(errors.CantChangeRuntimeParam):
            c.execute("set shared_buffers = '1GB'")
        c.execute("set work_mem = '16MB'")
        assert c.execute("show work_mem").fetchone() == ("16MB",)


def test_pg_stat_database_counters(server):
    with server.connect() as c:
        c.execute("create table sdb (id int)")
        c.execute("insert into sdb select g from generate_series(1, 10) g")
        with pytest.raises(errors.DivisionByZero):
            c.execute("select 1/0")
        deadline = time.monotonic() + 10
        while True:
            row = c.execute("select xact_commit, xact_rollback, tup_inserted, blks_hit from pg_stat_database "
                            "where datname = 'postgres'").fetchone()
            if row and row[0] > 0 and row[1] > 0 and row[2] >= 10 and row[3] > 0:
                break
            assert time.monotonic() < deadline, row
            time.sleep(0.2)


def test_log_rotation_by_size(server_factory):
    srv = server_factory(log_rotation_size="2kB", log_connections="on")
    for _ in range(60):
        with srv.connect() as c:
            c.execute("select 1")
    deadline = time.monotonic() + 10
    while len(list((srv.datadir / "log").iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    files = list((srv.datadir / "log").iterdir())
    assert len(files) >= 2, files


def _raw(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(payload)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except (socket.timeout, ConnectionResetError):
            pass
        return out


def test_garbage_gets_an_error_not_a_traceback(server):
    out = _raw(server.port, b"\x00\x00\x00\x08\xde\xad\xbe\xef")
    assert out[:1] == b"E" and b"unsupported frontend protocol" in out
    out = _raw(server.port, b"\xff\xff\xff\xff garbage")
    assert out == b"" or out[:1] == b"E"
    # a valid startup, then a garbage message type
    startup = struct.pack("!I", 196608) + b"user\0postgres\0database\0postgres\0\0"
    out = _raw(server.port, struct.pack("!I", len(startup) + 4) + startup + b"\x01\x00\x00\x00\x04")
    assert b"invalid frontend message type" in out
    assert b"Traceback" not in out
    # the server is fine
    assert server.sql("select 1") == [(1,)]


def test_ssl_request_answered_n(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(struct.pack("!II", 8, 80877103))
        assert s.recv(1) == b"N"


def test_idle_in_transaction_timeout_and_reload(server_factory):
    srv = server_factory()
    with srv.connect(autocommit=False) as c:
        c.execute("set idle_in_transaction_session_timeout = '300ms'")
        c.execute("select 1")
        time.sleep(1.0)
        with pytest.raises(psycopg.Error) as ei:
            c.execute("select 1")
        assert "idle-in-transaction timeout" in str(ei.value)
    with open(srv.datadir / "postgresql.conf", "a") as f:
        f.write("deadlock_timeout = '3s'\n")
    import os
    import signal

    with srv.connect() as c:
        assert c.execute("show deadlock_timeout").fetchone() == ("1s",)
        os.kill(srv.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while c.execute("show deadlock_timeout").fetchone() != ("3s",):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert srv.sql("show deadlock_timeout") == [("3s",)]
