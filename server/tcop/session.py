"""The Session: what the protocol loop drives, one per backend.

Construction::

    s = Session(engine, database="postgres", user="postgres", settings=engine.settings,
                params=startup_params)

``engine`` is the engine API object (:mod:`pgbundle.server.access.api`).  Every
method is synchronous and returns a **list of backend messages**
(:mod:`pgbundle.shared.protocol.messages`), notices and ParameterStatus
included in order; no method raises PgError (errors come back as
ErrorResponse; a FATAL one also sets ``closed``).

Simple query (``simple_query(sql)``)
    Runs every statement of ``sql`` in order (one implicit transaction unless
    the statements open their own), answering RowDescription/DataRow/
    CommandComplete per statement, EmptyQueryResponse for an empty string,
    and a final ReadyForQuery.  An error stops the rest.  ``COPY ... FROM
    STDIN`` stops the list at CopyInResponse: the loop then calls
    ``copy_data(bytes)`` per CopyData, and ``copy_done()`` or
    ``copy_fail(msg)``, which return the COPY's CommandComplete (or error),
    the results of the statements after it and ReadyForQuery.
    ``COPY ... TO STDOUT`` answers CopyOutResponse, CopyData..., CopyDone.

Extended query
    ``parse(name, query, param_types)`` → [ParseComplete] (types 0 are
    inferred); ``bind(portal, statement, param_formats, params,
    result_formats)`` → [BindComplete]; ``describe('S'|'P', name)`` →
    [ParameterDescription, RowDescription|NoData] or [RowDescription|NoData];
    ``execute(portal, max_rows)`` → [DataRow..., CommandComplete |
    PortalSuspended | EmptyQueryResponse]; ``close('S'|'P', name)`` →
    [CloseComplete]; ``sync()`` → [ReadyForQuery] and ends the implicit
    transaction.  After an error every call returns [] until ``sync()``.

State
    ``transaction_status`` is 'I' (idle), 'T' (in a block) or 'E' (failed
    block: statements other than ROLLBACK/COMMIT get 25P02).
    ``cancel()`` only sets a flag (safe from a signal handler); the running
    statement stops with 57014 at its next check.  ``terminate()`` rolls back.
    ``notices`` such as ``table "x" does not exist, skipping`` come back as
    NoticeResponse in the method's list.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pgbundle.server.access.engine_adapter import EngineStorage
from pgbundle.server.catalog import (
    session_views as _session_views,  # noqa: F401  (LISTEN/NOTIFY, pg_cursors, pg_locks, temp schema)
    ssl_views as _ssl_views,  # noqa: F401  (pg_stat_ssl, the sslinfo functions)
    system_views as _catalog_views,  # noqa: F401  (registers catalog functions)
)
from pgbundle.server.commands.utility import Cursor, describe_utility, run_utility
from pgbundle.server.errors import PgError, QueryCanceled
from pgbundle.server.executor.execute import PlanNode
from pgbundle.server.executor.expr import ExecState, SubLink, walk
from pgbundle.server.optimizer.plan import DMLPlan, Planner
from pgbundle.server.parser import literals
from pgbundle.server.parser.analyze import Analyzer, ParamTypes, output_columns
from pgbundle.server.parser.parse import RawStmt, parse
from pgbundle.server.tcop.dest import Column, CopyIn, StatementResult
from pgbundle.server.utils import guc
from pgbundle.server.utils.guc import GucSettings
from pgbundle.server.utils.session_env import SessionEnv
from pgbundle.shared.protocol import messages as M
from pgbundle.shared.types import InvalidValue, binary_decoder, binary_encoder, oids as T, text_decoder, text_encoder
from pgbundle.shared.types.binary import LENIENT_INT_DECODER
from pgbundle.shared.types.oids import TYPES

log = logging.getLogger("pgbundle.sql")

PLANNABLE = {"SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt"}
# statements that do not run inside the engine's statement/transaction machinery
NO_XACT = {"TransactionStmt", "VariableSetStmt", "VariableShowStmt", "VacuumStmt", "CheckPointStmt",
           "CreatedbStmt", "DropdbStmt", "DeallocateStmt", "DiscardStmt", "ListenStmt", "UnlistenStmt",
           "ClosePortalStmt", "NotifyStmt"}
PLAN_CACHE_SIZE = 256


@dataclass
class Prepared:
    text: str
    raw: RawStmt | None
    param_types: list[int]
    columns: list[Column] | None
    plan: Any = None
    deps: list = field(default_factory=list)
    declared: tuple = ()
    utility: Any = None


class Portal:
    __slots__ = ("prep", "params", "formats", "encoders", "rows", "tag", "done", "count_rows", "count", "st")

    def __init__(self, prep: Prepared, params: list, formats: list[int]) -> None:
        self.prep = prep
        self.params = params
        self.formats = formats
        self.encoders: list | None = None
        self.rows: Iterator | None = None
        self.tag = ""
        self.done = False
        self.count_rows = False             # the tag is SELECT <rows sent>
        self.count = 0
        self.st = None


class Session:
    def __init__(self, engine: Any, database: str | None = None, user: str | None = None,
                 settings: Any = None, params: dict | None = None, pid: int | None = None) -> None:
        self.engine = engine
        self.storage = EngineStorage(engine)
        self.database = database or getattr(getattr(engine, "database", None), "name", "postgres")
        self.user = user or getattr(getattr(engine, "role", None), "name", "postgres")
        if settings is None:
            settings = getattr(engine, "settings", None)
        if settings is None:
            settings = GucSettings()
        self.settings = settings
        self.pid = pid if pid is not None else getattr(engine, "pid", 0)
        self.startup_params = dict(params or {})
        self.env = SessionEnv(self)
        self.storage.enum_loader = self.env.user_types
        self.prepared: dict[str, Prepared] = {}
        self.portals: dict[str, Portal] = {}
        self.plan_cache: OrderedDict[tuple, Prepared] = OrderedDict()
        self._rowdescs: dict[tuple, tuple] = {}
        self._encs: dict[tuple, tuple] = {}
        self.failed = False             # explicit block aborted by an error
        self.skip_until_sync = False
        self.cancel_requested = False
        self.closed = False
        self.copy_in_progress = False
        self._copy: Any = None
        self._pending: list[RawStmt] = []
        self._fast: Any = None
        self._out: list = []
        self._reported: dict[str, str] = {}
        self._param_changes: list[tuple[str, str]] = []
        self.cursors: dict[str, Cursor] = {}         # DECLAREd cursors
        self.sql_prepared: dict[str, Prepared] = {}
        self.listening: set[str] = set()
        self._apply_startup_params()
        self._profile = None
        if os.environ.get("PGBUNDLE_SQL_PROFILE"):
            import cProfile
            self._profile = cProfile.Profile()
            self._profile.enable()
        try:
            self.settings.on_change.append(self._on_setting_change)
        except AttributeError:
            pass

    # ------------------------------------------------------------------ startup

    def _apply_startup_params(self) -> None:
        for k, v in self.startup_params.items():
            if k in ("user", "database", "replication", "options"):
                continue
            if k == "client_encoding":
                v = v.strip("'\"")
                if v.lower().replace("-", "") in ("utf8", "unicode"):
                    v = "UTF8"
            try:
                self.settings.set(k, v, source="client")
            except PgError:
                pass
            except Exception:
                pass

    def _on_setting_change(self, name: str, value: Any) -> None:
        reported = getattr(guc, "REPORTED", ())
        if name == "*":
            names = list(reported)
        else:
            names = [n for n in reported if n.lower() == name.lower()]
        for n in names:
            try:
                v = self.settings.get(n)
            except PgError:
                continue
            self._param_changes.append((n, v))

    def startup_messages(self) -> list:
        try:
            pairs = self.settings.reported()
        except Exception:
            pairs = []
        for n, v in pairs:
            self._reported[n] = v
        return [M.ParameterStatus(n, v) for n, v in pairs]

    @property
    def transaction_status(self) -> str:
        if self.failed:
            return "E"
        try:
            return "T" if self.engine.in_transaction_block else "I"
        except Exception:
            return "I"

    # ------------------------------------------------------------------ helpers

    def cancel(self) -> None:
        self.cancel_requested = True

    def check_interrupts(self) -> None:
        if self.cancel_requested:
            self.cancel_requested = False
            raise QueryCanceled()
        chk = getattr(self.engine, "check_for_interrupts", None)
        if chk is not None:
            chk()

    def _drain(self, out: list) -> None:
        notices = getattr(self.engine, "notices", None)
        if notices:
            for n in list(notices):
                f = PgError(n.sqlstate, n.message, n.detail, n.hint, severity=n.severity).fields()
                out.append(M.NoticeResponse(f))
            notices.clear()
        if self._param_changes:
            for n, v in self._param_changes:
                if self._reported.get(n) != v:
                    self._reported[n] = v
                    out.append(M.ParameterStatus(n, v))
            self._param_changes.clear()

    def notice(self, message: str, sqlstate: str = "00000", severity: str = "NOTICE", detail: str | None = None,
               hint: str | None = None) -> None:
        self._out.append(M.NoticeResponse(PgError(sqlstate, message, detail, hint, severity=severity).fields()))

    def _error(self, e: BaseException, out: list) -> None:
        if isinstance(e, InvalidValue):
            e = PgError(e.sqlstate, e.message)
        if not isinstance(e, PgError):
            log.exception("internal error in statement")
            e = PgError("XX000", f"internal error: {type(e).__name__}: {e}")
        self._drain(out)
        out.append(M.ErrorResponse(e.fields()))
        if e.severity == "FATAL":
            self.closed = True
        self._abort_after_error()

    def _abort_after_error(self) -> None:
        try:
            in_block = self.engine.in_transaction_block
        except Exception:
            in_block = False
        if in_block:
            self.failed = True
        else:
            try:
                self.engine.rollback()
            except Exception:
                log.exception("rollback after error failed")
            self._end_xact()

    def _end_xact(self) -> None:
        self.env.end_xact()
        if self.cursors:
            for k in [k for k, v in self.cursors.items() if not v.hold]:
                del self.cursors[k]
        try:
            self.settings.end_transaction()
        except AttributeError:
            pass

    def _finish_implicit(self) -> None:
        """End the implicit transaction at the end of a simple query / at Sync."""
        try:
            if not self.engine.in_transaction_block and self.engine.in_transaction:
                self.engine.commit()
                self._end_xact()
        except PgError:
            self.engine.rollback()
            self._end_xact()
            raise

    # ------------------------------------------------------------------ statement preparation

    def prepare(self, text: str, raw: RawStmt | None, declared: tuple = ()) -> Prepared:
        """Analyse and plan one statement (cached by text and declared types)."""
        key = (text, tuple(declared))
        hit = self.plan_cache.get(key)
        if hit is not None and self._valid(hit):
            self.plan_cache.move_to_end(key)
            return hit
        prep = self._prepare(text, raw, declared)
        if prep.plan is not None:
            self.plan_cache[key] = prep
            if len(self.plan_cache) > PLAN_CACHE_SIZE:
                self.plan_cache.popitem(last=False)
        return prep

    def _valid(self, prep: Prepared) -> bool:
        for schema, name, rel in prep.deps:
            cur = self.storage.lookup_relation(schema, name)
            if cur is None or cur is not rel:
                return False
        return True

    def _prepare(self, text: str, raw: RawStmt | None, declared: tuple) -> Prepared:
        if raw is None:
            return Prepared(text, None, list(declared), None, declared=declared)
        if raw.kind in PLANNABLE:
            pt = ParamTypes(declared)
            an = Analyzer(self.env, pt)
            q = an.analyze(raw.kind, raw.node)
            cols = [Column(t.name, t.expr.type if t.expr.type != T.UNKNOWN else T.TEXT, t.expr.typmod,
                           t.table_oid, t.attnum) for t in output_columns(q)]
            plan: PlanNode | DMLPlan
            if q.kind in ("select", "setop"):
                plan = Planner(self.env).plan_select(q)
            else:
                plan = DMLPlan(self.env, q)
            prep = Prepared(text, raw, pt.final(), cols if (q.kind in ("select", "setop") or q.returning) else None,
                            plan, _collect_deps(q), declared)
            prep.utility = q.kind
            return prep
        pt = ParamTypes(declared)
        return Prepared(text, raw, pt.final(), describe_utility(self, raw), None, [], declared)

    # ------------------------------------------------------------------ running a statement

    def _start_statement(self, raw: RawStmt | None) -> None:
        if self.failed:
            if raw is not None and raw.kind == "TransactionStmt" and raw.node.get("kind") in (
                    "TRANS_STMT_ROLLBACK", "TRANS_STMT_COMMIT", "TRANS_STMT_ROLLBACK_TO", "TRANS_STMT_PREPARE"):
                return
            raise PgError("25P02", "current transaction is aborted, commands ignored until end of transaction block")
        self.cancel_requested = False

    def _begin_command(self, raw: RawStmt | None) -> None:
        """Start the engine statement (and the implicit transaction) for ``raw``."""
        if raw is None or raw.kind in NO_XACT or self.failed:
            return
        new = not self.engine.in_transaction
        self.storage.start_command()
        self.env.start_statement(new)

    def _run(self, prep: Prepared, params: list) -> StatementResult:
        raw = prep.raw
        if raw is None:
            return StatementResult("")
        if prep.plan is None:
            return run_utility(self, raw, prep, params)
        st = ExecState(params, self.env, self.storage, self)
        if isinstance(prep.plan, DMLPlan):
            rows = list(prep.plan.rows(st, None))
            count = st.extra[("dmlcount", id(prep.plan))]
            kind = prep.plan.q.kind
            tag = f"INSERT 0 {count}" if kind == "insert" else f"{kind.upper()} {count}"
            return StatementResult(tag, prep.columns, rows if prep.columns else None)
        return StatementResult("SELECT", prep.columns, prep.plan.rows(st, None), count_rows=True)

    def _after_statement(self) -> None:
        try:
            self.engine.end_statement()
        except Exception:
            pass

    # ------------------------------------------------------------------ encoding

    def _row_description(self, cols: list[Column], formats: list[int]) -> M.RowDescription:
        """The RowDescription of ``cols``; the same object again for the same column list
        (a prepared statement's, kept alive by the cache entry) and formats."""
        key = (id(cols), tuple(formats))
        hit = self._rowdescs.get(key)
        if hit is not None and hit[0] is cols:
            return hit[1]
        rd = self._make_row_description(cols, formats)
        if len(self._rowdescs) >= PLAN_CACHE_SIZE:
            self._rowdescs.clear()
        self._rowdescs[key] = (cols, rd)
        return rd

    def _make_row_description(self, cols: list[Column], formats: list[int]) -> M.RowDescription:
        fields = []
        for i, c in enumerate(cols):
            ti = TYPES.get(c.type_oid)
            size = ti.typlen if ti is not None else -1
            if size == -2:
                size = -2
            fields.append(M.FieldDescription(c.name, c.table_oid, c.attnum, c.type_oid, size, c.typmod,
                                             _fmt_at(formats, i)))
        return M.RowDescription(tuple(fields))

    def _encoders(self, cols: list[Column], formats: list[int]) -> list:
        """Value → wire bytes per column; the same list again for the same column list and
        formats when no column's output depends on the session (time zone, user types)."""
        key = (id(cols), tuple(formats))
        hit = self._encs.get(key)
        if hit is not None and hit[0] is cols:
            return hit[1]
        out = self._make_encoders(cols, formats)
        if all(c.type_oid < 16384 and c.type_oid != T.TIMESTAMPTZ and T.element_of(c.type_oid) != T.TIMESTAMPTZ
               for c in cols):
            if len(self._encs) >= PLAN_CACHE_SIZE:
                self._encs.clear()
            self._encs[key] = (cols, out)
        return out

    def _make_encoders(self, cols: list[Column], formats: list[int]) -> list:
        out = []
        for i, c in enumerate(cols):
            if _fmt_at(formats, i) == 1:
                enc = binary_encoder(c.type_oid)
                out.append(enc)
            else:
                if c.type_oid in (T.REGCLASS, T.REGTYPE, T.REGNAMESPACE, T.REGROLE, T.REGPROC):
                    f = _reg_text(self.env, c.type_oid)
                elif c.type_oid == T.TIMESTAMPTZ or (T.element_of(c.type_oid) == T.TIMESTAMPTZ):
                    f = _encoded(text_encoder(c.type_oid, self.env.tz))
                elif c.type_oid in (T.INT4, T.INT8, T.INT2, T.OID):
                    f = _int_text
                elif c.type_oid in (T.TEXT, T.VARCHAR, T.NAME, T.BPCHAR, T.UNKNOWN, T.CHAR):
                    f = str.encode
                elif c.type_oid >= 16384 and c.type_oid in self._enum_arrays():
                    f = _enum_array_text(text_encoder(T.TEXT_ARRAY))
                elif c.type_oid >= 16384:
                    f = _str_text
                else:
                    f = _encoded(text_encoder(c.type_oid))
                out.append(f)
        return out

    def _enum_arrays(self) -> set[int]:
        return {v[2].get("_array") for v in self.env.user_types().values()}

    def _decode_params(self, types: list[int], formats: tuple, values: tuple) -> list:
        n = len(values)
        if n != len(types):
            raise PgError("08P01", f"bind message supplies {n} parameters, but prepared statement \"\" "
                                   f"requires {len(types)}")
        out: list[Any] = []
        for i, v in enumerate(values):
            if v is None:
                out.append(None)
                continue
            t = types[i]
            fmt = _fmt_at(formats, i)
            val: Any
            try:
                if fmt == 1:
                    if t in (T.INT2, T.INT4, T.INT8):
                        val = LENIENT_INT_DECODER(v)
                    else:
                        val = binary_decoder(t)(v)
                else:
                    s = bytes(v).decode()
                    if self.env.is_enum(t):
                        val = self.env.enum_input(t)(s)
                    elif t in (T.REGCLASS, T.REGTYPE, T.REGNAMESPACE, T.REGROLE):
                        val = self.env.reg_in(t, s)
                    elif t == T.TIMESTAMPTZ:
                        val = text_decoder(t, self.env.tz)(s)
                    else:
                        val = text_decoder(t)(s)
            except InvalidValue as e:
                raise PgError(e.sqlstate, e.message) from None
            except UnicodeDecodeError:
                raise PgError("22021", 'invalid byte sequence for encoding "UTF8"') from None
            out.append(val)
        return out

    # ------------------------------------------------------------------ simple query

    def simple_query(self, sql: str) -> list:
        out: list = []
        self._out = out
        if not self.failed and len(sql) < 8192:
            fast = self._literal_form(sql)
            if fast is not None:
                self._fast = fast
                self._pending = [RawStmt(fast[0].kind, fast[0].node, sql, 0)]
                return self._continue_simple(out)
        try:
            stmts = parse(sql)
        except PgError as e:
            self._error(e, out)
            out.append(M.ReadyForQuery(self.transaction_status))
            return out
        if not stmts:
            out.append(M.EmptyQueryResponse())
            out.append(M.ReadyForQuery(self.transaction_status))
            return out
        self._pending = list(stmts)
        return self._continue_simple(out)

    def _literal_form(self, sql: str) -> Any:
        """(normalised statement, literal types, values) when ``sql`` is one
        plannable statement whose literal-free form parses (see :mod:`.literals`)."""
        ext = literals.extract(sql)
        if ext is None:
            return None
        norm, types, values = ext
        try:
            nst = parse(norm)
        except PgError:
            return None
        if len(nst) == 1 and nst[0].kind in PLANNABLE:
            return (nst[0], types, values)
        return None

    def _continue_simple(self, out: list) -> list:
        self._out = out
        while self._pending:
            raw = self._pending.pop(0)
            fast, self._fast = self._fast, None
            try:
                self._start_statement(raw)
                self._begin_command(raw)
                prep: Prepared | None = None
                params: list = []
                if fast is not None:
                    try:
                        prep = self.prepare(fast[0].text, fast[0], fast[1])
                        params = self._literal_params(prep, fast[1], fast[2])
                    except PgError:
                        prep = None
                        raw = parse(raw.text)[0]
                if prep is None:
                    prep = self.prepare(raw.text, raw)
                    params = []
                res = self._run(prep, params)
                if isinstance(res, CopyIn):
                    self._copy = res
                    self.copy_in_progress = True
                    self._drain(out)
                    out.append(res.response)
                    return out
                if res.columns is not None:
                    out.append(self._row_description(res.columns, []))
                    enc = self._encoders(res.columns, [])
                    n = 0
                    check = self.check_interrupts
                    for row in res.rows:
                        out.append(M.DataRow(tuple([None if v is None else e(v) for e, v in zip(enc, row)])))
                        n += 1
                        if n & 1023 == 0:
                            check()
                    tag = f"SELECT {n}" if res.count_rows else res.tag
                else:
                    if res.rows is not None:
                        out.extend(res.rows)
                    tag = res.tag
                self._after_statement()
                self._drain(out)
                if tag:
                    out.append(M.CommandComplete(tag))
            except BaseException as e:  # noqa: BLE001 - every error goes to the client
                if isinstance(e, (KeyboardInterrupt, SystemExit)):
                    raise
                self._pending = []
                self._error(e, out)
                break
        else:
            try:
                self._finish_implicit()
            except PgError as e:
                self._error(e, out)
        self._drain(out)
        out.append(M.ReadyForQuery(self.transaction_status))
        return out

    def _literal_params(self, prep: Prepared, types: tuple, values: list) -> list:
        out = list(values)
        for i, t in enumerate(types):
            if t == T.UNKNOWN:
                ft = prep.param_types[i]
                if ft not in (T.TEXT, T.VARCHAR, T.UNKNOWN):
                    out[i] = self._decode_params([ft], (0,), (values[i].encode(),))[0]
        return out

    # ------------------------------------------------------------------ COPY FROM STDIN hand-off

    def copy_data(self, data: bytes) -> list:
        if self._copy is None:
            return []
        try:
            self._copy.feed(data)
        except BaseException as e:  # noqa: BLE001
            self._copy.error = e
        return []

    def copy_done(self) -> list:
        out: list = []
        self._out = out
        cp = self._copy
        self._copy = None
        self.copy_in_progress = False
        if cp is None:
            return out
        try:
            if cp.error is not None:
                raise cp.error
            n = cp.finish()
            self._after_statement()
            self._drain(out)
            out.append(M.CommandComplete(f"COPY {n}"))
        except BaseException as e:  # noqa: BLE001
            self._pending = []
            self._error(e, out)
            self._drain(out)
            out.append(M.ReadyForQuery(self.transaction_status))
            return out
        return self._continue_simple(out)

    def copy_fail(self, message: str) -> list:
        out: list = []
        self._copy = None
        self.copy_in_progress = False
        self._pending = []
        self._error(PgError("57014", f"COPY from stdin failed: {message}"), out)
        out.append(M.ReadyForQuery(self.transaction_status))
        return out

    # ------------------------------------------------------------------ extended protocol

    def parse(self, name: str, query: str, param_types: tuple = ()) -> list:
        if self.skip_until_sync:
            return []
        out: list = []
        self._out = out
        try:
            if name and name in self.prepared:
                raise PgError("42P05", f'prepared statement "{name}" already exists')
            stmts = parse(query)
            if len(stmts) > 1:
                raise PgError("42601", "cannot insert multiple commands into a prepared statement")
            raw = stmts[0] if stmts else None
            if raw is not None and self.failed and not (raw.kind == "TransactionStmt" and raw.node.get("kind") in (
                    "TRANS_STMT_ROLLBACK", "TRANS_STMT_COMMIT", "TRANS_STMT_ROLLBACK_TO")):
                raise PgError("25P02", "current transaction is aborted, commands ignored until end of transaction "
                                       "block")
            self._begin_command(raw)
            prep = self.prepare(query, raw, tuple(param_types))
            self.prepared[name] = prep
            self._drain(out)
            out.append(M.ParseComplete())
        except BaseException as e:  # noqa: BLE001
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            self._error(e, out)
            self.skip_until_sync = True
        return out

    def bind(self, portal: str, statement: str, param_formats: tuple = (), params: tuple = (),
             result_formats: tuple = ()) -> list:
        if self.skip_until_sync:
            return []
        out: list = []
        self._out = out
        try:
            prep = self.prepared.get(statement)
            if prep is None:
                raise PgError("26000", f'prepared statement "{statement}" does not exist')
            if self.failed and not (prep.raw is not None and prep.raw.kind == "TransactionStmt"):
                raise PgError("25P02", "current transaction is aborted, commands ignored until end of transaction "
                                       "block")
            if prep.plan is not None and not self._valid(prep):
                prep = self._prepare(prep.text, prep.raw, prep.declared)
                self.prepared[statement] = prep
            if len(params) != len(prep.param_types):
                raise PgError("08P01", f'bind message supplies {len(params)} parameters, but prepared statement '
                                       f'"{statement}" requires {len(prep.param_types)}')
            vals = self._decode_params(prep.param_types, param_formats, params)
            self.portals[portal] = Portal(prep, vals, list(result_formats))
            out.append(M.BindComplete())
        except BaseException as e:  # noqa: BLE001
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            self._error(e, out)
            self.skip_until_sync = True
        return out

    def describe(self, kind: str, name: str) -> list:
        if self.skip_until_sync:
            return []
        out: list = []
        try:
            if kind == "S":
                prep = self.prepared.get(name)
                if prep is None:
                    raise PgError("26000", f'prepared statement "{name}" does not exist')
                out.append(M.ParameterDescription(tuple(prep.param_types)))
                out.append(self._row_description(prep.columns, []) if prep.columns is not None else M.NoData())
            else:
                p = self.portals.get(name)
                if p is None and name in self.cursors:
                    cols = self.cursors[name].prep.columns
                    out.append(self._row_description(cols, []) if cols is not None else M.NoData())
                    return out
                if p is None:
                    raise PgError("34000", f'portal "{name}" does not exist')
                cols = p.prep.columns
                out.append(self._row_description(cols, p.formats) if cols is not None else M.NoData())
        except BaseException as e:  # noqa: BLE001
            self._error(e, out)
            self.skip_until_sync = True
        return out

    def portal_query(self, portal: str) -> str | None:
        """The text of the statement a portal runs (pg_stat_activity.query of an Execute), or
        None for an unknown portal (Execute then answers 34000 and the state keeps its query)."""
        p = self.portals.get(portal)
        return None if p is None else p.prep.text

    def execute(self, portal: str, max_rows: int = 0) -> list:
        if self.skip_until_sync:
            return []
        out: list = []
        self._out = out
        try:
            p = self.portals.get(portal)
            if p is None:
                raise PgError("34000", f'portal "{portal}" does not exist')
            if p.done:
                out.append(M.CommandComplete(p.tag))
                return out
            if p.rows is None:
                if p.prep.raw is None:
                    p.done = True
                    out.append(M.EmptyQueryResponse())
                    return out
                self._start_statement(p.prep.raw)
                self._begin_command(p.prep.raw)
                res = self._run(p.prep, p.params)
                if isinstance(res, CopyIn):
                    raise PgError("0A000", "COPY FROM STDIN is not supported in the extended protocol here")
                p.tag = res.tag
                if res.columns is None:
                    if res.rows is not None:
                        out.extend(res.rows)
                    self._after_statement()
                    self._drain(out)
                    p.done = True
                    out.append(M.CommandComplete(res.tag))
                    return out
                p.rows = iter(res.rows)
                p.encoders = self._encoders(res.columns, p.formats)
                p.count = 0
                p.count_rows = res.count_rows
            enc = p.encoders
            assert enc is not None              # set with p.rows when the portal started
            n = 0
            for row in p.rows:
                out.append(M.DataRow(tuple([None if v is None else e(v) for e, v in zip(enc, row)])))
                n += 1
                if max_rows and n >= max_rows:
                    p.count += n
                    out.append(M.PortalSuspended())
                    return out
                if n & 1023 == 0:
                    self.check_interrupts()
            p.count += n
            p.done = True
            p.tag = f"SELECT {p.count}" if p.count_rows else p.tag
            self._after_statement()
            self._drain(out)
            out.append(M.CommandComplete(p.tag))
        except BaseException as e:  # noqa: BLE001
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            self._error(e, out)
            self.skip_until_sync = True
        return out

    def close(self, kind: str, name: str) -> list:
        if self.skip_until_sync:
            return []
        if kind == "S":
            self.prepared.pop(name, None)
        else:
            self.portals.pop(name, None)
        return [M.CloseComplete()]

    def sync(self) -> list:
        out: list = []
        self._out = out
        if not self.skip_until_sync:
            try:
                self._finish_implicit()
            except PgError as e:
                self._error(e, out)
        self.skip_until_sync = False
        self.portals.pop("", None)
        self._drain(out)
        out.append(M.ReadyForQuery(self.transaction_status))
        return out

    def flush(self) -> list:
        return []

    def terminate(self) -> None:
        if self._profile is not None:
            self._profile.disable()
            self._profile.dump_stats(f"{os.environ['PGBUNDLE_SQL_PROFILE']}.{os.getpid()}")
            self._profile = None
        try:
            if self.engine.in_transaction:
                self.engine.rollback()
        except Exception:
            pass
        self.closed = True


def _fmt_at(formats: list | tuple, i: int) -> int:
    if not formats:
        return 0
    if len(formats) == 1:
        return formats[0]
    return formats[i] if i < len(formats) else 0


def _int_text(v: int) -> bytes:
    return str(v).encode()


def _str_text(v: Any) -> bytes:
    return str(v).encode()


def _encoded(enc: Callable[[Any], str]) -> Callable[[Any], bytes]:
    """A text encoder whose output goes on the wire as UTF-8 bytes."""
    def f(v: Any) -> bytes:
        return enc(v).encode()
    return f


def _enum_array_text(enc: Callable[[Any], str]) -> Callable[[Any], bytes]:
    def f(v: Any) -> bytes:
        return enc([None if x is None else str(x) for x in v]).encode()
    return f


def _reg_text(env: Any, typ: int) -> Callable[[Any], bytes]:
    """regclass/regtype/... output, looked up in the session's catalog at output time."""
    def f(v: Any) -> bytes:
        return env.reg_out(typ, v).encode()
    return f


def _collect_deps(q: Any) -> list:
    deps = []
    seen = set()

    def visit(qq: Any) -> None:
        if qq is None:
            return
        for rte in qq.rtable:
            if rte.kind == "relation" and rte.rel is not None:
                k = rte.rel.oid
                if k not in seen:
                    seen.add(k)
                    deps.append((rte.rel.schema, rte.rel.name, rte.rel))
            if rte.query is not None:
                visit(rte.query)
        for c in qq.ctes:
            visit(c.query)
        visit(qq.larg)
        visit(qq.rarg)
        visit(qq.source)
        if qq.target is not None and qq.target.oid not in seen:
            seen.add(qq.target.oid)
            deps.append((qq.target.schema, qq.target.name, qq.target))
        # sublinks
        exprs = [t.expr for t in qq.targets] + [t.expr for t in qq.returning]
        if qq.where is not None:
            exprs.append(qq.where)
        if qq.having is not None:
            exprs.append(qq.having)
        for e in exprs:
            for n in walk(e):
                if isinstance(n, SubLink):
                    visit(n.query)
    visit(q)
    return deps
