"""Analysed expressions back to SQL text the way PostgreSQL's ruleutils prints them
(what ``pg_get_expr`` and ``pg_get_constraintdef`` show for column defaults and
CHECK constraints): operator expressions in parentheses, constants with their
type (``'x'::text``, ``'-1'::integer``), casts inside expressions shown
(``(name)::text``), casts at the top level not, ``CURRENT_DATE`` and friends as
keywords.  Anything it does not know is printed from the raw parse tree instead
(the caller's fallback).
"""

from __future__ import annotations

import datetime as _dt
from decimal import Decimal
from typing import Any

from pglast import ast
from pglast.stream import RawStream

from pgbundle.server.executor.expr import (
    ArrayExpr,
    BoolOp,
    BoolTest,
    Case,
    Coalesce,
    Const,
    Func,
    NullTest,
    ScalarArrayOp,
    Var,
)
from pgbundle.server.parser.analyze import Analyzer, ParamTypes, PState, QueryTree
from pgbundle.server.parser.coerce import format_type
from pgbundle.server.parser.parse import parse
from pgbundle.shared.quoting import escape_literal_body, quote_ident
from pgbundle.shared.types import Interval, oids as T, text_encoder

_SVF = {"current_date": "CURRENT_DATE", "localtimestamp": "LOCALTIMESTAMP", "localtime": "LOCALTIME",
        "current_user": "CURRENT_USER", "session_user": "SESSION_USER", "current_schema": "CURRENT_SCHEMA",
        "current_catalog": "CURRENT_CATALOG"}


class Unsupported(Exception):
    pass


_varname: Any = None  # optional Var -> text (EXPLAIN qualifies columns with their table)
_pretty_mode = False


def explain_text(e: Any, varname: Any, env: Any = None) -> str:
    """EXPLAIN's rendering of a qual: pretty, parenthesised like PostgreSQL's."""
    global _varname, _env
    _varname = varname
    _env = env
    try:
        t = deparse(e, None, top=False, pretty=True, parent="")
    except Exception:  # noqa: BLE001
        t = "?"
    finally:
        _varname = None
    return t if t.startswith("(") and t.endswith(")") else f"({t})"


def _ident(name: str) -> str:
    return quote_ident(name)


def _literal(v: Any, t: int) -> str:
    if isinstance(v, str):
        s = v
    elif isinstance(v, Interval):
        s = text_encoder(T.INTERVAL)(v)
    else:
        s = text_encoder(t)(v)
    return "'" + escape_literal_body(s) + "'"


def _tname(t: int, typmod: int = -1, names: dict | None = None) -> str:
    return format_type(t, typmod, names) or str(t)


def deparse(e: Any, names: dict | None = None, top: bool = True, pretty: bool = False,
            parent: str = "") -> str:
    """SQL text of analysed expression ``e``; raises :class:`Unsupported`.  ``pretty``
    drops the parentheses PostgreSQL's pretty mode drops (``parent``: 'bool' under
    AND/OR/NOT, 'op' under an operator, 'func' as a function or cast argument)."""
    if pretty:
        global _pretty_mode
        saved = _pretty_mode
        _pretty_mode = True
        try:
            return _pretty(e, names, top, parent)
        finally:
            _pretty_mode = saved
    if isinstance(e, Const):
        return _const(e, names, top)
    if isinstance(e, Var):
        if _varname is not None:
            return _varname(e)
        return _ident(e.name) if e.name else f"${e.col + 1}"
    if isinstance(e, Func):
        name = e.name
        if name in ("cast", "relabel", "typmod"):
            inner = deparse(e.args[0], names, top)
            if top:
                return inner
            if not inner.startswith("("):
                inner = f"({inner})"
            return f"{inner}::{_tname(e.type, e.typmod, names)}"
        if name in _SVF and not e.args:
            return _SVF[name]
        if name == "now" and not e.args:
            return "now()"
        if not name[0].isalpha() and name[0] != "_":
            if len(e.args) == 2:
                return f"({deparse(e.args[0], names, False)} {name} {deparse(e.args[1], names, False)})"
            if len(e.args) == 1:
                return f"({name} {deparse(e.args[0], names, False)})"
            raise Unsupported(name)
        return f"{name}({', '.join(deparse(a, names, False) for a in e.args)})"
    if isinstance(e, BoolOp):
        if e.op == "not":
            return f"(NOT {deparse(e.args[0], names, False)})"
        sep = " AND " if e.op == "and" else " OR "
        return "(" + sep.join(deparse(a, names, False) for a in e.args) + ")"
    if isinstance(e, NullTest):
        return f"({deparse(e.arg, names, False)} IS {'NULL' if e.isnull else 'NOT NULL'})"
    if isinstance(e, BoolTest):
        words = {"IS_TRUE": "IS TRUE", "IS_NOT_TRUE": "IS NOT TRUE", "IS_FALSE": "IS FALSE",
                 "IS_NOT_FALSE": "IS NOT FALSE", "IS_UNKNOWN": "IS UNKNOWN", "IS_NOT_UNKNOWN": "IS NOT UNKNOWN"}
        return f"({deparse(e.arg, names, False)} {words.get(e.test, e.test)})"
    if isinstance(e, Case):
        parts = ["CASE"]
        for c, r in e.whens:
            parts.append(f"WHEN {deparse(c, names, False)} THEN {deparse(r, names, False)}")
        if e.default is not None:
            parts.append(f"ELSE {deparse(e.default, names, False)}")
        parts.append("END")
        return " ".join(parts)
    if isinstance(e, Coalesce):
        kw = {"coalesce": "COALESCE", "greatest": "GREATEST", "least": "LEAST", "nullif": "NULLIF"}[e.kind]
        return f"{kw}({', '.join(deparse(a, names, False) for a in e.args)})"
    if isinstance(e, ArrayExpr):
        return "ARRAY[" + ", ".join(deparse(a, names, False) for a in e.elems) + "]"
    if isinstance(e, ScalarArrayOp):
        right = deparse(e.right, names, False)
        if isinstance(e.right, ArrayExpr):
            right = f"({right})"
        return (f"({deparse(e.left, names, False)} {e.opname} {'ANY' if e.use_or else 'ALL'} "
                f"({right}::{_tname(e.right.type, -1, names)}))" if isinstance(e.right, ArrayExpr) else
                f"({deparse(e.left, names, False)} {e.opname} {'ANY' if e.use_or else 'ALL'} ({right}))")
    raise Unsupported(type(e).__name__)


def _is_op(e: Any) -> bool:
    return isinstance(e, Func) and bool(e.name) and not e.name[0].isalpha() and e.name[0] != "_" and \
        e.name not in ("cast", "relabel", "typmod") and len(e.args) in (1, 2)


def _pretty(e: Any, names: dict | None, top: bool, parent: str) -> str:
    if isinstance(e, Func) and e.name in ("cast", "relabel", "typmod"):
        arg = e.args[0]
        inner = _pretty(arg, names, top, "cast")
        if top:
            return f"({inner})" if _is_op(arg) or isinstance(arg, BoolOp) else inner
        if _is_op(arg) or isinstance(arg, (BoolOp, NullTest, BoolTest)):
            inner = f"({inner})"
        return f"{inner}::{_tname(e.type, e.typmod, names)}"
    if _is_op(e):
        if len(e.args) == 2:
            text = f"{_pretty(e.args[0], names, False, 'op')} {e.name} {_pretty(e.args[1], names, False, 'op')}"
        else:
            text = f"{e.name} {_pretty(e.args[0], names, False, 'op')}"
        return f"({text})" if parent == "op" else text
    if isinstance(e, BoolOp):
        if e.op == "not":
            text = f"NOT {_pretty(e.args[0], names, False, 'bool')}"
        else:
            sep = " AND " if e.op == "and" else " OR "
            parts = []
            for a in e.args:
                t = _pretty(a, names, False, "bool")
                if isinstance(a, BoolOp) and a.op != e.op and a.op != "not":
                    t = f"({t})"
                parts.append(t)
            text = sep.join(parts)
        return f"({text})" if parent in ("op", "cast") else text
    if isinstance(e, NullTest):
        text = f"{_pretty(e.arg, names, False, 'op')} IS {'NULL' if e.isnull else 'NOT NULL'}"
        return f"({text})" if parent == "op" else text
    if isinstance(e, Func) and e.name and e.name[0].isalpha() and e.name not in _SVF and e.name != "now":
        return f"{e.name}({', '.join(_pretty(a, names, False, 'func') for a in e.args)})"
    if isinstance(e, ArrayExpr):
        return "ARRAY[" + ", ".join(_pretty(a, names, False, "func") for a in e.elems) + "]"
    if isinstance(e, ScalarArrayOp):
        right = _pretty(e.right, names, False, "func")
        if isinstance(e.right, ArrayExpr):
            right += f"::{_tname(e.right.type, -1, names)}"
        text = f"{_pretty(e.left, names, False, 'op')} {e.opname} {'ANY' if e.use_or else 'ALL'} ({right})"
        return f"({text})" if parent == "op" else text
    return deparse(e, names, top)


_REG_TYPES = (T.REGCLASS, T.REGTYPE, T.REGNAMESPACE, T.REGROLE, T.REGPROC)
_env: Any = None  # the session environment of the running deparse (reg* output)


def _const(e: Const, names: dict | None, top: bool = False) -> str:
    v, t = e.value, e.type
    if t in _REG_TYPES and v is not None and _env is not None:
        return f"{_literal(_env.reg_out(t, v), T.TEXT)}::{_tname(t, -1, names)}"
    if v is None:
        return f"NULL::{_tname(t, e.typmod, names)}"
    if t == T.BOOL:
        return "true" if v else "false"
    if t in (T.INT4, T.INT2, T.INT8) and isinstance(v, int) and not isinstance(v, bool):
        if v >= 0 and (t != T.INT8 or v < 2**31):
            return str(v)
        return f"{_literal(v, t)}::{_tname(t, -1, names)}"
    if getattr(e, "src_type", 0) and not top and t in (T.NUMERIC, T.FLOAT8, T.FLOAT4) and e.src_type != t:
        s = str(int(v)) if not isinstance(v, float) or v.is_integer() else repr(v)
        return f"({s})::{_tname(t, -1, names)}" if not _pretty_mode else f"{s}::{_tname(t, -1, names)}"
    if t in (T.NUMERIC, T.FLOAT8, T.FLOAT4) and isinstance(v, (Decimal, float, int)):
        s = str(v) if not isinstance(v, float) else repr(v)
        if isinstance(v, float) and s.endswith(".0"):
            s = s[:-2]
        if not s.startswith("-") and "E" not in s.upper() and "N" not in s.upper():
            return s
        return f"{_literal(v, t)}::{_tname(t, e.typmod, names)}"
    if t == T.UNKNOWN:
        return _literal(v, T.TEXT)
    if isinstance(v, (_dt.date, _dt.datetime, _dt.time)) and t in (T.DATE, T.TIMESTAMP, T.TIMESTAMPTZ, T.TIME):
        return f"{_literal(v, t)}::{_tname(t, e.typmod, names)}"
    return f"{_literal(v, t)}::{_tname(t, -1, names)}"


def expression_text(env: Any, raw_node: dict, type_oid: int | None = None, typmod: int = -1,
                    rel: Any = None, colname: str = "") -> str | None:
    """Deparse a raw expression the way PostgreSQL stores it: analysed (against ``rel``'s
    columns when given; coerced to ``type_oid`` for a column default).  None when it
    cannot (the caller keeps its raw text)."""
    global _env
    _env = env
    try:
        an = Analyzer(env, ParamTypes())
        if rel is not None:
            raw = parse(f"SELECT ({deparse_expr(raw_node)}) FROM {quote_ident(rel.schema)}.{quote_ident(rel.name)}")
            q = an.analyze(raw[0].kind, raw[0].node)
            e = q.targets[0].expr
        else:
            e = an.expr(raw_node, PState(None, QueryTree("select")))
            if type_oid is not None:
                e = an.coerce_assign(e, type_oid, typmod, colname, None)
        return deparse(e, env.type_names() if hasattr(env, "type_names") else None)
    except Exception:  # noqa: BLE001 - any failure keeps the raw text
        return None


def pretty_text(env: Any, text: str, rel: Any = None, default: bool = False) -> str:
    """The pretty form of a stored expression text (re-analysed against ``rel``)."""
    global _env
    _env = env
    try:
        sql = f"SELECT ({text})" + (f" FROM {quote_ident(rel.schema)}.{quote_ident(rel.name)}" if rel is not None
                                    and not default else "")
        raw = parse(sql)[0]
        q = Analyzer(env, ParamTypes()).analyze(raw.kind, raw.node)
        return deparse(q.targets[0].expr, env.type_names() if hasattr(env, "type_names") else None,
                       top=True, pretty=True)
    except Exception:  # noqa: BLE001
        return text


def to_ast(x: Any) -> Any:
    """A raw parse tree (pglast's JSON form, as parse() gives it) as pglast AST nodes."""
    if isinstance(x, dict):
        if len(x) == 1:
            (k, v), = x.items()
            if k == "List" and isinstance(v, dict):
                return tuple(to_ast(i) for i in v.get("items", []) or [])
            if k == "A_Const" and isinstance(v, dict):
                kw = {}
                for key, cls in (("ival", "Integer"), ("fval", "Float"), ("sval", "String"), ("boolval", "Boolean"),
                                 ("bsval", "BitString")):
                    if key in v:
                        kw["val"] = getattr(ast, cls)(v[key].get(key, 0 if key == "ival" else
                                                                 (False if key == "boolval" else "")))
                if v.get("isnull"):
                    kw["isnull"] = True
                return ast.A_Const(**kw)
            if hasattr(ast, k) and isinstance(v, dict):
                cls = getattr(ast, k)
                return cls(**{kk: to_ast(vv) for kk, vv in v.items() if kk != "location"})
        return {k: to_ast(v) for k, v in x.items()}
    if isinstance(x, list):
        return tuple(to_ast(i) for i in x)
    return x


def deparse_expr(node: dict) -> str:
    """A raw expression parse tree printed back as SQL (pglast's deparser)."""
    return RawStream()(to_ast(node))
