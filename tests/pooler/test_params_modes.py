"""Session parameters follow clients across server connections; pool modes behave as pgbouncer's."""

from __future__ import annotations

import psycopg
import pytest

from .helpers import base_args, connect, pool_row


def test_parameters_follow_each_client(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "--pool-size", "1"))
    a = psycopg.connect(p.dsn() + " application_name=app_a options='-c TimeZone=Asia/Tokyo -c search_path=sp_a'",
                        autocommit=True)
    b = psycopg.connect(p.dsn() + " application_name=app_b options='-c TimeZone=America/New_York'",
                        autocommit=True)
    c = psycopg.connect(p.dsn(), autocommit=True)
    try:
        pid = None
        for _ in range(3):
            for conn, app, tz, sp in ((a, "app_a", "Asia/Tokyo", "sp_a"),
                                      (b, "app_b", "America/New_York", '"$user", public'),
                                      (c, "", "Etc/UTC", '"$user", public')):
                row = conn.execute("select current_setting('application_name'), current_setting('TimeZone'), "
                                   "current_setting('search_path'), pg_backend_pid()").fetchone()
                assert row[:3] == (app, tz, sp)
                pid = pid or row[3]
                assert row[3] == pid  # one server connection served all three
        # a SET in one client stays with that client only
        a.execute("set DateStyle = 'German, DMY'")
        assert b.execute("show DateStyle").fetchone() == ("ISO, MDY",)
        assert a.execute("show DateStyle").fetchone() == ("German, DMY",)
        assert a.info.parameter_status("DateStyle") == "German, DMY"
        b.execute("set application_name = 'renamed'")
        assert a.execute("select current_setting('application_name')").fetchone() == ("app_a",)
        assert b.execute("select current_setting('application_name')").fetchone() == ("renamed",)
    finally:
        a.close()
        b.close()
        c.close()


def test_client_sees_server_parameter_set(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction"))
    with psycopg.connect(p.dsn() + " application_name=x1", autocommit=True) as conn:
        info = conn.info
        assert info.parameter_status("server_version").startswith("15.")
        assert info.parameter_status("integer_datetimes") == "on"
        assert info.parameter_status("DateStyle") == "ISO, MDY"
        assert info.parameter_status("application_name") == "x1"
        assert info.parameter_status("client_encoding") == "UTF8"
        assert info.parameter_status("standard_conforming_strings") == "on"
        assert info.backend_pid != conn.execute("select pg_backend_pid()").fetchone()[0]  # the pooler's key


def test_statement_mode_refuses_transactions(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "--pool-mode", "statement"))
    with connect(p) as c:
        assert c.execute("select 1").fetchone() == (1,)
    c = connect(p, autocommit=False)
    with pytest.raises(psycopg.OperationalError) as ei:
        c.execute("select 1")
    assert "transaction blocks not allowed in statement pooling mode" in str(ei.value)
    c.close()
    with connect(p) as c:  # and the pool is fine afterwards
        assert c.execute("select 2").fetchone() == (2,)


def test_session_mode_resets_server(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "--pool-mode", "session", "--pool-size", "1", "--admin-users", "postgres"))
    with connect(p) as c:
        c.execute("create temp table tmp_x(a int)")
        c.execute("set work_mem = '7MB'")
        pid = c.execute("select pg_backend_pid()").fetchone()[0]
    with connect(p) as c:
        assert c.execute("select pg_backend_pid()").fetchone()[0] == pid  # same server, reset
        assert c.execute("select count(*) from pg_class where relname = 'tmp_x'").fetchone() == (0,)
        assert c.execute("show work_mem").fetchone() == ("4MB",)


def test_session_mode_holds_server_for_the_session(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "--pool-mode", "session", "--pool-size", "1", "-s", "query_wait_timeout=1",
                                 "--admin-users", "postgres"))
    a = connect(p)
    a.execute("select 1")
    with connect(p) as b:
        with pytest.raises(psycopg.OperationalError):
            b.execute("select 1")
    a.close()
    with connect(p) as b:
        assert b.execute("select 1").fetchone() == (1,)
    assert pool_row(p)["pool_mode"] == "session"


def test_transaction_mode_releases_between_transactions(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "--pool-size", "1"))
    a = connect(p, autocommit=False)
    b = connect(p, autocommit=False)
    for i in range(5):
        a.execute("select %s", (i,))
        a.commit()
        b.execute("select %s", (i,))
        b.commit()
    a.close()
    b.close()


def test_server_reset_query_always(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "--pool-size", "1",
                                 "-s", "server_reset_query_always=1"))
    with connect(p) as c:
        c.execute("create temp table tmp_always(a int)")
    with connect(p) as c:
        assert c.execute("select count(*) from pg_class where relname = 'tmp_always'").fetchone() == (0,)


def test_options_other_than_settings_are_refused(pg, pooler_factory):
    """pgbouncer's test_options_startup_param: `-c name=value` is taken, anything else refused (08P01)."""
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction"))
    with psycopg.connect(p.dsn(), options=r"-c t\imezone=\P\o\r\t\ugal", autocommit=True) as c:
        assert c.execute("SHOW timezone").fetchone()[0] == "Portugal"
    for options in ("-d", "-c timezone"):
        with pytest.raises(psycopg.OperationalError, match="only '-c config=val' and '--config=val' are allowed"):
            psycopg.connect(p.dsn(), options=options, connect_timeout=10)
