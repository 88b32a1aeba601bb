"""The engine API the SQL layer calls: one :class:`Engine` per backend process.

This module is the contract between the storage engine (owned by Engine) and the
SQL layer (``pgbundle.server.sql``).  Everything here is **synchronous** Python
running inside one backend process; the protocol loop (trio) calls the SQL
``Session``, which calls these methods.  Long waits (another transaction's row
lock, a relation lock) poll and honour cancellation: they raise
:class:`~pgbundle.server.errors.QueryCanceled` (57014) or a FATAL PgError when the
backend is told to stop.  The SQL layer must call :meth:`Engine.check_for_interrupts`
between rows of long loops (PostgreSQL's CHECK_FOR_INTERRUPTS); the engine calls it
itself once per page it reads.

Values and rows
---------------
Values are Python objects: int, float, Decimal, str, bool, bytes, datetime.date,
datetime.datetime (naive for timestamp, aware UTC for timestamptz), datetime.time,
datetime.timedelta (interval), uuid.UUID, list (arrays), dict/list/str (json), None.
A row is a tuple in column order (attnum 1..n, dropped columns included as None).
The engine stores rows with msgpack (msgspec) and decodes them with the column types,
so a value comes back as the type it was stored as (Decimal stays Decimal ...).
The engine does **not** check types or typmods (varchar(n) length, numeric scale):
the SQL layer coerces values before calling insert/update.  The engine *does* check
NOT NULL (23502) and unique indexes (23505).

Transactions
------------
A backend has at most one transaction.  The SQL layer drives it:

* :meth:`Engine.begin` opens an explicit block (BEGIN); without it, the first
  statement opens an implicit transaction that the SQL layer ends with commit()/rollback()
  after the statement (autocommit), exactly like PostgreSQL's
  StartTransactionCommand/CommitTransactionCommand.
* :meth:`Engine.start_statement` must be called at the start of every statement:
  it starts the implicit transaction if needed, increments the command counter, takes
  the statement snapshot (READ COMMITTED: a new one per statement; REPEATABLE READ:
  the first one is kept) and clears a stale cancel request.
* A transaction id (xid) is assigned lazily on the first write.  Read-only transactions
  write no WAL and commit without fsync.
* :meth:`commit` writes the commit record and, with ``synchronous_commit = on``,
  returns only after the WAL is flushed to disk (group commit: one fsync covers every
  backend waiting at that moment).
* Savepoints: :meth:`savepoint`, :meth:`release_savepoint`, :meth:`rollback_to_savepoint`.
* After an error inside an explicit block the SQL layer must refuse statements with
  25P02 until ROLLBACK (the engine only tracks the data side; the SQL layer tracks the
  'E' state for ReadyForQuery).  It calls :meth:`rollback` on ROLLBACK, or
  :meth:`rollback_to_savepoint`.
* Snapshots: :meth:`snapshot` gives the current statement snapshot; every scan uses it
  unless another is passed.

Concurrent updates (PostgreSQL's rules)
---------------------------------------
:meth:`update`, :meth:`delete` and :meth:`lock_row` on a row another transaction is
changing wait for that transaction to end (deadlocks → 40P01 after
``deadlock_timeout``), then:

* the other transaction rolled back → the operation proceeds on the row;
* it committed an update → READ COMMITTED: a :class:`Conflict` ``("updated", tid, row)``
  is returned with the newest version (already locked against further writers
  by nobody — re-check your WHERE on ``row``, recompute, and call again with
  ``conflict.tid``); REPEATABLE READ: 40001 ``could not serialize access due to
  concurrent update`` is raised;
* it committed a delete → READ COMMITTED: ``Conflict("deleted", ...)`` (skip the row);
  REPEATABLE READ: 40001 ``could not serialize access due to concurrent delete``.
* the row was already changed by the *same* command (``Conflict("self", ...)``): skip it.

Catalog
-------
Relations (tables, indexes, sequences, the system catalogs themselves) are described
by :class:`RelationInfo`.  System catalogs are real heap relations in the
``pg_catalog`` namespace (pg_class, pg_attribute, pg_namespace, pg_database, pg_authid,
pg_index, pg_constraint, pg_attrdef, pg_sequence, pg_type, pg_enum, pg_description)
whose rows the SQL layer may scan like any table (that is how pg_catalog views are
answered).  DDL goes through the methods below, which keep the catalog consistent and
transactional (a CREATE TABLE rolled back leaves nothing behind).  Lookups see the
latest committed catalog plus this transaction's own changes.

Errors are :class:`~pgbundle.server.errors.PgError` with PostgreSQL's SQLSTATE and text.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

Row = tuple[Any, ...]


class TID(NamedTuple):
    """A tuple identifier (block number, line pointer 1-based), PostgreSQL's ctid."""

    block: int
    offset: int

    def __str__(self) -> str:
        return f"({self.block},{self.offset})"


class Isolation(enum.Enum):
    """Isolation levels.  SERIALIZABLE is accepted and runs as REPEATABLE READ."""

    READ_COMMITTED = "read committed"
    REPEATABLE_READ = "repeatable read"
    SERIALIZABLE = "serializable"
    READ_UNCOMMITTED = "read uncommitted"  # runs as READ COMMITTED, as in PostgreSQL


class RelKind(str, enum.Enum):
    """pg_class.relkind."""

    TABLE = "r"
    INDEX = "i"
    SEQUENCE = "S"
    VIEW = "v"
    MATVIEW = "m"
    COMPOSITE = "c"
    TOAST = "t"
    FOREIGN = "f"
    PARTITIONED = "p"


class LockMode(enum.IntEnum):
    """Relation lock modes, PostgreSQL's numbering."""

    ACCESS_SHARE = 1
    ROW_SHARE = 2
    ROW_EXCLUSIVE = 3
    SHARE_UPDATE_EXCLUSIVE = 4
    SHARE = 5
    SHARE_ROW_EXCLUSIVE = 6
    EXCLUSIVE = 7
    ACCESS_EXCLUSIVE = 8


class RowLockMode(enum.Enum):
    """SELECT ... FOR <mode>.  All four are taken as an exclusive row lock for now."""

    UPDATE = "update"
    NO_KEY_UPDATE = "no key update"
    SHARE = "share"
    KEY_SHARE = "key share"


@dataclass(frozen=True, slots=True)
class ColumnDef:
    """A column for :meth:`Engine.create_table` / :meth:`Engine.add_column`.

    ``default`` is the default expression as SQL text (stored in pg_attrdef.adbin and
    returned by pg_get_expr); the SQL layer evaluates it, the engine only stores it.
    ``identity`` is '' or 'a'/'d' (GENERATED ALWAYS/BY DEFAULT AS IDENTITY).
    """

    name: str
    type_oid: int
    typmod: int = -1
    not_null: bool = False
    default: str | None = None
    identity: str = ""
    collation: int = 0


@dataclass(frozen=True, slots=True)
class ColumnInfo:
    """One pg_attribute row of a relation (attnum starts at 1)."""

    attnum: int
    name: str
    type_oid: int
    typmod: int
    not_null: bool
    default: str | None  # expression text, or None
    dropped: bool = False
    identity: str = ""


@dataclass(frozen=True, slots=True)
class IndexInfo:
    """An index on a table: ``columns`` are attnums of the table (1-based), in key order."""

    oid: int
    name: str
    table_oid: int
    columns: tuple[int, ...]
    unique: bool
    primary: bool
    valid: bool = True
    options: tuple[int, ...] = ()  # pg_index.indoption per column: 1 DESC, 2 NULLS FIRST


@dataclass(frozen=True, slots=True)
class ConstraintInfo:
    """A pg_constraint row: ``kind`` is 'p' primary key, 'u' unique, 'c' check, 'f' foreign key,
    'n' not null (PostgreSQL 15 keeps NOT NULL in pg_attribute only; kept for future use).
    ``columns`` are attnums; ``index_oid`` is the backing index for p/u; ``expression`` the
    CHECK text."""

    oid: int
    name: str
    kind: str
    table_oid: int
    columns: tuple[int, ...]
    index_oid: int = 0
    expression: str | None = None
    ref_table_oid: int = 0
    ref_columns: tuple[int, ...] = ()
    on_update: str = "a"  # foreign keys: confupdtype / confdeltype ('a' no action, 'r' restrict,
    on_delete: str = "a"  # 'c' cascade, 'n' set null, 'd' set default)


@dataclass(frozen=True, slots=True)
class RelationInfo:
    """What the SQL layer needs to know about a relation.  Immutable snapshot of the
    catalog; fetch it again after DDL (the engine's cache is invalidated for you)."""

    oid: int
    name: str
    namespace: str  # schema name, e.g. 'public' or 'pg_catalog'
    namespace_oid: int
    kind: RelKind
    columns: tuple[ColumnInfo, ...]  # every attribute 1..n, dropped ones marked
    indexes: tuple[IndexInfo, ...] = ()
    constraints: tuple[ConstraintInfo, ...] = ()
    owner: int = 10
    relfilenode: int = 0
    persistence: str = "p"  # 'p' permanent, 'u' unlogged, 't' temporary
    is_shared: bool = False  # pg_database, pg_authid: one copy for the whole cluster
    pages: int = 0  # pg_class.relpages as of the last VACUUM
    tuples: float = -1  # pg_class.reltuples as of the last VACUUM (-1: never)
    index_info: IndexInfo | None = None  # for an index relation: its definition
    options: tuple[str, ...] = ()

    def column(self, name: str) -> ColumnInfo | None:
        for c in self.columns:
            if c.name == name and not c.dropped:
                return c
        return None

    @property
    def live_columns(self) -> tuple[ColumnInfo, ...]:
        return tuple(c for c in self.columns if not c.dropped)

    @property
    def primary_key(self) -> IndexInfo | None:
        for i in self.indexes:
            if i.primary:
                return i
        return None


@dataclass(frozen=True, slots=True)
class DatabaseInfo:
    oid: int
    name: str
    owner: int
    encoding: str = "UTF8"
    collate: str = "C"
    ctype: str = "C"
    allow_connections: bool = True
    is_template: bool = False
    connection_limit: int = -1


@dataclass(frozen=True, slots=True)
class RoleInfo:
    """A pg_authid row.  ``password`` is the stored secret (SCRAM-SHA-256$... or md5...)
    or None."""

    oid: int
    name: str
    superuser: bool = False
    inherit: bool = True
    create_role: bool = False
    create_db: bool = False
    can_login: bool = False
    replication: bool = False
    bypass_rls: bool = False
    connection_limit: int = -1
    password: str | None = None
    valid_until: Any = None


@dataclass(frozen=True, slots=True)
class Conflict:
    """Returned by update/delete/lock_row in READ COMMITTED when the row changed under us.

    ``kind``: 'updated' (``tid``/``row`` = the newest committed version; re-check the
    quals on it and retry there), 'deleted' (skip the row), 'self' (this command already
    changed the row; skip it).
    """

    kind: str
    tid: TID | None = None
    row: Row | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An MVCC snapshot: xids < xmin are finished, >= xmax not started, ``xip`` in progress.
    ``xid``/``cid`` are the owning transaction's own xid (0 if none yet) and command id:
    its own rows are visible when inserted by an earlier command."""

    xmin: int
    xmax: int
    xip: frozenset[int]
    xid: int = 0
    cid: int = 0

    def __str__(self) -> str:  # txid_current_snapshot() text form
        return f"{self.xmin}:{self.xmax}:{','.join(str(x) for x in sorted(self.xip))}"


@dataclass(slots=True)
class VacuumResult:
    """What VACUUM did to one relation (VACUUM VERBOSE prints these)."""

    relation: str
    pages: int = 0
    tuples_removed: int = 0
    tuples_remaining: int = 0
    dead_not_yet_removable: int = 0
    index_entries_removed: int = 0
    pages_truncated: int = 0


@dataclass(slots=True)
class BackendStatus:
    """One row of pg_stat_activity (times are aware UTC datetimes or None)."""

    pid: int
    backend_type: str
    datid: int | None
    datname: str | None
    usesysid: int | None
    usename: str | None
    application_name: str
    client_addr: str | None
    client_hostname: str | None
    client_port: int | None
    backend_start: Any
    xact_start: Any
    query_start: Any
    state_change: Any
    wait_event_type: str | None
    wait_event: str | None
    state: str | None  # 'active', 'idle', 'idle in transaction', 'idle in transaction (aborted)', None
    backend_xid: int | None
    backend_xmin: int | None
    query_id: int | None
    query: str
    leader_pid: int | None = None


@dataclass(slots=True)
class DatabaseStats:
    """One row of pg_stat_database."""

    datid: int
    datname: str | None
    numbackends: int = 0
    xact_commit: int = 0
    xact_rollback: int = 0
    blks_read: int = 0
    blks_hit: int = 0
    tup_returned: int = 0
    tup_fetched: int = 0
    tup_inserted: int = 0
    tup_updated: int = 0
    tup_deleted: int = 0
    conflicts: int = 0
    temp_files: int = 0
    temp_bytes: int = 0
    deadlocks: int = 0
    blk_read_time: float = 0.0
    blk_write_time: float = 0.0
    stats_reset: Any = None


@dataclass(slots=True)
class TableStats:
    """One row of pg_stat_user_tables / pg_stat_all_tables."""

    relid: int
    schemaname: str
    relname: str
    seq_scan: int = 0
    seq_tup_read: int = 0
    idx_scan: int = 0
    idx_tup_fetch: int = 0
    n_tup_ins: int = 0
    n_tup_upd: int = 0
    n_tup_del: int = 0
    n_tup_hot_upd: int = 0
    n_live_tup: int = 0
    n_dead_tup: int = 0
    n_mod_since_analyze: int = 0
    n_ins_since_vacuum: int = 0
    last_vacuum: Any = None
    last_autovacuum: Any = None
    last_analyze: Any = None
    last_autoanalyze: Any = None
    vacuum_count: int = 0
    autovacuum_count: int = 0
    analyze_count: int = 0
    autoanalyze_count: int = 0


@dataclass(slots=True)
class SettingInfo:
    """One row of pg_settings."""

    name: str
    setting: str
    unit: str | None
    category: str
    short_desc: str
    extra_desc: str | None
    context: str
    vartype: str
    source: str
    min_val: str | None
    max_val: str | None
    enumvals: list[str] | None
    boot_val: str
    reset_val: str
    sourcefile: str | None
    sourceline: int | None
    pending_restart: bool = False


@dataclass(slots=True)
class Notice:
    """A NoticeResponse the engine wants the client to see (e.g. VACUUM warnings)."""

    severity: str
    sqlstate: str
    message: str
    detail: str | None = None
    hint: str | None = None


@dataclass(slots=True)
class IndexBound:
    """A bound of an index range scan: ``values`` is a prefix of the index columns, in
    the columns' own types (convert before calling: ``int_col > 2.5`` is ``>= 3``)."""

    values: tuple[Any, ...]
    inclusive: bool = True


class Engine:
    """One backend's handle on the storage engine.  Created by the protocol loop after
    authentication and handed to ``Session(engine, database, user, settings)``.

    The real implementation is :class:`pgbundle.server.access.engine.BackendEngine`; this
    class documents the contract (every method raises NotImplementedError here).
    """

    # --- identity ------------------------------------------------------------------
    database: DatabaseInfo
    """The database this backend is bound to."""
    role: RoleInfo
    """The authenticated role (session_authorization)."""
    pid: int
    """This backend's process id (pg_backend_pid())."""
    settings: Any
    """The backend's :class:`pgbundle.server.utils.guc.GucSettings` (SET/SHOW/pg_settings)."""
    notices: list[Notice]
    """Notices the engine produced; the SQL layer/protocol loop drains and sends them."""

    # --- interrupts ------------------------------------------------------------------
    def check_for_interrupts(self) -> None:
        """Raise QueryCanceled (57014: cancel request or statement_timeout) or a FATAL
        PgError (57P01 administrator shutdown) if one is pending.  Cheap; call per row."""
        raise NotImplementedError

    def report_activity(self, state: str, query: str | None = None) -> None:
        """Update this backend's pg_stat_activity row: state is 'active', 'idle',
        'idle in transaction', 'idle in transaction (aborted)', 'fastpath function call',
        'disabled'.  ``query`` (when given) becomes the displayed query and query_start."""
        raise NotImplementedError

    # --- transactions ----------------------------------------------------------------
    def begin(self, isolation: Isolation | None = None, read_only: bool | None = None) -> None:
        """BEGIN / START TRANSACTION: open an explicit transaction block.  ``None`` means the
        session default (default_transaction_isolation / default_transaction_read_only).
        Inside a block: PgError 25001 is *not* raised here (PostgreSQL only warns); the SQL
        layer emits the WARNING 'there is already a transaction in progress'."""
        raise NotImplementedError

    def set_isolation(self, isolation: Isolation) -> None:
        """SET TRANSACTION ISOLATION LEVEL: only before the first snapshot (else 25001
        'SET TRANSACTION ISOLATION LEVEL must be called before any query')."""
        raise NotImplementedError

    @property
    def in_transaction_block(self) -> bool:
        """True inside BEGIN ... COMMIT (explicit block)."""
        raise NotImplementedError

    @property
    def in_transaction(self) -> bool:
        """True while any transaction (implicit or explicit) is open."""
        raise NotImplementedError

    @property
    def isolation(self) -> Isolation:
        raise NotImplementedError

    def start_statement(self) -> Snapshot:
        """Call at the start of every statement (see module docstring).  Returns the
        statement snapshot."""
        raise NotImplementedError

    def end_statement(self) -> None:
        """Call after every statement that succeeded (releases buffer pins; makes this
        statement's changes visible to the next command via the command counter)."""
        raise NotImplementedError

    def commit(self) -> None:
        """COMMIT the current transaction (no-op if none).  Durable on return when
        synchronous_commit is on.  Unique violations are checked at insert time, so commit
        itself only fails on I/O errors (PANIC-class; the server then restarts)."""
        raise NotImplementedError

    def rollback(self) -> None:
        """ROLLBACK / abort after an error.  Never raises for a missing transaction."""
        raise NotImplementedError

    def savepoint(self, name: str) -> None:
        """SAVEPOINT name (needs an explicit block; else 25P01 'SAVEPOINT can only be used in
        transaction blocks' — the SQL layer checks, the engine also raises)."""
        raise NotImplementedError

    def release_savepoint(self, name: str) -> None:
        """RELEASE [SAVEPOINT] name; 3B001 'savepoint "x" does not exist'."""
        raise NotImplementedError

    def rollback_to_savepoint(self, name: str) -> None:
        """ROLLBACK TO [SAVEPOINT] name: undoes every change since the savepoint, which stays
        defined.  3B001 if unknown."""
        raise NotImplementedError

    def snapshot(self) -> Snapshot:
        """The current statement's snapshot (start_statement must have been called)."""
        raise NotImplementedError

    def current_xid(self, assign: bool = True) -> int:
        """This transaction's xid (txid_current()); assigns one if ``assign`` (0 if none)."""
        raise NotImplementedError

    @property
    def command_id(self) -> int:
        raise NotImplementedError

    def command_counter_increment(self) -> None:
        """Make this transaction's changes so far visible to later scans of the same
        statement (needed between the phases of multi-step utility commands only)."""
        raise NotImplementedError

    # --- catalog: lookups ----------------------------------------------------------
    def lookup_relation(self, name: str, schema: str | None = None) -> RelationInfo | None:
        """Find a relation by name: in ``schema`` if given, else along search_path
        (pg_catalog first, then "$user", public).  None if not found (the SQL layer raises
        42P01 'relation "x" does not exist' with the position)."""
        raise NotImplementedError

    def relation(self, oid: int) -> RelationInfo:
        """The relation with this oid (PgError 42P01 if gone)."""
        raise NotImplementedError

    def relations(self, kinds: str = "rivSmpcf") -> list[RelationInfo]:
        """Every relation of this database (and the shared catalogs) visible to this
        transaction, optionally filtered by relkind letters."""
        raise NotImplementedError

    def lookup_namespace(self, name: str) -> int | None:
        """The oid of schema ``name`` or None."""
        raise NotImplementedError

    def namespaces(self) -> list[tuple[int, str, int]]:
        """(oid, nspname, nspowner) of every schema."""
        raise NotImplementedError

    @property
    def search_path(self) -> list[str]:
        """The effective schemas, in lookup order (from the search_path setting)."""
        raise NotImplementedError

    # --- catalog: DDL (transactional) ------------------------------------------------
    def create_table(
        self,
        name: str,
        columns: Sequence[ColumnDef],
        *,
        schema: str | None = None,
        primary_key: Sequence[str] | None = None,
        unique: Sequence[Sequence[str]] = (),
        constraint_names: dict[tuple[str, ...], str] | None = None,
        if_not_exists: bool = False,
        persistence: str = "p",
        options: Sequence[str] = (),
    ) -> RelationInfo | None:
        """CREATE TABLE.  Creates the heap file, pg_class/pg_attribute/pg_attrdef rows, a
        pg_type row for the row type, and a unique B-tree index + pg_constraint row for the
        primary key (named ``<table>_pkey``) and each UNIQUE (``<table>_<cols>_key``) unless
        ``constraint_names`` maps the column tuple to a name.  Primary-key columns become
        NOT NULL.  Errors: 42P07 'relation "x" already exists' (None + a NOTICE 42P07
        'relation "x" already exists, skipping' with if_not_exists), 42701 duplicate column,
        3F000 unknown schema.  Sequences for serial columns are the SQL layer's job
        (create_sequence + ColumnDef.default "nextval('t_id_seq'::regclass)" +
        set_sequence_owner)."""
        raise NotImplementedError

    def create_index(
        self,
        table_oid: int,
        name: str | None,
        columns: Sequence[int],
        *,
        unique: bool = False,
        primary: bool = False,
        if_not_exists: bool = False,
        constraint: bool = False,
    ) -> IndexInfo | None:
        """CREATE [UNIQUE] INDEX on attnums ``columns`` (B-tree), building it from the table
        (23505 'could not create unique index "x"' with detail 'Key (a)=(1) is duplicated.'
        if existing rows violate it).  ``name=None`` picks PostgreSQL's name
        (``<table>_<col>_idx``).  ``constraint=True`` also records a pg_constraint row
        (ALTER TABLE ADD PRIMARY KEY/UNIQUE)."""
        raise NotImplementedError

    def drop_relation(self, oid: int, *, cascade: bool = False) -> None:
        """DROP TABLE/INDEX/SEQUENCE: removes catalog rows (indexes, constraints, owned
        sequences, defaults with it); the files go away at commit.  Dropping an index that
        backs a constraint: 2BP01 unless the constraint is dropped (use drop_constraint)."""
        raise NotImplementedError

    def truncate(self, oids: Sequence[int]) -> None:
        """TRUNCATE: new empty relfilenodes for the tables and their indexes (old files
        removed at commit)."""
        raise NotImplementedError

    def rename_relation(self, oid: int, new_name: str) -> None:
        raise NotImplementedError

    def add_column(self, table_oid: int, column: ColumnDef, *, missing_value: Any = None) -> None:
        """ALTER TABLE ADD COLUMN: existing rows read ``missing_value`` (the default evaluated
        once, PostgreSQL's attmissingval) for the new column."""
        raise NotImplementedError

    def drop_column(self, table_oid: int, attnum: int) -> None:
        """ALTER TABLE DROP COLUMN: the attribute is marked dropped; rows keep a None there."""
        raise NotImplementedError

    def set_column_default(self, table_oid: int, attnum: int, default: str | None) -> None:
        raise NotImplementedError

    def set_column_not_null(self, table_oid: int, attnum: int, not_null: bool) -> None:
        """ALTER COLUMN SET/DROP NOT NULL (SET checks existing rows: 23502)."""
        raise NotImplementedError

    def add_constraint(self, table_oid: int, constraint: ConstraintInfo) -> ConstraintInfo:
        """Record a CHECK/FOREIGN KEY constraint (the SQL layer enforces them).  For
        primary/unique constraints use create_index(..., constraint=True)."""
        raise NotImplementedError

    def drop_constraint(self, table_oid: int, name: str) -> None:
        raise NotImplementedError

    def create_namespace(self, name: str, *, if_not_exists: bool = False) -> int:
        raise NotImplementedError

    def drop_namespace(self, name: str, *, cascade: bool = False, missing_ok: bool = False) -> None:
        raise NotImplementedError

    def catalog_changed(self) -> None:
        """Tell the engine that the SQL layer changed catalog rows through the plain heap
        API (e.g. inserted into pg_enum): the relation caches of every backend are
        invalidated when this transaction commits, and this backend's at once."""
        raise NotImplementedError

    def allocate_oid(self) -> int:
        """A new oid (for rows the SQL layer inserts into catalogs itself)."""
        raise NotImplementedError

    # --- sequences -----------------------------------------------------------------
    def create_sequence(
        self,
        name: str,
        *,
        schema: str | None = None,
        type_oid: int = 20,
        start: int | None = None,
        increment: int = 1,
        min_value: int | None = None,
        max_value: int | None = None,
        cache: int = 1,
        cycle: bool = False,
        if_not_exists: bool = False,
    ) -> RelationInfo | None:
        """CREATE SEQUENCE (defaults as PostgreSQL's, by type int2/int4/int8)."""
        raise NotImplementedError

    def set_sequence_owner(self, seq_oid: int, table_oid: int, attnum: int) -> None:
        """OWNED BY table.column (serial): the sequence is dropped with the column/table."""
        raise NotImplementedError

    def nextval(self, seq_oid: int) -> int:
        """nextval(): non-transactional (never rolled back), WAL-logged.  2200H
        'nextval: reached maximum value of sequence "x" (n)' at the end without CYCLE."""
        raise NotImplementedError

    def currval(self, seq_oid: int) -> int:
        """currval(): 55000 'currval of sequence "x" is not yet defined in this session'."""
        raise NotImplementedError

    def setval(self, seq_oid: int, value: int, is_called: bool = True) -> int:
        raise NotImplementedError

    def lastval(self) -> int:
        raise NotImplementedError

    # --- heap ----------------------------------------------------------------------
    def seq_scan(self, rel: RelationInfo, snapshot: Snapshot | None = None) -> Iterator[tuple[TID, Row]]:
        """Every row of ``rel`` visible to ``snapshot`` (default: the statement snapshot),
        in physical order, as (tid, row).  Rows are decoded lazily page by page; the
        iterator holds no lock between rows.  Counts seq_scan/seq_tup_read statistics."""
        raise NotImplementedError

    def fetch(self, rel: RelationInfo, tid: TID, snapshot: Snapshot | None = None) -> Row | None:
        """The row at ``tid`` if visible to the snapshot, else None."""
        raise NotImplementedError

    def insert(self, rel: RelationInfo, row: Row) -> TID:
        """Insert ``row`` (a full tuple in attnum order), maintain every index.
        23502 'null value in column "c" of relation "t" violates not-null constraint'
        (detail 'Failing row contains (...)'), 23505 'duplicate key value violates unique
        constraint "t_pkey"' (detail 'Key (id)=(1) already exists.'); a concurrent
        uncommitted insert of the same key is waited for first (PostgreSQL's rule)."""
        raise NotImplementedError

    def insert_many(self, rel: RelationInfo, rows: Sequence[Row]) -> list[TID]:
        """Insert several rows (COPY FROM, multi-row INSERT): same contract as insert."""
        raise NotImplementedError

    def update(self, rel: RelationInfo, tid: TID, row: Row) -> TID | Conflict:
        """Replace the row at ``tid`` (visible to this statement's snapshot) by ``row``.
        Returns the new version's tid, or a :class:`Conflict` (see module docstring);
        raises 40001 under REPEATABLE READ, 40P01 on deadlock, 23505/23502 as insert."""
        raise NotImplementedError

    def delete(self, rel: RelationInfo, tid: TID) -> bool | Conflict:
        """Delete the row at ``tid``.  True when deleted, else a Conflict (or 40001)."""
        raise NotImplementedError

    def lock_row(self, rel: RelationInfo, tid: TID, mode: RowLockMode = RowLockMode.UPDATE,
                 nowait: bool = False, skip_locked: bool = False) -> TID | Conflict | None:
        """SELECT ... FOR UPDATE/SHARE: lock the row against other writers until the end
        of the transaction.  Returns the tid locked, a Conflict (as update), or None when
        ``skip_locked`` and it is locked.  ``nowait``: 55P03 'could not obtain lock on row in
        relation "t"'."""
        raise NotImplementedError

    # --- indexes -------------------------------------------------------------------
    def index_scan(
        self,
        index: IndexInfo,
        lower: IndexBound | None = None,
        upper: IndexBound | None = None,
        *,
        snapshot: Snapshot | None = None,
        backward: bool = False,
    ) -> Iterator[tuple[TID, Row]]:
        """Rows of the index's table whose key lies between the bounds (None = open), in
        key order (NULLs last), visible to the snapshot, as (tid, row).  Equality is
        lower == upper, both inclusive.  Counts idx_scan/idx_tup_fetch."""
        raise NotImplementedError

    # --- databases and roles ---------------------------------------------------------
    def database_by_name(self, name: str) -> DatabaseInfo | None:
        raise NotImplementedError

    def databases(self) -> list[DatabaseInfo]:
        raise NotImplementedError

    def create_database(self, name: str, *, owner: str | None = None, template: str = "template1") -> DatabaseInfo:
        """CREATE DATABASE (not in a transaction block: 25001 'CREATE DATABASE cannot run
        inside a transaction block').  Copies the template's files after a checkpoint.
        42P04 'database "x" already exists'; 55006 'source database "template1" is being
        accessed by other users'."""
        raise NotImplementedError

    def drop_database(self, name: str, *, if_exists: bool = False, force: bool = False) -> None:
        """DROP DATABASE: 3D000 'database "x" does not exist'; 55006 'database "x" is being
        accessed by other users' (detail 'There is 1 other session using the database.');
        55006 'cannot drop the currently open database'."""
        raise NotImplementedError

    def role_by_name(self, name: str) -> RoleInfo | None:
        raise NotImplementedError

    def roles(self) -> list[RoleInfo]:
        raise NotImplementedError

    def create_role(self, name: str, *, password: str | None = None, login: bool = False,
                    superuser: bool = False, create_db: bool = False, create_role: bool = False,
                    inherit: bool = True, replication: bool = False, bypass_rls: bool = False,
                    connection_limit: int = -1, valid_until: Any = None) -> RoleInfo:
        """CREATE ROLE/USER.  ``password`` in clear is stored as a SCRAM-SHA-256 secret (or
        md5 per password_encryption); an already hashed secret is stored as is.
        42710 'role "x" already exists'."""
        raise NotImplementedError

    def alter_role(self, name: str, **changes: Any) -> RoleInfo:
        """ALTER ROLE: keys as create_role's (password=None with 'password' in changes
        removes it); ``rename`` renames."""
        raise NotImplementedError

    def drop_role(self, name: str, *, if_exists: bool = False) -> None:
        raise NotImplementedError

    # --- maintenance -----------------------------------------------------------------
    def vacuum(self, rel: RelationInfo | None = None, *, full: bool = False, freeze: bool = False,
               analyze: bool = False, verbose: bool = False) -> list[VacuumResult]:
        """VACUUM (not inside a transaction block: 25001 'VACUUM cannot run inside a
        transaction block').  ``rel=None``: every table of the database.  Removes dead tuples
        no snapshot can see, their index entries, compacts pages, updates the free-space map,
        pg_class.relpages/reltuples and pg_stat_user_tables.  ``analyze`` also updates the
        statistics the planner reads (reltuples)."""
        raise NotImplementedError

    def analyze(self, rel: RelationInfo | None = None) -> None:
        raise NotImplementedError

    def checkpoint(self) -> None:
        """CHECKPOINT: asks the checkpointer for an immediate checkpoint and waits for it.
        42501 'must be superuser to do CHECKPOINT' for others."""
        raise NotImplementedError

    # --- statistics and activity -------------------------------------------------------
    def activity(self) -> list[BackendStatus]:
        """pg_stat_activity: one row per live process attached to shared memory."""
        raise NotImplementedError

    def database_stats(self) -> list[DatabaseStats]:
        """pg_stat_database (one row per database plus the shared row with datid 0)."""
        raise NotImplementedError

    def table_stats(self) -> list[TableStats]:
        """pg_stat_all_tables for this database (filter namespace for _user_/_sys_)."""
        raise NotImplementedError

    def bgwriter_stats(self) -> dict[str, Any]:
        """pg_stat_bgwriter (PostgreSQL 15 columns: checkpoints_timed, checkpoints_req,
        checkpoint_write_time, checkpoint_sync_time, buffers_checkpoint, buffers_clean,
        maxwritten_clean, buffers_backend, buffers_backend_fsync, buffers_alloc, stats_reset)."""
        raise NotImplementedError

    def checkpointer_stats(self) -> dict[str, Any]:
        """pg_stat_checkpointer (PostgreSQL 17 columns: num_timed, num_requested,
        restartpoints_timed, restartpoints_req, restartpoints_done, write_time, sync_time,
        buffers_written, stats_reset)."""
        raise NotImplementedError

    def wal_stats(self) -> dict[str, Any]:
        """pg_stat_wal (wal_records, wal_fpi, wal_bytes, wal_buffers_full, wal_write,
        wal_sync, stats_reset) and pg_current_wal_lsn() as 'lsn'."""
        raise NotImplementedError

    def archiver_stats(self) -> dict[str, Any]:
        """pg_stat_archiver: archived_count, last_archived_wal, last_archived_time,
        failed_count, last_failed_wal, last_failed_time, stats_reset."""
        raise NotImplementedError

    def lock_relation(self, oid: int, mode: int, *, nowait: bool = False) -> None:
        """LOCK TABLE / explicit relation lock until transaction end (mode: LockMode value).
        DML and DDL take their locks themselves; 55P03 with nowait when busy."""
        raise NotImplementedError

    def cancel_backend(self, pid: int) -> bool:
        """pg_cancel_backend(pid)."""
        raise NotImplementedError

    def terminate_backend(self, pid: int) -> bool:
        """pg_terminate_backend(pid)."""
        raise NotImplementedError

    def postmaster_start_time(self) -> Any:
        """pg_postmaster_start_time()."""
        raise NotImplementedError

    def is_in_recovery(self) -> bool:
        return False

    # --- advisory locks (issue 6) --------------------------------------------------------
    def advisory_lock(self, key: int, *, shared: bool = False, session: bool = True, wait: bool = True) -> bool:
        """pg_advisory_lock and friends; returns False when ``wait`` is False and busy."""
        raise NotImplementedError

    def advisory_unlock(self, key: int, *, shared: bool = False) -> bool:
        raise NotImplementedError

    def advisory_unlock_all(self) -> None:
        raise NotImplementedError
