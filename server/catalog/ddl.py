"""Catalog rows, name lookups and DDL of one backend: :class:`CatalogDDL` (PostgreSQL's
catalog/heap.c, index.c, namespace.c and pg_*.c, with the catalog side of commands/tablecmds.c,
dbcommands.c and user.c).

BackendEngine (access/engine.py) holds one as ``engine.ddl`` and delegates the catalog methods
of api.Engine to it; the component reaches the engine only through :class:`DDLEngine`, the heap,
transaction and catalog-cache operations it names.  Every DDL step writes catalog rows with the
backend's current xid through the heap, so it is WAL-logged, crash-safe and rolled back with the
transaction.  Relation files created by a transaction are removed if it aborts; files of dropped
relations are removed when it commits (listed in its commit record, so redo removes them too).
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from pgbundle.server.access import api, page as P, sequence
from pgbundle.server.access.api import TID, ColumnDef, ConstraintInfo, IndexInfo, RelationInfo, Row, Snapshot
from pgbundle.server.access.heapam import Heap, plainly_visible
from pgbundle.server.access.nbtkey import encode_key, has_null, value_encoder
from pgbundle.server.access.tupdesc import RowCodec, encode_row, value_text
from pgbundle.server.catalog import cache as CC, defs as D, tempns
from pgbundle.server.errors import PgError
from pgbundle.server.storage import clog as C
from pgbundle.shared.auth import md5, scram

if TYPE_CHECKING:
    from pgbundle.server.access.nbtree import BTree
    from pgbundle.server.access.xact import TransactionState
    from pgbundle.server.storage.procarray import ProcArray
    from pgbundle.server.utils.pgstat import Reporter

XLOG_NEXTOID = 0x30
RM_XLOG = 0
RM_DBASE = 4
XLOG_DBASE_CREATE = 0x00
_U32 = struct.Struct("<I")
_DB = struct.Struct("<II")

SEQ_LIMITS = {21: (-32768, 32767), 23: (-2147483648, 2147483647), 20: (-(2**63), 2**63 - 1)}


# Catalog row predicates and rewrites (pg_class / pg_constraint rows start with their oid;
# pg_attribute rows are (attrelid, attname, atttypid, ..., attnum at 5, ...)).
def _oid_is(oid: int) -> Callable[[tuple], bool]:
    return lambda r: r[0] == oid


def _attribute_is(relid: int, attnum: int) -> Callable[[tuple], bool]:
    return lambda r: r[0] == relid and r[5] == attnum


def _new_file_row(relfilenode: int, reset_stats: bool) -> Callable[[tuple], tuple]:
    """pg_class row with a new relfilenode (and relpages 0, reltuples -1 when ``reset_stats``)."""
    return lambda r: r[:7] + (relfilenode,) + (r[8:9] + (0, -1.0) + r[11:] if reset_stats else r[8:])


def _retyped_column_row(typ: int, typmod: int, lay: tuple) -> Callable[[tuple], tuple]:
    """pg_attribute row of a table column given a new type (atttypid, attlen, atttypmod, attbyval,
    attalign; no attmissingval)."""
    return lambda r: r[:2] + (typ,) + r[3:4] + (lay[0],) + r[5:8] + (typmod, lay[1], lay[2]) + r[11:25] + (None,)


def _retyped_index_column_row(typ: int, typmod: int) -> Callable[[tuple], tuple]:
    """pg_attribute row of an index column given a new type."""
    return lambda r: r[:2] + (typ,) + r[3:8] + (typmod,) + r[9:]


class RelationFile(Protocol):
    """What DDL reads of the engine's runtime data of a relation: where its heap is and how
    its tuples decode."""

    dboid: int
    relnode: int
    codec: RowCodec


class DDLEngine(Protocol):
    """What :class:`CatalogDDL` uses of its engine (the BackendEngine): the backend's
    database, role, settings and notices, the heap, B-trees and transaction state, the
    catalog cache and the row operations catalog rows go through."""

    env: Any
    database: api.DatabaseInfo
    role: api.RoleInfo
    settings: Any
    notices: list[api.Notice]
    procs: ProcArray
    clog: C.Clog
    heap: Heap
    btree: BTree
    x: TransactionState
    stats: Reporter

    def catalog(self) -> CC.CatalogCache: ...
    def _scan_catalog(self, cat: D.CatalogDef, snap: Snapshot | None = None) -> list[tuple[TID, tuple]]: ...
    def _catalog_snapshot(self) -> Snapshot: ...
    def _mark_catalog_changed(self) -> None: ...
    def _runtime(self, rel: RelationInfo) -> RelationFile: ...
    def _write_ctx(self) -> tuple[int, int]: ...
    def _undo(self, *entry: Any) -> None: ...
    def command_counter_increment(self) -> None: ...
    def check_for_interrupts(self) -> None: ...
    def lock_relation(self, oid: int, mode: int, *, nowait: bool = False) -> None: ...
    def seq_scan(self, rel: RelationInfo, snapshot: Snapshot | None = None) -> Iterator[tuple[TID, Row]]: ...
    def insert(self, rel: RelationInfo, row: Row) -> TID: ...
    def update(self, rel: RelationInfo, tid: TID, row: Row) -> TID | api.Conflict: ...
    def delete(self, rel: RelationInfo, tid: TID) -> bool | api.Conflict: ...


class CatalogDDL:
    """The catalog rows, lookups and DDL of one backend's engine."""

    def __init__(self, engine: DDLEngine) -> None:
        self.engine = engine

    # ------------------------------------------------------------------ low-level catalog rows
    def _cat_loc(self, name: str) -> tuple[D.CatalogDef, int]:
        cat = D.BY_NAME[name]
        return cat, 0 if cat.shared else self.engine.database.oid

    def insert_row(self, name: str, row: tuple) -> TID:
        cat, dboid = self._cat_loc(name)
        if len(row) != len(cat.columns):
            raise AssertionError(f"{name}: row has {len(row)} fields, catalog {len(cat.columns)}")
        xid, cid = self.engine._write_ctx()
        tid = self.engine.heap.insert(dboid, cat.oid, encode_row(row), xid, cid)
        self.engine._undo("ins", dboid, cat.oid, tid)
        self.engine._mark_catalog_changed()
        return tid

    def rows(self, name: str) -> list[tuple[TID, tuple]]:
        return self.engine._scan_catalog(D.BY_NAME[name])

    def delete_rows(self, name: str, pred: Callable[[tuple], bool]) -> int:
        cat, dboid = self._cat_loc(name)
        n = 0
        for tid, row in self.rows(name):
            if pred(row):
                rel = CC.bootstrap_relation(cat)
                r = self.engine.delete(rel, tid)
                if r is True:
                    n += 1
                elif isinstance(r, api.Conflict) and r.kind != "self":
                    raise PgError("XX000", "tuple concurrently updated")
        if n:
            self.engine._mark_catalog_changed()
        return n

    def update_rows(self, name: str, pred: Callable[[tuple], bool], fn: Callable[[tuple], tuple],
                    invalidate: bool = True) -> int:
        cat, dboid = self._cat_loc(name)
        n = 0
        for tid, row in self.rows(name):
            if pred(row):
                rel = CC.bootstrap_relation(cat)
                r = self.engine.update(rel, tid, fn(row))
                if isinstance(r, api.Conflict):
                    if r.kind == "self":
                        continue
                    raise PgError("XX000", "tuple concurrently updated")
                n += 1
        if n and invalidate:
            self.engine._mark_catalog_changed()
        return n

    def allocate_oid(self) -> int:
        ctl = self.engine.env.ctl
        with self.engine.env.locks.OidGenLock:
            oid = ctl.get("next_oid")
            if oid < D.FIRST_NORMAL_OID:
                oid = D.FIRST_NORMAL_OID
            limit = ctl.get("oid_limit")
            if oid >= limit:
                limit = oid + 8192
                self.engine.env.xlog.insert(RM_XLOG, XLOG_NEXTOID, 0, (), _U32.pack(limit))
                ctl.set("oid_limit", limit)
            ctl.set("next_oid", oid + 1)
        return oid

    # ------------------------------------------------------------------ lookups
    @property
    def search_path(self) -> list[str]:
        raw = str(self.engine.settings.value("search_path"))
        out = []
        for part in raw.split(","):
            p = part.strip()
            if p.startswith('"') and p.endswith('"'):
                p = p[1:-1]
            if p == "$user":
                p = self.engine.role.name
            if p:
                out.append(p)
        return out

    def lookup_namespace(self, name: str) -> int | None:
        return self.engine.catalog().ns_by_name.get(name)

    def namespaces(self) -> list[tuple[int, str, int]]:
        return [(oid, n, owner) for oid, (n, owner) in self.engine.catalog().namespaces.items()]

    def lookup_relation(self, name: str, schema: str | None = None) -> RelationInfo | None:
        cache = self.engine.catalog()
        if schema is not None:
            if schema == tempns.ALIAS:
                schema = tempns.schema_name(self.engine)
            ns = cache.ns_by_name.get(schema)
            if ns is None:
                return None
            oid = cache.by_name.get((ns, name))
            return cache.relations.get(oid) if oid is not None else None
        if tempns.used(self.engine):
            temp = tempns.lookup(self.engine, name)
            if temp is not None:
                return temp
        path = self.search_path
        if "pg_catalog" not in path:
            path = ["pg_catalog", *path]
        for s in path:
            ns = cache.ns_by_name.get(s)
            if ns is None:
                continue
            oid = cache.by_name.get((ns, name))
            if oid is not None:
                return cache.relations[oid]
        return None

    def relation(self, oid: int) -> RelationInfo:
        r = self.engine.catalog().relations.get(oid)
        if r is None:
            raise PgError("42P01", f"could not open relation with OID {oid}")
        return r

    def relations(self, kinds: str = "rivSmpcf") -> list[RelationInfo]:
        return [r for r in self.engine.catalog().relations.values() if r.kind.value in kinds]

    def _creation_namespace(self, schema: str | None) -> tuple[int, str]:
        cache = self.engine.catalog()
        if schema is not None:
            if schema in (tempns.ALIAS, tempns.schema_name(self.engine)):
                return tempns.creation_namespace(self.engine)
            ns = cache.ns_by_name.get(schema)
            if ns is None:
                raise PgError("3F000", f'schema "{schema}" does not exist')
            return ns, schema
        for s in self.search_path:
            ns = cache.ns_by_name.get(s)
            if ns is not None and s != "pg_catalog":
                return ns, s
        raise PgError("3F000", "no schema has been selected to create in")

    def _choose_name(self, base: str, ns: int) -> str:
        cache = self.engine.catalog()
        name = base[:63]
        n = 0
        while (ns, name) in cache.by_name:
            n += 1
            suffix = str(n)
            name = base[: 63 - len(suffix)] + suffix
        return name

    # ------------------------------------------------------------------ relations
    def _new_relation_file(self, oid: int, shared: bool = False) -> None:
        dboid = 0 if shared else self.engine.database.oid
        self.engine.env.smgr.create(dboid, oid)
        self.engine.x.created.append((dboid, oid))

    def create_table(self, name: str, columns: Sequence[ColumnDef], *, schema: str | None = None,
                     primary_key: Sequence[str] | None = None, unique: Sequence[Sequence[str]] = (),
                     constraint_names: dict[tuple[str, ...], str] | None = None, if_not_exists: bool = False,
                     persistence: str = "p", options: Sequence[str] = ()) -> RelationInfo | None:
        ns, nsname = self._creation_namespace(schema)
        cache = self.engine.catalog()
        if (ns, name) in cache.by_name:
            if if_not_exists:
                self.engine.notices.append(api.Notice("NOTICE", "42P07", f'relation "{name}" already exists, skipping'))
                return None
            raise PgError("42P07", f'relation "{name}" already exists')
        seen = set()
        for c in columns:
            if c.name in seen:
                raise PgError("42701", f'column "{c.name}" specified more than once')
            seen.add(c.name)
        pk = tuple(primary_key or ())
        for col in pk:
            if col not in seen:
                raise PgError("42703", f'column "{col}" named in key does not exist')
        oid = self.allocate_oid()
        typoid = self.allocate_oid()
        self._new_relation_file(oid)
        self.insert_row("pg_class", CC.class_row(oid, name, ns, "r", len(columns), reltype=typoid,
                                                 owner=self.engine.role.oid, persistence=persistence, relam=2,
                                                 options=list(options) or None))
        self.insert_row("pg_type", _type_row(typoid, name, ns, self.engine.role.oid, relid=oid))
        for i, c in enumerate(columns):
            notnull = c.not_null or c.name in pk
            self.insert_row("pg_attribute", CC.attr_row(oid, c.name, c.type_oid, i + 1, typmod=c.typmod,
                                                        notnull=notnull, hasdef=c.default is not None,
                                                        identity=c.identity))
            if c.default is not None:
                self.insert_row("pg_attrdef", (self.allocate_oid(), oid, i + 1, c.default))
        self.engine.command_counter_increment()
        names = constraint_names or {}
        colnum = {c.name: i + 1 for i, c in enumerate(columns)}
        if pk:
            self.create_index(oid, names.get(pk, f"{name}_pkey"), [colnum[c] for c in pk], unique=True,
                              primary=True, constraint=True)
        for u in unique:
            u = tuple(u)
            for col in u:
                if col not in colnum:
                    raise PgError("42703", f'column "{col}" named in key does not exist')
            iname = names.get(u) or self._choose_name(f"{name}_{'_'.join(u)}_key", ns)
            self.create_index(oid, iname, [colnum[c] for c in u], unique=True, constraint=True)
        self.engine.command_counter_increment()
        return self.relation(oid)

    def create_index(self, table_oid: int, name: str | None, columns: Sequence[int], *, unique: bool = False,
                     primary: bool = False, if_not_exists: bool = False, constraint: bool = False,
                     options: Sequence[int] | None = None) -> IndexInfo | None:
        table = self.relation(table_oid)
        self.engine.lock_relation(table_oid, 5)
        if table.kind != api.RelKind.TABLE:
            raise PgError("42809", f'"{table.name}" is not a table')
        cols = list(columns)
        for a in cols:
            if a < 1 or a > len(table.columns) or table.columns[a - 1].dropped:
                raise PgError("42703", f"column number {a} does not exist")
        if primary and table.primary_key is not None:
            raise PgError("42P16", f'multiple primary keys for table "{table.name}" are not allowed')
        ns = table.namespace_oid
        if name is None:
            name = self._choose_name(f"{table.name}_{'_'.join(table.columns[a - 1].name for a in cols)}_idx", ns)
        cache = self.engine.catalog()
        if (ns, name) in cache.by_name:
            if if_not_exists:
                self.engine.notices.append(api.Notice("NOTICE", "42P07", f'relation "{name}" already exists, skipping'))
                return None
            raise PgError("42P07", f'relation "{name}" already exists')
        oid = self.allocate_oid()
        self._new_relation_file(oid)
        xid, _cid = self.engine._write_ctx()
        self.engine.btree.create_empty(self.engine.database.oid, oid, xid)
        self.insert_row("pg_class", CC.class_row(oid, name, ns, "i", len(cols), owner=table.owner, relam=403))
        for i, a in enumerate(cols):
            c = table.columns[a - 1]
            self.insert_row("pg_attribute", CC.attr_row(oid, c.name, c.type_oid, i + 1, typmod=c.typmod))
        self.insert_row("pg_index", (oid, table_oid, len(cols), len(cols), unique, False, primary, False, True,
                                     False, True, False, True, True, False, cols, [0] * len(cols),
                                     [0] * len(cols), list(options or [0] * len(cols)), None, None))
        if primary:
            pkset = set(cols)
            self.update_rows("pg_attribute", lambda r: r[0] == table_oid and r[5] in pkset and not r[13],
                             lambda r: r[:13] + (True,) + r[14:])
        if constraint:
            self.insert_row("pg_constraint", _constraint_row(self.allocate_oid(), name, ns,
                                                             "p" if primary else "u", table_oid, cols, oid))
        self.update_rows("pg_class", lambda r: r[0] == table_oid and not r[13], lambda r: r[:13] + (True,) + r[14:])
        self.engine.command_counter_increment()
        self._build_index(table_oid, oid, cols, unique, name)
        info = self.relation(oid).index_info
        assert info is not None
        return info

    def _build_index(self, table_oid: int, index_oid: int, cols: list[int], unique: bool, name: str) -> None:
        """Fill a new index from its table in one pass over the heap: the root of each HOT
        chain is indexed with the key of its newest version that was not rolled back; a
        unique index first rejects two rows visible to the catalog snapshot with equal
        keys (the second one, in heap order, is reported).  Each tuple is decoded once;
        the entries are sorted and written bottom-up by :meth:`BTree.build`."""

        engine = self.engine
        table = self.relation(table_oid)
        rt = engine._runtime(table)
        types = tuple(table.columns[a - 1].type_oid for a in cols)
        pos = [a - 1 for a in cols]
        heap = engine.heap
        bm = engine.env.bm
        xid = engine.x.xid
        decode = rt.codec.decode
        tid_pack = struct.Struct(">IH").pack
        null_in: Callable[[tuple], bool] = has_null
        if len(pos) == 1:
            c0 = pos[0]
            enc0 = value_encoder(types[0])

            def values(row: tuple) -> tuple:
                return (row[c0],)

            def key_of(vals: tuple) -> bytes:
                return enc0(vals[0])

            def null_in_one(vals: tuple) -> bool:
                return vals[0] is None
            null_in = null_in_one
        else:
            def values(row: tuple) -> tuple:
                return tuple(row[c] for c in pos)

            def key_of(vals: tuple) -> bytes:
                return encode_key(vals, types)
        snap = engine._catalog_snapshot() if unique else None
        seen: set[bytes] = set()
        entries: list[bytes] = []
        committed: dict[int, bool] = {}
        nblocks = bm.nblocks(rt.dboid, rt.relnode)
        for block in range(nblocks):
            engine.check_for_interrupts()
            keys: dict[int, tuple[tuple, bytes]] = {}  # offnum -> (values, key), each tuple decoded once
            chains, plain = heap.block_chains(rt.dboid, rt.relnode, block)
            if snap is not None:
                if plain and plainly_visible(chains, snap):
                    visible = [(vs[0][0], vs[0][4]) for _root, vs in chains]
                else:  # the tuples the snapshot sees (a scan may prune the page first: read it again)
                    visible = heap.scan_block(rt.dboid, rt.relnode, block, snap)
                    chains, plain = heap.block_chains(rt.dboid, rt.relnode, block)
                heap.tup_returned += len(visible)
                for off, data in visible:
                    vals = values(decode(data))
                    k = keys[off] = (vals, key_of(vals))
                    if null_in(vals):
                        continue
                    if k[1] in seen:
                        names = ", ".join(table.columns[a - 1].name for a in cols)
                        raise PgError("23505", f'could not create unique index "{name}"',
                                      detail=f"Key ({names})=({', '.join(value_text(v) for v in vals)}) is duplicated.")
                    seen.add(k[1])
            for root, versions in chains:
                # index the root of each HOT chain with the key of its newest version that
                # was not rolled back
                for o, xmin, _xmax, mask, data in reversed(versions):
                    if mask & P.XMIN_INVALID:
                        continue
                    if not mask & P.XMIN_COMMITTED and xmin != xid:
                        ok = committed.get(xmin)
                        if ok is None:
                            running = engine.procs.is_running(xmin)
                            ok = running or engine.clog.status(xmin) == C.COMMITTED
                            if not running:
                                committed[xmin] = ok  # a finished transaction's fate is settled
                        if not ok:
                            continue
                    known = keys.get(o)
                    entries.append((known[1] if known is not None else key_of(values(decode(data))))
                                   + tid_pack(block, root))
                    break
        engine.stats.table(table_oid, 0, 1)  # counted as a seq scan, as in
        engine.stats.table(table_oid, 1, len(entries))  # PostgreSQL's builds
        entries.sort()
        irel = self.relation(index_oid)
        engine.btree.build(rt.dboid, irel.relfilenode, entries, xid)

    def drop_relation(self, oid: int, *, cascade: bool = False) -> None:
        rel = self.relation(oid)
        if rel.namespace == "pg_catalog":
            raise PgError("42501", f'permission denied: "{rel.name}" is a system catalog')
        self.engine.lock_relation(oid, 8)
        cache = self.engine.catalog()
        if rel.kind == api.RelKind.INDEX:
            for c in self._constraints_using_index(oid):
                if not cascade:
                    table = cache.relations.get(c.table_oid)
                    raise PgError("2BP01", f'cannot drop index {rel.name} because constraint {c.name} on table '
                                           f"{table.name if table else '?'} requires it",
                                  hint=f"You can drop constraint {c.name} on table "
                                       f"{table.name if table else '?'} instead.")
        victims = [rel]
        if rel.kind == api.RelKind.TABLE:
            for idx in rel.indexes:
                r = cache.relations.get(idx.oid)
                if r is not None:
                    victims.append(r)
            for seq_oid, (tab, _att) in cache.seq_owned.items():
                if tab == oid and seq_oid in cache.relations:
                    victims.append(cache.relations[seq_oid])
        ids = {v.oid for v in victims}
        if rel.kind == api.RelKind.TABLE:
            deps = [(other, c) for other in cache.relations.values() if other.oid != oid
                    for c in other.constraints if c.kind == "f" and c.ref_table_oid == oid]
            if deps and not cascade:
                other, c = deps[0]
                raise PgError("2BP01", f"cannot drop table {rel.name} because other objects depend on it",
                              detail="\n".join(f"constraint {c.name} on table {o.name} depends on table {rel.name}"
                                               for o, c in deps),
                              hint="Use DROP ... CASCADE to drop the dependent objects too.")
            for other, c in deps:
                self.engine.notices.append(api.Notice("NOTICE", "00000", f"drop cascades to constraint {c.name} "
                                                                         f"on table {other.name}"))
                self.delete_rows("pg_constraint", _oid_is(c.oid))
        self.delete_rows("pg_class", lambda r: r[0] in ids)
        self.delete_rows("pg_attribute", lambda r: r[0] in ids)
        self.delete_rows("pg_attrdef", lambda r: r[1] in ids)
        self.delete_rows("pg_index", lambda r: r[0] in ids or r[1] in ids)
        self.delete_rows("pg_constraint", lambda r: r[7] in ids or r[9] in ids)
        self.delete_rows("pg_sequence", lambda r: r[0] in ids)
        self.delete_rows("pg_depend", lambda r: r[1] in ids or r[4] in ids)
        self.delete_rows("pg_type", lambda r: r[11] in ids)
        self.delete_rows("pg_description", lambda r: r[0] in ids)
        if rel.kind == api.RelKind.VIEW:
            self.delete_rows("pg_rewrite", lambda r: r[2] in ids)
            victims = []
        if rel.kind == api.RelKind.INDEX and rel.index_info is not None:
            tab = rel.index_info.table_oid
            remaining = [i for i in cache.relations[tab].indexes if i.oid != oid] if tab in cache.relations else []
            if not remaining:
                self.update_rows("pg_class", lambda r: r[0] == tab and r[13], lambda r: r[:13] + (False,) + r[14:])
        for v in victims:
            self.engine.x.drop_on_commit.append((self.engine.database.oid, v.relfilenode))
        self.engine.command_counter_increment()

    def _constraints_using_index(self, index_oid: int) -> list[ConstraintInfo]:
        out = []
        for r in self.engine.catalog().relations.values():
            for c in r.constraints:
                if c.index_oid == index_oid:
                    out.append(c)
        return out

    def truncate(self, oids: Sequence[int]) -> None:
        for oid in oids:
            self.engine.lock_relation(oid, 8)
            self._new_files(self.relation(oid), reset_stats=True)
        self.engine.command_counter_increment()

    def _new_files(self, rel: RelationInfo, *, reset_stats: bool) -> None:
        """Give ``rel`` and its indexes new, empty files (empty B-trees for the indexes); the old
        files go at commit.  ``reset_stats`` also zeroes relpages and reltuples (TRUNCATE)."""
        for t in [rel] + [self.relation(i.oid) for i in rel.indexes]:
            new = self.allocate_oid()
            self._new_relation_file(new)
            if t.kind == api.RelKind.INDEX:
                xid, _ = self.engine._write_ctx()
                self.engine.btree.create_empty(self.engine.database.oid, new, xid)
            self.engine.x.drop_on_commit.append((self.engine.database.oid, t.relfilenode))
            self.update_rows("pg_class", _oid_is(t.oid),  # relfilenode, relpages, reltuples
                             _new_file_row(new, reset_stats))

    def rename_relation(self, oid: int, new_name: str) -> None:
        rel = self.relation(oid)
        if (rel.namespace_oid, new_name) in self.engine.catalog().by_name:
            raise PgError("42P07", f'relation "{new_name}" already exists')
        self.update_rows("pg_class", lambda r: r[0] == oid, lambda r: (r[0], new_name) + r[2:])
        self.engine.command_counter_increment()

    def create_view(self, name: str, columns: Sequence[ColumnDef], definition: str, *, schema: str | None = None,
                    replace: bool = False) -> RelationInfo:
        """CREATE [OR REPLACE] VIEW: a relation of kind 'v' without storage; ``definition``
        (the SELECT, as SQL text) is kept in pg_rewrite as its _RETURN rule."""
        ns, _nsname = self._creation_namespace(schema)
        cache = self.engine.catalog()
        old = cache.by_name.get((ns, name))
        if old is not None:
            orel = cache.relations[old]
            if not replace or orel.kind != api.RelKind.VIEW:
                raise PgError("42P07", f'relation "{name}" already exists')
            ocols = [c for c in orel.columns if not c.dropped]
            if len(columns) < len(ocols) or any(
                    a.name != b.name or a.type_oid != b.type_oid for a, b in zip(ocols, columns)):
                raise PgError("42P16", "cannot change name or data type of view column" if len(columns) >= len(ocols)
                              else "cannot drop columns from view")
            self.engine.lock_relation(old, 8)
            self.delete_rows("pg_attribute", lambda r: r[0] == old)
            self.delete_rows("pg_rewrite", lambda r: r[2] == old)
            self.update_rows("pg_class", lambda r: r[0] == old, lambda r: r[:17] + (len(columns),) + r[18:])
            oid = old
        else:
            oid = self.allocate_oid()
            typoid = self.allocate_oid()
            self.insert_row("pg_class", CC.class_row(oid, name, ns, "v", len(columns), reltype=typoid,
                                                     owner=self.engine.role.oid, relfilenode=0))
            self.insert_row("pg_type", _type_row(typoid, name, ns, self.engine.role.oid, relid=oid))
        for i, c in enumerate(columns):
            self.insert_row("pg_attribute", CC.attr_row(oid, c.name, c.type_oid, i + 1, typmod=c.typmod))
        self.insert_row("pg_rewrite", (self.allocate_oid(), "_RETURN", oid, "1", "O", True, None, definition))
        self.engine.command_counter_increment()
        return self.relation(oid)

    def relation_is_new(self, oid: int) -> bool:
        """Was the relation's file created (CREATE, TRUNCATE) by the running transaction?"""
        rel = self.relation(oid)
        return any(relnode == rel.relfilenode for _db, relnode in self.engine.x.created)

    def view_definition(self, oid: int) -> str | None:
        for _tid, r in self.rows("pg_rewrite"):
            if r[2] == oid and r[1] == "_RETURN":
                return r[7]
        return None

    def set_description(self, objoid: int, classoid: int, objsubid: int, text: str | None) -> None:
        """COMMENT ON: replace (or with None remove) an object's pg_description row."""
        self.delete_rows("pg_description", lambda r: r[0] == objoid and r[1] == classoid and r[2] == objsubid)
        if text is not None and text != "":
            self.insert_row("pg_description", (objoid, classoid, objsubid, text))
        self.engine.command_counter_increment()

    def descriptions(self) -> list[tuple[int, int, int, str]]:
        """Every pg_description row: (objoid, classoid, objsubid, description)."""
        return [row for _tid, row in self.rows("pg_description")]

    def rename_column(self, table_oid: int, attnum: int, new_name: str) -> None:
        rel = self.relation(table_oid)
        self.engine.lock_relation(table_oid, 8)
        if rel.column(new_name) is not None:
            raise PgError("42701", f'column "{new_name}" of relation "{rel.name}" already exists')
        self.update_rows("pg_attribute", lambda r: r[0] == table_oid and r[5] == attnum,
                         lambda r: (r[0], new_name) + r[2:])
        for idx in rel.indexes:
            if attnum in idx.columns:
                pos = idx.columns.index(attnum) + 1
                self.update_rows("pg_attribute", _attribute_is(idx.oid, pos),
                                 lambda r: (r[0], new_name) + r[2:])
        self.engine.command_counter_increment()

    def rewrite_table(self, table_oid: int, types: dict[int, tuple[int, int]] | None = None,
                      convert: Callable[[tuple], tuple] | None = None) -> int:
        """Rewrite a table into new files (ALTER COLUMN TYPE, VACUUM FULL): every visible row,
        passed through ``convert``, goes into a fresh heap and fresh indexes; ``types``
        ({attnum: (type oid, typmod)}) changes column types first.  The old files go at
        commit.  Returns the number of rows."""
        rel = self.relation(table_oid)
        self.engine.lock_relation(table_oid, 8)
        rows = [row for _tid, row in self.engine.seq_scan(rel)]
        if convert is not None:
            rows = [convert(r) for r in rows]
        self._new_files(rel, reset_stats=False)
        for attnum, (typ, typmod) in (types or {}).items():
            lay = D.type_layout(typ)
            self.update_rows("pg_attribute", _attribute_is(table_oid, attnum),
                             _retyped_column_row(typ, typmod, lay))
            for idx in rel.indexes:
                if attnum in idx.columns:
                    pos = idx.columns.index(attnum) + 1
                    self.update_rows("pg_attribute", _attribute_is(idx.oid, pos),
                                     _retyped_index_column_row(typ, typmod))
        self.engine.command_counter_increment()
        cur = self.relation(table_oid)
        for row in rows:
            self.engine.insert(cur, row)
        return len(rows)

    def add_column(self, table_oid: int, column: ColumnDef, *, missing_value: Any = None) -> None:
        rel = self.relation(table_oid)
        self.engine.lock_relation(table_oid, 8)
        if rel.column(column.name) is not None:
            raise PgError("42701", f'column "{column.name}" of relation "{rel.name}" already exists')
        num = len(rel.columns) + 1
        if column.not_null and missing_value is None and self._has_rows(rel):
            raise PgError("23502", f'column "{column.name}" of relation "{rel.name}" contains null values')
        self.insert_row("pg_attribute", CC.attr_row(table_oid, column.name, column.type_oid, num,
                                                    typmod=column.typmod, notnull=column.not_null,
                                                    hasdef=column.default is not None, identity=column.identity,
                                                    missing=missing_value))
        if column.default is not None:
            self.insert_row("pg_attrdef", (self.allocate_oid(), table_oid, num, column.default))
        self.update_rows("pg_class", lambda r: r[0] == table_oid, lambda r: r[:17] + (num,) + r[18:])
        self.engine.command_counter_increment()

    def _has_rows(self, rel: RelationInfo) -> bool:
        for _ in self.engine.seq_scan(rel):
            return True
        return False

    def drop_column(self, table_oid: int, attnum: int) -> None:
        rel = self.relation(table_oid)
        self.engine.lock_relation(table_oid, 8)
        col = rel.columns[attnum - 1]
        for idx in list(rel.indexes):
            if attnum in idx.columns:
                for c in self._constraints_using_index(idx.oid):
                    self.delete_rows("pg_constraint", _oid_is(c.oid))
                self.drop_relation(idx.oid, cascade=True)
        dropped_name = f"........pg.dropped.{attnum}........"
        self.update_rows("pg_attribute", lambda r: r[0] == table_oid and r[5] == attnum,
                         lambda r: (r[0], dropped_name, 0) + r[3:13] + (False, False) + r[15:18] + (True,) + r[19:])
        self.delete_rows("pg_attrdef", lambda r: r[1] == table_oid and r[2] == attnum)
        _ = col
        self.engine.command_counter_increment()

    def set_column_default(self, table_oid: int, attnum: int, default: str | None) -> None:
        self.delete_rows("pg_attrdef", lambda r: r[1] == table_oid and r[2] == attnum)
        if default is not None:
            self.insert_row("pg_attrdef", (self.allocate_oid(), table_oid, attnum, default))
        self.update_rows("pg_attribute", lambda r: r[0] == table_oid and r[5] == attnum,
                         lambda r: r[:14] + (default is not None,) + r[15:])
        self.engine.command_counter_increment()

    def set_column_not_null(self, table_oid: int, attnum: int, not_null: bool) -> None:
        rel = self.relation(table_oid)
        if not_null and not rel.columns[attnum - 1].not_null:  # (already NOT NULL: nothing to check)
            for _tid, row in self.engine.seq_scan(rel):
                if attnum - 1 >= len(row) or row[attnum - 1] is None:
                    raise PgError("23502", f'column "{rel.columns[attnum - 1].name}" of relation "{rel.name}" '
                                           f"contains null values")
        self.update_rows("pg_attribute", lambda r: r[0] == table_oid and r[5] == attnum,
                         lambda r: r[:13] + (not_null,) + r[14:])
        self.engine.command_counter_increment()

    def add_constraint(self, table_oid: int, constraint: ConstraintInfo) -> ConstraintInfo:
        rel = self.relation(table_oid)
        oid = self.allocate_oid()
        row = list(_constraint_row(oid, constraint.name, rel.namespace_oid, constraint.kind, table_oid,
                                   list(constraint.columns), constraint.index_oid))
        row[11] = constraint.ref_table_oid
        row[19] = list(constraint.ref_columns) or None
        row[25] = constraint.expression
        if constraint.kind == "f":
            row[12], row[13], row[14] = constraint.on_update, constraint.on_delete, "s"
        self.insert_row("pg_constraint", tuple(row))
        self.engine.command_counter_increment()
        return ConstraintInfo(oid, constraint.name, constraint.kind, table_oid, constraint.columns,
                              constraint.index_oid, constraint.expression, constraint.ref_table_oid,
                              constraint.ref_columns, constraint.on_update, constraint.on_delete)

    def drop_constraint(self, table_oid: int, name: str) -> None:
        rel = self.relation(table_oid)
        for c in rel.constraints:
            if c.name == name:
                self.delete_rows("pg_constraint", _oid_is(c.oid))
                if c.index_oid:
                    self.engine.command_counter_increment()
                    self.drop_relation(c.index_oid, cascade=True)
                self.engine.command_counter_increment()
                return
        raise PgError("42704", f'constraint "{name}" of relation "{rel.name}" does not exist')

    def create_namespace(self, name: str, *, if_not_exists: bool = False) -> int:
        ns = self.lookup_namespace(name)
        if ns is not None:
            if if_not_exists:
                self.engine.notices.append(api.Notice("NOTICE", "42P06", f'schema "{name}" already exists, skipping'))
                return ns
            raise PgError("42P06", f'schema "{name}" already exists')
        oid = self.allocate_oid()
        self.insert_row("pg_namespace", (oid, name, self.engine.role.oid, None))
        self.engine.command_counter_increment()
        return oid

    def drop_namespace(self, name: str, *, cascade: bool = False, missing_ok: bool = False) -> None:
        ns = self.lookup_namespace(name)
        if ns is None:
            if missing_ok:
                self.engine.notices.append(api.Notice("NOTICE", "00000", f'schema "{name}" does not exist, skipping'))
                return
            raise PgError("3F000", f'schema "{name}" does not exist')
        members = [r for r in self.relations("rS") if r.namespace_oid == ns]
        if members and not cascade:
            raise PgError("2BP01", f"cannot drop schema {name} because other objects depend on it",
                          detail="\n".join(f"table {r.name} depends on schema {name}" for r in members),
                          hint="Use DROP ... CASCADE to drop the dependent objects too.")
        for r in members:
            if r.oid in self.engine.catalog().relations:
                self.drop_relation(r.oid, cascade=True)
        self.delete_rows("pg_namespace", lambda r: r[0] == ns)
        self.engine.command_counter_increment()

    # ------------------------------------------------------------------ sequences
    def create_sequence(self, name: str, *, schema: str | None = None, type_oid: int = 20, start: int | None = None,
                        increment: int = 1, min_value: int | None = None, max_value: int | None = None,
                        cache: int = 1, cycle: bool = False, if_not_exists: bool = False) -> RelationInfo | None:

        ns, _ = self._creation_namespace(schema)
        if (ns, name) in self.engine.catalog().by_name:
            if if_not_exists:
                self.engine.notices.append(api.Notice("NOTICE", "42P07", f'relation "{name}" already exists, skipping'))
                return None
            raise PgError("42P07", f'relation "{name}" already exists')
        if increment == 0:
            raise PgError("22023", "INCREMENT must not be zero")
        lo, hi = SEQ_LIMITS.get(type_oid, SEQ_LIMITS[20])
        if min_value is None:
            min_value = 1 if increment > 0 else lo
        if max_value is None:
            max_value = hi if increment > 0 else -1
        if start is None:
            start = min_value if increment > 0 else max_value
        if start < min_value:
            raise PgError("22023", f"START value ({start}) cannot be less than MINVALUE ({min_value})")
        if start > max_value:
            raise PgError("22023", f"START value ({start}) cannot be greater than MAXVALUE ({max_value})")
        oid = self.allocate_oid()
        self._new_relation_file(oid)
        self.insert_row("pg_class", CC.class_row(oid, name, ns, "S", 3, owner=self.engine.role.oid))
        for i, (col, typ) in enumerate((("last_value", 20), ("log_cnt", 20), ("is_called", 16))):
            self.insert_row("pg_attribute", CC.attr_row(oid, col, typ, i + 1, notnull=True))
        self.insert_row("pg_sequence", (oid, type_oid, start, increment, max_value, min_value, cache, cycle))
        xid, _ = self.engine._write_ctx()
        sequence.init_relation(self.engine, oid, start, xid)
        self.engine.command_counter_increment()
        return self.relation(oid)

    def set_sequence_owner(self, seq_oid: int, table_oid: int, attnum: int) -> None:
        self.delete_rows("pg_depend", lambda r: r[1] == seq_oid and r[6] == "a")
        self.insert_row("pg_depend", (1259, seq_oid, 0, 1259, table_oid, attnum, "a"))
        self.engine.command_counter_increment()

    # ------------------------------------------------------------------ databases
    def _database_from_row(self, r: tuple) -> api.DatabaseInfo:
        return api.DatabaseInfo(r[0], r[1], r[2], "UTF8", r[11] or "C", r[12] or "C", r[6], r[5], r[7])

    def database_by_name(self, name: str) -> api.DatabaseInfo | None:
        for _tid, r in self.rows("pg_database"):
            if r[1] == name:
                return self._database_from_row(r)
        return None

    def databases(self) -> list[api.DatabaseInfo]:
        return [self._database_from_row(r) for _tid, r in self.rows("pg_database")]

    def create_database(self, name: str, *, owner: str | None = None, template: str = "template1") -> api.DatabaseInfo:
        if self.engine.x.block:
            raise PgError("25001", "CREATE DATABASE cannot run inside a transaction block")
        if not (self.engine.role.superuser or self.engine.role.create_db):
            raise PgError("42501", "permission denied to create database")
        if self.database_by_name(name) is not None:
            raise PgError("42P04", f'database "{name}" already exists')
        tmpl = self.database_by_name(template)
        if tmpl is None:
            raise PgError("3D000", f'template database "{template}" does not exist')
        others = self.engine.procs.count_db(tmpl.oid, exclude_pid=os.getpid())
        if others or tmpl.oid == self.engine.database.oid:
            raise PgError("55006", f'source database "{template}" is being accessed by other users',
                          detail=f"There {'is' if others <= 1 else 'are'} {max(others, 1)} other "
                                 f"session{'' if others <= 1 else 's'} using the database.")
        owner_oid = self.engine.role.oid
        if owner is not None:
            r = self.role_by_name(owner)
            if r is None:
                raise PgError("42704", f'role "{owner}" does not exist')
            owner_oid = r.oid
        oid = self.allocate_oid()
        env = self.engine.env
        env.bm.sync_all(dboid=tmpl.oid)
        src = os.path.join(env.datadir, "base", str(tmpl.oid))
        dst = os.path.join(env.datadir, "base", str(oid))
        xid, _ = self.engine._write_ctx()
        lsn = env.xlog.insert(RM_DBASE, XLOG_DBASE_CREATE, xid, (), _DB.pack(tmpl.oid, oid))
        env.xlog.flush(lsn)
        copy_database_dir(src, dst)
        self.engine.x.drop_db_on_abort.append(oid)
        self.insert_row("pg_database", (oid, name, owner_oid, 6, "c", False, True, -1, 3, 1, 1663, "C", "C", None,
                                        None, None))
        self.engine.command_counter_increment()
        return api.DatabaseInfo(oid, name, owner_oid)

    def drop_database(self, name: str, *, if_exists: bool = False, force: bool = False) -> None:
        if self.engine.x.block:
            raise PgError("25001", "DROP DATABASE cannot run inside a transaction block")
        db = self.database_by_name(name)
        if db is None:
            if if_exists:
                self.engine.notices.append(api.Notice("NOTICE", "00000", f'database "{name}" does not exist, skipping'))
                return
            raise PgError("3D000", f'database "{name}" does not exist')
        if db.oid == self.engine.database.oid:
            raise PgError("55006", "cannot drop the currently open database")
        if db.name in ("template1",) and not force:
            pass
        others = self.engine.procs.count_db(db.oid)
        if others and force:
            import signal

            for e in self.engine.procs.entries():
                if e["dboid"] == db.oid and e["backend_type"] == "client backend":
                    try:
                        os.kill(e["pid"], signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            import time

            deadline = time.monotonic() + 5
            while self.engine.procs.count_db(db.oid) and time.monotonic() < deadline:
                time.sleep(0.05)
            others = self.engine.procs.count_db(db.oid)
        if others:
            raise PgError("55006", f'database "{name}" is being accessed by other users',
                          detail=f"There {'is' if others == 1 else 'are'} {others} other "
                                 f"session{'' if others == 1 else 's'} using the database.")
        self.delete_rows("pg_database", lambda r: r[0] == db.oid)
        self.engine.x.drop_db_on_commit.append(db.oid)
        self.engine.command_counter_increment()

    def remove_database_files(self, dboid: int) -> None:
        self.engine.env.bm.drop_database_buffers(dboid)
        self.engine.env.smgr.close_all()
        shutil.rmtree(os.path.join(self.engine.env.datadir, "base", str(dboid)), ignore_errors=True)

    # ------------------------------------------------------------------ roles
    @staticmethod
    def _role_from_row(r: tuple) -> api.RoleInfo:
        return api.RoleInfo(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11])

    def role_by_name(self, name: str) -> api.RoleInfo | None:
        for _tid, r in self.rows("pg_authid"):
            if r[1] == name:
                return self._role_from_row(r)
        return None

    def roles(self) -> list[api.RoleInfo]:
        return [self._role_from_row(r) for _tid, r in self.rows("pg_authid")]

    def password_secret(self, name: str, password: str | None) -> str | None:
        if password is None:
            return None
        if md5.is_md5_secret(password) or scram.is_scram_secret(password):
            return password
        if self.engine.settings.value("password_encryption") == "md5":
            return md5.md5_secret(name, password)
        return str(scram.make_secret(password))

    def create_role(self, name: str, *, password: str | None = None, login: bool = False, superuser: bool = False,
                    create_db: bool = False, create_role: bool = False, inherit: bool = True,
                    replication: bool = False, bypass_rls: bool = False, connection_limit: int = -1,
                    valid_until: Any = None) -> api.RoleInfo:
        if not (self.engine.role.superuser or self.engine.role.create_role):
            raise PgError("42501", "permission denied to create role")
        if self.role_by_name(name) is not None:
            raise PgError("42710", f'role "{name}" already exists')
        oid = self.allocate_oid()
        row = (oid, name, superuser, inherit, create_role, create_db, login, replication, bypass_rls,
               connection_limit, self.password_secret(name, password), valid_until)
        self.insert_row("pg_authid", row)
        self.engine.command_counter_increment()
        return self._role_from_row(row)

    def alter_role(self, name: str, **changes: Any) -> api.RoleInfo:
        r = self.role_by_name(name)
        if r is None:
            raise PgError("42704", f'role "{name}" does not exist')
        me = self.engine.role
        if not (me.superuser or me.create_role or (r.oid == me.oid and set(changes) <= {"password"})):
            raise PgError("42501", "permission denied")
        fields = {"superuser": 2, "inherit": 3, "create_role": 4, "create_db": 5, "login": 6, "replication": 7,
                  "bypass_rls": 8, "connection_limit": 9, "password": 10, "valid_until": 11}
        new_name = changes.pop("rename", None)
        if new_name is not None and self.role_by_name(new_name) is not None:
            raise PgError("42710", f'role "{new_name}" already exists')

        def fn(row: tuple) -> tuple:
            out = list(row)
            for k, v in changes.items():
                if k == "password":
                    v = self.password_secret(new_name or name, v)
                out[fields[k]] = v
            if new_name is not None:
                out[1] = new_name
            return tuple(out)

        self.update_rows("pg_authid", lambda row: row[0] == r.oid, fn)
        self.engine.command_counter_increment()
        r2 = self.role_by_name(new_name or name)
        assert r2 is not None
        return r2

    def drop_role(self, name: str, *, if_exists: bool = False) -> None:
        r = self.role_by_name(name)
        if r is None:
            if if_exists:
                self.engine.notices.append(api.Notice("NOTICE", "00000", f'role "{name}" does not exist, skipping'))
                return
            raise PgError("42704", f'role "{name}" does not exist')
        if r.oid == self.engine.role.oid:
            raise PgError("55006", "current user cannot be dropped")
        if r.oid == D.BOOTSTRAP_SUPERUSER:
            raise PgError("55006", f'cannot drop role {name} because it is required by the database system')
        self.delete_rows("pg_authid", lambda row: row[0] == r.oid)
        self.engine.command_counter_increment()


def _type_row(oid: int, name: str, ns: int, owner: int, relid: int = 0, typtype: str = "c",
              category: str = "C") -> tuple:
    return (oid, name, ns, owner, -1, False, typtype, category, False, True, ",", relid, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, "d", "x", False, 0, -1, 0, 0, None, None, None)


def _constraint_row(oid: int, name: str, ns: int, kind: str, table: int, cols: list[int], index: int) -> tuple:
    return (oid, name, ns, kind, False, False, True, table, 0, index, 0, 0, " ", " ", " ", True, 0, True, cols, None,
            None, None, None, None, None, None)


def copy_database_dir(src: str, dst: str) -> None:
    """Copy a database directory and fsync every file (CREATE DATABASE)."""
    if os.path.exists(dst):
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    for fn in os.listdir(dst):
        fd = os.open(os.path.join(dst, fn), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    dfd = os.open(dst, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
