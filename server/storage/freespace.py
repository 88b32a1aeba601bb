"""The free-space map: one byte per heap page (free bytes / 32) in the relation's
``_fsm`` fork, read and written through the buffer pool (PostgreSQL's freespace.c,
flattened: no tree, a C-speed byte search instead).

FSM page k (after a 24-byte page header, LSN always 0) covers heap blocks
``k*8168 .. k*8168+8167``.  Not WAL-logged: after a crash it may be stale, which only
costs a wasted look at a full page (the inserter then records the page's real free
space), exactly PostgreSQL's attitude.  Updated by inserters that find a page full and
by VACUUM.
"""

from __future__ import annotations

import re
from typing import Any

from pgbundle.server.storage.smgr import BLCKSZ, FSM_FORK

HDR = 24
PER_PAGE = BLCKSZ - HDR
_RX: dict[int, Any] = {}


def _cat(free: int) -> int:
    return min(255, max(0, free) // 32)


def _rx(cat: int) -> Any:
    r = _RX.get(cat)
    if r is None:
        r = _RX[cat] = re.compile(b"[" + re.escape(bytes((cat,))) + b"-\xff]")
    return r


class FreeSpaceMap:
    def __init__(self, bm: Any) -> None:
        self.bm = bm

    def record(self, dboid: int, relnode: int, block: int, free: int) -> None:
        page_no, idx = divmod(block, PER_PAGE)
        bm = self.bm
        b = bm.read_buffer(dboid, relnode, FSM_FORK, page_no)
        try:
            with bm.content_lock(b):
                off = bm.page_off(b) + HDR + idx
                v = _cat(free)
                if bm.buf[off] != v:
                    bm.buf[off] = v
                    bm.mark_dirty_hint(b)
        finally:
            bm.release(b)

    def search(self, dboid: int, relnode: int, need: int, nblocks: int) -> int:
        """A heap block believed to have ``need`` free bytes, or -1."""
        cat = (need + 31) // 32
        if cat > 255:
            return -1
        bm = self.bm
        rx = _rx(cat)
        npages = (nblocks + PER_PAGE - 1) // PER_PAGE
        for page_no in range(npages):
            b = bm.read_buffer(dboid, relnode, FSM_FORK, page_no)
            try:
                with bm.content_lock(b):
                    base = bm.page_off(b) + HDR
                    m = rx.search(bm.buf, base, base + PER_PAGE)
            finally:
                bm.release(b)
            if m is not None:
                block = page_no * PER_PAGE + (m.start() - base)
                if block < nblocks:
                    return block
        return -1

    def truncate(self, dboid: int, relnode: int, nblocks: int) -> None:
        """Forget blocks >= nblocks (after VACUUM truncated the heap)."""
        page_no, idx = divmod(nblocks, PER_PAGE)
        bm = self.bm
        b = bm.read_buffer(dboid, relnode, FSM_FORK, page_no)
        try:
            with bm.content_lock(b):
                base = bm.page_off(b) + HDR
                bm.buf[base + idx: base + PER_PAGE] = bytes(PER_PAGE - idx)
                bm.mark_dirty_hint(b)
        finally:
            bm.release(b)
