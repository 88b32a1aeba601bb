"""Helpers for starting real processes in tests and benchmarks: free ports, waiting for a
listener, running as the ``postgres`` OS user, a process group's members.

One copy for every fixture plugin (``tests/fix_*.py``) and for the scripts in ``bench/``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PGBIN = Path(os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin"))


# Ports for servers the tests start come from below the kernel's ephemeral range (Linux:
# 32768-60999), one block per pytest-xdist worker, handed out in turn: a port we picked can
# then be taken neither by a client connection's local port nor by another worker between
# "free" and the server's bind — the two ways a bind(0)-and-release port collides.
_PORT_BLOCK = 1500
_PORT_BASE = 20000


def _port_block() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ... under xdist
    n = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 7
    return _PORT_BASE + (n % 8) * _PORT_BLOCK  # 20000-31999


_next_port = itertools.count(os.getpid() % _PORT_BLOCK)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (from this worker's block)."""
    base = _port_block()
    for _ in range(_PORT_BLOCK):
        port = base + next(_next_port) % _PORT_BLOCK
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {base}..{base + _PORT_BLOCK - 1}")


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
