"""`pgbundle pooler` with no upstream runs the bundled server itself."""

from __future__ import annotations

import os
import signal
import time

import psycopg

from tests.fix_pooler import PoolerProcess

from .test_limits import wait_for


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    pids.append(int(d))
        except OSError:
            pass
    return pids


def test_zero_config_pooler_with_bundled_server(tmp_path):
    datadir = tmp_path / "pgbundle-data"
    p = PoolerProcess(["--unix-socket-dir", ""], cwd=str(tmp_path))  # no upstream, no config
    try:
        with psycopg.connect(p.dsn(), autocommit=True) as c:
            c.execute("create table notes(id int primary key, body text)")
            c.execute("insert into notes values (%s, %s), (%s, %s)", (1, "first", 2, "second"))
            assert c.execute("select body from notes order by id").fetchall() == [("first",), ("second",)]
        assert (datadir / "PG_VERSION").exists()
        log = p.log()
        assert "connect with: psql -h 127.0.0.1" in log and "initialising" in log
        p.signal(signal.SIGINT)
        p.proc.wait(60)
        assert p.proc.returncode == 0
        wait_for(lambda: not _processes_mentioning(str(datadir)), 30, "no process left behind")
    finally:
        p.close()
    # a second start finds the data again
    log = _start_again(tmp_path, datadir, [], "select count(*) from notes", (2,))
    assert "initialising" not in log


def _start_again(tmp_path, datadir, args: list[str], sql: str, expect: tuple) -> str:
    """Start a pooler again on ``datadir``, check ``sql`` answers ``expect``, stop it, check that
    nothing is left running; its log."""
    p2 = PoolerProcess(["--unix-socket-dir", "", *args], cwd=str(tmp_path))
    try:
        with psycopg.connect(p2.dsn(), autocommit=True) as c:
            assert c.execute(sql).fetchone() == expect
        log = p2.log()
    finally:
        p2.signal(signal.SIGINT)
        p2.proc.wait(60)
        p2.close()
    wait_for(lambda: not _processes_mentioning(str(datadir)), 30, "no process left behind")
    return log


def test_bundled_server_is_restarted_when_it_dies(tmp_path):
    datadir = tmp_path / "data"
    p = PoolerProcess(["--unix-socket-dir", "", "--data-dir", str(datadir)], cwd=str(tmp_path))
    try:
        with psycopg.connect(p.dsn(), autocommit=True) as c:
            c.execute("create table t(a int)")
            c.execute("insert into t values (42)")
        pid = int((datadir / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)

        def works():
            try:
                with psycopg.connect(p.dsn(), autocommit=True, connect_timeout=5) as c:
                    return c.execute("select a from t").fetchone() == (42,)
            except psycopg.Error:
                return False

        wait_for(lambda: "restarting it" in p.log(), 60, "the pooler to notice")
        wait_for(lambda: "bundled server restarted" in p.log(), 60, "the restart")
        # served as soon as it accepts logins again: not refused for server_login_retry (15 s)
        assert works(), p.log()[-3000:]
    finally:
        p.signal(signal.SIGINT)
        try:
            p.proc.wait(60)
        finally:
            p.close()
    time.sleep(0.5)
    wait_for(lambda: not _processes_mentioning(str(datadir)), 30, "no process left behind")


def test_kill_9_of_the_pooler_takes_the_bundled_server_down(tmp_path):
    """The bundled server watches a pipe from the pooler: kill -9 of the pooler leaves no process
    behind, and the next start on the same data directory is clean (no stale postmaster.pid)."""
    datadir = tmp_path / "data"
    p = PoolerProcess(["--unix-socket-dir", "", "--data-dir", str(datadir)], cwd=str(tmp_path))
    try:
        with psycopg.connect(p.dsn(), autocommit=True) as c:
            c.execute("create table kept(a int)")
            c.execute("insert into kept values (7)")
        server_pid = int((datadir / "postmaster.pid").read_text().split()[0])
        p.proc.kill()
        p.proc.wait(10)
        wait_for(lambda: not _processes_mentioning(str(datadir)), 60, "the bundled server to follow the pooler")
        logs = "".join(f.read_text(errors="replace") for f in [datadir / "pgbundle-server.log",
                                                                *sorted((datadir / "log").glob("*"))])
        assert "the process that started this server is gone" in logs
        assert server_pid not in _processes_mentioning(str(datadir))
    finally:
        p.close()
    log = _start_again(tmp_path, datadir, ["--data-dir", str(datadir)], "select a from kept", (7,))
    assert "Traceback" not in log


def test_a_stale_postmaster_pid_is_reused(tmp_path):
    """A postmaster.pid left by a dead server (here: one naming a PID that is not a server) is
    checked and replaced, as PostgreSQL does; the pooler starts its bundled server."""
    datadir = tmp_path / "data"
    p = PoolerProcess(["--unix-socket-dir", "", "--data-dir", str(datadir)], cwd=str(tmp_path))
    p.signal(signal.SIGINT)
    p.proc.wait(60)
    p.close()
    (datadir / "postmaster.pid").write_text(f"{os.getpid()}\n{datadir}\n0\n1\n\n127.0.0.1\n0\nready\n")
    _start_again(tmp_path, datadir, ["--data-dir", str(datadir)], "select 1", (1,))
