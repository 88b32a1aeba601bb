"""Order-preserving byte encoding of index keys (C collation).

``encode_key(values, type_oids)`` returns bytes whose lexicographic order equals the
SQL order of the values (NULLS LAST, as a default ascending B-tree).  Each column's
encoding is self-delimiting, so a key is never a proper prefix of another key of the
same columns and a key can be followed by the heap TID to make every index entry
unique.  Equal SQL values encode equally (1.0 = 1.00, -0.0 = 0.0, 'a ' = 'a' for char(n)).
"""

from __future__ import annotations

import datetime
import decimal
import struct
import uuid
from typing import Any

NOTNULL = b"\x02"
NULL = b"\x05"
_Q = struct.Struct(">Q")
_D = struct.Struct(">d")
_EPOCH = datetime.datetime(1970, 1, 1)
_EPOCH_TZ = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
TID = struct.Struct(">IH")
_INT_TYPES = (20, 21, 23, 26, 28, 24, 2205, 2206, 4089, 4096)


def _int(v: int) -> bytes:
    return NOTNULL + _Q.pack((int(v) + (1 << 63)) & 0xFFFFFFFFFFFFFFFF)


def _float(v: float) -> bytes:
    v = float(v)
    if v == 0.0:
        v = 0.0
    if v != v:
        return NOTNULL + b"\xff" * 8
    b = bytearray(_D.pack(v))
    if b[0] & 0x80:
        b = bytearray(x ^ 0xFF for x in b)
    else:
        b[0] |= 0x80
    return NOTNULL + bytes(b)


def _bytes(b: bytes) -> bytes:
    return NOTNULL + b.replace(b"\x00", b"\x00\x01") + b"\x00\x00"


def _text(s: str) -> bytes:
    return _bytes(s.encode("utf-8", "surrogatepass"))


def _numeric(d: Any) -> bytes:
    d = decimal.Decimal(d)
    if d.is_nan():
        return NOTNULL + b"\x04"
    if d.is_infinite():
        return NOTNULL + (b"\x05" if d > 0 else b"\x00")
    if d == 0:
        return NOTNULL + b"\x02"
    sign, digits, exp = d.as_tuple()
    ds = "".join(map(str, digits)).rstrip("0")
    adjusted = d.adjusted()
    body = struct.pack(">H", adjusted + 16384) + ds.encode() + b"\x00"
    if sign:
        return NOTNULL + b"\x01" + bytes(x ^ 0xFF for x in body)
    return NOTNULL + b"\x03" + body


def encode_value(v: Any, type_oid: int) -> bytes:
    if v is None:
        return NULL
    if type_oid in _INT_TYPES:
        return _int(v)
    if type_oid in (700, 701):
        return _float(v)
    if type_oid == 1700:
        return _numeric(v)
    if type_oid == 16:
        return NOTNULL + (b"\x01" if v else b"\x00")
    if type_oid == 1042:
        return _text(str(v).rstrip(" "))
    if type_oid == 17:
        return _bytes(bytes(v))
    if type_oid == 1082:
        return _int(v.toordinal())
    if type_oid == 1114:
        if v.tzinfo is not None:
            v = v.replace(tzinfo=None)
        return _int((v - _EPOCH) // datetime.timedelta(microseconds=1))
    if type_oid == 1184:
        if v.tzinfo is None:
            v = v.replace(tzinfo=datetime.timezone.utc)
        return _int((v - _EPOCH_TZ) // datetime.timedelta(microseconds=1))
    if type_oid == 1083 and isinstance(v, datetime.time):
        return _int(((v.hour * 60 + v.minute) * 60 + v.second) * 1000000 + v.microsecond)
    if type_oid == 1186:
        if isinstance(v, datetime.timedelta):
            return _int(v // datetime.timedelta(microseconds=1))
        return _int(v._key())  # Interval: compares as if a month were 30 days
    if type_oid == 2950:
        return NOTNULL + (v.bytes if isinstance(v, uuid.UUID) else uuid.UUID(str(v)).bytes)
    if isinstance(v, bool):
        return NOTNULL + (b"\x01" if v else b"\x00")
    if isinstance(v, int):
        return _int(v)
    if isinstance(v, float):
        return _float(v)
    if isinstance(v, decimal.Decimal):
        return _numeric(v)
    if isinstance(v, bytes):
        return _bytes(v)
    return _text(str(v))


def value_encoder(type_oid: int) -> Any:
    """``lambda v: encode_value(v, type_oid)``, with the integer types' test done once
    (index builds encode every row's key)."""
    if type_oid in _INT_TYPES:
        def enc_int(v: Any) -> bytes:
            return NULL if v is None else _int(v)
        return enc_int

    def enc(v: Any) -> bytes:
        return encode_value(v, type_oid)
    return enc


def encode_key(values: Any, type_oids: Any) -> bytes:
    return b"".join(encode_value(v, t) for v, t in zip(values, type_oids))


def has_null(values: Any) -> bool:
    return any(v is None for v in values)


def tid_bytes(block: int, offset: int) -> bytes:
    return TID.pack(block, offset)
