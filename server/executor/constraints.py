"""CHECK and FOREIGN KEY enforcement for INSERT, UPDATE, DELETE and COPY.

:func:`for_relation` gives the compiled constraints of a table (cached per
relation descriptor, so a catalog change recompiles them):

* CHECK expressions are analysed once against the table's columns; a new row
  for which one is false raises 23514 (NULL passes, as in PostgreSQL).
* Outgoing foreign keys (MATCH SIMPLE): a new or changed referencing key whose
  columns are all non-NULL must exist in the referenced table (found through
  its unique index), else 23503.
* Incoming foreign keys: deleting a referenced row, or changing its key, runs
  the constraint's action on the referencing rows — NO ACTION / RESTRICT raise
  23503, CASCADE deletes (or updates) them, SET NULL / SET DEFAULT update them —
  recursively through their own constraints.

Checks run per row right after the row is written (PostgreSQL runs NO ACTION
checks at the end of the statement; here they behave like RESTRICT).  The
referenced row is not locked against a concurrent delete (PostgreSQL takes a
FOR KEY SHARE lock, which would need multixacts here).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pgbundle.server.errors import PgError
from pgbundle.server.executor.expr import Fn, Layout, compile_expr
from pgbundle.server.parser.analyze import Analyzer, ParamTypes, PState, QueryTree
from pgbundle.server.parser.parse import parse
from pgbundle.shared.quoting import quote_ident
from pgbundle.shared.types.text import text_encoder


def default_fns(env: Any, rel: Any) -> list[Fn | None]:
    """Compiled default expression (or None) of every column of ``rel``."""
    cache = env.default_cache
    key = (rel.oid, tuple(c.default for c in rel.columns))
    hit = cache.get(key)
    if hit is not None:
        return hit
    out: list[Fn | None] = []
    for c in rel.columns:
        if not c.default:
            out.append(None)
            continue
        stmts = parse(f"SELECT {c.default}")
        node = stmts[0].node["targetList"][0]["ResTarget"]["val"]
        an = Analyzer(env, ParamTypes())
        ps = PState(None, QueryTree("select"))
        e = an.expr(node, ps)
        e = an.coerce_assign(e, c.type_oid, c.typmod, c.name, None)
        out.append(compile_expr(e, Layout()))
    cache[key] = out
    return out


class RelConstraints:
    def __init__(self, env: Any, rel: Any) -> None:
        self.rel = rel
        self.checks: list[tuple[str, Any]] = []
        self.fks_out: list[tuple[Any, Any, Any]] = []
        self.fks_in: list[tuple[Any, Any, Any]] = []
        self.env = env
        for c in rel.constraints:
            if c.kind == "c" and c.expr:
                self.checks.append((c.name, _compile_check(env, rel, c.expr)))
            elif c.kind == "f":
                ref = env.storage.relation_by_oid(c.ref_table)
                if ref is not None:
                    self.fks_out.append((c, ref, _index_on(ref, c.ref_columns)))
        for other in env.storage.relations("r"):
            for c in other.constraints:
                if c.kind == "f" and c.ref_table == rel.oid:
                    self.fks_in.append((c, other, _index_on(other, c.columns, unique=False)))
        self.empty = not (self.checks or self.fks_out or self.fks_in)
        self.has_new_checks = bool(self.checks or self.fks_out)

    # ------------------------------------------------------------------ new rows

    def check_new(self, st: Any, row: tuple, old: tuple | None = None) -> None:
        rel = self.rel
        for name, f in self.checks:
            if f(row, st) is False:
                raise PgError("23514", f'new row for relation "{rel.name}" violates check constraint "{name}"',
                              detail=f"Failing row contains {_fmt_row(rel, row)}.", schema=rel.schema,
                              table=rel.name, constraint=name)
        for con, ref, index in self.fks_out:
            key = tuple(row[i] for i in con.columns)
            if any(v is None for v in key):
                continue
            if old is not None and tuple(old[i] for i in con.columns) == key:
                continue
            if not _exists(st, ref, index, con.ref_columns, key):
                cols = ", ".join(rel.columns[i].name for i in con.columns)
                raise PgError("23503", f'insert or update on table "{rel.name}" violates foreign key constraint '
                                       f'"{con.name}"',
                              detail=f'Key ({cols})=({_fmt_vals(rel, con.columns, key)}) is not present in table '
                                     f'"{ref.name}".', schema=rel.schema, table=rel.name, constraint=con.name)

    # ------------------------------------------------------------------ referenced rows

    def _referencing_rows(self, old: tuple, new: tuple | None, st: Any, action: str) -> Iterator[tuple]:
        """For each foreign key into this table whose key in ``old`` is not null (and differs in
        ``new``, for an update) and that rows still reference: refuse NO ACTION / RESTRICT, else
        yield (constraint, child, child constraints, action, new key, referencing rows)."""
        for con, child, index in self.fks_in:
            key = tuple(old[i] for i in con.ref_columns)
            newkey = None if new is None else tuple(new[i] for i in con.ref_columns)
            if key == newkey or any(v is None for v in key):
                continue
            rows = _referencing(st, child, index, con.columns, key)
            if not rows:
                continue
            act = getattr(con, action)
            if act in ("a", "r"):
                self._still_referenced(con, child, key)
            yield con, child, for_relation(self.env, child), act, newkey, rows

    def on_delete(self, st: Any, old: tuple) -> None:
        for con, child, child_cons, act, _newkey, rows in self._referencing_rows(old, None, st, "on_delete"):
            for tid, crow in rows:
                if act == "c":
                    if st.storage.delete(child, tid, None):
                        if not child_cons.empty:
                            child_cons.on_delete(st, crow)
                else:
                    self._set_columns(st, child, child_cons, con, tid, crow, act)

    def on_update(self, st: Any, old: tuple, new: tuple) -> None:
        for con, child, child_cons, act, newkey, rows in self._referencing_rows(old, new, st, "on_update"):
            for tid, crow in rows:
                if act == "c":
                    cols = list(crow)
                    for ci, v in zip(con.columns, newkey):
                        cols[ci] = v
                    nrow = tuple(cols)
                    if st.storage.update(child, tid, nrow, None) and not child_cons.empty:
                        child_cons.on_update(st, crow, nrow)
                else:
                    self._set_columns(st, child, child_cons, con, tid, crow, act)

    def _set_columns(self, st: Any, child: Any, child_cons: Any, con: Any, tid: Any, crow: tuple, act: str) -> None:
        cols = list(crow)
        defaults = None
        if act == "d":
            defaults = default_fns(self.env, child)
        for ci in con.columns:
            if act == "n":
                cols[ci] = None
            else:
                d = defaults[ci] if defaults else None
                cols[ci] = d((), st) if d is not None else None
            c = child.columns[ci]
            if cols[ci] is None and c.not_null:
                raise PgError("23502", f'null value in column "{c.name}" of relation "{child.name}" violates '
                                       f"not-null constraint", detail=f"Failing row contains "
                                                                      f"{_fmt_row(child, tuple(cols))}.",
                              schema=child.schema, table=child.name, column=c.name)
        nrow = tuple(cols)
        if st.storage.update(child, tid, nrow, None):
            child_cons.check_new(st, nrow, None)
            if not child_cons.empty:
                child_cons.on_update(st, crow, nrow)

    def _still_referenced(self, con: Any, child: Any, key: tuple) -> None:
        rel = self.rel
        cols = ", ".join(rel.columns[i].name for i in con.ref_columns)
        raise PgError("23503", f'update or delete on table "{rel.name}" violates foreign key constraint '
                               f'"{con.name}" on table "{child.name}"',
                      detail=f'Key ({cols})=({_fmt_vals(rel, con.ref_columns, key)}) is still referenced from '
                             f'table "{child.name}".', schema=child.schema, table=child.name,
                      constraint=con.name)


_EMPTY: dict = {}


def for_relation(env: Any, rel: Any) -> RelConstraints:
    cache = env.__dict__.setdefault("_constraint_cache", {})
    hit = cache.get(rel.oid)
    if hit is not None and hit.rel is rel:
        return hit
    rc = RelConstraints(env, rel)
    cache[rel.oid] = rc
    return rc


def _index_on(rel: Any, cols: tuple[int, ...], unique: bool = True) -> Any:
    want = sorted(cols)
    for i in rel.indexes:
        if (i.unique or not unique) and sorted(i.columns) == want:
            return i
    if not unique:
        for i in rel.indexes:  # an index whose leading columns are the key
            if sorted(i.columns[: len(cols)]) == want:
                return i
    return None


def _exists(st: Any, rel: Any, index: Any, cols: tuple[int, ...], key: tuple) -> bool:
    return bool(_find(st, rel, index, cols, key, first=True))


def _referencing(st: Any, rel: Any, index: Any, cols: tuple[int, ...], key: tuple) -> list:
    return _find(st, rel, index, cols, key)


def _find(st: Any, rel: Any, index: Any, cols: tuple[int, ...], key: tuple, first: bool = False) -> list:
    want = dict(zip(cols, key))
    out = []
    if index is not None:
        ikey = tuple(want[c] for c in index.columns if c in want)
        if len(ikey) == len(want) and all(c in want for c in index.columns[: len(ikey)]):
            for tid, row in st.storage.index_scan(index, rel, ikey, True, ikey, True):
                if all(row[c] == v for c, v in want.items()):
                    out.append((tid, row))
                    if first:
                        break
            return out
    for tid, row in st.storage.scan(rel):
        if all(row[c] == v for c, v in want.items()):
            out.append((tid, row))
            if first:
                break
    return out


def _compile_check(env: Any, rel: Any, text: str) -> Any:
    raw = parse(f"SELECT ({text}) FROM {quote_ident(rel.schema)}.{quote_ident(rel.name)}")[0]
    q = Analyzer(env, ParamTypes()).analyze(raw.kind, raw.node)
    e = q.targets[0].expr
    rt = q.from_[0].rt
    return compile_expr(e, Layout({rt: 0}))


def _fmt(v: Any, oid: int) -> str:
    if v is None:
        return "null"
    try:
        return text_encoder(oid)(v)
    except Exception:
        return str(v)


def _fmt_row(rel: Any, row: tuple) -> str:
    return "(" + ", ".join(_fmt(v, c.type_oid) for v, c in zip(row, rel.columns) if not c.dropped) + ")"


def _fmt_vals(rel: Any, cols: tuple[int, ...], key: tuple) -> str:
    return ", ".join(_fmt(v, rel.columns[c].type_oid) for c, v in zip(cols, key))
