"""Python values of the core types' codecs (what the server and the pooler hand around)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from pgbundle.shared.types import Interval, binary_decoder, oids as T, text_decoder


def test_python_values():
    assert text_decoder(T.TIMESTAMPTZ)("2024-01-02 03:04:05+02") == dt.datetime(2024, 1, 2, 1, 4, 5,
                                                                                tzinfo=dt.timezone.utc)
    assert text_decoder(T.NUMERIC)("1.50") == Decimal("1.50")
    assert text_decoder(T.INTERVAL)("1 mon") == Interval(1, 0, 0)
    assert binary_decoder(T.OID_ARRAY)(bytes.fromhex("00000001000000000000001a0000000100000001000000040000402f")) \
        == [16431]
    # psycopg's int2 parameters and asyncpg's jsonb
    assert binary_decoder(T.JSONB)(b"\x01" + b'{"a": 1}') == '{"a": 1}'
