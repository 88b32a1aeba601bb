"""The one shared memory segment: an anonymous ``mmap.mmap(-1, size)`` made by the
postmaster before it forks anything, and its layout.

Every child inherits the mapping through ``os.fork`` (MAP_SHARED), so a write by one
process is seen by all.  Nothing here uses ``multiprocessing.shared_memory``.  After a
crash of any child the postmaster drops the whole segment and makes a new one
(:func:`create`), exactly like PostgreSQL's shared-memory reinitialisation; the locks
that live beside it (:mod:`.lwlock`) are remade with it.

Layout (offsets computed once by :class:`SegmentLayout` from the settings):

=================  ==========================================================
region             contents (guarding lock)
=================  ==========================================================
``control``        :data:`CONTROL_FIELDS`: server state, xid/oid counters
                   (ProcArrayLock / OidGenLock), WAL positions (WALInsertLock,
                   WALWriteLock), checkpoint request/progress counters
                   (CheckpointerLock), autovacuum requests (AutovacuumLock),
                   bgwriter/checkpointer/WAL statistics (owner process only)
``procs``          backend slots (see :mod:`.procarray`) (ProcArrayLock for xid/xmin,
                   the owning process for the rest)
``locks``          heavyweight lock table (see :mod:`.lmgr`) (LockMgrLock)
``buffers``        buffer descriptors, hash buckets, pages (see :mod:`.bufmgr`)
``wal``            WAL buffers, a ring of ``wal_buffers`` bytes (WALInsertLock)
``clog``           commit-log SLRU pages (CLogControlLock)
``fsyncq``         fsync request queue of relation files (SyncQueueLock)
``stats``          cumulative statistics: databases and tables (StatsLock)
=================  ==========================================================
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from typing import Any

from pgbundle.server.storage import aio, bufmgr, clog, lmgr, procarray, sync
from pgbundle.server.storage.smgr import BLCKSZ
from pgbundle.server.utils import pgstat

# name -> struct code; the control block is a flat record of named fields.
CONTROL_FIELDS: tuple[tuple[str, str], ...] = (
    ("pm_state", "I"),  # pmsignal.PMState, published by the postmaster (its only writer)
    ("next_xid", "I"),  # ProcArrayLock
    ("next_oid", "I"),  # OidGenLock
    ("oid_limit", "I"),  # OidGenLock: next_oid may go up to this before a NEXTOID record
    ("catalog_version", "Q"),  # bumped at commit of any transaction that changed a catalog
    ("insert_pos", "Q"),  # WALInsertLock: end of the last inserted WAL record
    ("write_pos", "Q"),  # WALWriteLock: WAL written (and, with fsync, flushed) up to here
    ("flush_pos", "Q"),  # WALWriteLock
    ("redo_ptr", "Q"),  # WALInsertLock: redo point of the checkpoint in progress/last
    ("prev_record", "Q"),  # WALInsertLock: start of the last inserted record
    ("async_commit_lsn", "Q"),  # latest asynchronous commit's LSN (hint bits wait for it)
    ("last_ckpt_lsn", "Q"),
    ("ckpt_requested", "I"),  # CheckpointerLock: request flags (CKPT_*)
    ("ckpt_started", "I"),  # CheckpointerLock: counters as in checkpointer.c
    ("ckpt_done", "I"),
    ("ckpt_failed", "I"),
    ("ckpt_time", "d"),
    ("segs_since_ckpt", "Q"),
    ("av_request_db", "I"),  # AutovacuumLock: database the launcher wants a worker for
    ("av_request_pending", "I"),
    ("pmsignal", "I"),  # pmsignal.PMSignalReason bits, child -> postmaster (AutovacuumLock)
    ("postmaster_pid", "I"),
    ("start_time", "d"),
    # pg_stat_bgwriter / pg_stat_checkpointer / pg_stat_wal counters (single writer each)
    ("num_timed", "Q"),
    ("num_requested", "Q"),
    ("ckpt_write_time", "d"),
    ("ckpt_sync_time", "d"),
    ("buffers_checkpoint", "Q"),
    ("buffers_clean", "Q"),
    ("maxwritten_clean", "Q"),
    ("buffers_backend", "Q"),
    ("buffers_backend_fsync", "Q"),
    ("buffers_alloc", "Q"),
    ("wal_records", "Q"),
    ("wal_fpi", "Q"),
    ("wal_bytes", "Q"),
    ("wal_buffers_full", "Q"),
    ("wal_write", "Q"),
    ("wal_sync", "Q"),
    ("stats_reset", "d"),
    ("next_victim", "Q"),  # BufferStrategyLock: clock hand (monotonic; mod NBuffers)
    ("complete_passes", "Q"),
    ("bgw_last_victim", "Q"),
    ("in_recovery", "I"),
    ("ckpt_pid", "I"),  # checkpointer's pid, for request signals
    ("archiver_pid", "I"),
    ("archived_count", "Q"),  # pg_stat_archiver, written by the archiver only
    ("failed_count", "Q"),
    ("last_archived_time", "d"),
    ("last_failed_time", "d"),
    ("last_archived_segno", "Q"),
    ("last_failed_segno", "Q"),
    ("summarized_lsn", "Q"),  # WAL summarizer progress (summarizer only)
    ("summarizer_pid", "I"),
    ("av_launcher_pid", "I"),
    ("statscoll_pid", "I"),
)


class Control:
    """Named access to the control block: ``ctl.get('next_xid')``, ``ctl.set(...)``.
    Hot paths use :meth:`offset` with a prebuilt struct instead."""

    def __init__(self, buf: Any, base: int) -> None:
        self.buf = buf
        self.base = base
        self._f: dict[str, tuple[struct.Struct, int]] = {}
        self._cells: dict[str, memoryview] = {}
        off = base
        for name, code in CONTROL_FIELDS:
            st = struct.Struct("<" + code)
            off = (off + st.size - 1) // st.size * st.size
            self._f[name] = (st, off)
            off += st.size
        self.size = off - base

    def get(self, name: str) -> Any:
        return self._cell(name)[0]

    def set(self, name: str, value: Any) -> None:
        """A single aligned store (readers without the field's lock never see a zero-filled
        intermediate state, which struct.pack_into would expose)."""
        self._cell(name)[0] = value

    def add(self, name: str, delta: Any) -> Any:
        """Read-add-write.  Only for fields with a single writer or under their lock."""
        c = self._cell(name)
        v = c[0] + delta
        c[0] = v
        return v

    def _cell(self, name: str) -> memoryview:
        c = self._cells.get(name)
        if c is None:
            c = self._cells[name] = self.cell(name)
        return c

    def offset(self, name: str) -> tuple[struct.Struct, int]:
        return self._f[name]

    def cell(self, name: str) -> memoryview:
        """A one-element typed view of the field: ``cell[0]`` is a single aligned load and
        ``cell[0] = v`` a single aligned store (no zero-filled intermediate state, unlike
        struct.pack_into), for fields read without their lock."""
        st, off = self._f[name]
        fmt = st.format[-1]  # one of the struct codes of CONTROL_FIELDS: I, Q or d
        return memoryview(self.buf)[off: off + st.size].cast(fmt)  # type: ignore[call-overload]


@dataclass
class SegmentLayout:
    """Sizes and offsets of every region, computed from the settings."""

    nbuffers: int
    max_backends: int
    wal_buffer_bytes: int
    clog_pages: int = 16
    lock_buckets: int = 128
    lock_bucket_slots: int = 64
    fsync_queue: int = 1024
    stats_tables: int = 4096
    stats_dbs: int = 64
    query_size: int = 1024

    def compute(self) -> None:
        off = 0

        def take(n: int) -> int:
            nonlocal off
            start = (off + 63) // 64 * 64
            off = start + n
            return start

        self.control_off = take(4096)
        self.procs_off = take(procarray.region_size(self))
        self.locks_off = take(lmgr.region_size(self))
        self.fsyncq_off = take(sync.region_size(self))
        self.ioq_off = take(aio.region_size(self))
        self.stats_off = take(pgstat.region_size(self))
        self.clog_off = take(clog.region_size(self))
        self.buf_desc_off = take(bufmgr.descriptors_size(self))
        self.wal_off = take(self.wal_buffer_bytes)
        # pages last, page aligned
        off = (off + BLCKSZ - 1) // BLCKSZ * BLCKSZ
        self.pages_off = off
        off += self.nbuffers * BLCKSZ
        self.total = off


def layout_from_settings(settings: Any) -> SegmentLayout:
    nbuf = int(settings.value("shared_buffers"))
    maxconn = int(settings.value("max_connections"))
    avw = int(settings.value("autovacuum_max_workers"))
    # client backends (2x for ones still authenticating, as pmchild.c) + autovacuum
    # workers + launcher + aux processes (startup, checkpointer, bgwriter, walwriter,
    # stats collector, walsummarizer, archiver, io workers) + bgworkers.
    max_backends = maxconn + avw + 1 + 16 + int(settings.value("max_worker_processes"))
    walbuf = int(settings.value("wal_buffers"))
    if walbuf == -1:
        walbuf_bytes = min(max(nbuf * BLCKSZ // 32, 64 * 1024), 16 * 1024 * 1024)
    else:
        walbuf_bytes = max(walbuf, 4) * BLCKSZ
    lay = SegmentLayout(nbuffers=nbuf, max_backends=max_backends, wal_buffer_bytes=walbuf_bytes,
                 query_size=int(settings.value("track_activity_query_size")))
    lay.compute()
    return lay


class Shmem:
    """The mapping plus its layout; ``buf`` is the mmap, ``view`` a memoryview of it."""

    def __init__(self, layout: SegmentLayout) -> None:
        self.layout = layout
        self.buf = mmap.mmap(-1, layout.total)  # anonymous, MAP_SHARED: inherited by fork
        self.view = memoryview(self.buf)
        self.control = Control(self.buf, layout.control_off)


def create(settings: Any) -> Shmem:
    """Make a fresh, zeroed segment (postmaster only, before forking)."""
    return Shmem(layout_from_settings(settings))
