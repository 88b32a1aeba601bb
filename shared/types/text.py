"""Text-format input and output of the core types, exactly as PostgreSQL 15
prints them with ``DateStyle=ISO, MDY``, ``IntervalStyle=postgres`` and
``extra_float_digits=1``.

``text_decoder(oid)`` returns ``f(str) -> value`` (raises
:class:`~pgbundle.shared.types.values.InvalidValue` with PostgreSQL's SQLSTATE
and message); ``text_encoder(oid)`` returns ``f(value) -> str``.  Timestamps
with time zone are read and printed in UTC unless a ``tz`` (a ``tzinfo``) is
given.  Unknown OIDs fall back to ``str``.
"""

from __future__ import annotations

import datetime as _dt
import json as _json
import re
import uuid as _uuid
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from . import oids as T
from .arrays import format_array_text, parse_array_text
from .values import Interval, InvalidValue, invalid_syntax, out_of_range

UTC = _dt.timezone.utc
PG_EPOCH_DATE = _dt.date(2000, 1, 1)

# ---------------------------------------------------------------- integers

_INT_RANGE = {T.INT2: (-32768, 32767, "smallint"), T.INT4: (-2**31, 2**31 - 1, "integer"),
              T.INT8: (-2**63, 2**63 - 1, "bigint")}
_INT_RE = re.compile(r"\s*([+-]?)(0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|[0-9][0-9_]*)\s*\Z")


def _int_decoder(oid: int) -> Callable[[str], int]:
    lo, hi, name = _INT_RANGE[oid]

    def dec(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            m = _INT_RE.match(s)
            if m is None or "__" in s or s.strip().endswith("_"):
                raise invalid_syntax(name, s) from None
            v = int(m.group(1) + m.group(2), 0)
        if v < lo or v > hi:
            raise out_of_range(s, name)
        return v
    return dec


def parse_oid(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise invalid_syntax("oid", s) from None
    if v < -2**31 or v > 2**32 - 1:
        raise out_of_range(s, "oid")
    return v & 0xFFFFFFFF


# ---------------------------------------------------------------- floats

_SPECIAL_FLOATS = {"nan": float("nan"), "infinity": float("inf"), "+infinity": float("inf"),
                   "-infinity": float("-inf"), "inf": float("inf"), "+inf": float("inf"), "-inf": float("-inf")}


def _float_decoder(name: str, single: bool) -> Callable[[str], float]:
    def dec(s: str) -> float:
        t = s.strip().lower()
        sp = _SPECIAL_FLOATS.get(t)
        if sp is not None:
            return sp
        try:
            v = float(t)
        except ValueError:
            raise invalid_syntax(name, s) from None
        if "_" in t or t.startswith(("nan", "inf", "+inf", "-inf", "+nan", "-nan")):
            raise invalid_syntax(name, s)
        if v in (float("inf"), float("-inf")):
            raise InvalidValue("22003", f'"{s}" is out of range for type {name}')
        if single:
            import struct
            try:
                v = struct.unpack("f", struct.pack("f", v))[0]
            except OverflowError:
                raise InvalidValue("22003", f'"{s}" is out of range for type real') from None
        return v
    return dec


def format_float8(v: float) -> str:
    """float8out with extra_float_digits=1: shortest exact digits, fixed
    notation for decimal exponents in [-4, 15), else ``1e+15`` style."""
    if v != v:
        return "NaN"
    if v == float("inf"):
        return "Infinity"
    if v == float("-inf"):
        return "-Infinity"
    return _format_shortest(repr(v), 15)


def _shortest_float4(v: float) -> str:
    import struct
    target = struct.pack("f", v)
    for prec in range(1, 10):
        s = f"{v:.{prec}g}"
        if struct.pack("f", float(s)) == target:
            return s
    return repr(v)


def format_float4(v: float) -> str:
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "Infinity" if v > 0 else "-Infinity"
    return _format_shortest(_shortest_float4(v), 6 + 1)


def _format_shortest(r: str, fixed_limit: int) -> str:
    """Reformat Python's shortest repr ``r`` the way PostgreSQL's ryu output does."""
    neg = r.startswith("-")
    if neg:
        r = r[1:]
    if "e" in r or "E" in r:
        mant, _, exp_s = r.lower().partition("e")
        exp = int(exp_s)
    else:
        mant, exp = r, 0
    if "." in mant:
        ip, fp = mant.split(".")
    else:
        ip, fp = mant, ""
    digits = (ip + fp).lstrip("0")
    # decimal exponent of the first significant digit
    if ip.strip("0"):
        point = len(ip.lstrip("0")) + exp
    else:
        lead = len(fp) - len(fp.lstrip("0"))
        point = -lead + exp
    digits = digits.rstrip("0") or "0"
    if digits == "0":
        return "-0" if neg else "0"
    e10 = point - 1
    if -4 <= e10 < fixed_limit:
        if point <= 0:
            s = "0." + "0" * (-point) + digits
        elif point >= len(digits):
            s = digits + "0" * (point - len(digits))
        else:
            s = digits[:point] + "." + digits[point:]
    else:
        m = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        s = f"{m}e{'+' if e10 >= 0 else '-'}{abs(e10):02d}"
    return "-" + s if neg else s


# ---------------------------------------------------------------- numeric

def parse_numeric(s: str) -> Decimal:
    t = s.strip()
    low = t.lower()
    if low == "nan":
        return Decimal("NaN")
    if low in ("infinity", "+infinity", "inf", "+inf"):
        return Decimal("Infinity")
    if low in ("-infinity", "-inf"):
        return Decimal("-Infinity")
    if not t or "_" in t or low.startswith(("nan", "snan", "inf", "+inf", "-inf", "-nan", "+nan")):
        raise invalid_syntax("numeric", s)
    try:
        return Decimal(t)
    except InvalidOperation:
        raise invalid_syntax("numeric", s) from None


def format_numeric(v: Decimal) -> str:
    if v.is_nan():
        return "NaN"
    if v.is_infinite():
        return "Infinity" if v > 0 else "-Infinity"
    s = format(v, "f")
    if s.startswith("-") and s.strip("-0.") == "":
        s = s[1:]
    return s


# ---------------------------------------------------------------- bool

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def parse_bool(s: str) -> bool:
    t = s.strip().lower()
    if t:
        if t in ("t", "y", "1", "on") or (len(t) >= 1 and ("true".startswith(t) or "yes".startswith(t))):
            if t != "o":
                return True
        if t in ("f", "n", "0", "off", "of") or "false".startswith(t) or "no".startswith(t):
            return False
    raise invalid_syntax("boolean", s)


# ---------------------------------------------------------------- bytea

def parse_bytea(s: str) -> bytes:
    if s.startswith("\\x"):
        h = "".join(s[2:].split())
        try:
            return bytes.fromhex(h)
        except ValueError:
            raise InvalidValue("22P02", "invalid hexadecimal digit") from None
    out = bytearray()
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c != "\\":
            out += c.encode()
            i += 1
        elif s[i + 1:i + 2] == "\\":
            out.append(92)
            i += 2
        elif re.match(r"[0-3][0-7][0-7]", s[i + 1:i + 4]):
            out.append(int(s[i + 1:i + 4], 8))
            i += 4
        else:
            raise invalid_syntax("bytea", s)
    return bytes(out)


def format_bytea(v: bytes) -> str:
    return "\\x" + bytes(v).hex()


# ---------------------------------------------------------------- date/time

_DATE_RE = re.compile(r"\s*(\d{1,4}|\d{5,})-(\d{1,2})-(\d{1,2})(\s+BC)?\s*\Z", re.I)
_TS_RE = re.compile(
    r"\s*(\d{4,})-(\d{1,2})-(\d{1,2})(?:[T\s]+(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d*))?)?)?"
    r"\s*(Z|[+-]\d{1,2}(?::?\d{2}(?::?\d{2})?)?|[A-Za-z][A-Za-z0-9_/+-]*)?\s*\Z")
_TIME_RE = re.compile(r"\s*(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d*))?)?\s*\Z")


def _frac_us(frac: str | None) -> tuple[int, int]:
    """(microseconds, carry seconds) from fractional digits, rounded half-up."""
    if not frac:
        return 0, 0
    f = (frac + "000000")[:7]
    us = int(f[:6]) + (1 if f[6] >= "5" else 0)
    if us >= 1_000_000:
        return us - 1_000_000, 1
    return us, 0


def parse_date(s: str) -> _dt.date:
    m = _DATE_RE.match(s)
    if m is None:
        t = s.strip().lower()
        if t in ("today", "now"):
            return _dt.datetime.now(UTC).date()
        if t == "tomorrow":
            return _dt.datetime.now(UTC).date() + _dt.timedelta(days=1)
        if t == "yesterday":
            return _dt.datetime.now(UTC).date() - _dt.timedelta(days=1)
        mt = _TS_RE.match(s)
        if mt is not None:
            return parse_timestamp(s).date()
        raise InvalidValue("22007", f'invalid input syntax for type date: "{s}"')
    y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    try:
        return _dt.date(y, mo, d)
    except ValueError:
        raise InvalidValue("22008", f'date/time field value out of range: "{s}"') from None


def tz_from_text(z: str, s: str) -> _dt.tzinfo:
    if z in ("Z", "z") or z.upper() in ("UTC", "GMT"):
        return UTC
    if z[0] in "+-":
        sign = -1 if z[0] == "-" else 1
        body = z[1:].replace(":", "")
        h = int(body[:2]) if len(body) >= 2 and body[:2].isdigit() and len(body) != 1 and len(body) != 3 \
            else int(body[:1] if len(body) in (1, 3) else body[:2])
        rest = body[2:] if len(body) in (2, 4, 6) else body[1:]
        mi = int(rest[:2]) if rest else 0
        se = int(rest[2:4]) if len(rest) > 2 else 0
        return _dt.timezone(sign * _dt.timedelta(hours=h, minutes=mi, seconds=se))
    try:
        from zoneinfo import ZoneInfo
        return ZoneInfo(z)
    except Exception:
        raise InvalidValue("22023", f'time zone "{z}" not recognized') from None


def _parse_ts_parts(s: str, typname: str) -> tuple[_dt.datetime, str | None]:
    m = _TS_RE.match(s)
    if m is None:
        t = s.strip().lower()
        if t == "now":
            return _dt.datetime.now(UTC).replace(tzinfo=None), "UTC"
        if t in ("today", "tomorrow", "yesterday"):
            day = parse_date(t)
            return _dt.datetime(day.year, day.month, day.day), None
        if t in ("epoch",):
            return _dt.datetime(1970, 1, 1), None
        raise InvalidValue("22007", f'invalid input syntax for type {typname}: "{s}"')
    y, mo, d, hh, mi, ss, frac, z = m.groups()
    us, carry = _frac_us(frac)
    try:
        v = _dt.datetime(int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0), us)
    except ValueError:
        if ss is not None and int(ss) == 60:
            v = _dt.datetime(int(y), int(mo), int(d), int(hh or 0), int(mi or 0), 59, us) + _dt.timedelta(seconds=1)
        else:
            raise InvalidValue("22008", f'date/time field value out of range: "{s}"') from None
    if carry:
        v += _dt.timedelta(seconds=1)
    return v, z


def parse_timestamp(s: str) -> _dt.datetime:
    v, _z = _parse_ts_parts(s, "timestamp")
    return v


def parse_timestamptz(s: str, tz: _dt.tzinfo | None = None) -> _dt.datetime:
    v, z = _parse_ts_parts(s, "timestamp with time zone")
    zone = tz_from_text(z, s) if z else (tz or UTC)
    return v.replace(tzinfo=zone).astimezone(UTC)


def parse_time(s: str) -> _dt.time:
    m = _TIME_RE.match(s)
    if m is None:
        mt = _TS_RE.match(s)
        if mt is not None:
            return parse_timestamp(s).time()
        raise InvalidValue("22007", f'invalid input syntax for type time: "{s}"')
    hh, mi, ss, frac = m.groups()
    us, carry = _frac_us(frac)
    try:
        t = _dt.time(int(hh), int(mi), int(ss or 0) + carry, us)
    except ValueError:
        raise InvalidValue("22008", f'date/time field value out of range: "{s}"') from None
    return t


def _frac(us: int) -> str:
    return ("." + f"{us:06d}".rstrip("0")) if us else ""


def format_date(v: _dt.date) -> str:
    return f"{v.year:04d}-{v.month:02d}-{v.day:02d}"


def format_time(v: _dt.time) -> str:
    return f"{v.hour:02d}:{v.minute:02d}:{v.second:02d}{_frac(v.microsecond)}"


def format_timestamp(v: _dt.datetime) -> str:
    return (f"{v.year:04d}-{v.month:02d}-{v.day:02d} {v.hour:02d}:{v.minute:02d}:{v.second:02d}"
            f"{_frac(v.microsecond)}")


def _offset(off: _dt.timedelta) -> str:
    secs = int(off.total_seconds())
    sign = "-" if secs < 0 else "+"
    secs = abs(secs)
    h, rem = divmod(secs, 3600)
    mi, se = divmod(rem, 60)
    out = f"{sign}{h:02d}"
    if mi or se:
        out += f":{mi:02d}"
    if se:
        out += f":{se:02d}"
    return out


def format_timestamptz(v: _dt.datetime, tz: _dt.tzinfo | None = None) -> str:
    if v.tzinfo is None:
        v = v.replace(tzinfo=UTC)
    local = v.astimezone(tz or UTC)
    return format_timestamp(local) + _offset(local.utcoffset() or _dt.timedelta(0))


# ---------------------------------------------------------------- interval

_IV_UNITS = {
    "microsecond": (0, 0, 1), "microseconds": (0, 0, 1), "us": (0, 0, 1), "usec": (0, 0, 1), "usecs": (0, 0, 1),
    "millisecond": (0, 0, 1000), "milliseconds": (0, 0, 1000), "ms": (0, 0, 1000), "msec": (0, 0, 1000),
    "msecs": (0, 0, 1000),
    "second": (0, 0, 10**6), "seconds": (0, 0, 10**6), "sec": (0, 0, 10**6), "secs": (0, 0, 10**6),
    "s": (0, 0, 10**6),
    "minute": (0, 0, 60 * 10**6), "minutes": (0, 0, 60 * 10**6), "min": (0, 0, 60 * 10**6),
    "mins": (0, 0, 60 * 10**6), "m": (0, 0, 60 * 10**6),
    "hour": (0, 0, 3600 * 10**6), "hours": (0, 0, 3600 * 10**6), "h": (0, 0, 3600 * 10**6),
    "hr": (0, 0, 3600 * 10**6), "hrs": (0, 0, 3600 * 10**6),
    "day": (0, 1, 0), "days": (0, 1, 0), "d": (0, 1, 0),
    "week": (0, 7, 0), "weeks": (0, 7, 0), "w": (0, 7, 0),
    "month": (1, 0, 0), "months": (1, 0, 0), "mon": (1, 0, 0), "mons": (1, 0, 0),
    "year": (12, 0, 0), "years": (12, 0, 0), "y": (12, 0, 0), "yr": (12, 0, 0), "yrs": (12, 0, 0),
    "decade": (120, 0, 0), "decades": (120, 0, 0), "century": (1200, 0, 0), "centuries": (1200, 0, 0),
}
_IV_TOKEN = re.compile(r"\s*([+-]?\d+):(\d+)(?::(\d+(?:\.\d*)?))?|\s*([+-]?\d+(?:\.\d*)?|[+-]?\.\d+)\s*([a-z]+)?", re.I)


def parse_interval(s: str) -> Interval:
    t = s.strip().lower()
    if t.startswith("@"):
        t = t[1:]
    ago = t.endswith(" ago")
    if ago:
        t = t[:-4]
    months = days = us = 0
    pos = 0
    if not t:
        raise InvalidValue("22007", f'invalid input syntax for type interval: "{s}"')
    while pos < len(t):
        if t[pos:].strip() == "":
            break
        m = _IV_TOKEN.match(t, pos)
        if m is None or m.end() == pos:
            raise InvalidValue("22007", f'invalid input syntax for type interval: "{s}"')
        pos = m.end()
        if m.group(1) is not None:
            h = int(m.group(1))
            sign = -1 if m.group(1).startswith("-") else 1
            sec = Decimal(m.group(3) or 0)
            total = abs(h) * 3600 * 10**6 + int(m.group(2)) * 60 * 10**6 + int(sec * 10**6)
            us += sign * total
            continue
        num = Decimal(m.group(4))
        unit = m.group(5) or "second"
        if unit not in _IV_UNITS:
            raise InvalidValue("22007", f'invalid input syntax for type interval: "{s}"')
        mo, d, u = _IV_UNITS[unit]
        if mo:
            whole = int(num * mo)
            months += whole
            rem_days = (num * mo - whole) * 30
            days += int(rem_days)
            us += int((rem_days - int(rem_days)) * 86400 * 10**6)
        elif d:
            whole = int(num * d)
            days += whole
            us += int((num * d - whole) * 86400 * 10**6)
        else:
            us += int(num * u)
    iv = Interval(months, days, us)
    return -iv if ago else iv


def format_interval(v: Interval) -> str:
    parts = []
    years, months = divmod(abs(v.months), 12)
    sgn = -1 if v.months < 0 else 1
    if years:
        parts.append(f"{sgn * years} year{'s' if sgn * years != 1 else ''}")
    if months:
        parts.append(f"{sgn * months} mon{'s' if sgn * months != 1 else ''}")
    if v.days:
        parts.append(f"{v.days} day{'s' if v.days != 1 else ''}")
    if v.microseconds or not parts:
        us = v.microseconds
        neg = us < 0
        us = abs(us)
        h, rem = divmod(us, 3600 * 10**6)
        mi, rem = divmod(rem, 60 * 10**6)
        se, fr = divmod(rem, 10**6)
        sign = "-" if neg else ("+" if (v.days < 0 or v.months < 0) and parts else "")
        parts.append(f"{sign}{h:02d}:{mi:02d}:{se:02d}{_frac(fr)}")
    return " ".join(parts)


# ---------------------------------------------------------------- json

def parse_json(s: str) -> str:
    try:
        _json.loads(s)
    except ValueError:
        raise InvalidValue("22P02", "invalid input syntax for type json") from None
    return s


def _jsonb_dump(o: Any) -> str:
    if isinstance(o, dict):
        items = sorted(o.items(), key=lambda kv: (len(kv[0].encode()), kv[0].encode()))
        return "{" + ", ".join(_json.dumps(k, ensure_ascii=False) + ": " + _jsonb_dump(v) for k, v in items) + "}"
    if isinstance(o, list):
        return "[" + ", ".join(_jsonb_dump(x) for x in o) + "]"
    if isinstance(o, Decimal):
        return format_numeric(o)
    if o is True:
        return "true"
    if o is False:
        return "false"
    if o is None:
        return "null"
    if isinstance(o, int):
        return str(o)
    return _json.dumps(o, ensure_ascii=False)


def parse_jsonb(s: str) -> str:
    """jsonb values are kept as their canonical text (keys ordered as jsonb
    orders them, ``": "`` and ``", "`` separators, numbers as written)."""
    try:
        o = _json.loads(s, parse_float=Decimal, parse_int=int)
    except ValueError:
        raise InvalidValue("22P02", "invalid input syntax for type json") from None
    return _jsonb_dump(o)


def jsonb_from_python(o: Any) -> str:
    return _jsonb_dump(o)


# ---------------------------------------------------------------- misc

def parse_char(s: str) -> str:
    b = s.encode()
    return b[:1].decode(errors="ignore") if b else ""


def parse_name(s: str) -> str:
    b = s.encode()
    if len(b) > 63:
        return b[:63].decode(errors="ignore")
    return s


def parse_uuid(s: str) -> _uuid.UUID:
    try:
        return _uuid.UUID(s.strip())
    except ValueError:
        raise invalid_syntax("uuid", s) from None


def _format_bool(v: bool) -> str:
    return "t" if v else "f"


def _ident(s: str) -> str:
    return s


def _format_vector(v: Any) -> str:
    """int2vector / oidvector: elements separated by spaces."""
    if isinstance(v, str):
        return v
    return " ".join(str(x) for x in v)


def format_record(v: Any) -> str:
    """A row value as PostgreSQL prints a record: (1,abc,,"a b")."""
    parts = []
    for x in v:
        if x is None:
            parts.append("")
            continue
        if isinstance(x, bool):
            s = "t" if x else "f"
        elif isinstance(x, float):
            s = format_float8(x)
        elif isinstance(x, Decimal):
            s = format_numeric(x)
        elif isinstance(x, _dt.datetime):
            s = format_timestamptz(x) if x.tzinfo else format_timestamp(x)
        elif isinstance(x, _dt.date):
            s = format_date(x)
        elif isinstance(x, Interval):
            s = format_interval(x)
        elif isinstance(x, bytes):
            s = format_bytea(x)
        elif isinstance(x, tuple):
            s = format_record(x)
        elif isinstance(x, list):
            s = format_array_text(x, str)
        else:
            s = str(x)
        if s == "" or any(c in s for c in ' ,()"\\') :
            s = '"' + s.replace("\\", "\\\\").replace('"', '""') + '"'
        parts.append(s)
    return "(" + ",".join(parts) + ")"


def _parse_vector(s: str) -> list[int]:
    return [int(x) for x in s.replace(",", " ").strip("{}").split()]


_DECODERS: dict[int, Callable[[str], Any]] = {
    T.INT2: _int_decoder(T.INT2), T.INT4: _int_decoder(T.INT4), T.INT8: _int_decoder(T.INT8),
    T.OID: parse_oid, T.XID: parse_oid, T.CID: parse_oid, T.REGPROC: parse_oid,
    T.REGCLASS: parse_oid, T.REGTYPE: parse_oid, T.REGNAMESPACE: parse_oid, T.REGROLE: parse_oid,
    T.FLOAT4: _float_decoder("real", True), T.FLOAT8: _float_decoder("double precision", False),
    T.NUMERIC: parse_numeric, T.BOOL: parse_bool, T.BYTEA: parse_bytea,
    T.TEXT: _ident, T.VARCHAR: _ident, T.BPCHAR: _ident, T.UNKNOWN: _ident, T.NAME: parse_name,
    T.CHAR: parse_char, T.DATE: parse_date, T.TIME: parse_time, T.TIMESTAMP: parse_timestamp,
    T.TIMESTAMPTZ: parse_timestamptz, T.INTERVAL: parse_interval, T.JSON: parse_json,
    T.JSONB: parse_jsonb, T.UUID: parse_uuid, T.XID8: _int_decoder(T.INT8), T.PG_NODE_TREE: _ident,
    T.INT2VECTOR: _parse_vector, T.OIDVECTOR: _parse_vector,
}

_ENCODERS: dict[int, Callable[[Any], str]] = {
    T.INT2: str, T.INT4: str, T.INT8: str, T.OID: str, T.XID: str, T.CID: str, T.XID8: str,
    T.FLOAT4: format_float4, T.FLOAT8: format_float8, T.NUMERIC: format_numeric,
    T.BOOL: _format_bool, T.BYTEA: format_bytea, T.TEXT: _ident, T.VARCHAR: _ident, T.BPCHAR: _ident,
    T.NAME: _ident, T.CHAR: _ident, T.UNKNOWN: _ident, T.DATE: format_date, T.TIME: format_time,
    T.TIMESTAMP: format_timestamp, T.TIMESTAMPTZ: format_timestamptz, T.INTERVAL: format_interval,
    T.JSON: _ident, T.JSONB: _ident, T.UUID: str, T.PG_NODE_TREE: _ident,
    T.INT2VECTOR: _format_vector, T.OIDVECTOR: _format_vector, T.RECORD: format_record,
}


def text_decoder(oid: int, tz: _dt.tzinfo | None = None) -> Callable[[str], Any]:
    """``f(str) -> value`` for type ``oid`` (arrays included)."""
    if oid == T.TIMESTAMPTZ and tz is not None:
        return lambda s: parse_timestamptz(s, tz)
    d = _DECODERS.get(oid)
    if d is not None:
        return d
    elem = T.element_of(oid)
    if elem:
        dec = text_decoder(elem, tz)
        return lambda s: parse_array_text(s, dec)
    return _ident


def text_encoder(oid: int, tz: _dt.tzinfo | None = None) -> Callable[[Any], str]:
    """``f(value) -> str`` for type ``oid`` (arrays included)."""
    if oid == T.TIMESTAMPTZ and tz is not None:
        return lambda v: format_timestamptz(v, tz)
    e = _ENCODERS.get(oid)
    if e is not None:
        return e
    elem = T.element_of(oid)
    if elem:
        enc = text_encoder(elem, tz)
        return lambda v: format_array_text(v, enc)
    return str
