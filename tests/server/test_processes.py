"""The process architecture: every process is visible in pg_stat_activity with a live
pid and in ``ps`` with its title; postmaster.pid; a second server on the same
directory is refused; psql and psycopg connect."""

from __future__ import annotations

import os
import subprocess
import sys
import time

EXPECTED = {"checkpointer", "background writer", "walwriter", "autovacuum launcher", "stats collector",
            "client backend"}


def test_pg_stat_activity_lists_every_process(server):
    with server.connect() as c:
        deadline = time.monotonic() + 20
        while True:
            rows = c.execute("select pid, backend_type from pg_stat_activity").fetchall()
            types = {t for _, t in rows}
            if EXPECTED <= types or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        me = c.info.backend_pid
    assert EXPECTED <= types, rows
    for pid, _t in rows:
        os.kill(pid, 0)  # every pid is alive
    assert me in {p for p, t in rows if t == "client backend"}


def test_ps_shows_titles(server):
    titles = set(server.children().values())
    for name in ("checkpointer", "background writer", "walwriter", "autovacuum launcher", "stats collector",
                 "logger"):
        assert f"pgbundle: {name}" in titles, titles
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    assert "pgbundle: checkpointer" in ps


def test_logging_collector_not_in_activity_but_writes_log(server):
    rows = server.sql("select backend_type from pg_stat_activity")
    assert ("logger",) not in rows and ("syslogger",) not in rows
    assert "database system is ready to accept connections" in server.log()
    assert any(p.name.startswith("postgresql-") for p in (server.datadir / "log").iterdir())


def test_psql_connects(server):
    r = server.psql("-A", "-t", "-c", "select 40 + 2")
    assert r.stdout.strip() == "42"
    r = server.psql("-A", "-t", "-c", "show server_version")
    assert r.stdout.strip().startswith("15.")


def test_postmaster_pid_and_second_server_refused(server):
    lines = (server.datadir / "postmaster.pid").read_text().splitlines()
    assert int(lines[0]) == server.pid
    assert lines[3] == str(server.port)
    r = subprocess.run([sys.executable, "-m", "pgbundle.shared.cli", "server", "-D", str(server.datadir), "--port",
                        "1"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert 'lock file "postmaster.pid" already exists' in r.stderr + r.stdout
    assert f"PID {server.pid}" in r.stderr + r.stdout
