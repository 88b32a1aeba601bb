"""Parsing with pglast (PostgreSQL's own grammar), with a cache.

:func:`parse` returns the statements of a query string as :class:`RawStmt`
(the statement node as a plain dict from pglast's JSON output, its type name
and its own text).  Syntax errors become PgError 42601 with PostgreSQL's
message and 1-based position.  Results are cached by query text (an LRU of
:data:`CACHE_SIZE` entries); callers must treat the returned dicts as
read-only.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from pglast import parser as _pg

from pgbundle.server.errors import PgError, invalid_byte_sequence

CACHE_SIZE = 512


@dataclass(frozen=True, slots=True)
class RawStmt:
    kind: str                 # pglast node name: SelectStmt, InsertStmt, TransactionStmt, ...
    node: dict[str, Any]      # the node's fields
    text: str                 # this statement's own text (for one-statement queries: the query)
    location: int             # offset of the statement in the query string


_cache: OrderedDict[str, tuple[RawStmt, ...]] = OrderedDict()


def parse(sql: str) -> tuple[RawStmt, ...]:
    hit = _cache.get(sql)
    if hit is not None:
        _cache.move_to_end(sql)
        return hit
    try:
        tree = json.loads(_pg.parse_sql_json(sql))
    except _pg.ParseError as e:
        msg = e.args[0] if e.args else "syntax error"
        pos = e.args[1] + 1 if len(e.args) > 1 and isinstance(e.args[1], int) else None
        if msg.startswith("syntax error at end of input"):
            msg = "syntax error at end of input"
        raise PgError("42601", msg, position=pos) from None
    except UnicodeEncodeError as e:  # the client sent bytes that are not UTF-8 (decoded with surrogateescape)
        raw = sql.encode("utf-8", "surrogateescape")
        raise invalid_byte_sequence(raw, len(sql[:e.start].encode("utf-8", "surrogateescape"))) from None
    out = []
    stmts = tree.get("stmts", [])
    for s in stmts:
        st = s.get("stmt")
        if not st:
            continue
        (kind, node), = st.items()
        loc = s.get("stmt_location", 0)
        ln = s.get("stmt_len", 0)
        text = sql[loc:loc + ln] if ln else sql[loc:]
        out.append(RawStmt(kind, node, text.strip() if len(stmts) > 1 else sql, loc))
    res = tuple(out)
    _cache[sql] = res
    if len(_cache) > CACHE_SIZE:
        _cache.popitem(last=False)
    return res


def names(lst: list[dict] | None) -> list[str]:
    """['a', 'b'] from a pglast list of String nodes."""
    return [n["String"]["sval"] for n in (lst or []) if "String" in n]


def const_value(node: dict) -> Any:
    """Python value of an A_Const dict (int, str, bool, Decimal-able str, None)."""
    c = node
    if c.get("isnull"):
        return None
    if "ival" in c:
        return c["ival"].get("ival", 0)
    if "sval" in c:
        return c["sval"].get("sval", "")
    if "fval" in c:
        return c["fval"].get("fval")
    if "boolval" in c:
        return c["boolval"].get("boolval", False)
    if "bsval" in c:
        return c["bsval"].get("bsval")
    return None
