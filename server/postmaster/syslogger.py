"""The logging collector (PostgreSQL's syslogger.c).

Job: every server process's stderr is a pipe whose read end only this process reads;
it appends what arrives to the current file in ``log_directory`` (``log/``), named by
``log_filename`` (``postgresql-%Y-%m-%d_%H%M%S.log``), and starts a new file when the
current one is older than ``log_rotation_age`` (1 day) or larger than
``log_rotation_size`` (10 MB).

Signals: SIGUSR1 forces a rotation, SIGHUP is ignored (settings come with the fork),
SIGTERM/SIGINT are ignored — it exits when every writer has gone (EOF on the pipe),
so the last messages of a shutdown are kept.  SIGQUIT exits at once.

Crash meaning: none for data; it is *not* attached to shared memory and not shown in
pg_stat_activity (as in PostgreSQL).  The postmaster keeps the pipe and restarts it.
"""

from __future__ import annotations

import os
import select
import signal
import time
from typing import TYPE_CHECKING, Any

from pgbundle.server.storage import pmsignal

if TYPE_CHECKING:
    from pgbundle.server.postmaster.launch import ChildContext


def main(ctx: ChildContext) -> int:
    s = ctx.settings
    rotate_flag = [False]
    signal.signal(signal.SIGUSR1, lambda sig, frame: rotate_flag.__setitem__(0, True))
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGQUIT, lambda sig, frame: os._exit(0))
    pmsignal.unblock_child_signals()
    fd = ctx.log_pipe_r
    if getattr(ctx, "log_pipe_w", -1) >= 0:
        os.close(ctx.log_pipe_w)
    # we must not hold the write end ourselves, or we would never see EOF
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.dup2(devnull, 1)
        os.close(devnull)
    except OSError:
        pass
    logdir = str(s.value("log_directory"))
    if not os.path.isabs(logdir):
        logdir = os.path.join(ctx.datadir, logdir)
    os.makedirs(logdir, exist_ok=True)
    age_limit = int(s.value("log_rotation_age")) * 60
    size_limit = int(s.value("log_rotation_size")) * 1024
    pattern = str(s.value("log_filename"))

    def open_new() -> tuple[Any, float]:
        name = time.strftime(pattern, time.localtime())
        path = os.path.join(logdir, name)
        n = 0
        while os.path.exists(path) and n < 1000 and rotate_flag[0] is not None and _exists_full(path, size_limit):
            n += 1
            path = os.path.join(logdir, f"{name}.{n}")
        return open(path, "ab", buffering=0), time.time()

    f, opened = open_new()
    while True:
        timeout = max(0.1, opened + age_limit - time.time()) if age_limit else None
        try:
            r, _, _ = select.select([fd], [], [], timeout)
        except InterruptedError:
            r = []
        if r:
            try:
                data = os.read(fd, 65536)
            except InterruptedError:
                continue
            if not data:
                f.close()
                return 0
            f.write(data)
        need = rotate_flag[0]
        if age_limit and time.time() - opened >= age_limit:
            need = True
        if size_limit and f.tell() >= size_limit:
            need = True
        if need:
            rotate_flag[0] = False
            f.close()
            time.sleep(0.001 if size_limit else 0)
            f, opened = open_new()


def _exists_full(path: str, limit: int) -> bool:
    try:
        return limit > 0 and os.path.getsize(path) >= limit
    except OSError:
        return False
