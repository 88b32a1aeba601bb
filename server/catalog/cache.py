"""The relation cache: a backend's in-memory picture of its database's catalogs.

Built by scanning pg_namespace, pg_class, pg_attribute, pg_attrdef, pg_index and
pg_constraint with a fresh snapshot (so it sees the latest committed catalog plus this
transaction's own changes).  Invalidation is coarse: any transaction that changes a
catalog bumps ``catalog_version`` in shared memory when it commits; a backend whose
cache was built under an older version throws it away at the next statement start,
and its own catalog writes drop its cache at once (PostgreSQL's relcache + sinval,
simplified to one counter).

Also here: the row builders for catalog rows (pg_class, pg_attribute ...), in the
column order of :mod:`.defs`.
"""

from __future__ import annotations

from typing import Any

from pgbundle.server.access.api import (
    TID,
    ColumnInfo,
    ConstraintInfo,
    IndexInfo,
    RelationInfo,
    RelKind,
)
from pgbundle.server.catalog import defs as D


def class_row(oid: int, name: str, ns: int, kind: str, natts: int, *, reltype: int = 0, owner: int = 10,
              relfilenode: int | None = None, shared: bool = False, persistence: str = "p",
              hasindex: bool = False, relam: int = 0, pages: int = 0, tuples: float = -1.0,
              options: list[str] | None = None) -> tuple:
    return (oid, name, ns, reltype, 0, owner, relam, oid if relfilenode is None else relfilenode, 0, pages, tuples,
            0, 0, hasindex, shared, persistence, kind, natts, 0, False, False, False, False, False, True, "d",
            False, 0, 0 if kind in "iS" else 3, 0 if kind in "iS" else 1, None, options, None)


def attr_row(relid: int, name: str, typ: int, num: int, *, typmod: int = -1, notnull: bool = False,
             hasdef: bool = False, dropped: bool = False, identity: str = "", missing: Any = None) -> tuple:
    length, byval, align = D.type_layout(typ)
    collation = 100 if typ in (25, 1042, 1043, 19) else 0
    if typ == 19:
        collation = 950
    return (relid, name, typ, -1, length, num, 0, -1, typmod, byval, align, "p" if length > 0 else "x", "",
            notnull, hasdef, missing is not None, identity, "", dropped, True, 0, collation, None, None, None,
            None if missing is None else [missing])


# column positions
C_OID, C_NAME, C_NS, C_TYPE, C_OWNER, C_AM, C_FILENODE, C_PAGES, C_TUPLES, C_HASINDEX, C_SHARED, C_PERSIST, \
    C_KIND, C_NATTS, C_OPTIONS = 0, 1, 2, 3, 5, 6, 7, 9, 10, 13, 14, 15, 16, 17, 31


class CatalogCache:
    """Relations and namespaces of one database as of ``version``."""

    def __init__(self, version: int) -> None:
        self.version = version
        self.namespaces: dict[int, tuple[str, int]] = {}
        self.ns_by_name: dict[str, int] = {}
        self.relations: dict[int, RelationInfo] = {}
        self.by_name: dict[tuple[int, str], int] = {}
        self.class_tids: dict[int, TID] = {}
        self.sequences: dict[int, tuple] = {}
        self.seq_owned: dict[int, tuple[int, int]] = {}


def bootstrap_relation(cat: D.CatalogDef) -> RelationInfo:
    """RelationInfo of a catalog, from its definition (used before any catalog is read)."""
    cols = tuple(ColumnInfo(i + 1, n, t, -1, n in ("oid",) or False, None) for i, (n, t) in enumerate(cat.columns))
    return RelationInfo(cat.oid, cat.name, "pg_catalog", D.PG_CATALOG_NS, RelKind.TABLE, cols, relfilenode=cat.oid,
                        is_shared=cat.shared)


def build(version: int, rows: dict[str, list[tuple[TID, tuple]]]) -> CatalogCache:
    """Assemble the cache from scanned catalog rows (name → [(tid, row)])."""
    c = CatalogCache(version)
    for _tid, r in rows["pg_namespace"]:
        c.namespaces[r[0]] = (r[1], r[2])
        c.ns_by_name[r[1]] = r[0]
    attrs: dict[int, list[tuple]] = {}
    for _tid, r in rows["pg_attribute"]:
        attrs.setdefault(r[0], []).append(r)
    defaults: dict[tuple[int, int], str] = {}
    for _tid, r in rows["pg_attrdef"]:
        defaults[(r[1], r[2])] = r[3]
    indexes: dict[int, list[tuple]] = {}
    index_of: dict[int, tuple] = {}
    for _tid, r in rows["pg_index"]:
        indexes.setdefault(r[1], []).append(r)
        index_of[r[0]] = r
    constraints: dict[int, list[tuple]] = {}
    for _tid, r in rows["pg_constraint"]:
        constraints.setdefault(r[7], []).append(r)
    for _tid, r in rows.get("pg_sequence", []):
        c.sequences[r[0]] = r
    for _tid, r in rows.get("pg_depend", []):
        # sequence owned by a column: classid pg_class, objid seq, refobjid table, refobjsubid attnum, 'a'
        if r[0] == 1259 and r[3] == 1259 and r[6] == "a":
            c.seq_owned[r[1]] = (r[4], r[5])
    classes = {}
    for tid, r in rows["pg_class"]:
        classes[r[0]] = r
        c.class_tids[r[0]] = tid
    names = {oid: r[1] for oid, r in classes.items()}
    for oid, r in classes.items():
        cols = []
        for a in sorted(attrs.get(oid, []), key=lambda a: a[5]):
            if a[5] <= 0:
                continue
            cols.append(ColumnInfo(a[5], a[1], a[2], a[8], a[13], defaults.get((oid, a[5])), a[18], a[16] or ""))
        idx_infos = []
        for ir in indexes.get(oid, []):
            idx_infos.append(IndexInfo(ir[0], names.get(ir[0], "?"), oid, tuple(ir[15] or ()), ir[4], ir[6],
                                       ir[10], tuple(ir[18] or ())))
        idx_infos.sort(key=lambda i: (not i.primary, i.oid))
        cons = []
        for cr in constraints.get(oid, []):
            cons.append(ConstraintInfo(cr[0], cr[1], cr[3], oid, tuple(cr[18] or ()), cr[9], cr[25], cr[11],
                                       tuple(cr[19] or ()), (cr[12] or "a").strip() or "a",
                                       (cr[13] or "a").strip() or "a"))
        own_index = None
        if r[C_KIND] == "i" and oid in index_of:
            ir = index_of[oid]
            own_index = IndexInfo(oid, r[1], ir[1], tuple(ir[15] or ()), ir[4], ir[6], ir[10], tuple(ir[18] or ()))
        ns = c.namespaces.get(r[C_NS], ("?", 10))[0]
        try:
            kind = RelKind(r[C_KIND])
        except ValueError:
            kind = RelKind.TABLE
        info = RelationInfo(oid, r[1], ns, r[C_NS], kind, tuple(cols), tuple(idx_infos), tuple(cons), r[C_OWNER],
                            r[C_FILENODE], r[C_PERSIST], r[C_SHARED], r[C_PAGES], r[C_TUPLES], own_index,
                            tuple(r[C_OPTIONS] or ()))
        c.relations[oid] = info
        c.by_name[(r[C_NS], r[1])] = oid
    return c
