"""Semantic analysis: pglast statement dicts -> typed :class:`QueryTree` objects (PostgreSQL's Query nodes).

Names are resolved to relations (user tables through the storage, catalog
views through :mod:`.catalog_views`) and columns; every expression gets a type;
operators and functions are resolved (:mod:`.functions`); literals of unknown
type and parameters of unspecified type take their type from context, as in
PostgreSQL (``WHERE id = $1`` makes ``$1`` an int4 if ``id`` is one; psycopg's
int2 parameters are coerced into int4 columns).  Errors are PgErrors with
PostgreSQL's SQLSTATEs, messages and positions.

The :class:`Analyzer` needs an ``env`` (the session environment: storage,
catalog views, settings) and a :class:`ParamTypes` list shared by all
statements of one prepared statement.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pgbundle.server.access.tableam import SqlRelation
from pgbundle.server.errors import PgError
from pgbundle.server.executor.expr import (
    Aggref,
    ArrayExpr,
    BoolOp,
    BoolTest,
    Case,
    Coalesce,
    Const,
    Dynamic,
    Expr,
    Func,
    NullTest,
    Param,
    RowExpr,
    ScalarArrayOp,
    Slot,
    SubLink,
    Var,
    WindowRef,
    is_constant,
    walk,
)
from pgbundle.server.parser.coerce import (
    SERIAL_TYPES,
    can_coerce,
    cast_fn,
    common_type,
    format_type,
    resolve_type,
    typmod_fn,
)
from pgbundle.server.parser.parse import names, parse
from pgbundle.server.utils.adt import functions as F
from pgbundle.server.utils.adt.enums import comparator
from pgbundle.shared.types import oids as T
from pgbundle.shared.types.oids import TYPES

# ----------------------------------------------------------------------------- result structures


@dataclass
class RTE:
    """A range-table entry: something in FROM that yields rows."""
    kind: str                          # relation | subquery | values | function | cte | virtual
    alias: str
    colnames: list[str]
    coltypes: list[int]
    coltypmods: list[int]
    rel: SqlRelation | None = None
    query: QueryTree | None = None
    values: list[list[Expr]] | None = None
    func: Expr | None = None
    funcs: list[Expr] | None = None
    virtual: Any = None
    lateral: bool = False
    cte_name: str = ""
    ordinality: bool = False

    @property
    def width(self) -> int:
        return len(self.colnames)

    @property
    def relation(self) -> SqlRelation:
        """The relation of a ``relation`` entry (which always has one)."""
        assert self.rel is not None, self.kind
        return self.rel


@dataclass
class RangeRef:
    rt: int


@dataclass
class JoinNode:
    kind: str                          # inner | left | right | full | cross
    left: Any
    right: Any
    quals: Expr | None


@dataclass
class Target:
    expr: Expr
    name: str
    table_oid: int = 0
    attnum: int = 0


@dataclass
class SortKey:
    expr: Expr
    desc: bool = False
    nulls_first: bool | None = None    # None = default (NULLS LAST for ASC, FIRST for DESC)


@dataclass
class CTE:
    name: str
    query: QueryTree
    colnames: list[str]
    recursive: bool = False
    # set by the planner
    plan: Any = None
    key: Any = None                    # (id, name): where the executor keeps its rows
    correlated: bool = True


@dataclass
class QueryTree:
    kind: str                          # select | setop | insert | update | delete
    rtable: list[RTE] = field(default_factory=list)
    from_: list[Any] = field(default_factory=list)
    where: Expr | None = None
    targets: list[Target] = field(default_factory=list)
    group: list[Expr] = field(default_factory=list)
    grouping_sets: list[list[int]] | None = None  # GROUPING SETS / ROLLUP / CUBE: indexes into group
    having: Expr | None = None
    aggs: list[Aggref] = field(default_factory=list)
    windows: list[WindowRef] = field(default_factory=list)
    sort: list[SortKey] = field(default_factory=list)
    limit: Expr | None = None
    offset: Expr | None = None
    distinct: bool = False
    distinct_on: list[Expr] = field(default_factory=list)
    # set operations
    setop: str = ""                    # union | intersect | except
    setop_all: bool = False
    larg: QueryTree | None = None
    rarg: QueryTree | None = None
    # DML
    target: SqlRelation | None = None
    target_rt: int = -1
    insert_cols: list[int] = field(default_factory=list)
    insert_rows: list[list[Expr | None]] | None = None  # INSERT ... VALUES, already coerced; None: DEFAULT
    source: QueryTree | None = None                       # INSERT ... SELECT
    set_cols: list[tuple[int, Expr | None]] = field(default_factory=list)  # None: DEFAULT
    returning: list[Target] = field(default_factory=list)
    on_conflict: Any = None
    ctes: list[CTE] = field(default_factory=list)
    outer_rts: set = field(default_factory=set)
    correlated: bool = False
    has_aggs: bool = False
    locking: bool = False
    for_update: bool = False
    recursive_name: str = ""           # WITH RECURSIVE: the CTE's name on its UNION query


class ParamTypes:
    """Types of ``$n`` parameters: declared ones (from Parse) and those
    inferred during analysis.  0 / UNKNOWN = not yet known."""

    def __init__(self, declared: tuple[int, ...] | list[int] = ()) -> None:
        self.types: list[int] = [t or T.UNKNOWN for t in declared]
        self.declared = len(declared)

    def get(self, i: int) -> int:
        while len(self.types) <= i:
            self.types.append(T.UNKNOWN)
        return self.types[i]

    def set(self, i: int, t: int) -> None:
        self.get(i)
        self.types[i] = t

    def final(self) -> list[int]:
        return [T.TEXT if t == T.UNKNOWN else t for t in self.types]


# ----------------------------------------------------------------------------- namespaces


@dataclass
class NSItem:
    rt: int
    alias: str
    colnames: list[str]
    rte: RTE | None                    # None: a column merged by JOIN USING
    cols_visible: bool = True          # unqualified column names visible
    rel_visible: bool = True
    using: dict[str, Expr] = field(default_factory=dict)
    hidden: set[str] = field(default_factory=set)


class PState:
    """Analysis state of one query level."""

    def __init__(self, parent: PState | None, query: QueryTree) -> None:
        self.parent = parent
        self.query = query
        self.ns: list[NSItem] = []
        self.ctes: dict[str, CTE] = {}
        self.expr_kind = ""            # WHERE, JOIN, GROUP BY, HAVING, select list, ...
        self.aggs_allowed = False
        self.level: int = 0 if parent is None else parent.level + 1
        self.windefs: dict[str, dict] = {}   # WINDOW clause: name -> WindowDef

    def find_cte(self, name: str) -> tuple[CTE, int] | None:
        p: PState | None = self
        up = 0
        while p is not None:
            if name in p.ctes:
                return p.ctes[name], up
            p = p.parent
            up += 1
        return None


def _err(sqlstate: str, msg: str, loc: int | None = None, **kw: Any) -> PgError:
    return PgError(sqlstate, msg, position=(loc + 1) if loc is not None and loc >= 0 else None, **kw)


def _loc(node: dict) -> int:
    if not node:
        return -1
    (k, v), = node.items() if len(node) == 1 else (("", node),)
    if isinstance(v, dict):
        return v.get("location", -1)
    return -1


def _kind(node: dict) -> tuple[str, dict]:
    (k, v), = node.items()
    return k, v


# ----------------------------------------------------------------------------- the analyser


class Analyzer:
    def __init__(self, env: Any, params: ParamTypes) -> None:
        self.env = env
        self.params = params

    # ------------------------------------------------------------------ statements

    def analyze(self, kind: str, node: dict, parent: PState | None = None) -> QueryTree:
        if kind == "SelectStmt":
            return self.select(node, parent)
        if kind == "InsertStmt":
            return self.insert(node, parent)
        if kind == "UpdateStmt":
            return self.update(node, parent)
        if kind == "DeleteStmt":
            return self.delete(node, parent)
        raise _err("0A000", f"statement {kind} is not supported")

    def _with(self, node: dict, ps: PState) -> None:
        w = node.get("withClause")
        if not w:
            return
        recursive = w.get("recursive", False)
        for c in w.get("ctes", []):
            cte = c["CommonTableExpr"]
            name = cte["ctename"]
            colnames = names(cte.get("aliascolnames"))
            k, sub = _kind(cte["ctequery"])
            if recursive and k == "SelectStmt" and sub.get("op") == "SETOP_UNION":
                q = self._recursive_cte(name, colnames, sub, ps)
            else:
                q = self.analyze(k, sub, ps)
            if not colnames:
                colnames = [t.name for t in (q.returning if q.kind != "select" and q.kind != "setop"
                                             else q.targets)]
            ps.ctes[name] = CTE(name, q, colnames, recursive)
            ps.query.ctes.append(ps.ctes[name])

    def _recursive_cte(self, name: str, colnames: list[str], sub: dict, ps: PState) -> QueryTree:
        # analyse the non-recursive term first to learn the column types
        lk, larg = _kind({"SelectStmt": sub["larg"]})
        left = self.select(larg, ps)
        cols = colnames or [t.name for t in left.targets]
        placeholder = QueryTree("select", targets=[Target(t.expr, n) for t, n in zip(left.targets, cols)])
        cte = CTE(name, placeholder, cols, True)
        ps.ctes[name] = cte
        right = self.select(sub["rarg"], ps)
        del ps.ctes[name]
        q = QueryTree("setop", setop="union", setop_all=sub.get("all", False), larg=left, rarg=right)
        q.targets = [Target(Slot(i, t.expr.type, t.expr.typmod), cols[i]) for i, t in enumerate(left.targets)]
        q.ctes = []
        q.recursive_name = name
        return q

    def select(self, node: dict, parent: PState | None) -> QueryTree:
        op = node.get("op", "SETOP_NONE")
        if op != "SETOP_NONE":
            return self._setop(node, parent)
        q = QueryTree("select")
        ps = PState(parent, q)
        self._with(node, ps)
        if node.get("valuesLists"):
            return self._values_select(node, ps)
        for item in node.get("fromClause", []) or []:
            q.from_.append(self._from_item(item, ps))
        if node.get("whereClause"):
            ps.expr_kind = "WHERE"
            q.where = self.coerce_bool(self.expr(node["whereClause"], ps), "WHERE")
        ps.expr_kind = "SELECT"
        ps.aggs_allowed = True
        for wd in node.get("windowClause", []) or []:
            d = wd["WindowDef"]
            ps.windefs[d["name"]] = d
        q.targets = self._target_list(node.get("targetList", []), ps)
        if node.get("groupClause"):
            ps.expr_kind = "GROUP BY"
            ps.aggs_allowed = False
            if any("GroupingSet" in g for g in node["groupClause"]):
                self._grouping_sets(node["groupClause"], ps, q)
            else:
                for g in node["groupClause"]:
                    q.group.append(self._group_or_order_expr(g, ps, q.targets, "GROUP BY"))
        if node.get("havingClause"):
            ps.expr_kind = "HAVING"
            ps.aggs_allowed = True
            q.having = self.coerce_bool(self.expr(node["havingClause"], ps), "HAVING")
        ps.aggs_allowed = True
        ps.expr_kind = "ORDER BY"
        for s in node.get("sortClause", []) or []:
            q.sort.append(self._sort_key(s["SortBy"], ps, q.targets))
        ps.aggs_allowed = False
        if node.get("distinctClause") is not None:
            dc = node["distinctClause"]
            if dc and dc != [{}]:
                q.distinct_on = [self._group_or_order_expr(d, ps, q.targets, "DISTINCT ON") for d in dc]
            else:
                q.distinct = True
        self._limit(node, ps, q)
        if node.get("lockingClause"):
            q.for_update = True
        q.has_aggs = bool(q.aggs) or bool(q.group)
        if q.has_aggs:
            self._check_grouping(q)
        return q

    def _limit(self, node: dict, ps: PState, q: QueryTree) -> None:
        ps.expr_kind = "LIMIT"
        if node.get("limitCount"):
            e = self.expr(node["limitCount"], ps)
            if not (isinstance(e, Const) and e.value is None):
                q.limit = self.coerce(e, T.INT8, -1, "i", "LIMIT")
        if node.get("limitOffset"):
            q.offset = self.coerce(self.expr(node["limitOffset"], ps), T.INT8, -1, "i", "OFFSET")

    def _check_grouping(self, q: QueryTree) -> None:
        """Every column used above the aggregation must be grouped."""
        groups = q.group

        def check(e: Expr) -> None:
            if e in groups:
                return
            if isinstance(e, (Aggref, WindowRef)):
                return
            if isinstance(e, Var) and e.levelsup == 0:
                rte = q.rtable[e.rt]
                raise _err("42803", f'column "{rte.alias}.{e.name}" must appear in the GROUP BY clause or be '
                                    f'used in an aggregate function')
            for c in e.children():
                check(c)
        for t in q.targets:
            check(t.expr)
        if q.having is not None:
            check(q.having)
        for s in q.sort:
            check(s.expr)

    def _values_select(self, node: dict, ps: PState) -> QueryTree:
        q = ps.query
        rows = [[self.expr(v, ps) for v in lst["List"]["items"]] for lst in node["valuesLists"]]
        width = len(rows[0])
        for r in rows:
            if len(r) != width:
                raise _err("42601", "VALUES lists must all be the same length")
        types = []
        for c in range(width):
            t = common_type([r[c].type for r in rows], "VALUES")
            types.append(t)
        rows = [[self.coerce(r[c], types[c], -1, "i", "VALUES") for c in range(width)] for r in rows]
        colnames = [f"column{i + 1}" for i in range(width)]
        rte = RTE("values", "*VALUES*", colnames, types, [-1] * width, values=rows)
        q.rtable.append(rte)
        q.from_.append(RangeRef(0))
        q.targets = [Target(Var(0, i, types[i], -1, 0, colnames[i]), colnames[i]) for i in range(width)]
        ps.ns.append(NSItem(0, "*VALUES*", colnames, rte))
        for s in node.get("sortClause", []) or []:
            q.sort.append(self._sort_key(s["SortBy"], ps, q.targets))
        self._limit(node, ps, q)
        return q

    def _setop(self, node: dict, parent: PState | None) -> QueryTree:
        op = {"SETOP_UNION": "union", "SETOP_INTERSECT": "intersect", "SETOP_EXCEPT": "except"}[node["op"]]
        q = QueryTree("setop", setop=op, setop_all=node.get("all", False))
        ps = PState(parent, q)
        self._with(node, ps)
        q.larg = self.select(node["larg"], ps)
        q.rarg = self.select(node["rarg"], ps)
        lt, rt = q.larg.targets, q.rarg.targets
        if len(lt) != len(rt):
            raise _err("42601", f"each {op.upper()} query must have the same number of columns")
        for i, (a, b) in enumerate(zip(lt, rt)):
            t = common_type([a.expr.type, b.expr.type], op.upper())
            tm = a.expr.typmod if a.expr.typmod == b.expr.typmod else -1
            self._coerce_target(q.larg, i, t)
            self._coerce_target(q.rarg, i, t)
            q.targets.append(Target(Slot(i, t, tm), a.name))
        # ORDER BY / LIMIT apply to the result: resolve names against output columns
        for s in node.get("sortClause", []) or []:
            sb = s["SortBy"]
            e = self._output_ref(sb["node"], q.targets)
            if e is None:
                raise _err("0A000", "invalid UNION/INTERSECT/EXCEPT ORDER BY clause",
                           detail="Only result column names can be used, not expressions or functions.")
            q.sort.append(SortKey(e, sb.get("sortby_dir") == "SORTBY_DESC", _nulls(sb)))
        self._limit(node, ps, q)
        return q

    def _coerce_target(self, q: QueryTree, i: int, t: int) -> None:
        if q.kind == "setop":
            tgt = q.targets[i]
            if tgt.expr.type != t:
                assert q.larg is not None and q.rarg is not None
                self._coerce_target(q.larg, i, t)
                self._coerce_target(q.rarg, i, t)
                q.targets[i] = Target(Slot(i, t, -1), tgt.name)
            return
        tgt = q.targets[i]
        if tgt.expr.type != t:
            q.targets[i] = Target(self.coerce(tgt.expr, t, -1, "i", "UNION"), tgt.name, tgt.table_oid, tgt.attnum)

    def _output_ref(self, n: dict, targets: list[Target]) -> Slot | None:
        k, v = _kind(n)
        if k == "A_Const" and "ival" in v:
            i = v["ival"].get("ival", 0)
            if not 1 <= i <= len(targets):
                raise _err("42P10", f"ORDER BY position {i} is not in select list", v.get("location"))
            return Slot(i - 1, targets[i - 1].expr.type, targets[i - 1].expr.typmod)
        if k == "ColumnRef":
            f = names(v["fields"])
            if len(f) == 1:
                for i, t in enumerate(targets):
                    if t.name == f[0]:
                        return Slot(i, t.expr.type, t.expr.typmod)
        return None

    # ------------------------------------------------------------------ FROM

    def _add_rte(self, ps: PState, rte: RTE, alias_node: dict | None, loc: int = -1) -> int:
        if alias_node:
            rte.alias = alias_node.get("aliasname", rte.alias)
            cn = names(alias_node.get("colnames"))
            if cn:
                if len(cn) > len(rte.colnames):
                    raise _err("42P10", f'table "{rte.alias}" has {len(rte.colnames)} columns available but '
                                        f'{len(cn)} columns specified', loc)
                rte.colnames = cn + rte.colnames[len(cn):]
        for it in ps.ns:
            if it.rel_visible and it.alias == rte.alias and it.rte is not None and it.rte.kind != "join":
                raise _err("42712", f'table name "{rte.alias}" specified more than once', loc)
        ps.query.rtable.append(rte)
        rt = len(ps.query.rtable) - 1
        ps.ns.append(NSItem(rt, rte.alias, rte.colnames, rte))
        return rt

    def _from_item(self, item: dict, ps: PState) -> Any:
        k, v = _kind(item)
        if k == "RangeVar":
            rte = self.range_var(v, ps)
            return RangeRef(self._add_rte(ps, rte, v.get("alias"), v.get("location", -1)))
        if k == "RangeSubselect":
            sub_ps_parent = ps if v.get("lateral") else ps.parent
            if v.get("lateral"):
                q = self.select(v["subquery"]["SelectStmt"], ps)
            else:
                # a plain subquery cannot see its siblings, only enclosing query levels
                saved = ps.ns
                ps.ns = []
                try:
                    q = self.select(v["subquery"]["SelectStmt"], ps)
                finally:
                    ps.ns = saved
            del sub_ps_parent
            alias = v.get("alias") or {}
            rte = RTE("subquery", alias.get("aliasname", "unnamed_subquery"), [t.name for t in q.targets],
                      [t.expr.type for t in q.targets], [t.expr.typmod for t in q.targets], query=q,
                      lateral=bool(v.get("lateral")))
            return RangeRef(self._add_rte(ps, rte, alias or None))
        if k == "JoinExpr":
            return self._join(v, ps)
        if k == "RangeFunction":
            return RangeRef(self._range_function(v, ps))
        raise _err("0A000", f"FROM item {k} is not supported")

    def range_var(self, v: dict, ps: PState) -> RTE:
        schema = v.get("schemaname")
        name = v["relname"]
        loc = v.get("location", -1)
        if schema is None:
            found = ps.find_cte(name)
            if found is not None:
                cte, _up = found
                q = cte.query
                tl = q.returning if q.kind in ("insert", "update", "delete") else q.targets
                return RTE("cte", name, list(cte.colnames), [t.expr.type for t in tl],
                           [t.expr.typmod for t in tl], query=q, cte_name=name)
        virt = self.env.virtual_table(schema, name)
        if virt is not None:
            return RTE("virtual", name, list(virt.colnames), list(virt.coltypes), [-1] * len(virt.colnames),
                       virtual=virt)
        rel = self.env.lookup_relation(schema, name)
        if rel is None:
            full = f"{schema}.{name}" if schema else name
            raise _err("42P01", f'relation "{full}" does not exist', loc)
        if rel.kind == "v":
            return self._view_rte(rel, name, loc)
        live = [c for c in rel.columns]
        return RTE("relation", name, [c.name if not c.dropped else "" for c in live],
                   [c.type_oid for c in live], [c.typmod for c in live], rel=rel)

    def _view_rte(self, rel: Any, name: str, loc: int) -> RTE:
        """A view in FROM: its stored query, analysed as a subquery named like the view."""
        text = self.env.view_definition(rel)
        if text is None:
            raise _err("XX000", f'view "{name}" has no definition', loc)
        depth = getattr(self, "_view_depth", 0)
        if depth > 32:
            raise _err("42P17", f'infinite recursion detected in rules for relation "{name}"', loc)
        self._view_depth = depth + 1
        try:
            raw = parse(text)[0]
            q = self.select(raw.node, None)
        finally:
            self._view_depth = depth
        cols = [c for c in rel.columns if not c.dropped]
        return RTE("subquery", name, [c.name for c in cols], [t.expr.type for t in q.targets][:len(cols)],
                   [t.expr.typmod for t in q.targets][:len(cols)], query=q)

    def _range_function(self, v: dict, ps: PState) -> int:
        funcs = v["functions"]
        exprs = []
        ps.expr_kind = "FROM"
        for f in funcs:
            items = f["List"]["items"]
            fc = items[0].get("FuncCall")
            if fc is not None and names(fc["funcname"])[-1] == "unnest" and len(fc.get("args", []) or []) > 1 \
                    and len(funcs) == 1:
                # unnest(a, b, ...) in FROM is ROWS FROM (unnest(a), unnest(b), ...)
                for a in fc["args"]:
                    one = dict(fc)
                    one["args"] = [a]
                    exprs.append(self.expr({"FuncCall": one}, ps))
                continue
            exprs.append(self.expr(items[0], ps))
        alias = v.get("alias") or {}
        colnames, coltypes = [], []
        for e in exprs:
            fname = getattr(e, "name", "?")
            scols = F.SRF_COLS.get(getattr(e, "impl", None))
            if scols:
                for n, t in scols:
                    colnames.append(n)
                    coltypes.append(t)
            else:
                colnames.append(fname)
                coltypes.append(e.type)
        if v.get("ordinality"):
            colnames.append("ordinality")
            coltypes.append(T.INT8)
        aliasname = alias.get("aliasname", colnames[0] if len(exprs) == 1 else "rows")
        if alias.get("colnames") is None and len(colnames) == 1 + (1 if v.get("ordinality") else 0):
            colnames[0] = aliasname
        rte = RTE("function", aliasname, colnames, coltypes, [-1] * len(colnames), funcs=exprs,
                  lateral=True, ordinality=bool(v.get("ordinality")))
        return self._add_rte(ps, rte, alias or None)

    def _join(self, v: dict, ps: PState) -> Any:
        jt = {"JOIN_INNER": "inner", "JOIN_LEFT": "left", "JOIN_RIGHT": "right", "JOIN_FULL": "full"}[v["jointype"]]
        left = self._from_item(v["larg"], ps)
        nleft = len(ps.ns)
        right = self._from_item(v["rarg"], ps)
        quals = None
        using = names(v.get("usingClause"))
        if v.get("isNatural"):
            lcols = {c for it in ps.ns[:nleft] for c in it.colnames}
            using = [c for it in ps.ns[nleft:] for c in it.colnames if c in lcols]
        if using:
            conds = []
            for col in using:
                lhs = self._lookup_in(ps.ns[:nleft], col, -1)
                r = self._lookup_in(ps.ns[nleft:], col, -1)
                if lhs is None or r is None:
                    raise _err("42703", f'column "{col}" specified in USING clause does not exist in '
                                        f'{"left" if lhs is None else "right"} table')
                conds.append(self.op("=", lhs, r, -1))
                merged = lhs if jt in ("inner", "left") else (r if jt == "right" else
                                                            Coalesce((lhs, r), lhs.type))
                for it in ps.ns[nleft:]:
                    it.hidden.add(col)
                for it in ps.ns[:nleft]:
                    it.hidden.add(col)
                ps.ns.append(NSItem(-1, "", [col], None, True, False, {col: merged}))
            quals = conds[0] if len(conds) == 1 else BoolOp("and", tuple(conds))
        elif v.get("quals"):
            saved = ps.expr_kind
            ps.expr_kind = "JOIN/ON"
            quals = self.coerce_bool(self.expr(v["quals"], ps), "JOIN/ON")
            ps.expr_kind = saved
        if jt == "inner" and quals is None:
            jt = "cross"
        return JoinNode(jt, left, right, quals)

    # ------------------------------------------------------------------ target lists

    def _target_list(self, tl: list[dict], ps: PState) -> list[Target]:
        out: list[Target] = []
        for t in tl:
            rt = t["ResTarget"]
            val = rt["val"]
            k, v = _kind(val)
            if k == "ColumnRef" and "A_Star" in v["fields"][-1]:
                out.extend(self._expand_star(v, ps))
                continue
            e = self.expr(val, ps)
            e = self._resolve_unknown(e)
            name = rt.get("name") or self._colname(val, e)
            toid, attnum = 0, 0
            if isinstance(e, Var) and e.levelsup == 0:
                rte = ps.query.rtable[e.rt]
                if rte.kind == "relation":
                    toid, attnum = rte.relation.oid, e.col + 1
            out.append(Target(e, name, toid, attnum))
        return out

    def _resolve_unknown(self, e: Expr) -> Expr:
        if e.type == T.UNKNOWN:
            return self.coerce(e, T.TEXT, -1, "i", "")
        return e

    def _expand_star(self, v: dict, ps: PState) -> list[Target]:
        f = v["fields"]
        out = []
        if len(f) == 1:
            items = [it for it in ps.ns if it.cols_visible and it.rte is not None]
            if not items and not any(it.rte is not None for it in ps.ns):
                raise _err("42601", "SELECT * with no tables specified is not valid", v.get("location"))
            seen_using: list[Target] = []
            for it in ps.ns:
                if it.rte is None:
                    for col, e in it.using.items():
                        seen_using.append(Target(e, col))
            out.extend(seen_using)
        else:
            alias = f[-2]["String"]["sval"]
            items = [it for it in ps.ns if it.alias == alias and it.rte is not None]
            if not items:
                raise _err("42P01", f'missing FROM-clause entry for table "{alias}"', v.get("location"))
            items = items[:1]
        for it in items:
            for i, c in enumerate(it.colnames):
                if not c or (len(f) == 1 and c in it.hidden):
                    continue
                rte = it.rte
                assert rte is not None
                e = Var(it.rt, i, rte.coltypes[i], rte.coltypmods[i], 0, c)
                toid = rte.relation.oid if rte.kind == "relation" else 0
                out.append(Target(e, c, toid, i + 1 if toid else 0))
        return out

    def _colname(self, node: dict, e: Expr) -> str:
        k, v = _kind(node)
        if k == "ColumnRef":
            f = v["fields"][-1]
            return f["String"]["sval"] if "String" in f else "?column?"
        if k == "FuncCall":
            return names(v["funcname"])[-1]
        if k == "TypeCast":
            inner = self._colname(v["arg"], e)
            if inner != "?column?":
                return inner
            tn = names(v["typeName"]["names"])[-1]
            return {"int4": "int4", "bpchar": "bpchar"}.get(tn, tn)
        if k == "A_Indirection":
            ind = v["indirection"][-1]
            if "String" in ind:
                return ind["String"]["sval"]
            return self._colname(v["arg"], e)
        if k == "SQLValueFunction":
            return {"SVFOP_CURRENT_TIMESTAMP": "current_timestamp", "SVFOP_CURRENT_DATE": "current_date",
                    "SVFOP_CURRENT_USER": "current_user", "SVFOP_SESSION_USER": "session_user",
                    "SVFOP_USER": "user", "SVFOP_CURRENT_SCHEMA": "current_schema",
                    "SVFOP_CURRENT_CATALOG": "current_catalog", "SVFOP_LOCALTIMESTAMP": "localtimestamp",
                    "SVFOP_CURRENT_ROLE": "current_role", "SVFOP_CURRENT_TIME": "current_time",
                    "SVFOP_LOCALTIME": "localtime", "SVFOP_CURRENT_TIMESTAMP_N": "current_timestamp",
                    }.get(v["op"], "?column?")
        if k == "CaseExpr":
            return "case"
        if k == "CoalesceExpr":
            return "coalesce"
        if k == "MinMaxExpr":
            return "greatest" if v.get("op") == "IS_GREATEST" else "least"
        if k == "A_ArrayExpr":
            return "array"
        if k == "SubLink":
            st = v["subLinkType"]
            if st == "EXISTS_SUBLINK":
                return "exists"
            if st == "ARRAY_SUBLINK":
                return "array"
            if st == "EXPR_SUBLINK":
                sel = v["subselect"]["SelectStmt"]
                tl = sel.get("targetList") or []
                if tl:
                    rt = tl[0]["ResTarget"]
                    return rt.get("name") or self._colname(rt["val"], e)
        if k == "RowExpr":
            return "row"
        if k == "CollateClause":
            return self._colname(v["arg"], e)
        if k == "A_Const" and "isnull" not in v and "boolval" in v:
            return "bool"
        return "?column?"

    def _group_or_order_expr(self, node: dict, ps: PState, targets: list[Target], what: str) -> Expr:
        k, v = _kind(node)
        if k == "A_Const" and "ival" in v:
            i = v["ival"].get("ival", 0)
            if not 1 <= i <= len(targets):
                raise _err("42P10", f"{what} position {i} is not in select list", v.get("location"))
            return targets[i - 1].expr
        if k == "ColumnRef" and what in ("GROUP BY",):
            f = names(v["fields"])
            if len(f) == 1 and self._lookup_in(ps.ns, f[0], -1, quiet=True) is None:
                for t in targets:
                    if t.name == f[0]:
                        return t.expr
        if k == "ColumnRef" and what in ("ORDER BY", "DISTINCT ON"):
            f = names(v["fields"])
            if len(f) == 1:
                matches = [t for t in targets if t.name == f[0]]
                if matches:
                    return matches[0].expr
        return self._resolve_unknown(self.expr(node, ps))

    def _grouping_sets(self, clause: list, ps: PState, q: QueryTree) -> None:
        """GROUP BY with GROUPING SETS / ROLLUP / CUBE: q.group gets every distinct grouping
        expression, q.grouping_sets the sets (as indexes), in PostgreSQL's order."""
        def index_of(node: dict) -> int:
            e = self._group_or_order_expr(node, ps, q.targets, "GROUP BY")
            for i, g in enumerate(q.group):
                if g == e:
                    return i
            q.group.append(e)
            return len(q.group) - 1

        def item_sets(node: dict) -> list[list[int]]:
            k, v = _kind(node)
            if k != "GroupingSet":
                return [[index_of(node)]]
            kind = v["kind"]
            content = v.get("content", []) or []
            if kind == "GROUPING_SET_EMPTY":
                return [[]]
            if kind == "GROUPING_SET_SIMPLE":
                return [[i for c in content for s in item_sets(c) for i in s]]
            elems = [[i for s in item_sets(c) for i in s] for c in content]
            if kind == "GROUPING_SET_ROLLUP":
                return [sum(elems[:n], []) for n in range(len(elems), -1, -1)]
            if kind == "GROUPING_SET_CUBE":
                out = []
                m = len(elems)
                for mask in range((1 << m) - 1, -1, -1):
                    out.append(sum((elems[j] for j in range(m) if mask & (1 << (m - 1 - j))), []))
                return out
            return [s for c in content for s in item_sets(c)]
        sets: list[list[int]] = [[]]
        for g in clause:
            sets = [a + b for a in sets for b in item_sets(g)]
        q.grouping_sets = sets

    def _sort_key(self, sb: dict, ps: PState, targets: list[Target]) -> SortKey:
        e = self._group_or_order_expr(sb["node"], ps, targets, "ORDER BY")
        desc = sb.get("sortby_dir") == "SORTBY_DESC"
        if sb.get("sortby_dir") == "SORTBY_USING":
            desc = names(sb.get("useOp"))[-1] == ">"
        return SortKey(e, desc, _nulls(sb))

    # ------------------------------------------------------------------ INSERT / UPDATE / DELETE

    def _target_rel(self, rv: dict, ps: PState) -> tuple[SqlRelation, int]:
        rte = self.range_var(rv, ps)
        if rte.kind != "relation":
            raise _err("42809", f'cannot modify "{rte.alias}"' if rte.kind != "virtual" else
                       f'cannot change relation "{rte.alias}"', rv.get("location"))
        rel = rte.relation
        if rel.kind != "r":
            raise _err("42809", f'cannot change {"sequence" if rel.kind == "S" else "relation"} '
                                f'"{rte.alias}"')
        rt = self._add_rte(ps, rte, rv.get("alias"))
        return rel, rt

    def insert(self, node: dict, parent: PState | None) -> QueryTree:
        q = QueryTree("insert")
        ps = PState(parent, q)
        self._with(node, ps)
        rel, rt = self._target_rel(node["relation"], ps)
        q.target, q.target_rt = rel, rt
        # the target is not visible to the source query
        ps.ns[-1].cols_visible = False
        ps.ns[-1].rel_visible = False
        cols = node.get("cols")
        if cols:
            idxs = []
            for c in cols:
                rtc = c["ResTarget"]
                i = rel.column_index(rtc["name"])
                if i < 0:
                    raise _err("42703", f'column "{rtc["name"]}" of relation "{rel.name}" does not exist',
                               rtc.get("location"))
                if i in idxs:
                    raise _err("42701", f'column "{rtc["name"]}" specified more than once', rtc.get("location"))
                idxs.append(i)
        else:
            idxs = [i for i, c in enumerate(rel.columns) if not c.dropped]
        sel = node.get("selectStmt")
        ctypes = [(rel.columns[i].type_oid, rel.columns[i].typmod, rel.columns[i].name) for i in idxs]
        if sel is None:
            q.insert_cols = []
            q.insert_rows = [[]]
        else:
            s = sel["SelectStmt"]
            if s.get("valuesLists") and not s.get("sortClause") and not s.get("limitCount") and \
                    not s.get("withClause"):
                rows = []
                ps.expr_kind = "VALUES"
                for lst in s["valuesLists"]:
                    items = lst["List"]["items"]
                    if len(items) > len(idxs):
                        raise _err("42601", "INSERT has more expressions than target columns",
                                   _loc(items[len(idxs)]))
                    row: list[Expr | None] = []   # None: DEFAULT
                    for (t, tm, cname), item in zip(ctypes, items):
                        if "SetToDefault" in item:
                            row.append(None)
                            continue
                        e = self.expr(item, ps)
                        row.append(self.coerce_assign(e, t, tm, cname, _loc(item)))
                    if len(items) < len(idxs) and cols:
                        raise _err("42601", "INSERT has more target columns than expressions",
                                   _loc(cols[len(items)]) if cols else None)
                    rows.append(row)
                q.insert_rows = rows
                q.insert_cols = idxs[:len(rows[0])] if rows else idxs
            else:
                src = self.select(s, ps)
                if len(src.targets) > len(idxs):
                    raise _err("42601", "INSERT has more expressions than target columns")
                if len(src.targets) < len(idxs) and cols:
                    raise _err("42601", "INSERT has more target columns than expressions")
                idxs = idxs[:len(src.targets)]
                for i, (t, tm, cname) in enumerate(ctypes[:len(idxs)]):
                    tgt = src.targets[i]
                    src.targets[i] = Target(self.coerce_assign(tgt.expr, t, tm, cname, -1), tgt.name)
                q.source = src
                q.insert_cols = idxs
        oc = node.get("onConflictClause")
        if oc:
            q.on_conflict = self._on_conflict(oc, ps, rel, rt)
        if node.get("returningList") or node.get("returningClause"):
            ps.ns[-1].cols_visible = True
            ps.ns[-1].rel_visible = True
            q.returning = self._returning(node, ps)
        return q

    def _on_conflict(self, oc: dict, ps: PState, rel: SqlRelation, rt: int) -> Any:
        action = oc.get("action")
        infer = oc.get("infer") or {}
        cols = []
        for e in infer.get("indexElems", []) or []:
            n = e["IndexElem"].get("name")
            i = rel.column_index(n)
            if i < 0:
                raise _err("42703", f'column "{n}" does not exist')
            cols.append(i)
        if infer.get("conname"):
            for c in rel.constraints:
                if c.name == infer["conname"]:
                    cols = list(c.columns)
        if action == "ONCONFLICT_NOTHING":
            return ("nothing", tuple(cols), [], None)
        # DO UPDATE: target columns visible by table name, EXCLUDED holds the proposed row
        ps.ns[-1].cols_visible = False
        ps.ns[-1].rel_visible = True
        excl = RTE("excluded", "excluded", [c.name for c in rel.columns], [c.type_oid for c in rel.columns],
                   [c.typmod for c in rel.columns], rel=rel)
        ps.query.rtable.append(excl)
        ert = len(ps.query.rtable) - 1
        ps.ns.append(NSItem(ert, "excluded", excl.colnames, excl, cols_visible=False))
        sets = self._set_clause(oc.get("targetList", []), ps, rel)
        where = None
        if oc.get("whereClause"):
            where = self.coerce_bool(self.expr(oc["whereClause"], ps), "WHERE")
        ps.ns.pop()
        return ("update", tuple(cols), sets, where, ert)

    def _set_clause(self, tl: list[dict], ps: PState, rel: SqlRelation) -> list[tuple[int, Expr | None]]:
        out: list[tuple[int, Expr | None]] = []
        ps.expr_kind = "UPDATE"
        pending_multi: dict[int, Any] = {}
        for t in tl:
            rt = t["ResTarget"]
            name = rt["name"]
            i = rel.column_index(name)
            if i < 0:
                raise _err("42703", f'column "{name}" of relation "{rel.name}" does not exist', rt.get("location"))
            col = rel.columns[i]
            val = rt["val"]
            if "SetToDefault" in val:
                out.append((i, None))
                continue
            if "MultiAssignRef" in val:
                mar = val["MultiAssignRef"]
                src = mar["source"]
                k, sv = _kind(src)
                if k == "RowExpr":
                    e = self.expr(sv["args"][mar["colno"] - 1], ps)
                else:
                    raise _err("0A000", "multiple-column UPDATE from a subquery is not supported")
                out.append((i, self.coerce_assign(e, col.type_oid, col.typmod, col.name, rt.get("location"))))
                continue
            if rt.get("indirection"):
                raise _err("0A000", "subscripted assignment is not supported")
            e = self.expr(val, ps)
            out.append((i, self.coerce_assign(e, col.type_oid, col.typmod, col.name, rt.get("location"))))
        del pending_multi
        return out

    def update(self, node: dict, parent: PState | None) -> QueryTree:
        q = QueryTree("update")
        ps = PState(parent, q)
        self._with(node, ps)
        rel, rt = self._target_rel(node["relation"], ps)
        q.target, q.target_rt = rel, rt
        for item in node.get("fromClause", []) or []:
            q.from_.append(self._from_item(item, ps))
        q.set_cols = self._set_clause(node["targetList"], ps, rel)
        if node.get("whereClause"):
            ps.expr_kind = "WHERE"
            q.where = self.coerce_bool(self.expr(node["whereClause"], ps), "WHERE")
        if node.get("returningList") or node.get("returningClause"):
            q.returning = self._returning(node, ps)
        return q

    def delete(self, node: dict, parent: PState | None) -> QueryTree:
        q = QueryTree("delete")
        ps = PState(parent, q)
        self._with(node, ps)
        rel, rt = self._target_rel(node["relation"], ps)
        q.target, q.target_rt = rel, rt
        for item in node.get("usingClause", []) or []:
            q.from_.append(self._from_item(item, ps))
        if node.get("whereClause"):
            ps.expr_kind = "WHERE"
            q.where = self.coerce_bool(self.expr(node["whereClause"], ps), "WHERE")
        if node.get("returningList") or node.get("returningClause"):
            q.returning = self._returning(node, ps)
        return q

    def _returning(self, node: dict, ps: PState) -> list[Target]:
        rl = node.get("returningList")
        if rl is None:
            rl = (node.get("returningClause") or {}).get("exprs", [])
        ps.expr_kind = "RETURNING"
        return self._target_list(rl, ps)

    # ------------------------------------------------------------------ expressions

    def coerce_bool(self, e: Expr, what: str) -> Expr:
        if e.type == T.BOOL:
            return e
        if e.type == T.UNKNOWN:
            return self.coerce(e, T.BOOL, -1, "i", what)
        raise _err("42804", f"argument of {what} must be type boolean, not type {format_type(e.type)}")

    def expr(self, node: dict, ps: PState) -> Expr:
        k, v = _kind(node)
        m = getattr(self, "_e_" + k, None)
        if m is None:
            raise _err("0A000", f"expression {k} is not supported", v.get("location") if isinstance(v, dict) else None)
        return m(v, ps)

    def _e_A_Const(self, v: dict, ps: PState) -> Expr:
        loc = v.get("location", -1)
        if v.get("isnull"):
            return Const(None, T.UNKNOWN, -1, loc)
        if "ival" in v:
            return Const(v["ival"].get("ival", 0), T.INT4, -1, loc)
        if "fval" in v:
            s = v["fval"]["fval"]
            if "." not in s and "e" not in s.lower():
                iv = int(s)
                if -2**63 <= iv < 2**63:
                    return Const(iv, T.INT8, -1, loc)
            return Const(Decimal(s), T.NUMERIC, -1, loc)
        if "sval" in v:
            return Const(v["sval"].get("sval", ""), T.UNKNOWN, -1, loc)
        if "boolval" in v:
            return Const(bool(v["boolval"].get("boolval", False)), T.BOOL, -1, loc)
        if "bsval" in v:
            return Const(v["bsval"].get("bsval", ""), T.TEXT, -1, loc)
        return Const(None, T.UNKNOWN, -1, loc)

    def _e_ParamRef(self, v: dict, ps: PState) -> Expr:
        n = v.get("number", 0)
        if n < 1 or n > 65535:
            raise _err("42P02", f"there is no parameter ${n}", v.get("location"))
        return Param(n - 1, self.params.get(n - 1))

    def _e_ColumnRef(self, v: dict, ps: PState) -> Expr:
        fields = v["fields"]
        loc = v.get("location", -1)
        if "A_Star" in fields[-1]:
            if len(fields) >= 2:
                row = self._whole_row(ps, fields[-2]["String"]["sval"])
                if row is not None:
                    return row
            raise _err("42601", "row expansion via \"*\" is not supported here", loc)
        f = [x["String"]["sval"] for x in fields]
        if len(f) == 1:
            e = self._lookup_up(ps, f[0], loc)
            if e is None:
                e = self._whole_row(ps, f[0])
            if e is None:
                raise _err("42703", f'column "{f[0]}" does not exist', loc)
            return e
        col = f[-1]
        alias = f[-2]
        schema = f[-3] if len(f) >= 3 else None
        for it, up in self._relations_named(ps, alias):
            rte = it.rte
            assert rte is not None
            if schema is not None and rte.kind == "relation" and rte.relation.schema != schema:
                continue
            try:
                i = it.colnames.index(col)
            except ValueError:
                if col == "tableoid":
                    oid = rte.relation.oid if rte.kind == "relation" else getattr(rte.virtual, "oid", 0)
                    return Const(oid, T.OID)
                raise _err("42703", f"column {alias}.{col} does not exist", loc) from None
            if up:
                self._mark_correlated(ps, up, it.rt)
            return Var(it.rt, i, rte.coltypes[i], rte.coltypmods[i], up, col)
        # whole-row reference to a composite column is not supported; report as missing table
        raise _err("42P01", f'missing FROM-clause entry for table "{alias}"', loc)

    def _whole_row(self, ps: PState, alias: str) -> Expr | None:
        """``t`` or ``t.*`` as a value: a row of t's columns (with their names)."""
        for it, up in self._relations_named(ps, alias):
            rte = it.rte
            assert rte is not None
            if up:
                self._mark_correlated(ps, up, it.rt)
            cols = [(i, n) for i, n in enumerate(rte.colnames) if n]
            return RowExpr(tuple(Var(it.rt, i, rte.coltypes[i], rte.coltypmods[i], up, n) for i, n in cols),
                           names=tuple(n for _i, n in cols))
        return None

    @staticmethod
    def _relations_named(ps: PState, alias: str) -> Iterator[tuple[NSItem, int]]:
        """The visible range-table entries called ``alias``, innermost query level first, each
        with how many levels up it is."""
        p: PState | None = ps
        up = 0
        while p is not None:
            for it in p.ns:
                if it.rte is not None and it.rel_visible and it.alias == alias:
                    yield it, up
            p = p.parent
            up += 1

    def _mark_correlated(self, ps: PState, up: int, rt: int) -> None:
        p: PState | None = ps
        for i in range(up):
            assert p is not None, "a reference cannot reach above the outermost query"
            p.query.correlated = True
            if i == up - 1:
                p.query.outer_rts.add(rt)
            p = p.parent

    def _lookup_in(self, items: list[NSItem], col: str, loc: int, quiet: bool = False) -> Expr | None:
        found: Expr | None = None
        for it in items:
            if not it.cols_visible:
                continue
            if it.rte is None:
                if col in it.using:
                    return it.using[col]
                continue
            if col in it.hidden:
                continue
            try:
                i = it.colnames.index(col)
            except ValueError:
                continue
            if found is not None:
                if quiet:
                    return found
                raise _err("42702", f'column reference "{col}" is ambiguous', loc)
            rte = it.rte
            found = Var(it.rt, i, rte.coltypes[i], rte.coltypmods[i], 0, col)
        return found

    def _lookup_up(self, ps: PState, col: str, loc: int) -> Expr | None:
        p: PState | None = ps
        up = 0
        while p is not None:
            e = self._lookup_in(p.ns, col, loc)
            if e is not None:
                if up:
                    if isinstance(e, Var):
                        self._mark_correlated(ps, up, e.rt)
                        return Var(e.rt, e.col, e.type, e.typmod, up, e.name)
                    raise _err("0A000", "outer reference to a USING column is not supported", loc)
                return e
            p = p.parent
            up += 1
        return None

    def _e_TypeCast(self, v: dict, ps: PState) -> Expr:
        arg = v["arg"]
        oid, typmod, _name = resolve_type(v["typeName"], self.env.lookup_type)
        k, av = _kind(arg)
        if k == "A_ArrayExpr" and TYPES.get(oid) is not None and TYPES[oid].category == "A":
            e = self._array_expr(av, ps, T.element_of(oid))
        else:
            e = self.expr(arg, ps)
        return self.coerce(e, oid, typmod, "e", "", v.get("location", -1))

    def _e_CollateClause(self, v: dict, ps: PState) -> Expr:
        return self.expr(v["arg"], ps)

    def _e_A_Expr(self, v: dict, ps: PState) -> Expr:
        kind = v["kind"]
        name = names(v.get("name"))[-1] if v.get("name") else ""
        loc = v.get("location", -1)
        lexpr: Any = v.get("lexpr")      # a node (dict), a list of nodes for IN / BETWEEN, or None
        rexpr: Any = v.get("rexpr")      # (prefix operators have no left operand)
        if kind == "AEXPR_OP":
            if lexpr is None:
                return self.op(name, None, self.expr(rexpr, ps), loc)
            return self.op(name, self.expr(lexpr, ps), self.expr(rexpr, ps), loc)
        if kind in ("AEXPR_LIKE", "AEXPR_ILIKE"):
            return self.op(name, self.expr(lexpr, ps), self.expr(rexpr, ps), loc)
        if kind == "AEXPR_SIMILAR":
            lhs = self.expr(lexpr, ps)
            if "FuncCall" in rexpr and names(rexpr["FuncCall"]["funcname"])[-1] == "similar_to_escape":
                rexpr = rexpr["FuncCall"]["args"][0]
            r = self.expr(rexpr, ps)
            pat = self.coerce(r, T.TEXT, -1, "i", "")
            conv = Func("similar_to_escape", _similar_to_regex, (pat,), T.TEXT)
            e = self.op("~", lhs, conv, loc)
            return BoolOp("not", (e,)) if name == "!~" else e
        if kind == "AEXPR_IN":
            lhs = self.expr(lexpr, ps)
            items = [self.expr(x, ps) for x in rexpr["List"]["items"]] if "List" in rexpr else \
                [self.expr(x, ps) for x in rexpr]
            return self._in_list(lhs, items, name == "<>", loc)
        if kind in ("AEXPR_OP_ANY", "AEXPR_OP_ALL"):
            lhs = self.expr(lexpr, ps)
            r = self.expr(rexpr, ps)
            return self._scalar_array_op(name, lhs, r, kind == "AEXPR_OP_ANY", loc)
        if kind in ("AEXPR_DISTINCT", "AEXPR_NOT_DISTINCT"):
            lhs = self.expr(lexpr, ps)
            r = self.expr(rexpr, ps)
            eq = self.op("=", lhs, r, loc)
            assert isinstance(eq, Func)
            impl = eq.impl
            distinct = kind == "AEXPR_DISTINCT"

            def isdistinct(a: Any, b: Any) -> bool:
                if a is None or b is None:
                    return (a is None) != (b is None)
                return not impl(a, b)
            f = Func("is distinct from", isdistinct, eq.args, T.BOOL, strict=False)
            return f if distinct else BoolOp("not", (f,))
        if kind == "AEXPR_NULLIF":
            lhs = self.expr(lexpr, ps)
            r = self.expr(rexpr, ps)
            eq = self.op("=", lhs, r, loc)
            if not isinstance(eq, Func):
                # two ROW()s compare column by column (a BoolOp): NULLIF compares the rows whole
                return Coalesce((lhs, r), lhs.type, kind="nullif")
            return Coalesce((eq.args[0], eq.args[1]), eq.args[0].type, kind="nullif")
        if kind in ("AEXPR_BETWEEN", "AEXPR_NOT_BETWEEN", "AEXPR_BETWEEN_SYM", "AEXPR_NOT_BETWEEN_SYM"):
            lhs = self.expr(lexpr, ps)
            lo, hi = [self.expr(x, ps) for x in rexpr["List"]["items"]] if "List" in rexpr else \
                [self.expr(x, ps) for x in rexpr]
            a = self.op(">=", lhs, lo, loc)
            b = self.op("<=", lhs, hi, loc)
            between: Expr = BoolOp("and", (a, b))
            if kind.endswith("_SYM"):
                a2 = self.op(">=", lhs, hi, loc)
                b2 = self.op("<=", lhs, lo, loc)
                between = BoolOp("or", (between, BoolOp("and", (a2, b2))))
            if "NOT" in kind:
                between = BoolOp("not", (between,))
            return between
        raise _err("0A000", f"operator kind {kind} is not supported", loc)

    def _in_list(self, lhs: Expr, items: list[Expr], negate: bool, loc: int) -> Expr:
        if isinstance(lhs, RowExpr):
            ors = [self._row_compare("=", lhs, it, loc) for it in items]
            e: Expr = ors[0] if len(ors) == 1 else BoolOp("or", tuple(ors))
            return BoolOp("not", (e,)) if negate else e
        if all(is_constant(i) for i in items):
            t = common_type([lhs.type] + [i.type for i in items], "IN")
            if t != lhs.type and not can_coerce(lhs.type, t, "i"):
                t = lhs.type
            try:
                citems = tuple(self.coerce(i, t, -1, "i", "IN") for i in items)
                lc = self.coerce(lhs, t, -1, "i", "IN")
            except PgError:
                citems = None
            if citems is not None:
                eq = self.op("=", lc, citems[0], loc)
                assert isinstance(eq, Func)      # lhs is no ROW() and the items are constants
                arr = ArrayExpr(citems, T.array_of(t) or T.TEXT_ARRAY)
                e = ScalarArrayOp(eq.impl, eq.args[0], arr, True, opname="=")
                return BoolOp("not", (e,)) if negate else e
        ors = [self.op("=", lhs, i, loc) for i in items]
        e = ors[0] if len(ors) == 1 else BoolOp("or", tuple(ors))
        return BoolOp("not", (e,)) if negate else e

    def _scalar_array_op(self, name: str, lhs: Expr, r: Expr, use_or: bool, loc: int) -> Expr:
        if isinstance(r, SubLink):
            return r
        rt = r.type
        if rt == T.UNKNOWN:
            et = lhs.type if lhs.type != T.UNKNOWN else T.TEXT
            r = self.coerce(r, T.array_of(et), -1, "i", "")
            rt = r.type
        elem = T.element_of(rt)
        if not elem:
            raise _err("42809", "op ANY/ALL (array) requires array on right side", loc)
        probe = Const(None, elem)
        o = self.op(name, lhs, probe, loc)
        if not isinstance(o, Func) or o.type != T.BOOL:
            raise _err("42809", "op ANY/ALL (array) requires operator to yield boolean", loc)
        left = o.args[0]
        et = o.args[1].type
        if et != elem:
            r = self.coerce(r, T.array_of(et), -1, "i", "")
        impl = o.impl
        return ScalarArrayOp(impl, left, r, use_or, opname=name)

    def _row_compare(self, name: str, lhs: RowExpr, r: Expr, loc: int) -> Expr:
        if not isinstance(r, RowExpr) or len(r.args) != len(lhs.args):
            raise _err("42601", "unequal number of entries in row expressions", loc)
        parts = [self.op(name if name in ("=", "<>") else "=", a, b, loc) for a, b in zip(lhs.args, r.args)]
        if name == "=":
            return BoolOp("and", tuple(parts))
        if name == "<>":
            return BoolOp("or", tuple(self.op("<>", a, b, loc) for a, b in zip(lhs.args, r.args)))
        # lexicographic < > <= >=
        strict = name[0]
        ors = []
        for i in range(len(lhs.args)):
            eqs = [self.op("=", lhs.args[j], r.args[j], loc) for j in range(i)]
            last = self.op(strict if i < len(lhs.args) - 1 else name, lhs.args[i], r.args[i], loc)
            ors.append(BoolOp("and", tuple(eqs + [last])) if eqs else last)
        return BoolOp("or", tuple(ors))

    def op(self, name: str, lhs: Expr | None, r: Expr, loc: int) -> Expr:
        if lhs is None:
            if name == "-" and isinstance(r, Const) and r.value is not None and r.type in (T.INT4, T.INT8,
                                                                                            T.NUMERIC):
                v = -r.value
                t = r.type
                if t == T.INT8 and -2**31 <= v < 2**31 and False:
                    t = T.INT4
                return Const(v, t, -1, r.location)
            cands = [c for c in F.OPS.get(name, []) if len(c.args) == 1]
            c, argt, ret = F.resolve(cands, [r.type], "operator", name)
            a = self.coerce(r, argt[0], -1, "i", "")
            return Func(name, c.impl, (a,), ret, strict=c.strict, env=c.env)
        if isinstance(lhs, RowExpr) and isinstance(r, RowExpr):
            return self._row_compare(name, lhs, r, loc)
        if isinstance(r, SubLink) and r.kind in ("any", "all"):
            return r
        if name in _ENUM_CMP and (self.env.is_enum(lhs.type) or self.env.is_enum(r.type)):
            et = lhs.type if self.env.is_enum(lhs.type) else r.type
            if lhs.type in (et, T.UNKNOWN) and r.type in (et, T.UNKNOWN):
                a = self.coerce(lhs, et, -1, "i", "")
                b = self.coerce(r, et, -1, "i", "")
                return Func(name, comparator(name, et), (a, b), T.BOOL)
        cands = [c for c in F.OPS.get(name, []) if len(c.args) == 2]
        if not cands:
            raise F._no_match("operator", name, [lhs.type, r.type])
        try:
            c, argt, ret = F.resolve(cands, [lhs.type, r.type], "operator", name)
        except PgError as e:
            e.position = loc + 1 if loc >= 0 else None
            raise
        a = self.coerce(lhs, argt[0], -1, "i", "")
        b = self.coerce(r, argt[1], -1, "i", "")
        return Func(name, c.impl, (a, b), ret, strict=c.strict, env=c.env)

    def _e_BoolExpr(self, v: dict, ps: PState) -> Expr:
        op = {"AND_EXPR": "and", "OR_EXPR": "or", "NOT_EXPR": "not"}[v["boolop"]]
        what = {"and": "AND", "or": "OR", "not": "NOT"}[op]
        args = tuple(self.coerce_bool(self.expr(a, ps), what) for a in v["args"])
        if op != "not":
            flat: list[Expr] = []
            for a in args:
                if isinstance(a, BoolOp) and a.op == op:
                    flat.extend(a.args)
                else:
                    flat.append(a)
            args = tuple(flat)
        return BoolOp(op, args)

    def _e_NullTest(self, v: dict, ps: PState) -> Expr:
        arg = self.expr(v["arg"], ps)
        if arg.type == T.UNKNOWN:
            arg = self.coerce(arg, T.TEXT, -1, "i", "")
        return NullTest(arg, v.get("nulltesttype") == "IS_NULL")

    def _e_BooleanTest(self, v: dict, ps: PState) -> Expr:
        return BoolTest(self.coerce_bool(self.expr(v["arg"], ps), "IS TRUE"), v["booltesttype"])

    def _e_CaseExpr(self, v: dict, ps: PState) -> Expr:
        arg = self.expr(v["arg"], ps) if v.get("arg") else None
        conds, results = [], []
        for w in v["args"]:
            cw = w["CaseWhen"]
            ce = self.expr(cw["expr"], ps)
            if arg is not None:
                ce = self.op("=", arg, ce, cw.get("location", -1))
            else:
                ce = self.coerce_bool(ce, "CASE/WHEN")
            conds.append(ce)
            results.append(self.expr(cw["result"], ps))
        dflt = self.expr(v["defresult"], ps) if v.get("defresult") else None
        types = [r.type for r in results] + ([dflt.type] if dflt is not None else [])
        t = common_type(types, "CASE")
        results = [self.coerce(r, t, -1, "i", "CASE") for r in results]
        if dflt is not None:
            dflt = self.coerce(dflt, t, -1, "i", "CASE")
        return Case(None, tuple(zip(conds, results)), dflt, t)

    def _e_CoalesceExpr(self, v: dict, ps: PState) -> Expr:
        args = [self.expr(a, ps) for a in v["args"]]
        t = common_type([a.type for a in args], "COALESCE")
        return Coalesce(tuple(self.coerce(a, t, -1, "i", "COALESCE") for a in args), t)

    def _e_MinMaxExpr(self, v: dict, ps: PState) -> Expr:
        args = [self.expr(a, ps) for a in v["args"]]
        kind = "greatest" if v["op"] == "IS_GREATEST" else "least"
        t = common_type([a.type for a in args], kind.upper())
        return Coalesce(tuple(self.coerce(a, t, -1, "i", kind) for a in args), t, kind=kind)

    def _e_NullIfExpr(self, v: dict, ps: PState) -> Expr:
        raise _err("0A000", "NULLIF node")

    def _e_RowExpr(self, v: dict, ps: PState) -> Expr:
        return RowExpr(tuple(self._resolve_unknown(self.expr(a, ps)) for a in v.get("args", [])))

    def _array_expr(self, v: dict, ps: PState, elem_hint: int = 0) -> Expr:
        elems = []
        for el in v.get("elements", []):
            k, ev = _kind(el)
            if k == "A_ArrayExpr":
                elems.append(self._array_expr(ev, ps, elem_hint))
            else:
                elems.append(self.expr(el, ps))
        if not elems:
            if elem_hint:
                return ArrayExpr((), T.array_of(elem_hint))
            raise _err("42P18", "cannot determine type of empty array", v.get("location"),
                       hint="Explicitly cast to the desired type, for example ARRAY[]::integer[].")
        sub_arrays = all(isinstance(e, ArrayExpr) for e in elems)
        if sub_arrays:
            et = common_type([T.element_of(e.type) for e in elems], "ARRAY")
            return ArrayExpr(tuple(self.coerce(e, T.array_of(et), -1, "i", "ARRAY") for e in elems),
                             T.array_of(et))
        types = [e.type for e in elems]
        if elem_hint and all(t == T.UNKNOWN for t in types):
            et = elem_hint
        else:
            et = common_type(types, "ARRAY")
        arr_t = T.array_of(et)
        if not arr_t:
            raise _err("42704", f"could not find array type for data type {format_type(et)}")
        return ArrayExpr(tuple(self.coerce(e, et, -1, "i", "ARRAY") for e in elems), arr_t)

    def _e_A_ArrayExpr(self, v: dict, ps: PState) -> Expr:
        return self._array_expr(v, ps)

    def _e_A_Indirection(self, v: dict, ps: PState) -> Expr:
        e = self.expr(v["arg"], ps)
        for ind in v["indirection"]:
            k, iv = _kind(ind)
            if k == "A_Indices":
                elem = T.element_of(e.type)
                if not elem:
                    raise _err("42804", f"cannot subscript type {format_type(e.type)} because it does not "
                                        f"support subscripting")
                if iv.get("is_slice"):
                    lo = self.coerce(self.expr(iv["lidx"], ps), T.INT4, -1, "a", "") if iv.get("lidx") else \
                        Const(1, T.INT4)
                    hi = self.coerce(self.expr(iv["uidx"], ps), T.INT4, -1, "a", "") if iv.get("uidx") else \
                        Const(2**31 - 1, T.INT4)
                    e = Func("slice", lambda a, lhs, h: a[max(lhs - 1, 0):max(h, 0)], (e, lo, hi), e.type)
                else:
                    idx = self.coerce(self.expr(iv["uidx"], ps), T.INT4, -1, "a", "")
                    e = Func("subscript", _subscript, (e, idx), elem)
            else:
                raise _err("0A000", "field selection is not supported")
        return e

    def _e_SQLValueFunction(self, v: dict, ps: PState) -> Expr:
        op = v["op"]
        env = self.env
        if op in ("SVFOP_CURRENT_TIMESTAMP", "SVFOP_CURRENT_TIMESTAMP_N"):
            return Func("now", F._now, (), T.TIMESTAMPTZ, env=True)
        if op == "SVFOP_CURRENT_DATE":
            return Func("current_date", lambda e: e.xact_timestamp().astimezone(e.tz).date(), (), T.DATE, env=True)
        if op in ("SVFOP_LOCALTIMESTAMP", "SVFOP_LOCALTIMESTAMP_N"):
            return Func("localtimestamp", lambda e: e.xact_timestamp().astimezone(e.tz).replace(tzinfo=None), (),
                        T.TIMESTAMP, env=True)
        if op in ("SVFOP_CURRENT_TIME", "SVFOP_CURRENT_TIME_N", "SVFOP_LOCALTIME", "SVFOP_LOCALTIME_N"):
            return Func("localtime", lambda e: e.xact_timestamp().astimezone(e.tz).time(), (), T.TIME, env=True)
        if op in ("SVFOP_CURRENT_USER", "SVFOP_USER", "SVFOP_CURRENT_ROLE"):
            return Func("current_user", lambda e: e.user, (), T.NAME, env=True)
        if op == "SVFOP_SESSION_USER":
            return Func("session_user", lambda e: e.session_user, (), T.NAME, env=True)
        if op == "SVFOP_CURRENT_SCHEMA":
            return Func("current_schema", lambda e: e.current_schema(), (), T.NAME, env=True)
        if op == "SVFOP_CURRENT_CATALOG":
            return Func("current_catalog", lambda e: e.database, (), T.NAME, env=True)
        del env
        raise _err("0A000", f"{op} is not supported")

    def _e_SubLink(self, v: dict, ps: PState) -> Expr:
        st = v["subLinkType"]
        sub = v["subselect"]
        k, sv = _kind(sub)
        saved_kind = ps.expr_kind
        q = self.analyze(k, sv, ps)
        ps.expr_kind = saved_kind
        loc = v.get("location", -1)
        ntargets = len(q.targets)
        if st == "EXISTS_SUBLINK":
            return SubLink("exists", q, T.BOOL, correlated=q.correlated)
        if st == "EXPR_SUBLINK":
            if ntargets != 1:
                raise _err("42601", "subquery must return only one column", loc)
            t = q.targets[0].expr
            return SubLink("expr", q, t.type, t.typmod, correlated=q.correlated)
        if st == "ARRAY_SUBLINK":
            if ntargets != 1:
                raise _err("42601", "subquery must return only one column", loc)
            et = q.targets[0].expr.type
            arr = T.array_of(et) or (et if T.element_of(et) else 0)
            if not arr:
                raise _err("42704", f"could not find array type for data type {format_type(et)}", loc)
            return SubLink("array", q, arr, correlated=q.correlated)
        if st in ("ANY_SUBLINK", "ALL_SUBLINK") and ntargets > 1 and _kind(v["testexpr"])[0] == "RowExpr":
            left = self.expr(v["testexpr"], ps)
            if not isinstance(left, RowExpr) or len(left.args) != ntargets:
                raise _err("42601", "subquery has too many columns" if ntargets > len(getattr(left, "args", ()))
                           else "subquery has too few columns", loc)
            opname = names(v.get("operName"))[-1] if v.get("operName") else "="
            largs, tests = [], []
            for a, tgt in zip(left.args, q.targets):
                col = tgt.expr
                o = self.op(opname, a, Const(None, col.type), loc)
                assert isinstance(o, Func)       # the right operand is a constant, so no ROW() comparison
                ct = o.args[1].type
                conv = cast_fn(col.type, ct, self.env) if ct != col.type else None
                largs.append(o.args[0])
                tests.append((o.impl, conv))

            def row_test(x: tuple, y: tuple, _tests: tuple = tuple(tests)) -> Any:
                null = False
                for (impl, conv), a, b in zip(_tests, x, y):
                    if conv is not None and b is not None:
                        b = conv(b)
                    if a is None or b is None:
                        null = True
                        continue
                    r = impl(a, b)
                    if r is None:
                        null = True
                    elif not r:
                        return False
                return None if null else True
            return SubLink("any" if st == "ANY_SUBLINK" else "all", q, T.BOOL, left=RowExpr(tuple(largs)),
                           test=row_test, correlated=q.correlated, width=ntargets)
        if st in ("ANY_SUBLINK", "ALL_SUBLINK"):
            if ntargets != 1:
                raise _err("42601", "subquery has too many columns" if ntargets > 1 else
                           "subquery has too few columns", loc)
            left = self.expr(v["testexpr"], ps)
            opname = names(v.get("operName"))[-1] if v.get("operName") else "="
            col = q.targets[0].expr
            probe_l = left
            o = self.op(opname, probe_l, Const(None, col.type), loc)
            assert isinstance(o, Func)           # the right operand is a constant, so no ROW() comparison
            left_c = o.args[0]
            ct = o.args[1].type
            conv = cast_fn(col.type, ct, self.env) if ct != col.type else None
            impl = o.impl
            test = impl if conv is None else (lambda a, b, _i=impl, _c=conv: _i(a, _c(b) if b is not None else b))
            return SubLink("any" if st == "ANY_SUBLINK" else "all", q, T.BOOL, left=left_c, test=test,
                           correlated=q.correlated)
        raise _err("0A000", f"subquery kind {st} is not supported", loc)

    def _e_GroupingFunc(self, v: dict, ps: PState) -> Expr:
        raise _err("0A000", "GROUPING is not supported")

    def _e_FuncCall(self, v: dict, ps: PState) -> Expr:
        fname = names(v["funcname"])
        name = fname[-1].lower() if v.get("funcformat") == "COERCE_SQL_SYNTAX" else fname[-1]
        loc = v.get("location", -1)
        schema = fname[-2] if len(fname) > 1 else None
        if v.get("over") is not None:
            return self._window_call(name, v, ps)
        if v.get("agg_within_group"):
            if not ps.aggs_allowed:
                raise _err("42803", f"aggregate functions are not allowed in {ps.expr_kind or 'this context'}", loc)
            return self._ordered_set_agg(name, v, ps, loc)
        if name in F.AGGS and schema in (None, "pg_catalog") and (name not in F.FUNCS or v.get("agg_star")):
            return self._agg_call(name, v, ps)
        special = self.env.special_function(name, schema)
        raw_args = v.get("args", []) or []
        if any("NamedArgExpr" in a for a in raw_args):
            raw_args = self._named_args(name, raw_args, loc)
        args = [self.expr(a, ps) for a in raw_args]
        if special is not None:
            return special(self, args, ps, loc)
        cands = F.FUNCS.get(name)
        if not cands or schema not in (None, "pg_catalog"):
            argtypes = ", ".join(format_type(a.type) if a.type != T.UNKNOWN else "unknown" for a in args)
            raise _err("42883", f"function {'.'.join(fname)}({argtypes}) does not exist",
                       loc, hint="No function matches the given name and argument types. "
                                 "You might need to add explicit type casts.")
        try:
            c, argt, ret = F.resolve(cands, [a.type for a in args], "function", ".".join(fname))
        except PgError as e:
            e.position = loc + 1 if loc >= 0 else None
            raise
        cargs = tuple(self.coerce(a, t, -1, "i", "") for a, t in zip(args, argt))
        if c.retset and ps.expr_kind not in ("SELECT", "FROM"):
            raise _err("0A000", f"set-returning functions are not allowed in {ps.expr_kind}", loc)
        return Func(name, c.impl, cargs, ret, strict=c.strict, env=c.env, volatile=c.volatile or c.retset)

    _NAMED = {"make_interval": (("years", "months", "weeks", "days", "hours", "mins", "secs"),
                                ("0", "0", "0", "0", "0", "0", "0.0")),
              "make_timestamp": (("year", "month", "mday", "hour", "min", "sec"), (None,) * 6),
              "make_date": (("year", "month", "day"), (None,) * 3),
              "make_time": (("hour", "min", "sec"), (None,) * 3)}

    def _named_args(self, name: str, raw_args: list, loc: int) -> list:
        """Positional arguments for a call with ``name => value`` arguments."""
        spec = self._NAMED.get(name)
        if spec is None:
            raise _err("42883", f"function {name} with named arguments does not exist", loc)
        pnames, defaults = spec
        out: list = [None] * len(pnames)
        pos = 0
        for a in raw_args:
            if "NamedArgExpr" in a:
                na = a["NamedArgExpr"]
                if na["name"] not in pnames:
                    raise _err("42883", f"function {name} has no parameter \"{na['name']}\"", loc)
                out[pnames.index(na["name"])] = na["arg"]
            else:
                out[pos] = a
                pos += 1
        for i, d in enumerate(defaults):
            if out[i] is None:
                if d is None:
                    raise _err("42883", f"function {name} requires argument \"{pnames[i]}\"", loc)
                out[i] = {"A_Const": {"fval": {"fval": d}} if "." in d else {"ival": {"ival": int(d)}}}
        return out

    def _agg_call(self, name: str, v: dict, ps: PState) -> Expr:
        loc = v.get("location", -1)
        if not ps.aggs_allowed:
            where = ps.expr_kind or "this context"
            if where == "WHERE":
                raise _err("42803", "aggregate functions are not allowed in WHERE", loc)
            if where == "JOIN/ON":
                raise _err("42803", "aggregate functions are not allowed in JOIN conditions", loc)
            if where == "GROUP BY":
                raise _err("42803", "aggregate functions are not allowed in GROUP BY", loc)
            raise _err("42803", f"aggregate functions are not allowed in {where}", loc)
        star = bool(v.get("agg_star"))
        if v.get("agg_within_group"):
            return self._ordered_set_agg(name, v, ps, loc)
        saved = ps.aggs_allowed
        ps.aggs_allowed = False
        args = [] if star else [self.expr(a, ps) for a in v.get("args", []) or []]
        filt = self.coerce_bool(self.expr(v["agg_filter"], ps), "FILTER") if v.get("agg_filter") else None
        order = []
        for s in v.get("agg_order", []) or []:
            sb = s["SortBy"]
            order.append(SortKey(self._resolve_unknown(self.expr(sb["node"], ps)),
                                 sb.get("sortby_dir") == "SORTBY_DESC", _nulls(sb)))
        ps.aggs_allowed = saved
        cands = F.AGGS[name]
        argt: tuple[int, ...]
        if star:
            c = [a for a in cands if not a.args][0]
            argt, ret = (), c.ret
        elif name in ("min", "max") and len(args) == 1 and self.env.is_enum(args[0].type):
            et = args[0].type
            base = cands[0]
            c = F.AggDef(name, (et,), et, base.init, F._minmax(name), base.final, base.strict)
            argt, ret = (et,), et
        else:
            args = [self._resolve_unknown(a) if name not in ("string_agg",) else a for a in args]
            c, argt, ret = F.resolve(cands, [a.type for a in args], "function", name)
        cargs = tuple(self.coerce(a, t, -1, "i", "") for a, t in zip(args, argt))
        a = Aggref(c, cargs, ret, distinct=bool(v.get("agg_distinct")), star=star, filter=filt,
                   order=tuple(order), location=loc)
        ps.query.aggs.append(a)
        return a

    def _ordered_set_agg(self, name: str, v: dict, ps: PState, loc: int) -> Expr:
        """percentile_cont / percentile_disc / mode ... WITHIN GROUP (ORDER BY x): the sorted
        x values are the aggregate's input; the direct argument rides along."""
        saved = ps.aggs_allowed
        ps.aggs_allowed = False
        direct = [self.expr(a, ps) for a in v.get("args", []) or []]
        order = []
        for s in v.get("agg_order", []) or []:
            sb = s["SortBy"]
            order.append(SortKey(self._resolve_unknown(self.expr(sb["node"], ps)),
                                 sb.get("sortby_dir") == "SORTBY_DESC", _nulls(sb)))
        ps.aggs_allowed = saved
        if len(order) != 1:
            raise _err("42883", f"function {name} with {len(order)} ordering columns does not exist", loc)
        x = order[0].expr
        args: tuple[Expr, ...]
        if name in ("percentile_cont", "percentile_disc"):
            if len(direct) != 1:
                raise _err("42883", f"function {name} requires one direct argument", loc)
            frac = direct[0]
            is_array = T.element_of(frac.type) != 0 or (isinstance(frac, Const) and isinstance(frac.value, list))
            frac = self.coerce(frac, T.FLOAT8_ARRAY if is_array else T.FLOAT8, -1, "i", "")
            if name == "percentile_cont":
                if x.type == T.INTERVAL:
                    xt = T.INTERVAL
                else:
                    x = self.coerce(x, T.FLOAT8, -1, "i", "")
                    xt = T.FLOAT8
            else:
                xt = x.type
            ret = (T.array_of(xt) or T.FLOAT8_ARRAY) if is_array else xt
            defn = F.AggDef(name, (T.FLOAT8, xt), ret, lambda: None,
                            lambda s, f, val: (f, [val]) if s is None else (s[1].append(val) or s),
                            F.percentile_final(name, is_array), strict=False)
            args = (frac, x)
        elif name == "mode":
            if direct:
                raise _err("42883", "function mode requires no direct arguments", loc)
            defn = F.AggDef(name, (x.type,), x.type, lambda: None,
                            lambda s, val: [val] if s is None else (s.append(val) or s), F.mode_final,
                            strict=True)
            args = (x,)
        else:
            raise _err("42883", f"function {name} does not exist", loc, hint="No function matches the given name "
                                                                           "and argument types.")
        a = Aggref(defn, args, defn.ret, order=tuple(order), location=loc)
        ps.query.aggs.append(a)
        return a

    def _window_def(self, over: dict, ps: PState) -> dict:
        """OVER (...) merged with the named window it refers to (WINDOW w AS (...))."""
        ref = over.get("refname") or (over.get("name") if not over.get("partitionClause") and
                                      not over.get("orderClause") else None)
        if not ref:
            return over
        p: PState | None = ps
        base = None
        while p is not None and base is None:
            base = p.windefs.get(ref)
            p = p.parent
        if base is None:
            raise _err("42704", f'window "{ref}" does not exist', over.get("location", -1))
        base = self._window_def(base, ps)
        merged = dict(base)
        if over.get("orderClause"):
            merged["orderClause"] = over["orderClause"]
        if over.get("frameOptions", 0) & 1:  # an explicit frame in OVER
            for k in ("frameOptions", "startOffset", "endOffset"):
                if k in over:
                    merged[k] = over[k]
        return merged

    def _window_call(self, name: str, v: dict, ps: PState) -> Expr:
        over = self._window_def(v["over"], ps)
        part = [self._resolve_unknown(self.expr(p, ps)) for p in over.get("partitionClause", []) or []]
        order = []
        for s in over.get("orderClause", []) or []:
            sb = s["SortBy"]
            order.append(SortKey(self._resolve_unknown(self.expr(sb["node"], ps)),
                                 sb.get("sortby_dir") == "SORTBY_DESC", _nulls(sb)))
        args = [self._resolve_unknown(self.expr(a, ps)) for a in v.get("args", []) or []]
        if name in ("row_number", "rank", "dense_rank"):
            ret = T.INT8
            func: Any = name
        elif name in ("percent_rank", "cume_dist"):
            ret = T.FLOAT8
            func = name
        elif name == "ntile":
            if len(args) != 1:
                raise _err("42883", "function ntile requires one argument", v.get("location"))
            args = [self.coerce(args[0], T.INT4, -1, "i", "")]
            ret = T.INT4
            func = name
        elif name in ("lag", "lead", "first_value", "last_value", "nth_value"):
            if not args:
                raise _err("42883", f"function {name}() does not exist", v.get("location"))
            ret = args[0].type
            if name in ("lag", "lead") and len(args) > 1:
                args[1] = self.coerce(args[1], T.INT4, -1, "i", "")
                if len(args) > 2:
                    args[2] = self.coerce(args[2], ret, -1, "i", "")
            if name == "nth_value":
                args[1] = self.coerce(args[1], T.INT4, -1, "i", "")
            func = name
        elif name in F.AGGS:
            if v.get("agg_star"):
                c = [a for a in F.AGGS[name] if not a.args][0]
                ret = c.ret
            else:
                c, argt, ret = F.resolve(F.AGGS[name], [a.type for a in args], "function", name)
                args = [self.coerce(a, t, -1, "i", "") for a, t in zip(args, argt)]
            func = c
        else:
            raise _err("42883", f"window function {name} does not exist", v.get("location"))
        fo = over.get("frameOptions", 0)
        frame = None
        if fo & 1:
            so = self.expr(over["startOffset"], ps) if over.get("startOffset") else None
            eo = self.expr(over["endOffset"], ps) if over.get("endOffset") else None
            if fo & 0x2 and (fo & (0x800 | 0x1000 | 0x2000 | 0x4000)):
                raise _err("0A000", "RANGE with offset PRECEDING/FOLLOWING is not supported", v.get("location"))
            frame = (fo, so, eo)
        w = WindowRef(func, tuple(args), ret, tuple(part), tuple(order), frame=frame)
        ps.query.windows.append(w)
        return w

    # ------------------------------------------------------------------ coercion

    def coerce(self, e: Expr, t: int, typmod: int, context: str, what: str, loc: int = -1) -> Expr:
        """Convert ``e`` to type ``t`` (and ``typmod``) in ``context``
        ('i' implicit, 'a' assignment, 'e' explicit)."""
        src = e.type
        if src == t and (typmod < 0 or e.typmod == typmod):
            return e
        if isinstance(e, Param) and src == T.UNKNOWN:
            self.params.set(e.index, t)
            p = Param(e.index, t)
            tf = typmod_fn(t, typmod, context == "e")
            if tf is None:
                return p
            return Func("typmod", tf, (p,), t, typmod)
        if isinstance(e, Const) and (src == T.UNKNOWN or (src == t)):
            if e.value is None:
                return Const(None, t, typmod, e.location)
            v = e.value
            if src == T.UNKNOWN:
                conv = cast_fn(T.UNKNOWN, t, self.env)
                try:
                    v = conv(v) if conv is not None else v
                except PgError as err:
                    if err.position is None and e.location >= 0:
                        err.position = e.location + 1
                    raise
            tf = typmod_fn(t, typmod, context == "e")
            if tf is not None:
                v = tf(v)
            return Const(v, t, typmod, e.location)
        if src == T.UNKNOWN:
            # an expression of unknown type (e.g. NULL-typed CASE) -> through text input
            conv = cast_fn(T.TEXT, t, self.env)
            return Func("cast", conv, (e,), t, typmod) if conv else e
        if t in (T.ANYELEMENT, T.ANY, T.ANYNONARRAY, T.ANYARRAY):
            return e
        kind = F.can_coerce(src, t, context)
        if not kind:
            if context == "e" and self.env.is_enum(src) and t in (T.TEXT, T.VARCHAR):
                return Func("cast", self.env.enum_output(src), (e,), t)
            if self.env.is_enum(t) and src in (T.TEXT, T.VARCHAR, T.NAME):
                return Func("cast", self.env.enum_input(t), (e,), t)
            if context == "e" and self.env.is_enum(src) and self.env.is_enum(t):
                pass
            if context == "e":
                raise _err("42846", f"cannot cast type {self._tn(src)} to {self._tn(t)}", loc)
            if what in ("INSERT", "UPDATE") or context == "a":
                raise _err("42804", f'column "{what}" is of type {self._tn(t)} but expression is of type '
                                    f'{self._tn(src)}', loc,
                           hint="You will need to rewrite or cast the expression.")
            raise _err("42804", f"{what or 'argument'} types {self._tn(src)} and {self._tn(t)} cannot be matched"
                       if what else f"cannot cast type {self._tn(src)} to {self._tn(t)}", loc)
        conv = cast_fn(src, t, self.env)
        out = e
        if conv is not None:
            if isinstance(e, Const) and e.value is not None:
                out = Const(conv(e.value), t, -1, e.location, src if src in (T.INT2, T.INT4, T.INT8) else 0)
            else:
                out = Func("cast", conv, (e,), t)
        elif out.type != t:
            out = _relabel(out, t)
        tf = typmod_fn(t, typmod, context == "e")
        if tf is not None:
            if isinstance(out, Const):
                out = Const(None if out.value is None else tf(out.value), t, typmod, out.location)
            else:
                out = Func("typmod", tf, (out,), t, typmod)
        return out

    def _tn(self, t: int) -> str:
        return self.env.type_display_name(t)

    def coerce_assign(self, e: Expr, t: int, typmod: int, colname: str, loc: int | None) -> Expr:
        if e.type != T.UNKNOWN and not isinstance(e, Param) and not F.can_coerce(e.type, t, "a") and \
                not (self.env.is_enum(t) and e.type in (T.TEXT, T.VARCHAR)):
            raise _err("42804", f'column "{colname}" is of type {self._tn(t)} but expression is of type '
                                f'{self._tn(e.type)}', loc if loc is not None else -1,
                       hint="You will need to rewrite or cast the expression.")
        if isinstance(e, Param) and e.type != T.UNKNOWN and e.type != t and not F.can_coerce(e.type, t, "a"):
            raise _err("42804", f'column "{colname}" is of type {self._tn(t)} but expression is of type '
                                f'{self._tn(e.type)}', loc if loc is not None else -1,
                       hint="You will need to rewrite or cast the expression.")
        return self.coerce(e, t, typmod, "a", colname, loc if loc is not None else -1)


_ENUM_CMP = {"<", "<=", ">", ">=", "=", "<>"}


def _relabel(e: Expr, t: int) -> Expr:
    """Same value, different type (binary-compatible cast)."""
    if isinstance(e, Const):
        return Const(e.value, t, -1, e.location)
    if isinstance(e, Param):
        return Func("relabel", _identity, (e,), t)
    return Func("relabel", _identity, (e,), t)


def _identity(x: Any) -> Any:
    return x


def _subscript(a: list, i: int) -> Any:
    if 1 <= i <= len(a):
        return a[i - 1]
    return None


def _similar_to_regex(p: str) -> str:
    out = ["^(?:"]
    i = 0
    while i < len(p):
        c = p[i]
        if c == "\\" and i + 1 < len(p):
            out.append("\\" + p[i + 1])
            i += 2
            continue
        out.append({"%": ".*", "_": ".", ".": "\\."}.get(c, c))
        i += 1
    out.append(")$")
    return "".join(out)


def _nulls(sb: dict) -> bool | None:
    n = sb.get("sortby_nulls", "SORTBY_NULLS_DEFAULT")
    if n == "SORTBY_NULLS_FIRST":
        return True
    if n == "SORTBY_NULLS_LAST":
        return False
    return None


def output_columns(q: QueryTree) -> list[Target]:
    if q.kind in ("select", "setop"):
        return q.targets
    return q.returning


def uses_params(e: Expr) -> bool:
    return any(isinstance(n, Param) for n in walk(e))


__all__ = ["Analyzer", "ParamTypes", "QueryTree", "RTE", "Target", "SortKey", "RangeRef", "JoinNode", "CTE",
           "output_columns", "SERIAL_TYPES", "Dynamic"]
