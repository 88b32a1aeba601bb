"""The fsync request queue: which relation files must be fsync'd at the next checkpoint.

Whoever writes a data page (a backend evicting a buffer, the background writer, the
checkpointer) records the file here *before* the buffer stops being marked busy, so
a checkpoint that finds the buffer clean is sure to fsync the file (PostgreSQL's
RegisterSyncRequest → checkpointer's pending-ops table).  Each process remembers the
files it already queued in the current checkpoint cycle, so only the first write of a
file per cycle touches shared memory.  A full queue makes the writer fsync the file
itself (counted in buffers_backend_fsync).

Guarded by SyncQueueLock.  Layout: count u32, cycle u32, then entries (dboid u32,
relnode u32, fork u32).
"""

from __future__ import annotations

import struct
from typing import Any

_HDR = struct.Struct("<II")
_ENT = struct.Struct("<III")


def region_size(layout: Any) -> int:
    return _HDR.size + layout.fsync_queue * _ENT.size


class SyncQueue:
    def __init__(self, shm: Any, locks: Any) -> None:
        self.buf = shm.buf
        self.off = shm.layout.fsyncq_off
        self.cap = shm.layout.fsync_queue
        self.lock = locks.SyncQueueLock
        self._seen: set[tuple[int, int, int]] = set()
        self._seen_cycle = -1

    def register(self, tag: tuple[int, int, int]) -> bool:
        """Queue ``(dboid, relnode, fork)`` for fsync; False if the queue is full."""
        with self.lock:
            count, cycle = _HDR.unpack_from(self.buf, self.off)
            if cycle != self._seen_cycle:
                self._seen.clear()
                self._seen_cycle = cycle
            if tag in self._seen:
                return True
            if count >= self.cap:
                return False
            _ENT.pack_into(self.buf, self.off + _HDR.size + count * _ENT.size, *tag)
            _HDR.pack_into(self.buf, self.off, count + 1, cycle)
        self._seen.add(tag)
        return True

    def absorb(self) -> set[tuple[int, int, int]]:
        """Take every queued request and start a new cycle (checkpointer only)."""
        with self.lock:
            count, cycle = _HDR.unpack_from(self.buf, self.off)
            out = {_ENT.unpack_from(self.buf, self.off + _HDR.size + i * _ENT.size) for i in range(count)}
            _HDR.pack_into(self.buf, self.off, 0, cycle + 1)
        return out
