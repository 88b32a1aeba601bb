"""Signals (SIGHUP reload, SIGINT graceful, SIGTERM now) and pgbouncer's timeouts."""

from __future__ import annotations

import signal
import time

import psycopg
import pytest

from .helpers import admin, base_args, connect
from .test_limits import wait_for


def admin_state(p) -> dict:
    return dict(admin(p, "SHOW STATE"))


def _ini(tmp_path, pg, **settings) -> str:
    path = tmp_path / "pgbouncer.ini"
    lines = [f"[databases]\n* = host=127.0.0.1 port={pg.port}\n[pgbouncer]\n", "unix_socket_dir =\n",
             "admin_users = postgres\n"]
    lines += [f"{k} = {v}\n" for k, v in settings.items()]
    path.write_text("".join(lines))
    return str(path)


def _config(p) -> dict:
    return {r[0]: r[1] for r in admin(p, "SHOW CONFIG")}


def test_sighup_reloads_config(pg, pooler_factory, tmp_path):
    cfg = _ini(tmp_path, pg, pool_mode="transaction", default_pool_size=1, query_wait_timeout=1)
    p = pooler_factory(["--config", cfg])
    assert _config(p)["default_pool_size"] == "1"
    holder = connect(p, autocommit=False)
    holder.execute("select 1")
    with connect(p) as c:
        with pytest.raises(psycopg.OperationalError):
            c.execute("select 1")
    _ini(tmp_path, pg, pool_mode="transaction", default_pool_size=3, query_wait_timeout=1)
    p.signal(signal.SIGHUP)
    wait_for(lambda: _config(p)["default_pool_size"] == "3", what="reload")
    with connect(p) as c:  # room for a second server now
        assert c.execute("select 1").fetchone() == (1,)
    holder.rollback()
    holder.close()


def test_bad_reload_keeps_running(pg, pooler_factory, tmp_path):
    cfg = _ini(tmp_path, pg, pool_mode="transaction")
    p = pooler_factory(["--config", cfg])
    (tmp_path / "pgbouncer.ini").write_text("[pgbouncer]\nno_such_setting = 1\n")
    with pytest.raises(psycopg.Error) as ei:
        admin(p, "RELOAD")
    assert "RELOAD failed" in str(ei.value)
    p.signal(signal.SIGHUP)
    with connect(p) as c:
        assert c.execute("select 1").fetchone() == (1,)
    assert "unknown setting 'no_such_setting'" in p.log()


def test_sigint_lets_running_transaction_finish(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction"))
    busy = connect(p, autocommit=False)
    busy.execute("select 1")
    idle = connect(p)
    idle.execute("select 1")
    p.signal(signal.SIGINT)
    time.sleep(0.3)
    assert p.alive()
    with pytest.raises(psycopg.OperationalError):
        connect(p)  # no longer accepting
    assert busy.execute("select 2").fetchone() == (2,)  # the transaction goes on
    busy.commit()
    p.proc.wait(15)
    assert p.proc.returncode == 0
    with pytest.raises(psycopg.OperationalError):
        idle.execute("select 1")
    busy.close()
    idle.close()


def test_sigterm_waits_for_clients_and_a_second_stops_at_once(pg, pooler_factory):
    """pgbouncer >= 1.23: SIGTERM is SHUTDOWN WAIT_FOR_CLIENTS; one during a shutdown is immediate."""
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction"))
    c = connect(p, autocommit=False)
    c.execute("select 1")
    other = connect(p)
    p.signal(signal.SIGTERM)
    wait_for(lambda: "waiting for all clients disconnect" in p.log(), what="the SIGTERM log line")
    with pytest.raises(psycopg.OperationalError):
        connect(p)  # no longer accepting
    assert c.execute("select 2").fetchone() == (2,)  # the clients still connected are served
    c.commit()
    c.close()
    assert p.alive()
    other.close()
    p.proc.wait(30)  # the last client left
    assert p.proc.returncode == 0 and "client connections dropped, exiting" in p.log()

    p = pooler_factory(base_args(pg, "--pool-mode", "transaction"))
    c = connect(p, autocommit=False)
    c.execute("select 1")
    p.signal(signal.SIGTERM)
    wait_for(lambda: "waiting for all clients disconnect" in p.log(), what="the SIGTERM log line")
    p.signal(signal.SIGTERM)
    p.proc.wait(30)
    assert "got SIGTERM while shutting down, fast exit" in p.log()
    with pytest.raises(psycopg.OperationalError):
        c.execute("select 1")
    c.close()


def test_sigusr1_pauses_and_sigusr2_resumes(pg, pooler_factory):
    import threading

    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "--admin-users", "postgres"))
    c = connect(p)
    assert c.execute("select 1").fetchone() == (1,)
    p.signal(signal.SIGUSR1)
    wait_for(lambda: "got SIGUSR1, pausing all activity" in p.log(), what="the pause")
    wait_for(lambda: admin_state(p)["paused"] == "yes", what="SHOW STATE paused")
    result: list = []
    t = threading.Thread(target=lambda: result.append(c.execute("select 2").fetchone()))
    t.start()
    time.sleep(0.5)
    assert result == [] and p.alive()  # held while paused
    p.signal(signal.SIGUSR2)
    t.join(30)
    assert result == [(2,)] and "got SIGUSR2, continuing" in p.log()
    c.close()


def test_client_idle_timeout(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "-s", "client_idle_timeout=0.5"))
    c = connect(p)
    c.execute("select 1")
    time.sleep(1.5)
    with pytest.raises(psycopg.OperationalError):
        c.execute("select 1")
    c.close()
    assert "client_idle_timeout" in p.log()


def test_idle_transaction_timeout(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "-s", "idle_transaction_timeout=0.5"))
    c = connect(p, autocommit=False)
    c.execute("select 1")
    time.sleep(1.5)
    with pytest.raises(psycopg.OperationalError):
        c.execute("select 1")
    c.close()
    assert "idle transaction timeout" in p.log()
    with connect(p) as c2:
        assert c2.execute("select 1").fetchone() == (1,)


def test_query_timeout(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "-s", "query_timeout=0.5"))
    with connect(p) as c:
        with pytest.raises(psycopg.OperationalError) as ei:
            c.execute("select pg_sleep(10)")
        assert "query timeout" in str(ei.value)
    with connect(p) as c:
        assert c.execute("select 1 from pg_sleep(0.1)").fetchone() == (1,)


def test_server_idle_timeout_and_lifetime(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "-s", "server_idle_timeout=0.5",
                                 "--admin-users", "postgres"))
    with connect(p) as c:
        c.execute("select 1")
    wait_for(lambda: not admin(p, "SHOW SERVERS"), what="idle server closed")
    p2 = pooler_factory(base_args(pg, "--pool-mode", "transaction", "-s", "server_lifetime=0.5"))
    with connect(p2) as c:
        pid1 = c.execute("select pg_backend_pid()").fetchone()[0]
        time.sleep(1.5)
        pid2 = c.execute("select pg_backend_pid()").fetchone()[0]
    assert pid1 != pid2


def test_server_check_query_drops_bad_server(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "-s", "server_check_delay=0",
                                 "-s", "server_check_query=select 1/0"))
    with connect(p) as c:
        pid1 = c.execute("select pg_backend_pid()").fetchone()[0]
        pid2 = c.execute("select pg_backend_pid()").fetchone()[0]
    assert pid1 != pid2  # the idle server failed its check and was replaced


def test_client_login_timeout_with_auth_pending(pg, pooler_factory, tmp_path):
    import socket

    from .helpers import startup_bytes

    af = tmp_path / "u.txt"
    af.write_text('"postgres" "pw"\n')
    p = pooler_factory(base_args(pg, "--auth-file", str(af), "-s", "client_login_timeout=0.5"))
    with socket.create_connection(("127.0.0.1", p.port), timeout=10) as s:
        s.sendall(startup_bytes())
        data = b""
        while chunk := s.recv(4096):  # asked for a password, never answers: closed
            data += chunk
    assert b"client_login_timeout" in data
