"""IO workers (PostgreSQL 18's storage/aio/method_worker.c): asynchronous reads into the
shared buffer pool.

Job: with ``io_method = worker``, a backend that starts a sequential scan posts
read-ahead requests for the next ``effective_io_concurrency`` blocks into a shared
queue (:class:`ReadQueue`); the ``io_workers`` processes take requests and read those
pages into shared buffers (pin, read, unpin), so that by the time the scan reaches a
block it is usually a buffer hit.  A request for a page already in the pool costs a
lookup; a full queue makes the backend simply not prefetch.

Signals: SIGTERM exits 0, SIGUSR1 wakes a worker (a request is waiting), SIGQUIT exits
at once.  Crash meaning: attached to shared memory → crash reset.

Shared state: the request ring (its own region, :func:`region_size`): head/tail words
and the requests, guarded by IoQueueLock.
"""

from __future__ import annotations

import struct
from typing import Any

from pgbundle.server.postmaster.auxprocess import AuxProcess

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
        out = []
        with self.lock:
            head, tail = _HDR.unpack_from(self.buf, self.off)
            while head < tail and len(out) < k:
                out.append(_REQ.unpack_from(self.buf, self.off + _HDR.size + (head % CAPACITY) * _REQ.size))
                head += 1
            _HDR.pack_into(self.buf, self.off, head, tail)
        return out


def region_size(layout: Any) -> int:
    return _HDR.size + CAPACITY * _REQ.size


def main(ctx: Any, n: int) -> int:
    aux = AuxProcess(ctx, "io worker", None)
    env = aux.env
    q = ReadQueue(env.shm, env.locks)
    bm = env.bm
    idle = 0
    while True:
        if aux.take("shutdown"):
            aux.detach()
            return 0
        reqs = q.pop()
        if not reqs:
            idle += 1
            aux.wait(0.005 if idle < 20 else 0.05)
            continue
        idle = 0
        for dboid, relnode, block in reqs:
            try:
                if block >= bm.nblocks(dboid, relnode):
                    continue
                b = bm.read_buffer(dboid, relnode, 0, block)
                bm.release(b)
            except Exception:
                continue
