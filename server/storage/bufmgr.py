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

A descriptor is a *tag* (dboid u32, relnode u32, block u32, fork u8; 16 bytes) and a
*state* (usage_count u8, flags u16, refcount u16; 8 bytes), kept in two arrays, plus a
next-in-bucket u32 per buffer and the bucket heads.  The state is guarded by
``locks.buffer_header[b % N]``; the tag and the chains by the mapping partition lock
``locks.buffer_mapping[bucket % N]`` (a tag changes only under its old and new partition
locks and the header lock).  They must stay apart: ``struct.pack_into`` zero-fills its
target before writing, so a lookup reading a tag that a pin was rewriting could see
zeros, miss the buffer and load a second copy of the page.
"""

from __future__ import annotations

import struct
import time
from typing import Any

from pgbundle.server.storage import freelist
from pgbundle.server.storage.buf_internals import (
    CHECKPOINT_NEEDED,
    DIRTY,
    IO_ERROR,
    IO_IN_PROGRESS,
    JUST_DIRTIED,
    MAX_USAGE,
    NONE,
    STATE,
    TAG,
    TAG_VALID,
    VALID,
)
from pgbundle.server.storage.lwlock import N_CONTENT, N_HEADER, N_MAPPING
from pgbundle.server.storage.smgr import BLCKSZ

_U32 = struct.Struct("<I")
_LSN = struct.Struct("<Q")


def nbuckets(layout: Any) -> int:
    return max(64, layout.nbuffers * 2)


def descriptors_size(layout: Any) -> int:
    return layout.nbuffers * (TAG.size + STATE.size + 4) + nbuckets(layout) * 4


def init_descriptors(shm: Any) -> None:
    """Postmaster, on a fresh segment: empty buckets and chains."""
    lay = shm.layout
    off = lay.buf_desc_off + lay.nbuffers * (TAG.size + STATE.size)
    n = lay.nbuffers * 4 + nbuckets(lay) * 4
    shm.buf[off: off + n] = b"\xff" * n


class BufMgr:
    """One process's view of the buffer pool."""

    def __init__(self, shm: Any, locks: Any, smgr: Any, xlog: Any = None, syncq: Any = None) -> None:
        lay = shm.layout
        self.shm = shm
        self.buf = shm.buf
        self.view = shm.view
        self.n = lay.nbuffers
        self.tag_off = lay.buf_desc_off
        self.state_off = self.tag_off + lay.nbuffers * TAG.size
        self.next_off = self.state_off + lay.nbuffers * STATE.size
        self.bucket_off = self.next_off + lay.nbuffers * 4
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

    # ------------------------------------------------------------------ descriptors
    def tag_of(self, b: int) -> tuple[int, int, int, int]:
        """(dboid, relnode, block, fork)."""
        return TAG.unpack_from(self.buf, self.tag_off + b * TAG.size)

    def state(self, b: int) -> tuple[int, int, int]:
        """(usage, flags, refcount); without the header lock only a hint."""
        return STATE.unpack_from(self.buf, self.state_off + b * STATE.size)

    def set_state(self, b: int, usage: int, flags: int, refcount: int) -> None:
        """Caller holds the header lock."""
        STATE.pack_into(self.buf, self.state_off + b * STATE.size, usage, flags, refcount)

    def desc(self, b: int) -> tuple[int, ...]:
        """(dboid, relnode, block, fork, usage, flags, refcount) — a hint without locks."""
        return self.tag_of(b) + self.state(b)

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
        d = self.tag_of(b)
        return d[0], d[1], d[3], d[2]  # dboid, relnode, fork, block

    # ------------------------------------------------------------------ hash table (mapping lock held)
    def _lookup(self, h: int, dboid: int, relnode: int, fork: int, block: int) -> int:
        b = _U32.unpack_from(self.buf, self.bucket_off + 4 * h)[0]
        while b != NONE:
            d = TAG.unpack_from(self.buf, self.tag_off + b * TAG.size)
            if d[2] == block and d[1] == relnode and d[0] == dboid and d[3] == fork:
                return b
            b = _U32.unpack_from(self.buf, self.next_off + 4 * b)[0]
        return -1

    def _unlink(self, h: int, b: int) -> None:
        cur = _U32.unpack_from(self.buf, self.bucket_off + 4 * h)[0]
        nxt = _U32.unpack_from(self.buf, self.next_off + 4 * b)[0]
        _U32.pack_into(self.buf, self.next_off + 4 * b, NONE)
        if cur == b:
            _U32.pack_into(self.buf, self.bucket_off + 4 * h, nxt)
            return
        while cur != NONE:
            cn = _U32.unpack_from(self.buf, self.next_off + 4 * cur)[0]
            if cn == b:
                _U32.pack_into(self.buf, self.next_off + 4 * cur, nxt)
                return
            cur = cn

    def _link(self, h: int, b: int) -> None:
        head = _U32.unpack_from(self.buf, self.bucket_off + 4 * h)[0]
        _U32.pack_into(self.buf, self.next_off + 4 * b, head)
        _U32.pack_into(self.buf, self.bucket_off + 4 * h, b)

    def _hash_of(self, t: tuple[int, int, int, int]) -> int:
        return hash((t[0], t[1], t[3], t[2])) % self.nbuckets

    # ------------------------------------------------------------------ pins
    def pin_locked_header(self, b: int) -> int:
        """Pin ``b`` (the caller holds its mapping lock, or already a pin).  Returns the
        flags read under the header lock while pinning (0 when we already had a pin)."""
        pins = self.pins
        c = pins.get(b)
        if c is not None:
            pins[b] = c + 1
            return 0
        off = self.state_off + b * STATE.size
        with self.header[b % N_HEADER]:
            usage, flags, ref = STATE.unpack_from(self.buf, off)
            STATE.pack_into(self.buf, off, usage + 1 if usage < MAX_USAGE else MAX_USAGE, flags, ref + 1)
        pins[b] = 1
        return flags

    def release(self, b: int) -> None:
        pins = self.pins
        c = pins.get(b)
        if c is None:
            return
        if c > 1:
            pins[b] = c - 1
            return
        del pins[b]
        off = self.state_off + b * STATE.size
        with self.header[b % N_HEADER]:
            usage, flags, ref = STATE.unpack_from(self.buf, off)
            STATE.pack_into(self.buf, off, usage, flags, ref - 1 if ref > 0 else 0)

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
            flags = 0
            with plock:
                b = self._lookup(h, dboid, relnode, fork, block)
                if b >= 0:
                    flags = self.pin_locked_header(b)
            if b >= 0:
                if flags & VALID or self._wait_valid(b):  # valid when pinned: no second look
                    self.blks_hit += 1
                    return b
                # the reader failed: take the I/O over ourselves
                if self._start_io(b):
                    self._do_read(b, dboid, relnode, fork, block, zero)
                    return b
                self.release(b)
                continue
            b = self._load(h, tag, zero)
            if b >= 0:
                return b

    def cached_lsn(self, dboid: int, relnode: int, fork: int, block: int) -> int:
        """The LSN of a page that is valid in the pool, read without pinning it (under its
        mapping partition lock, which keeps the buffer's tag); -1 if it is not in the pool.
        A change in progress under the page's content lock may not show yet (the LSN is set
        last), so equal to an LSN seen earlier means: no change completed since then."""
        h = hash((dboid, relnode, fork, block)) % self.nbuckets
        with self.mapping[h % N_MAPPING]:
            b = self._lookup(h, dboid, relnode, fork, block)
            if b < 0 or not STATE.unpack_from(self.buf, self.state_off + b * STATE.size)[1] & VALID:
                return -1
            return _LSN.unpack_from(self.buf, self.pages_off + b * BLCKSZ)[0]

    def _wait_valid(self, b: int) -> bool:
        """Wait while another process reads the page in; False if its read failed."""
        spins = 0
        while True:
            with self.header[b % N_HEADER]:
                flags = self.state(b)[1]
            if flags & VALID:
                return True
            if not flags & IO_IN_PROGRESS:
                return False
            spins += 1
            time.sleep(0.0001 if spins < 100 else 0.001)

    def _start_io(self, b: int) -> bool:
        with self.header[b % N_HEADER]:
            usage, flags, ref = self.state(b)
            if flags & (VALID | IO_IN_PROGRESS):
                return False
            self.set_state(b, usage, (flags | IO_IN_PROGRESS) & ~IO_ERROR, ref)
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
                usage, flags, ref = self.state(b)
                self.set_state(b, usage, (flags & ~IO_IN_PROGRESS) | IO_ERROR, ref)
            raise
        with self.header[b % N_HEADER]:
            usage, flags, ref = self.state(b)
            self.set_state(b, usage, (flags & ~(IO_IN_PROGRESS | IO_ERROR)) | VALID, ref)

    def _load(self, h: int, tag: tuple[int, int, int, int], zero: bool) -> int:
        """Find a victim, write it out if dirty, retag it for ``tag`` and read the page.
        Returns -1 when the caller must retry from the lookup."""
        dboid, relnode, fork, block = tag
        v = self.policy.get_victim()  # pinned by us (shared refcount 1)
        if self.state(v)[1] & DIRTY:
            self.flush_buffer(v, counter="buffers_backend")
        with self.header[v % N_HEADER]:
            usage, flags, ref = self.state(v)
            old = self.tag_of(v)
        if flags & DIRTY or ref != 1:
            self.release(v)
            return -1
        oldh = self._hash_of(old) if flags & TAG_VALID else -1
        parts = sorted({h % N_MAPPING} | ({oldh % N_MAPPING} if oldh >= 0 else set()))
        for p in parts:
            self.mapping[p].acquire()
        try:
            other = self._lookup(h, dboid, relnode, fork, block)
            if other >= 0:
                self.pin_locked_header(other)
            else:
                with self.header[v % N_HEADER]:
                    usage, flags, ref = self.state(v)
                    cur = self.tag_of(v)
                    if ref != 1 or flags & (DIRTY | IO_IN_PROGRESS):
                        other = -2
                    elif flags & TAG_VALID and (cur != old or oldh < 0):
                        other = -2  # retagged meanwhile: start over
                    else:
                        if flags & TAG_VALID:
                            self._unlink(oldh, v)
                        TAG.pack_into(self.buf, self.tag_off + v * TAG.size, dboid, relnode, block, fork)
                        self.set_state(v, 1, TAG_VALID | IO_IN_PROGRESS, 1)
                        self._link(h, v)
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
            usage, flags, ref = self.state(b)
            self.set_state(b, usage, flags | DIRTY | JUST_DIRTIED, ref)

    def mark_dirty_hint(self, b: int) -> None:
        """MarkBufferDirtyHint: a hint-bit change (no WAL); same as mark_dirty here."""
        self.mark_dirty(b)

    def flush_buffer(self, b: int, counter: str | None = None) -> bool:
        """Write a pinned buffer if dirty (WAL flushed first).  True if written."""
        with self.content[b % N_CONTENT]:
            with self.header[b % N_HEADER]:
                usage, flags, ref = self.state(b)
                if not flags & DIRTY or flags & IO_IN_PROGRESS or not flags & VALID:
                    return False
                self.set_state(b, usage, (flags | IO_IN_PROGRESS) & ~JUST_DIRTIED, ref)
                dboid, relnode, block, fork = self.tag_of(b)
            off = self.pages_off + b * BLCKSZ
            data = self.buf[off: off + BLCKSZ]
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
                usage, flags, ref = self.state(b)
                self.set_state(b, usage, flags & ~IO_IN_PROGRESS, ref)
            raise
        with self.header[b % N_HEADER]:
            usage, flags, ref = self.state(b)
            flags &= ~IO_IN_PROGRESS
            if not flags & JUST_DIRTIED:
                flags &= ~(DIRTY | CHECKPOINT_NEEDED)
            self.set_state(b, usage, flags, ref)
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
            t = self.tag_of(b)
            if t[1] != relnode or t[0] != dboid or t[2] < from_block:
                continue
            h = self._hash_of(t)
            with self.mapping[h % N_MAPPING]:
                with self.header[b % N_HEADER]:
                    usage, flags, ref = self.state(b)
                    if self.tag_of(b) != t or not flags & TAG_VALID:
                        continue
                    self._unlink(h, b)
                    TAG.pack_into(self.buf, self.tag_off + b * TAG.size, 0, 0, 0, 0)
                    self.set_state(b, 0, 0, ref)

    def drop_database_buffers(self, dboid: int) -> None:
        seen = set()
        for b in range(self.n):
            t = self.tag_of(b)
            if t[0] == dboid:
                seen.add(t[1])
        for relnode in seen:
            self.drop_relation_buffers(dboid, relnode)

    def sync_all(self, *, dboid: int | None = None, counter: str | None = None, pace: Any = None) -> int:
        """Write every dirty buffer (checkpoint: BufferSync).  Returns pages written."""
        todo = []
        for b in range(self.n):
            if not self.state(b)[1] & DIRTY:
                continue
            with self.header[b % N_HEADER]:
                usage, flags, ref = self.state(b)
                t = self.tag_of(b)
                if flags & DIRTY and (dboid is None or t[0] == dboid):
                    self.set_state(b, usage, flags | CHECKPOINT_NEEDED, ref)
                    todo.append(((t[0], t[1], t[3], t[2]), b))
        todo.sort()
        written = 0
        for i, (tag, b) in enumerate(todo):
            with self.header[b % N_HEADER]:
                usage, flags, ref = self.state(b)
                t = self.tag_of(b)
                if not flags & CHECKPOINT_NEEDED or (t[0], t[1], t[3], t[2]) != tag:
                    continue
                if b not in self.pins:
                    self.set_state(b, usage, flags, ref + 1)
            self.pins[b] = self.pins.get(b, 0) + 1
            try:
                while True:
                    if self.flush_buffer(b, counter=counter):
                        written += 1
                        break
                    st = self.state(b)[1]
                    if not st & IO_IN_PROGRESS or not st & DIRTY:
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
