"""pgbouncer's command line on ``pgbundle pooler``: -V, -d (with its pidfile), -u, -R, and the
startup errors that must be one line (never a traceback) with exit status 1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest

from tests.procs import free_port

from .helpers import admin, base_args, psql

CLI = [sys.executable, "-m", "pgbundle.shared.cli", "pooler"]


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + args, capture_output=True, text=True, timeout=60, **kw)


def _one_line_error(r: subprocess.CompletedProcess, needle: str) -> None:
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and needle in r.stderr, r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.startswith("Error")]) == 1, r.stderr


def _wait(cond, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (v := cond()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return v


def test_version_agrees_with_show_version(pg, pooler_factory):
    r = _run(["-V"])
    assert r.returncode == 0
    p = pooler_factory(base_args(pg, "--admin-users", "postgres"))
    assert admin(p, "SHOW VERSION") == [(r.stdout.strip(),)]
    assert r.stdout.startswith("PgBouncer 1.25")


@pytest.mark.parametrize("setting, needle", [
    ("pidfile = /nonexistent-dir/p.pid", "cannot write pidfile /nonexistent-dir/p.pid"),
    ("unix_socket_mode = abc", "unix_socket_mode"),
    ("auth_file = /nonexistent-dir/users.txt\nauth_type = md5", "cannot read auth_file"),
    ("unix_socket_group = no-such-group-here", "no such group"),
    ("user = no-such-user-here", "no such user"),
])
def test_startup_errors_are_one_line(tmp_path, pg, setting, needle):
    ini = tmp_path / "p.ini"
    ini.write_text(f"[databases]\n* = host=127.0.0.1 port={pg.port}\n[pgbouncer]\nlisten_addr = 127.0.0.1\n"
                   f"listen_port = {free_port()}\nunix_socket_dir = {tmp_path}\n{setting}\n")
    _one_line_error(_run([str(ini)]), needle)


def test_daemon_needs_a_pidfile_and_reboot_is_explained(pg):
    _one_line_error(_run(base_args(pg, "-d")), "pidfile is not set")
    _one_line_error(_run(base_args(pg, "-R")), "so_reuseport")


def test_daemon_mode(tmp_path, pg):
    port = free_port()
    pidfile, logfile = tmp_path / "p.pid", tmp_path / "p.log"
    r = _run(base_args(pg, "-d", "--listen-addr", "127.0.0.1", "-p", str(port), "--pidfile", str(pidfile),
                       "--logfile", str(logfile), "--auth-type", "trust"))
    assert r.returncode == 0 and r.stderr == "", r.stderr  # the foreground process returns at once
    pid = _wait(lambda: pidfile.exists() and pidfile.read_text().strip() and int(pidfile.read_text()), "the pidfile")
    try:
        _wait(lambda: psql(port, "SELECT 1", check=False).returncode == 0, "the daemon to serve")
        assert os.getsid(pid) != os.getsid(0)  # detached: in a session of its own
        # a second one on the same pidfile is refused while the first runs
        _one_line_error(_run(base_args(pg, "-p", str(free_port()), "--pidfile", str(pidfile))), "running process")
    finally:
        os.kill(pid, signal.SIGTERM)
    _wait(lambda: not pidfile.exists(), "the pidfile to be removed at exit")
    assert "listening on" in logfile.read_text()


def test_user_switch_after_binding(tmp_path, pg, pooler_factory):
    import pwd

    assert os.geteuid() == 0, "the suite runs as root (it starts PostgreSQL through runuser)"
    p = pooler_factory(base_args(pg, "-u", "postgres", "--auth-type", "trust"), cwd=str(tmp_path))
    uid = {line.split(":")[0]: line.split()[1] for line in open(f"/proc/{p.pid}/status") if ":" in line}["Uid"]
    assert int(uid) == pwd.getpwnam("postgres").pw_uid
    with psycopg.connect(p.dsn(), autocommit=True) as c:  # bound as root, serving as postgres
        assert c.execute("SELECT 1").fetchone() == (1,)
