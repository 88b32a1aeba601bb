"""Enum values and their order.

An enum value is its label (a ``str``), so equality, hashing, casts to text and
output need nothing special.  Ordering follows ``pg_enum.enumsortorder``: values
read from tables and made by casts are :class:`EnumLabel` objects, a ``str``
that compares by the sort order of its type, and comparison operators on enum
types (:func:`comparator`) compare ranks.  :data:`ENUM_ORDER` (type oid ->
label -> sort order) is refreshed by the session environment from the catalog
once per statement that looks at user types.
"""

from __future__ import annotations

import operator
from typing import Any

ENUM_ORDER: dict[int, dict[str, float]] = {}


def _rank(typ: int, v: str) -> float:
    r = ENUM_ORDER.get(typ)
    if r is None:
        return 0.0
    return r.get(str(v), 0.0)


class EnumLabel(str):
    """A label of enum type ``typ`` that sorts by the type's sort order."""

    typ: int

    def __new__(cls, label: str, typ: int) -> EnumLabel:
        s = str.__new__(cls, label)
        s.typ = typ
        return s

    def _cmp_key(self, other: Any) -> tuple[Any, Any] | None:
        if isinstance(other, str):
            return _rank(self.typ, self), _rank(self.typ, other)
        return None

    def __lt__(self, other: Any) -> bool:
        k = self._cmp_key(other)
        return str.__lt__(self, other) if k is None else k[0] < k[1]

    def __le__(self, other: Any) -> bool:
        k = self._cmp_key(other)
        return str.__le__(self, other) if k is None else k[0] <= k[1]

    def __gt__(self, other: Any) -> bool:
        k = self._cmp_key(other)
        return str.__gt__(self, other) if k is None else k[0] > k[1]

    def __ge__(self, other: Any) -> bool:
        k = self._cmp_key(other)
        return str.__ge__(self, other) if k is None else k[0] >= k[1]

    __eq__ = str.__eq__
    __ne__ = str.__ne__
    __hash__ = str.__hash__

    def __reduce__(self) -> Any:
        return (EnumLabel, (str(self), self.typ))


_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "=": operator.eq,
        "<>": operator.ne}


def comparator(name: str, typ: int) -> Any:
    """The ``name`` operator of enum type ``typ`` on plain labels or EnumLabels."""
    cmp = _OPS[name]
    if name in ("=", "<>"):
        return lambda a, b: cmp(str(a), str(b))

    def f(a: str, b: str) -> bool:
        order = ENUM_ORDER.get(typ, {})
        return cmp(order.get(a, 0.0), order.get(b, 0.0))
    return f


def wrap(typ: int) -> Any:
    return lambda v: v if v is None or isinstance(v, EnumLabel) else EnumLabel(v, typ)
