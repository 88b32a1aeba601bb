"""The SQL layer's :class:`~.storage.Storage` over the engine API
(:mod:`pgbundle.server.access.api`).

Converts the engine's relation descriptors (attnum-based, frozen) into the SQL
layer's (0-based column positions), turns index range scans into
``IndexBound`` pairs, and runs PostgreSQL's READ COMMITTED update rule: when
``update``/``delete`` get a ``Conflict("updated", tid, row)`` the caller's
``recheck`` decides on the newest version and the operation is retried there.
"""

from __future__ import annotations

import os as _os
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import Any

from pgbundle.server.access import api
from pgbundle.server.access.tableam import SqlColumn, SqlConstraint, SqlIndex, SqlRelation
from pgbundle.server.errors import PgError
from pgbundle.server.utils.adt.enums import EnumLabel

_TRACE = bool(_os.environ.get("PGBUNDLE_SQL_TRACE"))


def _trace(msg: str) -> None:
    with open(f"/tmp/pgbundle-sqltrace-{_os.getpid()}.log", "a") as f:
        f.write(msg + "\n")


class EngineStorage:
    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._api: ModuleType | None = None   # access.api, imported on first use
        self._rels: dict[int, tuple[Any, SqlRelation]] = {}
        # enum columns per relation: (position, type oid)
        self._enums: dict[int, tuple[tuple[int, int], ...]] = {}
        self.enum_loader: Any = None

    def _to_engine(self, rel: SqlRelation, row: tuple) -> tuple:
        return row

    def _from_engine(self, rel: SqlRelation, it: Iterable) -> Iterator:
        """Rows as the SQL layer wants them: enum values carry their sort order."""
        conv = self._enums.get(rel.oid)
        if not conv:
            return iter(it)
        if self.enum_loader is not None:
            self.enum_loader()  # the sort order of the types (once per statement)

        def wrap(pairs: Iterable) -> Iterator:
            for tid, row in pairs:
                r = list(row)
                for i, oid in conv:
                    v = r[i]
                    if v.__class__ is str:
                        r[i] = EnumLabel(v, oid)
                yield tid, tuple(r)
        return wrap(it)

    @property
    def api(self) -> ModuleType:
        if self._api is None:
            self._api = api
        return self._api

    # ------------------------------------------------------------------ conversion

    def convert(self, er: Any) -> SqlRelation:
        hit = self._rels.get(er.oid)
        if hit is not None and hit[0] is er:
            return hit[1]
        cols = [SqlColumn(c.name, c.type_oid, c.typmod, c.not_null, c.default, c.attnum,
                           getattr(c, "identity", ""), c.dropped) for c in er.columns]
        idxs = [SqlIndex(i.oid, i.name, tuple(a - 1 for a in i.columns), i.unique, i.primary, er.oid,
                          tuple(getattr(i, "options", ()) or ()))
                for i in er.indexes if getattr(i, "valid", True)]
        cons = [SqlConstraint(c.oid, c.name, c.kind, tuple(a - 1 for a in c.columns), c.index_oid,
                               c.expression, getattr(c, "ref_table_oid", 0),
                               tuple(a - 1 for a in getattr(c, "ref_columns", ())), c.on_update, c.on_delete)
                for c in er.constraints]
        kind = er.kind.value if hasattr(er.kind, "value") else str(er.kind)
        rel = SqlRelation(er.oid, er.name, er.namespace, kind, cols, idxs, cons, er.namespace_oid,
                           er.owner, {}, er.tuples, er.pages, er.persistence, er)
        ens = tuple((i, c.type_oid) for i, c in enumerate(cols) if c.type_oid >= 16384 and not c.dropped)
        if ens:
            self._enums[er.oid] = ens
        self._rels[er.oid] = (er, rel)
        return rel

    def _er(self, rel: SqlRelation) -> Any:
        return getattr(rel, "engine_rel", None) or self.engine.relation(rel.oid)

    def _ei(self, index: SqlIndex, rel: SqlRelation) -> Any:
        er = self._er(rel)
        for i in er.indexes:
            if i.oid == index.oid:
                return i
        raise PgError("XX000", f"index {index.name} not found")

    # ------------------------------------------------------------------ transactions

    def begin(self, isolation: str | None = None, read_only: bool | None = None) -> None:
        iso = None if isolation is None else self.api.Isolation(isolation)
        self.engine.begin(iso, read_only)

    def commit(self) -> None:
        self.engine.commit()

    def rollback(self) -> None:
        self.engine.rollback()

    def savepoint(self, name: str) -> None:
        self.engine.savepoint(name)

    def release_savepoint(self, name: str) -> None:
        self.engine.release_savepoint(name)

    def rollback_to_savepoint(self, name: str) -> None:
        self.engine.rollback_to_savepoint(name)

    def start_command(self) -> None:
        self.engine.start_statement()

    def end_command(self) -> None:
        self.engine.end_statement()

    # ------------------------------------------------------------------ catalog

    def lookup_relation(self, schema: str | None, name: str) -> SqlRelation | None:
        er = self.engine.lookup_relation(name, schema)
        return None if er is None else self.convert(er)

    def relation_by_oid(self, oid: int) -> SqlRelation | None:
        try:
            return self.convert(self.engine.relation(oid))
        except PgError:
            return None

    def relations(self, kinds: str = "rivSmpcf") -> list[SqlRelation]:
        return [self.convert(r) for r in self.engine.relations(kinds)]

    # ------------------------------------------------------------------ rows

    def scan(self, rel: SqlRelation) -> Iterator[tuple[Any, tuple]]:
        it = self.engine.seq_scan(self._er(rel))
        return self._from_engine(rel, it) if rel.oid in self._enums else it

    def index_scan(self, index: SqlIndex, rel: SqlRelation, lo: tuple | None, lo_inclusive: bool,
                   hi: tuple | None, hi_inclusive: bool, backward: bool = False) -> Iterator[tuple[Any, tuple]]:
        B = self.api.IndexBound
        it = self.engine.index_scan(self._ei(index, rel), None if lo is None else B(lo, lo_inclusive),
                                    None if hi is None else B(hi, hi_inclusive), backward=backward)
        return self._from_engine(rel, it) if rel.oid in self._enums else it

    def insert(self, rel: SqlRelation, row: tuple) -> Any:
        return self.engine.insert(self._er(rel), self._to_engine(rel, row))

    def insert_many(self, rel: SqlRelation, rows: Iterable[tuple]) -> int:
        if type(self)._to_engine is EngineStorage._to_engine:  # rows go as they are
            rows = rows if isinstance(rows, list) else list(rows)
        else:
            rows = [self._to_engine(rel, r) for r in rows]
        self.engine.insert_many(self._er(rel), rows)
        return len(rows)

    def update(self, rel: SqlRelation, tid: Any, row: tuple,
               recheck: Callable[[tuple], tuple | None] | None = None) -> bool:
        er = self._er(rel)
        Conflict = self.api.Conflict
        while True:
            r = self.engine.update(er, tid, self._to_engine(rel, row))
            if _TRACE:
                _trace(f"update {rel.name} {tid} {row!r} -> {r!r}")
            if not isinstance(r, Conflict):
                return True
            if r.kind != "updated" or recheck is None:
                return False
            latest = next(self._from_engine(rel, [(r.tid, r.row)]))[1]
            new = recheck(latest)
            if new is None:
                return False
            tid, row = r.tid, new

    def delete(self, rel: SqlRelation, tid: Any, recheck: Callable[[tuple], bool] | None = None) -> bool:
        er = self._er(rel)
        Conflict = self.api.Conflict
        while True:
            r = self.engine.delete(er, tid)
            if not isinstance(r, Conflict):
                return bool(r)
            if r.kind != "updated" or recheck is None:
                return False
            if not recheck(next(self._from_engine(rel, [(r.tid, r.row)]))[1]):
                return False
            tid = r.tid

    def truncate(self, rels: list[SqlRelation]) -> None:
        self.engine.truncate([r.oid for r in rels])

    def check_for_interrupts(self) -> None:
        self.engine.check_for_interrupts()
