"""Forking children (PostgreSQL's launch_backend.c + fork_process.c) and what every
child inherits (:class:`ChildContext`).

The postmaster calls :func:`fork_child` with the function the child runs; the child
closes the listening sockets and the postmaster-only pipe ends, restores default signal
handling, sets its process title and runs the function, ending with ``os._exit`` (never
returning into the postmaster's loop).  An exception escaping a child's main function
is logged and gives exit code 1; shared-memory children that must be treated as a
crash exit with 2 via SIGQUIT handling or are killed.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pgbundle.server.storage import pmsignal
from pgbundle.server.utils import elog

if TYPE_CHECKING:
    from pgbundle.server.storage.lwlock import Locks
    from pgbundle.server.storage.shmem import Shmem
    from pgbundle.server.tcop.be_secure import ServerTls
    from pgbundle.server.utils.guc import GucSettings


@dataclass
class ChildContext:
    """Everything a child needs, inherited through fork."""

    datadir: str
    settings: GucSettings
    shm: Shmem | None = None  # None before the postmaster creates it and between crash reset and re-creation
    locks: Locks | None = None
    stats_sock: socket.socket | None = None  # backend end of the stats datagram pair
    stats_recv: socket.socket | None = None  # collector end
    pm_alive_fd: int = -1  # read end of the postmaster-alive pipe
    pm_alive_w: int = -1  # write end: only the postmaster keeps it
    listen: list[socket.socket] = field(default_factory=list)
    log_pipe_r: int = -1
    log_pipe_w: int = -1
    tls: ServerTls | None = None  # the TLS context when ssl = on (built by the postmaster, see tcop.be_secure)


_setproctitle: ModuleType | None
try:  # imported here, before any fork: children set their title without an import
    import setproctitle as _setproctitle
except ImportError:  # pragma: no cover - a declared dependency
    _setproctitle = None


def set_title(title: str) -> None:
    if _setproctitle is not None:
        _setproctitle.setproctitle(title)


def fork_child(ctx: ChildContext, title: str, fn: Callable[..., int | None], *args: Any,
               keep_fds: tuple[int, ...] = ()) -> int:
    gc.freeze()
    # SIGHUP/SIGUSR1/SIGUSR2 stay blocked in the child until its main installs its handlers
    # (pmsignal.unblock_child_signals), as PostgreSQL's children start under BlockSig: a reload sent to every
    # child must not kill one that was just forked (SIG_DFL for SIGHUP terminates).
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, pmsignal.CHILD_DEFERRED)
    pid = os.fork()
    if pid:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        return pid
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
                  signal.SIGCHLD, signal.SIGALRM):
            signal.signal(s, signal.SIG_DFL)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        for ls in ctx.listen:
            if ls.fileno() not in keep_fds:
                ls.close()
        if ctx.pm_alive_w >= 0:
            os.close(ctx.pm_alive_w)
        if ctx.log_pipe_r >= 0 and ctx.log_pipe_r not in keep_fds:
            os.close(ctx.log_pipe_r)
        if ctx.stats_recv is not None and ctx.stats_recv.fileno() not in keep_fds:
            ctx.stats_recv.close()
        set_title(title)
        code = fn(ctx, *args) or 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        elog.log_exception(f"{title}: unexpected error")
        code = 1
    finally:
        os._exit(code)
    return 0  # not reached
