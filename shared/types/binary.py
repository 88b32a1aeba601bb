"""Binary-format (``typsend``/``typreceive``) codecs of the core types.

``binary_decoder(oid)`` returns ``f(bytes) -> value`` and ``binary_encoder(oid)``
returns ``f(value) -> bytes``.  Both raise
:class:`~pgbundle.shared.types.values.InvalidValue` (22P03) on malformed data.
The engine may use these to serialise heap tuples, so they are the canonical
on-disk value format too.
"""

from __future__ import annotations

import datetime as _dt
import struct
import uuid as _uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from . import oids as T
from .arrays import decode_array_binary, encode_array_binary
from .text import parse_json, parse_jsonb
from .values import Interval, InvalidValue

_i16 = struct.Struct("!h")
_i32 = struct.Struct("!i")
_u32 = struct.Struct("!I")
_i64 = struct.Struct("!q")
_f32 = struct.Struct("!f")
_f64 = struct.Struct("!d")
_iv = struct.Struct("!qii")
_num_hdr = struct.Struct("!hhHH")

UTC = _dt.timezone.utc
_EPOCH_DATE_ORD = _dt.date(2000, 1, 1).toordinal()
_EPOCH_TS = _dt.datetime(2000, 1, 1)
_EPOCH_TSTZ = _dt.datetime(2000, 1, 1, tzinfo=UTC)
_US = _dt.timedelta(microseconds=1)

NUMERIC_POS = 0x0000
NUMERIC_NEG = 0x4000
NUMERIC_NAN = 0xC000
NUMERIC_PINF = 0xD000
NUMERIC_NINF = 0xF000


def _bad() -> InvalidValue:
    return InvalidValue("22P03", "incorrect binary data format")


def _unpacker(st: struct.Struct) -> Callable[[bytes], Any]:
    size = st.size
    unpack = st.unpack

    def dec(b: bytes) -> Any:
        if len(b) != size:
            raise InvalidValue("22P03", "incorrect binary data format in bind parameter")
        return unpack(b)[0]
    return dec


def _packer(st: struct.Struct, name: str) -> Callable[[Any], bytes]:
    pack = st.pack

    def enc(v: Any) -> bytes:
        try:
            return pack(v)
        except struct.error:
            raise InvalidValue("22003", f"{name} out of range") from None
    return enc


# ---------------------------------------------------------------- numeric

def encode_numeric(v: Decimal) -> bytes:
    if v.is_nan():
        return _num_hdr.pack(0, 0, NUMERIC_NAN, 0)
    if v.is_infinite():
        return _num_hdr.pack(0, 0, NUMERIC_PINF if v > 0 else NUMERIC_NINF, 0)
    sign, digits, exp = v.as_tuple()
    assert isinstance(exp, int)  # NaN and infinities were handled above
    dscale = max(0, -exp)
    # integer made of all digits, value = int * 10**exp
    s = "".join(map(str, digits)) or "0"
    if exp > 0:
        s += "0" * exp
        exp = 0
    # split into integer and fraction parts in decimal digits
    frac_len = -exp
    int_part = s[:-frac_len] if frac_len else s
    frac_part = s[-frac_len:] if frac_len else ""
    if len(frac_part) < frac_len:
        frac_part = frac_part.rjust(frac_len, "0")
    int_part = int_part.lstrip("0")
    # pad to groups of 4
    if int_part:
        int_part = int_part.rjust((len(int_part) + 3) // 4 * 4, "0")
    frac_part = frac_part.ljust((len(frac_part) + 3) // 4 * 4, "0")
    groups = [int(int_part[i:i + 4]) for i in range(0, len(int_part), 4)]
    weight = len(groups) - 1
    groups += [int(frac_part[i:i + 4]) for i in range(0, len(frac_part), 4)]
    # strip leading zero groups (adjusting weight) and trailing zero groups
    while groups and groups[0] == 0:
        groups.pop(0)
        weight -= 1
    while groups and groups[-1] == 0:
        groups.pop()
    if not groups:
        weight = 0
    return _num_hdr.pack(len(groups), weight, NUMERIC_NEG if sign else NUMERIC_POS, dscale) + \
        struct.pack(f"!{len(groups)}H", *groups)


def decode_numeric(b: bytes) -> Decimal:
    try:
        ndigits, weight, sign, dscale = _num_hdr.unpack_from(b, 0)
        digits = struct.unpack_from(f"!{ndigits}H", b, 8)
    except struct.error:
        raise _bad() from None
    if sign == NUMERIC_NAN:
        return Decimal("NaN")
    if sign == NUMERIC_PINF:
        return Decimal("Infinity")
    if sign == NUMERIC_NINF:
        return Decimal("-Infinity")
    if ndigits == 0:
        return Decimal(0).scaleb(-dscale) if dscale else Decimal(0)
    s = "".join(f"{d:04d}" for d in digits)
    # value = int(s) * 10000**(weight - ndigits + 1)
    exp = 4 * (weight - ndigits + 1)
    # adjust to exactly dscale fraction digits (the dropped digits are zero padding)
    if exp < -dscale:
        cut = -dscale - exp
        s = s[:-cut] if cut < len(s) else "0"
    elif exp > -dscale:
        s += "0" * (exp + dscale)
    digits_t = tuple(int(c) for c in s.lstrip("0") or "0")
    return Decimal((1 if sign == NUMERIC_NEG else 0, digits_t, -dscale))


# ---------------------------------------------------------------- date/time

def encode_date(v: _dt.date) -> bytes:
    return _i32.pack(v.toordinal() - _EPOCH_DATE_ORD)


def decode_date(b: bytes) -> _dt.date:
    (d,) = _i32.unpack(b)
    try:
        return _dt.date.fromordinal(d + _EPOCH_DATE_ORD)
    except (ValueError, OverflowError):
        raise InvalidValue("22008", "date out of range") from None


def _micros(td: _dt.timedelta) -> int:
    return (td.days * 86400 + td.seconds) * 1_000_000 + td.microseconds


def encode_timestamp(v: _dt.datetime) -> bytes:
    return _i64.pack(_micros(v - _EPOCH_TS))


def decode_timestamp(b: bytes) -> _dt.datetime:
    (us,) = _i64.unpack(b)
    try:
        return _EPOCH_TS + _dt.timedelta(microseconds=us)
    except OverflowError:
        raise InvalidValue("22008", "timestamp out of range") from None


def encode_timestamptz(v: _dt.datetime) -> bytes:
    if v.tzinfo is None:
        v = v.replace(tzinfo=UTC)
    return _i64.pack(_micros(v - _EPOCH_TSTZ))


def decode_timestamptz(b: bytes) -> _dt.datetime:
    (us,) = _i64.unpack(b)
    try:
        return _EPOCH_TSTZ + _dt.timedelta(microseconds=us)
    except OverflowError:
        raise InvalidValue("22008", "timestamp out of range") from None


def encode_time(v: _dt.time) -> bytes:
    return _i64.pack(((v.hour * 60 + v.minute) * 60 + v.second) * 1_000_000 + v.microsecond)


def decode_time(b: bytes) -> _dt.time:
    (us,) = _i64.unpack(b)
    s, us = divmod(us, 1_000_000)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return _dt.time(h % 24, m, s, us)


def encode_interval(v: Interval) -> bytes:
    return _iv.pack(v.microseconds, v.days, v.months)


def decode_interval(b: bytes) -> Interval:
    us, days, months = _iv.unpack(b)
    return Interval(months, days, us)


# ---------------------------------------------------------------- misc

def _enc_text(v: str) -> bytes:
    return v.encode()


def _dec_text(b: bytes) -> str:
    try:
        return bytes(b).decode()
    except UnicodeDecodeError:
        raise InvalidValue("22021", "invalid byte sequence for encoding \"UTF8\"") from None


def _enc_bool(v: bool) -> bytes:
    return b"\x01" if v else b"\x00"


def _dec_bool(b: bytes) -> bool:
    if len(b) != 1:
        raise _bad()
    return b != b"\x00"


def _enc_jsonb(v: str) -> bytes:
    return b"\x01" + v.encode()


def _dec_jsonb(b: bytes) -> str:
    if not b or b[0] != 1:
        raise InvalidValue("22P03", "unsupported jsonb version number")
    return parse_jsonb(_dec_text(b[1:]))


def _dec_json(b: bytes) -> str:
    return parse_json(_dec_text(b))


def _enc_uuid(v: _uuid.UUID) -> bytes:
    return v.bytes


def _dec_uuid(b: bytes) -> _uuid.UUID:
    if len(b) != 16:
        raise _bad()
    return _uuid.UUID(bytes=bytes(b))


def _dec_int2_widen(b: bytes) -> int:
    """int2/int4/int8 from any width: psycopg sends small ints as int2."""
    n = len(b)
    v: int
    if n == 2:
        (v,) = _i16.unpack(b)
    elif n == 4:
        (v,) = _i32.unpack(b)
    elif n == 8:
        (v,) = _i64.unpack(b)
    else:
        raise InvalidValue("22P03", "incorrect binary data format in bind parameter")
    return v


def _dec_float(b: bytes) -> float:
    v: float
    if len(b) == 8:
        (v,) = _f64.unpack(b)
    elif len(b) == 4:
        (v,) = _f32.unpack(b)
    else:
        raise _bad()
    return v


_DECODERS: dict[int, Callable[[bytes], Any]] = {
    T.INT2: _unpacker(_i16), T.INT4: _unpacker(_i32), T.INT8: _unpacker(_i64),
    T.OID: _unpacker(_u32), T.XID: _unpacker(_u32), T.CID: _unpacker(_u32), T.REGPROC: _unpacker(_u32),
    T.REGCLASS: _unpacker(_u32), T.REGTYPE: _unpacker(_u32), T.REGNAMESPACE: _unpacker(_u32),
    T.REGROLE: _unpacker(_u32), T.XID8: _unpacker(_i64),
    T.FLOAT4: _unpacker(_f32), T.FLOAT8: _unpacker(_f64), T.NUMERIC: decode_numeric,
    T.BOOL: _dec_bool, T.BYTEA: bytes, T.TEXT: _dec_text, T.VARCHAR: _dec_text, T.BPCHAR: _dec_text,
    T.NAME: _dec_text, T.CHAR: _dec_text, T.UNKNOWN: _dec_text, T.JSON: _dec_json, T.JSONB: _dec_jsonb,
    T.DATE: decode_date, T.TIME: decode_time, T.TIMESTAMP: decode_timestamp,
    T.TIMESTAMPTZ: decode_timestamptz, T.INTERVAL: decode_interval, T.UUID: _dec_uuid,
    T.PG_NODE_TREE: _dec_text,
}

_ENCODERS: dict[int, Callable[[Any], bytes]] = {
    T.INT2: _packer(_i16, "smallint"), T.INT4: _packer(_i32, "integer"), T.INT8: _packer(_i64, "bigint"),
    T.OID: _packer(_u32, "oid"), T.XID: _packer(_u32, "xid"), T.CID: _packer(_u32, "cid"),
    T.REGPROC: _packer(_u32, "oid"), T.REGCLASS: _packer(_u32, "oid"), T.REGTYPE: _packer(_u32, "oid"),
    T.REGNAMESPACE: _packer(_u32, "oid"), T.REGROLE: _packer(_u32, "oid"), T.XID8: _packer(_i64, "xid8"),
    T.FLOAT4: _f32.pack, T.FLOAT8: _f64.pack, T.NUMERIC: encode_numeric, T.BOOL: _enc_bool,
    T.BYTEA: bytes, T.TEXT: _enc_text, T.VARCHAR: _enc_text, T.BPCHAR: _enc_text, T.NAME: _enc_text,
    T.CHAR: _enc_text, T.UNKNOWN: _enc_text, T.JSON: _enc_text, T.JSONB: _enc_jsonb,
    T.DATE: encode_date, T.TIME: encode_time, T.TIMESTAMP: encode_timestamp,
    T.TIMESTAMPTZ: encode_timestamptz, T.INTERVAL: encode_interval, T.UUID: _enc_uuid,
    T.PG_NODE_TREE: _enc_text,
}

# Parameter decoders that accept a narrower integer than declared (psycopg
# declares Python ints as int2 even when the column is int4).
LENIENT_INT_DECODER = _dec_int2_widen
LENIENT_FLOAT_DECODER = _dec_float


def binary_decoder(oid: int) -> Callable[[bytes], Any]:
    d = _DECODERS.get(oid)
    if d is not None:
        return d
    elem = T.element_of(oid)
    if elem:
        return lambda b: decode_array_binary(b, binary_decoder)
    return _dec_text


def binary_encoder(oid: int) -> Callable[[Any], bytes]:
    e = _ENCODERS.get(oid)
    if e is not None:
        return e
    elem = T.element_of(oid)
    if elem:
        ee = binary_encoder(elem)
        return lambda v: encode_array_binary(v, elem, ee)
    return lambda v: str(v).encode()


def has_binary(oid: int) -> bool:
    return oid in _ENCODERS or bool(T.element_of(oid) and T.element_of(oid) in _ENCODERS)
