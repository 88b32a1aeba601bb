"""The planner: analysed :class:`~.analyze.QueryTree` -> tree of plan nodes.

Strategy (simple, predictable, PostgreSQL-shaped):

* WHERE is split into conjuncts; each goes to the lowest place where every
  column it uses is available (a scan, a join, or a filter on top), never
  below the nullable side of an outer join.
* A base table uses an **index scan** when a pushed conjunct is ``col = expr``
  (or a range ``<, <=, >, >=``) on the leading column(s) of an index and
  ``expr`` does not use the table itself; otherwise a sequential scan.
* Joins are built left to right as written.  An equality between the two
  sides becomes an **index nested loop** when the right side is a table with
  an index on that column, else a **hash join**; anything else is a nested
  loop.
* Then aggregation, window functions, projection, DISTINCT, sort, limit.

Rows of a query level are the concatenation of its range-table entries'
columns in FROM order; :class:`~.expr.Layout` records each entry's offset so
expressions compile to direct tuple indexing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pgbundle.server.errors import PgError
from pgbundle.server.executor import execute as X
from pgbundle.server.executor.expr import (
    Aggref,
    BoolOp,
    Const,
    ExecState,
    Expr,
    Fn,
    Func,
    Layout,
    Param,
    Slot,
    SubLink,
    Var,
    compile_expr,
    is_constant,
    rts_of,
    walk,
)
from pgbundle.server.executor.modify import prepare_dml, run_dml
from pgbundle.server.optimizer import costs as C
from pgbundle.server.parser.analyze import CTE, RTE, JoinNode, QueryTree, RangeRef, SortKey
from pgbundle.server.utils.adt import functions as F
from pgbundle.server.utils.adt.ruleutils import explain_text
from pgbundle.shared.quoting import quote_ident
from pgbundle.shared.types import oids as T

if TYPE_CHECKING:
    from pgbundle.server.access.tableam import SqlRelation
    from pgbundle.server.executor.constraints import RelConstraints

_CMP = {"=", "<", "<=", ">", ">="}
_FLIP = {"=": "=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def conjuncts(e: Expr | None) -> list[Expr]:
    if e is None:
        return []
    if isinstance(e, BoolOp) and e.op == "and":
        out: list[Expr] = []
        for a in e.args:
            out.extend(conjuncts(a))
        return out
    return [e]


def and_all(es: Sequence[Expr]) -> Expr | None:
    """The AND of ``es``; None for none."""
    return conjoin(es) if es else None


def conjoin(es: Sequence[Expr]) -> Expr:
    """The AND of one or more conjuncts."""
    assert es, "no conjuncts"
    return es[0] if len(es) == 1 else BoolOp("and", tuple(es))


def _slot_index(e: Expr) -> int:
    assert isinstance(e, Slot), e
    return e.index


# An index usable for a scan: (index, equality keys on its leading columns, lower bound and
# upper bound (expression, inclusive) on the next column).
IndexMatch = tuple[Any, list[Expr], tuple[Expr, bool] | None, tuple[Expr, bool] | None]


class Planner:
    """Plans one statement.  ``outer`` is the stack of layouts of enclosing
    query levels (for correlated subqueries)."""

    def __init__(self, env: Any, outer: list[Layout] | None = None, cte_plans: dict | None = None) -> None:
        self.env = env
        self.outer = outer or []
        self.cte_plans: dict[str, tuple[Any, CTE]] = dict(cte_plans or {})
        self._tinfo: dict[int, C.TableInfo] = {}
        self.order_hint: list[tuple[int, bool, bool]] | None = None
        self.sorted_by_scan = False

    # ------------------------------------------------------------------ estimates

    def _table_info(self, rt: int) -> C.TableInfo:
        ti = self._tinfo.get(rt)
        if ti is None:
            ti = self._tinfo[rt] = C.TableInfo(self.env, self.q.rtable[rt].rel)
        return ti

    def _setting(self, name: str, default: Any = True) -> Any:
        try:
            return self.env.settings.value(name)
        except Exception:  # noqa: BLE001
            return default

    def _text(self, e: Expr, qualify: bool) -> str:
        rtable = self.q.rtable

        def varname(v: Var) -> str:
            n = quote_ident(v.name) if v.name else f"col{v.col + 1}"
            if qualify and v.levelsup == 0 and 0 <= v.rt < len(rtable):
                return f"{quote_ident(rtable[v.rt].alias)}.{n}"
            return n
        return explain_text(e, varname, self.env)

    # ------------------------------------------------------------------ entry points

    def plan_select(self, q: QueryTree) -> X.PlanNode:
        self._plan_ctes(q)
        if q.kind == "setop":
            return self._plan_setop(q)
        self.order_hint = self._order_hint(q)
        node, layout = self.plan_from_where(q, dml_target=-1)
        return self._finish_select(q, node, layout)

    def _order_hint(self, q: QueryTree) -> list[tuple[int, bool, bool]] | None:
        """ORDER BY plain columns of the only table + LIMIT: an index in that order can
        replace the sort (and stop after LIMIT rows)."""
        if q.limit is None or not q.sort or q.has_aggs or q.aggs or q.windows or q.distinct or q.distinct_on:
            return None
        if len(q.from_) != 1 or not isinstance(q.from_[0], RangeRef):
            return None
        rt = q.from_[0].rt
        if q.rtable[rt].kind != "relation":
            return None
        out = []
        for s in q.sort:
            e = s.expr
            if isinstance(e, Slot) and e.index < len(q.targets):
                e = q.targets[e.index].expr
            if not isinstance(e, Var) or e.rt != rt or e.levelsup != 0:
                return None
            nulls_first = s.desc if s.nulls_first is None else s.nulls_first
            out.append((e.col, s.desc, nulls_first))
        return out

    def _plan_ctes(self, q: QueryTree) -> None:
        # a CTE query is one level below the query owning the WITH (which it cannot reference)
        outer = [Layout()] + self.outer
        for cte in q.ctes:
            key = (id(cte), cte.name)
            plan: X.PlanNode | DMLPlan
            if cte.query.recursive_name:
                sub = cte.query
                assert sub.larg is not None and sub.rarg is not None
                left = Planner(self.env, outer, self.cte_plans).plan_select(sub.larg)
                inner = Planner(self.env, outer, self.cte_plans)
                inner.cte_plans[cte.name] = (("work", key), cte)
                right = inner.plan_select(sub.rarg)
                plan = X.RecursiveUnion(("work", key), left, right, sub.setop_all)
                correlated = sub.larg.correlated or sub.rarg.correlated
            else:
                sub = cte.query
                if sub.kind in ("insert", "update", "delete"):
                    plan = DMLPlan(self.env, sub, outer, self.cte_plans)
                else:
                    plan = Planner(self.env, outer, self.cte_plans).plan_select(sub)
                correlated = sub.correlated
            cte.correlated = correlated
            self.cte_plans[cte.name] = (plan, cte)
            cte.plan = plan
            cte.key = key

    def _plan_setop(self, q: QueryTree) -> X.PlanNode:
        assert q.larg is not None and q.rarg is not None
        left = Planner(self.env, self.outer, self.cte_plans).plan_select(q.larg)
        right = Planner(self.env, self.outer, self.cte_plans).plan_select(q.rarg)
        node: X.PlanNode = X.SetOp(q.setop, q.setop_all, left, right)
        layout = Layout(outer=self.outer)
        if q.sort:
            # the analyser allows only output columns in a set operation's ORDER BY
            node = X.Sort(node, [(_slot_index(s.expr), s.desc, s.nulls_first) for s in q.sort])
        if q.limit is not None or q.offset is not None:
            node = self._limit(node, q)
        del layout
        return node

    def _const_fn(self, e: Expr | None) -> Fn | None:
        if e is None:
            return None
        return compile_expr(e, Layout(outer=self.outer), self)

    # ------------------------------------------------------------------ FROM / WHERE

    def plan_from_where(self, q: QueryTree, dml_target: int) -> tuple[X.PlanNode, Layout]:
        """Scan/join tree for q.from_ (plus the DML target relation when
        ``dml_target`` >= 0, scanned with its tid as an extra column)."""
        self.q = q
        self.dml_target = dml_target
        pool = conjuncts(q.where)
        self.pool = [(c, rts_of(c)) for c in pool]
        items: list[Any] = []
        if dml_target >= 0:
            items.append(RangeRef(dml_target))
        items.extend(q.from_)
        # offsets in FROM order
        self.layout = Layout(outer=self.outer)
        self.widths: dict[int, int] = {}
        off = 0
        for rt in self._leaves(items):
            self.layout.offsets[rt] = off
            w = q.rtable[rt].width + (1 if rt == dml_target else 0)
            self.widths[rt] = w
            off += w
        self.nullable: set[int] = set()
        self._find_nullable(items)
        if not items:
            node: X.PlanNode = X.ResultNode()
            rts: set[int] = set()
        else:
            node, rts = self._build(items[0])
            for it in items[1:]:
                right, rrts = self._build(it)
                node, rts = self._join(node, rts, right, rrts, "cross", [])
        rest = [c for c, _ in self.pool]
        self.pool = []
        if rest:
            node = X.Filter(node, compile_expr(conjoin(rest), self.layout, self))
        return node, self.layout

    def _leaves(self, items: list[Any]) -> list[int]:
        out: list[int] = []
        for it in items:
            if isinstance(it, RangeRef):
                out.append(it.rt)
            else:
                out.extend(self._leaves([it.left, it.right]))
        return out

    def _find_nullable(self, items: list[Any]) -> None:
        for it in items:
            if isinstance(it, JoinNode):
                if it.kind in ("left", "full"):
                    self.nullable |= set(self._leaves([it.right]))
                if it.kind in ("right", "full"):
                    self.nullable |= set(self._leaves([it.left]))
                self._find_nullable([it.left, it.right])

    def _take(self, avail: set[int], allow_nullable: bool = False) -> list[Expr]:
        """Remove and return pool conjuncts whose columns are all in ``avail``."""
        took, keep = [], []
        for c, rts in self.pool:
            if rts and rts <= avail and (allow_nullable or not (rts & self.nullable)):
                took.append(c)
            else:
                keep.append((c, rts))
        self.pool = keep
        return took

    def _build(self, item: Any) -> tuple[X.PlanNode, set[int]]:
        if isinstance(item, RangeRef):
            rt = item.rt
            quals = self._take({rt})
            return self._scan(rt, quals), {rt}
        left, lrts = self._build(item.left)
        right, rrts = self._build(item.right)
        quals = list(conjuncts(item.quals))
        return self._join(left, lrts, right, rrts, item.kind, quals)

    def _local_layout(self, rts: set[int]) -> Layout:
        base = min(self.layout.offsets[r] for r in rts)
        return Layout({r: self.layout.offsets[r] - base for r in rts}, self.outer)

    def _scan(self, rt: int, quals: list[Expr], param_keys: list[tuple[int, str, Expr]] | None = None
              ) -> X.PlanNode:
        rte = self.q.rtable[rt]
        lay = Layout({rt: 0}, self.outer)
        with_tid = rt == self.dml_target
        qual = compile_expr(conjoin(quals), lay, self) if quals else None
        node: X.PlanNode
        if rte.kind == "relation":
            rel = rte.relation
            if rel.kind == "S":
                return X.VirtualScan(_SequenceRow(rel), qual)
            ti = self._table_info(rt)
            sel = 1.0
            for c in quals:
                sel *= C.clause_selectivity(ti, rt, c)
            rows = max(ti.tuples * sel, 1.0)
            seq_cost = C.seq_scan_cost(ti, len(quals))
            qualify = len(self.q.rtable) > 1 and self.dml_target < 0
            idx = self._choose_index(rt, rte, quals)
            ordered = None
            if self.order_hint is not None and rt == self._only_rt():
                ordered = self._ordered_index(rel, idx)
                if ordered is not None:
                    idx = ordered[0]
            use_index = False
            if idx is not None:
                index, eq, lo, hi = idx
                ncols = len(eq) + (1 if lo or hi else 0)
                used = [c for c in quals if (p := self._index_pred(rt, c)) is not None
                        and p[0] in index.columns[:ncols]]
                isel = 1.0
                for c in used:
                    isel *= C.clause_selectivity(ti, rt, c)
                matched = max(ti.tuples * isel, 1.0)
                unique_eq = index.unique and len(eq) == len(index.columns)
                idx_cost = C.index_scan_cost(ti, matched, unique_eq) + \
                    matched * (len(quals) - len(used)) * C.CPU_OPERATOR_COST
                use_index = (idx_cost <= seq_cost or not self._setting("enable_seqscan")) and \
                    bool(self._setting("enable_indexscan"))
                if ordered is not None and self.q.limit is not None:
                    use_index = True
            if idx is not None and use_index:
                index, eq, lo, hi = idx
                const_lay = Layout({}, self.outer)
                eqf = [compile_expr(e, const_lay, self) for e in eq]
                lof = (compile_expr(lo[0], const_lay, self), lo[1]) if lo else None
                hif = (compile_expr(hi[0], const_lay, self), hi[1]) if hi else None
                iscan = node = X.IndexScan(rel, index, eqf, lof, hif, qual, with_tid, rte.alias)
                if ordered is not None:
                    iscan.backward = ordered[1]
                    self.sorted_by_scan = True
                    node.est = (0.0, idx_cost if not ordered else idx_cost, rows, ti.width)
                else:
                    node.est = (0.0, idx_cost, rows, ti.width)
                notes = []
                if used:
                    notes.append("Index Cond: " + self._text(conjoin(used), qualify))
                rest = [c for c in quals if c not in used]
                if rest:
                    notes.append("Filter: " + self._text(conjoin(rest), qualify))
                node.notes = tuple(notes)
                return node
            node = X.SeqScan(rel, qual, with_tid, rte.alias)
            node.est = (0.0, seq_cost, rows, ti.width)
            if quals:
                node.notes = ("Filter: " + self._text(conjoin(quals), qualify),)
            return node
        if rte.kind == "virtual":
            return X.VirtualScan(rte.virtual, qual)
        if rte.kind == "values":
            assert rte.values is not None
            full = self.layout
            fns = [[compile_expr(e, full, self) for e in row] for row in rte.values]
            return X.ValuesScan(fns, qual, rte.width)
        if rte.kind == "function":
            assert rte.funcs is not None
            full = self.layout
            funcs = []
            for e in rte.funcs:
                scols = F.SRF_COLS.get(getattr(e, "impl", None))
                n = len(scols) if scols else 1
                f = compile_expr(e, full, self)
                if getattr(e, "impl", None) not in F.SRF_IMPLS:
                    f = (lambda g: (lambda r, st: [g(r, st)]))(f)
                funcs.append((f, n))
            return X.FunctionScan(funcs, rte.ordinality, qual)
        if rte.kind == "subquery":
            outer = [self.layout] + self.outer if rte.lateral else self.outer
            assert rte.query is not None
            sub = Planner(self.env, outer, self.cte_plans).plan_select(rte.query)
            return X.SubqueryScan(sub, qual, rte.width)
        if rte.kind == "cte":
            entry = self.cte_plans.get(rte.cte_name)
            if entry is None:
                raise PgError("XX000", f"CTE {rte.cte_name} not planned")
            plan, cte = entry
            if isinstance(plan, tuple) and plan[0] == "work":
                return X.WorkTableScan(plan, qual, rte.width)
            cscan = X.CteScan(cte.key, plan, qual, rte.width, rte.cte_name)
            cscan.correlated = cte.correlated
            return cscan
        raise PgError("XX000", f"cannot scan {rte.kind}")

    def _only_rt(self) -> int:
        return self.q.from_[0].rt if len(self.q.from_) == 1 and isinstance(self.q.from_[0], RangeRef) else -1

    def _ordered_index(self, rel: Any, idx: Any) -> tuple[Any, bool] | None:
        """(index match, backward) when an index returns rows in the ORDER BY order: its
        columns after the equality prefix are the sort columns, all ascending with NULLs
        last (forward) or all descending with NULLs first (backward)."""
        hint = self.order_hint
        if not hint:
            return None
        desc = hint[0][1]
        if any(d != desc or nf != desc for _c, d, nf in hint):
            return None
        cols = [c for c, _d, _nf in hint]
        if idx is not None:
            index, eq, lo, hi = idx
            if list(index.columns[len(eq):len(eq) + len(cols)]) == cols and not (lo or hi) or \
                    list(index.columns[len(eq):len(eq) + len(cols)]) == cols:
                if all(not (o & 1) for o in getattr(index, "options", ()) or ()):
                    return idx, desc
        for index in rel.indexes:
            if list(index.columns[:len(cols)]) == cols and all(not (o & 1) for o in
                                                                 getattr(index, "options", ()) or ()):
                if idx is not None and idx[1]:
                    return None  # an equality lookup on another index is better
                return (index, [], None, None), desc
        return None

    def _index_pred(self, rt: int, e: Expr, avail_other: bool = False) -> tuple[int, str, Expr] | None:
        """(column, operator, other side) when ``e`` is ``col op expr`` usable
        by a B-tree on column ``col`` of ``rt``."""
        if not isinstance(e, Func) or e.name not in _CMP or len(e.args) != 2:
            return None
        a, b = e.args
        for x, y, opname in ((a, b, e.name), (b, a, _FLIP[e.name])):
            if isinstance(x, Var) and x.rt == rt and x.levelsup == 0 and rt not in rts_of(y):
                if not avail_other and not is_constant(y):
                    continue
                if any(isinstance(n, (Var,)) and n.levelsup > 0 for n in walk(y)):
                    continue
                if e.impl is not F.comparison(e.name, x.type) and x.type == y.type:
                    pass
                if y.type != x.type:
                    # the comparison runs in another type (e.g. int4 column vs numeric): no index
                    if not (x.type in (T.INT2, T.INT4, T.INT8) and y.type in (T.INT2, T.INT4, T.INT8)):
                        continue
                return x.col, opname, y
        return None

    def _choose_index(self, rt: int, rte: RTE, quals: list[Expr]) -> IndexMatch | None:
        rel = rte.relation
        if not rel.indexes:
            return None
        preds = []
        for q in quals:
            p = self._index_pred(rt, q)
            if p is not None:
                preds.append(p)
        return self._match_index(rel, preds)

    def _match_index(self, rel: Any, preds: list[tuple[int, str, Expr]]) -> IndexMatch | None:
        best: IndexMatch | None = None
        best_score = 0
        for index in rel.indexes:
            eq: list[Expr] = []
            lo: tuple[Expr, bool] | None = None
            hi: tuple[Expr, bool] | None = None
            for col in index.columns:
                e = next((y for c, o, y in preds if c == col and o == "="), None)
                if e is not None:
                    eq.append(e)
                    continue
                for c, o, y in preds:
                    if c != col:
                        continue
                    if o in (">", ">=") and lo is None:
                        lo = (y, o == ">=")
                    elif o in ("<", "<=") and hi is None:
                        hi = (y, o == "<=")
                break
            score = len(eq) * 10 + (2 if lo else 0) + (2 if hi else 0)
            if eq and len(eq) == len(index.columns) and index.unique:
                score += 100
            if score > best_score:
                best_score = score
                best = (index, eq, lo, hi)
        return best

    def _join(self, left: X.PlanNode, lrts: set[int], right: X.PlanNode, rrts: set[int], kind: str,
              quals: list[Expr]) -> tuple[X.PlanNode, set[int]]:
        """Join two inputs: an index nested loop (right side a table with an index on an
        equi-join column), a hash join on the equalities, or a nested loop — the cheapest
        by the estimates (row counts from ANALYZE statistics)."""
        node: X.PlanNode
        allrts = lrts | rrts
        if kind in ("inner", "cross"):
            quals = quals + self._take(allrts)
            kind = "inner"
        full = self._local_layout(allrts)
        lrows, lcost = left.est_rows, left.est_cost
        rrows, rcost = right.est_rows, right.est_cost
        width = (left.est[3] if left.est else 32) + (right.est[3] if right.est else 32)
        # lateral: the right side uses columns of the left side
        lateral = self._is_lateral(right, rrts, lrts)
        if lateral:
            qual = compile_expr(conjoin(quals), full, self) if quals else None
            node = X.NestLoop(left, right, kind if kind != "inner" else "inner", qual, True)
            node.est = (0.0, lcost + lrows * rcost, lrows * rrows * (C.DEFAULT_SEL if quals else 1.0), width)
            return self._post_join(node, allrts), allrts
        # equalities between the two sides (hash keys) and their selectivity
        lkeys, rkeys, rest = [], [], []
        jsel = 1.0
        for c in quals:
            if isinstance(c, Func) and c.name == "=" and len(c.args) == 2 and c.args[0].type == c.args[1].type:
                a, b = c.args
                ra, rb = rts_of(a), rts_of(b)
                pair = None
                if ra and rb and ra <= lrts and rb <= rrts and _hashable(a) and _hashable(b):
                    pair = (a, b)
                elif ra and rb and ra <= rrts and rb <= lrts and _hashable(a) and _hashable(b):
                    pair = (b, a)
                if pair is not None:
                    lkeys.append(pair[0])
                    rkeys.append(pair[1])
                    jsel *= self._eqjoin_sel(pair[0], pair[1])
                    continue
            rest.append(c)
            jsel *= C.DEFAULT_INEQ_SEL if isinstance(c, Func) else C.DEFAULT_SEL
        out_rows = max(lrows * rrows * jsel, 1.0)
        if kind == "left":
            out_rows = max(out_rows, lrows)
        candidates: list[tuple[float, Any]] = []
        # index nested loop: right is a single table with an index on an equi-join column
        if len(rrts) == 1 and kind in ("inner", "left"):
            (rrt,) = tuple(rrts)
            rte = self.q.rtable[rrt]
            if rte.kind == "relation" and rte.relation.indexes and isinstance(right, (X.SeqScan, X.IndexScan)):
                preds = []
                used = []
                for c in quals:
                    p = self._index_pred(rrt, c, avail_other=True)
                    if p is not None and rts_of(p[2]) <= lrts and not any(
                            isinstance(n, (SubLink, Aggref)) for n in walk(p[2])):
                        preds.append(p)
                        used.append(c)
                if preds:
                    m = self._match_index(rte.rel, preds)
                    if m is not None and m[1]:
                        ti = self._table_info(rrt)
                        per_probe = max(rrows * jsel, 1.0) if lkeys else max(ti.tuples * C.DEFAULT_EQ_SEL, 1.0)
                        unique = m[0].unique and len(m[1]) == len(m[0].columns)
                        probe = C.index_scan_cost(ti, per_probe, unique)
                        cost = lcost + lrows * probe
                        if not self._setting("enable_nestloop"):
                            cost += 1e9
                        candidates.append((cost, ("inl", m, used, rrt, rte)))
        if lkeys:
            cost = lcost + rcost + (lrows + rrows) * C.CPU_OPERATOR_COST * 2 + rrows * C.CPU_TUPLE_COST
            if not self._setting("enable_hashjoin"):
                cost += 1e9
            candidates.append((cost, ("hash",)))
        if candidates:
            cost, choice = min(candidates, key=lambda c: c[0])
        else:
            cost, choice = lcost + lrows * rcost, ("nl",)
        if choice[0] == "inl":
            _, m, used, rrt, rte = choice
            assert isinstance(right, (X.SeqScan, X.IndexScan))   # an index nested loop's inner table
            index, eq, lo, hi = m
            keylay = self._local_layout(lrts)
            eqf = [compile_expr(e, keylay, self) for e in eq]
            lof = (compile_expr(lo[0], keylay, self), lo[1]) if lo else None
            hif = (compile_expr(hi[0], keylay, self), hi[1]) if hi else None
            inner = X.IndexScan(rte.relation, index, eqf, lof, hif, right.qual, right.with_tid, rte.alias)
            ti = self._table_info(rrt)
            inner.est = (0.0, C.index_scan_cost(ti, max(rrows * jsel, 1.0), index.unique), max(rrows * jsel, 1.0),
                         right.est[3] if right.est else 32)
            inner.notes = ("Index Cond: " + self._text(conjoin(used), True),) + tuple(
                n for n in right.notes if n.startswith("Filter"))
            qual = compile_expr(conjoin(quals), full, self) if quals else None
            node = X.NestLoop(left, inner, kind, qual, True)
            others = [c for c in quals if c not in used]
            if others:
                node.notes = ("Join Filter: " + self._text(conjoin(others), True),)
        elif choice[0] == "hash":
            llay = self._local_layout(lrts)
            rlay = self._local_layout(rrts)
            node = X.HashJoin(left, right, kind, [compile_expr(e, llay, self) for e in lkeys],
                              [compile_expr(e, rlay, self) for e in rkeys],
                              compile_expr(conjoin(rest), full, self) if rest else None)
            conds = [Func("=", F.comparison("=", a.type), (a, b), T.BOOL) for a, b in zip(lkeys, rkeys)]
            notes = ["Hash Cond: " + self._text(conjoin(conds), True)]
            if rest:
                notes.append("Join Filter: " + self._text(conjoin(rest), True))
            node.notes = tuple(notes)
        else:
            qual = compile_expr(conjoin(quals), full, self) if quals else None
            node = X.NestLoop(left, right, kind, qual, False)
            if quals:
                node.notes = ("Join Filter: " + self._text(conjoin(quals), True),)
        node.est = (0.0, cost, out_rows, width)
        return self._post_join(node, allrts), allrts

    def _eqjoin_sel(self, a: Expr, b: Expr) -> float:
        def side(e: Expr) -> tuple[Any, Any]:
            if isinstance(e, Var) and e.levelsup == 0 and self.q.rtable[e.rt].kind == "relation":
                return self._table_info(e.rt), e.col
            return None, None
        lti, lc = side(a)
        rti, rc = side(b)
        return C.join_selectivity(lti, lc, rti, rc)

    def _post_join(self, node: X.PlanNode, allrts: set[int]) -> X.PlanNode:
        """Conjuncts that became evaluable above an outer join."""
        extra = self._take(allrts, allow_nullable=True) if self._outer_complete(allrts) else []
        if extra:
            node = X.Filter(node, compile_expr(conjoin(extra), self._local_layout(allrts), self))
        return node

    def _outer_complete(self, rts: set[int]) -> bool:
        return bool(self.nullable & rts)

    def _is_lateral(self, right: X.PlanNode, rrts: set[int], lrts: set[int]) -> bool:
        for rt in rrts:
            rte = self.q.rtable[rt]
            if rte.kind == "function":
                for e in rte.funcs or ():
                    if rts_of(e) & lrts:
                        return True
            if rte.kind == "values":
                for row in rte.values or ():
                    for e in row:
                        if rts_of(e) & lrts:
                            return True
            if rte.kind == "subquery" and rte.lateral and rte.query is not None and rte.query.correlated:
                return True
        return False

    # ------------------------------------------------------------------ select tail

    def _finish_select(self, q: QueryTree, node: X.PlanNode, layout: Layout) -> X.PlanNode:
        ntargets = len(q.targets)
        target_exprs = [t.expr for t in q.targets]
        if q.has_aggs or q.aggs:
            node, layout = self._plan_agg(q, node, layout)
            if q.having is not None:
                node = X.Filter(node, compile_expr(q.having, layout, self))
        if q.windows:
            node, layout = self._plan_windows(q, node, layout)
        # sort keys not in the select list are computed as extra columns
        extra: list[Expr] = []
        sort_idx: list[tuple[int, bool, bool | None]] = []
        for s in q.sort:
            if isinstance(s.expr, Slot) and q.kind == "select" and s.expr.index < ntargets and \
                    target_exprs and s.expr in ():
                pass
            try:
                pos = target_exprs.index(s.expr)
            except ValueError:
                pos = -1
            if pos < 0:
                pos = ntargets + len(extra)
                extra.append(s.expr)
            sort_idx.append((pos, s.desc, s.nulls_first))
        don_idx = []
        for e in q.distinct_on:
            try:
                don_idx.append(target_exprs.index(e))
            except ValueError:
                don_idx.append(ntargets + len(extra))
                extra.append(e)
        fns = [compile_expr(e, layout, self) for e in target_exprs + extra]
        srf = [_is_srf(e) for e in target_exprs + extra]
        below = node
        if any(srf):
            node = X.ProjectSet(node, fns, srf)
        else:
            node = X.Project(node, fns)
        node.est = below.est
        keytext = [self._sort_text(s) for s in q.sort]
        if q.distinct_on:
            node = self._sort(node, [(i, False, None) for i in don_idx] + sort_idx,
                              [self._text_or(e) for e in q.distinct_on] + keytext)
            node = X.Unique(node, ntargets, don_idx)
            node.est = node.child.est
        elif q.distinct:
            if extra:
                raise PgError("42P10", "for SELECT DISTINCT, ORDER BY expressions must appear in select list")
            node = X.Unique(node, ntargets)
            node.est = node.child.est
            if sort_idx:
                node = self._sort(node, sort_idx, keytext)
        elif sort_idx and not self.sorted_by_scan:
            node = self._sort(node, sort_idx, keytext)
        if q.limit is not None or q.offset is not None:
            node = self._limit(node, q)
        if extra:
            node = X.Trim(node, ntargets)
        return node

    def _sort(self, node: X.PlanNode, keys: list, names: list[str]) -> X.Sort:
        import math
        s = X.Sort(node, keys)
        s.key_names = names
        if node.est is not None:
            n = max(node.est_rows, 1.0)
            c = node.est_cost + n * math.log2(n + 1) * C.CPU_OPERATOR_COST * 2
            s.est = (c, c + n * C.CPU_OPERATOR_COST, node.est_rows, node.est[3])
        return s

    def _text_or(self, e: Expr) -> str:
        t = self._text(e, len(getattr(self, "q", QueryTree("select")).rtable) > 1)
        return t[1:-1] if t.startswith("(") and t.endswith(")") and isinstance(e, (Var,)) else t

    def _sort_text(self, s: SortKey) -> str:
        e = s.expr
        if isinstance(e, Slot):
            return str(e.index + 1)
        t = self._text(e, len(self.q.rtable) > 1) if hasattr(self, "q") else "?"
        if isinstance(e, Var) and t.startswith("(") and t.endswith(")"):
            t = t[1:-1]
        return t + (" DESC" if s.desc else "") + (
            (" NULLS FIRST" if s.nulls_first else " NULLS LAST") if s.nulls_first is not None and
            s.nulls_first != s.desc else "")

    def _limit(self, node: X.PlanNode, q: QueryTree) -> X.PlanNode:
        """LIMIT/OFFSET; a Sort right below keeps only offset + count rows (top-N)."""
        off = self._const_fn(q.offset)
        cnt = self._const_fn(q.limit)
        if isinstance(node, X.Sort) and cnt is not None:
            def bound(prow: tuple, st: ExecState, _o: Fn | None = off, _c: Fn = cnt) -> Any:
                c = _c((), st)
                if c is None:
                    return None
                o = _o((), st) if _o is not None else 0
                return (o or 0) + c
            node.limit = bound
        lim = X.Limit(node, off, cnt)
        if node.est is not None:
            n = node.est_rows
            if isinstance(q.limit, Const) and isinstance(q.limit.value, int):
                n = min(n, q.limit.value)
            lim.est = (node.est[0], node.est[0] + (node.est_cost - node.est[0]) * (n / max(node.est_rows, 1.0)), n,
                       node.est[3])
        return lim

    def _plan_agg(self, q: QueryTree, node: X.PlanNode, layout: Layout) -> tuple[X.PlanNode, Layout]:
        keys = [compile_expr(g, layout, self) for g in q.group]
        specs = []
        for a in q.aggs:
            specs.append(X.AggSpec(a.agg, [compile_expr(x, layout, self) for x in a.args], a.distinct,
                                   compile_expr(a.filter, layout, self) if a.filter is not None else None,
                                   [(compile_expr(s.expr, layout, self), s.desc, s.nulls_first) for s in a.order],
                                   a.star))
        agg = X.Agg(node, keys, specs, q.grouping_sets)
        slots: dict[Any, int] = {}
        for i, g in enumerate(q.group):
            try:
                slots.setdefault(g, i)
            except TypeError:
                pass
        for j, a in enumerate(q.aggs):
            slots[a] = len(q.group) + j
        newlay = Layout({}, self.outer, slots)
        return agg, newlay

    def _plan_windows(self, q: QueryTree, node: X.PlanNode, layout: Layout) -> tuple[X.PlanNode, Layout]:
        wins = []
        for w in q.windows:
            frame = None
            if w.frame is not None:
                fo, so, eo = w.frame
                frame = (fo, compile_expr(so, layout, self) if so is not None else None,
                         compile_expr(eo, layout, self) if eo is not None else None)
            wins.append((w.func, [compile_expr(a, layout, self) for a in w.args],
                         [compile_expr(p, layout, self) for p in w.partition],
                         [(compile_expr(s.expr, layout, self), s.desc, s.nulls_first) for s in w.order], frame))
        base = node.width
        newnode = X.WindowAgg(node, wins)
        slots = dict(layout.slots)
        for i, w in enumerate(q.windows):
            slots[w] = base + i
        newlay = Layout(dict(layout.offsets), self.outer, slots)
        return newnode, newlay

    # ------------------------------------------------------------------ subqueries in expressions

    def compile_sublink(self, e: SubLink, cc: Any) -> Fn:
        layout = cc.layout
        outer = [layout] + layout.outer
        sub = Planner(self.env, outer, self.cte_plans).plan_select(e.query)
        kind = e.kind
        correlated = e.correlated
        key = ("sublink", id(e), id(sub))

        def run(r: tuple, st: Any) -> list[tuple]:
            st.outer.append(r)
            try:
                return list(sub.rows(st, None))
            finally:
                st.outer.pop()

        if kind == "exists":
            def f_exists(r: tuple, st: ExecState) -> Any:
                if not correlated:
                    v = st.extra.get(key)
                    if v is not None:
                        return v
                st.outer.append(r)
                try:
                    for _ in sub.rows(st, None):
                        res = True
                        break
                    else:
                        res = False
                finally:
                    st.outer.pop()
                if not correlated:
                    st.extra[key] = res
                return res
            return f_exists
        if kind == "expr":
            def f_expr(r: tuple, st: ExecState) -> Any:
                if not correlated and key in st.extra:
                    return st.extra[key]
                st.outer.append(r)
                try:
                    it = sub.rows(st, None)
                    first = next(it, None)
                    if first is not None and next(it, None) is not None:
                        raise PgError("21000", "more than one row returned by a subquery used as an expression")
                finally:
                    st.outer.pop()
                v = None if first is None else first[0]
                if not correlated:
                    st.extra[key] = v
                return v
            return f_expr
        if kind == "array":
            def f_array(r: tuple, st: ExecState) -> Any:
                return [x[0] for x in run(r, st)]
            return f_array
        assert e.left is not None and e.test is not None   # op ANY / ALL
        left = compile_expr(e.left, layout, self)
        test = e.test
        use_or = kind == "any"
        width = e.width

        def f_quant(r: tuple, st: ExecState) -> Any:
            x = left(r, st)
            if not correlated and key in st.extra:
                vals = st.extra[key]
            else:
                vals = [row[0] for row in run(r, st)] if width == 1 else [row[:width] for row in run(r, st)]
                if not correlated:
                    st.extra[key] = vals
            if not vals:
                return not use_or
            if x is None:
                return None
            null = False
            for y in vals:
                if y is None:
                    null = True
                    continue
                res = test(x, y)
                if res is None:
                    null = True
                elif use_or and res:
                    return True
                elif not use_or and not res:
                    return False
            return None if null else (not use_or)
        return f_quant


def _hashable(e: Expr) -> bool:
    return e.type not in (T.FLOAT4, T.FLOAT8, T.BPCHAR, T.JSON) and not T.element_of(e.type)


def _is_srf(e: Expr) -> bool:
    return isinstance(e, Func) and e.impl in F.SRF_IMPLS


class _SequenceRow:
    """SELECT * FROM a sequence: last_value, log_cnt, is_called."""

    def __init__(self, rel: Any) -> None:
        self.rel = rel
        self.colnames = [c.name for c in rel.columns]
        self.name = rel.name

    def rows(self, env: Any) -> Iterator[tuple]:
        yield env.sequence_row(self.rel)


# ----------------------------------------------------------------------------- DML


class DMLPlan:
    """INSERT / UPDATE / DELETE, executed by :mod:`.modify`."""

    # compiled by executor.modify.prepare_dml
    rel: SqlRelation
    ncols: int
    defaults: list[Fn | None]                   # column defaults
    notnull: list[int]                          # NOT NULL columns
    cons: RelConstraints | None                 # constraints to check, None when there are none
    scan: X.PlanNode | None                     # UPDATE / DELETE: the target (+ FROM) with its tid
    kind: str
    tag_kind: str
    returning: list[Fn]
    # INSERT
    cols: list[int]
    value_rows: list[list[Fn | None]] | None    # VALUES (None: DEFAULT), or None for INSERT ... SELECT
    source: X.PlanNode | None
    on_conflict: tuple | None                   # ("nothing", ...) | ("update", cols, sets, where)
    # UPDATE / DELETE
    layout: Layout
    base: int                                   # where the target's columns start in a scan row
    tid_pos: int
    single: bool                                # no FROM / USING items
    sets: list[tuple[int, Fn | None]]
    recheck_where: Fn | None
    recheck_sets: list[tuple[int, Fn | None]] | None

    def __init__(self, env: Any, q: QueryTree, outer: list[Layout] | None = None,
                 cte_plans: dict | None = None) -> None:
        self.q = q
        self.width = len(q.returning)
        prepare_dml(self, env, q, outer or [], Planner(env, outer or [], cte_plans or {}))

    def rows(self, st: Any, prow: tuple | None = None) -> Iterator[tuple]:
        count, rows = run_dml(self, st)
        st.extra[("dmlcount", id(self))] = count
        return iter(rows)

    def explain(self, depth: int = 0, costs: bool = True, analyze: bool = False) -> list[str]:
        head = f"{self.q.kind.capitalize()} on {self.rel.name}"
        sc = self.scan
        if costs:
            total = sc.est_cost if sc is not None else 0.01
            head += f"  (cost=0.00..{total:.2f} rows=0 width=0)"
        out = [head]
        if sc is not None:
            out.extend(sc.explain(depth + 1, costs, analyze))
        elif self.q.kind == "insert":
            out.append("  ->  Result  (cost=0.00..0.01 rows=1 width=0)" if costs else "  ->  Result")
        return out


__all__ = ["Planner", "DMLPlan", "conjuncts", "Param", "Const"]
