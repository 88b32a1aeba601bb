"""BackendEngine: the implementation of :class:`pgbundle.server.access.api.Engine`.

One per backend process (also used by autovacuum workers and initdb).  It ties the
transaction state (:mod:`.xact`), heap (:mod:`.heapam`), B-trees (:mod:`.nbtree`), the
relation cache and statistics reporting together, and holds the catalog's lookups and DDL
(:class:`pgbundle.server.catalog.ddl.CatalogDDL`, ``self.ddl``), to which its catalog methods
delegate.  See the api module for the contract of every public method.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import struct
import time
from collections.abc import Iterator, Sequence
from typing import Any, Callable

from pgbundle.server.access import api, checkpoint, page as P, sequence, vacuum, xact as X
from pgbundle.server.access.api import (
    TID,
    ColumnDef,
    Conflict,
    ConstraintInfo,
    IndexBound,
    IndexInfo,
    Isolation,
    Notice,
    RelationInfo,
    Row,
    RowLockMode,
    Snapshot,
)
from pgbundle.server.access.heapam import (
    BEING_UPDATED,
    DELETED,
    INVISIBLE,
    SELF_UPDATED,
    UPDATED,
    Heap,
)
from pgbundle.server.access.nbtkey import encode_key, encode_value, has_null
from pgbundle.server.access.nbtree import BTree, Duplicate, NeedWait
from pgbundle.server.access.tupdesc import RowCodec, encode_row, value_text
from pgbundle.server.access.xlog import RM_XACT, fmt_lsn, segment_name
from pgbundle.server.catalog import cache as CC, defs as D
from pgbundle.server.catalog.ddl import CatalogDDL
from pgbundle.server.errors import PgError
from pgbundle.server.storage import clog as C
from pgbundle.server.utils import pgstat

_UTC = datetime.timezone.utc


def _ts(t: float) -> datetime.datetime | None:
    return datetime.datetime.fromtimestamp(t, _UTC) if t else None


_ISOLATION_BY_NAME = {i.value: i for i in Isolation}


class RelRuntime:
    """Per-backend runtime data of a relation: codec and index key types."""

    __slots__ = ("info", "dboid", "relnode", "codec", "notnull", "indexes", "indexed_columns")

    def __init__(self, info: RelationInfo, dboid: int, engine: BackendEngine) -> None:
        self.info = info
        self.dboid = 0 if info.is_shared else dboid
        self.relnode = info.relfilenode
        missing = []
        for c in info.columns:
            missing.append(engine._missing_values.get((info.oid, c.attnum)))
        self.codec = RowCodec(tuple(c.type_oid for c in info.columns), tuple(missing))
        self.notnull = tuple((c.attnum - 1, c.name) for c in info.columns if c.not_null and not c.dropped)
        self.indexes: list[tuple[IndexInfo, int, tuple[int, ...], tuple[int, ...]]] = []
        for idx in info.indexes:
            irel = engine._cache_rel(idx.oid)
            if irel is None or not idx.valid:
                continue
            types = tuple(info.columns[a - 1].type_oid for a in idx.columns)
            self.indexes.append((idx, irel.relfilenode, tuple(a - 1 for a in idx.columns), types))
        self.indexed_columns = tuple(sorted({a - 1 for idx in info.indexes for a in idx.columns}))


class BackendEngine(api.Engine):
    """The engine handle of one backend."""

    def __init__(self, env: Any, database: api.DatabaseInfo, role: api.RoleInfo, *,
                 backend_type: str = "client backend",
                 stats: Any = None) -> None:
        self.env = env
        self.database = database
        self.role = role
        self.pid = os.getpid()
        self.settings = env.settings
        self.notices: list[Notice] = []
        self.heap = Heap(env)
        self.btree = BTree(env)
        self.bm = env.bm
        self.procs = env.procs
        self.xlog = env.xlog
        self.clog = env.clog
        self.x = X.TransactionState()
        self.ddl = CatalogDDL(self)  # catalog rows, lookups and DDL
        self.backend_type = backend_type
        self.stats = stats or pgstat.Reporter(env, database.oid)
        self._cache: CC.CatalogCache | None = None
        self._rt: dict[int, RelRuntime] = {}
        self._missing_values: dict[tuple[int, int], Any] = {}
        self._seq_last: dict[int, int] = {}
        self._lastval: int | None = None
        self._catver = env.ctl.cell("catalog_version")
        self._advisory: dict[tuple[int, bool], int] = {}
        # RegisterXactCallback: fn(event, savepoint_depth) after 'commit' / 'abort' / 'savepoint' /
        # 'release' / 'rollback_to' (LISTEN/NOTIFY, see pgbundle.server.tcop.async_notify)
        self.xact_callbacks: list[Any] = []

    # ================================================================== interrupts/activity
    def check_for_interrupts(self) -> None:
        self.env.check_for_interrupts()

    def report_activity(self, state: str, query: str | None = None) -> None:
        self.procs.set_state(state, query)

    # ================================================================== transactions
    def _default_isolation(self) -> Isolation:
        v = self.settings.value("default_transaction_isolation")
        return _ISOLATION_BY_NAME.get(v) or Isolation(v)

    def begin(self, isolation: Isolation | None = None, read_only: bool | None = None) -> None:
        if self.x.block:
            return
        if not self.x.active:
            self._start_xact()
        self.x.block = True
        if isolation is not None:
            self.set_isolation(isolation)
        if read_only is not None:
            self.x.read_only = read_only

    def set_isolation(self, isolation: Isolation) -> None:
        if self.x.snapshot_taken:
            raise PgError("25001", "SET TRANSACTION ISOLATION LEVEL must be called before any query")
        self.x.isolation = isolation

    def _start_xact(self) -> None:
        self.x.reset()
        self.x.begin(self._default_isolation(), bool(self.settings.value("default_transaction_read_only")))
        self.procs.set_xact_start(self.x.start_time)

    @property
    def in_transaction_block(self) -> bool:
        return self.x.block

    @property
    def in_transaction(self) -> bool:
        return self.x.active

    @property
    def isolation(self) -> Isolation:
        return self.x.isolation if self.x.active else self._default_isolation()

    def _rr(self) -> bool:
        return self.x.isolation in (Isolation.REPEATABLE_READ, Isolation.SERIALIZABLE)

    def start_statement(self) -> Snapshot:
        x = self.x
        if not x.active:
            self._start_xact()
        else:
            x.cid += 1
        self._check_catalog_version()
        if x.snapshot is None or not self._rr():
            x.snapshot = self.procs.make_snapshot(x.xid, x.cid)
        else:
            x.snapshot = dataclasses.replace(x.snapshot, xid=x.xid, cid=x.cid)
        x.snapshot_taken = True
        return x.snapshot

    def end_statement(self) -> None:
        self.bm.release_all()

    def snapshot(self) -> Snapshot:
        s = self.x.snapshot
        if s is None:
            return self.start_statement()
        return s

    def current_xid(self, assign: bool = True) -> int:
        if not self.x.xid and assign:
            self._assign_xid()
        return self.x.xid

    def _assign_xid(self) -> int:
        x = self.x
        if not x.active:
            self._start_xact()
        if x.read_only and self.backend_type == "client backend" and not getattr(self, "_internal_write", False):
            raise PgError("25006", "cannot execute statement in a read-only transaction")
        x.xid = self.procs.assign_xid()
        if x.snapshot is not None:
            x.snapshot = dataclasses.replace(x.snapshot, xid=x.xid)
        return x.xid

    @property
    def command_id(self) -> int:
        return self.x.cid

    def command_counter_increment(self) -> None:
        x = self.x
        x.cid += 1
        if x.snapshot is not None:
            x.snapshot = dataclasses.replace(x.snapshot, cid=x.cid, xid=x.xid)

    def _write_ctx(self) -> tuple[int, int]:
        xid = self.x.xid or self._assign_xid()
        return xid, self.x.cid

    def _xact_event(self, event: str) -> None:
        for cb in self.xact_callbacks:
            cb(event, len(self.x.savepoints))

    def commit(self) -> None:
        x = self.x
        if not x.active:
            self._end_xact()
            self._xact_event("commit")
            return
        try:
            if x.xid:
                main = X.commit_record(x.drop_on_commit, x.drop_db_on_commit)
                lsn = self.xlog.insert(RM_XACT, X.XLOG_XACT_COMMIT, x.xid, (), main)
                sync = self.settings.value("synchronous_commit") != "off" or x.drop_on_commit or x.catalog_dirty
                if sync:
                    self.procs.set_wait("WALSync")
                    try:
                        self.xlog.flush(lsn)
                    finally:
                        self.procs.set_wait(None)
                else:
                    cell = self.env.ctl.cell("async_commit_lsn")
                    if cell[0] < lsn:
                        cell[0] = lsn
                self.clog.set_status([x.xid], C.COMMITTED)
            elif x.wal_lsn:
                # nextval in a transaction without an xid: its values were handed out, so
                # their WAL must be durable before the client sees the commit
                self.xlog.flush(x.wal_lsn)
            self.procs.end_xact()
            if x.catalog_dirty:
                with self.env.locks.OidGenLock:
                    self._catver[0] = self._catver[0] + 1
                self._invalidate()
            for dboid, relnode in x.drop_on_commit:
                self.bm.drop_relation_buffers(dboid, relnode)
                self.env.smgr.unlink(dboid, relnode)
            for dboid in x.drop_db_on_commit:
                self.ddl.remove_database_files(dboid)
            self.stats.xact_end(True)
        finally:
            self._end_xact()
        self._xact_event("commit")

    def rollback(self) -> None:
        x = self.x
        if not x.active:
            self._end_xact()
            self._xact_event("abort")
            return
        try:
            self.bm.release_all()
            if x.xid:
                main = X.commit_record(x.created, [])
                self.xlog.insert(RM_XACT, X.XLOG_XACT_ABORT, x.xid, (), main)
                self.clog.set_status([x.xid], C.ABORTED)
            self.procs.end_xact()
            for dboid, relnode in x.created:
                self.bm.drop_relation_buffers(dboid, relnode)
                self.env.smgr.unlink(dboid, relnode)
            if x.catalog_dirty:
                self._invalidate()
            self.stats.xact_end(False)
        finally:
            self._end_xact()
            self._xact_event("abort")

    def _end_xact(self) -> None:
        table = self.env.locktable
        for lt, db, obj, mode in self.x.locks:
            table.release(self.procs.my, lt, db, obj, mode)
        if self.x.fastpath:
            table.fp_release_all(self.procs.my)
        for db, obj in self.x.strong:
            table.strong_end(db, obj)
        self.bm.release_all()
        self.x.reset()
        self.settings.end_transaction()
        self.procs.set_xact_start(0.0)
        self.stats.flush()

    def savepoint(self, name: str) -> None:
        if not self.x.block:
            raise PgError("25P01", "SAVEPOINT can only be used in transaction blocks")
        self.x.savepoints.append(X.Savepoint(name, len(self.x.undo), self.x.catalog_dirty, len(self.x.created)))
        self._xact_event("savepoint")

    def _find_savepoint(self, name: str, what: str) -> int:
        if not self.x.block:
            raise PgError("25P01", f"{what} can only be used in transaction blocks")
        for i in range(len(self.x.savepoints) - 1, -1, -1):
            if self.x.savepoints[i].name == name:
                return i
        raise PgError("3B001", f'savepoint "{name}" does not exist')

    def release_savepoint(self, name: str) -> None:
        i = self._find_savepoint(name, "RELEASE SAVEPOINT")
        del self.x.savepoints[i:]
        if not self.x.savepoints:
            self.x.undo.clear()
        self._xact_event("release")

    def rollback_to_savepoint(self, name: str) -> None:
        i = self._find_savepoint(name, "ROLLBACK TO SAVEPOINT")
        sp = self.x.savepoints[i]
        del self.x.savepoints[i + 1:]
        self.bm.release_all()
        xid = self.x.xid
        undo = self.x.undo
        while len(undo) > sp.undo_mark:
            entry = undo.pop()
            kind, dboid, relnode, tid = entry[:4]
            h = self.heap.header_at(dboid, relnode, tid)
            if h is None:
                continue
            if kind == "ins":
                self.heap.set_header(dboid, relnode, tid, xid, xmax=h[1], cmax=h[3], mask=h[6] | P.XMIN_INVALID,
                                     ctid=TID(h[4], h[5]))
            else:
                old = entry[4]
                self.heap.set_header(dboid, relnode, tid, xid, xmax=old[1], cmax=old[3], mask=old[6],
                                     ctid=TID(old[4], old[5]))
        if self.x.catalog_dirty:
            self._invalidate()
        self.command_counter_increment()
        self._xact_event("rollback_to")

    def _undo(self, *entry: Any) -> None:
        if self.x.savepoints:
            self.x.undo.append(entry)

    # ================================================================== catalog cache
    def _invalidate(self) -> None:
        self._cache = None
        self._rt.clear()

    def _check_catalog_version(self) -> None:
        if self._cache is not None and self._catver[0] != self._cache.version:
            self._invalidate()

    def _catalog_snapshot(self) -> Snapshot:
        x = self.x
        xmin, xmax, xip = self.procs.snapshot(x.xid, set_xmin=False)
        return Snapshot(xmin, xmax, xip, x.xid, x.cid + 1)

    def _scan_catalog(self, cat: D.CatalogDef, snap: Snapshot | None = None) -> list[tuple[TID, tuple]]:
        rel = CC.bootstrap_relation(cat)
        dboid = 0 if cat.shared else self.database.oid
        codec = self._bootstrap_codec(cat)
        snap = snap or self._catalog_snapshot()
        return list(self.heap.scan(dboid, rel.relfilenode, snap, codec.decode))

    _codecs: dict[int, RowCodec] = {}

    def _bootstrap_codec(self, cat: D.CatalogDef) -> RowCodec:
        c = BackendEngine._codecs.get(cat.oid)
        if c is None:
            c = BackendEngine._codecs[cat.oid] = RowCodec(tuple(t for _, t in cat.columns))
        return c

    def catalog(self) -> CC.CatalogCache:
        if self._cache is None:
            version = self._catver[0]
            snap = self._catalog_snapshot()
            rows = {name: self._scan_catalog(D.BY_NAME[name], snap) for name in (
                "pg_namespace", "pg_class", "pg_attribute", "pg_attrdef", "pg_index", "pg_constraint", "pg_sequence",
                "pg_depend")}
            self._missing_values = {}
            for _tid, a in rows["pg_attribute"]:
                if a[15] and a[25]:
                    self._missing_values[(a[0], a[5])] = a[25][0]
            self._cache = CC.build(version, rows)
            self._rt.clear()
        return self._cache

    def _cache_rel(self, oid: int) -> RelationInfo | None:
        return self.catalog().relations.get(oid)

    def _runtime(self, rel: RelationInfo) -> RelRuntime:
        rt = self._rt.get(rel.oid)
        if rt is None:
            current = self.catalog().relations.get(rel.oid, rel)
            rt = self._rt[rel.oid] = RelRuntime(current, self.database.oid, self)
        return rt

    def _mark_catalog_changed(self) -> None:
        self.x.catalog_dirty = True
        self._invalidate()

    def catalog_changed(self) -> None:
        self._mark_catalog_changed()
        self.command_counter_increment()

    # ================================================================== catalog lookups and DDL
    # (catalog/ddl.py: CatalogDDL, self.ddl)
    def allocate_oid(self) -> int:
        return self.ddl.allocate_oid()

    @property
    def search_path(self) -> list[str]:
        return self.ddl.search_path

    def lookup_namespace(self, name: str) -> int | None:
        return self.ddl.lookup_namespace(name)

    def namespaces(self) -> list[tuple[int, str, int]]:
        return self.ddl.namespaces()

    def lookup_relation(self, name: str, schema: str | None = None) -> RelationInfo | None:
        return self.ddl.lookup_relation(name, schema)

    def relation(self, oid: int) -> RelationInfo:
        return self.ddl.relation(oid)

    def relations(self, kinds: str = "rivSmpcf") -> list[RelationInfo]:
        return self.ddl.relations(kinds)

    def create_table(self, name: str, columns: Sequence[ColumnDef], *, schema: str | None = None,
                     primary_key: Sequence[str] | None = None, unique: Sequence[Sequence[str]] = (),
                     constraint_names: dict[tuple[str, ...], str] | None = None, if_not_exists: bool = False,
                     persistence: str = "p", options: Sequence[str] = ()) -> RelationInfo | None:
        return self.ddl.create_table(name, columns, schema=schema, primary_key=primary_key, unique=unique,
                                     constraint_names=constraint_names, if_not_exists=if_not_exists,
                                     persistence=persistence, options=options)

    def create_index(self, table_oid: int, name: str | None, columns: Sequence[int], *, unique: bool = False,
                     primary: bool = False, if_not_exists: bool = False, constraint: bool = False,
                     options: Sequence[int] | None = None) -> IndexInfo | None:
        return self.ddl.create_index(table_oid, name, columns, unique=unique, primary=primary,
                                     if_not_exists=if_not_exists, constraint=constraint, options=options)

    def drop_relation(self, oid: int, *, cascade: bool = False) -> None:
        self.ddl.drop_relation(oid, cascade=cascade)

    def truncate(self, oids: Sequence[int]) -> None:
        self.ddl.truncate(oids)

    def rename_relation(self, oid: int, new_name: str) -> None:
        self.ddl.rename_relation(oid, new_name)

    def create_view(self, name: str, columns: Sequence[ColumnDef], definition: str, *, schema: str | None = None,
                    replace: bool = False) -> RelationInfo:
        return self.ddl.create_view(name, columns, definition, schema=schema, replace=replace)

    def relation_is_new(self, oid: int) -> bool:
        return self.ddl.relation_is_new(oid)

    def view_definition(self, oid: int) -> str | None:
        return self.ddl.view_definition(oid)

    def set_description(self, objoid: int, classoid: int, objsubid: int, text: str | None) -> None:
        self.ddl.set_description(objoid, classoid, objsubid, text)

    def descriptions(self) -> list[tuple[int, int, int, str]]:
        return self.ddl.descriptions()

    def rename_column(self, table_oid: int, attnum: int, new_name: str) -> None:
        self.ddl.rename_column(table_oid, attnum, new_name)

    def rewrite_table(self, table_oid: int, types: dict[int, tuple[int, int]] | None = None,
                      convert: Callable[[tuple], tuple] | None = None) -> int:
        return self.ddl.rewrite_table(table_oid, types, convert)

    def add_column(self, table_oid: int, column: ColumnDef, *, missing_value: Any = None) -> None:
        self.ddl.add_column(table_oid, column, missing_value=missing_value)

    def drop_column(self, table_oid: int, attnum: int) -> None:
        self.ddl.drop_column(table_oid, attnum)

    def set_column_default(self, table_oid: int, attnum: int, default: str | None) -> None:
        self.ddl.set_column_default(table_oid, attnum, default)

    def set_column_not_null(self, table_oid: int, attnum: int, not_null: bool) -> None:
        self.ddl.set_column_not_null(table_oid, attnum, not_null)

    def add_constraint(self, table_oid: int, constraint: ConstraintInfo) -> ConstraintInfo:
        return self.ddl.add_constraint(table_oid, constraint)

    def drop_constraint(self, table_oid: int, name: str) -> None:
        self.ddl.drop_constraint(table_oid, name)

    def create_namespace(self, name: str, *, if_not_exists: bool = False) -> int:
        return self.ddl.create_namespace(name, if_not_exists=if_not_exists)

    def drop_namespace(self, name: str, *, cascade: bool = False, missing_ok: bool = False) -> None:
        self.ddl.drop_namespace(name, cascade=cascade, missing_ok=missing_ok)

    def create_sequence(self, name: str, *, schema: str | None = None, type_oid: int = 20, start: int | None = None,
                        increment: int = 1, min_value: int | None = None, max_value: int | None = None,
                        cache: int = 1, cycle: bool = False, if_not_exists: bool = False) -> RelationInfo | None:
        return self.ddl.create_sequence(name, schema=schema, type_oid=type_oid, start=start, increment=increment,
                                        min_value=min_value, max_value=max_value, cache=cache, cycle=cycle,
                                        if_not_exists=if_not_exists)

    def set_sequence_owner(self, seq_oid: int, table_oid: int, attnum: int) -> None:
        self.ddl.set_sequence_owner(seq_oid, table_oid, attnum)

    def database_by_name(self, name: str) -> api.DatabaseInfo | None:
        return self.ddl.database_by_name(name)

    def databases(self) -> list[api.DatabaseInfo]:
        return self.ddl.databases()

    def create_database(self, name: str, *, owner: str | None = None, template: str = "template1") -> api.DatabaseInfo:
        return self.ddl.create_database(name, owner=owner, template=template)

    def drop_database(self, name: str, *, if_exists: bool = False, force: bool = False) -> None:
        self.ddl.drop_database(name, if_exists=if_exists, force=force)

    def role_by_name(self, name: str) -> api.RoleInfo | None:
        return self.ddl.role_by_name(name)

    def roles(self) -> list[api.RoleInfo]:
        return self.ddl.roles()

    def create_role(self, name: str, *, password: str | None = None, login: bool = False, superuser: bool = False,
                    create_db: bool = False, create_role: bool = False, inherit: bool = True,
                    replication: bool = False, bypass_rls: bool = False, connection_limit: int = -1,
                    valid_until: Any = None) -> api.RoleInfo:
        return self.ddl.create_role(name, password=password, login=login, superuser=superuser, create_db=create_db,
                                    create_role=create_role, inherit=inherit, replication=replication,
                                    bypass_rls=bypass_rls, connection_limit=connection_limit, valid_until=valid_until)

    def alter_role(self, name: str, **changes: Any) -> api.RoleInfo:
        return self.ddl.alter_role(name, **changes)

    def drop_role(self, name: str, *, if_exists: bool = False) -> None:
        self.ddl.drop_role(name, if_exists=if_exists)

    # ================================================================== relation locks
    def _dml_lock(self, oid: int, mode: int) -> None:
        """AccessShare for readers, RowExclusive for writers, once per transaction and
        relation (system catalogs are not locked: DDL serialises on the user relation)."""
        if oid >= D.FIRST_NORMAL_OID and (oid, mode) not in self.x.lockset:
            if not self.x.active:
                return
            self.lock_relation(oid, mode)

    def lock_relation(self, oid: int, mode: int, *, nowait: bool = False) -> None:
        """Take a relation lock until transaction end (LockRelationOid).  Weak modes go
        through the fast path when possible; strong modes (Share and up) first announce
        themselves, then wait until no fast-path holder conflicts and the shared table
        grants them."""
        dboid = 0 if oid < D.FIRST_NORMAL_OID and D.BY_OID.get(oid, None) is not None and D.BY_OID[oid].shared \
            else self.database.oid
        key = (1, dboid, oid, mode)
        if key in self.x.locks or (oid, mode) in self.x.lockset:
            return
        lt = self.env.locktable
        slot = self.procs.my
        if lt.fp_acquire(slot, dboid, oid, mode):
            self.x.lockset.add((oid, mode))
            self.x.fastpath = True
            return
        strong = mode >= 5
        if strong:
            lt.strong_begin(dboid, oid)
            self.x.strong.append((dboid, oid))
        start = time.monotonic()
        delay = 0.0005
        self.procs.set_wait("relation")
        try:
            while True:
                if not (strong and lt.fp_conflicts(slot, dboid, oid, mode)) and \
                        lt.try_acquire(slot, 1, dboid, oid, mode):
                    break
                if nowait:
                    raise PgError("55P03", f'could not obtain lock on relation "{self._relname(oid)}"')
                self.check_for_interrupts()
                lock_timeout = self.settings.value("lock_timeout")
                if lock_timeout and (time.monotonic() - start) * 1000 >= lock_timeout:
                    raise PgError("55P03", "canceling statement due to lock timeout")
                time.sleep(delay)
                delay = min(delay * 1.5, 0.01)
        finally:
            self.procs.set_wait(None)
        self.x.locks.append(key)
        self.x.lockset.add((oid, mode))

    def _relname(self, oid: int) -> str:
        r = self.catalog().relations.get(oid)
        return r.name if r else str(oid)

    # ================================================================== heap
    def _xid_for_write(self) -> tuple[int, int]:
        return self._write_ctx()

    def seq_scan(self, rel: RelationInfo, snapshot: Snapshot | None = None) -> Iterator[tuple[TID, Row]]:
        self._dml_lock(rel.oid, 1)
        rt = self._runtime(rel)
        snap = snapshot or self.snapshot()
        self.stats.table(rel.oid, 0, 1)
        n = 0
        try:
            for item in self.heap.scan(rt.dboid, rt.relnode, snap, rt.codec.decode):
                n += 1
                yield item
        finally:
            self.stats.table(rel.oid, 1, n)

    def fetch(self, rel: RelationInfo, tid: TID, snapshot: Snapshot | None = None) -> Row | None:
        rt = self._runtime(rel)
        data = self.heap.fetch(rt.dboid, rt.relnode, TID(*tid), snapshot or self.snapshot())
        return None if data is None else rt.codec.decode(data)

    def _check_not_null(self, rt: RelRuntime, row: Row) -> None:
        for i, name in rt.notnull:
            if i >= len(row) or row[i] is None:
                raise PgError("23502", f'null value in column "{name}" of relation "{rt.info.name}" violates '
                                       f"not-null constraint", detail=f"Failing row contains {_fmt_row(row)}.",
                              schema=rt.info.namespace, table=rt.info.name, column=name)

    def insert(self, rel: RelationInfo, row: Row) -> TID:
        self._dml_lock(rel.oid, 3)
        rt = self._runtime(rel)
        row = tuple(row)
        if len(row) != len(rt.info.columns):
            raise PgError("XX000", f"row has {len(row)} columns, relation \"{rel.name}\" has "
                                   f"{len(rt.info.columns)}")
        self._check_not_null(rt, row)
        xid, cid = self._write_ctx()
        tid = self.heap.insert(rt.dboid, rt.relnode, encode_row(row), xid, cid)
        self._undo("ins", rt.dboid, rt.relnode, tid)
        self._index_insert(rt, row, tid, xid)
        self.stats.table(rel.oid, 4, 1)
        return tid

    def insert_many(self, rel: RelationInfo, rows: Sequence[Row]) -> list[TID]:
        """As insert() row by row, with the heap tuples placed page by page: the rows
        before the first one a per-row check rejects (column count, NOT NULL, size) go in
        as one batch, then their index entries in order; that row and the rest go through
        insert(), so errors, their order and the statistics are those of insert()."""
        self._dml_lock(rel.oid, 3)
        rt = self._runtime(rel)
        ncols = len(rt.info.columns)
        notnull = [i for i, _name in rt.notnull]
        limit = P.MAX_TUPLE_SIZE - 4 - P.TH_SIZE
        rows = [tuple(r) for r in rows]
        datas = []
        for row in rows:
            if len(row) != ncols:
                break
            for i in notnull:
                if row[i] is None:
                    break
            else:
                data = encode_row(row)
                if len(data) <= limit:
                    datas.append(data)
                    continue
            break
        good = len(datas)
        tids: list[TID] = []
        if good:
            xid, cid = self._write_ctx()
            tids = self.heap.insert_many(rt.dboid, rt.relnode, datas, xid, cid)
            if self.x.savepoints:
                for tid in tids:
                    self._undo("ins", rt.dboid, rt.relnode, tid)
            done = 0
            try:
                if rt.indexes:
                    for row, tid in zip(rows, tids):
                        self._index_insert(rt, row, tid, xid)
                        done += 1
                else:
                    done = good
            finally:
                self.stats.table(rel.oid, 4, done)
        return tids + [self.insert(rel, r) for r in rows[good:]]

    def _index_insert(self, rt: RelRuntime, row: Row, tid: TID, xid: int) -> None:
        for idx, relnode, cols, types in rt.indexes:
            vals = tuple(row[c] for c in cols)
            key = encode_key(vals, types)
            check = None
            if idx.unique and not has_null(vals):
                check = self._unique_checker(rt, tid)
            while True:
                try:
                    self.btree.insert(rt.dboid, relnode, key, tid, xid, check)
                    break
                except NeedWait as w:
                    self.heap.wait_xid(w.xid, xid)
                except Duplicate:
                    names = ", ".join(rt.info.columns[c].name for c in cols)
                    raise PgError("23505", f'duplicate key value violates unique constraint "{idx.name}"',
                                  detail=f"Key ({names})=({', '.join(value_text(v) for v in vals)}) already exists.",
                                  schema=rt.info.namespace, table=rt.info.name, constraint=idx.name) from None

    def _unique_checker(self, rt: RelRuntime, own: TID) -> Any:
        heap = self.heap
        procs = self.procs
        my = self.x.xid

        def one(h: tuple) -> Any:
            xmin, xmax, _cmin, _cmax, _cb, _co, mask = h
            if mask & P.XMIN_INVALID:
                return "dead"
            if xmin != my and not mask & P.XMIN_COMMITTED:
                if procs.is_running(xmin):
                    return ("wait", xmin)
                if self.clog.status(xmin) != C.COMMITTED:
                    return "dead"
            if xmax and not mask & (P.XMAX_INVALID | P.XMAX_LOCK_ONLY):
                if xmax == my:
                    return "dead"
                if procs.is_running(xmax):
                    return ("wait", xmax)
                if mask & P.XMAX_COMMITTED or self.clog.status(xmax) == C.COMMITTED:
                    return "dead"
            return "live"

        def check(tid: TID) -> Any:
            if tid == own:
                return "dead"
            result: str | tuple[str, int] = "dead"
            for t, h in heap.chain_headers(rt.dboid, rt.relnode, tid):
                if t == own:
                    continue
                r = one(h)
                if r == "live":
                    return r
                if isinstance(r, tuple):
                    result = r
            return result

        return check

    def _prepare_change(self, rt: RelRuntime, tid: TID, lock_only: bool = False,
                        want_data: bool = False) -> Any:
        """Wait out other writers; return the header to change (with ``want_data``:
        (header, row data)), or a Conflict."""
        xid, cid = self._write_ctx()
        while True:
            state, h, data = self.heap.examine_data(rt.dboid, rt.relnode, tid, xid, cid)
            if state == BEING_UPDATED:
                xmin, xmax = h[0], h[1]
                other = xmax if xmax and xmax != xid and self.procs.is_running(xmax) else xmin
                self.heap.wait_xid(other, xid)
                continue
            if state in (UPDATED, DELETED):
                if self._rr():
                    what = "update" if state == UPDATED else "delete"
                    raise PgError("40001", f"could not serialize access due to concurrent {what}")
                if state == DELETED:
                    return Conflict("deleted")
                newest = self.heap.follow_chain(rt.dboid, rt.relnode, tid)
                if newest is None:
                    return Conflict("deleted")
                ndata = self.heap.fetch(rt.dboid, rt.relnode, newest, None)
                if ndata is None:
                    return Conflict("deleted")
                return Conflict("updated", newest, rt.codec.decode(ndata))
            if state == SELF_UPDATED:
                return Conflict("self")
            if state == INVISIBLE:
                return Conflict("deleted")
            return (h, data) if want_data else h

    def update(self, rel: RelationInfo, tid: TID, row: Row) -> TID | Conflict:
        self._dml_lock(rel.oid, 3)
        rt = self._runtime(rel)
        tid = TID(*tid)
        row = tuple(row)
        self._check_not_null(rt, row)
        data = encode_row(row)
        while True:
            r = self._prepare_change(rt, tid, want_data=True)
            if isinstance(r, Conflict):
                return r
            h, olddata = r
            hot_ok = True
            if rt.indexes:
                old = rt.codec.decode(olddata)
                for c in rt.indexed_columns:
                    a, b = old[c], row[c]
                    if a is not b and (type(a) is not type(b) or a != b):
                        hot_ok = False
                        break
            xid, cid = self.x.xid, self.x.cid
            new_tid, hot = self.heap.update(rt.dboid, rt.relnode, tid, h, data, xid, cid, hot_ok)
            if new_tid is not None:
                break
        self._undo("ins", rt.dboid, rt.relnode, new_tid)
        self._undo("hdr", rt.dboid, rt.relnode, tid, h)
        if not hot:
            self._index_insert(rt, row, new_tid, xid)
        self.stats.table(rel.oid, 5, 1)
        if hot:
            self.stats.table(rel.oid, 10, 1)  # n_tup_hot_upd
        return new_tid

    def delete(self, rel: RelationInfo, tid: TID) -> bool | Conflict:
        self._dml_lock(rel.oid, 3)
        rt = self._runtime(rel)
        tid = TID(*tid)
        while True:
            h = self._prepare_change(rt, tid)
            if isinstance(h, Conflict):
                return h
            xid, cid = self.x.xid, self.x.cid
            mask = h[6] & P.KEEP_ON_XMAX
            if self.heap.set_header(rt.dboid, rt.relnode, tid, xid, xmax=xid, cmax=cid, mask=mask, ctid=tid,
                                    expect=h):
                break
        self._undo("hdr", rt.dboid, rt.relnode, tid, h)
        self.stats.table(rel.oid, 6, 1)
        return True

    def lock_row(self, rel: RelationInfo, tid: TID, mode: RowLockMode = RowLockMode.UPDATE,
                 nowait: bool = False, skip_locked: bool = False) -> TID | Conflict | None:
        rt = self._runtime(rel)
        tid = TID(*tid)
        xid, cid = self._write_ctx()
        while True:
            state, h = self.heap.examine(rt.dboid, rt.relnode, tid, xid, cid)
            if state == BEING_UPDATED:
                if skip_locked:
                    return None
                if nowait:
                    raise PgError("55P03", f'could not obtain lock on row in relation "{rel.name}"')
            h2 = self._prepare_change(rt, tid)
            if isinstance(h2, Conflict):
                return h2
            if h2[1] == xid:  # already ours
                return tid
            mask = (h2[6] & P.KEEP_ON_XMAX) | P.XMAX_LOCK_ONLY
            if self.heap.set_header(rt.dboid, rt.relnode, tid, xid, xmax=xid, cmax=cid, mask=mask,
                                    ctid=TID(h2[4], h2[5]), expect=h2):
                self._undo("hdr", rt.dboid, rt.relnode, tid, h2)
                return tid

    # ================================================================== indexes
    def index_scan(self, index: IndexInfo, lower: IndexBound | None = None, upper: IndexBound | None = None, *,
                   snapshot: Snapshot | None = None, backward: bool = False) -> Iterator[tuple[TID, Row]]:
        table = self.relation(index.table_oid)
        self._dml_lock(table.oid, 1)
        rt = self._runtime(table)
        irel = self._cache_rel(index.oid)
        if irel is None:
            raise PgError("42P01", f'index "{index.name}" does not exist')
        types = [table.columns[a - 1].type_oid for a in index.columns]
        lo = None if lower is None else b"".join([encode_value(v, t) for v, t in zip(lower.values, types)])
        if upper is None:
            hi = None
        elif lower is not None and len(upper.values) == len(lower.values) and all(
                a is b for a, b in zip(upper.values, lower.values)):
            hi = lo  # an equality: the same key
        else:
            hi = b"".join([encode_value(v, t) for v, t in zip(upper.values, types)])
        snap = snapshot or self.snapshot()
        self.stats.table(table.oid, 2, 1)
        tids = self.btree.scan(rt.dboid, irel.relfilenode, lo, lower.inclusive if lower else True, hi,
                               upper.inclusive if upper else True)
        if backward:
            tids = iter(list(tids)[::-1])
        n = 0
        hot_fetch = self.heap.hot_fetch
        decode = rt.codec.decode
        for tid in tids:
            got = hot_fetch(rt.dboid, rt.relnode, tid, snap)
            if got is not None:
                n += 1
                yield got[0], decode(got[1])
        self.stats.table(table.oid, 3, n)

    # ================================================================== sequences
    def nextval(self, seq_oid: int) -> int:
        v = sequence.nextval(self, seq_oid)
        self._seq_last[seq_oid] = v
        self._lastval = v
        return v

    def currval(self, seq_oid: int) -> int:
        if seq_oid not in self._seq_last:
            raise PgError("55000", f'currval of sequence "{self._relname(seq_oid)}" is not yet defined in this '
                                   f"session")
        return self._seq_last[seq_oid]

    def setval(self, seq_oid: int, value: int, is_called: bool = True) -> int:
        sequence.setval(self, seq_oid, value, is_called)
        if is_called:
            self._seq_last[seq_oid] = value
            self._lastval = value
        return value

    def lastval(self) -> int:
        if self._lastval is None:
            raise PgError("55000", "lastval is not yet defined in this session")
        return self._lastval

    # ================================================================== maintenance
    def vacuum(self, rel: RelationInfo | None = None, *, full: bool = False, freeze: bool = False,
               analyze: bool = False, verbose: bool = False, autovacuum: bool = False) -> list[api.VacuumResult]:

        if self.x.block:
            raise PgError("25001", "VACUUM cannot run inside a transaction block")
        return self._maintenance(not self.x.active, lambda: vacuum.vacuum(
            self, rel, analyze=analyze, verbose=verbose, autovacuum=autovacuum, full=full))

    def analyze(self, rel: RelationInfo | None = None) -> None:
        """ANALYZE: in the running transaction block, or in a transaction of its own."""

        self._maintenance(not self.x.block, lambda: vacuum.analyze(self, rel))

    def _maintenance(self, own: bool, work: Callable[[], Any]) -> Any:
        """Run ``work`` in a transaction of its own (``own``: started if none runs, committed
        after, rolled back on error) or in the caller's."""
        if own and not self.x.active:
            self.start_statement()
        try:
            res = work()
        except BaseException:
            if own:
                self.rollback()
            raise
        if own:
            self.commit()
        return res

    def relation_pages(self, oid: int) -> int:
        """Current size of a relation in pages (0 for relations without storage)."""
        rel = self._cache_rel(oid)
        if rel is None or rel.kind == api.RelKind.VIEW or not rel.relfilenode:
            return 0
        rt = self._runtime(rel)
        return self.bm.nblocks(rt.dboid, rt.relnode)

    def column_stats(self, oid: int) -> dict[int, tuple]:
        """pg_statistic of a table: attnum -> (null_frac, width, n_distinct, stats dict), cached
        per catalog version."""
        import json

        cache = self.catalog()
        hit = getattr(self, "_colstats", None)
        if hit is None or hit[0] is not cache:
            allstats: dict[int, dict[int, tuple]] = {}
            for _tid, r in self.ddl.rows("pg_statistic"):
                try:
                    extra = json.loads(r[6]) if r[6] else {}
                except ValueError:
                    extra = {}
                allstats.setdefault(r[0], {})[r[1]] = (r[3], r[4], r[5], extra)
            hit = self._colstats = (cache, allstats)
        return hit[1].get(oid, {})

    def checkpoint(self) -> None:
        if not self.role.superuser:
            raise PgError("42501", "must be superuser to do CHECKPOINT")
        checkpoint.request(self.env, checkpoint.CKPT_IMMEDIATE | checkpoint.CKPT_FORCE | checkpoint.CKPT_WAIT,
                           wait=True, check=self.check_for_interrupts)

    # ================================================================== statistics and activity
    def activity(self) -> list[api.BackendStatus]:
        out = []
        for e in self.procs.entries():
            client = e["backend_type"] in ("client backend", "autovacuum worker", "walsender", "background worker")
            state = e["state"] if e["backend_type"] == "client backend" else None
            if state == "starting":
                state = None
            addr = e["client_addr"] or None
            out.append(api.BackendStatus(
                pid=e["pid"], backend_type=e["backend_type"], datid=e["dboid"] or None,
                datname=e["datname"] or None, usesysid=e["userid"] or None, usename=e["usename"] or None,
                application_name=e["appname"] if client else "", client_addr=addr if addr != "local" else None,
                client_hostname=None, client_port=(e["client_port"] or (-1 if addr == "local" else None)),
                backend_start=_ts(e["backend_start"]), xact_start=_ts(e["xact_start"]),
                query_start=_ts(e["query_start"]) if client else None,
                state_change=_ts(e["state_change"]) if client else None, wait_event_type=e["wait_event_type"],
                wait_event=e["wait_event"], state=state, backend_xid=e["xid"] or None,
                backend_xmin=e["xmin"] or None, query_id=None, query=e["query"] if client else ""))
        return out

    def database_stats(self) -> list[api.DatabaseStats]:
        return pgstat.read_database_stats(self)

    def table_stats(self) -> list[api.TableStats]:
        return pgstat.read_table_stats(self)

    def bgwriter_stats(self) -> dict[str, Any]:
        c = self.env.ctl
        return dict(checkpoints_timed=c.get("num_timed"), checkpoints_req=c.get("num_requested"),
                    checkpoint_write_time=c.get("ckpt_write_time"), checkpoint_sync_time=c.get("ckpt_sync_time"),
                    buffers_checkpoint=c.get("buffers_checkpoint"), buffers_clean=c.get("buffers_clean"),
                    maxwritten_clean=c.get("maxwritten_clean"), buffers_backend=c.get("buffers_backend"),
                    buffers_backend_fsync=c.get("buffers_backend_fsync"), buffers_alloc=c.get("buffers_alloc"),
                    stats_reset=_ts(c.get("stats_reset")))

    def checkpointer_stats(self) -> dict[str, Any]:
        c = self.env.ctl
        return dict(num_timed=c.get("num_timed"), num_requested=c.get("num_requested"), restartpoints_timed=0,
                    restartpoints_req=0, restartpoints_done=0, write_time=c.get("ckpt_write_time"),
                    sync_time=c.get("ckpt_sync_time"), buffers_written=c.get("buffers_checkpoint"),
                    stats_reset=_ts(c.get("stats_reset")))

    def wal_stats(self) -> dict[str, Any]:
        c = self.env.ctl
        return dict(wal_records=c.get("wal_records"), wal_fpi=c.get("wal_fpi"), wal_bytes=c.get("wal_bytes"),
                    wal_buffers_full=c.get("wal_buffers_full"), wal_write=c.get("wal_write"),
                    wal_sync=c.get("wal_sync"), wal_write_time=0.0, wal_sync_time=0.0,
                    stats_reset=_ts(c.get("stats_reset")), lsn=fmt_lsn(self.xlog.insert_pos))

    def archiver_stats(self) -> dict[str, Any]:
        c = self.env.ctl
        seg = self.xlog.segsize
        return dict(archived_count=c.get("archived_count"),
                    last_archived_wal=segment_name(c.get("last_archived_segno"), seg) if c.get("archived_count")
                    else None, last_archived_time=_ts(c.get("last_archived_time")),
                    failed_count=c.get("failed_count"),
                    last_failed_wal=segment_name(c.get("last_failed_segno"), seg) if c.get("failed_count") else None,
                    last_failed_time=_ts(c.get("last_failed_time")), stats_reset=_ts(c.get("stats_reset")))

    def _signal_backend(self, pid: int, sig: int) -> bool:
        import signal as _signal

        for e in self.procs.entries():
            if e["pid"] == pid:
                if e["backend_type"] != "client backend" and sig == _signal.SIGTERM and not self.role.superuser:
                    return False
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    return False
                return True
        self.notices.append(Notice("WARNING", "01000", f"PID {pid} is not a PostgreSQL server process"))
        return False

    def cancel_backend(self, pid: int) -> bool:
        import signal as _signal

        return self._signal_backend(pid, _signal.SIGINT)

    def terminate_backend(self, pid: int) -> bool:
        import signal as _signal

        return self._signal_backend(pid, _signal.SIGTERM)

    def postmaster_start_time(self) -> Any:
        return _ts(self.env.ctl.get("start_time"))

    # ================================================================== advisory locks
    def advisory_lock(self, key: int, *, shared: bool = False, session: bool = True, wait: bool = True) -> bool:
        mode = 5 if shared else 7
        lt = self.env.locktable
        objid = key & 0xFFFFFFFFFFFFFFFF
        delay = 0.0005
        while not lt.try_acquire(self.procs.my, 2, self.database.oid, objid, mode):
            if not wait:
                return False
            self.check_for_interrupts()
            time.sleep(delay)
            delay = min(delay * 1.5, 0.01)
        if session:
            self._advisory[(key, shared)] = self._advisory.get((key, shared), 0) + 1
        else:
            self.x.locks.append((2, self.database.oid, objid, mode))
        return True

    def advisory_unlock(self, key: int, *, shared: bool = False) -> bool:
        n = self._advisory.get((key, shared), 0)
        if not n:
            self.notices.append(Notice("WARNING", "01000", f"you don't own a lock of type "
                                                           f"{'ShareLock' if shared else 'ExclusiveLock'}"))
            return False
        self.env.locktable.release(self.procs.my, 2, self.database.oid, key & 0xFFFFFFFFFFFFFFFF, 5 if shared else 7)
        if n == 1:
            del self._advisory[(key, shared)]
        else:
            self._advisory[(key, shared)] = n - 1
        return True

    def advisory_unlock_all(self) -> None:
        for (key, shared), n in list(self._advisory.items()):
            for _ in range(n):
                self.env.locktable.release(self.procs.my, 2, self.database.oid, key & 0xFFFFFFFFFFFFFFFF,
                                           5 if shared else 7)
        self._advisory.clear()

    def close(self) -> None:
        """Session end: abort any open transaction, release session locks, flush stats."""
        try:
            self.rollback()
        finally:
            self.advisory_unlock_all()
            if self.procs.my >= 0:
                self.env.locktable.release_all(self.procs.my)
                self.env.locktable.fp_release_all(self.procs.my)
            self.stats.flush(force=True)


def _fmt_row(row: Row) -> str:
    return "(" + ", ".join(value_text(v) for v in row) + ")"


_ = struct
