"""Cumulative statistics: what backends count, how it reaches the statistics collector,
and where the views read it (PostgreSQL ≤ 14's pgstat.c design).

* Each backend counts into a private :class:`Reporter` (per table: scans, tuples read,
  inserted/updated/deleted; per database: commits, rollbacks, blocks read/hit) and,
  at most every 500 ms at transaction end (and at exit), sends one datagram to the
  statistics collector over a Unix datagram socketpair the postmaster made before
  forking.  Like PostgreSQL's UDP messages, a message is dropped when the collector's
  queue is full; the counters are statistics, not data.
* The collector (:mod:`pgbundle.server.postmaster.pgstat_collector`) is the only writer
  of the shared statistics region: one row per database and a hash of (database, table)
  rows.  Readers (pg_stat_database, pg_stat_user_tables, the autovacuum launcher) read
  it without a lock.

Region layout: database rows (dboid u32 + 4 pad, 13 × i64 counters, stats_reset f64),
then table rows (dboid u32, reloid u32, 16 × i64 counters, 4 × f64 times), open
addressing by hash of (dboid, reloid).
"""

from __future__ import annotations

import datetime
import os
import socket
import struct
import time
from typing import Any

import msgspec

from pgbundle.server.access.api import DatabaseStats, TableStats

DB = struct.Struct("<I4x13qd")
TAB = struct.Struct("<II16q4d")
DB_FIELDS = ("xact_commit", "xact_rollback", "blks_read", "blks_hit", "tup_returned", "tup_fetched", "tup_inserted",
             "tup_updated", "tup_deleted", "conflicts", "temp_files", "temp_bytes", "deadlocks")
TAB_FIELDS = ("seq_scan", "seq_tup_read", "idx_scan", "idx_tup_fetch", "n_tup_ins", "n_tup_upd", "n_tup_del",
              "n_tup_hot_upd", "n_live_tup", "n_dead_tup", "n_mod_since_analyze", "n_ins_since_vacuum",
              "vacuum_count", "autovacuum_count", "analyze_count", "autoanalyze_count")
TAB_TIMES = ("last_vacuum", "last_autovacuum", "last_analyze", "last_autoanalyze")
FLUSH_INTERVAL = 0.5
_UTC = datetime.timezone.utc


def region_size(layout: Any) -> int:
    return layout.stats_dbs * DB.size + layout.stats_tables * TAB.size


class Region:
    """The shared statistics area (collector writes, everyone reads)."""

    def __init__(self, shm: Any) -> None:
        lay = shm.layout
        self.buf = shm.buf
        self.db_off = lay.stats_off
        self.ndb = lay.stats_dbs
        self.tab_off = self.db_off + self.ndb * DB.size
        self.ntab = lay.stats_tables

    # -- databases
    def db_rows(self) -> list[tuple[Any, ...]]:
        out = []
        for i in range(self.ndb):
            r = DB.unpack_from(self.buf, self.db_off + i * DB.size)
            if r[0] or i == 0:
                out.append(r)
        return out

    def _db_slot(self, dboid: int, create: bool) -> int:
        for i in range(self.ndb):
            o = self.db_off + i * DB.size
            d = struct.unpack_from("<I", self.buf, o)[0]
            if d == dboid and (dboid or i == 0):
                return o
            if d == 0 and i > 0 and create:
                DB.pack_into(self.buf, o, dboid, *([0] * 13), time.time())
                return o
        return -1

    def add_db(self, dboid: int, deltas: list[int]) -> None:
        o = self._db_slot(dboid, True)
        if o < 0:
            return
        r = list(DB.unpack_from(self.buf, o))
        for i, d in enumerate(deltas):
            r[1 + i] += d
        DB.pack_into(self.buf, o, *r)

    def drop_db(self, dboid: int) -> None:
        o = self._db_slot(dboid, False)
        if o >= 0 and dboid:
            DB.pack_into(self.buf, o, 0, *([0] * 13), 0.0)

    # -- tables
    def _tab_slot(self, dboid: int, reloid: int, create: bool) -> int:
        h = hash((dboid, reloid)) % self.ntab
        for k in range(self.ntab):
            o = self.tab_off + ((h + k) % self.ntab) * TAB.size
            d, r = struct.unpack_from("<II", self.buf, o)
            if d == dboid and r == reloid:
                return o
            if r == 0:
                if not create:
                    return -1
                TAB.pack_into(self.buf, o, dboid, reloid, *([0] * 16), 0.0, 0.0, 0.0, 0.0)
                return o
        return -1

    def table(self, dboid: int, reloid: int) -> tuple[Any, ...] | None:
        o = self._tab_slot(dboid, reloid, False)
        return None if o < 0 else TAB.unpack_from(self.buf, o)

    def add_table(self, dboid: int, reloid: int, deltas: list[int]) -> None:
        o = self._tab_slot(dboid, reloid, True)
        if o < 0:
            return
        r = list(TAB.unpack_from(self.buf, o))
        for i, d in enumerate(deltas):
            r[2 + i] += d
        r[2 + 8] = max(r[2 + 8], 0)
        r[2 + 9] = max(r[2 + 9], 0)
        TAB.pack_into(self.buf, o, *r)

    def vacuumed(self, dboid: int, reloid: int, live: int, dead: int, auto: bool, analyze: bool) -> None:
        o = self._tab_slot(dboid, reloid, True)
        if o < 0:
            return
        r = list(TAB.unpack_from(self.buf, o))
        now = time.time()
        r[2 + 8] = live
        r[2 + 9] = dead
        r[2 + 11] = 0
        r[2 + (13 if auto else 12)] += 1
        r[18 + (1 if auto else 0)] = now
        if analyze:
            r[2 + 10] = 0
            r[2 + (15 if auto else 14)] += 1
            r[18 + (3 if auto else 2)] = now
        TAB.pack_into(self.buf, o, *r)

    def analyzed(self, dboid: int, reloid: int, live: int, auto: bool) -> None:
        o = self._tab_slot(dboid, reloid, True)
        if o < 0:
            return
        r = list(TAB.unpack_from(self.buf, o))
        r[2 + 8] = live
        r[2 + 10] = 0
        r[2 + (15 if auto else 14)] += 1
        r[18 + (3 if auto else 2)] = time.time()
        TAB.pack_into(self.buf, o, *r)

    def tables(self) -> list[tuple[Any, ...]]:
        out = []
        for i in range(self.ntab):
            o = self.tab_off + i * TAB.size
            r = TAB.unpack_from(self.buf, o)
            if r[1]:
                out.append(r)
        return out

    def apply(self, msg: dict[str, Any]) -> None:
        """Apply one message from a backend (collector only)."""
        db = msg.get("db", 0)
        if "vac" in msg:
            self.vacuumed(db, msg["vac"], msg["live"], msg["dead"], msg.get("auto", False), msg.get("an", False))
            return
        if "an" in msg:
            self.analyzed(db, msg["an"], msg["live"], msg.get("auto", False))
            return
        if "dropdb" in msg:
            self.drop_db(msg["dropdb"])
            return
        t = msg.get("t", {})
        ins = upd = dele = ret = fet = 0
        for oid, c in t.items():
            self.add_table(db, int(oid), c)
            ret += c[1]
            fet += c[3]
            ins += c[4]
            upd += c[5]
            dele += c[6]
        self.add_db(db, [msg.get("c", 0), msg.get("r", 0), msg.get("br", 0), msg.get("bh", 0), ret, fet, ins, upd,
                         dele, 0, 0, 0, msg.get("dl", 0)])


class Reporter:
    """A backend's pending counters (pgstat_report_stat)."""

    def __init__(self, env: Any, dboid: int) -> None:
        self.env = env
        self.dboid = dboid
        self.sock: socket.socket | None = getattr(env, "stats_sock", None)
        self.tables: dict[int, list[int]] = {}
        self.xact: dict[int, list[int]] = {}  # oid -> [ins, upd, del] of the open transaction
        self.commits = 0
        self.rollbacks = 0
        self.deadlocks = 0
        self._last = 0.0
        self._br = 0
        self._bh = 0

    def table(self, oid: int, field: int, n: int) -> None:
        c = self.tables.get(oid)
        if c is None:
            c = self.tables[oid] = [0] * 11
        c[field] += n
        if 4 <= field <= 6:
            x = self.xact.get(oid)
            if x is None:
                x = self.xact[oid] = [0, 0, 0]
            x[field - 4] += n

    def xact_end(self, committed: bool) -> None:
        if committed:
            self.commits += 1
        else:
            self.rollbacks += 1
        for oid, (ins, upd, dele) in self.xact.items():
            c = self.tables.setdefault(oid, [0] * 11)
            if committed:
                c[7] += ins - dele  # live
                c[8] += upd + dele  # dead
                c[9] += ins + upd + dele  # modified since analyze
            else:
                c[8] += ins + upd
        self.xact.clear()

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < FLUSH_INTERVAL:
            return
        self._last = now
        bm = self.env.bm
        br, bh = bm.blks_read - self._br, bm.blks_hit - self._bh
        if not (self.tables or self.commits or self.rollbacks or br or bh or self.deadlocks):
            return
        msg: dict[str, Any] = {"db": self.dboid, "c": self.commits, "r": self.rollbacks, "br": br, "bh": bh,
                               "dl": self.deadlocks}
        # per table: seq_scan, seq_tup_read, idx_scan, idx_tup_fetch, ins, upd, del, hot, live, dead, mod, ins_vac
        msg["t"] = {str(oid): [c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[10], c[7], c[8], c[9], c[4]]
                    for oid, c in self.tables.items()}
        if self._send(msg):
            self.tables.clear()
            self.commits = self.rollbacks = self.deadlocks = 0
            self._br, self._bh = bm.blks_read, bm.blks_hit

    def _send(self, msg: dict[str, Any]) -> bool:
        if self.sock is None:
            return True
        try:
            self.sock.send(msgspec.msgpack.encode(msg))
            return True
        except (BlockingIOError, OSError):
            return False

    def vacuumed(self, oid: int, live: int, dead: int, auto: bool, analyze: bool) -> None:
        self._send({"db": self.dboid, "vac": oid, "live": live, "dead": dead, "auto": auto, "an": analyze})

    def analyzed(self, oid: int, live: int, auto: bool = False) -> None:
        self._send({"db": self.dboid, "an": oid, "live": live, "auto": auto})

    def dropped_database(self, dboid: int) -> None:
        self._send({"dropdb": dboid})


def _ts(t: float) -> datetime.datetime | None:
    return datetime.datetime.fromtimestamp(t, _UTC) if t else None


def read_database_stats(eng: Any) -> list[Any]:
    region = Region(eng.env.shm)
    rows = {r[0]: r for r in region.db_rows()}
    counts: dict[int, int] = {}
    for e in eng.procs.entries():
        if e["backend_type"] == "client backend" and e["dboid"]:
            counts[e["dboid"]] = counts.get(e["dboid"], 0) + 1
    out = [DatabaseStats(0, None)]
    for db in eng.databases():
        r = rows.get(db.oid)
        vals = dict(zip(DB_FIELDS, r[1:14])) if r else {}
        out.append(DatabaseStats(db.oid, db.name, numbackends=counts.get(db.oid, 0),
                                 stats_reset=_ts(r[14]) if r else None, **vals))
    return out


def read_table_stats(eng: Any) -> list[Any]:
    region = Region(eng.env.shm)
    out = []
    for rel in eng.relations("rmp"):
        dboid = 0 if rel.is_shared else eng.database.oid
        r = region.table(dboid, rel.oid)
        vals: dict[str, Any] = {}
        if r:
            vals = dict(zip(TAB_FIELDS, r[2:18]))
            vals.update({k: _ts(v) for k, v in zip(TAB_TIMES, r[18:22])})
        out.append(TableStats(rel.oid, rel.namespace, rel.name, **vals))
    return out


def make_socketpair() -> tuple[socket.socket, socket.socket]:
    """(collector end, backend end): datagram, non-blocking send side."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    b.setblocking(False)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    return a, b


_ = os
