"""B-tree indexes (PostgreSQL's nbtree, simplified for one writer at a time per index).

An index entry is ``key || tid`` (see :mod:`.nbtkey`): every entry is a unique byte
string, so entries sort by key, then by heap TID.  Pages are slotted pages (see
:mod:`.page`) whose line pointers are kept in entry order, with a 16-byte special area:
right sibling u32, level u16, flags u16, 8 spare bytes.  Leaf items are the entry bytes;
internal items are ``child block u32 || separator entry``, the first separator of a
page being empty (minus infinity).  Block 0 is the metapage (root block, tree level).

Concurrency: writers of one index (insert, split, VACUUM) are serialised by
``locks.btree[hash % N]``, held for a whole descent + insert (+ splits); page content
locks are taken inside it as for any buffer.  Readers take no index lock, only one page
content lock at a time (Lehman & Yao): a split writes the new right page and the
shrunk left page together under both content locks before the parent learns about it,
so a reader that reaches the end of a leaf without passing its stop key moves right
along the sibling link.  Scans hand out one leaf's entries at a time and resume after
the last entry returned (re-descending from the root), so concurrent splits and VACUUM
never make them miss or repeat an entry.

WAL: a leaf insert without split is a logical record (position + item); splits, new
roots, builds and VACUUM log full page images.

CREATE INDEX / ADD PRIMARY KEY sort the entries once and :meth:`BTree.build` writes the
tree bottom-up (nbtsort.c) instead of inserting one entry at a time.

Unique indexes: before inserting, every entry with an equal key is checked against the
heap: a live row → 23505; a row whose inserter or deleter is still running → release
the index, wait for that transaction, start over (PostgreSQL's _bt_check_unique).
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from collections.abc import Iterator
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from pgbundle.server.access import page as P
from pgbundle.server.access.api import TID
from pgbundle.server.access.xlog import RM_BTREE, RM_FPI, BlockRef, Record
from pgbundle.server.access.xlogutils import redo_blocks
from pgbundle.server.storage.smgr import BLCKSZ

if TYPE_CHECKING:
    from pgbundle.server.storage.bufmgr import BufMgr

SPECIAL = 16
_SP = struct.Struct("<IHH8x")
_META = struct.Struct("<III")  # magic, root, level
_U32 = struct.Struct("<I")
_POS = struct.Struct("<H")
MAGIC = 0x053162
NONE = 0xFFFFFFFF
LEAF = 1
ROOT = 2
XLOG_BTREE_INSERT_LEAF = 0x00
_TIDLEN = 6
_PAGE_ITEMS_MAX = BLCKSZ - P.PH_SIZE - SPECIAL
_UPPER_CACHE_MAX = 32  # upper-level pages a backend keeps searchable (see BTree._find_leaf)


class NeedWait(Exception):
    """Unique check found an in-progress transaction: wait for ``xid`` and retry."""

    def __init__(self, xid: int) -> None:
        super().__init__(xid)
        self.xid = xid


def _special(page: Any) -> tuple[int, int, int]:
    return _SP.unpack_from(page, BLCKSZ - SPECIAL)


def _set_special(page: Any, right: int, level: int, flags: int) -> None:
    _SP.pack_into(page, BLCKSZ - SPECIAL, right, level, flags)


def _init_node(page: Any, right: int, level: int, flags: int) -> None:
    P.init_page(page, SPECIAL)
    _set_special(page, right, level, flags)


def _items(page: Any) -> list[bytes]:
    out = []
    for v in P.line_pointers(page):
        off, fl, ln = P.lp_unpack(v)
        out.append(bytes(page[off: off + ln]))
    return out


def _write_items(page: Any, items: list[bytes], right: int, level: int, flags: int) -> None:
    _init_node(page, right, level, flags)
    for it in items:
        if not P.add_item(page, it):
            raise RuntimeError("btree page overflow")


_LP_AT = P.LP.unpack_from
_LP0 = P.PH_SIZE


def _item_at(page: Any, i: int) -> bytes:
    v = P.LP.unpack_from(page, P.PH_SIZE + 4 * i)[0]
    off = v & 0x7FFF
    return bytes(page[off: off + (v >> 17)])


def _nitems(page: Any) -> int:
    return (P.U16.unpack_from(page, 12)[0] - P.PH_SIZE) // 4


def _leaf_search(page: Any, entry: bytes) -> int:
    """Index of the first leaf item >= entry."""
    lo, hi = 0, _nitems(page)
    lp = _LP_AT
    view = None if page.__class__ is bytes else page  # a locked page in the pool: compare copies
    while lo < hi:
        mid = (lo + hi) >> 1
        v = lp(page, _LP0 + 4 * mid)[0]
        off = v & 0x7FFF
        it = page[off: off + (v >> 17)]
        if (it if view is None else bytes(it)) < entry:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _internal_search(page: Any, entry: bytes) -> tuple[int, int]:
    """(index, child block) of the last internal item whose separator <= entry."""
    lo, hi = 1, _nitems(page)
    lp = _LP_AT
    view = None if page.__class__ is bytes else page
    while lo < hi:
        mid = (lo + hi) >> 1
        v = lp(page, _LP0 + 4 * mid)[0]
        off = v & 0x7FFF
        it = page[off + 4: off + (v >> 17)]
        if (it if view is None else bytes(it)) <= entry:
            lo = mid + 1
        else:
            hi = mid
    idx = lo - 1
    return idx, _U32.unpack_from(_item_at(page, idx), 0)[0]


def _separators(page: bytes) -> tuple[list[bytes], list[int]]:
    """An internal page's separators (the first one empty: minus infinity) and children,
    for ``bisect_right(separators, entry) - 1`` = :func:`_internal_search`'s index."""
    n = _nitems(page)
    seps = []
    kids = []
    for v in struct.unpack_from(f"<{n}I", page, _LP0):
        off = v & 0x7FFF
        kids.append(_U32.unpack_from(page, off)[0])
        seps.append(page[off + 4: off + (v >> 17)])
    seps[0] = b""
    return seps, kids


def _insert_at(page: Any, pos: int, data: bytes) -> bool:
    """Insert ``data`` as the pos-th item (0-based), shifting the line pointers."""
    lsn, cks, flags, lower, upper, special, ver, prune = P.PH.unpack_from(page, 0)
    size = len(data)
    if upper - lower < size + 4:
        return False
    upper -= size
    page[upper: upper + size] = data
    at = P.PH_SIZE + 4 * pos
    page[at + 4: lower + 4] = page[at: lower]
    P.LP.pack_into(page, at, upper | (P.LP_NORMAL << 15) | (size << 17))
    P.PH.pack_into(page, 0, lsn, cks, flags, lower + 4, upper, special, ver, prune)
    return True


class BTree:
    """B-tree operations for one backend (``env``: bm, xlog, heap, locks, procs...)."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.bm = env.bm
        self.xlog = env.xlog
        self.locks = env.locks.btree
        self._roots: dict[tuple[int, int], int] = {}
        # readers' upper-level pages: (dboid, relnode, block) -> (LSN, flags, separators,
        # children, WAL insert position when last found current)
        self._upper: dict[tuple[int, int, int], tuple[int, int, list[bytes], list[int], int]] = {}

    def _lock(self, dboid: int, relnode: int) -> Any:
        return self.locks[hash((dboid, relnode)) % len(self.locks)]

    # ------------------------------------------------------------------ build
    def create_empty(self, dboid: int, relnode: int, xid: int) -> None:
        """Metapage + an empty root leaf (both WAL-logged as images)."""
        bm = self.bm
        with self._lock(dboid, relnode):
            mb, b0 = bm.extend(dboid, relnode)
            rb, b1 = bm.extend(dboid, relnode)
            try:
                with bm.content_lock(b0):
                    p0 = bm.page(b0)
                    P.init_page(p0)
                    _META.pack_into(p0, P.PH_SIZE, MAGIC, rb, 0)
                    P.PH.pack_into(p0, 0, 0, 0, 0, P.PH_SIZE + _META.size, BLCKSZ, BLCKSZ, BLCKSZ | 4, 0)
                    self._log_images(dboid, relnode, xid, [(mb, b0)])
                with bm.content_lock(b1):
                    p1 = bm.page(b1)
                    _init_node(p1, NONE, 0, LEAF | ROOT)
                    self._log_images(dboid, relnode, xid, [(rb, b1)])
            finally:
                bm.release(b0)
                bm.release(b1)

    def build(self, dboid: int, relnode: int, entries: list[bytes], xid: int) -> None:
        """Bulk-load ``entries`` (``key || tid``, sorted) into an index that
        :meth:`create_empty` just made (PostgreSQL's nbtsort.c): the leaves are filled left
        to right to 90 % (later inserts find room), each upper level (70 %) is built from
        the low keys of the level below until one page is left, the root; every page is
        WAL-logged as a full image and the metapage last points at the new root."""
        if not entries:
            return
        bm = self.bm
        with self._lock(dboid, relnode):
            root, level = self._meta(dboid, relnode)
            if level or root != 1 or bm.nblocks(dboid, relnode) != 2 or self._nitems_at(dboid, relnode, 1):
                raise RuntimeError(f"index {relnode} is not empty: cannot bulk-load it")
            self._roots.pop((dboid, relnode), None)
            pages = _pack(entries, False, LEAF_FILL)
            lows = [items[0] for items in pages]  # each page's low key (its first entry)
            first = 1
            level = 0
            while True:
                flags = (LEAF if level == 0 else 0) | (ROOT if len(pages) == 1 else 0)
                for i, items in enumerate(pages):
                    self.env.check_for_interrupts()
                    right = first + i + 1 if i + 1 < len(pages) else NONE
                    self._put_page(dboid, relnode, first + i, _node_image(items, right, level, flags), xid)
                if len(pages) == 1:
                    break
                # the parent level: child block || low key per page of this level; the first
                # item of each parent page keeps only the block (minus infinity) and its
                # separator becomes that parent's low key
                parent = [_U32.pack(first + i) + (lows[i] if i else b"") for i in range(len(pages))]
                first += len(pages)
                pages = _pack(parent, True, INTERNAL_FILL)
                lows = [items[0][4:] for items in pages]
                for items in pages:
                    items[0] = items[0][:4]
                level += 1
            mb = bm.read_buffer(dboid, relnode, 0, 0)
            try:
                with bm.content_lock(mb):
                    _META.pack_into(bm.page(mb), P.PH_SIZE, MAGIC, first, level)
                    self._log_images(dboid, relnode, xid, [(0, mb)])
            finally:
                bm.release(mb)

    def _nitems_at(self, dboid: int, relnode: int, blk: int) -> int:
        bm = self.bm
        b = bm.read_buffer(dboid, relnode, 0, blk)
        try:
            with bm.content_lock(b):
                return _nitems(bm.page(b))
        finally:
            bm.release(b)

    def _put_page(self, dboid: int, relnode: int, blk: int, image: bytes, xid: int) -> None:
        """Write page ``blk`` (an existing block or the next new one) and log its image."""
        bm = self.bm
        if blk < bm.nblocks(dboid, relnode):
            b = bm.read_buffer(dboid, relnode, 0, blk)
        else:
            got, b = bm.extend(dboid, relnode)
            if got != blk:
                bm.release(b)
                raise RuntimeError(f"index {relnode} grew under its build: block {got}, expected {blk}")
        try:
            with bm.content_lock(b):
                bm.page(b)[:] = image
                self._log_images(dboid, relnode, xid, [(blk, b)])
        finally:
            bm.release(b)

    def _log_images(self, dboid: int, relnode: int, xid: int, pages: list[tuple[int, int]]) -> None:
        """Log full images of pages whose content locks the caller holds."""
        bm = self.bm
        refs = [BlockRef(dboid, relnode, 0, blk, bm.page(b), force_image=True) for blk, b in pages]
        lsn = self.xlog.insert(RM_FPI, 0, xid, refs)
        for _blk, b in pages:
            P.set_lsn(bm.page(b), lsn)
            bm.mark_dirty(b)

    def _meta(self, dboid: int, relnode: int) -> tuple[int, int]:
        bm = self.bm
        b = bm.read_buffer(dboid, relnode, 0, 0)
        try:
            with bm.content_lock(b):
                magic, root, level = _META.unpack_from(bm.page(b), P.PH_SIZE)
        finally:
            bm.release(b)
        if magic != MAGIC:
            raise RuntimeError(f"index {relnode} has no valid metapage")
        return root, level

    # ------------------------------------------------------------------ descent
    def _descend(self, dboid: int, relnode: int, entry: bytes) -> list[int]:
        """Blocks from root to the leaf where ``entry`` belongs, for writers (holding the
        index lock): the metapage and every page read afresh.  Readers use
        :meth:`_find_leaf`."""
        root, _level = self._meta(dboid, relnode)
        self._roots[(dboid, relnode)] = root
        path = []
        blk = root
        while True:
            path.append(blk)
            page = self._copy_page(dboid, relnode, blk)
            if _special(page)[2] & LEAF:
                return path
            blk = _internal_search(page, entry)[1]

    def _copy_page(self, dboid: int, relnode: int, blk: int) -> bytes:
        """A copy of the page taken under its content lock (searched outside the lock: the
        root's lock is the most contended in the pool)."""
        bm = self.bm
        b = bm.read_buffer(dboid, relnode, 0, blk)
        try:
            with bm.content_lock(b):
                off = bm.page_off(b)
                return bm.buf[off: off + BLCKSZ]
        finally:
            bm.release(b)

    def _find_leaf(self, dboid: int, relnode: int, entry: bytes) -> tuple[int, bytes]:
        """(block, copy) of the leaf where a reader starts looking for ``entry``.

        Upper-level pages come from this backend's cache (their separators and children,
        searched with ``bisect``) while the page's LSN in the buffer pool is the one they
        were read at: one mapping-lock round trip instead of pin + content lock + copy +
        unpin (PostgreSQL's backends cache the metapage) -- and no check at all while the
        WAL insert position has not moved since the entry was last found current.  An
        entry that is behind a change still in progress is safe, as an old root is: pages
        are never removed, a split keeps the low keys in the left page, and readers move
        right along the leaves.  The cached root is re-read from the metapage once its
        page no longer says ROOT."""
        bm = self.bm
        upper = self._upper
        wal = self.xlog.insert_pos  # read before any page is looked at
        cached = self._roots.get((dboid, relnode))
        fresh = cached is None
        if cached is None:
            root, _level = self._meta(dboid, relnode)
            self._roots[(dboid, relnode)] = root
        else:
            root = cached
        blk = root
        while True:
            key = (dboid, relnode, blk)
            hit = upper.get(key)
            page = None
            if hit is not None and (hit[4] == wal or bm.cached_lsn(dboid, relnode, 0, blk) == hit[0]):
                # no WAL written since the entry was last found current: no page changed
                # (every change of an index page is WAL-logged before its LSN is set)
                _lsn, flags, seps, kids, _wal = hit
                if _wal != wal:
                    upper[key] = (_lsn, flags, seps, kids, wal)
            else:
                page = self._copy_page(dboid, relnode, blk)
                flags = _special(page)[2]
                if flags & LEAF:
                    if hit is not None:
                        del upper[key]
                else:
                    seps, kids = _separators(page)
                    if len(upper) >= _UPPER_CACHE_MAX:
                        del upper[next(iter(upper))]
                    upper[key] = (P.page_lsn(page), flags, seps, kids, wal)
            if blk == root and not flags & ROOT and not fresh:
                fresh = True  # the root split since we cached it: ask the metapage
                root, _level = self._meta(dboid, relnode)
                self._roots[(dboid, relnode)] = root
                blk = root
                continue
            if page is not None and flags & LEAF:
                return blk, page
            blk = kids[bisect_right(seps, entry) - 1]

    # ------------------------------------------------------------------ insert
    def insert(self, dboid: int, relnode: int, key: bytes, tid: TID, xid: int,
               unique_check: Any = None) -> None:
        """Add ``key || tid``.  ``unique_check(tid) -> 'live' | 'dead' | ('wait', xid)``
        is called for each entry with an equal key when the index is unique; a live one
        raises the caller's error (returned as 'live'), a wait raises :class:`NeedWait`."""
        entry = key + struct.pack(">IH", tid.block, tid.offset)
        bm = self.bm
        with self._lock(dboid, relnode):
            if unique_check is not None:
                self._check_unique(dboid, relnode, key, unique_check)
            path = self._descend(dboid, relnode, entry)
            leaf = path[-1]
            b = bm.read_buffer(dboid, relnode, 0, leaf)
            try:
                with bm.content_lock(b):
                    page = bm.page(b)
                    pos = _leaf_search(page, entry)
                    if _insert_at(page, pos, entry):
                        rec = BlockRef(dboid, relnode, 0, leaf, page, _POS.pack(pos) + entry)
                        lsn = self.xlog.insert(RM_BTREE, XLOG_BTREE_INSERT_LEAF, xid, [rec])
                        P.set_lsn(page, lsn)
                        bm.mark_dirty(b)
                        return
            finally:
                bm.release(b)
            self._split_insert(dboid, relnode, path, entry, None, xid)

    def _check_unique(self, dboid: int, relnode: int, key: bytes, check: Any) -> None:
        for tid in self._scan_range(dboid, relnode, key, key + b"\xff\xff", locked=True):
            r = check(tid)
            if r == "live":
                raise Duplicate()
            if isinstance(r, tuple):
                raise NeedWait(r[1])

    def _split_insert(self, dboid: int, relnode: int, path: list[int], item: bytes, child: int | None,
                      xid: int) -> None:
        """Insert ``item`` into path[-1] which is full: split it and push a separator up."""
        bm = self.bm
        blk = path[-1]
        b = bm.read_buffer(dboid, relnode, 0, blk)
        newblk, nb = bm.extend(dboid, relnode)
        try:
            with bm.lock_two(b, nb):
                page = bm.page(b)
                right, level, flags = _special(page)
                items = _items(page)
                if flags & LEAF:
                    pos = _leaf_search(page, item)
                    items.insert(pos, item)
                else:
                    idx, _ = _internal_search(page, item[4:])
                    items.insert(idx + 1, item)
                half = _split_point(items)
                left_items, right_items = items[:half], items[half:]
                if flags & LEAF:
                    sep = right_items[0]
                else:
                    sep = right_items[0][4:]
                    right_items[0] = right_items[0][:4]  # first internal item: minus infinity
                is_root = bool(flags & ROOT)
                new_flags = flags & ~ROOT
                rpage = bm.page(nb)
                _write_items(rpage, right_items, right, level, new_flags)
                _write_items(page, left_items, newblk, level, new_flags)
                self._log_images(dboid, relnode, xid, [(blk, b), (newblk, nb)])
        finally:
            bm.release(b)
            bm.release(nb)
        sep_item = _U32.pack(newblk) + sep
        if is_root:
            self._new_root(dboid, relnode, blk, sep_item, level + 1, xid)
            return
        parent_path = path[:-1]
        pblk = parent_path[-1]
        pb = bm.read_buffer(dboid, relnode, 0, pblk)
        try:
            with bm.content_lock(pb):
                ppage = bm.page(pb)
                idx, _ = _internal_search(ppage, sep)
                if _insert_at(ppage, idx + 1, sep_item):
                    self._log_images(dboid, relnode, xid, [(pblk, pb)])
                    return
        finally:
            bm.release(pb)
        self._split_insert(dboid, relnode, parent_path, sep_item, newblk, xid)

    def _new_root(self, dboid: int, relnode: int, left: int, sep_item: bytes, level: int, xid: int) -> None:
        bm = self.bm
        rblk, rb = bm.extend(dboid, relnode)
        mb = bm.read_buffer(dboid, relnode, 0, 0)
        try:
            with bm.content_lock(rb):
                _write_items(bm.page(rb), [_U32.pack(left), sep_item], NONE, level, ROOT)
                self._log_images(dboid, relnode, xid, [(rblk, rb)])
            with bm.content_lock(mb):
                _META.pack_into(bm.page(mb), P.PH_SIZE, MAGIC, rblk, level)
                self._log_images(dboid, relnode, xid, [(0, mb)])
        finally:
            bm.release(rb)
            bm.release(mb)

    # ------------------------------------------------------------------ scans
    def _scan_range(self, dboid: int, relnode: int, start: bytes, stop: bytes, *, locked: bool = False,
                    stop_inclusive: bool = False) -> Iterator[TID]:
        """TIDs of entries in [start, stop) (or [start, stop] prefix-wise), in order."""
        last: bytes | None = None
        while True:
            batch: list[bytes] = []
            more = False
            seek = start if last is None else last + b"\x00"
            if locked:
                blk = self._descend(dboid, relnode, seek)[-1]
                page = None
            else:
                blk, page = self._find_leaf(dboid, relnode, seek)
            while True:
                if page is None:
                    page = self._copy_page(dboid, relnode, blk)
                right, _lvl, _fl = _special(page)
                n = _nitems(page)
                i = _leaf_search(page, seek)
                done = False
                while i < n:
                    it = _item_at(page, i)
                    if it >= stop and not (stop_inclusive and it.startswith(stop)):
                        done = True
                        break
                    batch.append(it)
                    i += 1
                if done or right == NONE:
                    break
                if batch:
                    more = True
                    break
                blk = right
                page = None
            for it in batch:
                blk_, off_ = struct.unpack_from(">IH", it, len(it) - _TIDLEN)
                yield TID(blk_, off_)
            if not more:
                return
            last = batch[-1]

    def scan(self, dboid: int, relnode: int, lower: bytes | None, lower_incl: bool, upper: bytes | None,
             upper_incl: bool) -> Iterator[TID]:
        start = b"" if lower is None else (lower if lower_incl else lower + b"\xff\xff")
        if upper is None:
            stop, incl = b"\xff" * 16, False
        elif upper_incl:
            stop, incl = upper + b"\xff\xff", False
        else:
            stop, incl = upper, False
        return self._scan_range(dboid, relnode, start, stop, stop_inclusive=incl)

    # ------------------------------------------------------------------ vacuum
    def bulk_delete(self, dboid: int, relnode: int, dead: set[TID], xid: int) -> int:
        """Remove every leaf entry pointing at a tid in ``dead``; returns entries removed."""
        if not dead:
            return 0
        bm = self.bm
        removed = 0
        dead_b = {struct.pack(">IH", t.block, t.offset) for t in dead}
        with self._lock(dboid, relnode):
            nblocks = bm.nblocks(dboid, relnode)
            for blk in range(1, nblocks):
                self.env.check_for_interrupts()
                b = bm.read_buffer(dboid, relnode, 0, blk)
                try:
                    with bm.content_lock(b):
                        page = bm.page(b)
                        if P.is_new(page):
                            continue
                        right, level, flags = _special(page)
                        if not flags & LEAF:
                            continue
                        items = _items(page)
                        keep = [it for it in items if it[-_TIDLEN:] not in dead_b]
                        if len(keep) != len(items):
                            removed += len(items) - len(keep)
                            _write_items(page, keep, right, level, flags)
                            self._log_images(dboid, relnode, xid, [(blk, b)])
                finally:
                    bm.release(b)
        return removed

    def count_entries(self, dboid: int, relnode: int) -> int:
        return sum(1 for _ in self.scan(dboid, relnode, None, True, None, True))


class Duplicate(Exception):
    """A unique index already holds the key (the caller turns it into 23505 with the row)."""


LEAF_FILL = _PAGE_ITEMS_MAX * 90 // 100  # BTREE_DEFAULT_FILLFACTOR
INTERNAL_FILL = _PAGE_ITEMS_MAX * 70 // 100  # BTREE_NONLEAF_FILLFACTOR


def _pack(items: list[bytes], internal: bool, fill: int) -> list[list[bytes]]:
    """Cut ``items`` into pages of at most ``fill`` bytes (items + line pointers).  A page
    takes at least two items when they fit at all, so every level shrinks; on an
    ``internal`` page the first item will keep only its 4-byte child block."""
    if not internal and items:
        sizes = set(map(len, items))
        per = fill // (len(items[0]) + 4)
        if len(sizes) == 1 and per >= 2:  # entries of one size (fixed-width keys): slices
            return [items[k: k + per] for k in range(0, len(items), per)]
    pages: list[list[bytes]] = []
    cur: list[bytes] = []
    used = 0
    for it in items:
        size = len(it) + 4
        if cur and used + size > fill and (len(cur) >= 2 or used + size > _PAGE_ITEMS_MAX):
            pages.append(cur)
            cur = []
            used = 0
        cur.append(it)
        used += 8 if internal and len(cur) == 1 else size
    if cur:
        pages.append(cur)
    return pages


def _node_image(items: list[bytes], right: int, level: int, flags: int) -> bytes:
    """The page :func:`_write_items` would make of ``items``, built in one go."""
    special = BLCKSZ - SPECIAL
    lens = list(map(len, items))
    normal = P.LP_NORMAL << 15
    lps = [(special - end) | normal | (ln << 17) for end, ln in zip(accumulate(lens), lens)]
    pos = special - sum(lens)
    lower = P.PH_SIZE + 4 * len(items)
    if pos < lower:
        raise RuntimeError("btree page overflow")
    page = bytearray(BLCKSZ)
    P.PH.pack_into(page, 0, 0, 0, 0, lower, pos, special, BLCKSZ | 4, 0)
    struct.pack_into(f"<{len(lps)}I", page, P.PH_SIZE, *lps)
    page[pos:special] = b"".join(reversed(items))
    _set_special(page, right, level, flags)
    return bytes(page)


def _split_point(items: list[bytes]) -> int:
    total = sum(len(i) + 4 for i in items)
    acc = 0
    for i, it in enumerate(items):
        acc += len(it) + 4
        if acc >= total // 2:
            return max(1, min(i + 1, len(items) - 1))
    return len(items) // 2


def redo(rec: Record, bm: BufMgr) -> None:
    """Replay a B-tree record (an index entry placed at its logged position; page images)."""
    redo_blocks(rec, bm, _redo_insert)


def _redo_insert(page: memoryview, block: int, data: bytes) -> None:
    pos = _POS.unpack_from(data, 0)[0]
    if not _insert_at(page, pos, data[2:]):
        raise RuntimeError(f"btree redo: item did not fit in block {block}")
