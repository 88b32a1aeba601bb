"""pgbouncer's pool rules, in front of PostgreSQL 15: forced-user pools, min_pool_size, server_fast_close
with RECONNECT, transaction_timeout, query_wait_notify, disable_pqexec, login_notify_message, and
freeing unused pools (autodb_idle_timeout, pool_idle_timeout)."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from .helpers import admin, psql


def _pooler(tmp_path, pg, pooler_factory, databases: str, settings: str = ""):
    ini = tmp_path / "pgbouncer.ini"
    ini.write_text(f"[databases]\n{databases}\n[pgbouncer]\nauth_type = trust\nadmin_users = postgres\n"
                   f"unix_socket_dir =\n{settings}\n")
    return pooler_factory(["--config", str(ini)]), ini


def _wait(cond, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _rows(p, what: str) -> list[dict]:
    with psycopg.connect(p.dsn(dbname="pgbouncer"), autocommit=True) as conn:
        cur = conn.execute(f"SHOW {what}", prepare=False)
        cols = [d.name for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]


@pytest.fixture(scope="module")
def roles(pg):
    pg.sql("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rules_a') THEN "
           "CREATE ROLE rules_a LOGIN; CREATE ROLE rules_b LOGIN; CREATE ROLE rules_svc LOGIN; END IF; END $$")


def test_a_forced_user_database_has_one_pool_and_its_users_settings(tmp_path, pg, pooler_factory, roles):
    p, _ = _pooler(tmp_path, pg, pooler_factory,
                   f"forced = host=127.0.0.1 port={pg.port} dbname=postgres user=rules_svc pool_size=3\n"
                   "[users]\nrules_a = pool_size=1\n")
    conns = [psycopg.connect(p.dsn(user=u, dbname="forced"), autocommit=True) for u in ("rules_a", "rules_b")]
    try:
        for c in conns:
            assert c.execute("SELECT current_user").fetchone() == ("rules_svc",)
        pools = [r for r in _rows(p, "POOLS") if r["database"] == "forced"]
        assert [r["user"] for r in pools] == ["rules_svc"], pools
        # rules_a's pool_size=1 is not the forced pool's: both clients hold a server at once
        for c in conns:
            c.execute("BEGIN")
            c.execute("SELECT 1")
        assert sum(r["sv_active"] for r in _rows(p, "POOLS") if r["database"] == "forced") == 2
    finally:
        for c in conns:
            c.close()


def test_min_pool_size_of_a_forced_user_database_is_kept_also_after_reload(tmp_path, pg, pooler_factory, roles):
    entry = f"forced = host=127.0.0.1 port={pg.port} dbname=postgres user=rules_svc min_pool_size=2"
    p, ini = _pooler(tmp_path, pg, pooler_factory, entry)

    def backends() -> set[int]:
        return {int(x) for x in pg.sql("SELECT pid FROM pg_stat_activity WHERE usename = 'rules_svc' "
                                       "AND application_name = 'minpool'").split()} if "minpool" in ini.read_text() \
            else {int(x) for x in pg.sql("SELECT pid FROM pg_stat_activity WHERE usename = 'rules_svc'").split()}

    first = _wait(lambda: (b := backends()) and len(b) == 2 and b, "2 servers before any client")
    ini.write_text(ini.read_text().replace("min_pool_size=2", "min_pool_size=2 application_name=minpool"))
    admin(p, "RELOAD")
    second = _wait(lambda: (b := backends()) and len(b) == 2 and b, "2 new servers after RELOAD")
    assert not first & second


def test_server_fast_close_ends_an_idle_session_at_reconnect(tmp_path, pg, pooler_factory):
    p, _ = _pooler(tmp_path, pg, pooler_factory, f"* = host=127.0.0.1 port={pg.port}", "server_fast_close = 1")
    with psycopg.connect(p.dsn(), autocommit=True) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        admin(p, "RECONNECT")
        _wait(lambda: pg.sql(f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}").strip() == "0",
              "the session's server to be closed")
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")


def test_without_server_fast_close_the_session_survives_reconnect(tmp_path, pg, pooler_factory):
    p, _ = _pooler(tmp_path, pg, pooler_factory, f"* = host=127.0.0.1 port={pg.port}")
    with psycopg.connect(p.dsn(), autocommit=True) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        admin(p, "RECONNECT")
        time.sleep(1)  # a few janitor rounds; nothing is waited for
        assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] == pid
    # released at the end of the session, the server is closed (close_needed)
    _wait(lambda: pg.sql(f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}").strip() == "0",
          "the RECONNECTed server to be closed at release")


def test_transaction_timeout(tmp_path, pg, pooler_factory):
    p, _ = _pooler(tmp_path, pg, pooler_factory, f"* = host=127.0.0.1 port={pg.port}", "transaction_timeout = 1")
    with psycopg.connect(p.dsn()) as conn:  # not autocommit: a transaction is open after the first query
        conn.execute("SELECT 1")

        def ended() -> bool:
            try:
                conn.execute("SELECT 1")
            except psycopg.OperationalError as exc:
                return "transaction timeout" in str(exc) or conn.closed
            time.sleep(0.2)
            return False

        _wait(ended, "the transaction to be ended by transaction_timeout")
    # outside a transaction nothing is timed
    with psycopg.connect(p.dsn(), autocommit=True) as conn:
        conn.execute("SELECT 1")
        time.sleep(2)
        assert conn.execute("SELECT 2").fetchone() == (2,)


def test_query_wait_notify(tmp_path, pg, pooler_factory):
    p, _ = _pooler(tmp_path, pg, pooler_factory, f"* = host=127.0.0.1 port={pg.port} pool_size=1",
                   "query_wait_notify = 1")
    holder = psycopg.connect(p.dsn())
    holder.execute("SELECT 1")  # holds the only server (session mode: until it disconnects)
    notices: list[str] = []
    waiter = psycopg.connect(p.dsn(), autocommit=True)
    waiter.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    result: list = []
    t = threading.Thread(target=lambda: result.append(waiter.execute("SELECT 42").fetchone()))
    t.start()
    try:
        _wait(lambda: any("client being queued" in n for n in notices), "the queued NOTICE", 60)
    finally:
        holder.close()
        t.join(60)
    waiter.close()
    assert result == [(42,)]
    assert notices == ["No server connection available in postgres backend, client being queued"]


def test_disable_pqexec(tmp_path, pg, pooler_factory):
    p, _ = _pooler(tmp_path, pg, pooler_factory, f"* = host=127.0.0.1 port={pg.port}", "disable_pqexec = 1")
    r = psql(p.port, "SELECT 1", check=False)
    assert r.returncode != 0 and "PQexec disallowed" in r.stderr
    with psycopg.connect(p.dsn(), autocommit=True) as conn:  # psycopg's execute is the extended protocol
        assert conn.execute("SELECT %s::int", (7,)).fetchone() == (7,)
    assert 'client used "Query" packet type' in p.log()


def test_login_notify_message(tmp_path, pg, pooler_factory):
    p, _ = _pooler(tmp_path, pg, pooler_factory, f"* = host=127.0.0.1 port={pg.port}",
                   "login_notify_message = you are talking to pgbundle")
    r = psql(p.port, "SELECT 1")
    assert "NOTICE:  you are talking to pgbundle" in r.stderr and r.stdout.strip() == "1"


def test_unused_pools_are_freed(tmp_path, pg, pooler_factory):
    p, _ = _pooler(tmp_path, pg, pooler_factory,
                   f"* = host=127.0.0.1 port={pg.port}\nkept = host=127.0.0.1 port={pg.port} dbname=postgres",
                   "autodb_idle_timeout = 1\npool_idle_timeout = 0\nserver_idle_timeout = 1")
    psql(p.port, "SELECT 1", db="template1")  # an autodb, through *
    psql(p.port, "SELECT 1", db="kept")
    assert {"template1", "kept"} <= {r["name"] for r in _rows(p, "DATABASES")}
    _wait(lambda: "template1" not in {r["name"] for r in _rows(p, "DATABASES")}, "the autodb to be dropped")
    assert "dropping database 'template1'" in p.log()
    assert "kept" in {r["name"] for r in _rows(p, "DATABASES")}
    assert "kept" in {r["database"] for r in _rows(p, "POOLS")}  # pool_idle_timeout = 0: kept


def test_suspend_timeout_closes_what_cannot_be_suspended(tmp_path, pg, pooler_factory):
    p, _ = _pooler(tmp_path, pg, pooler_factory, f"* = host=127.0.0.1 port={pg.port}",
                   "pool_mode = transaction\nsuspend_timeout = 1")
    idle = psycopg.connect(p.dsn(), autocommit=True)
    busy = psycopg.connect(p.dsn(), autocommit=True)
    errors: list[Exception] = []

    def sleep() -> None:
        try:
            busy.execute("SELECT pg_sleep(60)")
        except psycopg.Error as exc:
            errors.append(exc)

    t = threading.Thread(target=sleep)
    t.start()
    try:
        _wait(lambda: pg.sql("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' "
                             "AND state = 'active'").strip() == "1", "the sleep to run")
        with psycopg.connect(p.dsn(dbname="pgbouncer"), autocommit=True) as a:
            a.execute("SUSPEND", prepare=False)  # returns once the busy client is closed (suspend_timeout)
            t.join(30)
            assert errors and "suspend_timeout" in str(errors[0])
            a.execute("RESUME", prepare=False)
        assert idle.execute("SELECT 5").fetchone() == (5,)
    finally:
        pg.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'")
        t.join(60)
        idle.close()
        busy.close()


def test_reload_closes_servers_only_when_their_connection_changes(tmp_path, pg, pooler_factory):
    p, ini = _pooler(tmp_path, pg, pooler_factory, f"app = host=127.0.0.1 port={pg.port} dbname=postgres pool_size=5")

    def backend() -> tuple:
        with psycopg.connect(p.dsn(dbname="app"), autocommit=True) as c:
            return c.execute("SELECT pg_backend_pid(), current_database()").fetchone()

    pid, _ = backend()
    ini.write_text(ini.read_text().replace("pool_size=5", "pool_size=6"))
    admin(p, "RELOAD")
    assert backend() == (pid, "postgres")  # a pool setting: the idle server is kept
    ini.write_text(ini.read_text().replace("dbname=postgres", "dbname=template1"))
    admin(p, "RELOAD")
    new_pid, dbname = backend()
    assert dbname == "template1" and new_pid != pid
    _wait(lambda: pg.sql(f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}").strip() == "0",
          "the old entry's server to be closed")


def test_target_session_attrs(tmp_path, pg, pooler_factory):
    pg.sql("DROP DATABASE IF EXISTS tsa_ro")
    pg.sql("CREATE DATABASE tsa_ro")
    pg.sql("ALTER DATABASE tsa_ro SET default_transaction_read_only = on")
    p, _ = _pooler(tmp_path, pg, pooler_factory,
                   f"rw = host=127.0.0.1 port={pg.port} dbname=tsa_ro target_session_attrs=read-write\n"
                   f"ro = host=127.0.0.1 port={pg.port} dbname=tsa_ro target_session_attrs=read-only\n"
                   f"prim = host=127.0.0.1 port={pg.port} dbname=tsa_ro target_session_attrs=primary\n"
                   f"stby = host=127.0.0.1 port={pg.port} dbname=tsa_ro target_session_attrs=standby",
                   "server_login_retry = 1")
    for db in ("ro", "prim"):
        assert psql(p.port, "SHOW default_transaction_read_only", db=db).stdout.strip() == "on"
    for db, why in (("rw", "is not read-write"), ("stby", "is not standby")):
        r = psql(p.port, "SELECT 1", db=db, check=False)
        assert r.returncode != 0 and why in r.stderr, r.stderr
