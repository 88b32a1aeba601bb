"""Type OIDs and the static facts of PostgreSQL 15's built-in types.

Every built-in type pgbundle knows is one :class:`TypeInfo` in :data:`TYPES`
(keyed by OID) with its name, array type, element type, length, category
(PostgreSQL's ``typcategory`` letter), whether it is the preferred type of its
category, and its array delimiter.  OIDs are PostgreSQL's (``pg_type.dat``), so
they mean the same thing on the wire to every client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

BOOL = 16
BYTEA = 17
CHAR = 18          # "char": one byte
NAME = 19
INT8 = 20
INT2 = 21
INT2VECTOR = 22
INT4 = 23
REGPROC = 24
TEXT = 25
OID = 26
TID = 27
XID = 28
CID = 29
OIDVECTOR = 30
PG_TYPE = 71
PG_ATTRIBUTE = 75
PG_PROC = 81
PG_CLASS = 83
JSON = 114
XML = 142
PG_NODE_TREE = 194
POINT = 600
FLOAT4 = 700
FLOAT8 = 701
UNKNOWN = 705
MONEY = 790
INET = 869
ACLITEM = 1033
BPCHAR = 1042
VARCHAR = 1043
DATE = 1082
TIME = 1083
TIMESTAMP = 1114
TIMESTAMPTZ = 1184
INTERVAL = 1186
TIMETZ = 1266
BIT = 1560
VARBIT = 1562
NUMERIC = 1700
REFCURSOR = 1790
REGPROCEDURE = 2202
REGOPER = 2203
REGOPERATOR = 2204
REGCLASS = 2205
REGTYPE = 2206
RECORD = 2249
CSTRING = 2275
ANY = 2276
ANYARRAY = 2277
VOID = 2278
TRIGGER = 2279
INTERNAL = 2281
ANYELEMENT = 2283
ANYNONARRAY = 2776
UUID = 2950
TXID_SNAPSHOT = 2970
PG_LSN = 3220
ANYENUM = 3500
REGCONFIG = 3734
JSONB = 3802
JSONPATH = 4072
REGNAMESPACE = 4089
REGROLE = 4096
REGCOLLATION = 4191
PG_SNAPSHOT = 5038
XID8 = 5069

# Array types of the above (pg_type.typarray).
BOOL_ARRAY = 1000
BYTEA_ARRAY = 1001
CHAR_ARRAY = 1002
NAME_ARRAY = 1003
INT2_ARRAY = 1005
INT4_ARRAY = 1007
TEXT_ARRAY = 1009
OID_ARRAY = 1028
INT8_ARRAY = 1016
FLOAT4_ARRAY = 1021
FLOAT8_ARRAY = 1022
BPCHAR_ARRAY = 1014
VARCHAR_ARRAY = 1015
DATE_ARRAY = 1182
TIMESTAMP_ARRAY = 1115
TIMESTAMPTZ_ARRAY = 1185
NUMERIC_ARRAY = 1231
JSON_ARRAY = 199
JSONB_ARRAY = 3807
UUID_ARRAY = 2951

PG_CATALOG_NAMESPACE = 11


@dataclass(frozen=True, slots=True)
class TypeInfo:
    """One row of pg_type, as much as clients and the SQL layer need.

    ``typlen`` is -1 for varlena, -2 for cstring; ``category`` is typcategory
    (N numeric, S string, B boolean, D datetime, T timespan, U user, A array,
    P pseudo, X unknown, R range, E enum, G geometric, I network, Z internal);
    ``preferred`` is typispreferred; ``elem`` the element OID of an array type
    (else 0); ``array`` the OID of this type's array type (else 0).
    """

    oid: int
    name: str
    typlen: int
    category: str
    preferred: bool = False
    array: int = 0
    elem: int = 0
    delim: str = ","
    byval: bool = False
    align: str = "i"
    typtype: str = "b"


def _t(*a: Any, **k: Any) -> TypeInfo:
    return TypeInfo(*a, **k)


_BASE = [
    _t(BOOL, "bool", 1, "B", True, BOOL_ARRAY, byval=True, align="c"),
    _t(BYTEA, "bytea", -1, "U", False, BYTEA_ARRAY),
    _t(CHAR, "char", 1, "Z", False, CHAR_ARRAY, byval=True, align="c"),
    _t(NAME, "name", 64, "S", False, NAME_ARRAY, align="c"),
    _t(INT8, "int8", 8, "N", False, INT8_ARRAY, byval=True, align="d"),
    _t(INT2, "int2", 2, "N", False, INT2_ARRAY, byval=True, align="s"),
    _t(INT2VECTOR, "int2vector", -1, "A", False, 1006, elem=INT2),
    _t(INT4, "int4", 4, "N", False, INT4_ARRAY, byval=True),
    _t(REGPROC, "regproc", 4, "N", False, 1008, byval=True),
    _t(TEXT, "text", -1, "S", True, TEXT_ARRAY),
    _t(OID, "oid", 4, "N", False, OID_ARRAY, byval=True),
    _t(TID, "tid", 6, "U", False, 1010, align="s"),
    _t(XID, "xid", 4, "U", False, 1011, byval=True),
    _t(CID, "cid", 4, "U", False, 1012, byval=True),
    _t(OIDVECTOR, "oidvector", -1, "A", False, 1013, elem=OID),
    _t(JSON, "json", -1, "U", False, JSON_ARRAY),
    _t(XML, "xml", -1, "U", False, 143),
    _t(PG_NODE_TREE, "pg_node_tree", -1, "Z"),
    _t(FLOAT4, "float4", 4, "N", False, FLOAT4_ARRAY, byval=True),
    _t(FLOAT8, "float8", 8, "N", True, FLOAT8_ARRAY, byval=True, align="d"),
    _t(UNKNOWN, "unknown", -2, "X", align="c", typtype="p"),
    _t(INET, "inet", -1, "I", True, 1041),
    _t(ACLITEM, "aclitem", 12, "U", False, 1034),
    _t(BPCHAR, "bpchar", -1, "S", False, BPCHAR_ARRAY),
    _t(VARCHAR, "varchar", -1, "S", False, VARCHAR_ARRAY),
    _t(DATE, "date", 4, "D", False, DATE_ARRAY, byval=True),
    _t(TIME, "time", 8, "D", False, 1183, byval=True, align="d"),
    _t(TIMESTAMP, "timestamp", 8, "D", False, TIMESTAMP_ARRAY, byval=True, align="d"),
    _t(TIMESTAMPTZ, "timestamptz", 8, "D", True, TIMESTAMPTZ_ARRAY, byval=True, align="d"),
    _t(INTERVAL, "interval", 16, "T", True, 1187, align="d"),
    _t(TIMETZ, "timetz", 12, "D", False, 1270, align="d"),
    _t(NUMERIC, "numeric", -1, "N", False, NUMERIC_ARRAY),
    _t(REGPROCEDURE, "regprocedure", 4, "N", False, 2207, byval=True),
    _t(REGOPER, "regoper", 4, "N", False, 2208, byval=True),
    _t(REGOPERATOR, "regoperator", 4, "N", False, 2209, byval=True),
    _t(REGCLASS, "regclass", 4, "N", False, 2210, byval=True),
    _t(REGTYPE, "regtype", 4, "N", False, 2211, byval=True),
    _t(REGNAMESPACE, "regnamespace", 4, "N", False, 4090, byval=True),
    _t(REGROLE, "regrole", 4, "N", False, 4097, byval=True),
    _t(RECORD, "record", -1, "P", False, 2287, typtype="p", align="d"),
    _t(CSTRING, "cstring", -2, "P", False, 1263, typtype="p", align="c"),
    _t(ANY, "any", 4, "P", typtype="p"),
    _t(ANYARRAY, "anyarray", -1, "P", typtype="p", align="d"),
    _t(VOID, "void", 4, "P", typtype="p"),
    _t(TRIGGER, "trigger", 4, "P", typtype="p"),
    _t(INTERNAL, "internal", 8, "P", typtype="p"),
    _t(ANYELEMENT, "anyelement", 4, "P", typtype="p"),
    _t(ANYNONARRAY, "anynonarray", 4, "P", typtype="p"),
    _t(ANYENUM, "anyenum", 4, "P", typtype="p"),
    _t(UUID, "uuid", 16, "U", False, UUID_ARRAY, align="c"),
    _t(PG_LSN, "pg_lsn", 8, "U", False, 3221, byval=True, align="d"),
    _t(JSONB, "jsonb", -1, "U", False, JSONB_ARRAY),
    _t(XID8, "xid8", 8, "U", False, 271, byval=True, align="d"),
    _t(BIT, "bit", -1, "V", False, 1561),
    _t(VARBIT, "varbit", -1, "V", True, 1563),
    _t(MONEY, "money", 8, "N", False, 791, byval=True, align="d"),
]

TYPES: dict[int, TypeInfo] = {}
for _ti in _BASE:
    TYPES[_ti.oid] = _ti
    if _ti.array and _ti.array not in TYPES and _ti.category != "A":
        _align = "d" if _ti.align == "d" else "i"
        TYPES[_ti.array] = TypeInfo(_ti.array, "_" + _ti.name, -1, "A", False, 0, _ti.oid, align=_align)
del _ti

TYPES_BY_NAME: dict[str, TypeInfo] = {t.name: t for t in TYPES.values()}


def array_of(oid: int) -> int:
    """The OID of the array type whose elements are ``oid`` (0 if none)."""
    t = TYPES.get(oid)
    return t.array if t is not None else 0


def element_of(oid: int) -> int:
    """The element type OID of array type ``oid`` (0 if it is not an array)."""
    t = TYPES.get(oid)
    return t.elem if t is not None and t.category == "A" else 0


def type_name(oid: int) -> str:
    t = TYPES.get(oid)
    return t.name if t is not None else str(oid)


# typmod helpers (PostgreSQL stores varchar(n)/bpchar(n) as n + 4 and
# numeric(p, s) as ((p << 16) | s) + 4).
VARHDRSZ = 4


def numeric_typmod(precision: int, scale: int = 0) -> int:
    return ((precision << 16) | (scale & 0xFFFF)) + VARHDRSZ


def numeric_precision_scale(typmod: int) -> tuple[int, int] | None:
    if typmod < VARHDRSZ:
        return None
    t = typmod - VARHDRSZ
    return (t >> 16) & 0xFFFF, t & 0xFFFF
