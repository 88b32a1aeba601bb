"""Session semantics in transaction (and statement) mode: the request side.

:func:`build_batch` turns what a client sent into what its current server
connection receives, and queues the :class:`.ops.Op` records that let the relay
match replies (:mod:`.ops`):

* named prepared statements are mapped to shared server-side statements
  (:mod:`.prepare`): a Parse the server already holds is answered by the pooler,
  a Bind/Describe of a statement the server lacks gets the pooler's Parse first,
  Close only forgets the client's name;
* SQL-level PREPARE/EXECUTE/DEALLOCATE use per-client names on the server, and
  the client's PREPARE is replayed where it is missing;
* texts that change session state (SET, RESET, set_config, DISCARD, LISTEN,
  advisory locks, temp tables, WITH HOLD cursors; see :mod:`.sqlscan`) leave
  work for the end of the transaction: read the settings back from the server,
  check whether the server must stay pinned to the client.

:func:`after_transaction` builds that end-of-transaction query and applies its
answer.  Everything here is synchronous: no await between deciding and queuing.

What a client's emulation remembers (its prepared statements, the pin, the
end-of-transaction to-do) is one :class:`EmulationState` per client
(``Client.emu``), assigned only here.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

from pgbundle.shared import sqlstate
from pgbundle.shared.protocol import PASS, RemoteProtocolError, encode, messages as m
from pgbundle.shared.protocol.states import TransactionStatus
from pgbundle.shared.quoting import quote_literal

from . import ops as O, sqlscan
from .prepare import Statement, bind_statement, kind_and_name, parse_parse, rename_bind

if TYPE_CHECKING:
    from .client import Client
    from .replan import Retry
    from .server import Server

_Q, _P, _B, _D, _E, _C, _S, _H, _F, _X = (ord(c) for c in "QPBDECSHFX")
_PARSE_COMPLETE = encode(m.ParseComplete())
_CLOSE_COMPLETE = encode(m.CloseComplete())
_READY_IDLE = encode(m.ReadyForQuery(TransactionStatus.IDLE.char))
#: Parameters PostgreSQL reports with ParameterStatus; everything else is read back.
from .varcache import REPORTED, canonical  # noqa: E402

_REPORTED_LOWER = {n.lower() for n in REPORTED}
#: What the end-of-transaction query asked: the settings read back, RESET ALL seen, the pin check.
AfterAsked = tuple[Sequence[str], bool, bool]

PIN_CHECK_SQL = (
    "(SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND granted"
    " AND pid = pg_catalog.pg_backend_pid())"
    " + (SELECT count(*) FROM pg_catalog.pg_class WHERE relnamespace = pg_catalog.pg_my_temp_schema())"
    " + (SELECT count(*) FROM pg_catalog.pg_cursors WHERE is_holdable)"
)


class EmulationState:
    """One client's session emulation (``Client.emu``): only this module assigns its fields;
    the rest of the pooler reads them or calls the functions here."""

    __slots__ = ("pinned", "prepared", "sql_prepared", "readback", "reset_all", "pin_check", "unlisten_server",
                 "skip_until_sync", "pending_listens", "after")

    def __init__(self) -> None:
        self.pinned: str | None = None  # why the server stays with this client, if it does
        self.prepared: dict[str, Statement] = {}  # protocol-level statement name -> prepare.Statement
        self.sql_prepared: dict[str, str] = {}  # SQL-level PREPARE name -> PREPARE text to replay
        self.readback: set[str] = set()  # settings to read back when the transaction ends
        self.reset_all = False  # RESET ALL / DISCARD ALL seen: the settings go back to the startup ones
        self.pin_check = False  # something may pin the session: check when the transaction ends
        self.unlisten_server = False  # the server ran LISTEN: UNLISTEN * when the transaction ends
        self.skip_until_sync = False  # the pooler reported an error: the client's messages up to Sync are dropped
        self.pending_listens: list[str] = []  # channels the relay subscribes before sending their LISTEN
        self.after: AfterAsked = ((), False, False)  # what the end-of-transaction query asked

    def next_listen(self) -> str | None:
        """The next channel to subscribe before the batch goes out (taken off the list), or None."""
        return self.pending_listens.pop(0) if self.pending_listens else None


class Batch:
    """What one chunk of client bytes becomes."""

    __slots__ = ("out", "ops", "precise", "nsync", "ext", "terminate")

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.ops: list[O.Op] = []
        self.precise = False  # holds FAKE or SKIP ops: replies must be matched
        self.nsync = 0  # ReadyForQuery replies the client will get
        self.ext = -1  # -1 no extended message; 0 synced; 1 extended messages after the last Sync
        self.terminate = False


def local_reply(client: Client, pieces: list[tuple[int, bytes]]) -> bytes | None:
    """Answer a client that has no server, when it only prepares statements some server has
    already accepted, closes statements, syncs or flushes; None when a server is needed.

    This keeps clients that prepare synchronously between transactions (pgbench -M prepared)
    from waiting for a server they do not need.
    """
    try:
        return _local(client, pieces)
    except (ValueError, IndexError, struct.error):
        return None  # malformed: let build_batch report it


def _local(client: Client, pieces: list[tuple[int, bytes]]) -> bytes | None:
    replies = []
    names: list[tuple[str, Statement]] = []
    closes: list[str] = []
    if not client.pooler.config.settings.max_prepared_statements:
        return None  # tracking is off: every message goes to a server
    cache = client.pooler.statements
    prepared = client.emu.prepared
    for t, p in pieces:
        if t == _P:
            name, query, types = parse_parse(p)
            if not name or name in prepared or any(n == name for n, _ in names):
                return None
            st = cache.peek(query, types)
            if st is None or not st.validated:
                return None
            names.append((name, st))
            replies.append(_PARSE_COMPLETE)
        elif t == _C:
            kind, name = kind_and_name(p)
            if kind != "S" or not name:
                return None
            closes.append(name)
            replies.append(_CLOSE_COMPLETE)
        elif t == _S:
            replies.append(_READY_IDLE)
        elif t == _H:
            continue
        else:
            return None
    if not replies or replies[-1] != _READY_IDLE:
        return None  # without a Sync the client may go on with a Bind: use a server
    pool = client.pool
    assert pool is not None  # logged in
    for name, st in names:
        prepared[name] = st
        pool.stats.client_parse_count += 1
    for name in closes:
        prepared.pop(name, None)
    return b"".join(replies)


def build_batch(client: Client, server: Server, pieces: list[tuple[int, bytes]]) -> Batch:
    """See the module docstring.  Errors: RemoteProtocolError for a malformed message (08P01)."""
    try:
        return _build(client, server, pieces)
    except (ValueError, IndexError, struct.error):
        raise RemoteProtocolError("invalid message format") from None


def _build(client: Client, server: Server, pieces: list[tuple[int, bytes]]) -> Batch:
    stats = server.pool.stats  # the client's pool: it got the server from there
    emu = client.emu
    prepared = emu.prepared
    limit = client.pooler.config.settings.max_prepared_statements
    if not limit:
        prepared = {}  # 0 turns the tracking off: the client's own names reach the server (pgbouncer)
    b = Batch()
    out = b.out
    ops = b.ops
    bound: tuple[Statement, bytes, int] | None = None  # the last Bind of a shared statement, where it went
    server.retry = None  # a new request: whatever came before is no longer the only one outstanding
    if server.statements_stale and server.conv.status is not TransactionStatus.FAILED:
        # a statement went stale and could not be renewed: start afresh (not in a failed
        # transaction, which would refuse it: then at the first request after it ends)
        server.statements_stale = False
        _internal(b, "DEALLOCATE ALL")
        server.statements.clear()
    for t, p in pieces:
        if t == PASS:
            out.append(p)
            continue
        if emu.skip_until_sync and t != _S:
            continue  # the pooler reported an error for this batch: the rest is ignored, as PostgreSQL would
        if t == _Q:
            text = p[5:-1].decode("utf-8", "surrogateescape")
            if sqlscan.quick_check(text):
                p = _query_effects(client, server, b, text, p)
            ops.append(O.Op(O.QUERY))
            out.append(p)
            b.nsync += 1
            b.ext = 0
            stats.query_count += 1
        elif t == _P:
            _parse(client, server, b, p, limit)
            b.ext = 1
        elif t == _B:
            stmt = bind_statement(p)
            if stmt:
                st = prepared.get(stmt)
                if st is not None:
                    held = _ensure(server, st, b, limit)
                    bound = (st, p, len(out) + 1) if held else None
                    p = rename_bind(p, st.server_name)[1]
            stats.bind_count += 1
            ops.append(O.Op(O.BIND))
            out.append(p)
            b.ext = 1
        elif t == _D:
            kind, name = kind_and_name(p)
            if kind == "S":
                st = prepared.get(name) if name else None
                if st is not None:
                    _ensure(server, st, b, limit)
                    p = encode(m.Describe("S", st.server_name))
                ops.append(O.Op(O.DESCRIBE_S))
            else:
                ops.append(O.Op(O.DESCRIBE_P))
            out.append(p)
            b.ext = 1
        elif t == _E:
            ops.append(O.Op(O.EXECUTE))
            out.append(p)
            b.ext = 1
            stats.query_count += 1
        elif t == _C:
            kind, name = kind_and_name(p)
            if kind == "S" and name and name in prepared:
                st = prepared.pop(name)  # the server keeps the shared statement
                ops.append(O.Op(O.CLOSE, O.FAKE, _CLOSE_COMPLETE,
                                undo=partial(prepared.__setitem__, name, st)))
                b.precise = True
            else:
                ops.append(O.Op(O.CLOSE))
                out.append(p)
            b.ext = 1
        elif t == _S:
            emu.skip_until_sync = False
            ops.append(O.Op(O.SYNC))
            out.append(p)
            b.nsync += 1
            b.ext = 0
        elif t == _H:
            out.append(p)
        elif t == _F:
            ops.append(O.Op(O.FUNC))
            out.append(p)
            b.nsync += 1
            b.ext = 0
        elif t == _X:
            b.terminate = True
            break
        else:
            out.append(p)
    if bound is not None and b.nsync == 1 and b.ext == 0 and not server.conv.busy and not server.conv.ops:
        server.retry = (ops, *bound, out)  # replan.candidate() looks closer only if the server refuses it
    return b


def _parse(client: Client, server: Server, b: Batch, p: bytes, limit: int) -> None:
    name, query, types = parse_parse(p)
    stats = server.pool.stats
    stats.client_parse_count += 1
    emu = client.emu
    prepared = emu.prepared
    if sqlscan.quick_check(query):
        eff, _ = sqlscan.scan(query)
        if eff is not None:
            _note(client, eff)
    if not name or not limit:  # unnamed, or tracking off: the Parse goes as it is
        b.ops.append(O.Op(O.PARSE))
        b.out.append(p)
        stats.server_parse_count += 1
        return
    if name in prepared:
        err = encode(m.ErrorResponse(sqlstate.error_fields(
            sqlstate.DUPLICATE_PREPARED_STATEMENT, f'prepared statement "{name}" already exists')))
        b.ops.append(O.Op(O.PARSE, O.FAKE, err))
        b.precise = True
        emu.skip_until_sync = True
        return
    st = client.pooler.statements.get(query, types)
    prepared[name] = st

    def unname() -> None:  # the Parse was skipped after an error: the client holds no such statement
        if prepared.get(name) is st:
            del prepared[name]

    if server.statements.has(st):
        b.ops.append(O.Op(O.PARSE, O.FAKE, _PARSE_COMPLETE, undo=unname))
        b.precise = True
        return
    _evict(server, st, b, limit)

    def undo() -> None:  # the server refused or skipped it: neither it nor the client holds the statement
        server.statements.forget(st)
        unname()

    b.ops.append(O.Op(O.PARSE, stmt=st, undo=undo))
    b.out.append(st.parse_bytes)
    b.precise = True  # replies are matched until the server confirms the statement
    stats.server_parse_count += 1


def _ensure(server: Server, st: Statement, b: Batch, limit: int) -> bool:
    """Make sure ``server`` holds ``st`` before a Bind/Describe uses it; True when it already did."""
    if server.statements.has(st):
        return True
    _evict(server, st, b, limit)
    b.ops.append(O.Op(O.PARSE, O.SKIP, forward_errors=True, stmt=st,
                      undo=lambda: server.statements.forget(st)))
    b.out.append(st.parse_bytes)
    b.precise = True
    server.pool.stats.server_parse_count += 1
    return False


def rebuild(client: Client, server: Server, retry: Retry) -> Batch:
    """A request refused for a stale shared statement (:mod:`.replan`), built again: Close of the
    stale copy, the statement renewed and prepared under its new name (as :func:`_ensure` does),
    the client's Bind renamed, then the rest of the request as it was."""
    st = retry.st
    b = Batch()
    b.ops.append(O.Op(O.CLOSE, O.SKIP))
    b.out.append(encode(m.Close("S", st.server_name)))
    server.statements.forget(st)
    client.pooler.statements.renew(st)
    _ensure(server, st, b, client.pooler.config.settings.max_prepared_statements)
    b.ops.append(O.Op(O.BIND))
    b.out.append(rename_bind(retry.bind, st.server_name)[1])
    b.ops.extend(O.Op(k) for k in retry.kinds)
    b.out.append(retry.rest)
    return b


def _evict(server: Server, st: Statement, b: Batch, limit: int) -> None:
    """Record ``st`` on ``server`` and close what falls out of its LRU; a Close the server skips
    (an error before it in the pipeline) puts its statement back (:meth:`.prepare.ServerStatements.kept`)."""
    statements = server.statements
    for old in statements.add(st, limit):
        b.ops.append(O.Op(O.CLOSE, O.SKIP, undo=partial(statements.kept, old)))
        b.out.append(encode(m.Close("S", old)))


def _query_effects(client: Client, server: Server, b: Batch, text: str, p: bytes) -> bytes:
    """Handle a simple Query that changes session state; returns the Query to send."""
    sql_names = server.statements.sql
    emu = client.emu
    prepared, sql_prepared = emu.prepared, emu.sql_prepared

    def rename(name: str) -> str | None:
        """The server-side name of a SQL-level statement; None for a protocol-level one."""
        if name in prepared and name not in sql_prepared:
            return None
        return f"pgbundle_{client.id}_{name}"

    eff, new_text = sqlscan.scan(text, rename)
    if eff is None:
        return p
    # Replay the client's PREPARE where EXECUTE/DEALLOCATE needs it; drop a stale one before PREPARE.
    for name in eff.executes + eff.deallocates:
        srv_name = rename(name)  # None: a protocol-level name, never in sql_prepared
        if srv_name is not None and srv_name not in sql_names and name in sql_prepared:
            _internal(b, sql_prepared[name])
            sql_names[srv_name] = None
    for name in eff.prepares:
        srv_name = rename(name)
        if srv_name is not None and srv_name in sql_names and name not in sql_prepared:
            _internal(b, f'DEALLOCATE "{srv_name}"')
            del sql_names[srv_name]
    for name in eff.prepares:
        # the PREPARE text to replay elsewhere: this statement alone, renamed
        srv_name = rename(name)
        # (PREPARE of a name the client holds as a protocol-level statement is not handled:
        # it fails here as an internal error, as it always has)
        assert srv_name is not None
        stmt_text = _single(new_text, srv_name)
        sql_prepared[name] = stmt_text
        sql_names[srv_name] = None
    for name in eff.deallocates:
        sql_prepared.pop(name, None)
        srv_name = rename(name)  # never None: sqlscan puts protocol-level names in deallocates_protocol
        if srv_name is not None:
            sql_names.pop(srv_name, None)
    for name in eff.deallocates_protocol:
        prepared.pop(name, None)
    if eff.deallocate_all:
        sql_prepared.clear()
        prepared.clear()
    if eff.deallocate_all or eff.deallocates_protocol:
        server.statements.clear()  # the server runs DEALLOCATE ALL: the others prepare again
    _note(client, eff)
    if eff.discard_all:
        server.statements.clear()
    if new_text != text:
        return encode(m.Query(new_text))
    return p


def _single(text: str, srv_name: str) -> str:
    """The PREPARE statement for ``srv_name`` out of a (possibly multi-statement) text."""
    import pglast

    for stmt in pglast.parser.split(text):
        if srv_name in stmt and stmt.lstrip()[:7].upper() == "PREPARE":
            return stmt
    return text


def _internal(b: Batch, sql: str) -> None:
    b.ops.append(O.Op(O.QUERY, O.SKIP, sink=O.Sink(), forward_errors=False))
    b.out.append(encode(m.Query(sql)))
    b.precise = True


def _note(client: Client, eff: sqlscan.Effects) -> None:
    """Remember what must be checked when the transaction ends."""
    emu = client.emu
    for name in eff.sets:
        if name not in _REPORTED_LOWER:
            emu.readback.add(name)
    if eff.reset_all:
        emu.reset_all = True
    if eff.pin_check:
        emu.pin_check = True
    if eff.pin_now and not emu.pinned:
        emu.pinned = eff.pin_now
    for ch in eff.listens:
        emu.pending_listens.append(ch)  # the relay subscribes before sending the LISTEN
        emu.unlisten_server = True
    for ch in eff.unlistens:
        client.pooler.listeners.unlisten(client, ch)


# ----------------------------------------------------------------------------- end of transaction


def after_transaction(client: Client, server: Server) -> str | None:
    """The query to run on ``server`` now that the client's transaction ended, or None.

    What it asks is taken off the client's to-do (``readback``, ``reset_all``,
    ``pin_check``), so statements the client sends meanwhile leave their own work.
    A pgbundle server reports what pins its session (``Server.session_state``): that is
    taken as the client's pin, and no pin check is asked.
    """
    emu = client.emu
    session_state = server.session_state
    reported = session_state is not None  # the server reports pinning state itself
    if reported:
        emu.pinned = None if session_state == "clean" else f"session state: {session_state}"
    if not (emu.readback or emu.reset_all or emu.unlisten_server
            or (not reported and (emu.pin_check or emu.pinned))):
        emu.pin_check = False
        return None
    parts = []
    if emu.unlisten_server:
        parts.append("UNLISTEN *")
        emu.unlisten_server = False
    reset_all = emu.reset_all
    names = sorted(emu.readback | {k for k in client.vars.tracked if k.lower() not in _REPORTED_LOWER}) \
        if (emu.readback or reset_all) else []
    cols = []
    for name in names:
        cols.append(f"pg_catalog.current_setting({quote_literal(name)}, true)")
        cols.append(f"(SELECT reset_val FROM pg_catalog.pg_settings WHERE name = {quote_literal(name.lower())})")
    check_pin = bool(emu.pin_check or emu.pinned) and not reported
    if check_pin:
        cols.append(PIN_CHECK_SQL)
    if cols:
        parts.append("SELECT " + ", ".join(cols))
    emu.readback = set()
    emu.reset_all = False
    emu.pin_check = False
    emu.after = (names, reset_all, check_pin)
    return "; ".join(parts) if parts else None


def apply_after(client: Client, server: Server, sink: O.Sink, asked: AfterAsked) -> None:
    """Take the answer of :func:`after_transaction`'s query."""
    names, reset_all, check_pin = asked
    varcache = client.pooler.varcache
    if reset_all:
        # RESET ALL / DISCARD ALL: the session is back at its start; the server at its defaults
        varcache.session_reset(client, server)
    row = sink.rows[0] if sink.rows else None
    if row is not None and sink.error is None:
        for i, name in enumerate(names):
            v, d = row[2 * i], row[2 * i + 1]
            if v is not None:
                default = None if d is None else d.decode("utf-8", "surrogateescape")
                varcache.set_unreported(client, server, canonical(name), v.decode("utf-8", "surrogateescape"),
                                        default)
        if check_pin:
            n = row[2 * len(names)] if len(row) > 2 * len(names) else b"0"
            pinned = n not in (b"0", None)
            emu = client.emu
            if pinned and not emu.pinned:
                emu.pinned = "session state (advisory lock, temporary table or WITH HOLD cursor)"
                client.pooler.log_client(client, "pinned to its server: " + emu.pinned)
            elif not pinned and emu.pinned and not emu.pinned.startswith("set_config"):
                client.pooler.log_client(client, "unpinned")
                emu.pinned = None
    elif sink.error is not None and check_pin:
        client.emu.pinned = client.emu.pinned or "pin check failed: " + getattr(sink.error, "message", "?")
