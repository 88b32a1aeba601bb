"""Type names, typmods and casts.

* :func:`resolve_type` turns a pglast TypeName (as JSON dict) into
  ``(oid, typmod)`` — ``int`` is int4, ``varchar(50)`` is varchar with typmod 54,
  ``serial`` is int4 plus a sequence (the caller checks :data:`SERIAL_TYPES`).
* :func:`cast_kind` says whether a cast from one type to another exists and in
  which contexts it may be applied implicitly ('i'), on assignment ('a') or
  only explicitly ('e'), following pg_cast.
* :func:`cast_fn` builds the conversion ``f(value) -> value`` (None when the
  two types share a representation); :func:`typmod_fn` the length/precision
  coercion of varchar(n), char(n) and numeric(p, s).
"""

from __future__ import annotations

import datetime as _dt
import json as _json
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, overload

from pgbundle.server.errors import PgError
from pgbundle.shared.types import Interval, InvalidValue, oids as T, text_decoder, text_encoder
from pgbundle.shared.types.oids import TYPES, numeric_precision_scale
from pgbundle.shared.types.text import parse_jsonb

UTC = _dt.timezone.utc

# names (as written, lower case, after pglast) -> oid
TYPE_ALIASES = {
    "int": T.INT4, "integer": T.INT4, "int4": T.INT4, "smallint": T.INT2, "int2": T.INT2,
    "bigint": T.INT8, "int8": T.INT8, "serial": T.INT4, "serial4": T.INT4, "bigserial": T.INT8,
    "serial8": T.INT8, "smallserial": T.INT2, "serial2": T.INT2,
    "real": T.FLOAT4, "float4": T.FLOAT4, "float8": T.FLOAT8, "double precision": T.FLOAT8, "float": T.FLOAT8,
    "numeric": T.NUMERIC, "decimal": T.NUMERIC, "dec": T.NUMERIC,
    "text": T.TEXT, "varchar": T.VARCHAR, "character varying": T.VARCHAR, "char": T.BPCHAR,
    "character": T.BPCHAR, "bpchar": T.BPCHAR, "name": T.NAME, "\"char\"": T.CHAR,
    "bool": T.BOOL, "boolean": T.BOOL, "bytea": T.BYTEA, "date": T.DATE, "time": T.TIME,
    "timestamp": T.TIMESTAMP, "timestamptz": T.TIMESTAMPTZ, "interval": T.INTERVAL,
    "json": T.JSON, "jsonb": T.JSONB, "uuid": T.UUID, "oid": T.OID, "regclass": T.REGCLASS,
    "regtype": T.REGTYPE, "regproc": T.REGPROC, "regnamespace": T.REGNAMESPACE, "regrole": T.REGROLE,
    "regprocedure": T.REGPROCEDURE, "regoper": T.REGOPER,
    "xid": T.XID, "cid": T.CID, "tid": T.TID, "xid8": T.XID8, "void": T.VOID, "record": T.RECORD,
    "unknown": T.UNKNOWN, "anyelement": T.ANYELEMENT, "anyarray": T.ANYARRAY, "cstring": T.CSTRING,
    "int2vector": T.INT2VECTOR, "oidvector": T.OIDVECTOR, "pg_node_tree": T.PG_NODE_TREE,
    "aclitem": T.ACLITEM, "pg_lsn": T.PG_LSN, "inet": T.INET, "timetz": T.TIMETZ, "money": T.MONEY,
    "trigger": T.TRIGGER, "internal": T.INTERNAL, "any": T.ANY,
}
# enum type oid -> labels (kept current by the session environment)
ENUM_TYPES: dict[int, list[str]] = {}

SERIAL_TYPES = {"serial", "serial4", "bigserial", "serial8", "smallserial", "serial2"}

SQL_NAMES = {  # format_type() names
    T.INT4: "integer", T.INT2: "smallint", T.INT8: "bigint", T.FLOAT4: "real", T.FLOAT8: "double precision",
    T.VARCHAR: "character varying", T.BPCHAR: "character", T.BOOL: "boolean",
    T.TIMESTAMP: "timestamp without time zone", T.TIMESTAMPTZ: "timestamp with time zone",
    T.TIME: "time without time zone", T.TIMETZ: "time with time zone", T.CHAR: '"char"',
}


@overload
def format_type(oid: int, typmod: int = ..., enum_names: dict[int, str] | None = ...) -> str: ...
@overload
def format_type(oid: None, typmod: int = ..., enum_names: dict[int, str] | None = ...) -> None: ...
@overload
def format_type(oid: int | None, typmod: int = ..., enum_names: dict[int, str] | None = ...) -> str | None: ...
def format_type(oid: int | None, typmod: int = -1, enum_names: dict[int, str] | None = None) -> str | None:
    """pg_catalog.format_type(oid, typmod)."""
    if oid is None:
        return None
    t = TYPES.get(oid)
    if t is None:
        if enum_names and oid in enum_names:
            return enum_names[oid]
        return "???"
    if t.category == "A" and t.elem:
        inner = format_type(t.elem, typmod, enum_names)
        return f"{inner}[]"
    base = SQL_NAMES.get(oid, t.name)
    if typmod is not None and typmod >= 0:
        if oid in (T.VARCHAR, T.BPCHAR):
            return f"{base}({typmod - 4})"
        if oid == T.NUMERIC:
            ps = numeric_precision_scale(typmod)
            if ps:
                return f"numeric({ps[0]},{ps[1]})"
        if oid in (T.TIMESTAMP, T.TIMESTAMPTZ):
            return base.replace("timestamp", f"timestamp({typmod})")
    return base


def _const_int(node: dict) -> int:
    c = node.get("A_Const") or {}
    if "ival" in c:
        return int(c["ival"].get("ival", 0))
    raise PgError("42601", "type modifiers must be simple constants or identifiers")


def resolve_type(tn: dict, lookup_user_type: Callable[[str, str | None], int | None] | None = None
                 ) -> tuple[int, int, str]:
    """(oid, typmod, written name) of a pglast ``TypeName`` dict."""
    names = [n["String"]["sval"] for n in tn.get("names", [])]
    schema = None
    if len(names) > 1:
        schema = names[-2]
    name = names[-1]
    if schema == "pg_catalog" or schema is None:
        oid = TYPE_ALIASES.get(name)
        if oid is None and name in T.TYPES_BY_NAME:
            oid = T.TYPES_BY_NAME[name].oid
        if schema == "pg_catalog" and name == "char" and len(names) == 1:
            oid = T.BPCHAR
    else:
        oid = None
    if oid is None and name.startswith("_") and name[1:] in T.TYPES_BY_NAME:
        oid = T.TYPES_BY_NAME[name[1:]].array
    if oid is None and lookup_user_type is not None:
        oid = lookup_user_type(name, schema)
    if oid is None:
        shown = ".".join(names) if schema not in (None, "pg_catalog") else name
        raise PgError("42704", f'type "{shown}" does not exist',
                      position=tn.get("location", -1) + 1 if tn.get("location", -1) >= 0 else None)
    typmod = -1
    mods = [_const_int(m) for m in tn.get("typmods", [])]
    if oid in (T.VARCHAR, T.BPCHAR):
        if mods:
            if mods[0] < 1:
                raise PgError("22023", f"length for type {name} must be at least 1")
            typmod = mods[0] + 4
        elif oid == T.BPCHAR and names == ["pg_catalog", "bpchar"] and tn.get("typmods") is None:
            typmod = 5   # CHAR without length is char(1)
    elif oid == T.NUMERIC and mods:
        p = mods[0]
        s = mods[1] if len(mods) > 1 else 0
        if not 1 <= p <= 1000:
            raise PgError("22023", f"NUMERIC precision {p} must be between 1 and 1000")
        typmod = ((p << 16) | s) + 4
    elif oid in (T.TIMESTAMP, T.TIMESTAMPTZ, T.TIME) and mods:
        typmod = mods[0]
    elif oid == T.FLOAT8 and mods and name == "float":
        if mods[0] <= 24:
            oid = T.FLOAT4
    if tn.get("arrayBounds") is not None:
        arr = T.array_of(oid)
        if arr:
            oid = arr
    return oid, typmod, name


# ----------------------------------------------------------------------------- cast table

_INTS = (T.INT2, T.INT4, T.INT8)
_NUMS = (T.INT2, T.INT4, T.INT8, T.NUMERIC, T.FLOAT4, T.FLOAT8)
_STRS = (T.TEXT, T.VARCHAR, T.BPCHAR, T.NAME)
_REGS = (T.REGCLASS, T.REGTYPE, T.REGPROC, T.REGNAMESPACE, T.REGROLE, T.REGPROCEDURE, T.REGOPER)
_RANK = {T.INT2: 0, T.INT4: 1, T.INT8: 2, T.NUMERIC: 3, T.FLOAT4: 4, T.FLOAT8: 5}

_CASTS: dict[tuple[int, int], str] = {}
for _a in _NUMS:
    for _b in _NUMS:
        if _a != _b:
            _CASTS[(_a, _b)] = "i" if _RANK[_a] < _RANK[_b] else "a"
for _a in _STRS:
    for _b in _STRS:
        if _a != _b:
            _CASTS[(_a, _b)] = "i"
_CASTS[(T.CHAR, T.TEXT)] = "i"
_CASTS[(T.TEXT, T.CHAR)] = "a"
_CASTS[(T.CHAR, T.BPCHAR)] = "a"
_CASTS[(T.CHAR, T.VARCHAR)] = "a"
_CASTS[(T.CHAR, T.INT4)] = "e"
_CASTS[(T.INT4, T.CHAR)] = "e"
for _a in _INTS:
    _CASTS[(_a, T.OID)] = "i"
    for _r in _REGS:
        _CASTS[(_a, _r)] = "i"
    _CASTS[(T.OID, _a)] = "a" if _a != T.INT8 else "i"
for _r in _REGS:
    _CASTS[(T.OID, _r)] = "i"
    _CASTS[(_r, T.OID)] = "i"
    _CASTS[(_r, T.INT8)] = "a"
    _CASTS[(_r, T.INT4)] = "a"
    for _r2 in _REGS:
        if _r != _r2:
            _CASTS[(_r, _r2)] = "e"
_CASTS.update({
    (T.DATE, T.TIMESTAMP): "i", (T.DATE, T.TIMESTAMPTZ): "i", (T.TIMESTAMP, T.TIMESTAMPTZ): "i",
    (T.TIMESTAMPTZ, T.TIMESTAMP): "a", (T.TIMESTAMP, T.DATE): "a", (T.TIMESTAMPTZ, T.DATE): "a",
    (T.TIMESTAMP, T.TIME): "a", (T.TIMESTAMPTZ, T.TIME): "a", (T.TIME, T.INTERVAL): "i",
    (T.INT4, T.BOOL): "e", (T.BOOL, T.INT4): "e", (T.JSON, T.JSONB): "a", (T.JSONB, T.JSON): "a",
    (T.INT8, T.XID8): "e", (T.XID, T.XID8): "e",
})
del _a, _b, _r


def cast_kind(src: int, dst: int) -> str | None:
    """'i' implicit, 'a' assignment, 'e' explicit, or None (no cast)."""
    if src == dst:
        return "i"
    if src in ENUM_TYPES:
        # enums compare as their labels here (PostgreSQL's anyenum operators)
        return "i" if dst in (T.TEXT, T.ANYELEMENT, T.ANYNONARRAY) else ("a" if dst in (T.VARCHAR, T.BPCHAR, T.NAME)
                                                                          else None)
    k = _CASTS.get((src, dst))
    if k is not None:
        return k
    if src == T.UNKNOWN:
        return "i"
    ts, td = TYPES.get(src), TYPES.get(dst)
    # array to array of castable elements
    if ts is not None and td is not None and ts.category == "A" and td.category == "A":
        ek = cast_kind(ts.elem, td.elem)
        return ek
    # I/O conversion casts: to string types on assignment, from string types explicitly
    if dst in (T.TEXT, T.VARCHAR, T.BPCHAR, T.NAME):
        return "a"
    if src in (T.TEXT, T.VARCHAR, T.BPCHAR, T.NAME, T.CHAR):
        return "e"
    if src == T.RECORD or dst == T.RECORD:
        return None
    if dst == T.JSONB and src not in (T.BYTEA,):
        return None
    return None


def can_coerce(src: int, dst: int, context: str) -> bool:
    k = cast_kind(src, dst)
    if k is None:
        return dst in (T.ANYELEMENT, T.ANY) or (dst == T.ANYARRAY and TYPES.get(src, None) is not None
                                                 and TYPES[src].category == "A") or \
            (dst == T.ANYNONARRAY and TYPES.get(src) is not None and TYPES[src].category != "A")
    order = {"i": 0, "a": 1, "e": 2}
    return order[k] <= order[context]


# ----------------------------------------------------------------------------- cast functions

_INT_LIMITS = {T.INT2: (-32768, 32767, "smallint"), T.INT4: (-2**31, 2**31 - 1, "integer"),
               T.INT8: (-2**63, 2**63 - 1, "bigint")}


def _int_range(dst: int) -> Callable[[int], int]:
    lo, hi, name = _INT_LIMITS[dst]

    def f(v: int) -> int:
        if lo <= v <= hi:
            return v
        raise PgError("22003", f"{name} out of range")
    return f


def _round_half_even_float(dst: int) -> Callable[[float], int]:
    lo, hi, name = _INT_LIMITS[dst]

    def f(v: float) -> int:
        if v != v or v in (float("inf"), float("-inf")):
            raise PgError("22003", f"{name} out of range")
        r = round(v)
        if lo <= r <= hi:
            return r
        raise PgError("22003", f"{name} out of range")
    return f


def _numeric_to_int(dst: int) -> Callable[[Decimal], int]:
    lo, hi, name = _INT_LIMITS[dst]

    def f(v: Decimal) -> int:
        if not v.is_finite():
            raise PgError("0A000", f"cannot convert {'NaN' if v.is_nan() else 'infinity'} to {name}")
        r = int(v.to_integral_value(rounding=ROUND_HALF_UP))
        if lo <= r <= hi:
            return r
        raise PgError("22003", f"{name} out of range")
    return f


def _float_to_numeric(v: float) -> Decimal:
    if v != v:
        return Decimal("NaN")
    if v in (float("inf"), float("-inf")):
        return Decimal(v)
    return Decimal(repr(v)) if "e" not in repr(v) else Decimal(format(v, ".15g"))


def _to_float4(v: Any) -> float:
    import struct
    try:
        return struct.unpack("f", struct.pack("f", float(v)))[0]
    except OverflowError:
        raise PgError("22003", "value out of range: overflow") from None


def _wrap_input(dec: Callable[[str], Any]) -> Callable[[str], Any]:
    def f(v: str) -> Any:
        try:
            return dec(v)
        except InvalidValue as e:
            raise PgError(e.sqlstate, e.message) from None
    return f


def cast_fn(src: int, dst: int, env: Any = None) -> Callable[[Any], Any] | None:
    """The conversion function from ``src`` to ``dst`` values (None = same
    representation).  ``env`` supplies the session time zone and catalog for
    casts that need them (``env.tz``, ``env.regclass_in(name)``...)."""
    if src == dst:
        return None
    if dst in _INTS:
        if src in _INTS or src in (T.OID,) + _REGS:
            return _int_range(dst) if (src not in _INTS or _RANK.get(src, 0) > _RANK[dst]) else None
        if src in (T.FLOAT4, T.FLOAT8):
            return _round_half_even_float(dst)
        if src == T.NUMERIC:
            return _numeric_to_int(dst)
        if src == T.BOOL:
            return lambda v: 1 if v else 0
        if src == T.CHAR:
            return lambda v: (v.encode() or b"\0")[0] if v else 0
    if dst == T.NUMERIC:
        if src in _INTS or src in (T.OID,):
            return Decimal
        if src in (T.FLOAT4, T.FLOAT8):
            return _float_to_numeric
    if dst == T.FLOAT8:
        if src in _INTS or src in (T.NUMERIC, T.FLOAT4):
            return float
    if dst == T.FLOAT4:
        if src in _INTS or src in (T.NUMERIC, T.FLOAT8):
            return _to_float4
    if dst in (T.OID,) + _REGS:
        if src in _INTS:
            return lambda v: v & 0xFFFFFFFF
        if src in (T.OID,) + _REGS:
            return None
        if src in _STRS and env is not None:
            return _reg_input(dst, env)
    if dst == T.BOOL and src == T.INT4:
        return lambda v: v != 0
    if dst == T.CHAR and src == T.INT4:
        return lambda v: chr(v) if v else ""
    if dst in _STRS:
        if src in _STRS:
            if src == T.BPCHAR and dst != T.BPCHAR:
                return lambda v: v.rstrip(" ")
            if dst == T.NAME:
                return _wrap_input(text_decoder(T.NAME))
            return None
        if src == T.CHAR:
            return None
        if src == T.BOOL:
            return lambda v: "true" if v else "false"
        if src in _REGS and env is not None:
            return _reg_output(src, env)
        if src == T.TIMESTAMPTZ:
            return lambda v: text_encoder(T.TIMESTAMPTZ, env.tz if env is not None else None)(v)
        enc = text_encoder(src)
        return enc
    if src in _STRS or src == T.UNKNOWN or src == T.CHAR:
        if dst in _REGS and env is not None:
            return _reg_input(dst, env)
        if dst == T.TIMESTAMPTZ:
            def ts_in(v: str) -> Any:
                try:
                    return text_decoder(T.TIMESTAMPTZ, env.tz if env is not None else None)(v)
                except InvalidValue as e:
                    raise PgError(e.sqlstate, e.message) from None
            return ts_in
        if env is not None and dst >= 16384 and env.is_enum(dst):
            return env.enum_input(dst)
        return _wrap_input(text_decoder(dst))
    if dst == T.TIMESTAMP:
        if src == T.DATE:
            return lambda d: _dt.datetime(d.year, d.month, d.day)
        if src == T.TIMESTAMPTZ:
            return lambda v: v.astimezone(env.tz if env is not None else UTC).replace(tzinfo=None)
    if dst == T.TIMESTAMPTZ:
        if src == T.DATE:
            return lambda d: _dt.datetime(d.year, d.month, d.day, tzinfo=env.tz if env is not None else UTC
                                          ).astimezone(UTC)
        if src == T.TIMESTAMP:
            return lambda v: v.replace(tzinfo=env.tz if env is not None else UTC).astimezone(UTC)
    if dst == T.DATE:
        if src == T.TIMESTAMP:
            return lambda v: v.date()
        if src == T.TIMESTAMPTZ:
            return lambda v: v.astimezone(env.tz if env is not None else UTC).date()
    if dst == T.TIME:
        if src == T.TIMESTAMP:
            return lambda v: v.time()
        if src == T.TIMESTAMPTZ:
            return lambda v: v.astimezone(env.tz if env is not None else UTC).time()
    if dst == T.INTERVAL and src == T.TIME:
        return lambda t: Interval(0, 0, ((t.hour * 60 + t.minute) * 60 + t.second) * 10**6 + t.microsecond)
    if (src, dst) in ((T.JSON, T.JSONB),):
        return parse_jsonb
    if (src, dst) in ((T.JSONB, T.JSON),):
        return None
    ts, td = TYPES.get(src), TYPES.get(dst)
    if ts is not None and td is not None and ts.category == "A" and td.category == "A":
        ef = cast_fn(ts.elem, td.elem, env)
        if ef is None:
            return None

        def arr(v: list) -> list:
            return [None if x is None else (arr(x) if isinstance(x, list) else ef(x)) for x in v]
        return arr
    if src in ENUM_TYPES and dst in _STRS:
        return None
    return None


def _reg_input(dst: int, env: Any) -> Callable[[str], int]:
    return lambda v: env.reg_in(dst, v)


def _reg_output(src: int, env: Any) -> Callable[[int], str]:
    return lambda v: env.reg_out(src, v)


def typmod_fn(oid: int, typmod: int, explicit: bool) -> Callable[[Any], Any] | None:
    """Length/precision coercion to ``oid(typmod)``; None if there is none."""
    if typmod < 0:
        return None
    if oid == T.VARCHAR:
        n = typmod - 4

        def vc(v: str) -> str:
            if len(v) <= n:
                return v
            if explicit or v[n:].strip(" ") == "":
                return v[:n]
            raise PgError("22001", f"value too long for type character varying({n})")
        return vc
    if oid == T.BPCHAR:
        n = typmod - 4

        def bp(v: str) -> str:
            ln = len(v)
            if ln == n:
                return v
            if ln < n:
                return v + " " * (n - ln)
            if explicit or v[n:].strip(" ") == "":
                return v[:n]
            raise PgError("22001", f"value too long for type character({n})")
        return bp
    if oid == T.NUMERIC:
        ps = numeric_precision_scale(typmod)
        if ps is None:
            return None
        p, s = ps
        q = Decimal(1).scaleb(-s)
        maxint = p - s

        def num(v: Decimal) -> Decimal:
            if not v.is_finite():
                if v.is_nan():
                    return v
                raise PgError("22003", "numeric field overflow",
                              detail=f"A field with precision {p}, scale {s} cannot hold an infinite value.")
            r = v.quantize(q, rounding=ROUND_HALF_UP)
            if r != 0 and r.adjusted() + 1 > maxint:
                raise PgError("22003", "numeric field overflow",
                              detail=f"A field with precision {p}, scale {s} must round to an absolute value "
                                     f"less than {'10^' + str(maxint) if maxint else '1'}.")
            return r
        return num
    if oid in (T.TIMESTAMP, T.TIMESTAMPTZ, T.TIME) and typmod < 6:
        unit = 10 ** (6 - typmod)

        def ts(v: Any) -> Any:
            us = v.microsecond
            r = (us + unit // 2) // unit * unit
            if r >= 1_000_000:
                return v.replace(microsecond=0) + _dt.timedelta(seconds=1)
            return v.replace(microsecond=r)
        return ts
    return None


def jsonb_value(s: str) -> Any:
    return _json.loads(s, parse_float=Decimal)


def common_type(types: list[int], context: str = "UNION") -> int:
    """select_common_type: the type all of ``types`` are coerced to (CASE,
    COALESCE, UNION, VALUES columns, ARRAY[] elements)."""
    known = [t for t in types if t != T.UNKNOWN]
    if not known:
        return T.TEXT
    cur = known[0]
    for t in known[1:]:
        if t == cur:
            continue
        tc, cc = TYPES.get(t), TYPES.get(cur)
        if tc is None or cc is None:
            if can_coerce(t, cur, "i"):
                continue
            if can_coerce(cur, t, "i"):
                cur = t
                continue
            raise PgError("42804", f"{context} types {format_type(cur)} and {format_type(t)} cannot be matched")
        if tc.category != cc.category:
            raise PgError("42804", f"{context} types {format_type(cur)} and {format_type(t)} cannot be matched")
        if not cc.preferred and can_coerce(cur, t, "i") and not can_coerce(t, cur, "i"):
            cur = t
        elif not can_coerce(t, cur, "i"):
            raise PgError("42804", f"{context} types {format_type(cur)} and {format_type(t)} cannot be matched")
    return cur
