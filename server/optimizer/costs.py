"""Row estimates and costs for the planner (PostgreSQL's costsize.c and selfuncs.c, in
miniature).

Table sizes come from pg_class (relpages/reltuples, kept by VACUUM and ANALYZE) or,
for a table never vacuumed, from its current number of pages.  Column statistics come
from ANALYZE (pg_statistic): the selectivity of ``col = const`` is the constant's
frequency among the most common values, else the remaining frequency spread over the
remaining distinct values; ranges use the histogram; ``IS NULL`` the NULL fraction;
without statistics PostgreSQL's defaults (0.005 for equality, 1/3 for ranges).

Costs are in PostgreSQL's units (a sequential page read = 1) but weigh per-tuple
work the way this Python executor pays for it: examining a tuple costs far more
relative to reading a cached page than in C, so index lookups win earlier than in
PostgreSQL's own plans.
"""

from __future__ import annotations

import math
from typing import Any

from pgbundle.server.executor.expr import BoolOp, Const, Func, NullTest, Param, ScalarArrayOp, Var
from pgbundle.shared.types import oids as T, text_decoder

DEFAULT_EQ_SEL = 0.005
DEFAULT_INEQ_SEL = 1.0 / 3.0
DEFAULT_SEL = 0.5
SEQ_PAGE_COST = 1.0
RANDOM_PAGE_COST = 1.0        # pages are cached: a random read costs what a sequential one does
CPU_TUPLE_COST = 0.05         # decoding and checking a tuple (PostgreSQL: 0.01)
CPU_INDEX_TUPLE_COST = 0.02
CPU_OPERATOR_COST = 0.01
INDEX_DESCENT_COST = 1.0
TUPLES_PER_FULL_PAGE = 60


class TableInfo:
    """Size and statistics of one base relation, as the planner sees them."""

    __slots__ = ("rel", "pages", "tuples", "stats", "_decoded", "width")

    def __init__(self, env: Any, rel: Any) -> None:
        self.rel = rel
        pages = getattr(rel, "relpages", 0) or 0
        tuples = getattr(rel, "reltuples", -1.0)
        cur = _current_pages(env, rel)
        if cur is not None:
            if tuples is not None and tuples >= 0 and pages > 0:
                tuples = tuples / pages * cur  # scale to the table's current size
            pages = cur
        if tuples is None or tuples < 0:
            tuples = float(max(pages, 1) * TUPLES_PER_FULL_PAGE) if pages else 10.0
        self.pages = max(pages, 1)
        self.tuples = max(float(tuples), 1.0)
        self.stats = _column_stats(env, rel)
        self._decoded: dict[int, Any] = {}
        w = 0
        for c in rel.columns:
            if c.dropped:
                continue
            st = self.stats.get(c.attnum)
            w += st[1] if st and st[1] else _type_width(c.type_oid)
        self.width = max(w, 1)

    def column(self, col: int) -> tuple | None:
        """(null_frac, width, n_distinct, mcv values, mcv freqs, histogram) of column index ``col``."""
        if col in self._decoded:
            return self._decoded[col]
        c = self.rel.columns[col] if col < len(self.rel.columns) else None
        st = self.stats.get(c.attnum) if c is not None else None
        if c is None or st is None:
            self._decoded[col] = None
            return None
        dec = text_decoder(c.type_oid)
        extra = st[3] or {}

        def conv(xs: list | None) -> list:
            out = []
            for x in xs or []:
                try:
                    out.append(dec(x))
                except Exception:  # noqa: BLE001
                    out.append(x)
            return out
        d = (st[0], st[1], st[2], conv(extra.get("mcv")), list(extra.get("mcf") or []), conv(extra.get("hist")))
        self._decoded[col] = d
        return d

    def ndistinct(self, col: int) -> float | None:
        c = self.column(col)
        if c is None:
            return None
        nd = c[2]
        if nd < 0:
            nd = -nd * self.tuples
        return max(nd, 1.0)


def _current_pages(env: Any, rel: Any) -> int | None:
    f = getattr(getattr(env, "engine", None), "relation_pages", None)
    if f is None:
        return None
    try:
        return f(rel.oid)
    except Exception:  # noqa: BLE001
        return None


def _column_stats(env: Any, rel: Any) -> dict:
    f = getattr(getattr(env, "engine", None), "column_stats", None)
    if f is None:
        return {}
    try:
        return f(rel.oid)
    except Exception:  # noqa: BLE001
        return {}


def _type_width(oid: int) -> int:
    return {T.BOOL: 1, T.INT2: 2, T.INT4: 4, T.INT8: 8, T.FLOAT4: 4, T.FLOAT8: 8, T.DATE: 4, T.TIMESTAMP: 8,
            T.TIMESTAMPTZ: 8, T.OID: 4, T.UUID: 16, T.NUMERIC: 8}.get(oid, 32)


def _const_value(e: Any) -> tuple[bool, Any]:
    if isinstance(e, Const):
        return True, e.value
    if isinstance(e, Func) and e.name in ("cast", "relabel", "typmod") and isinstance(e.args[0], Const):
        try:
            return True, e.impl(e.args[0].value)
        except Exception:  # noqa: BLE001
            return False, None
    return False, None


def eq_selectivity(ti: TableInfo, col: int, known: bool, value: Any) -> float:
    c = ti.column(col)
    if c is None:
        return DEFAULT_EQ_SEL if ti.tuples > 200 else max(DEFAULT_EQ_SEL, 1.0 / ti.tuples)
    nullfrac, _w, _nd, mcv, mcf, _hist = c
    if known and value is None:
        return 0.0
    if known:
        for v, f in zip(mcv, mcf):
            if v == value:
                return f
    nd = ti.ndistinct(col) or 200.0
    rest = max(0.0, 1.0 - nullfrac - sum(mcf))
    others = max(nd - len(mcv), 1.0)
    if not known:
        return (1.0 - nullfrac) / nd
    return min(rest / others, 1.0)


def range_selectivity(ti: TableInfo, col: int, op: str, known: bool, value: Any) -> float:
    c = ti.column(col)
    if c is None or not known or value is None:
        return DEFAULT_INEQ_SEL
    nullfrac, _w, _nd, mcv, mcf, hist = c
    below = 0.0
    try:
        for v, f in zip(mcv, mcf):
            if (v < value) or (op in ("<=", ">=") and v == value):
                below += f
        mcv_total = sum(mcf)
        frac = DEFAULT_INEQ_SEL
        if len(hist) >= 2:
            n = len(hist) - 1
            if value <= hist[0]:
                frac = 0.0
            elif value >= hist[-1]:
                frac = 1.0
            else:
                lo = 0
                while lo < n and hist[lo + 1] <= value:
                    lo += 1
                a, b = hist[lo], hist[lo + 1]
                part = 0.5
                try:
                    if isinstance(a, (int, float)) and b != a:
                        part = (value - a) / (b - a)
                except TypeError:
                    part = 0.5
                frac = (lo + part) / n
        rest = max(0.0, 1.0 - nullfrac - mcv_total)
        lt = below + rest * frac
        sel = lt if op in ("<", "<=") else max(0.0, 1.0 - nullfrac - lt)
        return min(max(sel, 0.0001), 1.0)
    except TypeError:
        return DEFAULT_INEQ_SEL


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "<>": "<>"}


def clause_selectivity(ti: TableInfo | None, rt: int, e: Any) -> float:
    """Fraction of ``rt``'s rows satisfying conjunct ``e``."""
    if isinstance(e, BoolOp):
        if e.op == "and":
            s = 1.0
            for a in e.args:
                s *= clause_selectivity(ti, rt, a)
            return s
        if e.op == "or":
            s = 0.0
            for a in e.args:
                x = clause_selectivity(ti, rt, a)
                s = s + x - s * x
            return s
        return 1.0 - clause_selectivity(ti, rt, e.args[0])
    if isinstance(e, NullTest) and isinstance(e.arg, Var) and ti is not None and e.arg.rt == rt:
        c = ti.column(e.arg.col)
        nf = c[0] if c else 0.005
        return nf if e.isnull else 1.0 - nf
    if isinstance(e, ScalarArrayOp) and isinstance(e.left, Var) and ti is not None and e.left.rt == rt:
        n = len(getattr(e.right, "elems", ())) or 3
        return min(1.0, n * eq_selectivity(ti, e.left.col, False, None)) if e.use_or else DEFAULT_INEQ_SEL
    if isinstance(e, Func) and len(e.args) == 2 and e.name in ("=", "<", "<=", ">", ">=", "<>"):
        a, b = e.args
        name = e.name
        if not (isinstance(a, Var) and a.rt == rt and a.levelsup == 0):
            a, b = b, a
            name = _FLIP[name]
        if isinstance(a, Var) and a.rt == rt and a.levelsup == 0 and ti is not None:
            known, value = _const_value(b)
            if name == "=":
                return eq_selectivity(ti, a.col, known, value)
            if name == "<>":
                return 1.0 - eq_selectivity(ti, a.col, known, value)
            return range_selectivity(ti, a.col, name, known, value)
        if name == "=":
            return DEFAULT_EQ_SEL
        return DEFAULT_INEQ_SEL
    if isinstance(e, Param) or isinstance(e, Const):
        return 1.0
    return DEFAULT_INEQ_SEL if isinstance(e, Func) and e.name in ("<", ">", "<=", ">=") else DEFAULT_SEL


def seq_scan_cost(ti: TableInfo, nquals: int) -> float:
    # every tuple on the pages is examined, dead versions included: count full pages
    scanned = max(ti.tuples, ti.pages * TUPLES_PER_FULL_PAGE * 0.5)
    return ti.pages * SEQ_PAGE_COST + scanned * (CPU_TUPLE_COST + nquals * CPU_OPERATOR_COST)


def index_scan_cost(ti: TableInfo, matched: float, unique_eq: bool) -> float:
    if unique_eq:
        matched = min(matched, 1.0)
    pages_fetched = min(matched, ti.pages) if matched < ti.tuples else ti.pages
    return (INDEX_DESCENT_COST + matched * (CPU_INDEX_TUPLE_COST + CPU_TUPLE_COST)
            + pages_fetched * RANDOM_PAGE_COST)


def join_selectivity(lti: TableInfo | None, lcol: int | None, rti: TableInfo | None, rcol: int | None) -> float:
    """eqjoinsel without MCV matching: 1 / max(ndistinct of the two sides)."""
    nd = 1.0
    for ti, col in ((lti, lcol), (rti, rcol)):
        if ti is not None and col is not None:
            d = ti.ndistinct(col)
            if d is None:
                d = min(ti.tuples, 200.0)
            nd = max(nd, d)
    return 1.0 / nd if nd > 0 else DEFAULT_EQ_SEL


def fmt_cost(startup: float, total: float, rows: float, width: int) -> str:
    return f"(cost={startup:.2f}..{total:.2f} rows={max(int(math.ceil(rows - 1e-9)), 1) if rows >= 0.5 else 1} " \
           f"width={width})"
