"""Transaction state of one backend (PostgreSQL's xact.c, flattened): xid assigned on
first write, command counter, snapshot, isolation, savepoints with an undo log, files
to remove at commit/abort, and the commit/abort records.

Savepoints are implemented without subtransaction xids: while a savepoint is open,
every tuple change is recorded in an undo log, and ROLLBACK TO SAVEPOINT undoes the
changes made since it (new tuples get XMIN_INVALID, changed headers get their old
xmax back), each undo step WAL-logged like any change.

Commit record (RM_XACT, info COMMIT): time f64, n u32, then n × (dboid u32, relnode u32)
of relation files to remove, then a u32 count of databases to remove and their oids.
Abort record: the files created by the transaction, removed at redo too.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from typing import Any

from pgbundle.server.access.api import Isolation, Snapshot
from pgbundle.server.storage import clog as C

XLOG_XACT_COMMIT = 0x00
XLOG_XACT_ABORT = 0x20
_HDR = struct.Struct("<dI")
_REL = struct.Struct("<II")
_U32 = struct.Struct("<I")


@dataclass
class Savepoint:
    name: str
    undo_mark: int
    catalog_dirty: bool
    created_mark: int


@dataclass
class TransactionState:
    active: bool = False
    block: bool = False  # explicit BEGIN
    xid: int = 0
    cid: int = 0
    snapshot: Snapshot | None = None
    isolation: Isolation = Isolation.READ_COMMITTED
    read_only: bool = False
    start_time: float = 0.0
    savepoints: list[Savepoint] = field(default_factory=list)
    undo: list[tuple] = field(default_factory=list)
    drop_on_commit: list[tuple[int, int]] = field(default_factory=list)
    created: list[tuple[int, int]] = field(default_factory=list)
    drop_db_on_commit: list[int] = field(default_factory=list)
    drop_db_on_abort: list[int] = field(default_factory=list)  # CREATE DATABASE copies (abort keeps them yet)
    catalog_dirty: bool = False
    snapshot_taken: bool = False
    locks: list[tuple[int, int, int, int]] = field(default_factory=list)
    lockset: set[tuple[int, int]] = field(default_factory=set)
    fastpath: bool = False
    wal_lsn: int = 0  # WAL written without an xid (nextval): flushed at commit
    strong: list[tuple[int, int]] = field(default_factory=list)

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]

    def begin(self, isolation: Isolation, read_only: bool) -> None:
        self.active = True
        self.isolation = isolation
        self.read_only = read_only
        self.start_time = time.time()


def commit_record(drops: list[tuple[int, int]], dbs: list[int]) -> bytes:
    out = [_HDR.pack(time.time(), len(drops))]
    out += [_REL.pack(*d) for d in drops]
    out.append(_U32.pack(len(dbs)))
    out += [_U32.pack(d) for d in dbs]
    return b"".join(out)


def parse_commit(main: bytes) -> tuple[float, list[tuple[int, int]], list[int]]:
    t, n = _HDR.unpack_from(main, 0)
    pos = _HDR.size
    drops = []
    for _ in range(n):
        drops.append(_REL.unpack_from(main, pos))
        pos += _REL.size
    dbs = []
    if pos < len(main):
        (m,) = _U32.unpack_from(main, pos)
        pos += 4
        for _ in range(m):
            dbs.append(_U32.unpack_from(main, pos)[0])
            pos += 4
    return t, drops, dbs


def redo(rec: Any, env: Any) -> None:
    """Replay a commit/abort: set the commit log, remove files."""
    if rec.info == XLOG_XACT_COMMIT:
        env.clog.set_status([rec.xid], C.COMMITTED)
        _, drops, dbs = parse_commit(rec.main)
    else:
        env.clog.set_status([rec.xid], C.ABORTED)
        _, drops, dbs = parse_commit(rec.main)
    for dboid, relnode in drops:
        env.bm.drop_relation_buffers(dboid, relnode)
        env.smgr.unlink(dboid, relnode)
    for dboid in dbs:
        import os
        import shutil

        env.bm.drop_database_buffers(dboid)
        shutil.rmtree(os.path.join(env.datadir, "base", str(dboid)), ignore_errors=True)
