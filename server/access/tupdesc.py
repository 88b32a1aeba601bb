"""Row (de)serialisation: a row tuple <-> the data part of a heap tuple.

Rows are msgpack arrays written by msgspec; each relation gets a typed decoder built
from its column type OIDs, so values come back as the Python type they were stored
as (numeric → Decimal, date → date, timestamp → naive datetime, timestamptz → aware
UTC datetime, interval → :class:`~pgbundle.shared.types.Interval`, uuid → UUID, arrays → list, json → parsed value).
Rows written before an ADD COLUMN are shorter; they are padded with each added
column's missing value.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any, Optional

import msgspec

from pgbundle.shared.types import Interval

_PY: dict[int, Any] = {
    16: bool, 17: bytes, 18: str, 19: str, 20: int, 21: int, 23: int, 24: int, 26: int, 28: int, 2205: int,
    2206: int, 4089: int, 4096: int, 2202: int, 2203: int, 2204: int, 3734: int, 3769: int,
    25: str, 1042: str, 1043: str, 700: float, 701: float, 1700: decimal.Decimal, 1082: datetime.date,
    1114: datetime.datetime, 1184: datetime.datetime, 1083: datetime.time, 1186: Interval,
    2950: uuid.UUID, 22: list, 30: list, 1005: list, 1007: list, 1009: list, 1016: list, 1028: list, 1021: list,
    1022: list, 1231: list, 1015: list, 1014: list, 1000: list, 1001: list, 1182: list, 1115: list, 1185: list,
    199: list, 3807: list, 1034: Any, 194: str, 3220: str, 869: str, 650: str, 829: str, 1560: str, 1562: str,
}

def _enc_hook(o: Any) -> Any:
    if isinstance(o, str):  # str subclasses (enum labels)
        return str(o)
    if isinstance(o, datetime.timedelta):
        return Interval(0, o.days, o.seconds * 1_000_000 + o.microseconds)
    raise NotImplementedError(f"cannot store {type(o).__name__}")


_encoder = msgspec.msgpack.Encoder(decimal_format="string", enc_hook=_enc_hook)


def py_type(type_oid: int) -> Any:
    return _PY.get(type_oid, Any)


def encode_row(row: tuple) -> bytes:
    return _encoder.encode(row)


class RowCodec:
    """Decoder for one relation's rows (cached per relation in the backend)."""

    __slots__ = ("types", "natts", "_dec", "_short", "missing")

    def __init__(self, type_oids: tuple[int, ...], missing: tuple[Any, ...] | None = None) -> None:
        self.types = tuple(py_type(t) for t in type_oids)
        self.natts = len(type_oids)
        self.missing = missing or (None,) * self.natts
        self._dec = msgspec.msgpack.Decoder(tuple[tuple(Optional[t] for t in self.types)]  # type: ignore[misc]
                                            ) if self.types else None
        self._short: dict[int, Any] = {}

    def decode(self, data: Any) -> tuple:
        if self._dec is None:
            return ()
        try:
            return self._dec.decode(data)
        except msgspec.ValidationError:
            return self._decode_other(data)

    def _decode_other(self, data: Any) -> tuple:
        raw = msgspec.msgpack.decode(data)
        n = len(raw)
        if n > self.natts:
            raise msgspec.ValidationError(f"row has {n} attributes, relation has {self.natts}")
        dec = self._short.get(n)
        if dec is None:
            dec = msgspec.msgpack.Decoder(tuple[tuple(Optional[t] for t in self.types[:n])]  # type: ignore[misc]
                                          ) if n else None
            self._short[n] = dec
        head = dec.decode(data) if dec else ()
        return tuple(head) + self.missing[n:]


def value_text(v: Any) -> str:
    """A stored value as an error detail shows it (``Key (a)=(1) already exists``):
    ``null``, ``t``/``f``, ``\\x...`` for bytea, else its ``str``."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "t" if v else "f"
    if isinstance(v, bytes):
        return "\\x" + v.hex()
    return str(v)
