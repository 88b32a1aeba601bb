"""Shutdown modes: smart waits for clients, fast terminates them (57P01), immediate
skips the checkpoint (the next start runs recovery); smart and fast write a shutdown
checkpoint; children exit when the postmaster dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest


def _control_state(srv) -> str:
    import json

    raw = (srv.datadir / "global" / "pg_control").read_bytes()
    return json.loads(raw.rpartition(b"\n")[0])["state"]


def test_smart_shutdown_waits_for_clients(server_factory):
    srv = server_factory()
    c = srv.connect()
    c.execute("create table s (id int)")
    os.kill(srv.pid, signal.SIGTERM)
    time.sleep(1.0)
    assert srv.proc.poll() is None  # still waiting for our client
    assert c.execute("select 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError) as ei:
        psycopg.connect(srv.dsn(), connect_timeout=5)
    assert "shutting down" in str(ei.value)
    c.close()
    assert srv.proc.wait(30) == 0
    assert "shutting down" in srv.log()
    assert _control_state(srv) == "shut down"
    assert not (srv.datadir / "postmaster.pid").exists()


def test_fast_shutdown_terminates_clients(server_factory):
    srv = server_factory()
    c = srv.connect()
    c.execute("create table f (id int)")
    c.execute("insert into f values (1)")
    r = subprocess.run([sys.executable, "-m", "pgbundle.shared.cli", "stop", "-D", str(srv.datadir), "-m", "fast"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "server stopped" in r.stdout
    with pytest.raises(psycopg.OperationalError) as ei:
        c.execute("select 1")
    assert "terminating connection due to administrator command" in str(ei.value) or c.closed
    assert _control_state(srv) == "shut down"
    srv.start()
    assert "automatic recovery" not in srv.log()
    assert srv.sql("select count(*) from f") == [(1,)]


def test_immediate_shutdown_then_recovery(server_factory):
    srv = server_factory()
    with srv.connect() as c:
        c.execute("create table im (id int)")
        c.execute("insert into im select g from generate_series(1, 100) g")
    os.kill(srv.pid, signal.SIGQUIT)
    assert srv.proc.wait(30) == 0
    assert _control_state(srv) != "shut down"
    deadline = time.monotonic() + 10
    while srv.group_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    srv.start()
    assert "automatic recovery in progress" in srv.log()
    assert srv.sql("select count(*) from im") == [(100,)]


def test_children_exit_when_postmaster_dies(server_factory):
    srv = server_factory()
    c = srv.connect()
    kids = srv.children()
    assert kids
    os.kill(srv.pid, signal.SIGKILL)
    srv.proc.wait(10)
    deadline = time.monotonic() + 20
    alive = list(kids)
    while time.monotonic() < deadline:
        alive = [p for p in kids if _alive(p)]
        if not alive:
            break
        time.sleep(0.1)
    c.close()
    assert not alive, {p: kids[p] for p in alive}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
