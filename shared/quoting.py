"""Quoting of SQL literals and identifiers, as PostgreSQL's quote.c and ruleutils.c do it.

One place for the pooler (the SET / set_config statements it sends, pgbouncer.ini
names, admin console words) and the server (``quote_literal``, ``quote_ident``,
``format('%L')``, deparsed expressions) alike.  Pure functions on ``str``.
"""

from __future__ import annotations

# PostgreSQL's reserved keywords (kwlist.h, RESERVED_KEYWORD): an identifier spelled
# like one of these must be quoted.
RESERVED_KEYWORDS = frozenset({
    "all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric", "both", "case",
    "cast", "check", "collate", "column", "constraint", "create", "current_catalog", "current_date",
    "current_role", "current_time", "current_timestamp", "current_user", "default", "deferrable",
    "desc", "distinct", "do", "else", "end", "except", "false", "fetch", "for", "foreign", "from",
    "grant", "group", "having", "in", "initially", "intersect", "into", "lateral", "leading",
    "limit", "localtime", "localtimestamp", "not", "null", "offset", "on", "only", "or", "order",
    "placing", "primary", "references", "returning", "select", "session_user", "some", "symmetric",
    "table", "then", "to", "trailing", "true", "union", "unique", "user", "using", "variadic",
    "when", "where", "window", "with",
})

_IDENT_START = frozenset("abcdefghijklmnopqrstuvwxyz_")
_IDENT_CHARS = _IDENT_START | frozenset("0123456789$")


def quote_literal(s: str) -> str:
    """``s`` as a string literal: ``'it''s'``; with backslashes ``E'a\\\\b'``, so the
    result means the same whatever ``standard_conforming_strings`` says (quote.c)."""
    if "\\" in s:
        return "E'" + s.replace("\\", "\\\\").replace("'", "''") + "'"
    return "'" + s.replace("'", "''") + "'"


def quote_nullable(s: str | None) -> str:
    """:func:`quote_literal`, or ``NULL`` for None."""
    return "NULL" if s is None else quote_literal(s)


def escape_literal_body(s: str) -> str:
    """The inside of a standard-conforming literal: quotes doubled, nothing else."""
    return s.replace("'", "''")


def quote_ident(s: str) -> str:
    """``s`` as an identifier, quoted only when it must be: not all lower case letters,
    digits, ``_`` and ``$`` (not starting with a digit or ``$``), or a reserved keyword."""
    if s and s[0] in _IDENT_START and all(c in _IDENT_CHARS for c in s) and s not in RESERVED_KEYWORDS:
        return s
    return '"' + s.replace('"', '""') + '"'


def unquote(word: str, q: str = '"') -> str:
    """``"a""b"`` -> ``a"b``: the inside of a quoted word with doubled quotes undone;
    a word not enclosed in ``q`` comes back as it is."""
    if len(word) >= 2 and word[0] == word[-1] == q:
        return word[1:-1].replace(q + q, q)
    return word
