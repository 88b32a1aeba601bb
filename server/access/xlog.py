"""The write-ahead log: record insertion into shared WAL buffers, group commit, segment
files, and the reader recovery uses (PostgreSQL's xlog.c / xloginsert.c / xlogreader.c).

LSNs are byte positions in one endless stream, shown ``%X/%X``; the stream is cut into
segment files of ``wal_segment_size`` (16 MB) under ``pg_wal/`` named like PostgreSQL's
(``000000010000000000000001``).  WAL starts at the first segment's start.

A record is a 32-byte header — total length u32, CRC-32 u32 (zlib, of everything
after the CRC field), its own LSN u64, the previous record's LSN u64, xid u32,
resource manager u8, info u8, 2 pad bytes — followed by its body:

    nblocks u8, then per block reference: dboid u32, relnode u32, fork u8, block u32,
    flags u8 (BKP_IMAGE: an 8 KB full-page image follows; BKP_WILL_INIT: redo starts
    from a zero page), [image], data length u32, data; then the main data.

The reader stops at the first record whose length, LSN, previous-LSN or CRC does not
match: that is the end of WAL.

Shared state (control block): ``insert_pos`` (end of the last inserted record) and
``redo_ptr`` under WALInsertLock; ``write_pos``/``flush_pos`` under WALWriteLock.
Insertion copies the record into the ring of WAL buffers under WALInsertLock; a full
ring first writes older WAL out (``wal_buffers_full``).  :meth:`XLog.flush` is group
commit: the first waiter on WALWriteLock writes and fsyncs *everything inserted so
far*, so the others find their record already flushed.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Iterator
from typing import Any

from pgbundle.server.access import xlogarchive
from pgbundle.server.storage.smgr import BLCKSZ

HDR = struct.Struct("<IIQQIBBxx")
_CRC_FROM = 8
_BLK = struct.Struct("<IIBIB")
_U32 = struct.Struct("<I")
_LSN = struct.Struct("<Q")

BKP_IMAGE = 1
BKP_WILL_INIT = 2

# resource managers
RM_XLOG = 0
RM_XACT = 1
RM_SMGR = 2
RM_CLOG = 3
RM_DBASE = 4
RM_HEAP = 10
RM_BTREE = 11
RM_SEQ = 12
RM_FPI = 13  # page images only (vacuum, index builds, page initialisation)

RM_NAMES = {RM_XLOG: "XLOG", RM_XACT: "Transaction", RM_SMGR: "Storage", RM_CLOG: "CLOG", RM_DBASE: "Database",
            RM_HEAP: "Heap", RM_BTREE: "Btree", RM_SEQ: "Sequence", RM_FPI: "XLOG FPI"}


def fmt_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def segment_name(segno: int, segsize: int, tli: int = 1) -> str:
    per = 0x100000000 // segsize
    return f"{tli:08X}{segno // per:08X}{segno % per:08X}"


def segment_number(name: str, segsize: int) -> int:
    """The inverse of :func:`segment_name`; ValueError when ``name`` is not a WAL file name."""
    return int(name[8:16], 16) * (0x100000000 // segsize) + int(name[16:24], 16)


class BlockRef:
    """A page a record touches: its tag, the (already modified) page for a possible
    full-page image, the redo data, and whether redo starts from a zero page."""

    __slots__ = ("dboid", "relnode", "fork", "block", "page", "data", "will_init", "force_image")

    def __init__(self, dboid: int, relnode: int, fork: int, block: int, page: Any, data: bytes = b"",
                 will_init: bool = False, force_image: bool = False) -> None:
        self.force_image = force_image
        self.dboid = dboid
        self.relnode = relnode
        self.fork = fork
        self.block = block
        self.page = page
        self.data = data
        self.will_init = will_init


class XLog:
    """One process's access to the WAL."""

    def __init__(self, shm: Any, locks: Any, datadir: str, settings: Any) -> None:
        self.buf = shm.buf
        self.ctl = shm.control
        self.ring_off = shm.layout.wal_off
        self.ring = shm.layout.wal_buffer_bytes
        self.insert_lock = locks.WALInsertLock
        self.write_lock = locks.WALWriteLock
        self.dir = os.path.join(datadir, "pg_wal")
        self.segsize = int(settings.value("wal_segment_size"))
        self.settings = settings
        self._ins = self.ctl.cell("insert_pos")
        self._wr = self.ctl.cell("write_pos")
        self._fl = self.ctl.cell("flush_pos")
        self._redo = self.ctl.cell("redo_ptr")
        self._prev = self.ctl.cell("prev_record")
        self._fds: dict[int, int] = {}
        self.last_insert_start = 0
        self.on_segment_switch: Any = None  # callback(segments since checkpoint)

    # ------------------------------------------------------------------ positions
    @staticmethod
    def _get(cell: memoryview) -> int:
        return cell[0]

    @staticmethod
    def _set(cell: memoryview, v: int) -> None:
        cell[0] = v

    @property
    def insert_pos(self) -> int:
        return self._get(self._ins)

    @property
    def flush_pos(self) -> int:
        return self._get(self._fl)

    @property
    def redo_ptr(self) -> int:
        return self._get(self._redo)

    def needs_fpi(self, page_lsn: int) -> bool:
        return page_lsn <= self._get(self._redo) and bool(self.settings.value("full_page_writes"))

    def init_positions(self, end_lsn: int, prev_lsn: int) -> None:
        """After recovery: the next record goes at ``end_lsn``; everything before is on disk."""
        self._set(self._ins, end_lsn)
        self._set(self._wr, end_lsn)
        self._set(self._fl, end_lsn)
        self.ctl.set("last_ckpt_lsn", self.ctl.get("last_ckpt_lsn"))
        self._store_prev(prev_lsn)

    # the start LSN of the last inserted record (xl_prev of the next one), WALInsertLock
    def _store_prev(self, lsn: int) -> None:
        self._set(self._prev, lsn)

    def _load_prev(self) -> int:
        return self._get(self._prev)

    # ------------------------------------------------------------------ insertion
    def insert(self, rmid: int, info: int, xid: int, blocks: list[BlockRef] | tuple[BlockRef, ...] = (),
               main: bytes = b"") -> int:
        """Append a record; returns its end LSN (what a page touched by it gets as LSN)."""
        fpw = bool(self.settings.value("full_page_writes"))
        while True:
            with self.insert_lock:
                redo = self._get(self._redo)
                parts = [bytes((len(blocks),))]
                nfpi = 0
                for br in blocks:
                    flags = BKP_WILL_INIT if br.will_init else 0
                    image = None
                    if br.page is not None and (br.force_image or fpw and not br.will_init):
                        if br.force_image or _LSN.unpack_from(br.page, 0)[0] <= redo:
                            flags |= BKP_IMAGE
                            image = bytes(br.page)
                            nfpi += 1
                    parts.append(_BLK.pack(br.dboid, br.relnode, br.fork, br.block, flags))
                    if image is not None:
                        parts.append(image)
                    parts.append(_U32.pack(len(br.data)))
                    parts.append(br.data)
                parts.append(main)
                body = b"".join(parts)
                start = self._get(self._ins)
                tot = HDR.size + len(body)
                end = start + tot
                if end - self._get(self._wr) > self.ring:
                    need = True
                else:
                    need = False
                    prev = self._load_prev()
                    hdr = bytearray(HDR.pack(tot, 0, start, prev, xid, rmid, info))
                    crc = zlib.crc32(body, zlib.crc32(memoryview(hdr)[_CRC_FROM:]))
                    _U32.pack_into(hdr, 4, crc)
                    self._copy_in(start, bytes(hdr) + body)
                    self.last_insert_start = start
                    self._set(self._ins, end)
                    self._store_prev(start)
                    self.ctl.add("wal_records", 1)
                    self.ctl.add("wal_bytes", tot)
                    if nfpi:
                        self.ctl.add("wal_fpi", nfpi)
            if not need:
                return end
            self.ctl.add("wal_buffers_full", 1)
            self.write(end - self.ring)

    def _copy_in(self, pos: int, data: bytes) -> None:
        o = pos % self.ring
        n = len(data)
        if n > self.ring:
            raise RuntimeError("WAL record larger than wal_buffers")
        first = min(n, self.ring - o)
        base = self.ring_off
        self.buf[base + o: base + o + first] = data[:first]
        if first < n:
            self.buf[base: base + n - first] = data[first:]

    def _copy_out(self, start: int, end: int) -> bytes:
        o = start % self.ring
        n = end - start
        first = min(n, self.ring - o)
        base = self.ring_off
        out = self.buf[base + o: base + o + first]
        if first < n:
            out += self.buf[base: base + n - first]
        return out

    # ------------------------------------------------------------------ writing
    def flush(self, lsn: int) -> None:
        """XLogFlush: return once the WAL up to ``lsn`` is on disk (group commit).

        Like PostgreSQL's LWLockAcquireOrWait on WALWriteLock: whoever gets the lock
        writes and fsyncs everything inserted so far; the others do not queue up behind
        it one by one (a semaphore would hand the lock from waiter to waiter, each only to
        find its record already flushed) but poll the flush position and take the lock
        only if their record is still not on disk when it is free."""
        fl = self._fl
        if fl[0] >= lsn:
            return
        lock = self.write_lock
        delay = 0.00002
        while True:
            if lock.acquire(False):
                try:
                    if fl[0] < lsn:
                        self._write_locked()
                finally:
                    lock.release()
                return
            time.sleep(delay)
            if fl[0] >= lsn:
                return
            delay = min(delay * 1.5, 0.0001)

    def write(self, lsn: int | None = None) -> None:
        """Write and fsync every inserted record (at least up to ``lsn``)."""
        with self.write_lock:
            if lsn is not None and self._get(self._fl) >= lsn:
                return
            self._write_locked()

    def background_flush(self) -> int:
        """WAL writer: flush whatever is inserted; returns bytes written."""
        if self._get(self._fl) >= self._get(self._ins):
            return 0
        with self.write_lock:
            before = self._get(self._fl)
            self._write_locked()
            return self._get(self._fl) - before

    def _write_locked(self) -> None:
        upto = self._get(self._ins)
        start = self._get(self._wr)
        if upto <= start:
            return
        data = self._copy_out(start, upto)
        pos = start
        touched = []
        view = memoryview(data)
        while pos < upto:
            segno = pos // self.segsize
            seg_end = (segno + 1) * self.segsize
            n = min(upto, seg_end) - pos
            fd = self._seg_fd(segno, create=True)
            os.pwrite(fd, view[pos - start: pos - start + n], pos % self.segsize)
            if fd not in touched:
                touched.append(fd)
            pos += n
        if self.settings.value("fsync"):
            for fd in touched:
                os.fdatasync(fd)
            self.ctl.add("wal_sync", 1)
        self.ctl.add("wal_write", 1)
        old_seg = start // self.segsize
        self._set(self._wr, upto)
        self._set(self._fl, upto)
        new_seg = upto // self.segsize
        if new_seg != old_seg:
            n = self.ctl.add("segs_since_ckpt", new_seg - old_seg)
            if self.settings.value("archive_mode") != "off":
                for seg in range(old_seg, new_seg):
                    xlogarchive.mark_ready(os.path.dirname(self.dir), segment_name(seg, self.segsize))
                xlogarchive.wake_archiver(self.ctl)
            if self.on_segment_switch is not None:
                self.on_segment_switch(n)

    def _seg_fd(self, segno: int, create: bool = False) -> int:
        fd = self._fds.get(segno)
        if fd is not None:
            return fd
        path = os.path.join(self.dir, segment_name(segno, self.segsize))
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            if not create:
                raise
            tmp = path + ".tmp"
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            os.posix_fallocate(fd, 0, self.segsize) if hasattr(os, "posix_fallocate") else os.ftruncate(
                fd, self.segsize)
            os.fsync(fd)
            os.rename(tmp, path)
            dfd = os.open(self.dir, os.O_RDONLY)
            os.fsync(dfd)
            os.close(dfd)
        if len(self._fds) > 8:
            for k in sorted(self._fds)[:-4]:
                os.close(self._fds.pop(k))
        self._fds[segno] = fd
        return fd

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    # ------------------------------------------------------------------ segments
    def remove_old_segments(self, redo: int) -> int:
        """Delete segments wholly before the redo point's segment (checkpoint step 7)."""
        keep_from = redo // self.segsize
        archiving = self.settings.value("archive_mode") != "off"
        n = 0
        datadir = os.path.dirname(self.dir)
        for name in os.listdir(self.dir):
            if len(name) != 24:
                continue
            try:
                segno = segment_number(name, self.segsize)
            except ValueError:
                continue
            if segno < keep_from:
                if archiving and not xlogarchive.is_archived(datadir, name):
                    continue
                fd = self._fds.pop(segno, None)
                if fd is not None:
                    os.close(fd)
                os.unlink(os.path.join(self.dir, name))
                xlogarchive.cleanup(datadir, name)
                n += 1
        return n

    def zero_tail(self, end_lsn: int) -> None:
        """End of recovery: erase whatever follows the last valid record in its segment and
        remove later segments, so no stale record can ever be read as a continuation."""
        segno = end_lsn // self.segsize
        fd = self._seg_fd(segno, create=True)
        off = end_lsn % self.segsize
        remaining = self.segsize - off
        zeros = bytes(min(remaining, 1 << 20))
        while remaining > 0:
            n = min(remaining, len(zeros))
            os.pwrite(fd, zeros[:n], self.segsize - remaining)
            remaining -= n
        os.fsync(fd)
        for name in os.listdir(self.dir):
            if len(name) != 24:
                continue
            try:
                s = int(name[8:16], 16) * (0x100000000 // self.segsize) + int(name[16:], 16)
            except ValueError:
                continue
            if s > segno:
                fd2 = self._fds.pop(s, None)
                if fd2 is not None:
                    os.close(fd2)
                os.unlink(os.path.join(self.dir, name))


# ---------------------------------------------------------------------- reading


class Record:
    __slots__ = ("lsn", "end", "prev", "xid", "rmid", "info", "blocks", "main")

    def __init__(self, lsn: int, end: int, prev: int, xid: int, rmid: int, info: int,
                 blocks: list[tuple[int, int, int, int, int, bytes | None, bytes]], main: bytes) -> None:
        self.lsn = lsn
        self.end = end
        self.prev = prev
        self.xid = xid
        self.rmid = rmid
        self.info = info
        self.blocks = blocks  # (dboid, relnode, fork, block, flags, image, data)
        self.main = main


def decode_body(body: bytes) -> tuple[list[tuple[int, int, int, int, int, bytes | None, bytes]], bytes]:
    n = body[0]
    pos = 1
    blocks = []
    for _ in range(n):
        dboid, relnode, fork, block, flags = _BLK.unpack_from(body, pos)
        pos += _BLK.size
        image = None
        if flags & BKP_IMAGE:
            image = body[pos: pos + BLCKSZ]
            pos += BLCKSZ
        dlen = _U32.unpack_from(body, pos)[0]
        pos += 4
        data = body[pos: pos + dlen]
        pos += dlen
        blocks.append((dboid, relnode, fork, block, flags, image, data))
    return blocks, body[pos:]


class WalReader:
    """Sequential reader over the segment files (recovery, pg_waldump-like tools)."""

    def __init__(self, datadir: str, segsize: int) -> None:
        self.dir = os.path.join(datadir, "pg_wal")
        self.segsize = segsize
        self._cache: dict[int, bytes | None] = {}

    def _segment(self, segno: int) -> bytes | None:
        if segno not in self._cache:
            if len(self._cache) > 2:
                self._cache.pop(min(self._cache))
            path = os.path.join(self.dir, segment_name(segno, self.segsize))
            try:
                with open(path, "rb") as f:
                    self._cache[segno] = f.read()
            except FileNotFoundError:
                self._cache[segno] = None
        return self._cache[segno]

    def _read(self, pos: int, n: int) -> bytes | None:
        out = []
        while n > 0:
            seg = self._segment(pos // self.segsize)
            if seg is None:
                return None
            o = pos % self.segsize
            chunk = seg[o: o + n]
            if not chunk:
                return None
            out.append(chunk)
            n -= len(chunk)
            pos += len(chunk)
        return b"".join(out)

    def read_record(self, lsn: int, expect_prev: int | None = None) -> Record | None:
        hdr = self._read(lsn, HDR.size)
        if hdr is None or len(hdr) < HDR.size:
            return None
        tot, crc, rlsn, prev, xid, rmid, info = HDR.unpack(hdr)
        if tot < HDR.size + 1 or rlsn != lsn or tot > 64 * 1024 * 1024:
            return None
        if expect_prev is not None and prev != expect_prev:
            return None
        body = self._read(lsn + HDR.size, tot - HDR.size)
        if body is None or len(body) != tot - HDR.size:
            return None
        if zlib.crc32(body, zlib.crc32(hdr[_CRC_FROM:])) != crc:
            return None
        try:
            blocks, main = decode_body(body)
        except (struct.error, IndexError):
            return None
        return Record(lsn, lsn + tot, prev, xid, rmid, info, blocks, main)

    def records(self, start: int, prev: int | None = None) -> Iterator[Record]:
        lsn = start
        while True:
            rec = self.read_record(lsn, prev)
            if rec is None:
                return
            yield rec
            prev = rec.lsn
            lsn = rec.end
