"""Built-in functions, operators and aggregates, and their resolution.

Every callable is a :class:`FuncDef` (functions and operators alike: an
operator is registered under its symbol).  :func:`resolve` picks the candidate
for a call the way PostgreSQL's ``func_select_candidate`` does in the common
cases: exact match, then candidates reachable by implicit coercion, preferring
the most exact matches, then the preferred type of each category, then — for
``unknown`` arguments — the type of the other operand.  Polymorphic
signatures (anyelement, anyarray, anynonarray, any) resolve their result type
from the actual arguments.

Values follow :mod:`pgbundle.shared.types`.  ``strict`` functions are not
called with NULL arguments (the compiled call returns NULL); ``env`` functions
get the session environment first (time zone, settings, catalog access).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
import operator as _op
import random as _random
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, localcontext
from typing import Any

from pgbundle.server.errors import PgError
from pgbundle.server.parser.coerce import can_coerce, format_type
from pgbundle.shared.quoting import quote_ident, quote_literal, quote_nullable
from pgbundle.shared.types import Interval, oids as T
from pgbundle.shared.types.arrays import array_elements, format_array_text
from pgbundle.shared.types.oids import TYPES
from pgbundle.shared.types.text import (
    format_date,
    format_float8,
    format_interval,
    format_numeric,
    format_record,
    format_timestamp,
    format_timestamptz,
    jsonb_from_python,
)

UTC = _dt.timezone.utc


@dataclass(slots=True)
class FuncDef:
    name: str
    args: tuple[int, ...]
    ret: int
    impl: Callable[..., Any]
    strict: bool = True
    env: bool = False
    volatile: bool = False
    variadic: int = 0            # element type of a VARIADIC last argument
    retset: bool = False
    oid: int = 0


@dataclass(slots=True)
class AggDef:
    """An aggregate: ``init() -> state``, ``step(state, *args) -> state``,
    ``final(state) -> value``.  ``strict`` steps skip rows with a NULL
    argument; count(*) has no arguments."""
    name: str
    args: tuple[int, ...]
    ret: int
    init: Callable[[], Any]
    step: Callable[..., Any]
    final: Callable[[Any], Any]
    strict: bool = True
    oid: int = 0


FUNCS: dict[str, list[FuncDef]] = {}
OPS: dict[str, list[FuncDef]] = {}
AGGS: dict[str, list[AggDef]] = {}

_NAMES = {
    "int2": T.INT2, "int4": T.INT4, "int8": T.INT8, "numeric": T.NUMERIC, "float4": T.FLOAT4,
    "float8": T.FLOAT8, "text": T.TEXT, "varchar": T.VARCHAR, "bpchar": T.BPCHAR, "name": T.NAME,
    "bool": T.BOOL, "bytea": T.BYTEA, "date": T.DATE, "timestamp": T.TIMESTAMP, "timestamptz": T.TIMESTAMPTZ,
    "interval": T.INTERVAL, "time": T.TIME, "oid": T.OID, "char": T.CHAR, "json": T.JSON, "jsonb": T.JSONB,
    "uuid": T.UUID, "regclass": T.REGCLASS, "regtype": T.REGTYPE, "regproc": T.REGPROC, "void": T.VOID,
    "any": T.ANY, "anyelement": T.ANYELEMENT, "anyarray": T.ANYARRAY, "anynonarray": T.ANYNONARRAY,
    "record": T.RECORD, "unknown": T.UNKNOWN, "text[]": T.TEXT_ARRAY, "name[]": T.NAME_ARRAY,
    "int4[]": T.INT4_ARRAY, "oid[]": T.OID_ARRAY, "int2[]": T.INT2_ARRAY, "regnamespace": T.REGNAMESPACE,
    "regrole": T.REGROLE, "xid": T.XID, "xid8": T.XID8, "pg_node_tree": T.PG_NODE_TREE, "cstring": T.CSTRING,
    "int2vector": T.INT2VECTOR, "oidvector": T.OIDVECTOR, "pg_lsn": T.PG_LSN, "char[]": T.CHAR_ARRAY,
}


def _ty(s: str) -> int:
    return _NAMES[s]


def fn(name: str, args: str, ret: str, *, strict: bool = True, env: bool = False, volatile: bool = False,
       variadic: str = "", retset: bool = False, op: bool = False):
    """Register the decorated function under ``name`` (comma-separated list of
    aliases) with argument types ``args`` ("int4,int4") and result ``ret``."""
    argt = tuple(_ty(a.strip()) for a in args.split(",") if a.strip())

    def deco(f: Callable[..., Any]) -> Callable[..., Any]:
        for n in name.split("|"):
            d = FuncDef(n, argt, _ty(ret), f, strict, env, volatile, _ty(variadic) if variadic else 0, retset)
            (OPS if op else FUNCS).setdefault(n, []).append(d)
        return f
    return deco


def op(sym: str, args: str, ret: str, impl: Callable[..., Any], strict: bool = True, env: bool = False) -> None:
    argt = tuple(_ty(a.strip()) for a in args.split(","))
    OPS.setdefault(sym, []).append(FuncDef(sym, argt, _ty(ret), impl, strict, env))


def agg(name: str, args: str, ret: str, init, step, final, strict: bool = True) -> None:
    argt = tuple(_ty(a.strip()) for a in args.split(",") if a.strip())
    for n in name.split("|"):
        AGGS.setdefault(n, []).append(AggDef(n, argt, _ty(ret), init, step, final, strict))


# ----------------------------------------------------------------------------- errors

def _div0() -> PgError:
    return PgError("22012", "division by zero")


def _ovf(name: str) -> PgError:
    return PgError("22003", f"{name} out of range")


# ----------------------------------------------------------------------------- integer arithmetic

def _int_ops(tname: str, lo: int, hi: int, label: str) -> None:
    def chk(v: int) -> int:
        if lo <= v <= hi:
            return v
        raise _ovf(label)

    def add(a, b):
        r = a + b
        if lo <= r <= hi:
            return r
        raise _ovf(label)

    def sub(a, b):
        r = a - b
        if lo <= r <= hi:
            return r
        raise _ovf(label)

    def mul(a, b):
        r = a * b
        if lo <= r <= hi:
            return r
        raise _ovf(label)

    def div(a, b):
        if b == 0:
            raise _div0()
        q = abs(a) // abs(b)
        return chk(q if (a >= 0) == (b >= 0) else -q)

    def mod(a, b):
        if b == 0:
            raise _div0()
        return int(math.fmod(a, b)) if abs(a) < 2**52 else (abs(a) % abs(b)) * (1 if a >= 0 else -1)

    sig = f"{tname},{tname}"
    op("+", sig, tname, add)
    op("-", sig, tname, sub)
    op("*", sig, tname, mul)
    op("/", sig, tname, div)
    op("%", sig, tname, mod)
    op("-", tname, tname, lambda a: chk(-a))
    op("+", tname, tname, lambda a: a)
    op("@", tname, tname, lambda a: chk(abs(a)))
    op("&", sig, tname, _op.and_)
    op("|", sig, tname, _op.or_)
    op("#", sig, tname, _op.xor)
    op("~", tname, tname, _op.invert)
    op("<<", f"{tname},int4", tname, lambda a, b: chk(a << b) if b < 64 else 0)
    op(">>", f"{tname},int4", tname, lambda a, b: a >> b)
    FUNCS.setdefault("abs", []).append(FuncDef("abs", (_ty(tname),), _ty(tname), lambda a: chk(abs(a))))
    FUNCS.setdefault("mod", []).append(FuncDef("mod", (_ty(tname), _ty(tname)), _ty(tname), mod))


_int_ops("int2", -32768, 32767, "smallint")
_int_ops("int4", -2**31, 2**31 - 1, "integer")
_int_ops("int8", -2**63, 2**63 - 1, "bigint")


# ----------------------------------------------------------------------------- numeric

NUMERIC_MIN_SIG_DIGITS = 16


def _num_weight(d: Decimal) -> tuple[int, int]:
    """(weight in base-10000 digits, first base-10000 digit) of a nonzero decimal."""
    if d == 0:
        return 0, 0
    t = d.as_tuple()
    digits = "".join(map(str, t.digits))
    exp = t.exponent
    assert isinstance(exp, int)           # a letter only for NaN and infinities
    # position of the decimal point relative to the digit string
    ndig_int = len(digits) + exp          # digits before the decimal point
    # pad so that integer part length is a multiple of 4
    if ndig_int > 0:
        pad = (-ndig_int) % 4
        s = "0" * pad + digits
        weight = (ndig_int + pad) // 4 - 1
    else:
        lead = -ndig_int
        pad = lead % 4
        s = "0" * pad + digits
        weight = -(lead // 4) - 1
    s = s.ljust((len(s) + 3) // 4 * 4, "0")
    groups = [int(s[i:i + 4]) for i in range(0, len(s), 4)]
    while groups and groups[0] == 0:
        groups.pop(0)
        weight -= 1
    return weight, groups[0] if groups else 0


def _dscale(d: Decimal) -> int:
    e = d.as_tuple().exponent
    return -e if isinstance(e, int) and e < 0 else 0


def numeric_div(a: Decimal, b: Decimal) -> Decimal:
    if b == 0:
        raise _div0()
    if not a.is_finite() or not b.is_finite():
        with localcontext() as c:
            c.prec = 1000
            return a / b if not (a.is_nan() or b.is_nan()) else Decimal("NaN")
    w1, f1 = _num_weight(a)
    w2, f2 = _num_weight(b)
    qweight = w1 - w2
    if f1 <= f2:
        qweight -= 1
    rscale = NUMERIC_MIN_SIG_DIGITS - qweight * 4
    rscale = max(rscale, _dscale(a), _dscale(b), 0)
    rscale = min(rscale, 1000)
    with localcontext() as c:
        c.prec = 2000
        q = a / b
        return q.quantize(Decimal(1).scaleb(-rscale), rounding=ROUND_HALF_UP)


def _num(f: Callable[..., Decimal]) -> Callable[..., Decimal]:
    def g(*a):
        with localcontext() as c:
            c.prec = 1000
            return f(*a)
    return g


def _num_mod(a: Decimal, b: Decimal) -> Decimal:
    if b == 0:
        raise _div0()
    with localcontext() as c:
        c.prec = 1000
        return a.remainder_near(b) if False else a % b


op("+", "numeric,numeric", "numeric", _num(_op.add))
op("-", "numeric,numeric", "numeric", _num(_op.sub))
op("*", "numeric,numeric", "numeric", _num(_op.mul))
op("/", "numeric,numeric", "numeric", numeric_div)
op("%", "numeric,numeric", "numeric", _num_mod)
op("-", "numeric", "numeric", _op.neg)
op("+", "numeric", "numeric", lambda a: a)
op("@", "numeric", "numeric", abs)
def numeric_power(a: Decimal, b: Decimal) -> Decimal:
    if a == 0 and b < 0:
        raise PgError("2201F", "zero raised to a negative power is undefined")
    if a < 0 and b != b.to_integral_value():
        raise PgError("2201F", "a negative number raised to a non-integer power yields a complex result")
    if a == 0:
        return Decimal(1) if b == 0 else Decimal(0)
    val = float(b) * math.log10(abs(float(a)))
    rscale = NUMERIC_MIN_SIG_DIGITS - (int(val) if b != b.to_integral_value() else 0)
    rscale = min(max(rscale, _dscale(a), _dscale(b), 0), 1000)
    with localcontext() as c:
        c.prec = max(50, int(abs(val)) + rscale + 20)
        r = a ** b
        return r.quantize(Decimal(1).scaleb(-rscale), rounding=ROUND_HALF_UP)


op("^", "numeric,numeric", "numeric", numeric_power)


def _fdiv(a: float, b: float) -> float:
    if b == 0:
        raise _div0()
    return a / b


def _fchk(v: float) -> float:
    if v in (float("inf"), float("-inf")):
        raise PgError("22003", "value out of range: overflow")
    return v


for _t in ("float8", "float4"):
    op("+", f"{_t},{_t}", _t, lambda a, b: _fchk(a + b))
    op("-", f"{_t},{_t}", _t, lambda a, b: _fchk(a - b))
    op("*", f"{_t},{_t}", _t, lambda a, b: _fchk(a * b))
    op("/", f"{_t},{_t}", _t, _fdiv)
    op("-", _t, _t, _op.neg)
    op("+", _t, _t, lambda a: a)
    op("@", _t, _t, abs)
op("^", "float8,float8", "float8", lambda a, b: _fchk(math.pow(a, b)))
op("|/", "float8", "float8", lambda a: math.sqrt(a))


# ----------------------------------------------------------------------------- comparisons

def _cmp_ops(tname: str, key: Callable[[Any], Any] | None = None) -> None:
    sig = f"{tname},{tname}"
    if key is None:
        op("=", sig, "bool", _op.eq)
        op("<>", sig, "bool", _op.ne)
        op("<", sig, "bool", _op.lt)
        op(">", sig, "bool", _op.gt)
        op("<=", sig, "bool", _op.le)
        op(">=", sig, "bool", _op.ge)
    else:
        op("=", sig, "bool", lambda a, b: key(a) == key(b))
        op("<>", sig, "bool", lambda a, b: key(a) != key(b))
        op("<", sig, "bool", lambda a, b: key(a) < key(b))
        op(">", sig, "bool", lambda a, b: key(a) > key(b))
        op("<=", sig, "bool", lambda a, b: key(a) <= key(b))
        op(">=", sig, "bool", lambda a, b: key(a) >= key(b))


for _t in ("int2", "int4", "int8", "numeric", "float4", "float8", "text", "name", "bool", "date", "timestamp",
           "timestamptz", "interval", "time", "oid", "bytea", "char", "uuid", "jsonb", "xid", "regclass",
           "regtype", "pg_lsn"):
    _cmp_ops(_t)
_cmp_ops("bpchar", lambda s: s.rstrip(" "))
# cross-type integer comparisons exist in PostgreSQL (int48eq, ...): same semantics via coercion.
for _a in ("int2", "int4", "int8"):
    for _b in ("int2", "int4", "int8"):
        if _a != _b:
            for _s, _f in (("=", _op.eq), ("<>", _op.ne), ("<", _op.lt), (">", _op.gt), ("<=", _op.le),
                           (">=", _op.ge)):
                op(_s, f"{_a},{_b}", "bool", _f)
op("=", "anyarray,anyarray", "bool", _op.eq)
op("<>", "anyarray,anyarray", "bool", _op.ne)
op("<", "anyarray,anyarray", "bool", _op.lt)
op(">", "anyarray,anyarray", "bool", _op.gt)
op("=", "record,record", "bool", _op.eq)
op("<>", "record,record", "bool", _op.ne)
op("<", "record,record", "bool", _op.lt)
op(">", "record,record", "bool", _op.gt)
op("<=", "record,record", "bool", _op.le)
op(">=", "record,record", "bool", _op.ge)


# ----------------------------------------------------------------------------- strings

def _concat_any(a: Any, b: Any) -> str:
    return a + b


op("||", "text,text", "text", _op.add)


def _to_text_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return format_float8(v)
    if isinstance(v, Decimal):
        return format_numeric(v)
    if isinstance(v, _dt.datetime):
        return format_timestamptz(v) if v.tzinfo else format_timestamp(v)
    if isinstance(v, _dt.date):
        return format_date(v)
    if isinstance(v, list):
        return format_array_text(v, _to_text_value)
    if isinstance(v, bytes):
        return "\\x" + v.hex()
    if isinstance(v, Interval):
        return format_interval(v)
    if isinstance(v, tuple):
        return format_record(v)
    return str(v)


op("||", "text,anynonarray", "text", lambda a, b: a + _to_text_value(b))
op("||", "anynonarray,text", "text", lambda a, b: _to_text_value(a) + b)
op("||", "anyarray,anyarray", "anyarray", lambda a, b: a + b)
op("||", "anyarray,anyelement", "anyarray", lambda a, b: a + [b], strict=False)
op("||", "anyelement,anyarray", "anyarray", lambda a, b: [a] + b, strict=False)
op("||", "bytea,bytea", "bytea", _op.add)

_like_cache: dict[tuple[str, bool], re.Pattern] = {}


def like_regex(pat: str, ci: bool = False, escape: str = "\\") -> re.Pattern:
    key = (pat, ci)
    r = _like_cache.get(key)
    if r is not None:
        return r
    out = []
    i = 0
    while i < len(pat):
        c = pat[i]
        if escape and c == escape and i + 1 < len(pat):
            out.append(re.escape(pat[i + 1]))
            i += 2
            continue
        if c == "%":
            out.append(".*")
        elif c == "_":
            out.append(".")
        else:
            out.append(re.escape(c))
        i += 1
    r = re.compile("".join(out) + r"\Z", re.S | (re.I if ci else 0))
    if len(_like_cache) > 1000:
        _like_cache.clear()
    _like_cache[key] = r
    return r


def _like(a: str, p: str) -> bool:
    return like_regex(p).match(a) is not None


def _ilike(a: str, p: str) -> bool:
    return like_regex(p, True).match(a) is not None


_re_cache: dict[tuple[str, int], re.Pattern] = {}


def pg_regex(p: str, flags: int = 0) -> re.Pattern:
    key = (p, flags)
    r = _re_cache.get(key)
    if r is None:
        # POSIX classes used by clients
        q = p.replace("[[:alpha:]]", "[^\\W\\d_]").replace("[[:digit:]]", "\\d").replace("[[:space:]]", "\\s")
        q = q.replace("[[:alnum:]]", "[^\\W_]").replace("[[:upper:]]", "[A-Z]").replace("[[:lower:]]", "[a-z]")
        try:
            r = re.compile(q, flags)
        except re.error as e:
            raise PgError("2201B", f"invalid regular expression: {e}") from None
        if len(_re_cache) > 1000:
            _re_cache.clear()
        _re_cache[key] = r
    return r


for _t in ("text", "bpchar", "name"):
    op("~~", f"{_t},text", "bool", _like)
    op("!~~", f"{_t},text", "bool", lambda a, p: not _like(a, p))
    op("~~*", f"{_t},text", "bool", _ilike)
    op("!~~*", f"{_t},text", "bool", lambda a, p: not _ilike(a, p))
    op("~", f"{_t},text", "bool", lambda a, p: pg_regex(p).search(a) is not None)
    op("!~", f"{_t},text", "bool", lambda a, p: pg_regex(p).search(a) is None)
    op("~*", f"{_t},text", "bool", lambda a, p: pg_regex(p, re.I).search(a) is not None)
    op("!~*", f"{_t},text", "bool", lambda a, p: pg_regex(p, re.I).search(a) is None)


@fn("length|char_length|character_length", "text", "int4")
def _length(s: str) -> int:
    return len(s)


@fn("length|char_length|character_length", "bpchar", "int4")
def _length_bp(s: str) -> int:
    return len(s.rstrip(" "))


@fn("length|octet_length", "bytea", "int4")
def _length_b(s: bytes) -> int:
    return len(s)


@fn("octet_length", "text", "int4")
def _octet_length(s: str) -> int:
    return len(s.encode())


# The server's locale is C (as \l shows): case mapping touches ASCII letters only.
_UPPER = {c: c - 32 for c in range(97, 123)}
_LOWER = {c: c + 32 for c in range(65, 91)}


@fn("lower", "text", "text")
def _lower(s: str) -> str:
    return s.translate(_LOWER)


@fn("upper", "text", "text")
def _upper(s: str) -> str:
    return s.translate(_UPPER)


@fn("initcap", "text", "text")
def _initcap(s: str) -> str:
    return re.sub(r"[A-Za-z0-9]+", lambda m: m.group(0)[0].translate(_UPPER) + m.group(0)[1:].translate(_LOWER), s)


@fn("substr|substring", "text,int4", "text")
def _substr2(s: str, start: int) -> str:
    return s[max(start - 1, 0):]


@fn("substr|substring", "text,int4,int4", "text")
def _substr3(s: str, start: int, n: int) -> str:
    if n < 0:
        raise PgError("22011", "negative substring length not allowed")
    end = start - 1 + n
    return s[max(start - 1, 0):max(end, 0)]


@fn("substring", "text,text", "text")
def _substring_re(s: str, p: str) -> str | None:
    m = pg_regex(p).search(s)
    if m is None:
        return None
    return m.group(1) if m.groups() else m.group(0)


@fn("strpos|position", "text,text", "int4")
def _strpos(s: str, sub: str) -> int:
    return s.find(sub) + 1


@fn("replace", "text,text,text", "text")
def _replace(s: str, a: str, b: str) -> str:
    return s.replace(a, b) if a else s


@fn("btrim|trim", "text", "text")
def _btrim1(s: str) -> str:
    return s.strip(" ")


@fn("btrim|trim", "text,text", "text")
def _btrim2(s: str, chars: str) -> str:
    return s.strip(chars)


@fn("ltrim", "text", "text")
def _ltrim1(s: str) -> str:
    return s.lstrip(" ")


@fn("ltrim", "text,text", "text")
def _ltrim2(s: str, chars: str) -> str:
    return s.lstrip(chars)


@fn("rtrim", "text", "text")
def _rtrim1(s: str) -> str:
    return s.rstrip(" ")


@fn("rtrim", "text,text", "text")
def _rtrim2(s: str, chars: str) -> str:
    return s.rstrip(chars)


@fn("lpad", "text,int4", "text")
def _lpad2(s: str, n: int) -> str:
    return _lpad3(s, n, " ")


@fn("lpad", "text,int4,text", "text")
def _lpad3(s: str, n: int, fill: str) -> str:
    if n <= len(s) or not fill:
        return s[:max(n, 0)]
    pad = (fill * (n // len(fill) + 1))[:n - len(s)]
    return pad + s


@fn("rpad", "text,int4", "text")
def _rpad2(s: str, n: int) -> str:
    return _rpad3(s, n, " ")


@fn("rpad", "text,int4,text", "text")
def _rpad3(s: str, n: int, fill: str) -> str:
    if n <= len(s) or not fill:
        return s[:max(n, 0)]
    return s + (fill * (n // len(fill) + 1))[:n - len(s)]


@fn("left", "text,int4", "text")
def _left(s: str, n: int) -> str:
    return s[:n] if n >= 0 else s[:n]


@fn("right", "text,int4", "text")
def _right(s: str, n: int) -> str:
    return (s[-n:] if n > 0 else "") if n >= 0 else s[-n:]


@fn("repeat", "text,int4", "text")
def _repeat(s: str, n: int) -> str:
    return s * max(n, 0)


@fn("reverse", "text", "text")
def _reverse(s: str) -> str:
    return s[::-1]


@fn("split_part", "text,text,int4", "text")
def _split_part(s: str, d: str, n: int) -> str:
    parts = s.split(d) if d else [s]
    if n == 0:
        raise PgError("22023", "field position must not be zero")
    if n < 0:
        n = len(parts) + n + 1
    return parts[n - 1] if 0 < n <= len(parts) else ""


@fn("starts_with", "text,text", "bool")
def _starts_with(s: str, p: str) -> bool:
    return s.startswith(p)


@fn("ascii", "text", "int4")
def _ascii(s: str) -> int:
    return ord(s[0]) if s else 0


@fn("chr", "int4", "text")
def _chr(n: int) -> str:
    return chr(n)


@fn("md5", "text", "text")
def _md5(s: str) -> str:
    return hashlib.md5(s.encode()).hexdigest()


@fn("md5", "bytea", "text")
def _md5b(s: bytes) -> str:
    return hashlib.md5(s).hexdigest()


@fn("concat", "any", "text", strict=False, variadic="any")
def _concat(*a: Any) -> str:
    return "".join(_to_text_value(x) for x in a if x is not None)


@fn("concat_ws", "text,any", "text", strict=False, variadic="any")
def _concat_ws(sep: str, *a: Any) -> str | None:
    if sep is None:
        return None
    return sep.join(_to_text_value(x) for x in a if x is not None)


fn("quote_ident", "text", "text")(quote_ident)
fn("quote_literal", "text", "text")(quote_literal)
fn("quote_nullable", "text", "text", strict=False)(quote_nullable)


@fn("format", "text,any", "text", strict=False, variadic="any")
def _format(fmt: str, *args: Any) -> str | None:
    if fmt is None:
        return None
    it = iter(args)
    out = []
    i = 0
    while i < len(fmt):
        c = fmt[i]
        if c == "%" and i + 1 < len(fmt):
            k = fmt[i + 1]
            i += 2
            if k == "%":
                out.append("%")
                continue
            v = next(it, None)
            if k == "s":
                out.append("" if v is None else _to_text_value(v))
            elif k == "I":
                out.append(quote_ident(_to_text_value(v)))
            elif k == "L":
                out.append("NULL" if v is None else quote_literal(_to_text_value(v)))
            continue
        out.append(c)
        i += 1
    return "".join(out)


@fn("format", "text", "text")
def _format1(fmt: str) -> str:
    return _format(fmt)


@fn("regexp_replace", "text,text,text", "text")
def _regexp_replace(s: str, p: str, r: str) -> str:
    return pg_regex(p).sub(_pg_repl(r), s, count=1)


@fn("regexp_replace", "text,text,text,text", "text")
def _regexp_replace4(s: str, p: str, r: str, flags: str) -> str:
    f = re.I if "i" in flags else 0
    return pg_regex(p, f).sub(_pg_repl(r), s, count=0 if "g" in flags else 1)


def _pg_repl(r: str) -> str:
    return re.sub(r"\\(\d)", r"\\g<\1>", r.replace("\\&", "\\g<0>"))


@fn("regexp_match", "text,text", "text[]")
def _regexp_match(s: str, p: str) -> list | None:
    m = pg_regex(p).search(s)
    if m is None:
        return None
    return list(m.groups()) if m.groups() else [m.group(0)]


@fn("string_to_array", "text,text", "text[]", strict=False)
def _string_to_array(s: str | None, d: str | None) -> list | None:
    if s is None:
        return None
    if s == "":
        return []
    if d is None:
        return list(s)
    if d == "":
        return [s]
    return s.split(d)


@fn("to_hex", "int8", "text")
def _to_hex(n: int) -> str:
    return format(n & 0xFFFFFFFFFFFFFFFF if n < 0 else n, "x")


@fn("encode", "bytea,text", "text")
def _encode(b: bytes, f: str) -> str:
    import base64
    if f == "hex":
        return b.hex()
    if f == "base64":
        return base64.b64encode(b).decode()
    return b.decode("latin-1")


@fn("decode", "text,text", "bytea")
def _decode(s: str, f: str) -> bytes:
    import base64
    if f == "hex":
        return bytes.fromhex(s)
    if f == "base64":
        return base64.b64decode(s)
    return s.encode()


@fn("gen_random_uuid", "", "uuid", volatile=True)
def _gen_random_uuid() -> Any:
    import uuid
    return uuid.uuid4()


# ----------------------------------------------------------------------------- math

@fn("round", "numeric", "numeric")
def _round_n(a: Decimal) -> Decimal:
    return a.quantize(Decimal(1), rounding=ROUND_HALF_UP) if a.is_finite() else a


@fn("round", "numeric,int4", "numeric")
def _round_n2(a: Decimal, s: int) -> Decimal:
    if not a.is_finite():
        return a
    with localcontext() as c:
        c.prec = 1000
        r = a.quantize(Decimal(1).scaleb(-s), rounding=ROUND_HALF_UP)
        return r if s >= 0 else r.quantize(Decimal(1))


@fn("round", "float8", "float8")
def _round_f(a: float) -> float:
    return float(round(a))


@fn("trunc", "numeric", "numeric")
def _trunc_n(a: Decimal) -> Decimal:
    return a.to_integral_value(rounding="ROUND_DOWN")


@fn("trunc", "numeric,int4", "numeric")
def _trunc_n2(a: Decimal, s: int) -> Decimal:
    return a.quantize(Decimal(1).scaleb(-s), rounding="ROUND_DOWN")


@fn("trunc", "float8", "float8")
def _trunc_f(a: float) -> float:
    return float(math.trunc(a))


@fn("ceil|ceiling", "numeric", "numeric")
def _ceil_n(a: Decimal) -> Decimal:
    return a.to_integral_value(rounding="ROUND_CEILING")


@fn("ceil|ceiling", "float8", "float8")
def _ceil_f(a: float) -> float:
    return float(math.ceil(a))


@fn("floor", "numeric", "numeric")
def _floor_n(a: Decimal) -> Decimal:
    return a.to_integral_value(rounding=ROUND_FLOOR)


@fn("floor", "float8", "float8")
def _floor_f(a: float) -> float:
    return float(math.floor(a))


@fn("abs", "numeric", "numeric")
def _abs_n(a: Decimal) -> Decimal:
    return abs(a)


@fn("abs", "float8", "float8")
def _abs_f(a: float) -> float:
    return abs(a)


@fn("sign", "numeric", "numeric")
def _sign_n(a: Decimal) -> Decimal:
    return Decimal((a > 0) - (a < 0))


@fn("sign", "float8", "float8")
def _sign_f(a: float) -> float:
    return float((a > 0) - (a < 0))


@fn("mod", "numeric,numeric", "numeric")
def _mod_n(a: Decimal, b: Decimal) -> Decimal:
    return _num_mod(a, b)


@fn("div", "numeric,numeric", "numeric")
def _div_n(a: Decimal, b: Decimal) -> Decimal:
    if b == 0:
        raise _div0()
    with localcontext() as c:
        c.prec = 1000
        return (a / b).to_integral_value(rounding="ROUND_DOWN")


@fn("power|pow", "float8,float8", "float8")
def _power(a: float, b: float) -> float:
    return _fchk(math.pow(a, b))


@fn("power|pow", "numeric,numeric", "numeric")
def _power_n(a: Decimal, b: Decimal) -> Decimal:
    return numeric_power(a, b)


@fn("sqrt", "float8", "float8")
def _sqrt(a: float) -> float:
    if a < 0:
        raise PgError("2201F", "cannot take square root of a negative number")
    return math.sqrt(a)


@fn("sqrt", "numeric", "numeric")
def _sqrt_n(a: Decimal) -> Decimal:
    if a < 0:
        raise PgError("2201F", "cannot take square root of a negative number")
    w, _ = _num_weight(a) if a != 0 else (0, 0)
    sweight = (w + 1) * 4 // 2 - 1
    rscale = min(max(NUMERIC_MIN_SIG_DIGITS - sweight, _dscale(a), 0), 1000)
    with localcontext() as c:
        c.prec = rscale + 40
        return a.sqrt().quantize(Decimal(1).scaleb(-rscale), rounding=ROUND_HALF_UP)


@fn("exp", "float8", "float8")
def _exp(a: float) -> float:
    return _fchk(math.exp(a))


@fn("ln", "float8", "float8")
def _ln(a: float) -> float:
    if a <= 0:
        raise PgError("2201E", "cannot take logarithm of zero" if a == 0 else
                      "cannot take logarithm of a negative number")
    return math.log(a)


@fn("log|log10", "float8", "float8")
def _log10(a: float) -> float:
    if a <= 0:
        raise PgError("2201E", "cannot take logarithm of zero" if a == 0 else
                      "cannot take logarithm of a negative number")
    return math.log10(a)


@fn("pi", "", "float8")
def _pi() -> float:
    return math.pi


@fn("random", "", "float8", volatile=True)
def _random_f() -> float:
    return _random.random()


@fn("setseed", "float8", "void", volatile=True)
def _setseed(s: float) -> None:
    _random.seed(s)


@fn("width_bucket", "float8,float8,float8,int4", "int4")
def _width_bucket(v: float, lo: float, hi: float, n: int) -> int:
    if v < lo:
        return 0
    if v >= hi:
        return n + 1
    return int((v - lo) / (hi - lo) * n) + 1


# ----------------------------------------------------------------------------- date/time

def _add_months(d: _dt.datetime | _dt.date, months: int):
    y, m = divmod(d.month - 1 + months, 12)
    year = d.year + y
    month = m + 1
    import calendar
    day = min(d.day, calendar.monthrange(year, month)[1])
    return d.replace(year=year, month=month, day=day)


def ts_plus_interval(ts: _dt.datetime, iv: Interval) -> _dt.datetime:
    if iv.months:
        ts = _add_months(ts, iv.months)
    return ts + _dt.timedelta(days=iv.days, microseconds=iv.microseconds)


def _tstz_plus_interval(env: Any, ts: _dt.datetime, iv: Interval) -> _dt.datetime:
    if iv.months or iv.days:
        local = ts.astimezone(env.tz)
        if iv.months:
            local = _add_months(local, iv.months)
        local = (local.replace(tzinfo=None) + _dt.timedelta(days=iv.days)).replace(tzinfo=env.tz)
        ts = local.astimezone(UTC)
    return ts + _dt.timedelta(microseconds=iv.microseconds)


def _td_to_interval(td: _dt.timedelta) -> Interval:
    us = td.days * 86400 * 10**6 + td.seconds * 10**6 + td.microseconds
    days, rem = divmod(abs(us), 86400 * 10**6)
    sign = -1 if us < 0 else 1
    return Interval(0, sign * days, sign * rem)


op("+", "date,int4", "date", lambda d, n: d + _dt.timedelta(days=n))
op("+", "int4,date", "date", lambda n, d: d + _dt.timedelta(days=n))
op("-", "date,int4", "date", lambda d, n: d - _dt.timedelta(days=n))
op("-", "date,date", "int4", lambda a, b: (a - b).days)
op("+", "date,interval", "timestamp",
   lambda d, iv: ts_plus_interval(_dt.datetime(d.year, d.month, d.day), iv))
op("-", "date,interval", "timestamp",
   lambda d, iv: ts_plus_interval(_dt.datetime(d.year, d.month, d.day), -iv))
op("+", "timestamp,interval", "timestamp", ts_plus_interval)
op("-", "timestamp,interval", "timestamp", lambda t, iv: ts_plus_interval(t, -iv))
op("+", "interval,timestamp", "timestamp", lambda iv, t: ts_plus_interval(t, iv))
op("+", "timestamptz,interval", "timestamptz", _tstz_plus_interval, env=True)
op("-", "timestamptz,interval", "timestamptz", lambda env, t, iv: _tstz_plus_interval(env, t, -iv), env=True)
op("+", "interval,timestamptz", "timestamptz", lambda env, iv, t: _tstz_plus_interval(env, t, iv), env=True)
op("-", "timestamp,timestamp", "interval", lambda a, b: _td_to_interval(a - b))
op("-", "timestamptz,timestamptz", "interval", lambda a, b: _td_to_interval(a - b))
op("+", "interval,interval", "interval", _op.add)
op("-", "interval,interval", "interval", _op.sub)
op("-", "interval", "interval", _op.neg)
def _interval_mul(iv: Interval, f: float) -> Interval:
    """interval_mul: fractional months cascade into days (30 per month), fractional days
    into time, as PostgreSQL does."""
    m = iv.months * f
    months = int(m)
    d = iv.days * f + (m - months) * 30
    days = int(d)
    us = iv.microseconds * f + (d - days) * 86_400_000_000
    return Interval(months, days, int(round(us)))


def _interval_div(iv: Interval, f: float) -> Interval:
    if f == 0:
        raise _div0()
    m = iv.months / f
    months = int(m)
    d = iv.days / f + (m - months) * 30
    days = int(d)
    us = iv.microseconds / f + (d - days) * 86_400_000_000
    return Interval(months, days, int(round(us)))


op("*", "interval,float8", "interval", _interval_mul)
op("*", "float8,interval", "interval", lambda f, iv: _interval_mul(iv, f))
op("/", "interval,float8", "interval", _interval_div)


@fn("now|transaction_timestamp", "", "timestamptz", env=True)
def _now(env: Any) -> _dt.datetime:
    return env.xact_timestamp()


@fn("statement_timestamp", "", "timestamptz", env=True)
def _stmt_ts(env: Any) -> _dt.datetime:
    return env.statement_timestamp()


@fn("clock_timestamp", "", "timestamptz", volatile=True)
def _clock_ts() -> _dt.datetime:
    return _dt.datetime.now(UTC)


@fn("timeofday", "", "text", volatile=True)
def _timeofday() -> str:
    return _dt.datetime.now(UTC).strftime("%a %b %d %H:%M:%S.%f %Y UTC")


_FIELDS = {"microseconds", "milliseconds", "second", "minute", "hour", "day", "week", "month", "quarter",
           "year", "decade", "century", "millennium", "dow", "doy", "epoch", "isodow", "isoyear", "julian",
           "timezone"}


def _extract(field: str, v: Any, env: Any = None) -> Decimal:
    f = field.lower()
    f = {"seconds": "second", "minutes": "minute", "hours": "hour", "days": "day", "months": "month",
         "years": "year", "mon": "month", "mons": "month", "secs": "second", "min": "minute",
         "mins": "minute", "y": "year", "d": "day", "h": "hour", "m": "minute", "s": "second",
         "us": "microseconds", "ms": "milliseconds", "weeks": "week"}.get(f, f)
    if isinstance(v, Interval):
        us = v.microseconds
        if f == "epoch":
            return Decimal(v.months // 12 * 365 * 86400 + (v.months % 12) * 30 * 86400 + v.days * 86400) + \
                Decimal(us).scaleb(-6)
        if f == "year":
            return Decimal(v.months // 12)
        if f == "month":
            return Decimal(v.months % 12)
        if f == "day":
            return Decimal(v.days)
        if f == "hour":
            return Decimal(us // 3600_000_000)
        if f == "minute":
            return Decimal(us // 60_000_000 % 60)
        if f == "second":
            return (Decimal(us % 60_000_000).scaleb(-6)).quantize(Decimal("0.000001"))
        raise PgError("0A000", f'unit "{field}" not supported for type interval')
    if isinstance(v, _dt.datetime) and v.tzinfo is not None and env is not None and f != "epoch":
        v = v.astimezone(env.tz)
    if f == "epoch":
        if isinstance(v, _dt.datetime):
            base = _dt.datetime(1970, 1, 1, tzinfo=UTC) if v.tzinfo else _dt.datetime(1970, 1, 1)
            td = v - base
            return (Decimal(td.days * 86400 + td.seconds) + Decimal(td.microseconds).scaleb(-6)).quantize(
                Decimal("0.000001"))
        if isinstance(v, _dt.date):
            return Decimal((v - _dt.date(1970, 1, 1)).days * 86400)
    if isinstance(v, _dt.time):
        if f == "hour":
            return Decimal(v.hour)
        if f == "minute":
            return Decimal(v.minute)
        if f == "second":
            return (Decimal(v.second) + Decimal(v.microsecond).scaleb(-6)).quantize(Decimal("0.000001"))
    d = v
    if f == "year":
        return Decimal(d.year)
    if f == "month":
        return Decimal(d.month)
    if f == "day":
        return Decimal(d.day)
    if f == "quarter":
        return Decimal((d.month - 1) // 3 + 1)
    if f == "decade":
        return Decimal(d.year // 10)
    if f == "century":
        return Decimal((d.year - 1) // 100 + 1)
    if f == "millennium":
        return Decimal((d.year - 1) // 1000 + 1)
    if f == "dow":
        return Decimal(d.isoweekday() % 7)
    if f == "isodow":
        return Decimal(d.isoweekday())
    if f == "doy":
        return Decimal(d.timetuple().tm_yday)
    if f == "week":
        return Decimal(d.isocalendar()[1])
    if f == "isoyear":
        return Decimal(d.isocalendar()[0])
    if f == "julian":
        return Decimal(d.toordinal() + 1721425)
    if isinstance(d, _dt.datetime):
        if f == "hour":
            return Decimal(d.hour)
        if f == "minute":
            return Decimal(d.minute)
        if f == "second":
            return (Decimal(d.second) + Decimal(d.microsecond).scaleb(-6)).quantize(Decimal("0.000001"))
        if f == "milliseconds":
            return (Decimal(d.second * 1000) + Decimal(d.microsecond).scaleb(-3)).quantize(Decimal("0.001"))
        if f == "microseconds":
            return Decimal(d.second * 1_000_000 + d.microsecond)
        if f == "timezone":
            off = d.utcoffset()
            return Decimal(int(off.total_seconds())) if off is not None else Decimal(0)
    typ = "date" if not isinstance(d, _dt.datetime) else "timestamp"
    raise PgError("22023", f'unit "{field}" not recognized for type {typ}')


for _t in ("timestamp", "timestamptz", "date", "interval", "time"):
    FUNCS.setdefault("extract", []).append(FuncDef("extract", (T.TEXT, _ty(_t)), T.NUMERIC,
                                                   lambda env, f, v: _extract(f, v, env), env=True))
    FUNCS.setdefault("date_part", []).append(FuncDef("date_part", (T.TEXT, _ty(_t)), T.FLOAT8,
                                                     lambda env, f, v: float(_extract(f, v, env)), env=True))


def _date_trunc(field: str, v: _dt.datetime) -> _dt.datetime:
    f = field.lower()
    if f == "microseconds":
        return v
    if f == "milliseconds":
        return v.replace(microsecond=v.microsecond // 1000 * 1000)
    if f == "second":
        return v.replace(microsecond=0)
    if f == "minute":
        return v.replace(second=0, microsecond=0)
    if f == "hour":
        return v.replace(minute=0, second=0, microsecond=0)
    if f == "day":
        return v.replace(hour=0, minute=0, second=0, microsecond=0)
    if f == "week":
        d = v - _dt.timedelta(days=v.weekday())
        return d.replace(hour=0, minute=0, second=0, microsecond=0)
    if f == "month":
        return v.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if f == "quarter":
        return v.replace(month=(v.month - 1) // 3 * 3 + 1, day=1, hour=0, minute=0, second=0, microsecond=0)
    if f == "year":
        return v.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    if f == "decade":
        return v.replace(year=v.year // 10 * 10, month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    if f == "century":
        return v.replace(year=(v.year - 1) // 100 * 100 + 1, month=1, day=1, hour=0, minute=0, second=0,
                         microsecond=0)
    raise PgError("22023", f'unit "{field}" not recognized for type timestamp without time zone')


@fn("date_trunc", "text,timestamp", "timestamp")
def _date_trunc_ts(f: str, v: _dt.datetime) -> _dt.datetime:
    return _date_trunc(f, v)


@fn("date_trunc", "text,timestamptz", "timestamptz", env=True)
def _date_trunc_tstz(env: Any, f: str, v: _dt.datetime) -> _dt.datetime:
    local = v.astimezone(env.tz).replace(tzinfo=None)
    return _date_trunc(f, local).replace(tzinfo=env.tz).astimezone(UTC)


@fn("make_date", "int4,int4,int4", "date")
def _make_date(y: int, m: int, d: int) -> _dt.date:
    try:
        return _dt.date(y, m, d)
    except ValueError:
        raise PgError("22008", f"date field value out of range: {y}-{m:02d}-{d:02d}") from None


@fn("to_timestamp", "float8", "timestamptz")
def _to_timestamp(f: float) -> _dt.datetime:
    return _dt.datetime(1970, 1, 1, tzinfo=UTC) + _dt.timedelta(seconds=f)


@fn("justify_days", "interval", "interval")
def _justify_days(iv: Interval) -> Interval:
    m, d = divmod(iv.days, 30)
    return Interval(iv.months + m, d, iv.microseconds)


@fn("isfinite", "timestamptz", "bool")
def _isfinite(v: Any) -> bool:
    return True


# ----------------------------------------------------------------------------- arrays

@fn("array_length", "anyarray,int4", "int4")
def _array_length(a: list, dim: int) -> int | None:
    cur: Any = a
    for _ in range(dim - 1):
        if not cur or not isinstance(cur[0], list):
            return None
        cur = cur[0]
    return len(cur) if cur else None


@fn("array_upper", "anyarray,int4", "int4")
def _array_upper(a: list, dim: int) -> int | None:
    return _array_length(a, dim)


@fn("array_lower", "anyarray,int4", "int4")
def _array_lower(a: list, dim: int) -> int | None:
    return 1 if _array_length(a, dim) else None


@fn("array_ndims", "anyarray", "int4")
def _array_ndims(a: list) -> int | None:
    if not a:
        return None
    n = 0
    cur: Any = a
    while isinstance(cur, list):
        n += 1
        cur = cur[0] if cur else None
    return n


@fn("cardinality", "anyarray", "int4")
def _cardinality(a: list) -> int:
    return len(array_elements(a))


@fn("array_position", "anyarray,anyelement", "int4", strict=False)
def _array_position(a: list | None, x: Any) -> int | None:
    if a is None:
        return None
    for i, y in enumerate(a):
        if y == x and (x is not None or y is None):
            return i + 1
    return None


@fn("array_positions", "anyarray,anyelement", "int4[]", strict=False)
def _array_positions(a: list | None, x: Any) -> list | None:
    if a is None:
        return None
    return [i + 1 for i, y in enumerate(a) if y == x]


@fn("array_append", "anyarray,anyelement", "anyarray", strict=False)
def _array_append(a: list | None, x: Any) -> list:
    return (a or []) + [x]


@fn("array_prepend", "anyelement,anyarray", "anyarray", strict=False)
def _array_prepend(x: Any, a: list | None) -> list:
    return [x] + (a or [])


@fn("array_cat", "anyarray,anyarray", "anyarray", strict=False)
def _array_cat(a: list | None, b: list | None) -> list | None:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


@fn("array_remove", "anyarray,anyelement", "anyarray", strict=False)
def _array_remove(a: list | None, x: Any) -> list | None:
    if a is None:
        return None
    return [y for y in a if not (y == x or (x is None and y is None))]


@fn("array_to_string", "anyarray,text", "text")
def _array_to_string(a: list, sep: str) -> str:
    return sep.join(_to_text_value(x) for x in array_elements(a) if x is not None)


@fn("array_to_string", "anyarray,text,text", "text", strict=False)
def _array_to_string3(a: list | None, sep: str | None, null: str | None) -> str | None:
    if a is None or sep is None:
        return None
    out = []
    for x in array_elements(a):
        if x is not None:
            out.append(_to_text_value(x))
        elif null is not None:             # NULL elements are left out without a null string
            out.append(null)
    return sep.join(out)


op("@>", "anyarray,anyarray", "bool", lambda a, b: all(x in a for x in b))
op("<@", "anyarray,anyarray", "bool", lambda a, b: all(x in b for x in a))
op("&&", "anyarray,anyarray", "bool", lambda a, b: any(x in b for x in a if x is not None))


# ----------------------------------------------------------------------------- json

def json_load(s: str) -> Any:
    import json
    return json.loads(s, parse_float=Decimal)


def json_dump(o: Any) -> str:
    return jsonb_from_python(o)


def _jget(j: str, k: Any) -> Any:
    o = json_load(j)
    if isinstance(k, str):
        if isinstance(o, dict) and k in o:
            return o[k]
        return _MISSING
    if isinstance(o, list):
        if -len(o) <= k < len(o):
            return o[k]
    return _MISSING


_MISSING = object()


def _jtext(v: Any) -> str | None:
    if v is _MISSING or v is None:
        return None
    if isinstance(v, str):
        return v
    return json_dump(v)


for _jt in ("jsonb", "json"):
    op("->", f"{_jt},text", _jt, lambda j, k: (lambda v: None if v is _MISSING else json_dump(v))(_jget(j, k)))
    op("->", f"{_jt},int4", _jt, lambda j, k: (lambda v: None if v is _MISSING else json_dump(v))(_jget(j, k)))
    op("->>", f"{_jt},text", "text", lambda j, k: _jtext(_jget(j, k)))
    op("->>", f"{_jt},int4", "text", lambda j, k: _jtext(_jget(j, k)))


def _jcontains(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return all(k in a and _jcontains(a[k], v) for k, v in b.items())
    if isinstance(a, list) and isinstance(b, list):
        return all(any(_jcontains(x, y) for x in a) for y in b)
    if isinstance(a, list) and not isinstance(b, (list, dict)):
        return b in a
    return a == b


op("@>", "jsonb,jsonb", "bool", lambda a, b: _jcontains(json_load(a), json_load(b)))
op("<@", "jsonb,jsonb", "bool", lambda a, b: _jcontains(json_load(b), json_load(a)))
op("?", "jsonb,text", "bool", lambda a, k: (lambda o: k in o if isinstance(o, (dict, list)) else o == k)(json_load(a)))


@fn("jsonb_typeof|json_typeof", "jsonb", "text")
def _jsonb_typeof(j: str) -> str:
    o = json_load(j)
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(o), "number")


@fn("jsonb_array_length|json_array_length", "jsonb", "int4")
def _jsonb_array_length(j: str) -> int:
    o = json_load(j)
    if not isinstance(o, list):
        raise PgError("22023", "cannot get array length of a non-array")
    return len(o)


@fn("to_jsonb|to_json", "anyelement", "jsonb", strict=False)
def to_jsonb(v: Any) -> str | None:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, Decimal, float)):
        return _to_text_value(v)
    if isinstance(v, list):
        return "[" + ", ".join(to_jsonb(x) for x in v) + "]"
    import json
    if isinstance(v, tuple):
        names = getattr(v, "names", None) or tuple(f"f{i + 1}" for i in range(len(v)))
        return "{" + ", ".join(json.dumps(n, ensure_ascii=False) + ": " + to_jsonb(x) for n, x in zip(names, v)) + "}"
    if isinstance(v, str) and v[:1] in ("{", "[") and False:
        return v
    return json.dumps(_to_text_value(v), ensure_ascii=False)


@fn("json_build_object", "any", "json", strict=False, variadic="any")
def _json_build_object(*a: Any) -> str:
    if len(a) % 2:
        raise PgError("22023", "argument list must have even number of elements")
    import json
    return "{" + ", ".join(json.dumps(_to_text_value(a[i])) + " : " + to_jsonb(a[i + 1])
                           for i in range(0, len(a), 2)) + "}"


@fn("jsonb_build_object", "any", "jsonb", strict=False, variadic="any")
def _jsonb_build_object(*a: Any) -> str:
    if len(a) % 2:
        raise PgError("22023", "argument list must have even number of elements")
    parts = {}
    for i in range(0, len(a), 2):
        parts[_to_text_value(a[i])] = json_load(to_jsonb(a[i + 1]))
    return json_dump(parts)


@fn("jsonb_build_array|json_build_array", "any", "jsonb", strict=False, variadic="any")
def _jsonb_build_array(*a: Any) -> str:
    return "[" + ", ".join(to_jsonb(x) for x in a) + "]"


# ----------------------------------------------------------------------------- misc

@fn("num_nulls", "any", "int4", strict=False, variadic="any")
def _num_nulls(*a: Any) -> int:
    return sum(1 for x in a if x is None)


@fn("num_nonnulls", "any", "int4", strict=False, variadic="any")
def _num_nonnulls(*a: Any) -> int:
    return sum(1 for x in a if x is not None)


@fn("pg_sleep", "float8", "void", volatile=True, env=True)
def _pg_sleep(env: Any, secs: float) -> None:
    env.sleep(secs)


@fn("bool", "int4", "bool")
def _bool_int(v: int) -> bool:
    return v != 0


# ----------------------------------------------------------------------------- aggregates

def _sum_final(s):
    return s


def _agg_sum_int(s, x):
    return x if s is None else s + x


def _avg_step(s, x):
    if s is None:
        return [x, 1]
    s[0] += x
    s[1] += 1
    return s


def _avg_final_num(s):
    if s is None:
        return None
    return numeric_div(Decimal(s[0]), Decimal(s[1]))


def _avg_final_float(s):
    if s is None:
        return None
    return s[0] / s[1]


def _int8_sum_check(v):
    if v is not None and not (-2**63 <= v <= 2**63 - 1):
        raise _ovf("bigint")
    return v


agg("count", "", "int8", lambda: 0, lambda s: s + 1, lambda s: s, strict=False)
agg("count", "any", "int8", lambda: 0, lambda s, x: s + 1, lambda s: s)
agg("sum", "int2", "int8", lambda: None, _agg_sum_int, _sum_final)
agg("sum", "int4", "int8", lambda: None, _agg_sum_int, _int8_sum_check)
agg("sum", "int8", "numeric", lambda: None, _agg_sum_int, lambda s: None if s is None else Decimal(s))
agg("sum", "numeric", "numeric", lambda: None, lambda s, x: x if s is None else _num(_op.add)(s, x), _sum_final)
agg("sum", "float8", "float8", lambda: None, _agg_sum_int, _sum_final)
agg("sum", "float4", "float4", lambda: None, _agg_sum_int, _sum_final)
agg("sum", "interval", "interval", lambda: None, _agg_sum_int, _sum_final)
agg("avg", "int2", "numeric", lambda: None, _avg_step, _avg_final_num)
agg("avg", "int4", "numeric", lambda: None, _avg_step, _avg_final_num)
agg("avg", "int8", "numeric", lambda: None, _avg_step, _avg_final_num)
agg("avg", "numeric", "numeric", lambda: None, _avg_step, _avg_final_num)
agg("avg", "float8", "float8", lambda: None, _avg_step, _avg_final_float)
agg("avg", "float4", "float8", lambda: None, _avg_step, _avg_final_float)


def _minmax(kind: str):
    if kind == "min":
        return lambda s, x: x if s is None or x < s else s
    return lambda s, x: x if s is None or x > s else s


for _t in ("int2", "int4", "int8", "numeric", "float4", "float8", "text", "date", "timestamp", "timestamptz",
           "interval", "time", "oid", "bpchar", "anyarray", "bool", "name", "uuid"):
    _rt = "text" if _t == "name" else _t
    agg("min", _t, _rt, lambda: None, _minmax("min"), _sum_final)
    agg("max", _t, _rt, lambda: None, _minmax("max"), _sum_final)
agg("bool_and|every", "bool", "bool", lambda: None, lambda s, x: x if s is None else (s and x), _sum_final)
agg("bool_or", "bool", "bool", lambda: None, lambda s, x: x if s is None else (s or x), _sum_final)
agg("array_agg", "anynonarray", "anyarray", lambda: None,
    lambda s, x: [x] if s is None else (s.append(x) or s), _sum_final, strict=False)
agg("string_agg", "text,text", "text", lambda: None,
    lambda s, x, d: (x, d, [x]) if s is None else (s[2].append(d) or s[2].append(x) or s),
    lambda s: None if s is None else "".join(s[2]))
agg("jsonb_agg", "anyelement", "jsonb", lambda: None,
    lambda s, x: [x] if s is None else (s.append(x) or s),
    lambda s: None if s is None else "[" + ", ".join(to_jsonb(x) for x in s) + "]", strict=False)


def _to_json_compact(v: Any) -> str:
    """json (not jsonb) text of a value: rows as row_to_json prints them."""
    import json
    if isinstance(v, tuple):
        names = getattr(v, "names", None) or tuple(f"f{i + 1}" for i in range(len(v)))
        return "{" + ",".join(json.dumps(n, ensure_ascii=False) + ":" + _to_json_compact(x)
                              for n, x in zip(names, v)) + "}"
    if isinstance(v, list):
        return "[" + ",".join(_to_json_compact(x) for x in v) + "]"
    return to_jsonb(v)


agg("json_agg", "anyelement", "json", lambda: None,
    lambda s, x: [x] if s is None else (s.append(x) or s),
    lambda s: None if s is None else "[" + ", \n ".join(_to_json_compact(x) for x in s) + "]", strict=False)


def percentile_final(name: str, is_array: bool):
    """Final function of percentile_cont / percentile_disc over the sorted values."""
    def one(vals: list, f: float) -> Any:
        if f is None:
            return None
        if not 0 <= f <= 1:
            raise PgError("22003", f"percentile value {f} is not between 0 and 1")
        n = len(vals)
        if name == "percentile_disc":
            k = max(0, math.ceil(f * n) - 1)
            return vals[min(k, n - 1)]
        pos = f * (n - 1)
        lo = math.floor(pos)
        hi = math.ceil(pos)
        a, b = vals[lo], vals[hi]
        if lo == hi:
            return a
        if isinstance(a, Interval):
            frac = pos - lo
            us = a._key() + (b._key() - a._key()) * frac
            return Interval(0, 0, int(round(us)))
        return a + (b - a) * (pos - lo)

    def final(s: Any) -> Any:
        if s is None:
            return None
        f, vals = s
        vals = [v for v in vals if v is not None]
        if not vals:
            return None
        if is_array:
            return None if f is None else [one(vals, x) for x in f]
        return one(vals, f)
    return final


def mode_final(s: Any) -> Any:
    if not s:
        return None
    best, best_n = None, 0
    cur, n = object(), 0
    for v in s:
        if v == cur:
            n += 1
        else:
            cur, n = v, 1
        if n > best_n:
            best, best_n = v, n
    return best


def _var_final(samp: bool, sqrt: bool):
    def f(s):
        if s is None:
            return None
        n, vals = len(s), s
        if n == 0 or (samp and n < 2):
            return None
        mean = sum(vals) / n
        var = sum((x - mean) ** 2 for x in vals) / (n - 1 if samp else n)
        if sqrt:
            var = var.sqrt() if isinstance(var, Decimal) else math.sqrt(var)
        return var
    return f


def _numeric_final(f: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``f``'s result as numeric (the numeric variants of stddev/variance)."""
    def final(s: Any) -> Any:
        v = f(s)
        return None if v is None else numeric_div(v, Decimal(1))
    return final


for _nm, _samp, _sq in (("stddev|stddev_samp", True, True), ("stddev_pop", False, True),
                        ("variance|var_samp", True, False), ("var_pop", False, False)):
    agg(_nm, "float8", "float8", lambda: None, lambda s, x: [x] if s is None else (s.append(x) or s),
        _var_final(_samp, _sq))
    agg(_nm, "numeric", "numeric", lambda: None,
        lambda s, x: [Decimal(x)] if s is None else (s.append(Decimal(x)) or s),
        _numeric_final(_var_final(_samp, _sq)))


# ----------------------------------------------------------------------------- resolution

_POLY = {T.ANYELEMENT, T.ANYARRAY, T.ANYNONARRAY, T.ANY}


def _arg_ok(actual: int, formal: int) -> bool:
    if actual == formal:
        return True
    if formal == T.ANY:
        return True
    ti = TYPES.get(actual)
    if formal == T.ANYARRAY:
        return actual == T.UNKNOWN or (ti is not None and ti.category == "A")
    if formal == T.ANYNONARRAY:
        return actual == T.UNKNOWN or ti is None or ti.category != "A"
    if formal == T.ANYELEMENT:
        return True
    if formal == T.RECORD:
        return actual == T.RECORD
    return can_coerce(actual, formal, "i")


def _resolve_poly(cand: Any, actual: list[int]) -> tuple[tuple[int, ...], int] | None:
    """Concrete (argtypes, return type) of a polymorphic candidate."""
    formal = list(cand.args)
    if getattr(cand, "variadic", 0):
        formal = formal[:-1] + [cand.variadic] * (len(actual) - len(formal) + 1)
    elem = None
    for a, f in zip(actual, formal):
        if a == T.UNKNOWN:
            continue
        e: int | None
        if f in (T.ANYELEMENT, T.ANYNONARRAY):
            e = a
        elif f == T.ANYARRAY:
            e = T.element_of(a) or None
        else:
            continue
        if e is None:
            continue
        if elem is None:
            elem = e
        elif elem != e:
            if can_coerce(e, elem, "i"):
                continue
            if can_coerce(elem, e, "i"):
                elem = e
                continue
            return None
    out = []
    for a, f in zip(actual, formal):
        if f in (T.ANYELEMENT, T.ANYNONARRAY):
            out.append(elem if elem is not None else (T.TEXT if a == T.UNKNOWN else a))
        elif f == T.ANYARRAY:
            out.append(T.array_of(elem) if elem is not None else (T.TEXT_ARRAY if a == T.UNKNOWN else a))
        elif f == T.ANY:
            out.append(a if a != T.UNKNOWN else T.TEXT)
        else:
            out.append(f)
    ret = cand.ret
    if ret in (T.ANYELEMENT, T.ANYNONARRAY):
        ret = elem if elem is not None else T.TEXT
    elif ret == T.ANYARRAY:
        ret = T.array_of(elem) if elem is not None else T.TEXT_ARRAY
        if ret == 0:
            return None
    return tuple(out), ret


_RESOLVED: dict[tuple, tuple[Any, tuple[int, ...], int]] = {}


def resolve(cands: list, actual: list[int], what: str, name: str, nargs_exact: bool = True
            ) -> tuple[Any, tuple[int, ...], int]:
    """Pick a candidate for ``actual`` argument types.  Returns (candidate,
    coerced argument types, result type); raises 42883 / 42725.  Results are
    memoised per (kind, name, candidate set, argument types)."""
    key = (what, name, len(cands), tuple(actual))
    hit = _RESOLVED.get(key)
    if hit is not None and any(c is hit[0] for c in cands):
        return hit
    res = _resolve(cands, actual, what, name)
    if len(_RESOLVED) < 20000:
        _RESOLVED[key] = res
    return res


def _resolve(cands: list, actual: list[int], what: str, name: str) -> tuple[Any, tuple[int, ...], int]:
    n = len(actual)
    viable = []
    for c in cands:
        na = len(c.args)
        if getattr(c, "variadic", 0):
            if n < na - 1:
                continue
        elif na != n:
            continue
        formal = list(c.args)
        if getattr(c, "variadic", 0):
            formal = formal[:-1] + [c.variadic] * (n - na + 1)
        if all(_arg_ok(a, f) for a, f in zip(actual, formal)):
            viable.append((c, formal))
    if not viable:
        raise _no_match(what, name, actual)
    if len(viable) > 1:
        # exact matches (unknown counts as matching the other operand's type for operators)
        known = [a for a in actual if a != T.UNKNOWN]
        if what == "operator" and len(known) == 1 and n == 2:
            k = known[0]
            for c, formal in viable:
                if all(f == k for f in formal):
                    viable = [(c, formal)]
                    break

        def score(item):
            c, formal = item
            exact = sum(1 for a, f in zip(actual, formal) if a == f)
            # same-category, preferred
            pref = 0
            cat_match = 0
            for a, f in zip(actual, formal):
                ta, tf = TYPES.get(a), TYPES.get(f)
                if ta is not None and tf is not None and ta.category == tf.category:
                    cat_match += 1
                    if tf.preferred:
                        pref += 1
                if a == T.UNKNOWN and tf is not None and tf.category == "S":
                    pref += 1
            poly = sum(1 for f in formal if f in _POLY)
            return (exact, cat_match, pref, -poly)
        viable.sort(key=score, reverse=True)
        if len(viable) > 1 and score(viable[0]) == score(viable[1]):
            # prefer a candidate whose unknown arguments take the known argument types
            if known:
                for c, formal in viable:
                    if all(f in known or a != T.UNKNOWN for a, f in zip(actual, formal)):
                        viable = [(c, formal)]
                        break
    c, formal = viable[0]
    if any(f in _POLY for f in formal) or c.ret in _POLY:
        r = _resolve_poly(c, actual)
        if r is None:
            raise _no_match(what, name, actual)
        return c, r[0], r[1]
    return c, tuple(formal), c.ret


def _no_match(what: str, name: str, actual: list[int]) -> PgError:
    tn = ", ".join(format_type(a) if a != T.UNKNOWN else "unknown" for a in actual)
    if what == "operator":
        if len(actual) == 2:
            sig = f"{format_type(actual[0])} {name} {format_type(actual[1])}"
        else:
            sig = f"{name} {format_type(actual[0])}"
        return PgError("42883", f"operator does not exist: {sig}",
                       hint="No operator matches the given name and argument types. "
                            "You might need to add explicit type casts.")
    return PgError("42883", f"function {name}({tn}) does not exist",
                   hint="No function matches the given name and argument types. "
                        "You might need to add explicit type casts.")


def comparison(sym: str, t: int) -> Callable[[Any, Any], Any]:
    """The implementation of ``t sym t`` (for sorting, joins, IN lists)."""
    for c in OPS.get(sym, ()):
        if c.args == (t, t):
            return c.impl
    return {"=": _op.eq, "<>": _op.ne, "<": _op.lt, ">": _op.gt, "<=": _op.le, ">=": _op.ge}[sym]



# ----------------------------------------------------------------------------- set-returning functions

SRF_IMPLS: set = set()
SRF_COLS: dict[Any, list[tuple[str, int]]] = {}


def srf(name: str, args: str, ret: str, cols: list[tuple[str, str]] | None = None, strict: bool = True):
    def deco(f):
        fn(name, args, ret, strict=strict, retset=True)(f)
        SRF_IMPLS.add(f)
        if cols:
            SRF_COLS[f] = [(n, _ty(t)) for n, t in cols]
        return f
    return deco


@srf("generate_series", "int4,int4", "int4")
def _gs_int4(a: int, b: int):
    return range(a, b + 1)


@srf("generate_series", "int4,int4,int4", "int4")
def _gs_int4_step(a: int, b: int, s: int):
    if s == 0:
        raise PgError("22023", "step size cannot equal zero")
    return range(a, b + (1 if s > 0 else -1), s)


@srf("generate_series", "int8,int8", "int8")
def _gs_int8(a: int, b: int):
    return range(a, b + 1)


@srf("generate_series", "int8,int8,int8", "int8")
def _gs_int8_step(a: int, b: int, s: int):
    if s == 0:
        raise PgError("22023", "step size cannot equal zero")
    return range(a, b + (1 if s > 0 else -1), s)


@srf("generate_series", "numeric,numeric", "numeric")
def _gs_num(a: Decimal, b: Decimal):
    out = []
    while a <= b:
        out.append(a)
        a += 1
    return out


@srf("generate_series", "timestamptz,timestamptz,interval", "timestamptz", strict=True)
def _gs_ts(a, b, step: Interval):
    out = []
    if step.months == 0 and step.days == 0 and step.microseconds == 0:
        raise PgError("22023", "step size cannot equal zero")
    cur = a
    while (cur <= b) if step > Interval() else (cur >= b):
        out.append(cur)
        cur = ts_plus_interval(cur, step)
        if len(out) > 10_000_000:
            break
    return out


@srf("generate_series", "timestamp,timestamp,interval", "timestamp")
def _gs_ts2(a, b, step: Interval):
    return _gs_ts(a, b, step)


@srf("unnest", "anyarray", "anyelement")
def _unnest(a: list):
    return array_elements(a)


@srf("generate_subscripts", "anyarray,int4", "int4")
def _generate_subscripts(a: list, dim: int):
    n = _array_length(a, dim) or 0
    return range(1, n + 1)


@srf("regexp_split_to_table", "text,text", "text")
def _regexp_split_to_table(s: str, p: str):
    return pg_regex(p).split(s)


@srf("jsonb_array_elements|json_array_elements", "jsonb", "jsonb", cols=[("value", "jsonb")])
def _jsonb_array_elements(j: str):
    o = json_load(j)
    if not isinstance(o, list):
        raise PgError("22023", "cannot extract elements from an object")
    return [json_dump(x) for x in o]


@srf("jsonb_array_elements_text|json_array_elements_text", "jsonb", "text", cols=[("value", "text")])
def _jsonb_array_elements_text(j: str):
    o = json_load(j)
    return [_jtext(x) for x in o]


@srf("jsonb_each|json_each", "jsonb", "record", cols=[("key", "text"), ("value", "jsonb")])
def _jsonb_each(j: str):
    o = json_load(j)
    return [(k, json_dump(v)) for k, v in o.items()]


@srf("jsonb_each_text|json_each_text", "jsonb", "record", cols=[("key", "text"), ("value", "text")])
def _jsonb_each_text(j: str):
    o = json_load(j)
    return [(k, _jtext(v)) for k, v in o.items()]


@srf("jsonb_object_keys|json_object_keys", "jsonb", "text")
def _jsonb_object_keys(j: str):
    return list(json_load(j).keys())

