"""Heap relations: tuple insertion, MVCC visibility, update/delete with PostgreSQL's
concurrent-update rules, pruning for VACUUM, and WAL redo of heap records
(PostgreSQL's heapam.c + heapam_visibility.c + pruneheap.c).

Every page access pins the buffer and holds its content lock only while the page is
read or changed; rows are decoded after the lock is released.

Update protocol (no HOT): the new version is inserted first (xmin = us), then the old
version's header is set under its page lock (xmax = us, ctid → new version) *if* it
is still unchanged; otherwise the new version is killed (XMIN_INVALID) and the caller
waits or reports a conflict.  Each step is its own WAL record carrying our xid, so a
crash in between leaves only tuples of an aborted transaction.

Waiting for another transaction (row conflict): our slot advertises the xid we wait
for; we poll until it leaves the proc array, checking for interrupts; after
``deadlock_timeout`` we walk the wait-for graph and, if it loops back to us and our
xid is the largest in the cycle, raise 40P01.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from typing import Any

from pgbundle.server.access import page as P
from pgbundle.server.access.api import TID, Snapshot
from pgbundle.server.access.xlog import RM_FPI, RM_HEAP, BlockRef
from pgbundle.server.errors import PgError
from pgbundle.server.storage import clog as C

XLOG_HEAP_INSERT = 0x00
XLOG_HEAP_HEADER = 0x10  # set xmax/cmax/infomask/ctid of one tuple
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
        self._ioq: Any = None

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
        out = []
        try:
            with bm.content_lock(b):
                page = bm.page(b)
                lower = P.U16.unpack_from(page, 12)[0]
                if lower == 0:
                    return out
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
                if upto > requested:
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
            from pgbundle.server.postmaster.ioworker import ReadQueue

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
                nblocks = bm.nblocks(dboid, relnode)
                if attempts == 1 and nblocks > 0:
                    block = self.fsm.search(dboid, relnode, size + 4, nblocks)
                    if block < 0:
                        block = nblocks - 1  # the last page is the usual target
                elif attempts == 2 and nblocks > 0:
                    block = self.fsm.search(dboid, relnode, size + 4, nblocks)
                if block < 0:
                    block, b = bm.extend(dboid, relnode)
                    new_page = True
                else:
                    b = bm.read_buffer(dboid, relnode, 0, block)
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

    # ------------------------------------------------------------------ tuple state
    def examine(self, dboid: int, relnode: int, tid: TID, xid: int, cid: int) -> tuple[int, tuple]:
        """HeapTupleSatisfiesUpdate: (state, header) of the tuple at tid for a writer."""
        bm = self.bm
        b = bm.read_buffer(dboid, relnode, 0, tid.block)
        try:
            with bm.content_lock(b):
                page = bm.page(b)
                off, _ = P.item(page, tid.offset)
                if not off:
                    return INVISIBLE, ()
                h = TH.unpack_from(page, off)
        finally:
            bm.release(b)
        return self._state(h, xid, cid, tid), h

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
                rec = BlockRef(dboid, relnode, 0, tid.block, page,
                               _HDRREC.pack(tid.offset, xmax, cmax, mask, ctid.block, ctid.offset))
                lsn = self.xlog.insert(RM_HEAP, XLOG_HEAP_HEADER, xid, [rec])
                P.set_lsn(page, lsn)
                bm.mark_dirty(b)
                return True
        finally:
            bm.release(b)

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
        """Phase 1 of VACUUM on one page: tuples dead to everyone (inserter aborted, or
        deleter committed before ``horizon``) lose their storage and become LP_DEAD
        (their tids are appended to ``dead_tids`` for index cleanup).  With
        ``allow_unused`` (phase 2, after index entries are gone) those LP_DEAD slots become
        LP_UNUSED.  Returns (live, dead_removed, recently_dead)."""
        bm = self.bm
        b = bm.read_buffer(dboid, relnode, 0, block)
        live = removed = recent = 0
        try:
            with bm.content_lock(b):
                page = bm.page(b)
                if P.is_new(page):
                    return 0, 0, 0
                dead: set[int] = set()
                unused: set[int] = set()
                hints: list[tuple[int, int]] = []
                for i, v in enumerate(P.line_pointers(page)):
                    off, fl, ln = P.lp_unpack(v)
                    offnum = i + 1
                    if fl == P.LP_DEAD:
                        if allow_unused is not None and offnum in allow_unused:
                            unused.add(offnum)
                        continue
                    if fl != P.LP_NORMAL:
                        continue
                    xmin, xmax, cmin, cmax, cb, co, mask = TH.unpack_from(page, off)
                    if mask & P.XMIN_INVALID:
                        gone = True
                    elif not mask & P.XMIN_COMMITTED:
                        if self.procs.is_running(xmin):
                            live += 1
                            continue
                        st = self._xid_status(xmin)
                        gone = st != C.COMMITTED
                        if not gone:
                            hints.append((off, mask | P.XMIN_COMMITTED))
                    else:
                        gone = False
                    if not gone and xmax and not mask & (P.XMAX_INVALID | P.XMAX_LOCK_ONLY):
                        if mask & P.XMAX_COMMITTED or (not self.procs.is_running(xmax)
                                                       and self._xid_status(xmax) == C.COMMITTED):
                            if xmax < horizon:
                                gone = True
                            else:
                                recent += 1
                                continue
                    if gone:
                        dead.add(offnum)
                        dead_tids.append(TID(block, offnum))
                        removed += 1
                    else:
                        live += 1
                if not dead and not unused:
                    if hints:
                        self._apply_hints(b, page, hints)
                    return live, 0, recent
                P.compact(page, unused, dead)
                rec = BlockRef(dboid, relnode, 0, block, page, force_image=True)
                lsn = self.xlog.insert(RM_FPI, 0, xid_for_wal, [rec])
                P.set_lsn(page, lsn)
                bm.mark_dirty(b)
                free = P.free_space(page)
        finally:
            bm.release(b)
        self.fsm.record(dboid, relnode, block, free)
        return live, removed, recent


def page_item_off(page: Any, offnum: int) -> int:
    return _LP.unpack_from(page, 24 + 4 * (offnum - 1))[0] & 0x7FFF


# ---------------------------------------------------------------------- redo


def redo(rec: Any, bm: Any) -> None:
    """Replay a heap record (and page-image records) on the buffer pool."""
    for dboid, relnode, fork, block, flags, image, data in rec.blocks:
        b = bm.read_buffer(dboid, relnode, fork, block)
        try:
            with bm.content_lock(b):
                page = bm.page(b)
                if image is not None:
                    page[:] = image
                    P.set_lsn(page, rec.end)
                    bm.mark_dirty(b)
                    continue
                if flags & 2:  # will init
                    P.init_page(page)
                elif P.page_lsn(page) >= rec.end:
                    continue
                if rec.rmid == RM_HEAP and rec.info == XLOG_HEAP_INSERT:
                    offnum = _OFF.unpack_from(data, 0)[0]
                    if P.is_new(page):
                        P.init_page(page)
                    if offnum <= P.max_offset(page):
                        P.set_lp(page, offnum, 0, P.LP_UNUSED, 0)
                        hdr = list(P.PH.unpack_from(page, 0))
                        hdr[2] |= P.PD_HAS_FREE_LINES
                        P.PH.pack_into(page, 0, *hdr)
                    got = P.add_item(page, data[2:], offnum)
                    if got != offnum:
                        raise RuntimeError(f"heap redo: item {offnum} did not fit on block {block}")
                elif rec.rmid == RM_HEAP and rec.info == XLOG_HEAP_HEADER:
                    offnum, xmax, cmax, mask, cbl, coff = _HDRREC.unpack_from(data, 0)
                    off, _ = P.item(page, offnum)
                    if off:
                        h = TH.unpack_from(page, off)
                        TH.pack_into(page, off, h[0], xmax, h[2], cmax, cbl, coff, mask)
                P.set_lsn(page, rec.end)
                bm.mark_dirty(b)
        finally:
            bm.release(b)
