"""Lightweight locks: short-term mutual exclusion on shared-memory structures.

Each lock is a POSIX semaphore (the ``_multiprocessing.SemLock`` inside a fork-context
``multiprocessing.Lock``, ~70 ns per ``with``; the ``Lock`` wrapper's Python-level
``__enter__``/``__exit__`` would cost ~260 ns) created by the postmaster together with the
shared segment and inherited by every child through fork.  A semaphore held by a process that is
killed stays held, but that never matters here: any abnormal child exit makes the
postmaster tell every other child to quit and rebuild shared memory *and* these locks
(PostgreSQL's rule).  Locks are not re-entrant and have no shared mode; every holder
keeps them for a few microseconds of Python (never across a client round-trip).

Named locks follow PostgreSQL (``ProcArrayLock``, ``WALInsertLock``, ``WALWriteLock``...).
Buffer locks are striped: ``buffer_mapping[i]`` guards hash bucket partitions,
``buffer_header[i]`` a descriptor's state, ``buffer_content[i]`` a page's contents;
``relext[i]`` serialises relation extension, ``btree[i]`` one B-tree's structure.
Lock order (outer first): btree → relext → buffer_content → buffer_mapping (two in
index order) → buffer_header; ProcArrayLock, WAL locks and CLogControlLock are leaf locks
taken with no other lock held except buffer_content (WALInsertLock while a page is
locked, as XLogInsert does).
"""

from __future__ import annotations

import multiprocessing
from typing import Any

_CTX = multiprocessing.get_context("fork")


def _lock() -> Any:
    """A new lock: the C semaphore object itself (``acquire(block=True, timeout=None)``,
    ``release()``, ``with``), unlinked at creation as the fork context does."""
    return _CTX.Lock()._semlock  # type: ignore[attr-defined]  # the C object under the Python wrapper


NAMED = ("ProcArrayLock", "OidGenLock", "WALInsertLock", "WALWriteLock", "CheckpointerLock", "AutovacuumLock",
         "CLogControlLock", "SyncQueueLock", "StatsLock", "BufferStrategyLock", "DatabaseLock", "SequenceLock",
         "ControlFileLock", "IoQueueLock")

N_MAPPING = 16
N_HEADER = 64
N_CONTENT = 128
N_RELEXT = 16
N_BTREE = 32
N_LOCKMGR = 16


class Locks:
    """Every lightweight lock of one shared-memory generation."""

    def __init__(self) -> None:
        for name in NAMED:
            setattr(self, name, _lock())
        self.buffer_mapping = [_lock() for _ in range(N_MAPPING)]
        self.buffer_header = [_lock() for _ in range(N_HEADER)]
        self.buffer_content = [_lock() for _ in range(N_CONTENT)]
        self.relext = [_lock() for _ in range(N_RELEXT)]
        self.btree = [_lock() for _ in range(N_BTREE)]
        self.lockmgr = [_lock() for _ in range(N_LOCKMGR)]

    def __getattr__(self, name: str) -> Any:  # for type checkers: named locks are set above
        raise AttributeError(name)
