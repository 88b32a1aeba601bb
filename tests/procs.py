"""Helpers for starting real processes in tests and benchmarks: free ports, waiting for a
listener, running as the ``postgres`` OS user, a process group's members.

One copy for every fixture plugin (``tests/fix_*.py``) and for the scripts in ``bench/``.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import random
import socket
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PGBIN = Path(os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin"))


# Ports for the servers tests start come from below the kernel's ephemeral range (Linux:
# 32768-60999), so a client connection's local port never takes one between "free" and the
# server's bind.  Each port handed out is also claimed with an flock on a file under
# /tmp/pgbundle-test-ports, held until this process exits: other pytest-xdist workers, and
# other test runs on the machine, skip it even after the first holder's server is gone.
_PORT_LOW, _PORT_HIGH = 20000, 32000
_PORT_LOCKS = Path(tempfile.gettempdir()) / "pgbundle-test-ports"
_held: list[int] = []  # open lock-file descriptors, kept for the life of the process
_next_port = itertools.count(random.SystemRandom().randrange(_PORT_HIGH - _PORT_LOW))


def _claim(port: int) -> bool:
    try:
        fd = os.open(_PORT_LOCKS / str(port), os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:  # a lock directory we may not write (another user's): the bind check alone
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _held.append(fd)
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on and no other test process has claimed."""
    with contextlib.suppress(OSError):
        _PORT_LOCKS.mkdir(mode=0o1777, exist_ok=True)
    for _ in range(_PORT_HIGH - _PORT_LOW):
        port = _PORT_LOW + next(_next_port) % (_PORT_HIGH - _PORT_LOW)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        if _claim(port):
            return port
    raise RuntimeError(f"no free port in {_PORT_LOW}..{_PORT_HIGH - 1}")


def wait_port(port: int, timeout: float = 15.0, proc: subprocess.Popen | None = None) -> None:
    """Wait until 127.0.0.1:port accepts connections (fail if ``proc`` exits first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def as_postgres() -> list[str]:
    """The command prefix that runs a program as the ``postgres`` OS user (when we are root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"]
    return []


def group_pids(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                out.append(int(d))
        except (OSError, IndexError, ValueError):
            continue
    return out


def children(ppid: int) -> dict[int, str]:
    """pid -> command line of the live children of ``ppid``."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) != ppid or fields[0] == "Z":
                continue
            with open(f"/proc/{d}/cmdline", "rb") as f:
                out[int(d)] = f.read().replace(b"\0", b" ").decode().strip()
        except (OSError, IndexError, ValueError):
            continue
    return out
