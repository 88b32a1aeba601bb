"""Python value classes for types with no exact stdlib counterpart, and the
error the codecs raise.

Values of SQL types are plain Python objects (see :mod:`pgbundle.shared.types`);
only ``interval`` needs a class of its own because PostgreSQL keeps months,
days and microseconds apart (``'1 mon'`` is not 30 days).
"""

from __future__ import annotations

from dataclasses import dataclass


class InvalidValue(ValueError):
    """A value that cannot be read or represented: carries the SQLSTATE and
    PostgreSQL's message (22P02 invalid text representation, 22003 out of
    range, 22007/22008 date/time format/overflow, 22P03 bad binary data, ...)."""

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message


def invalid_syntax(typname: str, text: str) -> InvalidValue:
    return InvalidValue("22P02", f'invalid input syntax for type {typname}: "{text}"')


def out_of_range(text: str, typname: str) -> InvalidValue:
    return InvalidValue("22003", f'value "{text}" is out of range for type {typname}')


@dataclass(frozen=True, slots=True, order=False)
class Interval:
    """A PostgreSQL interval: ``months``, ``days`` and ``microseconds`` kept apart."""

    months: int = 0
    days: int = 0
    microseconds: int = 0

    def _key(self) -> int:
        # PostgreSQL compares intervals as if a month were 30 days.
        return (self.months * 30 + self.days) * 86_400_000_000 + self.microseconds

    def __lt__(self, other: Interval) -> bool:
        return self._key() < other._key()

    def __le__(self, other: Interval) -> bool:
        return self._key() <= other._key()

    def __gt__(self, other: Interval) -> bool:
        return self._key() > other._key()

    def __ge__(self, other: Interval) -> bool:
        return self._key() >= other._key()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Interval) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __add__(self, other: Interval) -> Interval:
        return Interval(self.months + other.months, self.days + other.days,
                        self.microseconds + other.microseconds)

    def __sub__(self, other: Interval) -> Interval:
        return Interval(self.months - other.months, self.days - other.days,
                        self.microseconds - other.microseconds)

    def __neg__(self) -> Interval:
        return Interval(-self.months, -self.days, -self.microseconds)
