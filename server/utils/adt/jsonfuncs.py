"""JSON functions and operators beyond the core ones of :mod:`.functions`, as
PostgreSQL's utils/adt/jsonfuncs.c and json.c: ``jsonb_set``, ``jsonb_insert``,
``jsonb_extract_path[_text]``, ``-``, ``||``, ``?|``, ``?&``, ``jsonb_strip_nulls``,
``jsonb_pretty``, ``jsonb_object``, ``row_to_json``.  Registered into the function
registry at import.
"""

from __future__ import annotations

from typing import Any

from pgbundle.server.errors import PgError
from pgbundle.server.utils.adt.functions import fn, json_dump, json_load, op, to_jsonb


def _jpath_set(o: Any, path: list[str], value: Any, create: bool) -> Any:
    if not path:
        return value
    k = path[0]
    if isinstance(o, dict):
        if k in o:
            o[k] = _jpath_set(o[k], path[1:], value, create)
        elif create and len(path) == 1:
            o[k] = value
        return o
    if isinstance(o, list):
        try:
            i = int(k)
        except ValueError:
            raise PgError("22P02", f'path element at position 1 is not an integer: "{k}"') from None
        if -len(o) <= i < len(o):
            o[i] = _jpath_set(o[i], path[1:], value, create)
        elif create and len(path) == 1:
            if i < 0:
                o.insert(0, value)
            else:
                o.append(value)
        return o
    return o


@fn("jsonb_set", "jsonb,text[],jsonb,bool", "jsonb")
def _jsonb_set4(j: str, path: list, v: str, create: bool) -> str:
    return json_dump(_jpath_set(json_load(j), [str(p) for p in path], json_load(v), create))


@fn("jsonb_set", "jsonb,text[],jsonb", "jsonb")
def _jsonb_set(j: str, path: list, v: str) -> str:
    return _jsonb_set4(j, path, v, True)


@fn("jsonb_insert", "jsonb,text[],jsonb", "jsonb")
def _jsonb_insert(j: str, path: list, v: str) -> str:
    return _jsonb_set4(j, path, v, True)


def _jget_path(o: Any, path: list) -> Any:
    for p in path:
        if isinstance(o, dict):
            if p not in o:
                return _NOPE
            o = o[p]
        elif isinstance(o, list):
            try:
                i = int(p)
            except (TypeError, ValueError):
                return _NOPE
            if not -len(o) <= i < len(o):
                return _NOPE
            o = o[i]
        else:
            return _NOPE
    return o


_NOPE = object()

for _jt in ("jsonb", "json"):
    op("#>", f"{_jt},text[]", _jt,
       lambda j, p: (lambda v: None if v is _NOPE else json_dump(v))(_jget_path(json_load(j), p)))
    op("#>>", f"{_jt},text[]", "text",
       lambda j, p: (lambda v: None if v is _NOPE or v is None else (v if isinstance(v, str) else json_dump(v)))(
           _jget_path(json_load(j), p)))


@fn("jsonb_extract_path|json_extract_path", "jsonb,text", "jsonb", variadic="text")
def _jsonb_extract_path(j: str, *p: str) -> str | None:
    v = _jget_path(json_load(j), list(p))
    return None if v is _NOPE else json_dump(v)


@fn("jsonb_extract_path_text|json_extract_path_text", "jsonb,text", "text", variadic="text")
def _jsonb_extract_path_text(j: str, *p: str) -> str | None:
    v = _jget_path(json_load(j), list(p))
    if v is _NOPE or v is None:
        return None
    return v if isinstance(v, str) else json_dump(v)


op("-", "jsonb,text", "jsonb",
   lambda j, k: json_dump({a: b for a, b in json_load(j).items() if a != k} if isinstance(json_load(j), dict)
                       else [x for x in json_load(j) if x != k]))
op("||", "jsonb,jsonb", "jsonb", lambda a, b: _jconcat(json_load(a), json_load(b)))
op("?|", "jsonb,text[]", "bool", lambda j, ks: any(k in json_load(j) for k in ks))
op("?&", "jsonb,text[]", "bool", lambda j, ks: all(k in json_load(j) for k in ks))


def _jconcat(a: Any, b: Any) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        return json_dump({**a, **b})
    la = a if isinstance(a, list) else [a]
    lb = b if isinstance(b, list) else [b]
    return json_dump(la + lb)


@fn("jsonb_strip_nulls|json_strip_nulls", "jsonb", "jsonb")
def _jsonb_strip_nulls(j: str) -> str:
    def strip(o: Any) -> Any:
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items() if v is not None}
        if isinstance(o, list):
            return [strip(v) for v in o]
        return o
    return json_dump(strip(json_load(j)))


@fn("jsonb_pretty", "jsonb", "text")
def _jsonb_pretty(j: str) -> str:
    import json
    return json.dumps(json_load(j), indent=4, default=str)


@fn("jsonb_object|json_object", "text[]", "jsonb")
def _jsonb_object(a: list) -> str:
    if len(a) % 2:
        raise PgError("2202E", "array must have even number of elements")
    return json_dump({a[i]: a[i + 1] for i in range(0, len(a), 2)})


@fn("row_to_json", "record", "json")
def _row_to_json(r: Any) -> str:
    return to_jsonb(r)
