"""The shared queue of asynchronous read requests (PostgreSQL 18's storage/aio/): backends
that scan a large relation post read-ahead requests; the io workers
(:mod:`pgbundle.server.postmaster.ioworker`) take them and read the pages into shared
buffers.

Shared state: the ring (its own region of the segment, :func:`region_size`): head/tail
words (u32 each) and ``CAPACITY`` requests (dboid, relnode, block), guarded by
IoQueueLock.  A full ring drops the requests that do not fit (the backend then reads
the page itself when it gets there).
"""

from __future__ import annotations

import struct
from typing import Any

_HDR = struct.Struct("<II")
_REQ = struct.Struct("<III")
CAPACITY = 256


class ReadQueue:
    """A ring of (dboid, relnode, block) read requests in shared memory."""

    def __init__(self, shm: Any, locks: Any) -> None:
        self.buf = shm.buf
        self.off = shm.layout.ioq_off
        self.lock = locks.IoQueueLock

    def push(self, reqs: list[tuple[int, int, int]]) -> int:
        n = 0
        with self.lock:
            head, tail = _HDR.unpack_from(self.buf, self.off)
            for r in reqs:
                if tail - head >= CAPACITY:
                    break
                _REQ.pack_into(self.buf, self.off + _HDR.size + (tail % CAPACITY) * _REQ.size, *r)
                tail += 1
                n += 1
            _HDR.pack_into(self.buf, self.off, head, tail)
        return n

    def pop(self, k: int = 8) -> list[tuple[int, int, int]]:
        out: list[tuple[int, int, int]] = []
        with self.lock:
            head, tail = _HDR.unpack_from(self.buf, self.off)
            while head < tail and len(out) < k:
                out.append(_REQ.unpack_from(self.buf, self.off + _HDR.size + (head % CAPACITY) * _REQ.size))
                head += 1
            _HDR.pack_into(self.buf, self.off, head, tail)
        return out


def region_size(layout: Any) -> int:
    """Bytes of the ring in the shared segment."""
    return _HDR.size + CAPACITY * _REQ.size
