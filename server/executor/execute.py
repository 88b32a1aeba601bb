"""Plan nodes and their execution (Volcano style, one Python generator per node).

Every node has ``width`` (columns of the rows it yields) and
``rows(st, prow)``: an iterator of row tuples.  ``st`` is the
:class:`~.expr.ExecState` of the running statement; ``prow`` is the current
outer row of an enclosing nested loop (index nested loops and LATERAL items
evaluate their keys and arguments on it), or None.

Expressions inside nodes are already compiled closures ``f(row, st)``.
Cancellation is checked every :data:`CHECK_EVERY` rows by scans and sorts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from pgbundle.server.errors import PgError
from pgbundle.server.executor.expr import ExecState, Fn
from pgbundle.server.optimizer.costs import fmt_cost

# Compiled expressions (Fn) get ``prow or ()`` where a node evaluates them on its parameter row
# (index keys, VALUES items, function arguments, LIMIT): no parameter row is a row of no columns.
CHECK_EVERY = 1024


class PlanNode:
    width: int = 0
    label: str = "Node"
    # planner estimates (startup cost, total cost, rows, width) and EXPLAIN detail lines
    est: tuple[float, float, float, int] | None = None
    notes: tuple[str, ...] = ()
    # EXPLAIN ANALYZE counters (set by instrument())
    actual: list | None = None

    def rows(self, st: ExecState, prow: tuple | None = None) -> Iterator[tuple]:
        raise NotImplementedError

    @property
    def est_rows(self) -> float:
        return self.est[2] if self.est is not None else 1000.0

    @property
    def est_cost(self) -> float:
        return self.est[1] if self.est is not None else 100.0

    def explain(self, depth: int = 0, costs: bool = True, analyze: bool = False) -> list[str]:
        head = self.describe()
        if costs and self.est is not None:
            s, t, r, w = self.est
            head += "  " + _fmt_cost(s, t, r, w)
        if analyze:
            a = self.actual
            if a is None or a[2] == 0:
                head += " (never executed)"
            else:
                head += f" (actual time={a[1] * 1000 / a[2]:.3f}..{a[1] * 1000 / a[2]:.3f} rows={a[0] // a[2]} " \
                        f"loops={a[2]})"
        prefix = "" if depth == 0 else " " * (6 * depth - 4) + "->  "
        out = [prefix + head]
        dpad = " " * (6 * depth + 2)
        for d in self.details(analyze):
            out.append(dpad + d)
        for c in self.children():
            out.extend(c.explain(depth + 1, costs, analyze))
        return out

    def details(self, analyze: bool = False) -> list[str]:
        return list(self.notes)

    def describe(self) -> str:
        return self.label

    def children(self) -> list[PlanNode]:
        return []


def _fmt_cost(s: float, t: float, r: float, w: int) -> str:
    return fmt_cost(s, t, r, w)


def instrument(node: PlanNode) -> None:
    """EXPLAIN ANALYZE: count rows, loops and time of every node's rows()."""
    import time as _time
    if node.actual is not None:
        return
    a = node.actual = [0, 0.0, 0]
    orig = node.rows

    def counted(st: ExecState, prow: tuple | None = None) -> Iterator[tuple]:
        a[2] += 1
        t0 = _time.perf_counter()
        for r in orig(st, prow):
            a[0] += 1
            yield r
        a[1] += _time.perf_counter() - t0
    node.rows = counted  # type: ignore[method-assign]
    for c in node.children():
        instrument(c)


def _check_cancel(st: ExecState) -> None:
    """CHECK_FOR_INTERRUPTS: a cancel request (session flag or the engine's) raises 57014."""
    s = st.session
    if s is not None:
        s.check_interrupts()


# ----------------------------------------------------------------------------- scans


class SeqScan(PlanNode):
    label = "Seq Scan"

    def __init__(self, rel: Any, qual: Fn | None, with_tid: bool = False, alias: str = "") -> None:
        self.rel = rel
        self.qual = qual
        self.with_tid = with_tid
        self.width = len(rel.columns) + (1 if with_tid else 0)
        self.alias = alias

    def describe(self) -> str:
        return f"Seq Scan on {self.rel.name}" + (f" {self.alias}" if self.alias and self.alias != self.rel.name else "")

    def rows(self, st: ExecState, prow: tuple | None = None) -> Iterator[tuple]:
        qual = self.qual
        n = 0
        check = st.session is not None
        if self.with_tid:
            for tid, row in st.storage.scan(self.rel):
                r = row + (tid,)
                if qual is None or qual(r, st) is True:
                    yield r
                n += 1
                if check and n % CHECK_EVERY == 0:
                    _check_cancel(st)
            return
        for _tid, row in st.storage.scan(self.rel):
            if qual is None or qual(row, st) is True:
                yield row
            n += 1
            if check and n % CHECK_EVERY == 0:
                _check_cancel(st)


class IndexScan(PlanNode):
    """Equality on a prefix of the index columns (``eq``), optionally followed
    by a range on the next column (``lo``/``hi``: (fn, inclusive))."""
    label = "Index Scan"

    def __init__(self, rel: Any, index: Any, eq: list[Fn], lo: tuple[Fn, bool] | None,
                 hi: tuple[Fn, bool] | None, qual: Fn | None, with_tid: bool = False, alias: str = "") -> None:
        self.rel = rel
        self.index = index
        self.eq = eq
        self.lo = lo
        self.hi = hi
        self.qual = qual
        self.with_tid = with_tid
        self.width = len(rel.columns) + (1 if with_tid else 0)
        self.alias = alias
        self.backward = False

    def describe(self) -> str:
        return f"Index Scan{' Backward' if self.backward else ''} using {self.index.name} on {self.rel.name}" + \
            (f" {self.alias}" if self.alias and self.alias != self.rel.name else "")

    def rows(self, st: ExecState, prow: tuple | None = None) -> Iterator[tuple]:
        keys = []
        for f in self.eq:
            v = f(prow or (), st)
            if v is None:
                return
            keys.append(v)
        lo = hi = tuple(keys) if keys else None
        lo_inc = hi_inc = True
        if self.lo is not None:
            v = self.lo[0](prow or (), st)
            if v is None:
                return
            lo = tuple(keys) + (v,)
            lo_inc = self.lo[1]
        if self.hi is not None:
            v = self.hi[0](prow or (), st)
            if v is None:
                return
            hi = tuple(keys) + (v,)
            hi_inc = self.hi[1]
        qual = self.qual
        if self.backward:
            it = st.storage.index_scan(self.index, self.rel, lo, lo_inc, hi, hi_inc, backward=True)
        else:
            it = st.storage.index_scan(self.index, self.rel, lo, lo_inc, hi, hi_inc)
        if self.with_tid:
            for tid, row in it:
                r = row + (tid,)
                if qual is None or qual(r, st) is True:
                    yield r
            return
        for _tid, row in it:
            if qual is None or qual(row, st) is True:
                yield row


class VirtualScan(PlanNode):
    label = "Function Scan"

    def __init__(self, vt: Any, qual: Fn | None) -> None:
        self.vt = vt
        self.qual = qual
        self.width = len(vt.colnames)

    def describe(self) -> str:
        return f"Seq Scan on {self.vt.name}"

    def rows(self, st: ExecState, prow: tuple | None = None) -> Iterator[tuple]:
        qual = self.qual
        for row in self.vt.rows(st.env):
            if qual is None or qual(row, st) is True:
                yield row


class ValuesScan(PlanNode):
    label = "Values Scan"

    def __init__(self, exprs: list[list[Fn]], qual: Fn | None, width: int) -> None:
        self.exprs = exprs
        self.qual = qual
        self.width = width

    def rows(self, st: ExecState, prow: tuple | None = None) -> Iterator[tuple]:
        qual = self.qual
        for fns in self.exprs:
            r = tuple(f(prow or (), st) for f in fns)
            if qual is None or qual(r, st) is True:
                yield r


class FunctionScan(PlanNode):
    """Set-returning functions side by side (ROWS FROM), optionally WITH ORDINALITY."""
    label = "Function Scan"

    def __init__(self, funcs: list[tuple[Fn, int]], ordinality: bool, qual: Fn | None) -> None:
        self.funcs = funcs            # (fn returning an iterable of rows-or-values, ncols)
        self.ordinality = ordinality
        self.qual = qual
        self.width = sum(n for _, n in funcs) + (1 if ordinality else 0)

    def rows(self, st: ExecState, prow: tuple | None = None) -> Iterator[tuple]:
        if len(self.funcs) == 1:
            yield from self._single(st, prow)
            return
        results = []
        for f, n in self.funcs:
            v = f(prow or (), st)
            if v is None:
                v = []
            out = []
            for x in v:
                out.append(x if n > 1 else (x,))
            results.append((out, n))
        longest = max((len(r) for r, _ in results), default=0)
        qual = self.qual
        check = st.session is not None
        for i in range(longest):
            if check and i & 1023 == 1023:
                _check_cancel(st)
            row: tuple = ()
            for r, n in results:
                row += r[i] if i < len(r) else (None,) * n
            if self.ordinality:
                row += (i + 1,)
            if qual is None or qual(row, st) is True:
                yield row


    def _single(self, st: ExecState, prow: tuple | None) -> Iterator[tuple]:
        """One function: stream its rows (generate_series of millions stays lazy)."""
        f, n = self.funcs[0]
        v = f(prow or (), st)
        if v is None:
            return
        qual = self.qual
        ordinality = self.ordinality
        check = st.session is not None
        i = 0
        for x in v:
            i += 1
            if check and i & 1023 == 0:
                _check_cancel(st)
            row = x if n > 1 else (x,)
            if ordinality:
                row = row + (i,)
            if qual is None or qual(row, st) is True:
                yield row


class SubqueryScan(PlanNode):
    label = "Subquery Scan"

    def __init__(self, child: PlanNode, qual: Fn | None, width: int) -> None:
        self.child = child
        self.qual = qual
        self.width = width

    def children(self) -> list[PlanNode]:
        return [self.child]

    def rows(self, st: ExecState, prow: tuple | None = None) -> Iterator[tuple]:
        qual = self.qual
        if prow is not None:
            st.outer.append(prow)
            try:
                rows = list(self.child.rows(st, None))
            finally:
                st.outer.pop()
        else:
            rows = self.child.rows(st, None)   # type: ignore[assignment]  # (an iterator will do)
        for r in rows:
            if qual is None or qual(r, st) is True:
                yield r


class CteScan(PlanNode):
    label = "CTE Scan"

    def __init__(self, key: Any, child: PlanNode | None, qual: Fn | None, width: int, name: str = "") -> None:
        self.key = key
        self.child = child
        self.qual = qual
        self.width = width
        self.name = name

    def describe(self) -> str:
        return f"CTE Scan on {self.name}"

    correlated = True

    def rows(self, st: ExecState, prow: tuple | None = None) -> Iterator[tuple]:
        key = self.key
        data = None if self.correlated else st.cte.get(key)
        if data is None:
            if self.child is None:
                raise PgError("XX000", f"CTE {self.name} not materialized")
            st.outer.append(())
            try:
                data = list(self.child.rows(st, None))
            finally:
                st.outer.pop()
            if not self.correlated:
                st.cte[key] = data
        qual = self.qual
        for r in data:
            if qual is None or qual(r, st) is True:
                yield r


class WorkTableScan(PlanNode):
    label = "WorkTable Scan"

    def __init__(self, key: Any, qual: Fn | None, width: int) -> None:
        self.key = key
        self.qual = qual
        self.width = width

    def rows(self, st: ExecState, prow: tuple | None = None) -> Iterator[tuple]:
        qual = self.qual
        for r in st.cte.get(self.key, ()):
            if qual is None or qual(r, st) is True:
                yield r


class RecursiveUnion(PlanNode):
    label = "Recursive Union"

    def __init__(self, key: Any, left: PlanNode, right: PlanNode, all_: bool) -> None:
        self.key = key
        self.left = left
        self.right = right
        self.all = all_
        self.width = left.width

    def children(self) -> list[PlanNode]:
        return [self.left, self.right]

    def rows(self, st: ExecState, prow: tuple | None = None) -> Iterator[tuple]:
        seen: set = set()
        work = []
        for r in self.left.rows(st, prow):
            if not self.all:
                if r in seen:
                    continue
                seen.add(r)
            work.append(r)
            yield r
        n = 0
        while work:
            st.cte[self.key] = work
            new = []
            for r in self.right.rows(st, prow):
                if not self.all:
                    if r in seen:
                        continue
                    seen.add(r)
                new.append(r)
                yield r
            work = new
            n += 1
            if n % 64 == 0:
                _check_cancel(st)


class ResultNode(PlanNode):
    """One row from nothing (SELECT without FROM), with an optional one-time qual."""
    label = "Result"

    def __init__(self, qual: Fn | None = None) -> None:
        self.qual = qual
        self.width = 0

    def rows(self, st: ExecState, prow: tuple | None = None) -> Iterator[tuple]:
        if self.qual is None or self.qual((), st) is True:
            yield ()


# ----------------------------------------------------------------------------- joins


class NestLoop(PlanNode):
    label = "Nested Loop"

    def __init__(self, left: PlanNode, right: PlanNode, kind: str, qual: Fn | None, param: bool) -> None:
        self.left = left
        self.right = right
        self.kind = kind
        self.qual = qual
        self.param = param            # right side evaluates keys/arguments on the left row
        self.width = left.width + right.width

    def describe(self) -> str:
        return "Nested Loop" + ({"left": " Left Join", "right": " Right Join", "full": " Full Join"}.get(self.kind, ""))

    def children(self) -> list[PlanNode]:
        return [self.left, self.right]

    def rows(self, st: ExecState, prow: tuple | None = None) -> Iterator[tuple]:
        qual = self.qual
        kind = self.kind
        rnull = (None,) * self.right.width
        right = self.right
        cached: list | None = None
        if not self.param:
            cached = list(right.rows(st, prow))
        matched_right: set[int] = set()
        check = st.session is not None
        nl = 0
        for lrow in self.left.rows(st, prow):
            nl += 1
            if check and nl & 255 == 0:
                _check_cancel(st)
            found = False
            inner = cached if cached is not None else right.rows(st, lrow if prow is None else prow + lrow)
            for j, r in enumerate(inner):
                row = lrow + r
                if qual is None or qual(row, st) is True:
                    found = True
                    if kind in ("right", "full"):
                        matched_right.add(j)
                    yield row
            if not found and kind in ("left", "full"):
                yield lrow + rnull
        if kind in ("right", "full") and cached is not None:
            lnull = (None,) * self.left.width
            for j, r in enumerate(cached):
                if j not in matched_right:
                    yield lnull + r


class HashJoin(PlanNode):
    label = "Hash Join"

    def __init__(self, left: PlanNode, right: PlanNode, kind: str, lkeys: list[Fn], rkeys: list[Fn],
                 qual: Fn | None) -> None:
        self.left = left
        self.right = right
        self.kind = kind
        self.lkeys = lkeys
        self.rkeys = rkeys
        self.qual = qual
        self.width = left.width + right.width

    def describe(self) -> str:
        return "Hash" + ({"left": " Left", "right": " Right", "full": " Full"}.get(self.kind, "")) + " Join"

    def explain(self, depth: int = 0, costs: bool = True, analyze: bool = False) -> list[str]:
        lines = PlanNode.explain(self, depth, costs, analyze)
        # PostgreSQL shows the inner side under a Hash node
        inner = self.right.explain(depth + 2, costs, analyze)
        outer = self.left.explain(depth + 1, costs, analyze)
        head = lines[: 1 + len(self.details(analyze))]
        hash_line = " " * (6 * (depth + 1) - 4) + "->  Hash"
        if costs and self.right.est is not None:
            s, t, r, w = self.right.est
            hash_line += "  " + _fmt_cost(t, t, r, w)
        return head + outer + [hash_line] + inner

    def children(self) -> list[PlanNode]:
        return [self.left, self.right]

    def rows(self, st: ExecState, prow: tuple | None = None) -> Iterator[tuple]:
        table: dict[Any, list[tuple[int, tuple]]] = {}
        rkeys = self.rkeys
        rows_r = list(self.right.rows(st, prow))
        single = len(rkeys) == 1
        for j, r in enumerate(rows_r):
            if single:
                k = rkeys[0](r, st)
                if k is None:
                    continue
            else:
                k = tuple(f(r, st) for f in rkeys)
                if None in k:
                    continue
            table.setdefault(k, []).append((j, r))
        qual = self.qual
        kind = self.kind
        lkeys = self.lkeys
        rnull = (None,) * self.right.width
        matched: set[int] = set()
        for lrow in self.left.rows(st, prow):
            if single:
                k = lkeys[0](lrow, st)
            else:
                k = tuple(f(lrow, st) for f in lkeys)
                if None in k:
                    k = None
            found = False
            if k is not None:
                for j, r in table.get(k, ()):
                    row = lrow + r
                    if qual is None or qual(row, st) is True:
                        found = True
                        if kind in ("right", "full"):
                            matched.add(j)
                        yield row
            if not found and kind in ("left", "full"):
                yield lrow + rnull
        if kind in ("right", "full"):
            lnull = (None,) * self.left.width
            for j, r in enumerate(rows_r):
                if j not in matched:
                    yield lnull + r


# ----------------------------------------------------------------------------- row processing


class Filter(PlanNode):
    label = "Filter"

    def __init__(self, child: PlanNode, qual: Fn) -> None:
        self.child = child
        self.qual = qual
        self.width = child.width

    def children(self) -> list[PlanNode]:
        return [self.child]

    def explain(self, depth: int = 0, costs: bool = True, analyze: bool = False) -> list[str]:
        lines = self.child.explain(depth, costs, analyze)
        for k, n in enumerate(self.notes):
            lines.insert(1 + k, " " * (6 * depth + 2) + n)
        return lines

    def rows(self, st: ExecState, prow: tuple | None = None) -> Iterator[tuple]:
        qual = self.qual
        for r in self.child.rows(st, prow):
            if qual(r, st) is True:
                yield r


class Project(PlanNode):
    label = "Project"

    def __init__(self, child: PlanNode, fns: list[Fn]) -> None:
        self.child = child
        self.fns = fns
        self.width = len(fns)

    def children(self) -> list[PlanNode]:
        return [self.child]

    def explain(self, depth: int = 0, costs: bool = True, analyze: bool = False) -> list[str]:
        return self.child.explain(depth, costs, analyze)

    def rows(self, st: ExecState, prow: tuple | None = None) -> Iterator[tuple]:
        fns = self.fns
        n = len(fns)
        if n == 1:
            f0 = fns[0]
            for r in self.child.rows(st, prow):
                yield (f0(r, st),)
        elif n == 2:
            f0, f1 = fns
            for r in self.child.rows(st, prow):
                yield (f0(r, st), f1(r, st))
        else:
            for r in self.child.rows(st, prow):
                yield tuple([f(r, st) for f in fns])


class ProjectSet(PlanNode):
    """Projection with set-returning functions in the select list: one output
    row per element (functions in parallel, shorter ones padded with NULL)."""
    label = "ProjectSet"

    def __init__(self, child: PlanNode, fns: list[Fn], srf: list[bool]) -> None:
        self.child = child
        self.fns = fns
        self.srf = srf
        self.width = len(fns)

    def children(self) -> list[PlanNode]:
        return [self.child]

    def rows(self, st: ExecState, prow: tuple | None = None) -> Iterator[tuple]:
        for r in self.child.rows(st, prow):
            vals = [f(r, st) for f in self.fns]
            lists = [list(v) if s and v is not None else None for v, s in zip(vals, self.srf)]
            n = max((len(x) for x in lists if x is not None), default=0)
            for i in range(n):
                yield tuple((lst[i] if i < len(lst) else None) if lst is not None else v
                            for v, lst in zip(vals, lists))


def sort_rows(rows: list[tuple], keys: list[tuple[int, bool, bool | None]]) -> list[tuple]:
    """Stable multi-key sort of ``rows`` by column ``index`` with ``desc``
    and ``nulls_first`` (None = PostgreSQL default: NULLS LAST for ASC)."""
    for idx, desc, nulls_first in reversed(keys):
        if nulls_first is None:
            nulls_first = desc
        # flag sorts NULLs where requested; values of NULLs are never compared with non-NULLs
        null_flag_first = not nulls_first if not desc else nulls_first

        def key(r: tuple, i: int = idx, nf: bool = null_flag_first) -> tuple[bool, Any]:
            v = r[i]
            if v is None:
                return (nf, 0)
            return (not nf, v)
        try:
            rows.sort(key=key, reverse=desc)
        except TypeError:
            def text_key(r: tuple, i: int = idx, nf: bool = null_flag_first) -> tuple[bool, str]:
                return (nf, "") if r[i] is None else (not nf, str(r[i]))
            rows.sort(key=text_key, reverse=desc)
    return rows


class _Rev:
    """Inverts the order of a sort key element (DESC keys in a merge)."""

    __slots__ = ("k",)

    def __init__(self, k: Any) -> None:
        self.k = k

    def __lt__(self, other: _Rev) -> bool:
        return other.k < self.k

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Rev) and self.k == other.k


def composite_key(keys: list[tuple[int, bool, bool | None]]) -> Callable[[tuple], tuple]:
    """One key function ordering rows exactly like :func:`sort_rows` (for merges and heaps)."""
    parts = []
    for idx, desc, nulls_first in keys:
        if nulls_first is None:
            nulls_first = desc
        parts.append((idx, desc, not nulls_first if not desc else nulls_first))

    def key(r: tuple) -> tuple:
        out = []
        for idx, desc, nf in parts:
            v = r[idx]
            k = (nf, 0) if v is None else (not nf, v)
            out.append(_Rev(k) if desc else k)
        return tuple(out)
    return key


def _row_size(r: tuple) -> int:
    """Rough memory use of a row (work_mem accounting)."""
    n = 56 + 8 * len(r)
    for v in r:
        if isinstance(v, (str, bytes)):
            n += 49 + len(v)
        elif v is not None:
            n += 32
    return n


class Sort(PlanNode):
    """ORDER BY: in memory while the rows fit in ``work_mem``, otherwise sorted runs are
    written to temporary files under ``base/pgsql_tmp`` and merged (external merge sort).
    With ``limit`` (a LIMIT above it, offset included) only the top rows are kept (top-N
    heapsort)."""
    label = "Sort"

    def __init__(self, child: PlanNode, keys: list[tuple[int, bool, bool | None]]) -> None:
        self.child = child
        self.keys = keys
        self.width = child.width
        self.limit: Fn | None = None
        self.key_names: list[str] = []
        self.last_method = ""

    def children(self) -> list[PlanNode]:
        return [self.child]

    def details(self, analyze: bool = False) -> list[str]:
        out = list(self.notes)
        if self.key_names:
            out.append("Sort Key: " + ", ".join(self.key_names))
        if analyze and self.last_method:
            out.append(self.last_method)
        return out

    def rows(self, st: ExecState, prow: tuple | None = None) -> Iterator[tuple]:
        check = st.session is not None
        work_mem = _work_mem(st)
        if self.limit is not None:
            n = self.limit(prow or (), st)
            if n is not None and n >= 0:
                return self._top_n(st, prow, int(n))
        rows: list[tuple] = []
        used = 0
        runs: list[Any] = []
        count = 0
        for r in self.child.rows(st, prow):
            rows.append(r)
            used += _row_size(r)
            count += 1
            if check and count & 1023 == 0:
                _check_cancel(st)
            if used > work_mem:
                if len(rows) > 1:
                    sort_rows(rows, self.keys)
                runs.append(_write_run(st, rows))
                rows = []
                used = 0
        if check:
            _check_cancel(st)
        if not runs:
            if len(rows) > 1:
                sort_rows(rows, self.keys)
            self.last_method = f"Sort Method: quicksort  Memory: {max(used // 1024, 25)}kB"
            return iter(rows)
        if rows:
            sort_rows(rows, self.keys)
            runs.append(_write_run(st, rows))
        disk = sum(r.size for r in runs)
        self.last_method = f"Sort Method: external merge  Disk: {max(disk // 1024, 1)}kB"
        return _merge_runs(runs, composite_key(self.keys))

    def _top_n(self, st: ExecState, prow: tuple | None, n: int) -> Iterator[tuple]:
        import heapq
        key = composite_key(self.keys)
        if n == 0:
            for _ in self.child.rows(st, prow):
                pass
            return iter(())
        # heapq.nsmallest is stable for equal keys (it uses the input position as tiebreaker)
        out = heapq.nsmallest(n, self.child.rows(st, prow), key=key)
        self.last_method = "Sort Method: top-N heapsort  Memory: 25kB"
        return iter(out)


def _work_mem(st: ExecState) -> int:
    try:
        return int(st.env.settings.value("work_mem")) * 1024
    except Exception:  # noqa: BLE001
        return 4 * 1024 * 1024


class _Run:
    """One sorted run in a temporary file (pickled batches), deleted once read or at exit."""

    def __init__(self, path: str, size: int) -> None:
        self.path = path
        self.size = size

    def __iter__(self) -> Iterator[tuple]:
        import os
        import pickle
        try:
            with open(self.path, "rb") as f:
                while True:
                    try:
                        batch = pickle.load(f)
                    except EOFError:
                        break
                    yield from batch
        finally:
            try:
                os.unlink(self.path)
            except OSError:
                pass


_tmp_counter = [0]


def _temp_dir(st: ExecState) -> str:
    import os
    import tempfile
    base = None
    eng = getattr(st.env, "engine", None)
    env = getattr(eng, "env", None)
    datadir = getattr(env, "datadir", None)
    if datadir:
        base = os.path.join(datadir, "base", "pgsql_tmp")
    else:
        base = os.path.join(tempfile.gettempdir(), "pgbundle_tmp")
    os.makedirs(base, exist_ok=True)
    return base


def _write_run(st: ExecState, rows: list[tuple]) -> _Run:
    import os
    import pickle
    _tmp_counter[0] += 1
    path = os.path.join(_temp_dir(st), f"pgsql_tmp{os.getpid()}.{_tmp_counter[0]}")
    with open(path, "wb") as f:
        for i in range(0, len(rows), 1000):
            pickle.dump(rows[i:i + 1000], f, protocol=pickle.HIGHEST_PROTOCOL)
        size = f.tell()
    stats = getattr(getattr(getattr(st.env, "engine", None), "stats", None), "temp_file", None)
    if stats is not None:
        stats(size)
    return _Run(path, size)


def _merge_runs(runs: list[_Run], key: Callable[[tuple], tuple]) -> Iterator[tuple]:
    import heapq
    return heapq.merge(*[iter(r) for r in runs], key=key)


class Unique(PlanNode):
    """DISTINCT (all columns up to ``ncols``) or DISTINCT ON (key columns)."""
    label = "Unique"

    def __init__(self, child: PlanNode, ncols: int, on: list[int] | None = None) -> None:
        self.child = child
        self.ncols = ncols
        self.on = on
        self.width = child.width

    def children(self) -> list[PlanNode]:
        return [self.child]

    def rows(self, st: ExecState, prow: tuple | None = None) -> Iterator[tuple]:
        seen: set = set()
        n = self.ncols
        on = self.on
        for r in self.child.rows(st, prow):
            k = tuple(r[i] for i in on) if on is not None else (r[:n] if n != len(r) else r)
            try:
                if k in seen:
                    continue
                seen.add(k)
            except TypeError:
                rk = repr(k)
                if rk in seen:
                    continue
                seen.add(rk)
            yield r


class Limit(PlanNode):
    label = "Limit"

    def __init__(self, child: PlanNode, offset: Fn | None, count: Fn | None) -> None:
        self.child = child
        self.offset = offset
        self.count = count
        self.width = child.width

    def children(self) -> list[PlanNode]:
        return [self.child]

    def rows(self, st: ExecState, prow: tuple | None = None) -> Iterator[tuple]:
        off = self.offset((), st) if self.offset is not None else 0
        cnt = self.count((), st) if self.count is not None else None
        off = off or 0
        if off < 0:
            raise PgError("2201X", "OFFSET must not be negative")
        if cnt is not None and cnt < 0:
            raise PgError("2201W", "LIMIT must not be negative")
        if cnt == 0:
            return
        i = 0
        n = 0
        for r in self.child.rows(st, prow):
            if i < off:
                i += 1
                continue
            yield r
            n += 1
            if cnt is not None and n >= cnt:
                return


class Trim(PlanNode):
    """Drop helper columns (sort keys not in the select list)."""
    label = "Trim"

    def __init__(self, child: PlanNode, width: int) -> None:
        self.child = child
        self.width = width

    def children(self) -> list[PlanNode]:
        return [self.child]

    def explain(self, depth: int = 0, costs: bool = True, analyze: bool = False) -> list[str]:
        return self.child.explain(depth, costs, analyze)

    def rows(self, st: ExecState, prow: tuple | None = None) -> Iterator[tuple]:
        w = self.width
        for r in self.child.rows(st, prow):
            yield r[:w]


class SetOp(PlanNode):
    def __init__(self, op: str, all_: bool, left: PlanNode, right: PlanNode) -> None:
        self.op = op
        self.all = all_
        self.left = left
        self.right = right
        self.width = left.width
        self.label = {"union": "Append" if all_ else "HashAggregate", "intersect": "HashSetOp Intersect",
                      "except": "HashSetOp Except"}[op]

    def children(self) -> list[PlanNode]:
        return [self.left, self.right]

    def rows(self, st: ExecState, prow: tuple | None = None) -> Iterator[tuple]:
        if self.op == "union":
            if self.all:
                yield from self.left.rows(st, prow)
                yield from self.right.rows(st, prow)
                return
            seen: set = set()
            for src in (self.left, self.right):
                for r in src.rows(st, prow):
                    if r not in seen:
                        seen.add(r)
                        yield r
            return
        right: dict[tuple, int] = {}
        for r in self.right.rows(st, prow):
            right[r] = right.get(r, 0) + 1
        if self.op == "intersect":
            emitted: dict[tuple, int] = {}
            for r in self.left.rows(st, prow):
                c = right.get(r, 0)
                e = emitted.get(r, 0)
                if c and (e < c if self.all else e == 0):
                    emitted[r] = e + 1
                    yield r
            return
        seen2: dict[tuple, int] = {}
        for r in self.left.rows(st, prow):
            if self.all:
                if right.get(r, 0) > 0:
                    right[r] -= 1
                    continue
                yield r
            else:
                if r in right or r in seen2:
                    continue
                seen2[r] = 1
                yield r


# ----------------------------------------------------------------------------- aggregation


class AggSpec:
    """One aggregate call inside an Agg node."""

    __slots__ = ("defn", "args", "distinct", "filter", "order", "star", "strict")

    def __init__(self, defn: Any, args: list[Fn], distinct: bool, filter: Fn | None,
                 order: list[tuple[Fn, bool, bool | None]], star: bool) -> None:
        self.defn = defn
        self.args = args
        self.distinct = distinct
        self.filter = filter
        self.order = order
        self.star = star
        self.strict = defn.strict


class Agg(PlanNode):
    label = "Aggregate"

    def __init__(self, child: PlanNode, keys: list[Fn], aggs: list[AggSpec],
                 sets: list[list[int]] | None = None) -> None:
        self.child = child
        self.keys = keys
        self.aggs = aggs
        self.sets = sets
        self.width = len(keys) + len(aggs)
        if keys:
            self.label = "HashAggregate" if not sets else "MixedAggregate"

    def children(self) -> list[PlanNode]:
        return [self.child]

    def rows(self, st: ExecState, prow: tuple | None = None) -> Iterator[tuple]:
        if self.sets is None:
            return self._rows(st, self.child.rows(st, prow), self.keys, None)
        return self._grouping_sets(st, prow, self.sets)

    def _grouping_sets(self, st: ExecState, prow: tuple | None, sets: list[list[int]]) -> Iterator[tuple]:
        rows = list(self.child.rows(st, prow))
        nk = len(self.keys)
        for s in sets:
            keys = [self.keys[i] for i in s]
            for out in self._rows(st, iter(rows), keys, s):
                full: list = [None] * nk
                for j, i in enumerate(s):
                    full[i] = out[j]
                yield tuple(full) + out[len(s):]

    def _rows(self, st: ExecState, source: Any, keys: list[Fn], subset: list[int] | None) -> Iterator[tuple]:
        aggs = self.aggs
        simple = all(not a.distinct and not a.order and a.filter is None for a in aggs)
        groups: dict[Any, list] = {}
        order: list = []
        nk = len(keys)
        check = st.session is not None
        n = 0
        for r in source:
            n += 1
            if check and n & 1023 == 0:
                _check_cancel(st)
            k = tuple(f(r, st) for f in keys) if nk else ()
            g = groups.get(k)
            if g is None:
                g = [None] * len(aggs) if not simple else [a.defn.init() for a in aggs]
                if not simple:
                    for i, a in enumerate(aggs):
                        g[i] = [] if (a.distinct or a.order) else a.defn.init()
                groups[k] = g
                order.append(k)
            for i, a in enumerate(aggs):
                if a.filter is not None and a.filter(r, st) is not True:
                    continue
                if a.star:
                    g[i] = a.defn.step(g[i])
                    continue
                vals = [f(r, st) for f in a.args]
                if a.strict and None in vals:
                    continue
                if a.distinct or a.order:
                    okeys = tuple(f(r, st) for f, _, _ in a.order)
                    g[i].append((okeys, tuple(vals)))
                    continue
                g[i] = a.defn.step(g[i], *vals)
        if not groups and not nk:
            groups[()] = [a.defn.init() for a in aggs]
            order.append(())
            simple = True
        for k in order:
            g = groups[k]
            out = list(k)
            for i, a in enumerate(aggs):
                s = g[i]
                if not simple and (a.distinct or a.order):
                    items = s
                    if a.order:
                        idx_rows = [okeys + (vals,) for okeys, vals in items]
                        sort_rows(idx_rows, [(j, d, nf) for j, (_f, d, nf) in enumerate(a.order)])
                        items = [(None, row[-1]) for row in idx_rows]
                    state = a.defn.init()
                    seen: set = set()
                    for _ok, vals in items:
                        if a.distinct:
                            if vals in seen:
                                continue
                            seen.add(vals)
                        state = a.defn.step(state, *vals)
                    s = state
                out.append(a.defn.final(s))
            yield tuple(out)


def _frame_bounds(frame: tuple, pos: int, n: int, okeys: list[tuple], row: tuple, st: ExecState) -> tuple[int, int]:
    """[start, end] positions (inclusive; start > end = empty) of row ``pos``'s frame."""
    fo, so, eo = frame
    rows_mode = bool(fo & 0x4)

    def peers(p: int) -> tuple[int, int]:
        a = p
        while a > 0 and okeys[a - 1] == okeys[p]:
            a -= 1
        b = p
        while b + 1 < n and okeys[b + 1] == okeys[p]:
            b += 1
        return a, b

    def off(f: Any) -> int:
        v = f(row, st) if f is not None else 0
        if v is None or v < 0:
            raise PgError("22013", "frame starting offset must not be negative" if f is so else
                          "frame ending offset must not be negative")
        return int(v)
    if fo & 0x20:
        start = 0
    elif fo & 0x200:
        start = pos if rows_mode else peers(pos)[0]
    elif fo & 0x800:
        start = pos - off(so)
    elif fo & 0x2000:
        start = pos + off(so)
    else:
        start = 0
    if fo & 0x100:
        end = n - 1
    elif fo & 0x400 or not (fo & 0x10):
        end = pos if rows_mode else peers(pos)[1]
    elif fo & 0x1000:
        end = pos - off(eo)
    elif fo & 0x4000:
        end = pos + off(eo)
    else:
        end = pos
    return max(start, 0), min(end, n - 1)


# A window frame: (frameOptions, start offset, end offset); one window call: (function name,
# arguments, PARTITION BY keys, ORDER BY keys with (desc, nulls_first), frame or None).
WinFrame = tuple[int, Fn | None, Fn | None]
WinSpec = tuple[Any, list[Fn], list[Fn], list[tuple[Fn, bool, bool | None]], WinFrame | None]


class WindowAgg(PlanNode):
    """Window functions: appends one column per window call to each input row."""
    label = "WindowAgg"

    def __init__(self, child: PlanNode, wins: list[WinSpec]) -> None:
        self.child = child
        self.wins = wins
        self.width = child.width + len(wins)

    def children(self) -> list[PlanNode]:
        return [self.child]

    def rows(self, st: ExecState, prow: tuple | None = None) -> Iterator[tuple]:
        rows = list(self.child.rows(st, prow))
        extra = [[None] * len(self.wins) for _ in rows]
        for wi, (func, args, part, order, frame) in enumerate(self.wins):
            parts: dict[tuple, list[int]] = {}
            for i, r in enumerate(rows):
                parts.setdefault(tuple(f(r, st) for f in part), []).append(i)
            for idxs in parts.values():
                keyed = [tuple(f(rows[i], st) for f, _, _ in order) + (i,) for i in idxs]
                sort_rows(keyed, [(j, d, nf) for j, (_f, d, nf) in enumerate(order)])
                seq = [k[-1] for k in keyed]
                okeys = [k[:-1] for k in keyed]
                if frame is not None and func not in ("row_number", "rank", "dense_rank", "percent_rank",
                                                      "cume_dist", "ntile", "lag", "lead"):
                    self._compute_framed(func, args, seq, okeys, rows, extra, wi, st, frame)
                else:
                    self._compute(func, args, seq, okeys, rows, extra, wi, st, bool(order))
        for r, e in zip(rows, extra):
            yield r + tuple(e)

    def _compute_framed(self, func: Any, args: list[Fn], seq: list[int], okeys: list[tuple], rows: list[tuple],
                        extra: list[list], wi: int, st: ExecState, frame: WinFrame) -> None:
        """Aggregates and first/last/nth_value over an explicit frame (recomputed per row)."""
        n = len(seq)
        vals_cache = None
        for pos, i in enumerate(seq):
            a, b = _frame_bounds(frame, pos, n, okeys, rows[i], st)
            if func in ("first_value", "last_value", "nth_value"):
                if a > b:
                    extra[i][wi] = None
                    continue
                if func == "first_value":
                    k = a
                elif func == "last_value":
                    k = b
                else:
                    nth = args[1](rows[i], st)
                    if nth is None:
                        extra[i][wi] = None
                        continue
                    if nth <= 0:
                        raise PgError("22016", "argument of nth_value must be greater than zero")
                    k = a + nth - 1
                    if k > b:
                        extra[i][wi] = None
                        continue
                extra[i][wi] = args[0](rows[seq[k]], st)
                continue
            defn = func
            if vals_cache is None:
                vals_cache = [[f(rows[j], st) for f in args] for j in seq]
            s = defn.init()
            for p in range(a, b + 1):
                vals = vals_cache[p]
                if defn.strict and None in vals:
                    continue
                s = defn.step(s, *vals) if args else defn.step(s)
            v = defn.final(s)
            extra[i][wi] = list(v) if isinstance(v, list) else v

    def _compute(self, func: Any, args: list[Fn], seq: list[int], okeys: list[tuple], rows: list[tuple],
                 extra: list[list], wi: int, st: ExecState, ordered: bool) -> None:
        n = len(seq)
        if func == "row_number":
            for pos, i in enumerate(seq):
                extra[i][wi] = pos + 1
            return
        if func in ("rank", "dense_rank"):
            rank = dense = 0
            prev = object()
            for pos, i in enumerate(seq):
                if okeys[pos] != prev:
                    rank = pos + 1
                    dense += 1
                    prev = okeys[pos]
                extra[i][wi] = rank if func == "rank" else dense
            return
        if func in ("percent_rank", "cume_dist", "ntile"):
            peers_end = []
            pos = 0
            while pos < n:
                end = pos
                while end + 1 < n and okeys[end + 1] == okeys[pos]:
                    end += 1
                peers_end.extend([end] * (end - pos + 1))
                pos = end + 1
            rank = 0
            prev = object()
            for pos, i in enumerate(seq):
                if okeys[pos] != prev:
                    rank = pos + 1
                    prev = okeys[pos]
                if func == "percent_rank":
                    extra[i][wi] = (rank - 1) / (n - 1) if n > 1 else 0.0
                elif func == "cume_dist":
                    extra[i][wi] = (peers_end[pos] + 1) / n
                else:
                    buckets = args[0](rows[i], st)
                    if buckets is None:
                        extra[i][wi] = None
                        continue
                    if buckets <= 0:
                        raise PgError("22014", "argument of ntile must be greater than zero")
                    size, extra_rows = divmod(n, buckets)
                    big = extra_rows * (size + 1)
                    extra[i][wi] = pos // (size + 1) + 1 if pos < big else extra_rows + (pos - big) // max(size, 1) + 1
            return
        if func == "nth_value":
            self._compute_framed(func, args, seq, okeys, rows, extra, wi, st, (0x1 | 0x2 | 0x20 | 0x400, None, None)
                                 if ordered else (0x1 | 0x2 | 0x20 | 0x100, None, None))
            return
        if func in ("lag", "lead"):
            off_f = args[1] if len(args) > 1 else None
            dflt_f = args[2] if len(args) > 2 else None
            for pos, i in enumerate(seq):
                off = off_f(rows[i], st) if off_f else 1
                j = pos - off if func == "lag" else pos + off
                if 0 <= j < n:
                    extra[i][wi] = args[0](rows[seq[j]], st)
                else:
                    extra[i][wi] = dflt_f(rows[i], st) if dflt_f else None
            return
        if func in ("first_value", "last_value"):
            for pos, i in enumerate(seq):
                if func == "first_value":
                    extra[i][wi] = args[0](rows[seq[0]], st)
                else:
                    end = pos
                    while ordered and end + 1 < n and okeys[end + 1] == okeys[pos]:
                        end += 1
                    if not ordered:
                        end = n - 1
                    extra[i][wi] = args[0](rows[seq[end]], st)
            return
        # aggregate as window function: running (with peers) when ordered, whole partition otherwise
        defn = func
        if isinstance(defn, str):
            raise PgError("42883", f"window function {defn} does not exist")
        if not ordered:
            s = defn.init()
            for i in seq:
                vals = [f(rows[i], st) for f in args]
                if defn.strict and None in vals:
                    continue
                s = defn.step(s, *vals)
            v = defn.final(s)
            for i in seq:
                extra[i][wi] = v
            return
        s = defn.init()
        pos = 0
        while pos < n:
            end = pos
            while end + 1 < n and okeys[end + 1] == okeys[pos]:
                end += 1
            for p in range(pos, end + 1):
                vals = [f(rows[seq[p]], st) for f in args]
                if defn.strict and None in vals:
                    continue
                s = defn.step(s, *vals)
            v = defn.final(s)
            if isinstance(v, list):
                v = list(v)
            for p in range(pos, end + 1):
                extra[seq[p]][wi] = v
            pos = end + 1
