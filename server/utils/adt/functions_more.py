"""More built-in functions: formatting (to_char, to_date, to_timestamp(text, text),
to_number), age with months, make_interval, string, math, array and json
functions clients and applications commonly use.  Registered into the tables of
:mod:`.functions` at import.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
import re
from decimal import Decimal
from typing import Any

from pgbundle.server.errors import PgError
from pgbundle.server.utils.adt import formatting as FMT
from pgbundle.server.utils.adt.functions import _jdump, _jload, _to_jsonb, fn, op, pg_regex, srf
from pgbundle.shared.types import Interval

UTC = _dt.timezone.utc

# ----------------------------------------------------------------------------- to_char & co


@fn("to_char", "timestamp,text", "text")
def _to_char_ts(v: _dt.datetime, f: str) -> str | None:
    return FMT.to_char_datetime(v, f)


@fn("to_char", "timestamptz,text", "text", env=True)
def _to_char_tstz(env: Any, v: _dt.datetime, f: str) -> str | None:
    return FMT.to_char_datetime(v.astimezone(env.tz), f, str(env.settings.get("TimeZone")))


@fn("to_char", "interval,text", "text")
def _to_char_iv(v: Interval, f: str) -> str | None:
    return FMT.to_char_interval(v, f)


for _t in ("int4", "int8", "numeric", "float8", "float4"):
    fn("to_char", f"{_t},text", "text")(FMT.to_char_number)


@fn("to_date", "text,text", "date")
def _to_date(s: str, f: str) -> _dt.date | None:
    return FMT.to_date(s, f)


@fn("to_timestamp", "text,text", "timestamptz", env=True)
def _to_timestamp2(env: Any, s: str, f: str) -> _dt.datetime | None:
    return FMT.to_timestamp(s, f, env.tz)


@fn("to_number", "text,text", "numeric")
def _to_number(s: str, f: str) -> Decimal | None:
    return FMT.to_number(s, f)


@fn("age", "timestamp,timestamp", "interval")
def _age_ts(a: _dt.datetime, b: _dt.datetime) -> Interval:
    return FMT.age(a, b)


@fn("age", "timestamptz,timestamptz", "interval", env=True)
def _age_tstz(env: Any, a: _dt.datetime, b: _dt.datetime) -> Interval:
    tz = env.tz
    return FMT.age(a.astimezone(tz).replace(tzinfo=None), b.astimezone(tz).replace(tzinfo=None))


@fn("age", "timestamp", "interval", env=True)
def _age1(env: Any, b: _dt.datetime) -> Interval:
    today = env.xact_timestamp().astimezone(env.tz).date()
    return FMT.age(_dt.datetime(today.year, today.month, today.day), b)


@fn("age", "timestamptz", "interval", env=True)
def _age1tz(env: Any, b: _dt.datetime) -> Interval:
    today = env.xact_timestamp().astimezone(env.tz).date()
    return FMT.age(_dt.datetime(today.year, today.month, today.day), b.astimezone(env.tz).replace(tzinfo=None))


@fn("make_interval", "int4,int4,int4,int4,int4,int4,float8", "interval")
def _make_interval(years: int, months: int, weeks: int, days: int, hours: int, mins: int, secs: float) -> Interval:
    us = round(((hours * 60 + mins) * 60) * 1_000_000 + secs * 1_000_000)
    return Interval(years * 12 + months, weeks * 7 + days, us)


MAKE_INTERVAL_ARGS = ("years", "months", "weeks", "days", "hours", "mins", "secs")


@fn("make_timestamp", "int4,int4,int4,int4,int4,float8", "timestamp")
def _make_timestamp(y: int, mo: int, d: int, h: int, mi: int, s: float) -> _dt.datetime:
    sec = int(s)
    try:
        return _dt.datetime(y, mo, d, h, mi, sec, round((s - sec) * 1_000_000))
    except ValueError:
        raise PgError("22008", f"date field value out of range: {y}-{mo:02d}-{d:02d}") from None


@fn("make_time", "int4,int4,float8", "time")
def _make_time(h: int, mi: int, s: float) -> _dt.time:
    sec = int(s)
    return _dt.time(h, mi, sec, round((s - sec) * 1_000_000))


@fn("justify_hours", "interval", "interval")
def _justify_hours(iv: Interval) -> Interval:
    d, us = divmod(iv.microseconds, 86_400_000_000)
    return Interval(iv.months, iv.days + d, us)


@fn("justify_interval", "interval", "interval")
def _justify_interval(iv: Interval) -> Interval:
    iv = _justify_hours(iv)
    m, d = divmod(iv.days, 30)
    return Interval(iv.months + m, d, iv.microseconds)


op("+", "interval,date", "timestamp",
   lambda iv, d: _date_plus(d, iv))


def _date_plus(d: _dt.date, iv: Interval) -> _dt.datetime:
    from pgbundle.server.utils.adt.functions import ts_plus_interval
    return ts_plus_interval(_dt.datetime(d.year, d.month, d.day), iv)


# ----------------------------------------------------------------------------- strings


@fn("overlay", "text,text,int4,int4", "text")
def _overlay4(s: str, r: str, start: int, n: int) -> str:
    if start < 1:
        raise PgError("22011", "negative substring length not allowed")
    return s[: start - 1] + r + s[start - 1 + n:]


@fn("overlay", "text,text,int4", "text")
def _overlay3(s: str, r: str, start: int) -> str:
    return _overlay4(s, r, start, len(r))


@fn("translate", "text,text,text", "text")
def _translate(s: str, a: str, b: str) -> str:
    out = []
    for ch in s:
        i = a.find(ch)
        if i < 0:
            out.append(ch)
        elif i < len(b):
            out.append(b[i])
    return "".join(out)


@srf("regexp_matches", "text,text", "text[]")
def _regexp_matches(s: str, p: str):
    return _regexp_matches3(s, p, "")


@srf("regexp_matches", "text,text,text", "text[]")
def _regexp_matches3(s: str, p: str, flags: str):
    rx = pg_regex(p, re.I if "i" in flags else 0)
    out = []
    for m in rx.finditer(s):
        out.append(list(m.groups()) if m.groups() else [m.group(0)])
        if "g" not in flags:
            break
    return out


@srf("regexp_split_to_table", "text,text", "text")
def _regexp_split_to_table(s: str, p: str):
    return pg_regex(p).split(s)


@fn("regexp_split_to_array", "text,text", "text[]")
def _regexp_split_to_array(s: str, p: str) -> list:
    return pg_regex(p).split(s)


@fn("regexp_count", "text,text", "int4")
def _regexp_count(s: str, p: str) -> int:
    return len(pg_regex(p).findall(s))


@fn("regexp_like", "text,text", "bool")
def _regexp_like(s: str, p: str) -> bool:
    return pg_regex(p).search(s) is not None


@fn("sha224", "bytea", "bytea")
def _sha224(b: bytes) -> bytes:
    return hashlib.sha224(b).digest()


@fn("sha256", "bytea", "bytea")
def _sha256(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


@fn("sha384", "bytea", "bytea")
def _sha384(b: bytes) -> bytes:
    return hashlib.sha384(b).digest()


@fn("sha512", "bytea", "bytea")
def _sha512(b: bytes) -> bytes:
    return hashlib.sha512(b).digest()


@fn("bit_length", "text", "int4")
def _bit_length(s: str) -> int:
    return len(s.encode()) * 8


@fn("pg_column_size", "any", "int4")
def _pg_column_size(v: Any) -> int:
    if isinstance(v, str):
        n = len(v.encode())
        return n + (1 if n < 127 else 4)
    if isinstance(v, bool):
        return 1
    if isinstance(v, int):
        return 4 if -2**31 <= v < 2**31 else 8
    if isinstance(v, float):
        return 8
    if isinstance(v, bytes):
        return len(v) + (1 if len(v) < 127 else 4)
    return len(str(v)) + 1


@fn("like_escape", "text,text", "text")
def _like_escape(p: str, esc: str) -> str:
    """Rewrite a LIKE pattern with escape character ``esc`` to one using backslash."""
    if len(esc) > 1:
        raise PgError("22019", "invalid escape string", hint="Escape string must be empty or one character.")
    if esc == "\\":
        return p
    out = []
    i = 0
    while i < len(p):
        c = p[i]
        if esc and c == esc and i + 1 < len(p):
            nxt = p[i + 1]
            out.append("\\" + nxt)
            i += 2
            continue
        if c == "\\":
            out.append("\\\\")
        else:
            out.append(c)
        i += 1
    return "".join(out)


# ----------------------------------------------------------------------------- math


@fn("cbrt", "float8", "float8")
def _cbrt(x: float) -> float:
    return math.copysign(abs(x) ** (1.0 / 3.0), x)


@fn("factorial", "int8", "numeric")
def _factorial(n: int) -> Decimal:
    if n < 0:
        raise PgError("2201E", "factorial of a negative number is undefined")
    return Decimal(math.factorial(n))


@fn("gcd", "int4,int4", "int4")
def _gcd(a: int, b: int) -> int:
    return math.gcd(a, b)


@fn("gcd", "int8,int8", "int8")
def _gcd8(a: int, b: int) -> int:
    return math.gcd(a, b)


@fn("lcm", "int4,int4", "int4")
def _lcm(a: int, b: int) -> int:
    return abs(a * b) // math.gcd(a, b) if a and b else 0


@fn("lcm", "int8,int8", "int8")
def _lcm8(a: int, b: int) -> int:
    return abs(a * b) // math.gcd(a, b) if a and b else 0


@fn("degrees", "float8", "float8")
def _degrees(x: float) -> float:
    return math.degrees(x)


@fn("radians", "float8", "float8")
def _radians(x: float) -> float:
    return math.radians(x)


for _name, _f in (("sin", math.sin), ("cos", math.cos), ("tan", math.tan), ("asin", math.asin),
                  ("acos", math.acos), ("atan", math.atan), ("sinh", math.sinh), ("cosh", math.cosh),
                  ("tanh", math.tanh)):
    fn(_name, "float8", "float8")(_f)


@fn("atan2", "float8,float8", "float8")
def _atan2(y: float, x: float) -> float:
    return math.atan2(y, x)


@fn("log", "numeric,numeric", "numeric")
def _log2(b: Decimal, x: Decimal) -> Decimal:
    if b <= 0 or x <= 0:
        raise PgError("2201E", "cannot take logarithm of a negative number" if b < 0 or x < 0
                      else "cannot take logarithm of zero")
    return (x.ln() / b.ln()).quantize(Decimal("1.0000000000000000"))


@fn("scale", "numeric", "int4")
def _scale(d: Decimal) -> int:
    if not d.is_finite():
        return 0
    exp = d.as_tuple().exponent
    assert isinstance(exp, int)          # a letter only for NaN and infinities
    return max(0, -exp)


@fn("trim_scale", "numeric", "numeric")
def _trim_scale(d: Decimal) -> Decimal:
    return d.normalize() if d != 0 else Decimal(0)


# ----------------------------------------------------------------------------- arrays


def _dims(a: list) -> list[int]:
    out = []
    cur: Any = a
    while isinstance(cur, list) and cur:
        out.append(len(cur))
        cur = cur[0]
    return out


@fn("array_dims", "anyarray", "text")
def _array_dims(a: list) -> str | None:
    d = _dims(a)
    if not d:
        return None
    return "".join(f"[1:{n}]" for n in d)


@fn("array_fill", "anyelement,int4[]", "anyarray", strict=False)
def _array_fill(v: Any, dims: list | None) -> list | None:
    if dims is None:
        raise PgError("22004", "dimension array or low bound array cannot be null")

    def build(ds: list) -> list:
        if len(ds) == 1:
            return [v] * ds[0]
        return [build(ds[1:]) for _ in range(ds[0])]
    return build(list(dims)) if dims else []


@fn("array_replace", "anyarray,anyelement,anyelement", "anyarray", strict=False)
def _array_replace(a: list | None, x: Any, y: Any) -> list | None:
    if a is None:
        return None
    return [y if v == x else v for v in a]


@fn("trim_array", "anyarray,int4", "anyarray")
def _trim_array(a: list, n: int) -> list:
    if n < 0 or n > len(a):
        raise PgError("2202E", "number of elements to trim must be between 0 and " + str(len(a)))
    return a[: len(a) - n]


# ----------------------------------------------------------------------------- json


def _jpath_set(o: Any, path: list[str], value: Any, create: bool) -> Any:
    if not path:
        return value
    k = path[0]
    if isinstance(o, dict):
        if k in o:
            o[k] = _jpath_set(o[k], path[1:], value, create)
        elif create and len(path) == 1:
            o[k] = value
        return o
    if isinstance(o, list):
        try:
            i = int(k)
        except ValueError:
            raise PgError("22P02", f'path element at position 1 is not an integer: "{k}"') from None
        if -len(o) <= i < len(o):
            o[i] = _jpath_set(o[i], path[1:], value, create)
        elif create and len(path) == 1:
            if i < 0:
                o.insert(0, value)
            else:
                o.append(value)
        return o
    return o


@fn("jsonb_set", "jsonb,text[],jsonb,bool", "jsonb")
def _jsonb_set4(j: str, path: list, v: str, create: bool) -> str:
    return _jdump(_jpath_set(_jload(j), [str(p) for p in path], _jload(v), create))


@fn("jsonb_set", "jsonb,text[],jsonb", "jsonb")
def _jsonb_set(j: str, path: list, v: str) -> str:
    return _jsonb_set4(j, path, v, True)


@fn("jsonb_insert", "jsonb,text[],jsonb", "jsonb")
def _jsonb_insert(j: str, path: list, v: str) -> str:
    return _jsonb_set4(j, path, v, True)


def _jget_path(o: Any, path: list) -> Any:
    for p in path:
        if isinstance(o, dict):
            if p not in o:
                return _NOPE
            o = o[p]
        elif isinstance(o, list):
            try:
                i = int(p)
            except (TypeError, ValueError):
                return _NOPE
            if not -len(o) <= i < len(o):
                return _NOPE
            o = o[i]
        else:
            return _NOPE
    return o


_NOPE = object()

for _jt in ("jsonb", "json"):
    op("#>", f"{_jt},text[]", _jt,
       lambda j, p: (lambda v: None if v is _NOPE else _jdump(v))(_jget_path(_jload(j), p)))
    op("#>>", f"{_jt},text[]", "text",
       lambda j, p: (lambda v: None if v is _NOPE or v is None else (v if isinstance(v, str) else _jdump(v)))(
           _jget_path(_jload(j), p)))


@fn("jsonb_extract_path|json_extract_path", "jsonb,text", "jsonb", variadic="text")
def _jsonb_extract_path(j: str, *p: str) -> str | None:
    v = _jget_path(_jload(j), list(p))
    return None if v is _NOPE else _jdump(v)


@fn("jsonb_extract_path_text|json_extract_path_text", "jsonb,text", "text", variadic="text")
def _jsonb_extract_path_text(j: str, *p: str) -> str | None:
    v = _jget_path(_jload(j), list(p))
    if v is _NOPE or v is None:
        return None
    return v if isinstance(v, str) else _jdump(v)


op("-", "jsonb,text", "jsonb",
   lambda j, k: _jdump({a: b for a, b in _jload(j).items() if a != k} if isinstance(_jload(j), dict)
                       else [x for x in _jload(j) if x != k]))
op("||", "jsonb,jsonb", "jsonb", lambda a, b: _jconcat(_jload(a), _jload(b)))
op("?|", "jsonb,text[]", "bool", lambda j, ks: any(k in _jload(j) for k in ks))
op("?&", "jsonb,text[]", "bool", lambda j, ks: all(k in _jload(j) for k in ks))


def _jconcat(a: Any, b: Any) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        return _jdump({**a, **b})
    la = a if isinstance(a, list) else [a]
    lb = b if isinstance(b, list) else [b]
    return _jdump(la + lb)


@fn("jsonb_strip_nulls|json_strip_nulls", "jsonb", "jsonb")
def _jsonb_strip_nulls(j: str) -> str:
    def strip(o: Any) -> Any:
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items() if v is not None}
        if isinstance(o, list):
            return [strip(v) for v in o]
        return o
    return _jdump(strip(_jload(j)))


@fn("jsonb_pretty", "jsonb", "text")
def _jsonb_pretty(j: str) -> str:
    import json
    return json.dumps(_jload(j), indent=4, default=str)


@fn("jsonb_object|json_object", "text[]", "jsonb")
def _jsonb_object(a: list) -> str:
    if len(a) % 2:
        raise PgError("2202E", "array must have even number of elements")
    return _jdump({a[i]: a[i + 1] for i in range(0, len(a), 2)})


@fn("row_to_json", "record", "json")
def _row_to_json(r: Any) -> str:
    return _to_jsonb(r)


_ = _dt


@srf("pg_partition_ancestors", "regclass", "regclass")
def _pg_partition_ancestors(oid: int):
    return [oid]


@fn("pg_tablespace_location", "oid", "text")
def _pg_tablespace_location(oid: int) -> str:
    return ""
