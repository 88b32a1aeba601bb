"""Plan reuse for simple-protocol statements that differ only in literals.

pgbench's simple mode sends ``UPDATE pgbench_accounts SET abalance = abalance
+ 4783 WHERE aid = 32477;`` with new numbers every time.  :func:`extract`
uses pg_query's normalisation (``... + $1 WHERE aid = $2``) as the cache key
and PostgreSQL's scanner to recover the literal values, so the statement is
analysed and planned once and later executions only bind new values — the
same plan a prepared statement would get.  Integer literals are int4 (int8 /
numeric when larger), decimal literals numeric, quoted strings of unknown
type (their type comes from context, as for a literal); anything unusual
(typed literals such as ``interval '1 day'``, dollar quoting, bit strings)
returns None and the statement takes the ordinary path.
"""

from __future__ import annotations

import re
from decimal import Decimal

from pglast import parser as _pg

from pgbundle.shared.types import oids as T

_PARAM = re.compile(r"\$(\d+)")


def _string_value(tok: str) -> str | None:
    if tok.startswith("'") and tok.endswith("'"):
        return tok[1:-1].replace("''", "'")
    if tok[:2] in ("E'", "e'") and tok.endswith("'"):
        body = tok[2:-1].replace("''", "'")
        if "\\" in body:
            try:
                body = body.encode("latin-1", "backslashreplace").decode("unicode_escape")
            except UnicodeDecodeError:
                return None
        return body
    return None


def extract(sql: str) -> tuple[str, tuple[int, ...], list] | None:
    """(normalised text, literal types, literal values) or None."""
    try:
        norm = _pg.normalize(sql)
    except Exception:
        return None
    if norm == sql:
        return None
    existing = [int(m.group(1)) for m in _PARAM.finditer(sql)]
    if existing:
        return None
    try:
        toks = _pg.scan(sql)
    except Exception:
        return None
    by_start = {t.start: i for i, t in enumerate(toks)}
    found: dict[int, tuple[int, object]] = {}
    delta = 0
    for m in _PARAM.finditer(norm):
        types: list[int] = []
        values: list = []
        pos = m.start() + delta
        i = by_start.get(pos)
        if i is None:
            return None
        tok = toks[i]
        neg = False
        if tok.name == "ASCII_45":
            neg = True
            i += 1
            if i >= len(toks):
                return None
            tok = toks[i]
        text = sql[tok.start:tok.end + 1]
        if tok.name == "ICONST":
            v: int | Decimal
            try:
                v = int(text, 0) if text[:2].lower() in ("0x", "0o", "0b") else int(text.replace("_", ""))
            except ValueError:
                return None
            if neg:
                v = -v
            if -2**31 <= v < 2**31:
                types.append(T.INT4)
            elif -2**63 <= v < 2**63:
                types.append(T.INT8)
            else:
                types.append(T.NUMERIC)
                v = Decimal(v)
            values.append(v)
        elif tok.name == "FCONST":
            t = text.replace("_", "")
            if "." not in t and "e" not in t.lower() and -2**63 <= int(t) * (-1 if neg else 1) < 2**63:
                values.append(-int(t) if neg else int(t))
                types.append(T.INT8)
                orig_len = tok.end + 1 - pos
                delta += orig_len - (m.end() - m.start())
                found[int(m.group(1))] = (types[0], values[0])
                continue
            try:
                dv = Decimal(t)
            except Exception:
                return None
            values.append(-dv if neg else dv)
            types.append(T.NUMERIC)
        elif tok.name == "SCONST" and not neg:
            s = _string_value(text)
            if s is None:
                return None
            values.append(s)
            types.append(T.UNKNOWN)
        else:
            return None
        orig_len = tok.end + 1 - pos
        delta += orig_len - (m.end() - m.start())
        found[int(m.group(1))] = (types[0], values[0])
    n = len(found)
    if sorted(found) != list(range(1, n + 1)):
        return None
    return norm, tuple(found[i][0] for i in range(1, n + 1)), [found[i][1] for i in range(1, n + 1)]
