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

Shared state: the request ring (:class:`pgbundle.server.storage.aio.ReadQueue`, its own
region): head/tail words and the requests, guarded by IoQueueLock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgbundle.server.postmaster.auxprocess import AuxProcess
from pgbundle.server.storage.aio import ReadQueue

if TYPE_CHECKING:
    from pgbundle.server.postmaster.launch import ChildContext


def main(ctx: ChildContext, n: int) -> int:
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
