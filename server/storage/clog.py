"""The commit log (pg_xact): two status bits per transaction id, cached in a few shared
SLRU pages (PostgreSQL's clog.c + slru.c).

Status: 0 in progress (or crashed), 1 committed, 2 aborted, 3 sub-committed.  One 8 KB
page covers 32768 xids; files ``pg_xact/XXXX`` hold 32 pages each.  Commit and abort
status are WAL-logged in the transaction's commit/abort record, so recovery rebuilds
any status that had not reached disk; a page is written only after the whole WAL
inserted so far is flushed (so an asynchronous commit never reaches pg_xact before its
commit record reaches pg_wal), and at each checkpoint (:meth:`Clog.checkpoint`).

Guarded by CLogControlLock: slot headers (page number i32, dirty u8, lru u32) and pages.
"""

from __future__ import annotations

import os
import struct
from typing import Any

from pgbundle.server.storage.smgr import BLCKSZ

IN_PROGRESS = 0
COMMITTED = 1
ABORTED = 2
SUB_COMMITTED = 3

XACTS_PER_PAGE = BLCKSZ * 4
PAGES_PER_SEGMENT = 32
_SLOT = struct.Struct("<iBxxxI")


def region_size(layout: Any) -> int:
    return layout.clog_pages * (_SLOT.size + BLCKSZ) + 8


def init(shm: Any) -> None:
    lay = shm.layout
    for i in range(lay.clog_pages):
        _SLOT.pack_into(shm.buf, lay.clog_off + 8 + i * _SLOT.size, -1, 0, 0)


class Clog:
    def __init__(self, shm: Any, locks: Any, datadir: str, xlog: Any = None) -> None:
        lay = shm.layout
        self.buf = shm.buf
        self.k = lay.clog_pages
        self.hdr_off = lay.clog_off + 8
        self.pages_off = self.hdr_off + self.k * _SLOT.size
        self.lock = locks.CLogControlLock
        self.dir = os.path.join(datadir, "pg_xact")
        self.xlog = xlog
        self._tick = struct.Struct("<Q")

    def _slot(self, i: int) -> tuple[int, int, int]:
        return _SLOT.unpack_from(self.buf, self.hdr_off + i * _SLOT.size)

    def _counter(self) -> int:
        v = self._tick.unpack_from(self.buf, self.hdr_off - 8)[0] + 1
        self._tick.pack_into(self.buf, self.hdr_off - 8, v)
        return v

    def _page_slot(self, pageno: int) -> int:
        """Slot holding ``pageno`` (read in if needed); caller holds the lock."""
        victim = -1
        best = None
        for i in range(self.k):
            p, dirty, lru = self._slot(i)
            if p == pageno:
                _SLOT.pack_into(self.buf, self.hdr_off + i * _SLOT.size, p, dirty, self._counter())
                return i
            if p == -1:
                if best is None or best >= 0:
                    victim, best = i, -1
            elif best is None or (best >= 0 and lru < best):
                victim, best = i, lru
        p, dirty, _ = self._slot(victim)
        if p >= 0 and dirty:
            self._write_page(victim, p)
        off = self.pages_off + victim * BLCKSZ
        self.buf[off: off + BLCKSZ] = self._read_page(pageno)
        _SLOT.pack_into(self.buf, self.hdr_off + victim * _SLOT.size, pageno, 0, self._counter())
        return victim

    def _path(self, pageno: int) -> tuple[str, int]:
        seg = pageno // PAGES_PER_SEGMENT
        return os.path.join(self.dir, f"{seg:04X}"), (pageno % PAGES_PER_SEGMENT) * BLCKSZ

    def _read_page(self, pageno: int) -> bytes:
        path, off = self._path(pageno)
        try:
            with open(path, "rb") as f:
                f.seek(off)
                data = f.read(BLCKSZ)
        except FileNotFoundError:
            data = b""
        return data + bytes(BLCKSZ - len(data))

    def _write_page(self, slot: int, pageno: int, sync: bool = False) -> None:
        if self.xlog is not None:
            self.xlog.flush(self.xlog.insert_pos)
        path, off = self._path(pageno)
        os.makedirs(self.dir, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            o = self.pages_off + slot * BLCKSZ
            os.pwrite(fd, self.buf[o: o + BLCKSZ], off)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        p, _, lru = self._slot(slot)
        _SLOT.pack_into(self.buf, self.hdr_off + slot * _SLOT.size, p, 0, lru)

    def status(self, xid: int) -> int:
        pageno, idx = divmod(xid, XACTS_PER_PAGE)
        with self.lock:
            s = self._page_slot(pageno)
            byte = self.buf[self.pages_off + s * BLCKSZ + idx // 4]
        return (byte >> ((idx % 4) * 2)) & 3

    def set_status(self, xids: Any, status: int) -> None:
        with self.lock:
            for xid in xids:
                pageno, idx = divmod(xid, XACTS_PER_PAGE)
                s = self._page_slot(pageno)
                o = self.pages_off + s * BLCKSZ + idx // 4
                shift = (idx % 4) * 2
                self.buf[o] = (self.buf[o] & ~(3 << shift)) | (status << shift)
                p, _, lru = self._slot(s)
                _SLOT.pack_into(self.buf, self.hdr_off + s * _SLOT.size, p, 1, lru)

    def checkpoint(self) -> None:
        """Write and fsync every dirty page (CheckPointCLOG)."""
        with self.lock:
            for i in range(self.k):
                p, dirty, _ = self._slot(i)
                if p >= 0 and dirty:
                    self._write_page(i, p, sync=True)
