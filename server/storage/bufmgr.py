"""The shared buffer pool: ``shared_buffers`` pages of 8 KB in the shared segment, their
descriptors, and the tag → buffer hash table (PostgreSQL's bufmgr.c + buf_table.c +
buf_init.c; the replacement policy is :mod:`.freelist`).

Access rules (storage/buffer/README):

* Every page access goes through :meth:`BufMgr.read_buffer`, which returns a buffer
  id **pinned** for this process; :meth:`release` unpins.  A pinned buffer is never
  evicted.  Pins are counted once per process in the descriptor (``refcount``) and
  per pin in a private dict; :meth:`release_all` drops them at statement end/error.
* Reading or changing page contents needs the buffer's **content lock**
  (``with bufmgr.content_lock(b):``), striped over ``locks.buffer_content``.
* A change is: lock, modify the page, insert its WAL record, set the page LSN to the
  record's end, :meth:`mark_dirty`, unlock.
* **WAL before data**: a dirty page is written only after the WAL is flushed up to
  its LSN (:meth:`flush_buffer`).

Descriptor (24 bytes, guarded by ``locks.buffer_header[b % N]``):
dboid u32, relnode u32, block u32, fork u8, usage_count u8, flags u16, refcount u16,
next-in-bucket u32.  Hash buckets (u32 heads) are guarded by the mapping partition
lock ``locks.buffer_mapping[bucket % N]``; a tag changes only under its old and new
partition locks and the header lock.
"""

from __future__ import annotations

import struct
import time
from typing import Any

from pgbundle.server.errors import PgError
from pgbundle.server.storage import freelist
from pgbundle.server.storage.lwlock import N_CONTENT, N_HEADER, N_MAPPING
from pgbundle.server.storage.smgr import BLCKSZ

DESC = struct.Struct("<IIIBBHHIxx")
NONE = 0xFFFFFFFF
_U32 = struct.Struct("<I")
_LSN = struct.Struct("<Q")

VALID = 1
DIRTY = 2
TAG_VALID = 4
IO_IN_PROGRESS = 8
JUST_DIRTIED = 16
CHECKPOINT_NEEDED = 32
IO_ERROR = 64
PERMANENT = 128

MAX_USAGE = 5


def nbuckets(layout: Any) -> int:
    return max(64, layout.nbuffers * 2)


def descriptors_size(layout: Any) -> int:
    return layout.nbuffers * DESC.size + nbuckets(layout) * 4


def init_descriptors(shm: Any) -> None:
    """Postmaster, on a fresh segment: empty buckets."""
    lay = shm.layout
    off = lay.buf_desc_off + lay.nbuffers * DESC.size
    shm.buf[off: off + nbuckets(lay) * 4] = b"\xff" * (nbuckets(lay) * 4)


class BufMgr:
    """One process's view of the buffer pool."""

    def __init__(self, shm: Any, locks: Any, smgr: Any, xlog: Any = None, syncq: Any = None) -> None:
        lay = shm.layout
        self.shm = shm
        self.buf = shm.buf
        self.view = shm.view
        self.n = lay.nbuffers
        self.desc_off = lay.buf_desc_off
        self.bucket_off = lay.buf_desc_off + lay.nbuffers * DESC.size
        self.nbuckets = nbuckets(lay)
        self.pages_off = lay.pages_off
        self.mapping = locks.buffer_mapping
        self.header = locks.buffer_header
        self.content = locks.buffer_content
        self.relext = locks.relext
        self.locks = locks
        self.smgr = smgr
        self.xlog = xlog
        self.syncq = syncq
        self.ctl = shm.control
        self.pins: dict[int, int] = {}
        self.policy = freelist.ClockSweep(self)
        # per-process counters (pg_stat_database / pg_stat_bgwriter)
        self.blks_read = 0
        self.blks_hit = 0
        self.writes = 0
        self.interrupt_check: Any = None

    # ------------------------------------------------------------------ descriptors
    def desc(self, b: int) -> tuple[int, ...]:
        return DESC.unpack_from(self.buf, self.desc_off + b * DESC.size)

    def _set_desc(self, b: int, d: tuple[int, ...]) -> None:
        DESC.pack_into(self.buf, self.desc_off + b * DESC.size, *d)

    def page(self, b: int) -> memoryview:
        off = self.pages_off + b * BLCKSZ
        return self.view[off: off + BLCKSZ]

    def page_off(self, b: int) -> int:
        return self.pages_off + b * BLCKSZ

    def content_lock(self, b: int) -> Any:
        return self.content[b % N_CONTENT]

    def lock_two(self, b1: int, b2: int) -> Any:
        """Content locks of two buffers, taken in stripe order (no deadlock)."""
        return _TwoLocks(self.content[b1 % N_CONTENT], self.content[b2 % N_CONTENT], b1 % N_CONTENT,
                         b2 % N_CONTENT)

    def tag(self, b: int) -> tuple[int, int, int, int]:
        d = self.desc(b)
        return d[0], d[1], d[3], d[2]  # dboid, relnode, fork, block

    # ------------------------------------------------------------------ hash table
    def _bucket(self, tag: tuple[int, int, int, int]) -> int:
        return hash(tag) % self.nbuckets

    def _lookup(self, h: int, dboid: int, relnode: int, fork: int, block: int) -> int:
        b = _U32.unpack_from(self.buf, self.bucket_off + 4 * h)[0]
        while b != NONE:
            d = DESC.unpack_from(self.buf, self.desc_off + b * DESC.size)
            if d[2] == block and d[1] == relnode and d[0] == dboid and d[3] == fork:
                return b
            b = d[7]
        return -1

    def _unlink(self, h: int, b: int) -> None:
        cur = _U32.unpack_from(self.buf, self.bucket_off + 4 * h)[0]
        nxt = DESC.unpack_from(self.buf, self.desc_off + b * DESC.size)[7]
        if cur == b:
            _U32.pack_into(self.buf, self.bucket_off + 4 * h, nxt)
            return
        while cur != NONE:
            o = self.desc_off + cur * DESC.size
            d = DESC.unpack_from(self.buf, o)
            if d[7] == b:
                DESC.pack_into(self.buf, o, *d[:7], nxt)
                return
            cur = d[7]

    # ------------------------------------------------------------------ pins
    def pin_locked_header(self, b: int) -> None:
        """Pin ``b``; caller holds nothing but may hold a mapping lock."""
        if b in self.pins:
            self.pins[b] += 1
            return
        with self.header[b % N_HEADER]:
            o = self.desc_off + b * DESC.size
            d = DESC.unpack_from(self.buf, o)
            usage = d[4] + 1 if d[4] < MAX_USAGE else MAX_USAGE
            DESC.pack_into(self.buf, o, d[0], d[1], d[2], d[3], usage, d[5], d[6] + 1, d[7])
        self.pins[b] = 1

    def release(self, b: int) -> None:
        c = self.pins.get(b)
        if c is None:
            return
        if c > 1:
            self.pins[b] = c - 1
            return
        del self.pins[b]
        with self.header[b % N_HEADER]:
            o = self.desc_off + b * DESC.size
            d = DESC.unpack_from(self.buf, o)
            DESC.pack_into(self.buf, o, d[0], d[1], d[2], d[3], d[4], d[5], max(d[6] - 1, 0), d[7])

    def release_all(self) -> None:
        for b in list(self.pins):
            self.pins[b] = 1
            self.release(b)

    # ------------------------------------------------------------------ reading
    def read_buffer(self, dboid: int, relnode: int, fork: int, block: int, zero: bool = False) -> int:
        """Pin the buffer holding the page, reading it (or zero-filling it) if needed."""
        tag = (dboid, relnode, fork, block)
        h = hash(tag) % self.nbuckets
        plock = self.mapping[h % N_MAPPING]
        while True:
            with plock:
                b = self._lookup(h, dboid, relnode, fork, block)
                if b >= 0:
                    self.pin_locked_header(b)
            if b >= 0:
                if self._wait_valid(b):
                    self.blks_hit += 1
                    return b
                # the reader failed: take the I/O over ourselves
                if self._start_io(b):
                    self._do_read(b, dboid, relnode, fork, block, zero)
                    return b
                continue
            b = self._load(h, tag, zero)
            if b >= 0:
                return b

    def _wait_valid(self, b: int) -> bool:
        """Wait while another process reads the page in; False if its read failed."""
        spins = 0
        while True:
            flags = DESC.unpack_from(self.buf, self.desc_off + b * DESC.size)[5]
            if flags & VALID:
                return True
            if not flags & IO_IN_PROGRESS:
                return False
            spins += 1
            time.sleep(0.0001 if spins < 100 else 0.001)

    def _start_io(self, b: int) -> bool:
        with self.header[b % N_HEADER]:
            o = self.desc_off + b * DESC.size
            d = DESC.unpack_from(self.buf, o)
            if d[5] & (VALID | IO_IN_PROGRESS):
                return False
            DESC.pack_into(self.buf, o, d[0], d[1], d[2], d[3], d[4], (d[5] | IO_IN_PROGRESS) & ~IO_ERROR, d[6], d[7])
        return True

    def _do_read(self, b: int, dboid: int, relnode: int, fork: int, block: int, zero: bool) -> None:
        page = self.page(b)
        try:
            if zero:
                page[:] = bytes(BLCKSZ)
            else:
                self.smgr.read(dboid, relnode, fork, block, page)
                self.blks_read += 1
        except BaseException:
            with self.header[b % N_HEADER]:
                o = self.desc_off + b * DESC.size
                d = DESC.unpack_from(self.buf, o)
                DESC.pack_into(self.buf, o, d[0], d[1], d[2], d[3], d[4], (d[5] & ~IO_IN_PROGRESS) | IO_ERROR,
                               d[6], d[7])
            raise
        with self.header[b % N_HEADER]:
            o = self.desc_off + b * DESC.size
            d = DESC.unpack_from(self.buf, o)
            DESC.pack_into(self.buf, o, d[0], d[1], d[2], d[3], d[4], (d[5] & ~(IO_IN_PROGRESS | IO_ERROR)) | VALID,
                           d[6], d[7])

    def _load(self, h: int, tag: tuple[int, int, int, int], zero: bool) -> int:
        """Find a victim, write it out if dirty, retag it for ``tag`` and read the page.
        Returns -1 when the caller must retry from the lookup."""
        dboid, relnode, fork, block = tag
        v = self.policy.get_victim()  # pinned by us (shared refcount 1)
        d = self.desc(v)
        if d[5] & DIRTY:
            self.flush_buffer(v, counter="buffers_backend")
            d = self.desc(v)
            if d[5] & DIRTY:
                self.release(v)
                return -1
        oldh = -1
        if d[5] & TAG_VALID:
            oldh = hash((d[0], d[1], d[3], d[2])) % self.nbuckets
        parts = sorted({h % N_MAPPING} | ({oldh % N_MAPPING} if oldh >= 0 else set()))
        for p in parts:
            self.mapping[p].acquire()
        try:
            other = self._lookup(h, dboid, relnode, fork, block)
            if other >= 0:
                self.pin_locked_header(other)
            else:
                with self.header[v % N_HEADER]:
                    o = self.desc_off + v * DESC.size
                    d = DESC.unpack_from(self.buf, o)
                    if d[6] != 1 or d[5] & (DIRTY | IO_IN_PROGRESS):
                        other = -2
                    else:
                        if d[5] & TAG_VALID:
                            self._unlink(oldh, v)
                        head = _U32.unpack_from(self.buf, self.bucket_off + 4 * h)[0]
                        DESC.pack_into(self.buf, o, dboid, relnode, block, fork, 1, TAG_VALID | IO_IN_PROGRESS, 1,
                                       head)
                        _U32.pack_into(self.buf, self.bucket_off + 4 * h, v)
        finally:
            for p in reversed(parts):
                self.mapping[p].release()
        if other != -1:
            self.release(v)
            if other == -2:
                return -1
            if self._wait_valid(other):
                self.blks_hit += 1
                return other
            self.release(other)
            return -1
        self.ctl.add("buffers_alloc", 1)
        self._do_read(v, dboid, relnode, fork, block, zero)
        return v

    # ------------------------------------------------------------------ writing
    def mark_dirty(self, b: int) -> None:
        with self.header[b % N_HEADER]:
            o = self.desc_off + b * DESC.size
            d = DESC.unpack_from(self.buf, o)
            DESC.pack_into(self.buf, o, d[0], d[1], d[2], d[3], d[4], d[5] | DIRTY | JUST_DIRTIED, d[6], d[7])

    def mark_dirty_hint(self, b: int) -> None:
        """MarkBufferDirtyHint: a hint-bit change (no WAL); same as mark_dirty here."""
        self.mark_dirty(b)

    def flush_buffer(self, b: int, counter: str | None = None) -> bool:
        """Write a pinned buffer if dirty (WAL flushed first).  True if written."""
        with self.content[b % N_CONTENT]:
            with self.header[b % N_HEADER]:
                o = self.desc_off + b * DESC.size
                d = DESC.unpack_from(self.buf, o)
                if not d[5] & DIRTY or d[5] & IO_IN_PROGRESS or not d[5] & VALID:
                    return False
                DESC.pack_into(self.buf, o, d[0], d[1], d[2], d[3], d[4], (d[5] | IO_IN_PROGRESS) & ~JUST_DIRTIED,
                               d[6], d[7])
            off = self.pages_off + b * BLCKSZ
            data = self.buf[off: off + BLCKSZ]
        dboid, relnode, block, fork = d[0], d[1], d[2], d[3]
        try:
            lsn = _LSN.unpack_from(data, 0)[0]
            if self.xlog is not None and lsn:
                self.xlog.flush(lsn)
            self.smgr.write(dboid, relnode, fork, block, data)
            if self.syncq is not None and not self.syncq.register((dboid, relnode, fork)):
                self.smgr.fsync(dboid, relnode, fork)
                self.ctl.add("buffers_backend_fsync", 1)
        except BaseException:
            with self.header[b % N_HEADER]:
                d = DESC.unpack_from(self.buf, o)
                DESC.pack_into(self.buf, o, d[0], d[1], d[2], d[3], d[4], d[5] & ~IO_IN_PROGRESS, d[6], d[7])
            raise
        with self.header[b % N_HEADER]:
            d = DESC.unpack_from(self.buf, o)
            flags = d[5] & ~IO_IN_PROGRESS
            if not flags & JUST_DIRTIED:
                flags &= ~(DIRTY | CHECKPOINT_NEEDED)
            DESC.pack_into(self.buf, o, d[0], d[1], d[2], d[3], d[4], flags, d[6], d[7])
        self.writes += 1
        if counter:
            self.ctl.add(counter, 1)
        return True

    # ------------------------------------------------------------------ relations
    def extend(self, dboid: int, relnode: int, fork: int = 0) -> tuple[int, int]:
        """Add a zeroed page at the end of the relation: (block number, pinned buffer)."""
        lock = self.relext[hash((dboid, relnode)) % len(self.relext)]
        with lock:
            block = self.smgr.nblocks(dboid, relnode, fork)
            self.smgr.extend(dboid, relnode, fork, block)
            b = self.read_buffer(dboid, relnode, fork, block, zero=True)
        return block, b

    def nblocks(self, dboid: int, relnode: int, fork: int = 0) -> int:
        return self.smgr.nblocks(dboid, relnode, fork)

    def drop_relation_buffers(self, dboid: int, relnode: int, from_block: int = 0) -> None:
        """Forget every buffer of the relation (DROP/TRUNCATE, after commit); dirty contents
        are discarded."""
        for b in range(self.n):
            d = self.desc(b)
            if d[1] != relnode or d[0] != dboid or not d[5] & TAG_VALID or d[2] < from_block:
                continue
            h = hash((d[0], d[1], d[3], d[2])) % self.nbuckets
            with self.mapping[h % N_MAPPING]:
                with self.header[b % N_HEADER]:
                    o = self.desc_off + b * DESC.size
                    d = DESC.unpack_from(self.buf, o)
                    if d[1] != relnode or d[0] != dboid or not d[5] & TAG_VALID or d[2] < from_block:
                        continue
                    self._unlink(h, b)
                    DESC.pack_into(self.buf, o, 0, 0, 0, 0, 0, 0, d[6], NONE)

    def drop_database_buffers(self, dboid: int) -> None:
        seen = set()
        for b in range(self.n):
            d = self.desc(b)
            if d[0] == dboid and d[5] & TAG_VALID:
                seen.add(d[1])
        for relnode in seen:
            self.drop_relation_buffers(dboid, relnode)

    def sync_all(self, *, dboid: int | None = None, counter: str | None = None,
                 pace: Any = None) -> int:
        """Write every dirty buffer (checkpoint: BufferSync).  Returns pages written."""
        todo = []
        for b in range(self.n):
            d = self.desc(b)
            if d[5] & DIRTY and (dboid is None or d[0] == dboid):
                with self.header[b % N_HEADER]:
                    o = self.desc_off + b * DESC.size
                    d = DESC.unpack_from(self.buf, o)
                    if d[5] & DIRTY:
                        DESC.pack_into(self.buf, o, d[0], d[1], d[2], d[3], d[4], d[5] | CHECKPOINT_NEEDED, d[6],
                                       d[7])
                        todo.append(((d[0], d[1], d[3], d[2]), b))
        todo.sort()
        written = 0
        for i, (tag, b) in enumerate(todo):
            with self.header[b % N_HEADER]:
                o = self.desc_off + b * DESC.size
                d = DESC.unpack_from(self.buf, o)
                if not d[5] & CHECKPOINT_NEEDED or (d[0], d[1], d[3], d[2]) != tag:
                    continue
                DESC.pack_into(self.buf, o, d[0], d[1], d[2], d[3], d[4], d[5], d[6] + 1, d[7])
            self.pins[b] = self.pins.get(b, 0) + 1
            if self.pins[b] > 1:  # we already held a pin: keep one shared count only
                with self.header[b % N_HEADER]:
                    d = DESC.unpack_from(self.buf, o)
                    DESC.pack_into(self.buf, o, d[0], d[1], d[2], d[3], d[4], d[5], d[6] - 1, d[7])
            try:
                while True:
                    if self.flush_buffer(b, counter=counter):
                        written += 1
                        break
                    d = self.desc(b)
                    if not d[5] & IO_IN_PROGRESS or not d[5] & DIRTY:
                        break
                    time.sleep(0.0005)
            finally:
                self.release(b)
            if pace is not None:
                pace(i + 1, len(todo))
        return written


class _TwoLocks:
    __slots__ = ("a", "b")

    def __init__(self, la: Any, lb: Any, ia: int, ib: int) -> None:
        if ia == ib:
            self.a, self.b = la, None
        elif ia < ib:
            self.a, self.b = la, lb
        else:
            self.a, self.b = lb, la

    def __enter__(self) -> None:
        self.a.acquire()
        if self.b is not None:
            self.b.acquire()

    def __exit__(self, *exc: Any) -> None:
        if self.b is not None:
            self.b.release()
        self.a.release()
