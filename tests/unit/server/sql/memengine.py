"""A single-session, in-memory implementation of the engine API
(:mod:`pgbundle.server.access.api`) for unit tests of the SQL layer without
processes.  Transactions are an undo log; there is no concurrency.  It is a
test double for the engine only: the SQL layer under test is the real one.
"""

from __future__ import annotations

import datetime as dt
import itertools

from pgbundle.server.access import api
from pgbundle.server.errors import PgError
from pgbundle.server.utils.guc import GucSettings


class MemEngine:
    def __init__(self) -> None:
        self.database = api.DatabaseInfo(5, "postgres", 10)
        self.role = api.RoleInfo(10, "postgres", superuser=True, can_login=True)
        self.pid = 4242
        self.settings = GucSettings()
        self.notices: list = []
        self._oid = itertools.count(16384)
        self._tid = itertools.count(1)
        self.rels: dict[int, api.RelationInfo] = {}
        self.data: dict[int, dict[int, tuple]] = {}
        self.seqs: dict[int, list] = {}
        self.block = False
        self.xact = False
        self.undo: list = []
        self.savepoints: list[tuple[str, int]] = []
        self.iso = api.Isolation.READ_COMMITTED
        self.curr: dict[int, int] = {}
        self.last = None
        self.commits = 0

    # transactions
    def check_for_interrupts(self) -> None:
        pass

    def report_activity(self, state: str, query: str | None = None) -> None:
        pass

    def begin(self, isolation=None, read_only=None) -> None:
        self.block = True
        self.xact = True
        if isolation is not None:
            self.iso = isolation

    def set_isolation(self, isolation) -> None:
        self.iso = isolation

    @property
    def isolation(self):
        return self.iso

    @property
    def in_transaction_block(self) -> bool:
        return self.block

    @property
    def in_transaction(self) -> bool:
        return self.xact

    def start_statement(self):
        self.xact = True
        return api.Snapshot(1, 2, frozenset())

    def end_statement(self) -> None:
        pass

    def commit(self) -> None:
        self.block = self.xact = False
        self.undo.clear()
        self.savepoints.clear()
        self.commits += 1

    def rollback(self) -> None:
        self._undo_to(0)
        self.block = self.xact = False
        self.savepoints.clear()
        self.iso = api.Isolation.READ_COMMITTED

    def _undo_to(self, n: int) -> None:
        while len(self.undo) > n:
            f = self.undo.pop()
            f()

    def savepoint(self, name: str) -> None:
        self.savepoints.append((name, len(self.undo)))

    def _find_sp(self, name: str) -> int:
        for i in range(len(self.savepoints) - 1, -1, -1):
            if self.savepoints[i][0] == name:
                return i
        raise PgError("3B001", f'savepoint "{name}" does not exist')

    def release_savepoint(self, name: str) -> None:
        i = self._find_sp(name)
        del self.savepoints[i:]

    def rollback_to_savepoint(self, name: str) -> None:
        i = self._find_sp(name)
        self._undo_to(self.savepoints[i][1])
        del self.savepoints[i + 1:]

    def snapshot(self):
        return api.Snapshot(1, 2, frozenset())

    def current_xid(self, assign: bool = True) -> int:
        return 700

    # catalog
    def lookup_relation(self, name: str, schema: str | None = None):
        for r in self.rels.values():
            if r.name == name and (schema is None or r.namespace == schema):
                return r
        return None

    def relation(self, oid: int):
        r = self.rels.get(oid)
        if r is None:
            raise PgError("42P01", f"relation with OID {oid} does not exist")
        return r

    def relations(self, kinds: str = "rivSmpcf"):
        return [r for r in self.rels.values() if r.kind.value in kinds]

    def namespaces(self):
        return [(11, "pg_catalog", 10), (2200, "public", 10), (13183, "information_schema", 10)]

    @property
    def search_path(self):
        return ["pg_catalog", "public"]

    def lookup_namespace(self, name: str):
        for o, n, _ in self.namespaces():
            if n == name:
                return o
        return None

    def _put(self, rel) -> None:
        old = self.rels.get(rel.oid)
        self.rels[rel.oid] = rel
        if old is None:
            self.undo.append(lambda: self.rels.pop(rel.oid, None))
        else:
            self.undo.append(lambda: self.rels.__setitem__(rel.oid, old))

    def create_table(self, name, columns, *, schema=None, primary_key=None, unique=(), constraint_names=None,
                     if_not_exists=False, persistence="p", options=()):
        if self.lookup_relation(name, schema) is not None:
            if if_not_exists:
                return None
            raise PgError("42P07", f'relation "{name}" already exists')
        oid = next(self._oid)
        cols = tuple(api.ColumnInfo(i + 1, c.name, c.type_oid, c.typmod,
                                    c.not_null or bool(primary_key and c.name in primary_key), c.default)
                     for i, c in enumerate(columns))
        rel = api.RelationInfo(oid, name, schema or "public", 2200, api.RelKind.TABLE, cols, options=tuple(options))
        self._put(rel)
        self.data[oid] = {}
        if primary_key:
            self.create_index(oid, (constraint_names or {}).get(tuple(primary_key), f"{name}_pkey"),
                              [rel.column(c).attnum for c in primary_key], unique=True, primary=True,
                              constraint=True)
        for u in unique:
            self.create_index(oid, (constraint_names or {}).get(tuple(u), f"{name}_{'_'.join(u)}_key"),
                              [self.rels[oid].column(c).attnum for c in u], unique=True, constraint=True)
        return self.rels[oid]

    def create_index(self, table_oid, name, columns, *, unique=False, primary=False, if_not_exists=False,
                     constraint=False):
        rel = self.rels[table_oid]
        if name is None:
            name = f"{rel.name}_{'_'.join(rel.columns[a - 1].name for a in columns)}_idx"
        if self.lookup_relation(name) is not None:
            if if_not_exists:
                return None
            raise PgError("42P07", f'relation "{name}" already exists')
        idx = api.IndexInfo(next(self._oid), name, table_oid, tuple(columns), unique, primary)
        if unique:
            seen = set()
            for row in self.data[table_oid].values():
                k = tuple(row[a - 1] for a in columns)
                if None in k:
                    continue
                if k in seen:
                    raise PgError("23505", f'could not create unique index "{name}"')
                seen.add(k)
        cons = rel.constraints
        if constraint:
            cons = cons + (api.ConstraintInfo(next(self._oid), name, "p" if primary else "u", table_oid,
                                              tuple(columns), idx.oid),)
        self._put(api.RelationInfo(rel.oid, rel.name, rel.namespace, rel.namespace_oid, rel.kind, rel.columns,
                                   rel.indexes + (idx,), cons))
        iref = api.RelationInfo(idx.oid, name, rel.namespace, rel.namespace_oid, api.RelKind.INDEX, (),
                                index_info=idx)
        self._put(iref)
        return idx

    def drop_relation(self, oid, *, cascade=False):
        rel = self.rels[oid]
        self.rels.pop(oid)
        self.undo.append(lambda: self.rels.__setitem__(oid, rel))
        for i in rel.indexes:
            ir = self.rels.pop(i.oid, None)
            if ir is not None:
                self.undo.append(lambda i=i, ir=ir: self.rels.__setitem__(i.oid, ir))
        for s, (_v, owner) in list(self.seqs.items()):
            if owner == oid and s in self.rels:
                self.drop_relation(s)

    def truncate(self, oids):
        for oid in oids:
            old = self.data[oid]
            self.data[oid] = {}
            self.undo.append(lambda oid=oid, old=old: self.data.__setitem__(oid, old))

    def add_column(self, table_oid, column, *, missing_value=None):
        rel = self.rels[table_oid]
        n = len(rel.columns) + 1
        col = api.ColumnInfo(n, column.name, column.type_oid, column.typmod, column.not_null, column.default)
        self._put(api.RelationInfo(rel.oid, rel.name, rel.namespace, rel.namespace_oid, rel.kind,
                                   rel.columns + (col,), rel.indexes, rel.constraints))
        old = self.data[table_oid]
        self.data[table_oid] = {t: r + (missing_value,) for t, r in old.items()}
        self.undo.append(lambda: self.data.__setitem__(table_oid, old))

    def drop_column(self, table_oid, attnum):
        rel = self.rels[table_oid]
        cols = list(rel.columns)
        c = cols[attnum - 1]
        cols[attnum - 1] = api.ColumnInfo(c.attnum, c.name, c.type_oid, c.typmod, False, None, dropped=True)
        self._put(api.RelationInfo(rel.oid, rel.name, rel.namespace, rel.namespace_oid, rel.kind, tuple(cols),
                                   rel.indexes, rel.constraints))
        old = self.data[table_oid]
        self.data[table_oid] = {t: r[:attnum - 1] + (None,) + r[attnum:] for t, r in old.items()}
        self.undo.append(lambda: self.data.__setitem__(table_oid, old))

    def set_column_not_null(self, table_oid, attnum, not_null):
        rel = self.rels[table_oid]
        cols = list(rel.columns)
        c = cols[attnum - 1]
        if not_null and any(r[attnum - 1] is None for r in self.data[table_oid].values()):
            raise PgError("23502", f'column "{c.name}" of relation "{rel.name}" contains null values')
        cols[attnum - 1] = api.ColumnInfo(c.attnum, c.name, c.type_oid, c.typmod, not_null, c.default)
        self._put(api.RelationInfo(rel.oid, rel.name, rel.namespace, rel.namespace_oid, rel.kind, tuple(cols),
                                   rel.indexes, rel.constraints))

    def add_constraint(self, table_oid, constraint):
        return constraint

    # sequences
    def create_sequence(self, name, *, schema=None, type_oid=20, start=None, increment=1, min_value=None,
                        max_value=None, cache=1, cycle=False, if_not_exists=False):
        oid = next(self._oid)
        rel = api.RelationInfo(oid, name, schema or "public", 2200, api.RelKind.SEQUENCE, ())
        self._put(rel)
        self.seqs[oid] = [(start or 1) - 1, 0]
        return rel

    def set_sequence_owner(self, seq_oid, table_oid, attnum):
        self.seqs[seq_oid][1] = table_oid

    def nextval(self, seq_oid):
        self.seqs[seq_oid][0] += 1
        v = self.seqs[seq_oid][0]
        self.curr[seq_oid] = v
        self.last = v
        return v

    def currval(self, seq_oid):
        if seq_oid not in self.curr:
            raise PgError("55000", f'currval of sequence "{self.rels[seq_oid].name}" is not yet defined in this '
                                   f'session')
        return self.curr[seq_oid]

    def setval(self, seq_oid, value, is_called=True):
        self.seqs[seq_oid][0] = value if is_called else value - 1
        return value

    def lastval(self):
        if self.last is None:
            raise PgError("55000", "lastval is not yet defined in this session")
        return self.last

    # heap
    def seq_scan(self, rel, snapshot=None):
        return list(self.data[rel.oid].items())

    def _check(self, rel, row, skip=None):
        rel = self.rels[rel.oid]
        for c in rel.columns:
            if c.not_null and row[c.attnum - 1] is None:
                raise PgError("23502", f'null value in column "{c.name}" of relation "{rel.name}" violates '
                                       f'not-null constraint')
        for i in rel.indexes:
            if not i.unique:
                continue
            k = tuple(row[a - 1] for a in i.columns)
            if None in k:
                continue
            for t, r in self.data[rel.oid].items():
                if t != skip and tuple(r[a - 1] for a in i.columns) == k:
                    cols = ", ".join(rel.columns[a - 1].name for a in i.columns)
                    vals = ", ".join(str(v) for v in k)
                    raise PgError("23505", f'duplicate key value violates unique constraint "{i.name}"',
                                  detail=f"Key ({cols})=({vals}) already exists.", constraint=i.name)

    def insert(self, rel, row):
        self._check(rel, row)
        tid = api.TID(next(self._tid), 1)
        self.data[rel.oid][tid] = tuple(row)
        self.undo.append(lambda: self.data[rel.oid].pop(tid, None))
        return tid

    def insert_many(self, rel, rows):
        return [self.insert(rel, r) for r in rows]

    def update(self, rel, tid, row):
        d = self.data[rel.oid]
        if tid not in d:
            return api.Conflict("deleted")
        self._check(rel, row, skip=tid)
        old = d.pop(tid)
        ntid = api.TID(next(self._tid), 1)
        d[ntid] = tuple(row)

        def undo():
            d.pop(ntid, None)
            d[tid] = old
        self.undo.append(undo)
        return ntid

    def delete(self, rel, tid):
        d = self.data[rel.oid]
        if tid not in d:
            return api.Conflict("deleted")
        old = d.pop(tid)
        self.undo.append(lambda: d.__setitem__(tid, old))
        return True

    def index_scan(self, index, lower=None, upper=None, *, snapshot=None, backward=False):
        out = []
        for tid, row in self.data[index.table_oid].items():
            k = tuple(row[a - 1] for a in index.columns)
            if None in k:
                continue
            if lower is not None:
                p = k[:len(lower.values)]
                if p < lower.values or (p == lower.values and not lower.inclusive):
                    continue
            if upper is not None:
                p = k[:len(upper.values)]
                if p > upper.values or (p == upper.values and not upper.inclusive):
                    continue
            out.append((k, tid, row))
        out.sort(key=lambda x: x[0])
        return [(t, r) for _k, t, r in out]

    # roles, databases, maintenance, stats
    def roles(self):
        return [self.role]

    def role_by_name(self, name):
        return self.role if name == self.role.name else None

    def databases(self):
        return [self.database, api.DatabaseInfo(1, "template1", 10, is_template=True)]

    def vacuum(self, rel=None, **kw):
        return []

    def analyze(self, rel=None):
        pass

    def checkpoint(self):
        pass

    def activity(self):
        now = dt.datetime.now(dt.timezone.utc)
        return [api.BackendStatus(self.pid, "client backend", 5, "postgres", 10, "postgres", "", "127.0.0.1", None,
                                  5432, now, now, now, now, None, None, "active", None, None, None, "select")]

    def database_stats(self):
        return [api.DatabaseStats(5, "postgres", 1, self.commits)]

    def table_stats(self):
        return [api.TableStats(r.oid, r.namespace, r.name, n_live_tup=len(self.data[r.oid]))
                for r in self.rels.values() if r.kind == api.RelKind.TABLE]

    def bgwriter_stats(self):
        return {"checkpoints_timed": 0, "buffers_alloc": 1}

    def checkpointer_stats(self):
        return {"num_timed": 0, "num_requested": 0}

    def wal_stats(self):
        return {"wal_records": 0, "wal_bytes": 0, "lsn": "0/0"}

    def is_in_recovery(self):
        return False

    def postmaster_start_time(self):
        return dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)

    def advisory_unlock_all(self):
        pass
