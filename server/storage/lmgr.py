"""The heavyweight lock table: relation locks and advisory locks held until end of
transaction (or session), with waits that honour cancellation and deadlock detection.

Row-level waits do not use this table: a writer that finds a row locked by another
transaction waits for that transaction's xid to leave the proc array (see
:mod:`pgbundle.server.access.heapam`), recording the xid it waits for in its slot so
the deadlock detector can walk the wait-for graph.

Layout: ``lock_buckets`` buckets of ``lock_bucket_slots`` entries; an entry is one
grant: (locktype u8, mode u8, holder slot u16, dboid u32, objid u64).  A bucket is
chosen by hashing the lock tag; bucket b is guarded by ``locks.lockmgr[b % N]``.
A full bucket is PostgreSQL's 53200 'out of shared memory' with its hint.
"""

from __future__ import annotations

import struct
from typing import Any

from pgbundle.server.errors import PgError

_ENT = struct.Struct("<BBHIQ")
LOCKTAG_RELATION = 1
LOCKTAG_ADVISORY = 2
LOCKTAG_DATABASE = 3

# conflict table, PostgreSQL's LockConflicts (mode numbers 1..8)
CONFLICTS = {
    1: {8},
    2: {7, 8},
    3: {5, 6, 7, 8},
    4: {4, 5, 6, 7, 8},
    5: {3, 4, 6, 7, 8},
    6: {3, 4, 5, 6, 7, 8},
    7: {2, 3, 4, 5, 6, 7, 8},
    8: {1, 2, 3, 4, 5, 6, 7, 8},
}


# Fast path (PostgreSQL's fast-path relation locks): the weak modes a transaction takes
# on every relation it reads or writes are recorded in the backend's own slot array and
# never touch the shared table, unless some transaction wants a strong lock on a relation
# of the same partition (FastPathStrongRelationLocks counter > 0).
WEAK_MODES = (1, 2, 3)
FP_SLOTS = 16
FP_PARTITIONS = 1024
_FP = struct.Struct("<III")  # dboid, relid, mode bit mask


def region_size(layout: Any) -> int:
    return (layout.lock_buckets * layout.lock_bucket_slots * _ENT.size + FP_PARTITIONS * 4
            + layout.max_backends * FP_SLOTS * _FP.size)


class LockTable:
    def __init__(self, shm: Any, locks: Any) -> None:
        lay = shm.layout
        self.buf = shm.buf
        self.off = lay.locks_off
        self.nb = lay.lock_buckets
        self.ns = lay.lock_bucket_slots
        self.locks = locks.lockmgr
        self._bucket = struct.Struct("<" + "BBHIQ" * self.ns)
        self.strong_off = self.off + self.nb * self.ns * _ENT.size
        self.fp_off = self.strong_off + FP_PARTITIONS * 4
        self.nprocs = lay.max_backends
        self._strong = memoryview(shm.buf)[self.strong_off: self.strong_off + FP_PARTITIONS * 4].cast("I")
        self._fp_all = struct.Struct("<" + "III" * FP_SLOTS * self.nprocs)

    # ------------------------------------------------------------------ fast path
    @staticmethod
    def _part(dboid: int, relid: int) -> int:
        return hash((dboid, relid)) % FP_PARTITIONS

    def fp_acquire(self, slot: int, dboid: int, relid: int, mode: int) -> bool:
        """Record a weak lock in our own slot if no strong lock is pending on the
        partition; False means: use the shared table."""
        if mode not in WEAK_MODES:
            return False
        part = self._part(dboid, relid)
        base = self.fp_off + slot * FP_SLOTS * _FP.size
        with self.locks[part % len(self.locks)]:
            if self._strong[part]:
                return False
            free = -1
            for i in range(FP_SLOTS):
                d, r, m = _FP.unpack_from(self.buf, base + i * _FP.size)
                if m and d == dboid and r == relid:
                    _FP.pack_into(self.buf, base + i * _FP.size, d, r, m | (1 << mode))
                    return True
                if not m and free < 0:
                    free = i
            if free < 0:
                return False
            _FP.pack_into(self.buf, base + free * _FP.size, dboid, relid, 1 << mode)
        return True

    def fp_release_all(self, slot: int) -> None:
        base = self.fp_off + slot * FP_SLOTS * _FP.size
        self.buf[base: base + FP_SLOTS * _FP.size] = bytes(FP_SLOTS * _FP.size)

    def strong_begin(self, dboid: int, relid: int) -> None:
        part = self._part(dboid, relid)
        with self.locks[part % len(self.locks)]:
            self._strong[part] = self._strong[part] + 1

    def strong_end(self, dboid: int, relid: int) -> None:
        part = self._part(dboid, relid)
        with self.locks[part % len(self.locks)]:
            if self._strong[part]:
                self._strong[part] = self._strong[part] - 1

    def fp_conflicts(self, slot: int, dboid: int, relid: int, mode: int) -> bool:
        """Does another backend hold a fast-path lock on the relation that conflicts
        with ``mode``?"""
        conf = CONFLICTS[mode]
        bits = sum(1 << m for m in conf if m in WEAK_MODES)
        if not bits:
            return False
        vals = self._fp_all.unpack_from(self.buf, self.fp_off)
        per = FP_SLOTS * 3
        for p in range(self.nprocs):
            if p == slot:
                continue
            row = vals[p * per: (p + 1) * per]
            for i in range(0, per, 3):
                if row[i + 2] & bits and row[i] == dboid and row[i + 1] == relid:
                    return True
        return False

    def _b(self, locktype: int, dboid: int, objid: int) -> int:
        return hash((locktype, dboid, objid)) % self.nb

    def try_acquire(self, slot: int, locktype: int, dboid: int, objid: int, mode: int) -> bool:
        """Grant the lock if no other holder conflicts; True when granted."""
        b = self._b(locktype, dboid, objid)
        base = self.off + b * self.ns * _ENT.size
        conf = CONFLICTS[mode]
        with self.locks[b % len(self.locks)]:
            vals = self._bucket.unpack_from(self.buf, base)
            free = -1
            for i in range(self.ns):
                lt, m, holder, db, obj = vals[5 * i: 5 * i + 5]
                if lt == 0:
                    if free < 0:
                        free = i
                    continue
                if lt == locktype and db == dboid and obj == objid and holder != slot and m in conf:
                    return False
            if free < 0:
                raise PgError("53200", "out of shared memory",
                              hint="You might need to increase max_locks_per_transaction.")
            _ENT.pack_into(self.buf, base + free * _ENT.size, locktype, mode, slot, dboid, objid)
        return True

    def release(self, slot: int, locktype: int, dboid: int, objid: int, mode: int) -> bool:
        b = self._b(locktype, dboid, objid)
        base = self.off + b * self.ns * _ENT.size
        with self.locks[b % len(self.locks)]:
            for i in range(self.ns):
                o = base + i * _ENT.size
                lt, m, holder, db, obj = _ENT.unpack_from(self.buf, o)
                if lt == locktype and m == mode and holder == slot and db == dboid and obj == objid:
                    _ENT.pack_into(self.buf, o, 0, 0, 0, 0, 0)
                    return True
        return False

    def holders(self, locktype: int, dboid: int, objid: int) -> list[tuple[int, int]]:
        """(slot, mode) of every grant of this lock."""
        b = self._b(locktype, dboid, objid)
        base = self.off + b * self.ns * _ENT.size
        vals = self._bucket.unpack_from(self.buf, base)
        out = []
        for i in range(self.ns):
            lt, m, holder, db, obj = vals[5 * i: 5 * i + 5]
            if lt == locktype and db == dboid and obj == objid:
                out.append((holder, m))
        return out

    def grants(self) -> list[tuple[int, int, int, int, int, bool]]:
        """(locktype, mode, holder slot, dboid, objid, fastpath) of every lock held, for
        pg_locks: the shared table's entries, then the fast-path relation locks (one row
        per mode).  Read without the partition locks, as a statistics view may be."""
        out = []
        for b in range(self.nb):
            vals = self._bucket.unpack_from(self.buf, self.off + b * self.ns * _ENT.size)
            for i in range(self.ns):
                lt, m, holder, db, obj = vals[5 * i: 5 * i + 5]
                if lt:
                    out.append((lt, m, holder, db, obj, False))
        vals = self._fp_all.unpack_from(self.buf, self.fp_off)
        per = FP_SLOTS * 3
        for p in range(self.nprocs):
            row = vals[p * per: (p + 1) * per]
            for i in range(0, per, 3):
                bits = row[i + 2]
                if bits:
                    for m in WEAK_MODES:
                        if bits & (1 << m):
                            out.append((LOCKTAG_RELATION, m, p, row[i], row[i + 1], True))
        return out

    def release_all(self, slot: int) -> None:
        """Drop every grant held by ``slot`` (process exit safety net)."""
        zero = bytes(_ENT.size)
        for b in range(self.nb):
            base = self.off + b * self.ns * _ENT.size
            vals = self._bucket.unpack_from(self.buf, base)
            hit = [i for i in range(self.ns) if vals[5 * i] and vals[5 * i + 2] == slot]
            if not hit:
                continue
            with self.locks[b % len(self.locks)]:
                for i in hit:
                    o = base + i * _ENT.size
                    if _ENT.unpack_from(self.buf, o)[2] == slot:
                        self.buf[o: o + _ENT.size] = zero
