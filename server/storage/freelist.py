"""Buffer replacement policy: the clock sweep (PostgreSQL's freelist.c).

Mechanism (pins, I/O, the hash table) is :mod:`.bufmgr`; this module only decides which
buffer to reuse.  The clock hand ``next_victim`` lives in the control block and is
advanced under BufferStrategyLock.  A buffer is a victim when nobody pins it and its
usage count (bumped on every pin, up to 5) has been decremented to zero by passing
hands; the victim is returned pinned.  The background writer reads the hand without
moving it and cleans dirty buffers just ahead of it (:meth:`ClockSweep.lru_scan`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgbundle.server.errors import PgError
from pgbundle.server.storage.buf_internals import DIRTY, IO_IN_PROGRESS, MAX_USAGE, VALID

if TYPE_CHECKING:
    from pgbundle.server.storage.bufmgr import BufMgr


class ClockSweep:
    def __init__(self, bm: BufMgr) -> None:
        self.bm = bm
        self.lock = bm.locks.BufferStrategyLock
        self.st, self.off = bm.ctl.offset("next_victim")

    def _tick(self) -> int:
        with self.lock:
            hand = self.st.unpack_from(self.bm.buf, self.off)[0]
            self.st.pack_into(self.bm.buf, self.off, hand + 1)
        return hand % self.bm.n

    def get_victim(self) -> int:
        bm = self.bm
        tries = bm.n * (MAX_USAGE + 1) + 1
        while tries > 0:
            tries -= 1
            b = self._tick()
            if b in bm.pins or bm.state(b)[2] != 0:
                continue
            with bm.header[b % len(bm.header)]:
                usage, flags, ref = bm.state(b)
                if ref != 0 or flags & IO_IN_PROGRESS:
                    continue
                if usage > 0:
                    bm.set_state(b, usage - 1, flags, ref)
                    continue
                bm.set_state(b, usage, flags, 1)
            bm.pins[b] = 1
            return b
        raise PgError("53400", "no unpinned buffers available")

    def lru_scan(self, max_pages: int, lookahead: int) -> tuple[int, bool]:
        """Background writer: write dirty, unpinned, zero-usage buffers among the next
        ``lookahead`` ones after the clock hand, at most ``max_pages``.  Returns (written,
        stopped_because_of_max_pages)."""
        bm = self.bm
        hand = self.st.unpack_from(bm.buf, self.off)[0]
        written = 0
        for i in range(lookahead):
            b = (hand + i) % bm.n
            usage, flags, ref = bm.state(b)
            if ref != 0 or usage != 0 or not flags & DIRTY or not flags & VALID:
                continue
            if written >= max_pages:
                return written, True
            with bm.header[b % len(bm.header)]:
                usage, flags, ref = bm.state(b)
                if ref != 0 or not flags & DIRTY:
                    continue
                bm.set_state(b, usage, flags, ref + 1)
            bm.pins[b] = 1
            try:
                if bm.flush_buffer(b, counter="buffers_clean"):
                    written += 1
            finally:
                bm.release(b)
        return written, False
