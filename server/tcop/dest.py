"""Where a statement's result goes, as PostgreSQL's tcop/dest.c: the result columns
(what becomes RowDescription), a finished statement's :class:`StatementResult` (rows and
command tag) and a COPY FROM STDIN in progress (:class:`CopyIn`).

A leaf: built by commands/ and the session alike, it imports nothing of the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Column:
    """One result column: name, type and, for a table's column, where it comes from."""

    name: str
    type_oid: int
    typmod: int = -1
    table_oid: int = 0
    attnum: int = 0


class StatementResult:
    """What running one statement produced: columns (None = no rows), rows, tag."""

    __slots__ = ("columns", "rows", "tag", "count_rows")

    def __init__(self, tag: str, columns: list[Column] | None = None, rows: Any = None, count_rows: bool = False):
        self.tag = tag
        self.columns = columns
        self.rows = rows
        self.count_rows = count_rows


class CopyIn:
    """A COPY FROM STDIN in progress (built by :mod:`pgbundle.server.commands.copy`)."""

    def __init__(self, response: Any, feed: Any, finish: Any) -> None:
        self.response = response
        self.feed = feed
        self.finish = finish
        self.error: BaseException | None = None
