"""Array functions beyond the core ones of :mod:`.functions`, as PostgreSQL's
utils/adt/arrayfuncs.c and array_userfuncs.c: ``array_dims``, ``array_fill``,
``array_replace``, ``trim_array``.  Registered into the function registry at import.
"""

from __future__ import annotations

from typing import Any

from pgbundle.server.errors import PgError
from pgbundle.server.utils.adt.functions import fn


def _dims(a: list) -> list[int]:
    out = []
    cur: Any = a
    while isinstance(cur, list) and cur:
        out.append(len(cur))
        cur = cur[0]
    return out


@fn("array_dims", "anyarray", "text")
def _array_dims(a: list) -> str | None:
    d = _dims(a)
    if not d:
        return None
    return "".join(f"[1:{n}]" for n in d)


@fn("array_fill", "anyelement,int4[]", "anyarray", strict=False)
def _array_fill(v: Any, dims: list | None) -> list | None:
    if dims is None:
        raise PgError("22004", "dimension array or low bound array cannot be null")

    def build(ds: list) -> list:
        if len(ds) == 1:
            return [v] * ds[0]
        return [build(ds[1:]) for _ in range(ds[0])]
    return build(list(dims)) if dims else []


@fn("array_replace", "anyarray,anyelement,anyelement", "anyarray", strict=False)
def _array_replace(a: list | None, x: Any, y: Any) -> list | None:
    if a is None:
        return None
    return [y if v == x else v for v in a]


@fn("trim_array", "anyarray,int4", "anyarray")
def _trim_array(a: list, n: int) -> list:
    if n < 0 or n > len(a):
        raise PgError("2202E", "number of elements to trim must be between 0 and " + str(len(a)))
    return a[: len(a) - n]
