"""INSERT, UPDATE and DELETE execution (ModifyTable).

:func:`prepare_dml` compiles everything once per plan: the scan of the
target (with its tid), SET expressions, column defaults (parsed from their
SQL text and cached per relation), NOT NULL checks, RETURNING; :func:`run_dml`
runs it and returns ``(row count, RETURNING rows)``.

Concurrency: UPDATE/DELETE hand the storage a ``recheck`` callback which
re-evaluates the WHERE clause and the SET list on the newest version of a row
updated concurrently (READ COMMITTED), as PostgreSQL's EvalPlanQual does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pgbundle.server.errors import PgError
from pgbundle.server.executor.constraints import default_fns, for_relation
from pgbundle.server.executor.expr import Const, ExecState, Layout, compile_expr
from pgbundle.shared.types import oids as T
from pgbundle.shared.types.text import text_encoder

if TYPE_CHECKING:
    from pgbundle.server.optimizer.plan import DMLPlan, Planner
    from pgbundle.server.parser.analyze import QueryTree


def prepare_dml(p: DMLPlan, env: Any, q: QueryTree, outer: list[Layout], planner: Planner) -> None:
    """Compile ``p`` (a DMLPlan) for ``q``; ``planner`` (an optimizer Planner made by the
    caller) plans the scan of the target, the INSERT's source and the CTEs."""
    rel = q.target
    assert rel is not None, "a DML statement has a target"
    p.rel = rel
    ncols = len(rel.columns)
    p.ncols = ncols
    p.defaults = default_fns(env, rel)
    p.notnull = [i for i, c in enumerate(rel.columns) if c.not_null and not c.dropped]
    cons = for_relation(env, rel) if rel.constraints or _referenced(env, rel) else None
    p.cons = cons if cons is not None and not cons.empty else None
    p.scan = None
    p.kind = q.kind
    p.tag_kind = q.kind
    planner._plan_ctes(q)
    if q.kind == "insert":
        p.cols = list(q.insert_cols)
        if q.insert_rows is not None:
            lay = Layout({}, outer)
            p.value_rows = [[compile_expr(e, lay, planner) if e is not None else None for e in row]
                            for row in q.insert_rows]
            p.source = None
        else:
            assert q.source is not None    # INSERT ... SELECT
            p.value_rows = None
            p.source = planner.plan_select(q.source)
        ret_lay = Layout({q.target_rt: 0}, outer)
        p.returning = [compile_expr(t.expr, ret_lay, planner) for t in q.returning]
        p.on_conflict = None
        if q.on_conflict is not None:
            oc = q.on_conflict
            if oc[0] == "nothing":
                p.on_conflict = ("nothing", oc[1], None, None)
            else:
                _, cols, sets, where, ert = oc
                lay = Layout({q.target_rt: 0, ert: ncols}, outer)
                p.on_conflict = ("update", cols,
                                 [(i, compile_expr(e, lay, planner) if e is not None else None) for i, e in sets],
                                 compile_expr(where, lay, planner) if where is not None else None)
        return
    # UPDATE / DELETE: scan target (+ FROM/USING items) with tid
    node, layout = planner.plan_from_where(q, dml_target=q.target_rt)
    p.scan = node
    p.layout = layout
    base = layout.offsets[q.target_rt]
    p.base = base
    p.tid_pos = base + ncols
    p.single = not q.from_
    if q.kind == "update":
        p.sets = [(i, compile_expr(e, layout, planner) if e is not None else None) for i, e in q.set_cols]
    # recheck: WHERE evaluated on a row made of the newest version alone (single-table statements)
    p.recheck_where = None
    p.recheck_sets = None
    if p.single and q.where is not None:
        p.recheck_where = compile_expr(q.where, Layout({q.target_rt: 0}, outer), planner)
        if q.kind == "update":
            p.recheck_sets = [(i, compile_expr(e, Layout({q.target_rt: 0}, outer), planner) if e is not None
                               else None) for i, e in q.set_cols]
    p.returning = [compile_expr(t.expr, layout, planner) for t in q.returning]


def _referenced(env: Any, rel: Any) -> bool:
    """Is ``rel`` referenced by some foreign key?"""
    cache = env.__dict__.setdefault("_referenced_cache", {})
    key = rel.oid
    hit = cache.get(key)
    if hit is not None and hit[0] is rel:
        return hit[1]
    found = False
    for other in env.storage.relations("r"):
        if any(c.kind == "f" and c.ref_table == rel.oid for c in other.constraints):
            found = True
            break
    cache[key] = (rel, found)
    return found


def _check_notnull(p: DMLPlan, row: tuple) -> None:
    for i in p.notnull:
        if row[i] is None:
            c = p.rel.columns[i]
            vals = ", ".join("null" if v is None else _fmt(v, cc.type_oid) for v, cc in zip(row, p.rel.columns)
                             if not cc.dropped)
            raise PgError("23502", f'null value in column "{c.name}" of relation "{p.rel.name}" violates '
                                   f'not-null constraint', detail=f"Failing row contains ({vals}).",
                          schema=p.rel.schema, table=p.rel.name, column=c.name)


def _fmt(v: Any, oid: int) -> str:
    try:
        return text_encoder(oid)(v)
    except Exception:
        return str(v)


def _default(p: DMLPlan, i: int, st: ExecState) -> Any:
    """SET col = DEFAULT: the column's default, NULL without one."""
    d = p.defaults[i]
    return d((), st) if d is not None else None


def _build_insert_row(p: DMLPlan, st: ExecState, values: list, cols: list[int]) -> tuple:
    row = [None] * p.ncols
    given = [False] * p.ncols
    for i, v in zip(cols, values):
        row[i] = v
        given[i] = True
    for i, d in enumerate(p.defaults):
        if not given[i] and d is not None:
            row[i] = d((), st)
    return tuple(row)


def run_dml(p: DMLPlan, st: ExecState) -> tuple[int, list[tuple]]:
    if p.kind == "insert":
        return _run_insert(p, st)
    if p.kind == "update":
        return _run_update(p, st)
    return _run_delete(p, st)


def _run_insert(p: DMLPlan, st: ExecState) -> tuple[int, list[tuple]]:
    storage = st.storage
    rel = p.rel
    n = 0
    out = []
    ret = p.returning
    cols = p.cols
    if p.value_rows is not None:
        source = ([None if f is None else f((), st) for f in fns] for fns in p.value_rows)
        defaults_mask = [[f is None for f in fns] for fns in p.value_rows]
    else:
        assert p.source is not None
        source = (list(r) for r in p.source.rows(st, None))
        defaults_mask = None
    for k, vals in enumerate(source):
        if defaults_mask is not None and any(defaults_mask[k]):
            use_cols = [c for c, d in zip(cols, defaults_mask[k]) if not d]
            use_vals = [v for v, d in zip(vals, defaults_mask[k]) if not d]
            row = _build_insert_row(p, st, use_vals, use_cols)
        else:
            row = _build_insert_row(p, st, vals, cols)
        _check_notnull(p, row)
        if p.on_conflict is not None:
            existing = _find_conflict(p, st, row)
            if existing is not None:
                if p.on_conflict[0] == "nothing":
                    continue
                tid, old = existing
                _, _, sets, where = p.on_conflict
                comb = old + row
                if where is not None and where(comb, st) is not True:
                    continue
                newcols = list(old)
                for i, f in sets:
                    newcols[i] = f(comb, st) if f is not None else _default(p, i, st)
                new = tuple(newcols)
                _check_notnull(p, new)
                storage.update(rel, tid, new, None)
                if p.cons is not None:
                    p.cons.check_new(st, new, old)
                    p.cons.on_update(st, old, new)
                n += 1
                if ret:
                    out.append(tuple(f(new, st) for f in ret))
                continue
        storage.insert(rel, row)
        if p.cons is not None:
            p.cons.check_new(st, row)
        n += 1
        if ret:
            out.append(tuple(f(row, st) for f in ret))
    return n, out


def _find_conflict(p: DMLPlan, st: ExecState, row: tuple) -> tuple[Any, tuple] | None:
    assert p.on_conflict is not None
    cols = p.on_conflict[1]
    for index in p.rel.indexes:
        if not index.unique:
            continue
        if cols and tuple(sorted(index.columns)) != tuple(sorted(cols)):
            continue
        key = tuple(row[i] for i in index.columns)
        if None in key:
            continue
        for tid, old in st.storage.index_scan(index, p.rel, key, True, key, True):
            return tid, old
    return None


def _run_update(p: DMLPlan, st: ExecState) -> tuple[int, list[tuple]]:
    storage = st.storage
    rel = p.rel
    base, ncols, tidpos = p.base, p.ncols, p.tid_pos
    sets = p.sets
    ret = p.returning
    assert p.scan is not None
    rows = list(p.scan.rows(st, None))
    n = 0
    out = []
    seen: set = set()
    rw, rs = p.recheck_where, p.recheck_sets
    for r in rows:
        tid = r[tidpos]
        if tid in seen:
            continue
        seen.add(tid)
        old = r[base:base + ncols]
        newcols = list(old)
        for i, f in sets:
            newcols[i] = f(r, st) if f is not None else _default(p, i, st)
        new = tuple(newcols)
        _check_notnull(p, new)
        final = [new]

        def recheck(latest: tuple, _final: list[tuple] = final, tid: Any = tid) -> tuple | None:
            lrow = latest + (tid,)
            if rw is not None and rw(lrow, st) is not True:
                return None
            if rs is None:
                return _final[0]
            cols = list(latest)
            for i, f in rs:
                cols[i] = f(lrow, st) if f is not None else _default(p, i, st)
            nv = tuple(cols)
            _check_notnull(p, nv)
            _final[0] = nv
            return nv
        if storage.update(rel, tid, new, recheck):
            if p.cons is not None:
                p.cons.check_new(st, final[0], old)
                p.cons.on_update(st, old, final[0])
            n += 1
            if ret:
                rr = r[:base] + final[0] + r[base + ncols:]
                out.append(tuple(f(rr, st) for f in ret))
    return n, out


def _run_delete(p: DMLPlan, st: ExecState) -> tuple[int, list[tuple]]:
    storage = st.storage
    rel = p.rel
    base, ncols, tidpos = p.base, p.ncols, p.tid_pos
    ret = p.returning
    assert p.scan is not None
    rows = list(p.scan.rows(st, None))
    n = 0
    out = []
    seen: set = set()
    rw = p.recheck_where
    for r in rows:
        tid = r[tidpos]
        if tid in seen:
            continue
        seen.add(tid)

        def recheck(latest: tuple, tid: Any = tid) -> bool:
            return rw is None or rw(latest + (tid,), st) is True
        if storage.delete(rel, tid, recheck):
            if p.cons is not None:
                p.cons.on_delete(st, r[base:base + ncols])
            n += 1
            if ret:
                out.append(tuple(f(r, st) for f in ret))
    return n, out


__all__ = ["prepare_dml", "run_dml", "Const", "T"]
