"""Connection limit (53300 for the 101st client) and query cancel (57014)."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from psycopg import errors


def test_101st_connection_gets_53300(server):
    conns = []
    try:
        for _ in range(100):
            conns.append(psycopg.connect(server.dsn(), autocommit=True, connect_timeout=30))
        with pytest.raises(psycopg.OperationalError) as ei:
            psycopg.connect(server.dsn(), connect_timeout=30)
        assert "sorry, too many clients already" in str(ei.value)
    finally:
        for c in conns:
            c.close()
    # the slots are free again
    deadline = time.monotonic() + 20
    while True:
        try:
            with psycopg.connect(server.dsn(), connect_timeout=10) as c:
                assert c.execute("select 1").fetchone() == (1,)
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_cancel_long_query_gives_57014(server):
    with server.connect() as c:
        c.execute("create table slow as select g as id from generate_series(1, 2000) g") if False else None
        timer = threading.Timer(0.5, c.cancel)
        timer.start()
        with pytest.raises(errors.QueryCanceled) as ei:
            c.execute("select pg_sleep(30)")
        timer.join()
        assert ei.value.sqlstate == "57014"
        assert c.execute("select 1").fetchone() == (1,)


def test_statement_timeout(server):
    with server.connect() as c:
        c.execute("set statement_timeout = '300ms'")
        with pytest.raises(errors.QueryCanceled) as ei:
            c.execute("select pg_sleep(10)")
        assert "statement timeout" in str(ei.value)
