"""String functions beyond the core ones of :mod:`.functions`, as PostgreSQL's
utils/adt/varlena.c, oracle_compat.c (``overlay``, ``translate``), regexp.c
(``regexp_matches``, ``regexp_split_to_*``, ``regexp_count``, ``regexp_like``),
cryptohashfuncs.c (``sha224`` ... ``sha512``), like.c (``like_escape``) and dbsize.c
(``pg_column_size``).  Registered into the function registry at import.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from pgbundle.server.errors import PgError
from pgbundle.server.utils.adt.functions import fn, pg_regex, srf


@fn("overlay", "text,text,int4,int4", "text")
def _overlay4(s: str, r: str, start: int, n: int) -> str:
    if start < 1:
        raise PgError("22011", "negative substring length not allowed")
    return s[: start - 1] + r + s[start - 1 + n:]


@fn("overlay", "text,text,int4", "text")
def _overlay3(s: str, r: str, start: int) -> str:
    return _overlay4(s, r, start, len(r))


@fn("translate", "text,text,text", "text")
def _translate(s: str, a: str, b: str) -> str:
    out = []
    for ch in s:
        i = a.find(ch)
        if i < 0:
            out.append(ch)
        elif i < len(b):
            out.append(b[i])
    return "".join(out)


@srf("regexp_matches", "text,text", "text[]")
def _regexp_matches(s: str, p: str) -> list[list[str]]:
    return _regexp_matches3(s, p, "")


@srf("regexp_matches", "text,text,text", "text[]")
def _regexp_matches3(s: str, p: str, flags: str) -> list[list[str]]:
    rx = pg_regex(p, re.I if "i" in flags else 0)
    out: list[list[str]] = []
    for m in rx.finditer(s):
        out.append(list(m.groups()) if m.groups() else [m.group(0)])
        if "g" not in flags:
            break
    return out


@srf("regexp_split_to_table", "text,text", "text")
def _regexp_split_to_table(s: str, p: str) -> list[str]:
    return pg_regex(p).split(s)


@fn("regexp_split_to_array", "text,text", "text[]")
def _regexp_split_to_array(s: str, p: str) -> list:
    return pg_regex(p).split(s)


@fn("regexp_count", "text,text", "int4")
def _regexp_count(s: str, p: str) -> int:
    return len(pg_regex(p).findall(s))


@fn("regexp_like", "text,text", "bool")
def _regexp_like(s: str, p: str) -> bool:
    return pg_regex(p).search(s) is not None


@fn("sha224", "bytea", "bytea")
def _sha224(b: bytes) -> bytes:
    return hashlib.sha224(b).digest()


@fn("sha256", "bytea", "bytea")
def _sha256(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


@fn("sha384", "bytea", "bytea")
def _sha384(b: bytes) -> bytes:
    return hashlib.sha384(b).digest()


@fn("sha512", "bytea", "bytea")
def _sha512(b: bytes) -> bytes:
    return hashlib.sha512(b).digest()


@fn("bit_length", "text", "int4")
def _bit_length(s: str) -> int:
    return len(s.encode()) * 8


@fn("pg_column_size", "any", "int4")
def _pg_column_size(v: Any) -> int:
    if isinstance(v, str):
        n = len(v.encode())
        return n + (1 if n < 127 else 4)
    if isinstance(v, bool):
        return 1
    if isinstance(v, int):
        return 4 if -2**31 <= v < 2**31 else 8
    if isinstance(v, float):
        return 8
    if isinstance(v, bytes):
        return len(v) + (1 if len(v) < 127 else 4)
    return len(str(v)) + 1


@fn("like_escape", "text,text", "text")
def _like_escape(p: str, esc: str) -> str:
    """Rewrite a LIKE pattern with escape character ``esc`` to one using backslash."""
    if len(esc) > 1:
        raise PgError("22019", "invalid escape string", hint="Escape string must be empty or one character.")
    if esc == "\\":
        return p
    out = []
    i = 0
    while i < len(p):
        c = p[i]
        if esc and c == esc and i + 1 < len(p):
            nxt = p[i + 1]
            out.append("\\" + nxt)
            i += 2
            continue
        if c == "\\":
            out.append("\\\\")
        else:
            out.append(c)
        i += 1
    return "".join(out)
