"""Arrays: text (``{1,2,NULL,"a b"}``) and binary formats.

An array value is a Python list (nested lists for more than one dimension);
``None`` elements are NULLs.  Lower bounds other than 1 are read but dropped.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from . import oids as T
from .values import InvalidValue

_NEEDS_QUOTE = set('{},"\\ \t\n\r\v\f')


def _malformed(s: str, detail: str = "") -> InvalidValue:
    return InvalidValue("22P02", f'malformed array literal: "{s}"')


def parse_array_text(s: str, elem_dec: Callable[[str], Any], delim: str = ",") -> list[Any]:
    """Parse an array literal; elements go through ``elem_dec``."""
    i = 0
    n = len(s)
    while i < n and s[i].isspace():
        i += 1
    if i < n and s[i] == "[":  # explicit dimensions: [1:3]={...}
        eq = s.find("=", i)
        if eq < 0:
            raise _malformed(s)
        i = eq + 1
        while i < n and s[i].isspace():
            i += 1
    if i >= n or s[i] != "{":
        raise _malformed(s)

    def parse_level(i: int) -> tuple[list[Any], int]:
        assert s[i] == "{"
        i += 1
        out: list[Any] = []
        while i < n:
            c = s[i]
            if c.isspace():
                i += 1
                continue
            if c == "}":
                return out, i + 1
            if c == delim:
                i += 1
                continue
            if c == "{":
                sub, i = parse_level(i)
                out.append(sub)
                continue
            if c == '"':
                i += 1
                buf = []
                while i < n and s[i] != '"':
                    if s[i] == "\\":
                        i += 1
                    if i < n:
                        buf.append(s[i])
                    i += 1
                if i >= n:
                    raise _malformed(s)
                i += 1
                out.append(elem_dec("".join(buf)))
                continue
            buf = []
            while i < n and s[i] not in (delim, "}"):
                if s[i] == "\\":
                    i += 1
                if i < n:
                    buf.append(s[i])
                i += 1
            tok = "".join(buf).strip()
            if tok.upper() == "NULL":
                out.append(None)
            else:
                out.append(elem_dec(tok))
        raise _malformed(s)

    result, i = parse_level(i)
    if s[i:].strip():
        raise _malformed(s)
    return result


def format_array_text(v: list[Any], elem_enc: Callable[[Any], str], delim: str = ",") -> str:
    parts = []
    for x in v:
        if x is None:
            parts.append("NULL")
        elif isinstance(x, list):
            parts.append(format_array_text(x, elem_enc, delim))
        else:
            t = elem_enc(x)
            if t == "" or t.upper() == "NULL" or any(c in _NEEDS_QUOTE or c == delim for c in t):
                t = '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"'
            parts.append(t)
    return "{" + delim.join(parts) + "}"


# ---------------------------------------------------------------- binary

_HDR = struct.Struct("!iiI")
_DIM = struct.Struct("!ii")
_LEN = struct.Struct("!i")


def _dims(v: list[Any]) -> list[int]:
    dims = []
    cur: Any = v
    while isinstance(cur, list):
        dims.append(len(cur))
        if not cur:
            break
        cur = cur[0]
    return dims


def _flatten(v: list[Any], depth: int) -> list[Any]:
    if depth == 1:
        return v
    out: list[Any] = []
    for x in v:
        out.extend(_flatten(x, depth - 1))
    return out


def encode_array_binary(v: list[Any], elem: int, elem_enc: Callable[[Any], bytes]) -> bytes:
    dims = _dims(v)
    if not v:
        return _HDR.pack(0, 0, elem)
    flat = _flatten(v, len(dims))
    hasnull = any(x is None for x in flat)
    out = [_HDR.pack(len(dims), 1 if hasnull else 0, elem)]
    for d in dims:
        out.append(_DIM.pack(d, 1))
    for x in flat:
        if x is None:
            out.append(_LEN.pack(-1))
        else:
            b = elem_enc(x)
            out.append(_LEN.pack(len(b)))
            out.append(b)
    return b"".join(out)


def decode_array_binary(data: bytes, elem_dec_for: Callable[[int], Callable[[bytes], Any]]) -> list[Any]:
    try:
        ndim, _hasnull, elem = _HDR.unpack_from(data, 0)
        off = _HDR.size
        dims = []
        for _ in range(ndim):
            d, _lb = _DIM.unpack_from(data, off)
            off += _DIM.size
            dims.append(d)
        dec = elem_dec_for(elem)
        total = 1
        for d in dims:
            total *= d
        if ndim == 0:
            return []
        flat: list[Any] = []
        for _ in range(total):
            (ln,) = _LEN.unpack_from(data, off)
            off += 4
            if ln < 0:
                flat.append(None)
            else:
                flat.append(dec(data[off:off + ln]))
                off += ln
    except struct.error:
        raise InvalidValue("22P03", "insufficient data left in message") from None

    def build(level: int, items: list[Any]) -> list[Any]:
        if level == len(dims) - 1:
            return items
        step = len(items) // dims[level] if dims[level] else 0
        return [build(level + 1, items[k * step:(k + 1) * step]) for k in range(dims[level])]
    return build(0, flat)


def array_elem(oid: int) -> int:
    return T.element_of(oid)


def array_elements(a: list[Any]) -> list[Any]:
    """The elements of an array value in storage order, its dimensions flattened
    (``[[1, 2], [3]]`` -> ``[1, 2, 3]``); a one-dimensional list is returned as it is."""
    if a and isinstance(a[0], list):
        out: list[Any] = []
        for x in a:
            out.extend(array_elements(x))
        return out
    return a
