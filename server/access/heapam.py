"""Heap relations: tuple insertion, MVCC visibility, update/delete with PostgreSQL's
concurrent-update rules, pruning for VACUUM, and WAL redo of heap records
(PostgreSQL's heapam.c + heapam_visibility.c + pruneheap.c).

Every page access pins the buffer and holds its content lock only while the page is
read or changed; rows are decoded after the lock is released.

Heap-only tuples (HOT, PostgreSQL's README.HOT): an update that changes no indexed
column and whose new version fits on the old version's page puts the new version there
as a *heap-only tuple* (HEAP_ONLY_TUPLE), marks the old one HEAP_HOT_UPDATED with t_ctid
pointing at it, and inserts no index entry: both changes are made under the page's
content lock and logged as one record.  Index entries point at the chain's *root*;
:meth:`Heap.hot_fetch` walks the chain (following an LP_REDIRECT root) to the version
the snapshot sees, and unique checks walk it too.

Bulk insertion (COPY FROM): :meth:`Heap.insert_many` fills a page with as many of
the new tuples as fit under one content lock and logs them as one
XLOG_HEAP_MULTI_INSERT record (offnums + tuples; redo replays them like single
inserts), instead of one record per tuple.

Other updates: the new version is inserted first (xmin = us, anywhere), then the old
version's header is set under its page lock (xmax = us, ctid → new version) *if* it
is still unchanged; otherwise the new version is killed (XMIN_INVALID) and the caller
waits or reports a conflict.  Each step is its own WAL record carrying our xid, so a
crash in between leaves only tuples of an aborted transaction.

Pruning (pruneheap.c): a page whose ``pd_prune_xid`` (oldest xmax an update/delete
left there) precedes the horizon (oldest xmin of any snapshot) is pruned when an update
finds no room for a HOT version, when an index fetch walked a long chain, or when a
scan finds the page nearly full: the dead prefix of each HOT chain goes (heap-only
tuples become LP_UNUSED at once, the root becomes LP_REDIRECT to the first surviving
version, or LP_DEAD when nothing survives), dead ordinary tuples become LP_DEAD (their
index entries are VACUUM's job) and the page is defragmented.  Readers never keep a
pointer into a page past its content lock, so moving tuples under that lock is safe.
One logical WAL record (redirects, dead, unused) replays it.

Waiting for another transaction (row conflict): our slot advertises the xid we wait
for; we poll until it leaves the proc array, checking for interrupts; after
``deadlock_timeout`` we walk the wait-for graph and, if it loops back to us and our
xid is the largest in the cycle, raise 40P01.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from pgbundle.server.access import page as P
from pgbundle.server.access.api import TID, Snapshot
from pgbundle.server.access.xlog import RM_HEAP, BlockRef, Record
from pgbundle.server.access.xlogutils import BlockRedo, redo_blocks, redo_nothing
from pgbundle.server.catalog.defs import FIRST_NORMAL_OID
from pgbundle.server.errors import PgError
from pgbundle.server.storage import clog as C
from pgbundle.server.storage.aio import ReadQueue

if TYPE_CHECKING:
    from pgbundle.server.storage.bufmgr import BufMgr

XLOG_HEAP_INSERT = 0x00
XLOG_HEAP_HEADER = 0x10  # set xmax/cmax/infomask/ctid of one tuple
XLOG_HEAP_HOT_UPDATE = 0x20  # old tuple's header (as HEADER) + new offnum + new tuple
XLOG_HEAP_PRUNE = 0x30  # counts, then redirect pairs, dead and unused offnums (u16 each)
XLOG_HEAP_MULTI_INSERT = 0x40  # count u16, offnums u16[count], lengths u16[count], tuples
_PRUNEHDR = struct.Struct("<HHHI")  # nredirect, ndead, nunused, new prune xid
PRUNE_CHAIN = 4  # an index fetch that walked more versions than this tries to prune
_HDRREC = struct.Struct("<HIIHIH")  # offnum, xmax, cmax, infomask, ctid block, ctid off
_OFF = struct.Struct("<H")
TH = P.TH
_PH = P.PH
_LP = P.LP

# results of examining a tuple for update/delete
MAY_UPDATE = 0
SELF_UPDATED = 1
UPDATED = 2  # committed update by another transaction
DELETED = 3  # committed delete by another
BEING_UPDATED = 4  # in-progress transaction holds xmax
INVISIBLE = 5


def _hot_chain(page: Any, block: int, offnum: int, limit: int = 10000) -> Iterator[tuple[int, int, int, tuple]]:
    """The versions of the HOT chain rooted at line pointer ``offnum`` of ``page`` (a redirect
    only as the root), as (offnum, tuple offset, tuple end, header), oldest first; the caller
    holds the content lock.  The walk stops where the chain breaks: a dead or unused line
    pointer, an xmin that is not the previous version's xmax, a version not HOT-updated or
    updated onto another page."""
    nlp = (P.U16.unpack_from(page, 12)[0] - 24) // 4
    prev_xmax = 0
    first = True
    while 0 < offnum <= nlp and limit > 0:
        v = _LP.unpack_from(page, 20 + 4 * offnum)[0]
        fl = (v >> 15) & 3
        if fl == 2:  # redirect: only as a chain's root
            if not first:
                return
            first = False
            offnum = v & 0x7FFF
            continue
        if fl != 1:
            return
        off = v & 0x7FFF
        h = TH.unpack_from(page, off)
        if prev_xmax and h[0] != prev_xmax:
            return
        yield offnum, off, off + (v >> 17), h
        if not h[6] & P.HEAP_HOT_UPDATED or h[4] != block:
            return
        first = False
        prev_xmax = h[1]
        offnum = h[5]
        limit -= 1


class Heap:
    """Heap access for one backend.  ``env`` provides bm, xlog, clog, procs, xact,
    fsm, check_for_interrupts() and settings."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.bm = env.bm
        self.xlog = env.xlog
        self.clog = env.clog
        self.procs = env.procs
        self.fsm = env.fsm
        self._target: dict[tuple[int, int], int] = {}
        self._async = env.shm.control.cell("async_commit_lsn")
        self._flush = env.shm.control.cell("flush_pos")
        self.tup_returned = 0
        self.tup_fetched = 0
        self._ioq: ReadQueue | None = None
        self._horizon = 0
        self._horizon_at = 0.0
        self.pruned = 0

    # ------------------------------------------------------------------ visibility
    def _hints_ok(self) -> bool:
        a = self._async[0]
        return a == 0 or self._flush[0] >= a

    def _xid_status(self, xid: int) -> int:
        return self.clog.status(xid)

    def visible(self, page: Any, toff: int, snap: Snapshot, hints: list[tuple[int, int]] | None) -> bool:
        """HeapTupleSatisfiesMVCC for the tuple header at page offset ``toff``.  Hint bits
        to set are appended to ``hints`` as (offset, new infomask)."""
        xmin, xmax, cmin, cmax, _cb, _co, mask = TH.unpack_from(page, toff)
        if not mask & P.XMIN_COMMITTED:
            if mask & P.XMIN_INVALID:
                return False
            if xmin == snap.xid:
                if cmin >= snap.cid:
                    return False
                if xmax == 0 or mask & (P.XMAX_INVALID | P.XMAX_LOCK_ONLY):
                    return True
                if xmax == snap.xid:
                    return cmax >= snap.cid
                return True
            if xmin in snap.xip or xmin >= snap.xmax:
                return False
            st = self._xid_status(xmin)
            if st == C.COMMITTED:
                if hints is not None and self._hints_ok():
                    mask |= P.XMIN_COMMITTED
                    hints.append((toff, mask))
            else:
                if hints is not None and not self.procs.is_running(xmin):
                    hints.append((toff, mask | P.XMIN_INVALID))
                return False
        elif xmin >= snap.xmax or xmin in snap.xip:
            return False
        if xmax == 0 or mask & (P.XMAX_INVALID | P.XMAX_LOCK_ONLY):
            return True
        if mask & P.XMAX_COMMITTED:
            return xmax >= snap.xmax or xmax in snap.xip
        if xmax == snap.xid:
            return cmax >= snap.cid
        if xmax in snap.xip or xmax >= snap.xmax:
            return True
        st = self._xid_status(xmax)
        if st == C.COMMITTED:
            if hints is not None and self._hints_ok():
                hints.append((toff, mask | P.XMAX_COMMITTED))
            return False
        if hints is not None and not self.procs.is_running(xmax):
            hints.append((toff, (mask | P.XMAX_INVALID) & ~P.XMAX_COMMITTED))
        return True

    def _apply_hints(self, b: int, page: Any, hints: list[tuple[int, int]]) -> None:
        for toff, mask in hints:
            P.U16.pack_into(page, toff + 22, mask)
        self.bm.mark_dirty_hint(b)

    # ------------------------------------------------------------------ reading
    def scan_block(self, dboid: int, relnode: int, block: int, snap: Snapshot) -> list[tuple[int, bytes]]:
        """Visible tuples of one page as (offnum, row data)."""
        bm = self.bm
        b = bm.read_buffer(dboid, relnode, 0, block)
        out: list[tuple[int, bytes]] = []
        try:
            with bm.content_lock(b):
                page = bm.page(b)
                lower = P.U16.unpack_from(page, 12)[0]
                if lower == 0:
                    return out
                if P.prune_xid(page) and _low_free(page) and self._maybe_prune(b, page, dboid, relnode, block):
                    lower = P.U16.unpack_from(page, 12)[0]
                n = (lower - 24) // 4
                hints: list[tuple[int, int]] = []
                for i, v in enumerate(struct.unpack_from(f"<{n}I", page, 24)):
                    if (v >> 15) & 3 != 1:
                        continue
                    off = v & 0x7FFF
                    if self.visible(page, off, snap, hints):
                        out.append((i + 1, bytes(page[off + 24: off + (v >> 17)])))
                if hints:
                    self._apply_hints(b, page, hints)
        finally:
            bm.release(b)
        return out

    def scan(self, dboid: int, relnode: int, snap: Snapshot, decode: Any) -> Iterator[tuple[TID, tuple]]:
        nblocks = self.bm.nblocks(dboid, relnode)
        check = self.env.check_for_interrupts
        ahead = self._prefetch_distance(nblocks)
        requested = 0
        for block in range(nblocks):
            check()
            if ahead and block + ahead > requested:
                upto = min(nblocks, block + 2 * ahead)
                if upto > requested and self._ioq is not None:
                    self._ioq.push([(dboid, relnode, b) for b in range(max(requested, block + 1), upto)])
                    requested = upto
            rows = self.scan_block(dboid, relnode, block, snap)
            self.tup_returned += len(rows)
            for off, data in rows:
                yield TID(block, off), decode(data)

    def _prefetch_distance(self, nblocks: int) -> int:
        """Read-ahead through the io workers for scans of relations larger than 64 pages."""
        if nblocks <= 64 or self.env.settings.value("io_method") != "worker":
            return 0
        if self._ioq is None:
            self._ioq = ReadQueue(self.env.shm, self.env.locks)
        return int(self.env.settings.value("effective_io_concurrency"))

    def fetch(self, dboid: int, relnode: int, tid: TID, snap: Snapshot | None) -> bytes | None:
        """Row data at tid if visible (``snap`` None: any live-looking version)."""
        bm = self.bm
        b = bm.read_buffer(dboid, relnode, 0, tid.block)  # tids come from index entries: the block exists
        try:
            with bm.content_lock(b):
                page = bm.page(b)
                if P.is_new(page) or tid.offset > P.max_offset(page):
                    return None
                off, ln = P.item(page, tid.offset)
                if not off:
                    return None
                hints: list[tuple[int, int]] = []
                if snap is not None and not self.visible(page, off, snap, hints):
                    if hints:
                        self._apply_hints(b, page, hints)
                    return None
                if hints:
                    self._apply_hints(b, page, hints)
                self.tup_fetched += 1
                return bytes(page[off + 24: off + ln])
        finally:
            bm.release(b)

    def block_chains(self, dboid: int, relnode: int, block: int) -> tuple[list, bool]:
        """:func:`chain_versions` of a block, and whether it is plain with no prunable
        tuples (``pd_prune_xid`` unset: a scan would not prune it); ([], True) for a new page."""
        b = self.bm.read_buffer(dboid, relnode, 0, block)
        try:
            with self.bm.content_lock(b):
                page = self.bm.page(b)
                chains, plain = ([], True) if P.is_new(page) else chain_versions(page)
                return chains, plain and not P.prune_xid(page)
        finally:
            self.bm.release(b)

    def header_at(self, dboid: int, relnode: int, tid: TID) -> tuple[int, ...] | None:
        b = self.bm.read_buffer(dboid, relnode, 0, tid.block)
        try:
            with self.bm.content_lock(b):
                page = self.bm.page(b)
                off, _ = P.item(page, tid.offset)
                return TH.unpack_from(page, off) if off else None
        finally:
            self.bm.release(b)

    # ------------------------------------------------------------------ insert
    def insert(self, dboid: int, relnode: int, data: bytes, xid: int, cid: int, updated: bool = False) -> TID:
        """Place a new tuple (xmin = xid) and WAL-log it."""
        tup = TH.pack(xid, 0, cid, 0, 0, 0, P.XMAX_INVALID | (P.HEAP_UPDATED if updated else 0)) + data
        size = len(tup)
        if size > P.MAX_TUPLE_SIZE - 4:
            raise PgError("54000", f"row is too big: size {size}, maximum size {P.MAX_TUPLE_SIZE - 4}")
        bm = self.bm
        key = (dboid, relnode)
        block = self._target.get(key, -1)
        attempts = 0
        while True:
            new_page = False
            if block < 0:
                attempts += 1
                block, b, _from_fsm = self._find_block(dboid, relnode, size + 4, attempts)
            else:
                b = bm.read_buffer(dboid, relnode, 0, block)
            try:
                with bm.content_lock(b):
                    page = bm.page(b)
                    # Initialise only a page nobody has initialised yet: another backend may
                    # have found the block we just extended (FSM, last page) and put its
                    # tuple there before we got the lock.
                    new_page = P.is_new(page)
                    if new_page:
                        P.init_page(page)
                    offnum = P.add_item(page, tup) if P.free_space(page) >= size else 0
                    if offnum:
                        toff = page_item_off(page, offnum)
                        TH.pack_into(page, toff, xid, 0, cid, 0, block, offnum,
                                     P.XMAX_INVALID | (P.HEAP_UPDATED if updated else 0))
                        rec = BlockRef(dboid, relnode, 0, block, page,
                                       _OFF.pack(offnum) + bytes(page[toff: toff + size]), will_init=new_page)
                        lsn = self.xlog.insert(RM_HEAP, XLOG_HEAP_INSERT, xid, [rec])
                        P.set_lsn(page, lsn)
                        bm.mark_dirty(b)
                        self._target[key] = block
                        return TID(block, offnum)
                    free = P.free_space(page)
            finally:
                bm.release(b)
            self.fsm.record(dboid, relnode, block, free)
            self._target.pop(key, None)
            block = -1

    def _find_block(self, dboid: int, relnode: int, need: int, attempts: int) -> tuple[int, int, bool]:
        """(block, pinned buffer, whether the free-space map offered it) to try for a tuple
        needing ``need`` bytes: the map or the last page first, the map again second, a new
        page third."""
        bm = self.bm
        block = -1
        nblocks = bm.nblocks(dboid, relnode)
        if attempts == 1 and nblocks > 0:
            block = self.fsm.search(dboid, relnode, need, nblocks)
            if block >= 0:
                return block, bm.read_buffer(dboid, relnode, 0, block), True
            block = nblocks - 1  # the last page is the usual target
        elif attempts == 2 and nblocks > 0:
            block = self.fsm.search(dboid, relnode, need, nblocks)
            if block >= 0:
                return block, bm.read_buffer(dboid, relnode, 0, block), True
        if block < 0:
            return (*bm.extend(dboid, relnode), False)
        return block, bm.read_buffer(dboid, relnode, 0, block), False

    def insert_many(self, dboid: int, relnode: int, datas: list[bytes], xid: int, cid: int) -> list[TID]:
        """Place several new tuples (xmin = xid) in order, filling each page before taking
        the next, with one WAL record per page (PostgreSQL's heap_multi_insert).  The
        caller has checked that every tuple fits on a page."""
        bm = self.bm
        key = (dboid, relnode)
        sizes = [P.TH_SIZE + len(d) for d in datas]
        out: list[TID] = []
        n = len(datas)
        i = 0
        block = self._target.get(key, -1)
        attempts = 0
        extend = False  # the free-space map had nothing: take new pages for the rest
        while i < n:
            if block < 0 and extend:
                block, b = bm.extend(dboid, relnode)
            elif block < 0:
                attempts += 1
                block, b, from_fsm = self._find_block(dboid, relnode, sizes[i] + 4, attempts)
                extend = not from_fsm and attempts > 1
            else:
                b = bm.read_buffer(dboid, relnode, 0, block)
            try:
                with bm.content_lock(b):
                    page = bm.page(b)
                    new_page = P.is_new(page)  # see insert(): only a page nobody initialised
                    if new_page:
                        P.init_page(page)
                    payload = _place_many(page, block, datas, sizes, i, xid, cid, out)
                    if payload is not None:
                        rec = BlockRef(dboid, relnode, 0, block, page, payload, will_init=new_page)
                        lsn = self.xlog.insert(RM_HEAP, XLOG_HEAP_MULTI_INSERT, xid, [rec])
                        P.set_lsn(page, lsn)
                        bm.mark_dirty(b)
                    free = P.free_space(page)
            finally:
                bm.release(b)
            placed = len(out) - i
            i = len(out)
            if i < n:
                self.fsm.record(dboid, relnode, block, free)
                self._target.pop(key, None)
                block = -1
                if placed:
                    attempts = 0
            else:
                self._target[key] = block
        return out

    # ------------------------------------------------------------------ tuple state
    def examine(self, dboid: int, relnode: int, tid: TID, xid: int, cid: int) -> tuple[int, tuple]:
        """HeapTupleSatisfiesUpdate: (state, header) of the tuple at tid for a writer."""
        state, h, _data = self.examine_data(dboid, relnode, tid, xid, cid)
        return state, h

    def examine_data(self, dboid: int, relnode: int, tid: TID, xid: int, cid: int) -> tuple[int, tuple, bytes]:
        """(state, header, row data) of the tuple at tid for a writer."""
        bm = self.bm
        b = bm.read_buffer(dboid, relnode, 0, tid.block)
        try:
            with bm.content_lock(b):
                page = bm.page(b)
                off, ln = P.item(page, tid.offset)
                if not off:
                    return INVISIBLE, (), b""
                h = TH.unpack_from(page, off)
                data = bytes(page[off + 24: off + ln])
        finally:
            bm.release(b)
        return self._state(h, xid, cid, tid), h, data

    def _state(self, h: tuple, xid: int, cid: int, tid: TID) -> int:
        xmin, xmax, cmin, cmax, cb, co, mask = h
        if mask & P.XMIN_INVALID:
            return INVISIBLE
        if not mask & P.XMIN_COMMITTED and xmin != xid:
            st = self._xid_status(xmin)
            if st != C.COMMITTED:
                return BEING_UPDATED if self.procs.is_running(xmin) else INVISIBLE
        if xmin == xid and cmin >= cid:
            return INVISIBLE
        if xmax == 0 or mask & P.XMAX_INVALID:
            return MAY_UPDATE
        if xmax == xid:
            if mask & P.XMAX_LOCK_ONLY:
                return MAY_UPDATE
            return SELF_UPDATED
        if mask & P.XMAX_COMMITTED:
            st = C.COMMITTED
        else:
            if self.procs.is_running(xmax):
                return BEING_UPDATED
            st = self._xid_status(xmax)
        if st != C.COMMITTED:
            return MAY_UPDATE  # the locker/updater aborted or crashed
        if mask & P.XMAX_LOCK_ONLY:
            return MAY_UPDATE
        if (cb, co) != (tid.block, tid.offset):
            return UPDATED
        return DELETED

    def set_header(self, dboid: int, relnode: int, tid: TID, xid: int, *, xmax: int, cmax: int, mask: int,
                   ctid: TID, expect: tuple | None = None) -> bool:
        """Change a tuple's xmax/cmax/infomask/ctid under its page lock, WAL-logged.
        With ``expect``, only if the header still equals it (False otherwise)."""
        bm = self.bm
        b = bm.read_buffer(dboid, relnode, 0, tid.block)
        try:
            with bm.content_lock(b):
                page = bm.page(b)
                off, _ = P.item(page, tid.offset)
                if not off:
                    return False
                h = TH.unpack_from(page, off)
                if expect is not None and (h[1], h[6] & ~P.HINT_MASK, h[4], h[5]) != (
                        expect[1], expect[6] & ~P.HINT_MASK, expect[4], expect[5]):
                    return False
                TH.pack_into(page, off, h[0], xmax, h[2], cmax, ctid.block, ctid.offset, mask)
                if xmax and not mask & (P.XMAX_LOCK_ONLY | P.XMAX_INVALID):
                    P.set_prunable(page, xmax)
                rec = BlockRef(dboid, relnode, 0, tid.block, page,
                               _HDRREC.pack(tid.offset, xmax, cmax, mask, ctid.block, ctid.offset))
                lsn = self.xlog.insert(RM_HEAP, XLOG_HEAP_HEADER, xid, [rec])
                P.set_lsn(page, lsn)
                bm.mark_dirty(b)
                return True
        finally:
            bm.release(b)

    # ------------------------------------------------------------------ HOT
    def hot_fetch(self, dboid: int, relnode: int, tid: TID, snap: Snapshot) -> tuple[TID, bytes] | None:
        """heap_hot_search_buffer: the version of the HOT chain rooted at ``tid`` (an index
        entry's tid) that ``snap`` sees, as (its tid, row data), or None.  A long walk prunes
        the page afterwards if that can free something."""
        bm = self.bm
        block = tid.block
        b = bm.read_buffer(dboid, relnode, 0, block)
        try:
            with bm.content_lock(b):
                page = bm.page(b)
                walked = 0
                found = None
                hints: list[tuple[int, int]] = []
                for offnum, off, end, _h in _hot_chain(page, block, tid.offset):
                    walked += 1
                    if self.visible(page, off, snap, hints):
                        found = (TID(block, offnum), bytes(page[off + 24: end]))
                        break
                if hints:
                    self._apply_hints(b, page, hints)
                if walked > PRUNE_CHAIN or (walked > 1 and _low_free(page)):
                    self._maybe_prune(b, page, dboid, relnode, block)
        finally:
            bm.release(b)
        if found is not None:
            self.tup_fetched += 1
        return found

    def chain_headers(self, dboid: int, relnode: int, tid: TID) -> list[tuple[TID, tuple]]:
        """Every version of the HOT chain rooted at ``tid`` as (tid, header) (unique checks)."""
        bm = self.bm
        block = tid.block
        out: list[tuple[TID, tuple]] = []
        b = bm.read_buffer(dboid, relnode, 0, block)
        try:
            with bm.content_lock(b):
                page = bm.page(b)
                for offnum, _off, _end, h in _hot_chain(page, block, tid.offset):
                    out.append((TID(block, offnum), h))
        finally:
            bm.release(b)
        return out

    def update(self, dboid: int, relnode: int, tid: TID, expect: tuple, data: bytes, xid: int, cid: int,
               hot_ok: bool) -> tuple[TID | None, bool]:
        """Put a new version of the tuple at ``tid`` whose header must still be ``expect``.
        Returns (new tid, heap-only?) — (None, False) when the header changed meanwhile
        (the caller examines the tuple again).  With ``hot_ok`` (no indexed column changes)
        the new version goes on the same page as a heap-only tuple when it fits there,
        pruning the page first if that may make room."""
        mask = (expect[6] & P.KEEP_ON_XMAX)
        if hot_ok:
            tup_len = len(data) + 24
            bm = self.bm
            b = bm.read_buffer(dboid, relnode, 0, tid.block)
            try:
                with bm.content_lock(b):
                    page = bm.page(b)
                    off, _ = P.item(page, tid.offset)
                    if not off:
                        return None, False
                    h = TH.unpack_from(page, off)
                    if (h[1], h[6] & ~P.HINT_MASK, h[4], h[5]) != (
                            expect[1], expect[6] & ~P.HINT_MASK, expect[4], expect[5]):
                        return None, False
                    if P.free_space(page) < tup_len and P.prune_xid(page):
                        self._maybe_prune(b, page, dboid, relnode, tid.block)
                        off, _ = P.item(page, tid.offset)
                    if P.free_space(page) >= tup_len:
                        return self._hot_update_locked(b, page, dboid, relnode, tid, off, h, mask, data, xid,
                                                       cid), True
            finally:
                bm.release(b)
        new_tid = self.insert(dboid, relnode, data, xid, cid, updated=True)
        if self.set_header(dboid, relnode, tid, xid, xmax=xid, cmax=cid, mask=mask, ctid=new_tid, expect=expect):
            return new_tid, False
        nh = self.header_at(dboid, relnode, new_tid)
        if nh is not None:
            self.set_header(dboid, relnode, new_tid, xid, xmax=nh[1], cmax=nh[3], mask=nh[6] | P.XMIN_INVALID,
                            ctid=TID(nh[4], nh[5]))
        return None, False

    def _hot_update_locked(self, b: int, page: Any, dboid: int, relnode: int, tid: TID, off: int, h: tuple,
                           mask: int, data: bytes, xid: int, cid: int) -> TID:
        block = tid.block
        newmask = P.XMAX_INVALID | P.HEAP_UPDATED | P.HEAP_ONLY_TUPLE
        tup = TH.pack(xid, 0, cid, 0, block, 0, newmask) + data
        offnum = P.add_item(page, tup)
        if not offnum:
            raise RuntimeError("heap: HOT version did not fit although the page had room")
        toff = page_item_off(page, offnum)
        TH.pack_into(page, toff, xid, 0, cid, 0, block, offnum, newmask)
        oldmask = mask | P.HEAP_HOT_UPDATED
        TH.pack_into(page, off, h[0], xid, h[2], cid, block, offnum, oldmask)
        P.set_prunable(page, xid)
        rec = BlockRef(dboid, relnode, 0, block, page,
                       _HDRREC.pack(tid.offset, xid, cid, oldmask, block, offnum) + _OFF.pack(offnum)
                       + bytes(page[toff: toff + len(tup)]))
        lsn = self.xlog.insert(RM_HEAP, XLOG_HEAP_HOT_UPDATE, xid, [rec])
        P.set_lsn(page, lsn)
        self.bm.mark_dirty(b)
        return TID(block, offnum)

    # ------------------------------------------------------------------ pruning
    def horizon(self, need: int = 0) -> int:
        """The oldest xmin of any snapshot (cached; recomputed when ``need`` is not below the
        cached value, at most every half millisecond)."""
        now = time.monotonic()
        if self._horizon <= need and now - self._horizon_at > 0.0005:
            self._horizon = self.procs.oldest_xmin()
            self._horizon_at = now
        return self._horizon

    def _maybe_prune(self, b: int, page: Any, dboid: int, relnode: int, block: int) -> bool:
        """heap_page_prune_opt on a page whose content lock we hold."""
        pxid = P.prune_xid(page)
        if not pxid or relnode < FIRST_NORMAL_OID or pxid >= self.horizon(pxid):
            # (system catalogs are read with snapshots that do not hold back the horizon:
            # only VACUUM prunes them)
            return False
        return self._prune_locked(b, page, dboid, relnode, block, self._horizon, None)[0] > 0

    def _prune_locked(self, b: int, page: Any, dboid: int, relnode: int, block: int, horizon: int,
                      dead_tids: list[TID] | None, allow_unused: set[int] | None = None
                      ) -> tuple[int, int, int, int]:
        """Prune one locked page.  Returns (changes, live, removed, recently dead); with
        ``dead_tids`` (VACUUM) every LP_DEAD slot's tid is collected, and ``allow_unused``
        LP_DEAD slots (whose index entries are gone) become LP_UNUSED."""
        hints: list[tuple[int, int]] | None = [] if self._hints_ok() else None
        redirect, dead, unused, live, removed, recent, new_pxid = plan_prune(
            page, horizon, self.procs.is_running, self._xid_status, hints)
        if hints:  # before compact(), which moves the tuples (with their headers)
            self._apply_hints(b, page, hints)
        if allow_unused:
            for v_off in allow_unused:
                if v_off not in redirect and v_off not in dead:
                    at = 20 + 4 * v_off
                    if v_off <= P.max_offset(page) and (_LP.unpack_from(page, at)[0] >> 15) & 3 == P.LP_DEAD:
                        unused.add(v_off)
        if dead_tids is not None:
            for i, v in enumerate(P.line_pointers(page)):
                if (v >> 15) & 3 == P.LP_DEAD and i + 1 not in unused:
                    dead_tids.append(TID(block, i + 1))
            for o in dead:
                dead_tids.append(TID(block, o))
        if not redirect and not dead and not unused:
            if P.prune_xid(page) != new_pxid:
                P.set_prune_xid(page, new_pxid)
                self.bm.mark_dirty_hint(b)
            return 0, live, removed, recent
        P.compact(page, unused, dead, redirect)
        P.set_prune_xid(page, new_pxid)
        data = _PRUNEHDR.pack(len(redirect), len(dead), len(unused), new_pxid)
        parts = [data]
        for k in sorted(redirect):
            parts.append(struct.pack("<HH", k, redirect[k]))
        if dead:
            parts.append(struct.pack(f"<{len(dead)}H", *sorted(dead)))
        if unused:
            parts.append(struct.pack(f"<{len(unused)}H", *sorted(unused)))
        rec = BlockRef(dboid, relnode, 0, block, page, b"".join(parts))
        lsn = self.xlog.insert(RM_HEAP, XLOG_HEAP_PRUNE, 0, [rec])
        P.set_lsn(page, lsn)
        self.bm.mark_dirty(b)
        self.pruned += 1
        return len(redirect) + len(dead) + len(unused), live, removed, recent

    def follow_chain(self, dboid: int, relnode: int, tid: TID) -> TID | None:
        """The last committed version reachable from tid through t_ctid, or None if the
        chain ends in a delete."""
        seen = 0
        while seen < 10000:
            seen += 1
            h = self.header_at(dboid, relnode, tid)
            if h is None:
                return None
            xmin, xmax, cmin, cmax, cb, co, mask = h
            nxt = TID(cb, co)
            if xmax == 0 or mask & P.XMAX_INVALID or mask & P.XMAX_LOCK_ONLY or nxt == tid:
                return tid
            st = C.COMMITTED if mask & P.XMAX_COMMITTED else self._xid_status(xmax)
            if st != C.COMMITTED:
                return tid
            nh = self.header_at(dboid, relnode, nxt)
            if nh is None or nh[0] != xmax:
                return None
            tid = nxt
        return None

    # ------------------------------------------------------------------ waiting
    def wait_xid(self, xid: int, my_xid: int) -> None:
        """Sleep until transaction ``xid`` ends (XactLockTableWait)."""
        procs = self.procs
        if not procs.is_running(xid):
            return
        env = self.env
        procs.set_wait("transactionid", xid)
        try:
            start = time.monotonic()
            deadlock_timeout = env.settings.value("deadlock_timeout") / 1000.0
            lock_timeout = env.settings.value("lock_timeout") / 1000.0
            checked = False
            delay = 0.0002
            while procs.is_running(xid):
                env.check_for_interrupts()
                waited = time.monotonic() - start
                if lock_timeout and waited >= lock_timeout:
                    raise PgError("55P03", "canceling statement due to lock timeout")
                if not checked and waited >= deadlock_timeout:
                    checked = True
                    self._check_deadlock(xid, my_xid)
                elif checked and waited >= deadlock_timeout * 2:
                    start_check = waited
                    self._check_deadlock(xid, my_xid)
                    deadlock_timeout = start_check
                time.sleep(delay)
                delay = min(delay * 1.5, 0.005)
        finally:
            procs.set_wait(None)

    def _check_deadlock(self, xid: int, my_xid: int) -> None:
        graph = self.procs.waits_for()
        cycle = [my_xid]
        cur = xid
        while cur in graph and cur not in cycle:
            cycle.append(cur)
            cur = graph[cur]
        if cur == my_xid or (cur in cycle and my_xid in cycle):
            cycle_set = cycle if cur == my_xid else cycle
            if my_xid != max(cycle_set):
                return
            blocker = self.procs.pid_of_xid(xid)
            import os

            lines = [f"Process {os.getpid()} waits for ShareLock on transaction {xid}; blocked by process {blocker}."]
            for a in cycle[1:]:
                b2 = graph.get(a)
                if b2:
                    lines.append(f"Process {self.procs.pid_of_xid(a)} waits for ShareLock on transaction {b2}; "
                                 f"blocked by process {self.procs.pid_of_xid(b2)}.")
            raise PgError("40P01", "deadlock detected", detail="\n".join(lines),
                          hint="See server log for query details.")

    # ------------------------------------------------------------------ vacuum
    def prune_page(self, dboid: int, relnode: int, block: int, horizon: int, xid_for_wal: int,
                   dead_tids: list[TID], allow_unused: set[int] | None = None) -> tuple[int, int, int]:
        """VACUUM on one page.  Phase 1: prune (see the module docstring) and append the tid
        of every LP_DEAD slot to ``dead_tids`` for index cleanup.  Phase 2
        (``allow_unused``, after those index entries are gone): the LP_DEAD slots become
        LP_UNUSED.  Returns (live, dead removed, recently dead)."""
        bm = self.bm
        b = bm.read_buffer(dboid, relnode, 0, block)
        try:
            with bm.content_lock(b):
                page = bm.page(b)
                if P.is_new(page):
                    return 0, 0, 0
                _n, live, removed, recent = self._prune_locked(
                    b, page, dboid, relnode, block, horizon, dead_tids if allow_unused is None else None,
                    allow_unused)
                free = P.free_space(page)
        finally:
            bm.release(b)
        self.fsm.record(dboid, relnode, block, free)
        return live, removed, recent


def hot_chains(page: Any) -> list[tuple[int, list[int]]]:
    """(root offnum, offnums of its versions oldest first) for every chain on the page: an
    ordinary tuple starts one, an LP_REDIRECT root points at its first version (index
    builds index the root with the newest version's key)."""
    lps = P.line_pointers(page)
    n = len(lps)
    out = []
    for i, v in enumerate(lps):
        fl = (v >> 15) & 3
        root = i + 1
        if fl == 2:
            cur = v & 0x7FFF
        elif fl == 1 and not TH.unpack_from(page, v & 0x7FFF)[6] & P.HEAP_ONLY_TUPLE:
            cur = root
        else:
            continue
        chain: list[int] = []
        prev_xmax = 0
        while 0 < cur <= n and cur not in chain:
            w = lps[cur - 1]
            if (w >> 15) & 3 != 1:
                break
            h = TH.unpack_from(page, w & 0x7FFF)
            if cur != root and not h[6] & P.HEAP_ONLY_TUPLE:
                break
            if prev_xmax and h[0] != prev_xmax:
                break
            chain.append(cur)
            if not h[6] & P.HEAP_HOT_UPDATED:
                break
            prev_xmax = h[1]
            cur = h[5]
        if chain:
            out.append((root, chain))
    return out


def chain_versions(page: Any) -> tuple[list[tuple[int, list[tuple[int, int, int, int, bytes]]]], bool]:
    """(:func:`hot_chains` with each version as (offnum, xmin, xmax, infomask, row data),
    whether the page is plain: no HOT chain, no redirect, every tuple its own chain) for
    index builds; a plain page (the usual case) is read in one pass."""
    lps = P.line_pointers(page)
    unpack = TH.unpack_from
    out = []
    hot = P.HEAP_ONLY_TUPLE | P.HEAP_HOT_UPDATED
    for o, v in enumerate(lps, 1):
        fl = (v >> 15) & 3
        if fl == 1:
            off = v & 0x7FFF
            h = unpack(page, off)
            if not h[6] & hot:
                out.append((o, [(o, h[0], h[1], h[6], bytes(page[off + 24: off + (v >> 17)]))]))
                continue
        elif fl != 2:
            continue
        break  # a HOT chain or a redirect: the general walk
    else:
        return out, True
    out = []
    for root, chain in hot_chains(page):
        versions = []
        for o in chain:
            v = lps[o - 1]
            off = v & 0x7FFF
            h = unpack(page, off)
            versions.append((o, h[0], h[1], h[6], bytes(page[off + 24: off + (v >> 17)])))
        out.append((root, versions))
    return out, False


def plainly_visible(chains: list, snap: Snapshot) -> bool:
    """Whether every tuple of a plain page (see :func:`chain_versions`) is visible to
    ``snap`` by its hint bits alone: inserter committed before the snapshot, no deleter
    (HeapTupleSatisfiesMVCC's first answer, nothing to look up or to hint)."""
    smax, xip = snap.xmax, snap.xip
    gone = P.XMAX_INVALID | P.XMAX_LOCK_ONLY
    for _root, ((_o, xmin, xmax, mask, _data),) in chains:
        if not mask & P.XMIN_COMMITTED or xmin >= smax or xmin in xip or (xmax and not mask & gone):
            return False
    return True


def _low_free(page: Any) -> bool:
    """PageIsFull-ish: less than a tenth of the page is free (heap_page_prune_opt's test)."""
    h = _PH.unpack_from(page, 0)
    return h[4] - h[3] < P.BLCKSZ // 10


DEAD_T, RECENT_T, LIVE_T = 0, 1, 2


def plan_prune(page: Any, horizon: int, is_running: Callable[[int], bool], xid_status: Callable[[int], int],
               hints: list[tuple[int, int]] | None = None
               ) -> tuple[dict[int, int], set[int], set[int], int, int, int, int]:
    """heap_page_prune's decisions for one page: (redirect {root: target}, dead, unused,
    live tuples, tuples removed, recently dead tuples, new pd_prune_xid).  With ``hints``,
    (offset, infomask) pairs that set XMIN_COMMITTED on tuples whose inserter was found
    committed are appended (HeapTupleSatisfiesVacuum's SetHintBits).  Each xid's state is
    asked once per page (a finished transaction's fate does not change; one still
    running is treated as running for the whole page, as if asked first)."""
    running_of: dict[int, bool] = {}
    status_of: dict[int, int] = {}

    def running(x: int) -> bool:
        r = running_of.get(x)
        if r is None:
            r = running_of[x] = is_running(x)
        return r

    def status(x: int) -> int:
        r = status_of.get(x)
        if r is None:
            r = status_of[x] = xid_status(x)
        return r
    lps = P.line_pointers(page)
    n = len(lps)
    info: dict[int, tuple] = {}
    new_pxid = 0
    live = recent = 0
    simple_live = set()  # plain live tuples (no HOT chain through them): nothing to decide
    unpack = TH.unpack_from
    plain = P.XMIN_COMMITTED | P.XMAX_INVALID
    chainy = P.HEAP_HOT_UPDATED | P.HEAP_ONLY_TUPLE | P.XMIN_INVALID
    for i, v in enumerate(lps):
        if (v >> 15) & 3 != 1:
            continue
        xmin, xmax, _cmin, _cmax, cb, co, mask = unpack(page, v & 0x7FFF)
        if hints is not None and not mask & (P.XMIN_COMMITTED | P.XMIN_INVALID) and not running(xmin) \
                and status(xmin) == C.COMMITTED:
            mask |= P.XMIN_COMMITTED
            hints.append((v & 0x7FFF, mask))
        if mask & plain == plain and not mask & chainy:
            live += 1
            simple_live.add(i + 1)
            continue
        if mask & P.XMIN_INVALID:
            st = DEAD_T
        elif not mask & P.XMIN_COMMITTED and running(xmin):
            st = LIVE_T
        elif not mask & P.XMIN_COMMITTED and status(xmin) != C.COMMITTED:
            st = DEAD_T
        elif not xmax or mask & (P.XMAX_INVALID | P.XMAX_LOCK_ONLY):
            st = LIVE_T
        elif mask & P.XMAX_COMMITTED or (not running(xmax) and status(xmax) == C.COMMITTED):
            if xmax < horizon:
                st = DEAD_T
            else:
                st = RECENT_T
                if not new_pxid or xmax < new_pxid:
                    new_pxid = xmax
        else:
            st = LIVE_T
            if running(xmax) and (not new_pxid or xmax < new_pxid):
                new_pxid = xmax
        if st == LIVE_T:
            live += 1
        elif st == RECENT_T:
            recent += 1
        info[i + 1] = (st, xmin, xmax, cb, co, mask)
    redirect: dict[int, int] = {}
    dead: set[int] = set()
    unused: set[int] = set()
    visited: set[int] = set()
    block_of = None
    removed = 0
    for i, v in enumerate(lps):
        root = i + 1
        fl = (v >> 15) & 3
        if root in simple_live:
            continue
        if fl == 2:
            cur = v & 0x7FFF
        elif fl == 1 and not info[root][5] & P.HEAP_ONLY_TUPLE:
            cur = root
        else:
            continue
        chain: list[int] = []
        prev_xmax = 0
        ended = False  # the chain's last version was reached (nothing newer on this page)
        while True:
            t = info.get(cur)
            if t is None or cur in visited or cur in chain:
                ended = True
                break
            if cur != root and not t[5] & P.HEAP_ONLY_TUPLE:
                ended = True
                break
            if prev_xmax and t[1] != prev_xmax:
                ended = True
                break
            chain.append(cur)
            if not t[5] & P.HEAP_HOT_UPDATED:
                ended = True
                break
            if block_of is None:
                block_of = t[3]
            if t[3] != block_of:
                ended = True
                break
            prev_xmax = t[2]
            cur = t[4]
        visited.update(chain)
        latestdead = -1
        for k, off in enumerate(chain):
            st = info[off][0]
            if st == DEAD_T:
                latestdead = k
            elif st != RECENT_T:
                break
        if latestdead < 0:
            if fl == 2 and not chain:
                dead.add(root)  # redirect to nothing
            continue
        for off in chain[:latestdead + 1]:
            removed += 1
            if off != root:
                unused.add(off)
        if latestdead == len(chain) - 1 and ended:
            dead.add(root)
        else:
            redirect[root] = chain[latestdead + 1]
    for off, t in info.items():
        if off not in visited and t[5] & P.HEAP_ONLY_TUPLE and t[0] == DEAD_T:
            unused.add(off)  # orphaned by an aborted update
            removed += 1
    _ = n
    return redirect, dead, unused, live, removed, recent, new_pxid


def _place_many(page: Any, block: int, datas: list[bytes], sizes: list[int], i: int, xid: int, cid: int,
                out: list[TID]) -> bytes | None:
    """Put datas[i:] as new tuples on ``page`` while they fit (each as ``P.add_item``
    would place it); append their tids to ``out``; return the XLOG_HEAP_MULTI_INSERT
    payload (count, offnums, lengths, tuples) or None when not even the first fits."""
    lsn, cks, flags, lower, upper, special, ver, prune = _PH.unpack_from(page, 0)
    mask = P.XMAX_INVALID
    if flags & P.PD_HAS_FREE_LINES:  # free line pointers get reused: one at a time
        offs: Any = []
        tups = []
        for j in range(i, len(datas)):
            size = sizes[j]
            if P.free_space(page) < size:
                break
            offnum = P.add_item(page, TH.pack(xid, 0, cid, 0, block, 0, mask) + datas[j])
            if not offnum:
                break
            toff = page_item_off(page, offnum)
            TH.pack_into(page, toff, xid, 0, cid, 0, block, offnum, mask)
            tups.append(bytes(page[toff: toff + size]))
            offs.append(offnum)
    else:  # appended after the last line pointer: all at once
        room = upper - lower
        total = 0
        j = i
        n = len(datas)
        while j < n and total + sizes[j] + 4 <= room:
            total += sizes[j] + 4
            j += 1
        first = (lower - P.PH_SIZE) // 4 + 1
        offs = range(first, first + j - i)
        pack = TH.pack
        tups = [pack(xid, 0, cid, 0, block, o, mask) + d for o, d in zip(offs, datas[i:j])]
        if tups:
            lens = sizes[i:j]
            normal = P.LP_NORMAL << 15
            lps = [(upper - end) | normal | (ln << 17) for end, ln in zip(accumulate(lens), lens)]
            k = len(lps)
            pos = upper - total + 4 * k
            page[pos:upper] = b"".join(reversed(tups))
            struct.pack_into(f"<{k}I", page, lower, *lps)
            _PH.pack_into(page, 0, lsn, cks, flags, lower + 4 * k, pos, special, ver, prune)
    if not tups:
        return None
    new = tuple.__new__  # TID(block, o) without the namedtuple constructor's overhead
    out.extend([new(TID, (block, o)) for o in offs])
    k = len(tups)
    return struct.pack(f"<H{k}H{k}H", k, *offs, *sizes[i:i + k]) + b"".join(tups)


def page_item_off(page: Any, offnum: int) -> int:
    return _LP.unpack_from(page, 24 + 4 * (offnum - 1))[0] & 0x7FFF


# ---------------------------------------------------------------------- redo


def redo(rec: Record, bm: BufMgr) -> None:
    """Replay a heap record (and page-image records) on the buffer pool."""
    fn = _REDO.get(rec.info, redo_nothing) if rec.rmid == RM_HEAP else redo_nothing
    redo_blocks(rec, bm, fn)


def _redo_insert(page: memoryview, block: int, data: bytes) -> None:
    offnum = _OFF.unpack_from(data, 0)[0]
    if P.is_new(page):
        P.init_page(page)
    _redo_add(page, offnum, data[2:], block)


def _redo_header(page: memoryview, block: int, data: bytes) -> None:
    """XLOG_HEAP_HEADER, and the old version's half of XLOG_HEAP_HOT_UPDATE."""
    offnum, xmax, cmax, mask, cbl, coff = _HDRREC.unpack_from(data, 0)
    off, _ = P.item(page, offnum)
    if off:
        h = TH.unpack_from(page, off)
        TH.pack_into(page, off, h[0], xmax, h[2], cmax, cbl, coff, mask)
    if xmax and not mask & (P.XMAX_LOCK_ONLY | P.XMAX_INVALID):
        P.set_prunable(page, xmax)


def _redo_hot_update(page: memoryview, block: int, data: bytes) -> None:
    _redo_header(page, block, data)
    pos = _HDRREC.size
    newoff = _OFF.unpack_from(data, pos)[0]
    _redo_add(page, newoff, data[pos + 2:], block)


def _redo_multi_insert(page: memoryview, block: int, data: bytes) -> None:
    if P.is_new(page):
        P.init_page(page)
    k = _OFF.unpack_from(data, 0)[0]
    hdr = struct.unpack_from(f"<{2 * k}H", data, 2)
    pos = 2 + 4 * k
    for offnum, ln in zip(hdr[:k], hdr[k:]):
        _redo_add(page, offnum, data[pos: pos + ln], block)
        pos += ln


def _redo_prune(page: memoryview, block: int, data: bytes) -> None:
    nred, ndead, nunused, pxid = _PRUNEHDR.unpack_from(data, 0)
    pos = _PRUNEHDR.size
    red = struct.unpack_from(f"<{2 * nred}H", data, pos)
    pos += 4 * nred
    dead = struct.unpack_from(f"<{ndead}H", data, pos)
    pos += 2 * ndead
    unused = struct.unpack_from(f"<{nunused}H", data, pos)
    P.compact(page, set(unused), set(dead), {red[i]: red[i + 1] for i in range(0, len(red), 2)})
    P.set_prune_xid(page, pxid)


_REDO: dict[int, BlockRedo] = {
    XLOG_HEAP_INSERT: _redo_insert,
    XLOG_HEAP_HEADER: _redo_header,
    XLOG_HEAP_HOT_UPDATE: _redo_hot_update,
    XLOG_HEAP_MULTI_INSERT: _redo_multi_insert,
    XLOG_HEAP_PRUNE: _redo_prune,
}


def _redo_add(page: Any, offnum: int, tup: bytes, block: int) -> None:
    """Place a logged tuple at its original line pointer."""
    if offnum <= P.max_offset(page):
        P.set_lp(page, offnum, 0, P.LP_UNUSED, 0)
        hdr = list(P.PH.unpack_from(page, 0))
        hdr[2] |= P.PD_HAS_FREE_LINES
        P.PH.pack_into(page, 0, *hdr)
    got = P.add_item(page, tup, offnum)
    if got != offnum:
        raise RuntimeError(f"heap redo: item {offnum} did not fit on block {block}")
