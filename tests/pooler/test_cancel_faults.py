"""Cancel, and faults: a vanished client, a killed server backend, the upstream going away."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import psycopg
import pytest

from .helpers import base_args, connect
from .test_limits import wait_for


@pytest.mark.parametrize("mode", ["session", "transaction"])
def test_cancel_long_query(pg, pooler_factory, mode):
    p = pooler_factory(base_args(pg, "--pool-mode", mode))
    with connect(p) as c:
        t = threading.Timer(0.5, c.cancel)
        t.start()
        with pytest.raises(psycopg.errors.QueryCanceled) as ei:
            c.execute("select pg_sleep(30)")
        assert ei.value.sqlstate == "57014"
        t.join()
        assert c.execute("select 1").fetchone() == (1,)  # the session goes on


def test_cancel_of_idle_client_hits_nobody(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "--pool-size", "1"))
    idle = connect(p)
    busy = connect(p)
    try:
        idle.cancel()  # nothing running for it: dropped
        assert busy.execute("select count(*) from pg_sleep(0.3)").fetchone() == (1,)
    finally:
        idle.close()
        busy.close()


CLIENT = """
import sys, time, psycopg
conn = psycopg.connect(sys.argv[1])
conn.execute("insert into vanish values (1)")
conn.execute("select * from vanish for update")
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("mode", ["session", "transaction"])
def test_client_killed_mid_transaction(pg, pooler_factory, mode):
    pg.sql("drop table if exists vanish; create table vanish(x int)")
    p = pooler_factory(base_args(pg, "--pool-mode", mode, "--pool-size", "1"))
    proc = subprocess.Popen([sys.executable, "-c", CLIENT, p.dsn()], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.kill()  # no Terminate, no rollback: the socket just goes away
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    with connect(p) as c:
        # the only server connection must not be inside the dead client's transaction
        assert c.execute("select count(*) from vanish").fetchone() == (0,)
        with c.transaction():
            c.execute("set local lock_timeout = '2s'")
            c.execute("lock table vanish in access exclusive mode")  # nobody holds a lock any more


def test_server_backend_terminated_under_client(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "--pool-size", "2"))
    c = connect(p, autocommit=False)
    pid = c.execute("select pg_backend_pid()").fetchone()[0]
    pg.sql(f"select pg_terminate_backend({pid})")
    with pytest.raises(psycopg.OperationalError):
        c.execute("select 1")
    c.close()
    with connect(p) as c2:  # the pool replaced the dead connection
        pid2 = c2.execute("select pg_backend_pid()").fetchone()[0]
        assert pid2 != pid
        assert c2.execute("select 1").fetchone() == (1,)


def test_upstream_stopped_and_restarted(pg_private, pooler_factory):
    pg = pg_private
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "-s", "server_login_retry=0.5",
                                 "-s", "query_wait_timeout=5"))
    with connect(p) as c:
        assert c.execute("select 1").fetchone() == (1,)
    pg.stop("fast")
    start = time.monotonic()
    with pytest.raises(psycopg.OperationalError) as ei:
        with connect(p) as c:
            c.execute("select 1")
    assert time.monotonic() - start < 30  # a hang guard, not a timing claim
    assert "cannot connect to server" in str(ei.value) or "server login has been failing" in str(ei.value) \
        or "query_wait_timeout" in str(ei.value), str(ei.value)
    pg.start()

    def works():
        try:
            with connect(p) as c:
                return c.execute("select 42").fetchone() == (42,)
        except psycopg.OperationalError:
            return False

    wait_for(works, 20, "the pool to recover")
    assert p.alive()


def test_pooler_survives_sigkilled_upstream_backends(pg_private, pooler_factory):
    pg = pg_private
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "--pool-size", "3"))
    conns = [connect(p) for _ in range(3)]
    for c in conns:
        c.execute("select 1")
    for pid in pg.sql("select pid from pg_stat_activity where backend_type='client backend' "
                      "and pid <> pg_backend_pid()").split():
        os.kill(int(pid), signal.SIGKILL)  # the postmaster restarts everything
    for c in conns:
        c.close()

    def works():
        try:
            with connect(p) as c:
                return c.execute("select 1").fetchone() == (1,)
        except psycopg.OperationalError:
            return False

    wait_for(works, 30, "recovery")


def _read_until(sock, fb, want) -> list:
    from pgbundle.shared.protocol import decode_backend

    got: list = []
    while True:
        while (f := fb.next_frame()) is not None:
            msg = decode_backend(*f)
            got.append(msg)
            if isinstance(msg, want):
                return got
        chunk = sock.recv(65536)
        assert chunk, f"closed before {want.__name__}: {got}"
        fb.receive_data(chunk)


def test_cancel_reaching_the_wrong_peer_is_forwarded(pg, pooler_factory, tmp_path):
    """peer_id / [peers] (pgbouncer >= 1.21): a cancel request that reaches another peer -- as behind
    so_reuseport -- is forwarded to the peer that owns the key, and cancels the query there."""
    import socket

    from pgbundle.shared.protocol import FrameBuffer, encode, messages as m
    from tests.procs import free_port

    ports = {1: free_port(), 2: free_port()}
    poolers = {}
    for me in (1, 2):
        cfg = tmp_path / f"peer{me}.ini"
        cfg.write_text(f"[databases]\npostgres = host=127.0.0.1 port={pg.port}\n[peers]\n"
                       + "".join(f"{i} = host=127.0.0.1 port={ports[i]}\n" for i in (1, 2))
                       + f"[pgbouncer]\nlisten_port = {ports[me]}\npeer_id = {me}\nauth_type = trust\n"
                       f"auth_file = {tmp_path / 'users.txt'}\nunix_socket_dir =\n")
        (tmp_path / "users.txt").write_text('"postgres" ""\n')
        poolers[me] = pooler_factory(["--config", str(cfg)], port=ports[me])
    with socket.create_connection(("127.0.0.1", ports[1]), timeout=30) as s:
        fb = FrameBuffer()
        s.sendall(encode(m.StartupMessage(3 << 16, {"user": "postgres", "database": "postgres"})))
        key = next(x for x in _read_until(s, fb, m.ReadyForQuery) if isinstance(x, m.BackendKeyData))
        assert key.process_id >> 15 == 1  # the key names its peer
        s.sendall(encode(m.Query("SELECT pg_sleep(20)")))
        time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", ports[2]), timeout=10) as c:
            c.sendall(encode(m.CancelRequest(key.process_id, key.secret_key)))
            c.recv(1)
        msgs = _read_until(s, fb, m.ReadyForQuery)
        errors = [x for x in msgs if isinstance(x, m.ErrorResponse)]  # none if the sleep ran its course
        assert [e.sqlstate for e in errors] == ["57014"], msgs
