"""Analysed expressions and their compilation to Python closures.

The analyser (:mod:`.analyze`) turns pglast nodes into the small, typed node
classes below; every node knows its result ``type`` (OID) and ``typmod``.
:func:`compile_expr` turns a node into ``f(row, st) -> value`` where ``row`` is
the tuple the expression is evaluated on and ``st`` the :class:`ExecState` of
the running statement (parameters, outer rows of correlated subqueries, the
session environment).  Compilation happens once per plan, so per-row
evaluation is a chain of closure calls with no tree walking.

Column references are resolved at compile time: a :class:`Var` names a range
table entry (``rt``) and a column, and the :class:`Layout` passed to the
compiler says at which offset of the row that entry's columns start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pgbundle.server.errors import PgError
from pgbundle.shared.types import oids as T
from pgbundle.shared.types.arrays import array_elements

if TYPE_CHECKING:
    from pgbundle.server.access.engine_adapter import EngineStorage
    from pgbundle.server.tcop.session import Session
    from pgbundle.server.utils.session_env import SessionEnv

Fn = Callable[[tuple, "ExecState"], Any]


class Expr:
    __slots__ = ()
    type: int
    typmod: int = -1

    def children(self) -> tuple[Expr, ...]:
        return ()


@dataclass(frozen=True, slots=True)
class Const(Expr):
    value: Any
    type: int
    typmod: int = -1
    location: int = -1
    src_type: int = 0             # the literal's own type when a cast folded it (deparse shows the cast)


@dataclass(frozen=True, slots=True)
class Param(Expr):
    """``$n`` (``index`` is n - 1).  ``type`` is decided by the analyser."""
    index: int
    type: int
    typmod: int = -1


@dataclass(frozen=True, slots=True)
class Var(Expr):
    """Column ``col`` (0-based) of range-table entry ``rt``, ``levelsup``
    query levels out (0 = this query)."""
    rt: int
    col: int
    type: int
    typmod: int = -1
    levelsup: int = 0
    name: str = ""


@dataclass(frozen=True, slots=True)
class Slot(Expr):
    """Position ``index`` of the input row itself (used above aggregation,
    in sort keys and for outputs of subplans)."""
    index: int
    type: int
    typmod: int = -1
    name: str = ""


@dataclass(frozen=True, slots=True, eq=False)
class Func(Expr):
    """A function or operator call: ``impl(*args)``; ``strict`` functions
    return NULL when any argument is NULL without being called.  ``env``
    functions get the session environment as first argument."""
    name: str
    impl: Callable[..., Any]
    args: tuple[Expr, ...]
    type: int
    typmod: int = -1
    strict: bool = True
    env: bool = False
    volatile: bool = False

    def children(self) -> tuple[Expr, ...]:
        return self.args

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Func) and self.name == other.name and self.impl is other.impl
                and self.args == other.args and self.type == other.type)

    def __hash__(self) -> int:
        return hash((self.name, self.args))


@dataclass(frozen=True, slots=True)
class BoolOp(Expr):
    op: str                       # 'and' | 'or' | 'not'
    args: tuple[Expr, ...]
    type: int = T.BOOL
    typmod: int = -1

    def children(self) -> tuple[Expr, ...]:
        return self.args


@dataclass(frozen=True, slots=True)
class NullTest(Expr):
    arg: Expr
    isnull: bool
    type: int = T.BOOL
    typmod: int = -1

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


@dataclass(frozen=True, slots=True)
class BoolTest(Expr):
    arg: Expr
    test: str                     # IS_TRUE, IS_NOT_TRUE, IS_FALSE, IS_NOT_FALSE, IS_UNKNOWN, IS_NOT_UNKNOWN
    type: int = T.BOOL
    typmod: int = -1

    def children(self) -> tuple[Expr, ...]:
        return (self.arg,)


@dataclass(frozen=True, slots=True)
class Case(Expr):
    arg: Expr | None              # simple CASE operand (already folded into conditions when None)
    whens: tuple[tuple[Expr, Expr], ...]
    default: Expr | None
    type: int
    typmod: int = -1

    def children(self) -> tuple[Expr, ...]:
        out: list[Expr] = [] if self.arg is None else [self.arg]
        for c, r in self.whens:
            out += [c, r]
        if self.default is not None:
            out.append(self.default)
        return tuple(out)


@dataclass(frozen=True, slots=True)
class Coalesce(Expr):
    args: tuple[Expr, ...]
    type: int
    typmod: int = -1
    kind: str = "coalesce"        # coalesce | greatest | least | nullif

    def children(self) -> tuple[Expr, ...]:
        return self.args


@dataclass(frozen=True, slots=True)
class ArrayExpr(Expr):
    elems: tuple[Expr, ...]
    type: int
    typmod: int = -1

    def children(self) -> tuple[Expr, ...]:
        return self.elems


@dataclass(frozen=True, slots=True)
class RowExpr(Expr):
    args: tuple[Expr, ...]
    type: int = T.RECORD
    typmod: int = -1
    names: tuple[str, ...] = ()   # field names of a whole-row reference (row_to_json, json_agg)

    def children(self) -> tuple[Expr, ...]:
        return self.args


@dataclass(frozen=True, slots=True, eq=False)
class ScalarArrayOp(Expr):
    """``left op ANY|ALL (array)``; ``cmp`` is the element comparison."""
    cmp: Callable[[Any, Any], Any]
    left: Expr
    right: Expr
    use_or: bool
    type: int = T.BOOL
    typmod: int = -1
    opname: str = "="

    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)


@dataclass(frozen=True, slots=True, eq=False)
class SubLink(Expr):
    """A subquery in an expression.  ``kind``: exists | expr (scalar) |
    any (``testexpr op ANY (subquery)``, also IN) | all | array.  ``plan`` is
    the planned subquery (set by the planner); ``test`` compares the left
    operand (``left``) with one column value."""
    kind: str
    query: Any
    type: int
    typmod: int = -1
    left: Expr | None = None
    test: Callable[[Any, Any], Any] | None = None
    correlated: bool = True
    plan: Any = None
    width: int = 1                # columns compared by a row-valued IN / op ANY

    def children(self) -> tuple[Expr, ...]:
        return () if self.left is None else (self.left,)


@dataclass(frozen=True, slots=True, eq=False)
class Aggref(Expr):
    """An aggregate call; the planner moves it into the Agg node and replaces
    it by a :class:`Slot` above."""
    agg: Any                       # functions.AggDef
    args: tuple[Expr, ...]
    type: int
    typmod: int = -1
    distinct: bool = False
    star: bool = False
    filter: Expr | None = None
    order: tuple = ()
    location: int = -1

    def children(self) -> tuple[Expr, ...]:
        return self.args + ((self.filter,) if self.filter is not None else ())


@dataclass(frozen=True, slots=True, eq=False)
class WindowRef(Expr):
    func: Any
    args: tuple[Expr, ...]
    type: int
    partition: tuple = ()
    order: tuple = ()
    typmod: int = -1
    frame: Any = None             # (frameOptions, start offset Expr|None, end offset Expr|None)


@dataclass(frozen=True, slots=True, eq=False)
class Dynamic(Expr):
    """A node computed by a custom compiler ``make(cc) -> Fn`` (current
    setting lookups, sequence calls that need the session, ...)."""
    make: Callable[[Any], Fn]
    type: int
    typmod: int = -1
    key: Any = None
    args: tuple[Expr, ...] = ()

    def children(self) -> tuple[Expr, ...]:
        return self.args


# ----------------------------------------------------------------------------- runtime


class ExecState:
    """Per-execution state visible to compiled expressions."""

    __slots__ = ("params", "outer", "env", "storage", "session", "cancel_check", "cte", "extra")

    def __init__(self, params: list, env: SessionEnv, storage: EngineStorage,
                 session: Session | None = None) -> None:
        self.params = params
        self.outer: list[tuple] = []
        self.env = env
        self.storage = storage
        self.session = session
        self.cte: dict[Any, list] = {}
        self.extra: dict[Any, Any] = {}


@dataclass
class Layout:
    """Where each range-table entry's columns start in a row.  ``outer`` is
    the stack of layouts of enclosing query levels (innermost first)."""
    offsets: dict[int, int] = field(default_factory=dict)
    outer: list[Layout] = field(default_factory=list)
    slots: dict[Expr, int] = field(default_factory=dict)   # whole expressions already computed below


class CompileContext:
    def __init__(self, layout: Layout, planner: Any = None) -> None:
        self.layout = layout
        self.planner = planner


def compile_expr(e: Expr, layout: Layout, planner: Any = None) -> Fn:
    return _compile(e, CompileContext(layout, planner))


def _compile(e: Expr, cc: CompileContext) -> Fn:
    slots = cc.layout.slots
    if slots:
        try:
            pos = slots.get(e)
        except TypeError:
            pos = None
        if pos is not None:
            return lambda r, st: r[pos]
    m = _COMPILERS.get(type(e))
    if m is None:
        raise PgError("XX000", f"cannot compile expression node {type(e).__name__}")
    return m(e, cc)


def _c_const(e: Const, cc: CompileContext) -> Fn:
    v = e.value
    return lambda r, st: v


def _c_param(e: Param, cc: CompileContext) -> Fn:
    i = e.index
    return lambda r, st: st.params[i]


def _c_var(e: Var, cc: CompileContext) -> Fn:
    if e.levelsup == 0:
        off = cc.layout.offsets.get(e.rt)
        if off is None:
            raise PgError("XX000", f"variable {e.name} not found in plan row")
        i = off + e.col
        return lambda r, st: r[i]
    lay = cc.layout.outer[e.levelsup - 1]
    off = lay.offsets.get(e.rt)
    if off is None:
        raise PgError("XX000", f"outer variable {e.name} not found")
    i = off + e.col
    k = -e.levelsup
    return lambda r, st: st.outer[k][i]


def _c_slot(e: Slot, cc: CompileContext) -> Fn:
    i = e.index
    return lambda r, st: r[i]


def _c_func(e: Func, cc: CompileContext) -> Fn:
    impl = e.impl
    args = [_compile(a, cc) for a in e.args]
    n = len(args)
    if e.env:
        fimpl = e.impl
        if n == 0:
            return lambda r, st: fimpl(st.env)
        if n == 1:
            a0 = args[0]
            if e.strict:
                def f1(r: tuple, st: ExecState) -> Any:
                    x = a0(r, st)
                    return None if x is None else fimpl(st.env, x)
                return f1
            return lambda r, st: fimpl(st.env, a0(r, st))
        if e.strict:
            def fn_env(r: tuple, st: ExecState) -> Any:
                vals = [a(r, st) for a in args]
                if None in vals:
                    return None
                return fimpl(st.env, *vals)
            return fn_env
        return lambda r, st: fimpl(st.env, *[a(r, st) for a in args])
    if n == 0:
        return lambda r, st: impl()
    if n == 1:
        a0 = args[0]
        if e.strict:
            def f1s(r: tuple, st: ExecState) -> Any:
                x = a0(r, st)
                return None if x is None else impl(x)
            return f1s
        return lambda r, st: impl(a0(r, st))
    if n == 2:
        a0, a1 = args
        if e.strict:
            def f2s(r: tuple, st: ExecState) -> Any:
                x = a0(r, st)
                if x is None:
                    return None
                y = a1(r, st)
                if y is None:
                    return None
                return impl(x, y)
            return f2s
        return lambda r, st: impl(a0(r, st), a1(r, st))
    if e.strict:
        def fns(r: tuple, st: ExecState) -> Any:
            vals = [a(r, st) for a in args]
            if None in vals:
                return None
            return impl(*vals)
        return fns
    return lambda r, st: impl(*[a(r, st) for a in args])


def _c_bool(e: BoolOp, cc: CompileContext) -> Fn:
    args = [_compile(a, cc) for a in e.args]
    if e.op == "not":
        a0 = args[0]

        def f_not(r: tuple, st: ExecState) -> Any:
            x = a0(r, st)
            return None if x is None else not x
        return f_not
    if e.op == "and":
        if len(args) == 2:
            a0, a1 = args

            def f_and2(r: tuple, st: ExecState) -> Any:
                x = a0(r, st)
                if x is False:
                    return False
                y = a1(r, st)
                if y is False:
                    return False
                if x is None or y is None:
                    return None
                return True
            return f_and2

        def f_and(r: tuple, st: ExecState) -> Any:
            null = False
            for a in args:
                x = a(r, st)
                if x is False:
                    return False
                if x is None:
                    null = True
            return None if null else True
        return f_and

    def f_or(r: tuple, st: ExecState) -> Any:
        null = False
        for a in args:
            x = a(r, st)
            if x is True:
                return True
            if x is None:
                null = True
        return None if null else False
    return f_or


def _c_nulltest(e: NullTest, cc: CompileContext) -> Fn:
    a = _compile(e.arg, cc)
    rowlike = isinstance(e.arg, RowExpr)
    if rowlike:
        if e.isnull:
            return lambda r, st: all(x is None for x in a(r, st))
        return lambda r, st: all(x is not None for x in a(r, st))
    if e.isnull:
        return lambda r, st: a(r, st) is None
    return lambda r, st: a(r, st) is not None


def _c_booltest(e: BoolTest, cc: CompileContext) -> Fn:
    a = _compile(e.arg, cc)
    t = e.test
    table = {"IS_TRUE": lambda x: x is True, "IS_NOT_TRUE": lambda x: x is not True,
             "IS_FALSE": lambda x: x is False, "IS_NOT_FALSE": lambda x: x is not False,
             "IS_UNKNOWN": lambda x: x is None, "IS_NOT_UNKNOWN": lambda x: x is not None}[t]
    return lambda r, st: table(a(r, st))


def _c_case(e: Case, cc: CompileContext) -> Fn:
    whens = [(_compile(c, cc), _compile(v, cc)) for c, v in e.whens]
    dflt = _compile(e.default, cc) if e.default is not None else (lambda r, st: None)

    def f_case(r: tuple, st: ExecState) -> Any:
        for c, v in whens:
            if c(r, st) is True:
                return v(r, st)
        return dflt(r, st)
    return f_case


def _c_coalesce(e: Coalesce, cc: CompileContext) -> Fn:
    args = [_compile(a, cc) for a in e.args]
    if e.kind == "coalesce":
        def f_coal(r: tuple, st: ExecState) -> Any:
            for a in args:
                x = a(r, st)
                if x is not None:
                    return x
            return None
        return f_coal
    if e.kind == "nullif":
        a0, a1 = args

        def f_nullif(r: tuple, st: ExecState) -> Any:
            x = a0(r, st)
            y = a1(r, st)
            if x is not None and y is not None and x == y:
                return None
            return x
        return f_nullif
    pick = max if e.kind == "greatest" else min

    def f_gl(r: tuple, st: ExecState) -> Any:
        vals = [x for x in (a(r, st) for a in args) if x is not None]
        return pick(vals) if vals else None
    return f_gl


def _c_array(e: ArrayExpr, cc: CompileContext) -> Fn:
    elems = [_compile(a, cc) for a in e.elems]
    return lambda r, st: [a(r, st) for a in elems]


class NamedRow(tuple):
    """A row value that knows its field names (whole-row references)."""

    names: tuple[str, ...] = ()

    def __new__(cls, values: Any, names: tuple[str, ...]) -> NamedRow:
        t = tuple.__new__(cls, values)
        t.names = names
        return t


def _c_row(e: RowExpr, cc: CompileContext) -> Fn:
    elems = [_compile(a, cc) for a in e.args]
    if e.names:
        names = e.names
        return lambda r, st: NamedRow([a(r, st) for a in elems], names)
    return lambda r, st: tuple(a(r, st) for a in elems)


def _c_saop(e: ScalarArrayOp, cc: CompileContext) -> Fn:
    left = _compile(e.left, cc)
    right = _compile(e.right, cc)
    cmp = e.cmp
    use_or = e.use_or

    def f_saop(r: tuple, st: ExecState) -> Any:
        x = left(r, st)
        arr = right(r, st)
        if arr is None:
            return None
        if not arr:
            return not use_or
        if x is None:
            return None
        null = False
        for y in array_elements(arr):
            if y is None:
                null = True
                continue
            res = cmp(x, y)
            if res is None:
                null = True
            elif use_or and res:
                return True
            elif not use_or and not res:
                return False
        if null:
            return None
        return not use_or
    return f_saop


def _c_sublink(e: SubLink, cc: CompileContext) -> Fn:
    if cc.planner is None:
        raise PgError("0A000", "subquery not allowed here")
    return cc.planner.compile_sublink(e, cc)


def _c_aggref(e: Aggref, cc: CompileContext) -> Fn:
    raise PgError("42803", "aggregate functions are not allowed here")


def _c_dynamic(e: Dynamic, cc: CompileContext) -> Fn:
    return e.make(cc)


def _c_window(e: WindowRef, cc: CompileContext) -> Fn:
    raise PgError("42P20", "window functions are not allowed here")


_COMPILERS: dict[type, Callable[[Any, CompileContext], Fn]] = {
    Const: _c_const, Param: _c_param, Var: _c_var, Slot: _c_slot, Func: _c_func, BoolOp: _c_bool,
    NullTest: _c_nulltest, BoolTest: _c_booltest, Case: _c_case, Coalesce: _c_coalesce,
    ArrayExpr: _c_array, RowExpr: _c_row, ScalarArrayOp: _c_saop, SubLink: _c_sublink,
    Aggref: _c_aggref, Dynamic: _c_dynamic, WindowRef: _c_window,
}


def walk(e: Expr) -> Iterator[Expr]:
    """Yield ``e`` and every node below it (not into subqueries)."""
    stack = [e]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(n.children())


def contains(e: Expr, pred: Callable[[Expr], bool]) -> bool:
    return any(pred(n) for n in walk(e))


def is_constant(e: Expr) -> bool:
    """True when ``e`` references no column, no outer row and nothing volatile
    (parameters allowed): it can be evaluated once per execution."""
    for n in walk(e):
        if isinstance(n, (Var, Slot, Aggref, SubLink, WindowRef)):
            return False
        if isinstance(n, Func) and n.volatile:
            return False
        if isinstance(n, Dynamic):
            return False
    return True


def rts_of(e: Expr) -> set[int]:
    """Range-table entries of this query level that ``e`` references."""
    out = set()
    for n in walk(e):
        if isinstance(n, Var) and n.levelsup == 0:
            out.add(n.rt)
        elif isinstance(n, SubLink):
            out |= getattr(n.query, "outer_rts", set())
    return out
