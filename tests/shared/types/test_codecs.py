"""Text and binary codecs of the core types, checked against PostgreSQL 15.

For each (type, literal) PostgreSQL's own text output and binary send format
are fetched with libpq (through psycopg's low-level pgconn) and compared with
what :mod:`pgbundle.shared.types` produces from the same literal.
"""

from __future__ import annotations

import psycopg
import pytest

from pgbundle.shared.types import (
    InvalidValue,
    binary_decoder,
    binary_encoder,
    oids as T,
    text_decoder,
    text_encoder,
)

CASES = [
    (T.INT2, "smallint", ["0", "-32768", "32767", " 42 "]),
    (T.INT4, "integer", ["0", "-2147483648", "2147483647", "+7"]),
    (T.INT8, "bigint", ["0", "-9223372036854775808", "9223372036854775807"]),
    (T.FLOAT8, "float8", ["1.5", "1e15", "1e-5", "0.1", "123456789.123", "1e100", "3", "0.0001",
                          "12345678901234567890", "-2.5e-10", "NaN", "Infinity", "-Infinity", "1e14",
                          "100000000000000", "0.00001234"]),
    (T.FLOAT4, "float4", ["1.1", "3.14159", "1e10", "0.1", "16777217", "1e-5"]),
    (T.NUMERIC, "numeric", ["1.25", "0.50", "-12345.678900", "0", "0.0001", "1e10", "NaN",
                            "123456789012345678901234567890.12",
                            "0.000000001", "-0.5", "10000", "1.0000"]),
    (T.BOOL, "bool", ["t", "f", "true", "yes", "off", "0", "1"]),
    (T.TEXT, "text", ["", "hello", "ünïcödé", "a'b"]),
    (T.VARCHAR, "varchar", ["abc"]),
    (T.BPCHAR, "bpchar", ["ab  "]),
    (T.NAME, "name", ["pg_catalog"]),
    (T.BYTEA, "bytea", ["\\x", "\\x00ff10", "abc"]),
    (T.DATE, "date", ["2024-02-29", "1999-01-08", "0001-01-01", "9999-12-31"]),
    (T.TIMESTAMP, "timestamp", ["2024-01-02 03:04:05", "2024-01-02 03:04:05.123456", "2024-01-02T03:04:05.5",
                                "2000-01-01", "1970-01-01 00:00:00.000001"]),
    (T.TIMESTAMPTZ, "timestamptz", ["2024-01-02 03:04:05+00", "2024-01-02 03:04:05.25+02",
                                    "2024-01-02 03:04:05-05:30", "1999-12-31 23:59:59.999999Z"]),
    (T.TIME, "time", ["03:04:05", "23:59:59.5", "00:00"]),
    (T.INTERVAL, "interval", ["1 year 2 mons 3 days 04:05:06.5", "-1 day", "00:00:00", "3 hours",
                              "1.5 days", "2 weeks ago", "1 day -01:00:00", "-00:00:01"]),
    (T.JSONB, "jsonb", ['{"b":1, "a": [1, 2.50]}', '[]', '"x"', '{"aa": null, "b": true}']),
    (T.JSON, "json", ['{"b":1,  "a": [1, 2.50]}']),
    (T.UUID, "uuid", ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]),
    (T.OID, "oid", ["0", "4294967295", "16384"]),
    (T.CHAR, '"char"', ["r"]),
    (T.INT4_ARRAY, "int4[]", ["{1,2,NULL}", "{}", "{{1,2},{3,4}}"]),
    (T.TEXT_ARRAY, "text[]", ['{"a b","",NULL,"x\\"y",plain}', '{"NULL"}']),
    (T.OID_ARRAY, "oid[]", ["{16431}"]),
    (T.NUMERIC_ARRAY, "numeric[]", ["{1.5,NULL}"]),
]


def _pg_outputs(conn: psycopg.Connection, lit: str, typ: str) -> tuple[str, bytes]:
    pgc = conn.pgconn
    q = f"SELECT $1::{typ}".encode()
    r = pgc.exec_params(q, [lit.encode()], [0], [0], result_format=0)
    assert r.status == 2, r.error_message
    text = r.get_value(0, 0).decode()
    r = pgc.exec_params(q, [lit.encode()], [0], [0], result_format=1)
    assert r.status == 2, r.error_message
    return text, bytes(r.get_value(0, 0))


@pytest.fixture(scope="module")
def conn(pg):
    with psycopg.connect(pg.dsn(), autocommit=True) as c:
        c.execute("SET TimeZone = 'UTC'")
        yield c


@pytest.mark.parametrize("oid,typ,lits", CASES, ids=[c[1] for c in CASES])
def test_text_and_binary_match_postgresql(conn, oid, typ, lits):
    dec, enc = text_decoder(oid), text_encoder(oid)
    bdec, benc = binary_decoder(oid), binary_encoder(oid)
    for lit in lits:
        pg_text, pg_bin = _pg_outputs(conn, lit, typ)
        v = dec(lit)
        assert enc(v) == pg_text, (typ, lit)
        # binary: ours decodes PostgreSQL's bytes to the same value, and ours re-encodes to bytes
        # PostgreSQL reads back as the same text.
        bv = bdec(pg_bin)
        if oid in (T.FLOAT8, T.FLOAT4) and v != v:
            assert bv != bv
        else:
            assert enc(bv) == pg_text, (typ, lit)
        ours = benc(v)
        if oid not in (T.JSON,):
            assert ours == pg_bin, (typ, lit, ours.hex(), pg_bin.hex())


@pytest.mark.parametrize("oid,text,sqlstate,message", [
    (T.INT4, "x", "22P02", 'invalid input syntax for type integer: "x"'),
    (T.INT4, "2147483648", "22003", 'value "2147483648" is out of range for type integer'),
    (T.INT2, "1.5", "22P02", 'invalid input syntax for type smallint: "1.5"'),
    (T.INT8, "", "22P02", 'invalid input syntax for type bigint: ""'),
    (T.NUMERIC, "abc", "22P02", 'invalid input syntax for type numeric: "abc"'),
    (T.BOOL, "maybe", "22P02", 'invalid input syntax for type boolean: "maybe"'),
    (T.FLOAT8, "x1", "22P02", 'invalid input syntax for type double precision: "x1"'),
    (T.DATE, "2024-13-01", "22008", 'date/time field value out of range: "2024-13-01"'),
    (T.DATE, "nope", "22007", 'invalid input syntax for type date: "nope"'),
    (T.UUID, "nope", "22P02", 'invalid input syntax for type uuid: "nope"'),
])
def test_bad_input_errors_match_postgresql(conn, oid, text, sqlstate, message):
    with pytest.raises(InvalidValue) as ei:
        text_decoder(oid)(text)
    assert (ei.value.sqlstate, ei.value.message) == (sqlstate, message)
    typ = {T.INT4: "int4", T.INT2: "int2", T.INT8: "int8", T.NUMERIC: "numeric", T.BOOL: "bool",
           T.FLOAT8: "float8", T.DATE: "date", T.UUID: "uuid"}[oid]
    with pytest.raises(psycopg.Error) as pe:
        conn.execute(f"SELECT %s::{typ}", (text,))
    assert pe.value.sqlstate == sqlstate
    assert pe.value.diag.message_primary == message
