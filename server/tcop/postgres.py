"""The backend process: one client connection, one database, ``trio.run`` of its own
(PostgreSQL's PostgresMain).

After startup (:mod:`.backend_startup`) the loop reads frontend messages and drives the
SQL layer's :class:`~pgbundle.server.tcop.session.Session`: a Query runs at once and its
answers are sent; Parse/Bind/Describe/Execute/Close answers are buffered until Sync or
Flush (pipelining); COPY FROM STDIN data is fed to the session until CopyDone/CopyFail.

Signals (PostgreSQL's): SIGINT cancels the running query (57014), SIGTERM ends the
session with FATAL 57P01, SIGQUIT makes the backend send 57P02 ('terminating connection
because of crash of another server process') — or 57P01 for an immediate shutdown — and
``_exit(2)`` at once.  A watcher task notices the postmaster's death (EOF on the
postmaster-alive pipe) and exits.  SIGUSR1 means a NOTIFY was published: the watcher wakes
the idle wait so that the notifications go out at once (:mod:`.async_notify`); every reply
that ends with ReadyForQuery passes through :class:`.session_report.BackendReport`
(notifications, ``pgbundle.session_state``, pg_stat_activity's client identity).  At
session end the backend stops listening and drops its temporary relations.

I/O: the client socket is a :class:`pgbundle.shared.netio.Conn` (non-blocking; answers go
straight into the socket when it has room, a trio wait only when nothing has arrived or
the socket is full, a checkpoint every few unblocked calls so that the watcher tasks run
even under a client that never lets the socket go empty) read and written whole messages
at a time through :class:`~pgbundle.shared.netio.MessageConn`.  A vanished client is
``EOFError`` (read) or :class:`~pgbundle.shared.netio.ConnectionLost` (write); the SIGQUIT
handler writes its last ErrorResponse with a plain ``os.write`` on the socket's descriptor.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
from typing import TYPE_CHECKING, Any, Protocol

import trio

from pgbundle.server.access import api
from pgbundle.server.access.engine import BackendEngine
from pgbundle.server.catalog import tempns
from pgbundle.server.errors import FatalError, PgError
from pgbundle.server.postmaster.launch import ChildContext, set_title
from pgbundle.server.storage import pmsignal
from pgbundle.server.storage.ipc import Env
from pgbundle.server.storage.procarray import ProcArray
from pgbundle.server.tcop import auth, backend_startup as BS, be_secure, interrupts
from pgbundle.server.tcop.async_notify import Notifier
from pgbundle.server.tcop.session import Session
from pgbundle.server.tcop.session_report import BackendReport
from pgbundle.server.utils import elog
from pgbundle.shared.netio import Conn, ConnectionLost, MessageConn
from pgbundle.shared.protocol import TransactionStatus, codec, messages as M
from pgbundle.shared.protocol.errors import ProtocolError
from pgbundle.shared.protocol.framing import NEED_DATA
from pgbundle.shared.sqlstate import error_fields

if TYPE_CHECKING:
    from pgbundle.server.storage.ipc import Env
    from pgbundle.server.utils.guc import GucSettings

_port: BS.Port | None = None  # the client connection, for the SIGQUIT handler's last word
_ctx: ChildContext | None = None

# Session.transaction_status is the ReadyForQuery status as a one-character string.
_IDLE = TransactionStatus.IDLE.char
_IDLE_STATES = {_IDLE: "idle", TransactionStatus.IN_BLOCK.char: "idle in transaction",
                TransactionStatus.FAILED.char: "idle in transaction (aborted)"}


def _quickdie(signum: int, frame: Any) -> None:
    """SIGQUIT: tell the client why, then _exit(2) without cleanup (shared memory may be
    corrupt)."""
    reason = pmsignal.PMState.INIT
    try:
        if _ctx is not None and _ctx.shm is not None:
            reason = pmsignal.pm_state(_ctx.shm.control)
    except Exception:
        pass
    if reason == pmsignal.PMState.IMMEDIATE:
        fields = error_fields("57P01", "terminating connection due to immediate shutdown command", "FATAL")
    else:
        fields = error_fields(
            "57P02", "terminating connection because of crash of another server process", "FATAL",
            detail="The postmaster has commanded this server process to roll back the current transaction and "
                   "exit, because another server process exited abnormally and possibly corrupted shared memory.",
            hint="In a moment you should be able to reconnect to the database and repeat your command.")
    if _port is not None and not _port.ms.conn.closed:
        try:  # the socket (or the ssl.SSLSocket, which encrypts) of the connection in use
            _port.ms.conn.sock.send(codec.encode(M.ErrorResponse(fields)))
        except OSError:
            pass
    os._exit(2)


def backend_main(ctx: ChildContext, sock: socket.socket, addr: Any, dead_end: tuple[str, str] | None = None) -> int:
    """Entry point in the forked child; returns the exit code."""
    global _ctx
    _ctx = ctx
    interrupts.reset()
    interrupts.install()
    signal.signal(signal.SIGQUIT, _quickdie)
    rfd, wfd = os.pipe()
    os.set_blocking(rfd, False)
    os.set_blocking(wfd, False)
    interrupts.wake_fd = wfd
    _precise_sleeps()
    return trio.run(_serve, ctx, sock, addr, dead_end, rfd)


class LoopEngine(Protocol):
    """What the protocol loop uses of its backend's engine (the BackendEngine)."""

    procs: ProcArray
    settings: GucSettings
    env: Env


class _State:
    die = False
    pm_dead = False
    report: BackendReport | None = None


async def _serve(ctx: Any, sock: socket.socket, addr: Any, dead_end: tuple[str, str] | None, rfd: int) -> int:
    global _port
    settings = ctx.settings.copy()
    local = sock.family == socket.AF_UNIX
    client_addr = "local" if local else (addr[0] if addr else "")
    client_port = 0 if local else (addr[1] if addr else 0)
    # non-blocking, TCP_NODELAY; port.ms is replaced by a connection over TLS when one is negotiated
    port = _port = BS.Port(MessageConn(Conn(sock), startup=True), local, client_addr, client_port,
                           server_tls=ctx.tls)
    env = None
    engine = None
    session = None
    notifier = None
    report = None
    st = _State()
    code = 0
    try:
        auth_timeout = int(settings.value("authentication_timeout"))
        with trio.fail_after(auth_timeout):
            try:
                startup = await BS.read_startup(port, None if dead_end else _procs_for_cancel(ctx))
            except (BS.CancelHandled, be_secure.HandshakeFailed):
                return 0
            ms = port.ms
            if dead_end:
                raise FatalError(*dead_end)
            params = BS.normalize_params(startup.params)
            user = params.get("user") or ""
            if not user:
                raise FatalError("28000", "no PostgreSQL user name specified in startup packet")
            dbname = params.get("database") or user
            env = Env(ctx.shm, ctx.locks, ctx.datadir, settings)
            env.stats_sock = ctx.stats_sock
            procs = env.procs
            procs.attach("client backend", max_client=int(settings.value("max_connections")))
            procs.set_identity(usename=user, datname=dbname, appname=params.get("application_name", ""),
                               client_addr=client_addr, client_port=client_port)
            procs.set_tls(port.tls)
            boot = BackendEngine(env, api.DatabaseInfo(0, "", 10), api.RoleInfo(10, user, superuser=True))
            boot.start_statement()
            role = boot.role_by_name(user)
            db = boot.database_by_name(dbname)
            boot.rollback()
            await auth.client_authentication(port, settings, ctx.datadir, database=dbname, user=user, role=role)
            if role is None:
                raise FatalError("28000", f'role "{user}" does not exist')
            if not role.can_login:
                raise FatalError("28000", f'role "{user}" is not permitted to log in')
            if db is None:
                raise FatalError("3D000", f'database "{dbname}" does not exist')
            if not db.allow_connections:
                raise FatalError("55000", f'database "{dbname}" is not currently accepting connections')
            if not role.superuser:
                n = sum(1 for e in procs.entries() if e["backend_type"] == "client backend")
                maxc = int(settings.value("max_connections"))
                if n > maxc - int(settings.value("superuser_reserved_connections")):
                    raise FatalError("53300", "remaining connection slots are reserved for non-replication "
                                              "superuser connections")
            settings.set_internal("is_superuser", role.superuser)
            settings.set_internal("session_authorization", role.name)
            engine = BackendEngine(env, db, role)
            key = int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF
            procs.set_identity(dboid=db.oid, datname=db.name, userid=role.oid, usename=role.name,
                               appname=params.get("application_name", ""), client_addr=client_addr,
                               client_port=client_port, cancel_key=key)

            session = Session(engine, database=db.name, user=role.name, settings=settings, params=params,
                              pid=os.getpid())

            notifier = Notifier(ctx.datadir, db.oid, procs)
            session.notifier = notifier  # type: ignore[attr-defined]  # read by the SQL side's LISTEN/NOTIFY
            engine.xact_callbacks.append(notifier.at_xact)
            report = st.report = BackendReport(session, engine, notifier, params, procs, client_addr, client_port)
            if settings.value("log_connections"):
                t = port.tls
                elog.log(f"connection authorized: user={role.name} database={db.name}"
                         + (f" application_name={params['application_name']}" if params.get("application_name")
                            else "")
                         + (f" SSL enabled (protocol={t.version}, cipher={t.cipher}, bits={t.bits})" if t else ""))
            await ms.send(M.AuthenticationOk(), *session.startup_messages(), *report.startup_messages(),
                          M.BackendKeyData(os.getpid(), key.to_bytes(4, "big")), M.ReadyForQuery(_IDLE))
        set_title(f"pgbundle: {role.name} {db.name} {client_addr if local else f'{client_addr}({client_port})'}")
        procs.set_state("idle")
        failure: list[BaseException] = []

        async def main_task(scope: trio.CancelScope) -> None:
            try:
                await _command_loop(ms, session, engine, report)
            except trio.Cancelled:
                raise
            except BaseException as exc:  # re-raised below, outside the nursery's exception group
                failure.append(exc)
            finally:
                scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_interrupts, rfd, st, nursery.cancel_scope)
            if ctx.pm_alive_fd >= 0:
                nursery.start_soon(_watch_postmaster, ctx.pm_alive_fd, st, nursery.cancel_scope)
            nursery.start_soon(main_task, nursery.cancel_scope)
        if failure:
            raise failure[0]
        if st.pm_dead:
            raise FatalError("57P01", "terminating connection due to unexpected postmaster exit")
        if st.die or interrupts.die_pending:
            raise FatalError(*interrupts.die_reason)
    except FatalError as e:
        await BS.send_fatal(port.ms, e)
        code = 1
    except trio.TooSlowError:
        code = 1
    except ProtocolError as e:
        await BS.send_fatal(port.ms, BS.protocol_error(e))
        code = 1
    except (EOFError, ConnectionLost, ConnectionError):  # the client went away
        code = 0
    except PgError as e:
        await BS.send_fatal(port.ms, e)
        code = 1
    except Exception as e:
        elog.log_exception("unexpected error in backend")
        await BS.send_fatal(port.ms, FatalError("XX000", f"internal error: {type(e).__name__}"))
        code = 1
    finally:
        try:
            if notifier is not None:
                notifier.close()
            if session is not None:
                session.terminate()
            if engine is not None and not st.pm_dead:
                tempns.drop_at_exit(engine)
        except Exception:
            elog.log_exception("error while dropping the temporary relations")
        try:
            if engine is not None:
                engine.close()
        except Exception:
            elog.log_exception("error while closing the session")
        if env is not None:
            env.bm.release_all()
            env.procs.detach()
        port.ms.conn.close()
    return code


def _precise_sleeps() -> None:
    """Group-commit waiters poll with sleeps of tens of microseconds; the default 50 µs
    timer slack would stretch each one (prctl PR_SET_TIMERSLACK = 1 ns)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(29, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _procs_for_cancel(ctx: ChildContext) -> ProcArray:
    return ProcArray(ctx.shm, ctx.locks)


async def _watch_interrupts(rfd: int, st: _State, scope: trio.CancelScope) -> None:
    while True:
        await trio.lowlevel.wait_readable(rfd)
        try:
            os.read(rfd, 4096)
        except BlockingIOError:
            pass
        if interrupts.die_pending:
            st.die = True
            scope.cancel()
            return
        if interrupts.notify_pending and st.report is not None and st.report.idle_scope is not None:
            st.report.idle_scope.cancel()  # idle: send the notifications now


async def _watch_postmaster(fd: int, st: _State, scope: trio.CancelScope) -> None:
    await trio.lowlevel.wait_readable(fd)
    st.pm_dead = True
    scope.cancel()


def _idle_state(status: str) -> str:
    return _IDLE_STATES[status]


async def _command_loop(ms: MessageConn, session: Session, engine: LoopEngine, report: BackendReport) -> None:
    procs = engine.procs
    settings = engine.settings
    frames = ms.frames
    send = ms.send_many  # the answers in one write, straight into the socket when it has room
    decode = codec.decode_frontend
    Query, Parse, Bind, Describe, Execute, Sync = M.Query, M.Parse, M.Bind, M.Describe, M.Execute, M.Sync
    pending: list[M.Message] = []
    last_state = "idle"
    while True:
        if not pending:
            state = _idle_state(session.transaction_status)
            if state != last_state:
                procs.set_state(state)
                last_state = state
        if interrupts.reload_pending:
            interrupts.reload_pending = False
            settings.reload_files(engine.env.datadir)
        f = frames.next_frame() if pending or not report.wants_idle_wakeup() else NEED_DATA
        if f is NEED_DATA:  # nothing buffered: wait (idle timeouts, notifications)
            typ, payload = await _receive(ms, session, settings, bool(pending), report)
        else:
            typ, payload = f
        # dispatch on the exact type (identity tests: a fraction of isinstance's cost on this
        # path), which mypy cannot narrow through: msg is Any here
        msg: Any = decode(typ, payload)
        t = type(msg)
        if t is Query:
            procs.set_state("active", msg.query)
            last_state = "active"
            interrupts.start_query(int(settings.value("statement_timeout")))
            try:
                out = session.simple_query(msg.query)
            finally:
                interrupts.end_query()
            report.before_ready(out)
            if not session.copy_in_progress:  # idle before ReadyForQuery goes out, as PostgreSQL
                last_state = _idle_state(session.transaction_status)
                procs.set_state(last_state)
            await send(out)
            if session.copy_in_progress:
                await _copy_in(ms, session, report)
        elif t is Parse:
            pending.extend(session.parse(msg.name, msg.query, msg.param_types))
        elif t is Bind:
            pending.extend(session.bind(msg.portal, msg.statement, msg.param_formats, msg.params,
                                        msg.result_formats))
        elif t is Describe:
            pending.extend(session.describe(msg.kind, msg.name))
        elif t is Execute:
            if last_state != "active":
                procs.set_state("active", session.portal_query(msg.portal))
                last_state = "active"
            interrupts.start_query(int(settings.value("statement_timeout")))
            try:
                pending.extend(session.execute(msg.portal, msg.max_rows))
            finally:
                interrupts.end_query()
        elif t is M.Close:
            pending.extend(session.close(msg.kind, msg.name))
        elif t is Sync:
            pending.extend(session.sync())
            report.before_ready(pending)
            state = _idle_state(session.transaction_status)
            if state != last_state:  # idle before ReadyForQuery goes out, as PostgreSQL
                procs.set_state(state)
                last_state = state
            await send(pending)
            pending = []
        elif t is M.Flush:
            pending.extend(session.flush())
            if pending:
                await send(pending)
                pending = []
        elif t is M.Terminate:
            return
        elif t in (M.CopyData, M.CopyDone, M.CopyFail):
            continue  # outside COPY: ignored, as PostgreSQL does
        elif t is M.FunctionCall:
            pending.append(M.ErrorResponse(error_fields("0A000", "fastpath function calls are not supported")))
        else:
            raise FatalError("08P01", f"invalid frontend message type {typ}")
        if session.closed:
            if pending:
                await send(pending)
            return
        if len(pending) > 512:
            await send(pending)
            pending = []


async def _receive(ms: MessageConn, session: Session, settings: GucSettings, mid_batch: bool,
                   report: BackendReport | None = None) -> tuple[int, bytes]:
    """The next message, enforcing idle_in_transaction_session_timeout (FATAL 25P03) and
    idle_session_timeout (FATAL 57P05) while the client is idle.  A listening backend idle
    outside a transaction sends notifications as they come (the SIGUSR1 watcher cancels
    the wait for readability, which loses no bytes; the read itself is never cancelled)."""
    if mid_batch:
        return await ms.receive()
    status = session.transaction_status
    if status == _IDLE:
        ms_timeout = int(settings.value("idle_session_timeout"))
        err = ("57P05", "terminating connection due to idle-session timeout")
    else:
        ms_timeout = int(settings.value("idle_in_transaction_session_timeout"))
        err = ("25P03", "terminating connection due to idle-in-transaction timeout")
    if report is None or not report.wants_idle_wakeup():
        if ms_timeout <= 0:
            return await ms.receive()
        with trio.move_on_after(ms_timeout / 1000.0):
            return await ms.receive()  # a read cut short here ends the session: no bytes matter
        raise FatalError(*err)
    deadline = trio.current_time() + ms_timeout / 1000.0 if ms_timeout > 0 else float("inf")
    frames = ms.frames
    conn = ms.conn
    while True:
        out = report.idle_messages()
        if out:
            await ms.send_many(out)
        f = frames.next_frame()
        if f is not NEED_DATA:
            return f
        with trio.CancelScope(deadline=deadline) as cs:
            report.idle_scope = cs
            if report.notifier is not None and report.notifier.ready:  # signalled while the last batch was sent
                cs.cancel()
            try:
                await conn.wait_readable()
            finally:
                report.idle_scope = None
        if cs.cancelled_caught:
            if trio.current_time() >= deadline:
                raise FatalError(*err)
            continue
        data = await conn.recv()
        if not data:
            raise EOFError("peer closed the connection")
        frames.receive_data(data)


async def _copy_in(ms: MessageConn, session: Session, report: BackendReport) -> None:
    while session.copy_in_progress:
        typ, payload = await ms.receive()
        msg: Any = codec.decode_frontend(typ, payload)  # dispatched on type(msg), as in _command_loop
        t = type(msg)
        if t is M.CopyData:
            out = session.copy_data(msg.data)
            if out:
                await ms.send_many(out)
        elif t is M.CopyDone:
            out = session.copy_done()
            report.before_ready(out)
            await ms.send_many(out)
        elif t is M.CopyFail:
            out = session.copy_fail(msg.message)
            report.before_ready(out)
            await ms.send_many(out)
        elif t in (M.Flush, M.Sync):
            continue
        elif t is M.Terminate:
            session.copy_fail("client terminated the connection")
            raise EOFError()
        else:
            await ms.send_many(session.copy_fail(f"unexpected message type 0x{typ:02X} during COPY from stdin"))
