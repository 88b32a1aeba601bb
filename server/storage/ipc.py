"""Attaching a process to shared memory: the per-process objects every server process
builds right after fork (PostgreSQL's InitProcess/BaseInit): file access, WAL,
commit log, buffer manager, proc array, fsync queue, free-space map, lock table.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from pgbundle.server.access import checkpoint
from pgbundle.server.access.xlog import XLog
from pgbundle.server.storage.bufmgr import BufMgr
from pgbundle.server.storage.clog import Clog
from pgbundle.server.storage.freespace import FreeSpaceMap
from pgbundle.server.storage.lmgr import LockTable
from pgbundle.server.storage.procarray import ProcArray
from pgbundle.server.storage.smgr import Smgr
from pgbundle.server.storage.sync import SyncQueue
from pgbundle.server.tcop import interrupts

if TYPE_CHECKING:
    from pgbundle.server.storage.lwlock import Locks
    from pgbundle.server.storage.shmem import Shmem
    from pgbundle.server.utils.guc import GucSettings


class Env:
    """One process's handles on the shared segment."""

    def __init__(self, shm: Shmem, locks: Locks, datadir: str, settings: GucSettings) -> None:
        self.shm = shm
        self.locks = locks
        self.datadir = datadir
        self.settings = settings
        self.ctl = shm.control
        self.smgr = Smgr(datadir)
        self.xlog = XLog(shm, locks, datadir, settings)
        self.clog = Clog(shm, locks, datadir, self.xlog)
        self.syncq = SyncQueue(shm, locks)
        self.bm = BufMgr(shm, locks, self.smgr, self.xlog, self.syncq)
        self.procs = ProcArray(shm, locks)
        self.fsm = FreeSpaceMap(self.bm)
        self.locktable = LockTable(shm, locks)
        self.check_for_interrupts = interrupts.check_for_interrupts
        self.xlog.on_segment_switch = self._segment_switch
        self.stats_sock: socket.socket | None = None  # the statistics collector's datagram socket

    def _segment_switch(self, segs: int) -> None:
        """Backends filling WAL segments request a checkpoint (checkpointer.c: the
        checkpointer itself does not watch the WAL volume)."""
        max_wal = int(self.settings.value("max_wal_size")) * 1024 * 1024
        target = 1 + self.settings.value("checkpoint_completion_target")
        if segs * self.xlog.segsize >= max_wal / target:
            checkpoint.request(self, checkpoint.CKPT_CAUSE_XLOG, wait=False)
