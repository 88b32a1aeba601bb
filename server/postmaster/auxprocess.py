"""Common setup of the auxiliary processes (PostgreSQL's auxprocess.c + interrupt.c):
attach to shared memory with a backend slot, a latch (self-pipe woken by signals), and a
wait that also notices the postmaster's death.

Every auxiliary main loop has PostgreSQL's shape::

    aux = AuxProcess(ctx, "checkpointer", WAIT_EVENT)
    while True:
        aux.wait(timeout)          # latch, timeout or postmaster death (→ exit 1)
        if aux.shutdown_requested: ...
        do_one_unit_of_work()
"""

from __future__ import annotations

import os
import select
import signal
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

from pgbundle.server.storage import pmsignal
from pgbundle.server.storage.ipc import Env

if TYPE_CHECKING:
    from pgbundle.server.postmaster.launch import ChildContext


class AuxProcess:
    def __init__(self, ctx: ChildContext, backend_type: str, wait_event: str | None = None, *, attach: bool = True,
                 signals: dict[int, str] | None = None) -> None:
        self.ctx = ctx
        self._env: Env | None = None
        if ctx.shm is not None and ctx.locks is not None:
            self._env = Env(ctx.shm, ctx.locks, ctx.datadir, ctx.settings)
        if self._env is not None:
            self._env.stats_sock = ctx.stats_sock
        self.backend_type = backend_type
        self.wait_event = wait_event
        self.flags: set[str] = set()
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        self._latch_r, self._latch_w = r, w
        signal.set_wakeup_fd(w)
        table: dict[int, str] = {signal.SIGUSR1: "wakeup", signal.SIGTERM: "shutdown", signal.SIGINT: "interrupt",
                                 signal.SIGUSR2: "usr2", signal.SIGHUP: "reload"}
        table.update(signals or {})
        for sig, name in table.items():
            if name == "ignore":
                signal.signal(sig, signal.SIG_IGN)
            else:
                signal.signal(sig, self._handler(name))
        signal.signal(signal.SIGQUIT, lambda s, f: os._exit(2))
        pmsignal.unblock_child_signals()
        if attach and self._env is not None:
            procs = self._env.procs
            procs.attach(backend_type)
            procs.set_identity()
            procs.set_state("idle" if backend_type == "client backend" else "active")
            procs.set_wait(wait_event)

    @property
    def latch_fd(self) -> int:
        """The latch's read end, for a process that waits in its own select()."""
        return self._latch_r

    @property
    def env(self) -> Env:
        """This process's handles on shared memory (every auxiliary process has them)."""
        if self._env is None:
            raise RuntimeError(f"{self.backend_type}: not attached to shared memory")
        return self._env

    def _handler(self, name: str) -> Callable[[int, FrameType | None], None]:
        def h(signum: int, frame: FrameType | None) -> None:
            self.flags.add(name)
        return h

    def set_latch(self) -> None:
        try:
            os.write(self._latch_w, b"x")
        except OSError:
            pass

    def wait(self, timeout: float | None) -> None:
        """Sleep until a signal, the timeout, or the postmaster's death (then exit)."""
        fds = [self._latch_r]
        if self.ctx.pm_alive_fd >= 0:
            fds.append(self.ctx.pm_alive_fd)
        if self.flags:
            timeout = 0
        try:
            r, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:
            r = []
        if self._latch_r in r:
            try:
                while os.read(self._latch_r, 4096):
                    pass
            except BlockingIOError:
                pass
        if self.ctx.pm_alive_fd in r:
            self.postmaster_died()
        if "reload" in self.flags:
            self.flags.discard("reload")
            self.ctx.settings.reload_files(self.ctx.datadir)

    def postmaster_alive(self) -> bool:
        if self.ctx.pm_alive_fd < 0:
            return True
        r, _, _ = select.select([self.ctx.pm_alive_fd], [], [], 0)
        return not r

    def postmaster_died(self) -> None:
        os._exit(1)

    def take(self, name: str) -> bool:
        if name in self.flags:
            self.flags.discard(name)
            return True
        return False

    def detach(self) -> None:
        if self._env is not None:
            self._env.procs.detach()
