"""The background writer (PostgreSQL's bgwriter.c): keeps regular backends from having
to write dirty shared buffers themselves.

Job: every ``bgwriter_delay`` (200 ms) look at the buffers just ahead of the clock-sweep
hand and write the dirty, unpinned ones with a zero usage count — the ones the next
allocations will reuse — at most ``bgwriter_lru_maxpages`` (100) per round
(0 disables writing), guided by the recent allocation rate ×
``bgwriter_lru_multiplier``.  Counts ``buffers_clean`` and ``maxwritten_clean``
(pg_stat_bgwriter).  It writes no checkpoints (the checkpointer does, since 9.2).

Signals: SIGTERM exits 0 (shutdown), SIGUSR1 wakes it, SIGQUIT exits at once.
Crash meaning: it is attached to shared memory, so its crash resets shared memory.

Shared state: reads ``next_victim`` (BufferStrategyLock not needed for a read) and
``buffers_alloc``; buffer descriptors under their header locks (see bufmgr).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgbundle.server.postmaster.auxprocess import AuxProcess

if TYPE_CHECKING:
    from pgbundle.server.postmaster.launch import ChildContext


def main(ctx: ChildContext) -> int:
    aux = AuxProcess(ctx, "background writer", "BgWriterMain")
    env = aux.env
    ctl = env.ctl
    s = ctx.settings
    last_alloc = ctl.get("buffers_alloc")
    while True:
        if aux.take("shutdown"):
            aux.detach()
            return 0
        maxpages = int(s.value("bgwriter_lru_maxpages"))
        if maxpages > 0:
            alloc = ctl.get("buffers_alloc")
            recent = alloc - last_alloc
            last_alloc = alloc
            upcoming = int(recent * float(s.value("bgwriter_lru_multiplier")))
            lookahead = min(env.bm.n, max(upcoming, 16) * 2)
            written, capped = env.bm.policy.lru_scan(maxpages, lookahead)
            if capped:
                ctl.add("maxwritten_clean", 1)
        aux.wait(int(s.value("bgwriter_delay")) / 1000.0)
