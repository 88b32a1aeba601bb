"""What the SQL layer needs from storage: relation descriptors (:class:`SqlRelation`,
:class:`SqlColumn`, :class:`SqlIndex`, :class:`SqlConstraint`: column positions 0-based, as
the executor indexes rows; the engine's own, attnum-based descriptors are
``access.api.RelationInfo`` and friends) and the :class:`Storage` protocol.

The executor never touches pages or WAL; it calls a ``Storage`` object, one per
backend.  :mod:`pgbundle.server.access.engine_adapter` implements it over the
engine's API (``pgbundle.server.access.api``); the fast lane runs it over the in-memory
engine in ``tests/unit/server/sql/memengine.py``.

Rows are tuples of Python values in column order (see
:mod:`pgbundle.shared.types` for the value of each type).  A ``tid`` is whatever
the storage uses to name a row version; the SQL layer only hands it back.

Concurrent updates follow PostgreSQL's rules inside the storage: ``update`` and
``delete`` take a ``recheck`` callback.  When the target row version was
updated by a transaction that committed meanwhile, READ COMMITTED storage
waits for it, follows the row to its newest version and calls
``recheck(newest_row)``: it returns the new row for ``update`` (or ``None`` when
the row no longer satisfies the statement's WHERE clause, so it is skipped),
``True``/``False`` for ``delete``.  REPEATABLE READ storage raises 40001
instead.  ``update``/``delete`` return ``False`` when the row was deleted
concurrently (nothing to do).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

Row = tuple
Tid = Any


@dataclass(slots=True)
class SqlColumn:
    """One column: ``default`` is the SQL text of the default expression
    (``nextval('t_id_seq'::regclass)``, ``now()``) or None."""

    name: str
    type_oid: int
    typmod: int = -1
    not_null: bool = False
    default: str | None = None
    attnum: int = 0          # 1-based
    identity: str = ""
    dropped: bool = False


@dataclass(slots=True)
class SqlIndex:
    """A B-tree index over ``columns`` (0-based positions in the table row)."""

    oid: int
    name: str
    columns: tuple[int, ...]
    unique: bool = False
    primary: bool = False
    relation_oid: int = 0
    options: tuple[int, ...] = ()


@dataclass(slots=True)
class SqlConstraint:
    oid: int
    name: str
    kind: str                     # 'p' primary key, 'u' unique, 'c' check, 'f' foreign key, 'n' not null
    columns: tuple[int, ...] = ()
    index_oid: int = 0
    expr: str | None = None
    ref_table: int = 0
    ref_columns: tuple[int, ...] = ()
    on_update: str = "a"
    on_delete: str = "a"


@dataclass(slots=True)
class SqlRelation:
    """A table, view, sequence or index as the SQL layer sees it.

    ``kind`` is pg_class.relkind: 'r' table, 'i' index, 'S' sequence, 'v' view.
    """

    oid: int
    name: str
    schema: str = "public"
    kind: str = "r"
    columns: list[SqlColumn] = field(default_factory=list)
    indexes: list[SqlIndex] = field(default_factory=list)
    constraints: list[SqlConstraint] = field(default_factory=list)
    namespace_oid: int = 2200
    owner_oid: int = 10
    options: dict[str, str] = field(default_factory=dict)
    reltuples: float = -1.0
    relpages: int = 0
    persistence: str = "p"
    engine_rel: Any = None

    def column_index(self, name: str) -> int:
        for i, c in enumerate(self.columns):
            if c.name == name and not c.dropped:
                return i
        return -1


class Storage(Protocol):
    """The storage operations of one backend (one session, one database)."""

    # -- transactions ---------------------------------------------------------
    def begin(self, isolation: str = "read committed", read_only: bool = False) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def savepoint(self, name: str) -> None: ...
    def release_savepoint(self, name: str) -> None: ...
    def rollback_to_savepoint(self, name: str) -> None: ...
    def start_command(self) -> None:
        """Called before every statement inside a transaction: make the
        previous statement's changes visible (command counter) and, in READ
        COMMITTED, take a new snapshot."""

    # -- catalog -------------------------------------------------------------
    def lookup_relation(self, schema: str | None, name: str) -> SqlRelation | None: ...
    def relation_by_oid(self, oid: int) -> SqlRelation | None: ...
    def relations(self) -> list[SqlRelation]: ...
    def create_table(self, schema: str, name: str, columns: list[SqlColumn],
                     options: dict[str, str] | None = None) -> SqlRelation: ...
    def drop_relation(self, rel: SqlRelation) -> None: ...
    def create_index(self, rel: SqlRelation, name: str, columns: tuple[int, ...], unique: bool,
                     primary: bool) -> SqlIndex: ...
    def drop_index(self, index: SqlIndex) -> None: ...
    def add_column(self, rel: SqlRelation, column: SqlColumn) -> None: ...
    def drop_column(self, rel: SqlRelation, index: int) -> None: ...
    def set_not_null(self, rel: SqlRelation, index: int, not_null: bool) -> None: ...
    def create_sequence(self, schema: str, name: str, start: int = 1, increment: int = 1,
                        minvalue: int = 1, maxvalue: int = 2**63 - 1, owned_by: tuple[int, int] | None = None
                        ) -> SqlRelation: ...
    def nextval(self, seq: SqlRelation) -> int: ...
    def setval(self, seq: SqlRelation, value: int, is_called: bool = True) -> int: ...

    # -- rows ----------------------------------------------------------------
    def scan(self, rel: SqlRelation) -> Iterator[tuple[Tid, Row]]: ...
    def index_scan(self, index: SqlIndex, rel: SqlRelation, lo: tuple | None, lo_inclusive: bool,
                   hi: tuple | None, hi_inclusive: bool) -> Iterator[tuple[Tid, Row]]:
        """Rows whose index key (a prefix of ``index.columns``) lies between
        ``lo`` and ``hi`` (None = unbounded), in index order.  Equality is
        ``lo == hi`` with both inclusive."""
    def insert(self, rel: SqlRelation, row: Row) -> Tid:
        """Insert; maintain indexes; 23505 on a unique violation."""
    def insert_many(self, rel: SqlRelation, rows: Iterable[Row]) -> int: ...
    def update(self, rel: SqlRelation, tid: Tid, row: Row,
               recheck: Callable[[Row], Row | None] | None = None) -> bool: ...
    def delete(self, rel: SqlRelation, tid: Tid, recheck: Callable[[Row], bool] | None = None) -> bool: ...
    def truncate(self, rels: list[SqlRelation]) -> None: ...

    # -- maintenance ---------------------------------------------------------
    def vacuum(self, rel: SqlRelation | None, analyze: bool = False, full: bool = False) -> None: ...
    def checkpoint(self) -> None: ...
