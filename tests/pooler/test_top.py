"""``pgbundle top`` under a pseudo-terminal, against a pooler with traffic."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time

from .helpers import base_args, connect, psql


def _controlling_tty() -> None:  # in the child: the pty becomes its terminal, so Ctrl-C is SIGINT
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _controlling_tty_sigint_ignored() -> None:
    """As a shell's background job starts it (``cmd &`` in a script: SIGINT ignored) — the
    way CI ran the suite when this test flaked; ``top`` must still quit on Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _controlling_tty()


def _tty_env() -> dict[str, str]:
    """The child's environment: the pty's size must come from the pty, not from COLUMNS/LINES
    that a parent (pytest-xdist's workers, a CI runner) may have set."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    return env


ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[()][A-Z0-9]|\r")


def last_frame(raw: bytes) -> str:
    """The last complete screen (frames start with the header line and end with the waiters table)."""
    text = ANSI.sub("", raw.decode("utf-8", "replace"))
    frames = ["pgbundle top" + f for f in text.split("pgbundle top")[1:] if "longest waiters" in f]
    return frames[-1] if frames else text


def pool_numbers(frame: str, pool: str = "postgres/postgres") -> tuple[list[str], list[str]]:
    """The two rows of ``pool``: connections (pools table), then throughput and latency."""
    rows = [line.split() for line in frame.splitlines() if line.strip().startswith(pool)]
    assert len(rows) >= 2, frame
    return rows[0], rows[1]


def test_top_shows_the_pools_numbers_and_quits_on_q(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "--pool-size", "2", "--admin-users", "postgres"))
    idle = [connect(p) for _ in range(3)]
    for c in idle:
        c.execute("select 1")
    done_before = 40
    with connect(p) as c:
        for _ in range(done_before - 3):
            c.execute("select 1")
    stop = threading.Event()

    def load() -> None:
        with connect(p) as c:
            while not stop.is_set():
                c.execute("select 1")

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "pgbundle.shared.cli", "top", "-h", "127.0.0.1", "-p", str(p.port),
                             "-U", "postgres", "--interval", "0.3"], stdin=slave, stdout=slave, stderr=slave,
                            env=_tty_env(), close_fds=True, start_new_session=True,
                            preexec_fn=_controlling_tty)
    os.close(slave)
    raw = b""
    try:
        deadline = time.monotonic() + 30
        frames_seen = 0
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    raw += os.read(master, 65536)
                except OSError:
                    break
            frames_seen = raw.count(b"throughput and latency")
            if frames_seen >= 4:
                break
        assert frames_seen >= 4, ANSI.sub("", raw.decode("utf-8", "replace"))[-3000:]
        frame = last_frame(raw)
        conn_row, lat_row = pool_numbers(frame)
        # pools table: pool mode cl_active cl_waiting maxwait sv_active sv_idle sv_used sv_login
        assert conn_row[1] == "transaction"
        assert int(conn_row[2]) + int(conn_row[3]) == 5  # 3 idle clients + 2 busy ones, active or waiting
        assert int(conn_row[5]) + int(conn_row[6]) + int(conn_row[7]) + int(conn_row[8]) <= 2  # pool_size
        # throughput table: pool xact/s p50 p95 p99 wait-p99 xacts
        assert int(lat_row[-1]) >= done_before
        assert int(lat_row[1]) > 0  # traffic is running
        assert "xacts/s" in frame and "longest waiters" in frame
        os.write(master, b"q")
        proc.wait(15)
        assert proc.returncode == 0
    finally:
        stop.set()
        for t in threads:
            t.join(20)
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(master)
        for c in idle:
            c.close()


def test_top_ctrl_c_and_refused_user(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "--admin-users", "postgres"))
    psql(p.port, "select 1")
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "pgbundle.shared.cli", "top", "-p", str(p.port),
                             "--interval", "0.2"], stdin=slave, stdout=slave, stderr=slave, close_fds=True,
                            env=_tty_env(), start_new_session=True, preexec_fn=_controlling_tty_sigint_ignored)
    os.close(slave)
    raw = b""
    try:
        deadline = time.monotonic() + 20
        while b"longest waiters" not in raw and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                raw += os.read(master, 65536)
        assert b"longest waiters" in raw
        os.write(master, b"\x03")  # Ctrl-C through the terminal: SIGINT to the foreground process
        proc.wait(15)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(master)
    r = subprocess.run([sys.executable, "-m", "pgbundle.shared.cli", "top", "-p", str(p.port), "-U", "nobody_here",
                        "--iterations", "1"], capture_output=True, text=True, timeout=30)
    # authenticated first (nothing is told before authentication): the role does not exist upstream
    assert r.returncode != 0 and 'password authentication failed for user "nobody_here"' in r.stderr
