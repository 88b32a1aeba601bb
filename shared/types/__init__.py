"""PostgreSQL types: OIDs, Python value representation, text and binary codecs.

Values of SQL types are Python objects:

==========================  ==============================================
int2, int4, int8, oid, reg*  ``int``
numeric                      ``decimal.Decimal`` (NaN and ±Infinity allowed)
float4, float8               ``float``
text, varchar, bpchar, name  ``str`` (bpchar keeps its padding)
"char"                       ``str`` of at most one byte
bool                         ``bool``
bytea                        ``bytes``
date                         ``datetime.date``
time                         ``datetime.time``
timestamp                    naive ``datetime.datetime``
timestamptz                  aware ``datetime.datetime`` in UTC
interval                     :class:`Interval`
json                         ``str`` (the text as given)
jsonb                        ``str`` (canonical jsonb text)
uuid                         ``uuid.UUID``
arrays                       ``list`` (nested for several dimensions)
==========================  ==============================================

``None`` is SQL NULL.  Codecs raise :class:`InvalidValue` (with SQLSTATE and
PostgreSQL's message) on bad input.
"""

from . import oids
from .binary import binary_decoder, binary_encoder, has_binary
from .oids import TYPES, TYPES_BY_NAME, TypeInfo, array_of, element_of, type_name
from .text import text_decoder, text_encoder
from .values import Interval, InvalidValue

__all__ = [
    "oids", "TYPES", "TYPES_BY_NAME", "TypeInfo", "array_of", "element_of", "type_name",
    "text_decoder", "text_encoder", "binary_decoder", "binary_encoder", "has_binary",
    "Interval", "InvalidValue",
]
