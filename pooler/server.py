"""Server side: one connection from the pooler to PostgreSQL (pgbouncer's server.c).

A :class:`Server` logs in as its pool's user with whatever method the server
asks for (:meth:`Server.login`), then one task (:meth:`Server.run`) reads
everything the server sends for as long as the connection lives:

* while a client is linked, bytes are relayed to it unchanged; only
  ReadyForQuery, ParameterStatus and ErrorResponse are looked at (the
  :class:`StreamScanner` passes the rest through without copying);
* at ReadyForQuery the link is released when the pool mode allows it:
  transaction and statement mode at status ``I`` with no request outstanding and
  nothing sent since the last Sync (asyncpg sends Parse/Describe/Flush and waits);
* the pooler's own queries (parameter SETs, reset and check queries) are
  matched to them and consumed (see :mod:`.ops`), never reaching a client.

What was sent and which replies are owed is the server's :class:`.conversation.Conversation`
(``Server.conv``): the client side reports what it sends, this side what comes back; while
requests are queued there (``conv.ops``), the conversation matches the replies to them.

The reader's cancel scope carries the query_timeout deadline.  When the
connection ends for any reason the linked client is told and closed, and the
pool forgets the server.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from typing import TYPE_CHECKING

import trio

from pgbundle.shared import sqlstate
from pgbundle.shared.auth.md5 import md5_response
from pgbundle.shared.auth.scram import MECHANISM, MECHANISM_PLUS, ScramClient, ScramError
from pgbundle.shared.netio import Conn, ConnectionLost, open_connection, set_tcp_options
from pgbundle.shared.protocol import (
    PASS,
    PROTOCOL_3_0,
    FrameBuffer,
    StreamScanner,
    decode_backend,
    encode,
    messages as m,
)
from pgbundle.shared.protocol.codec import Reader
from pgbundle.shared.protocol.errors import RemoteProtocolError
from pgbundle.shared.protocol.states import TransactionStatus
from pgbundle.shared.tls import TlsConn

from . import emulate, logs, ops as O, replan
from .config import tcp_options
from .conversation import Conversation
from .guard import guarded
from .objects import PoolerError, ServerState, server_closed
from .prepare import ServerStatements
from .varcache import ParamState

if TYPE_CHECKING:
    from .auth import Credentials
    from .client import Client
    from .objects import Pool, PoolerHost

log = logging.getLogger("pgbundle.pooler")

_Z, _S = m.ReadyForQuery.TYPE[0], m.ParameterStatus.TYPE[0]
_E, _A = m.ErrorResponse.TYPE[0], m.NotificationResponse.TYPE[0]
_I = TransactionStatus.IDLE
#: Backend messages the relay looks at.
RELAY_WANT = frozenset((_Z, _S, _E, _A))
#: While replies are matched to requests every message is looked at.
ALL_TYPES = frozenset(range(256))
#: SQLSTATEs of a server login error that retrying will not fix soon.
AUTH_ERRORS = frozenset(("28000", "28P01", "3D000", "42704"))
_ids = itertools.count(1)
_INF = math.inf
SESSION_STATE_REQUEST = "pgbundle.report_session_state"
SESSION_STATE = "pgbundle.session_state"


class Server:
    """One server connection and its relay task."""

    state: ServerState = ServerState.LOGIN  # changed only in .objects

    def __init__(self, pool: Pool, pooler: PoolerHost) -> None:
        self.id = next(_ids)
        self.pool = pool
        self.pooler = pooler  # the pooler that owns the pool, seen through its interface
        self.conn: Conn | None = None
        self.client: Client | None = None
        self.addr = ("", 0)
        self.params: dict[str, str] = {}
        self.vars = ParamState()  # tracked parameters (written only by .varcache)
        self.backend_pid = 0
        self.backend_key = b""
        self.conv = Conversation()  # requests sent and replies owed (see .conversation)
        self.after_sql: str | None = None  # end-of-transaction query to send after the current reply
        self.statements = ServerStatements()
        self.retry: replan.Candidate | None = None  # the one request outstanding, if it may be re-planned (.replan)
        self.statements_stale = False  # a stale statement was reported: DEALLOCATE ALL before the next request
        self.resend: bytes | None = None  # a re-planned request to send (see retry_stale)
        self.auth_method = "trust"  # what the server asked for at login (SCRAM-SHA-256-PLUS: channel-bound)
        self.session_state: str | None = None  # reported by pgbundle server: "clean" or what pins it
        self.scanner = StreamScanner(RELAY_WANT, self.pooler.config.settings.max_packet_size)
        now = time.monotonic()
        self.connect_time = self.last_used = self.link_time = now
        self.close_needed = False
        self.sent_fatal = False  # an ErrorResponse with severity FATAL went to the client (see reply_error)
        self.close_reason: str | None = None
        self.cancels_in_flight = 0
        self.cancel_hold = False
        self.scope: trio.CancelScope | None = None
        self.release_now = False

    def __repr__(self) -> str:
        return f"S-{logs.ptr(self.id)}"

    # ------------------------------------------------------------------ login

    async def login(self, creds: Credentials | None) -> None:
        """Connect and authenticate; on return the server is ready (its ParameterStatus known).

        Errors: PoolerError (``fields`` holds the server's ErrorResponse when it refused us);
        ``auth_error`` attribute tells whether retrying soon is pointless.  The socket is
        closed on any failure, including cancellation.
        """
        pool = self.pool
        s = self.pooler.config.settings
        hosts = pool.db.host
        start = pool.host_index % len(hosts)
        if len(hosts) > 1 and pool.db.load_balance_hosts == "round-robin":
            pool.host_index += 1
        # A host that cannot be resolved or reached is skipped for the next one of the list (libpq's
        # and pgbouncer's rule); the first that accepts the connection is the one logged in to.
        order = hosts[start:] + hosts[:start]
        host = order[0]
        try:
            with trio.fail_after(s.server_connect_timeout or _INF):
                for i, host in enumerate(order):
                    self.addr = (host, pool.db.port)
                    try:
                        self.conn = await open_connection(host, pool.db.port)
                        break
                    except OSError as exc:
                        if i == len(order) - 1:
                            raise
                        log.info("%s: %s:%s: connect failed (%s), trying the next host", self, host,
                                 pool.db.port, exc)
                assert self.conn is not None
                set_tcp_options(self.conn.sock, **tcp_options(s))
                self.conn = await self.pooler.tls.negotiate_server(self.conn, host)
                await self._startup(creds)
        except trio.TooSlowError:
            self._close_socket()
            raise PoolerError(f"server connect timeout ({host}:{pool.db.port})", sqlstate.CONNECTION_FAILURE,
                              detail="server_connect_timeout") from None
        except OSError as exc:
            self._close_socket()
            raise PoolerError("pgbouncer cannot connect to server", sqlstate.CONNECTION_FAILURE,
                              detail=str(exc)) from None
        except ConnectionLost as exc:  # reset or closed while we sent the startup or a password
            self._close_socket()
            raise PoolerError("server closed the connection during login", sqlstate.CONNECTION_FAILURE,
                              detail=str(exc)) from None
        except RemoteProtocolError as exc:  # a frame the codec refuses (oversized, bad length)
            self._close_socket()
            raise PoolerError(f"server sent a bad login message: {exc.message}",
                              sqlstate.PROTOCOL_VIOLATION) from None
        except BaseException:
            self._close_socket()
            raise

    async def _startup(self, creds: Credentials | None) -> None:
        pool = self.pool
        conn = self.conn
        assert conn is not None
        # pgbundle server reports what pins a session (ParameterStatus pgbundle.session_state); stock
        # PostgreSQL takes the dotted name as a placeholder setting and ignores it.
        params = {"user": pool.server_user, "database": pool.server_dbname, SESSION_STATE_REQUEST: "on"}
        db = pool.db
        for key, name in (("client_encoding", "client_encoding"), ("datestyle", "DateStyle"),
                          ("timezone", "TimeZone"), ("application_name", "application_name")):
            v = getattr(db, key)
            if v:
                params[name] = v
        await conn.send_all(encode(m.StartupMessage(PROTOCOL_3_0, params)))
        frames = FrameBuffer(max_length=1 << 20)
        scram: ScramClient | None = None
        while True:
            f = frames.next_frame()
            if f is None:
                data = await conn.recv()
                if not data:
                    raise PoolerError("server closed the connection during login", sqlstate.CONNECTION_FAILURE)
                frames.receive_data(data)
                continue
            t, payload = f
            try:
                msg = decode_backend(t, payload)
            except RemoteProtocolError as exc:
                raise PoolerError(f"server sent a bad login message: {exc.message}",
                                  sqlstate.PROTOCOL_VIOLATION) from None
            if isinstance(msg, m.ErrorResponse):
                raise PoolerError(msg.message, msg.sqlstate, fields=dict(msg.fields),
                                  auth_error=msg.sqlstate in AUTH_ERRORS)
            if isinstance(msg, m.AuthenticationOk):
                continue
            if isinstance(msg, m.ParameterStatus):
                if msg.name == SESSION_STATE:
                    self.session_state = msg.value
                else:
                    self.params[msg.name] = msg.value
            elif isinstance(msg, m.BackendKeyData):
                self.backend_pid, self.backend_key = msg.process_id, msg.secret_key
            elif isinstance(msg, m.ReadyForQuery):
                self.conv.pooler_ready(ord(msg.status))
                self.frames_leftover = frames.pending()
                if self.frames_leftover:
                    raise PoolerError("server sent data after ReadyForQuery during login", sqlstate.PROTOCOL_VIOLATION)
                return
            elif isinstance(msg, m.NoticeResponse):
                continue
            elif isinstance(msg, m.NegotiateProtocolVersion):
                continue
            elif isinstance(msg, m.AuthenticationCleartextPassword):
                self.auth_method = "password"
                pw = creds.password if creds and creds.password is not None else \
                    await self._password(creds, "cleartext")
                await conn.send_all(encode(m.PasswordMessage(pw.encode() + b"\0")))
            elif isinstance(msg, m.AuthenticationMD5Password):
                self.auth_method = "md5"
                secret = creds.password if creds and creds.password is not None else (creds.md5 if creds else None)
                if secret is None:
                    secret = await self._password(creds, "md5")
                resp = md5_response(pool.server_user, secret, msg.salt)
                await conn.send_all(encode(m.PasswordMessage(resp.encode() + b"\0")))
            elif isinstance(msg, m.AuthenticationSASL):
                if MECHANISM not in msg.mechanisms and MECHANISM_PLUS not in msg.mechanisms:
                    raise PoolerError(f"server offers no supported SASL mechanism: {list(msg.mechanisms)}",
                                      sqlstate.FEATURE_NOT_SUPPORTED)
                # Over TLS, bind the exchange to the channel when the server offers it (libpq's
                # channel_binding=prefer): a man in the middle cannot relay it.
                cb = conn.server_end_point() if isinstance(conn, TlsConn) and MECHANISM_PLUS in msg.mechanisms \
                    else None
                if creds and creds.password is not None:
                    scram = ScramClient(pool.server_user, password=creds.password, channel_binding=cb)
                elif creds and creds.scram_client_key is not None and creds.scram is not None:
                    scram = ScramClient(pool.server_user, client_key=creds.scram_client_key, secret=creds.scram,
                                        channel_binding=cb)
                else:
                    pw = await self._password(creds, "SCRAM")
                    scram = ScramClient(pool.server_user, password=pw, channel_binding=cb)
                self.auth_method = scram.mechanism
                await conn.send_all(encode(m.SASLInitialResponse(scram.mechanism, scram.client_first().encode())))
            elif isinstance(msg, m.AuthenticationSASLContinue):
                if scram is None:
                    raise PoolerError("server sent SASLContinue out of order", sqlstate.PROTOCOL_VIOLATION)
                try:
                    final = scram.client_final(msg.data.decode())
                except ScramError as exc:
                    raise self._auth_fail(f"SCRAM authentication with the server failed: {exc}") from None
                await conn.send_all(encode(m.SASLResponse(final.encode())))
            elif isinstance(msg, m.AuthenticationSASLFinal):
                if scram is None:
                    raise PoolerError("server sent SASLFinal out of order", sqlstate.PROTOCOL_VIOLATION)
                try:
                    scram.verify_server_final(msg.data.decode())
                except ScramError as exc:
                    raise self._auth_fail(f"server SCRAM signature is invalid: {exc}") from None
            else:
                raise PoolerError(f"server asked for an unsupported authentication method ({type(msg).__name__})",
                                  sqlstate.FEATURE_NOT_SUPPORTED)

    def _auth_fail(self, text: str) -> PoolerError:
        return PoolerError(text, sqlstate.INVALID_PASSWORD, auth_error=True)

    async def _password(self, creds: Credentials | None, method: str) -> str:
        if creds is not None and creds.ask_password is not None:
            pw = await creds.ask_password()
            if pw is not None:
                creds.password = pw
                return pw
        raise self._auth_fail(
            f'server asked for a {method} password for user "{self.pool.server_user}" and the pooler has none '
            "(give it in auth_file, the upstream URL or the [databases] entry)")

    def linked_conn(self) -> Conn:
        """The connection of a server that has logged in (it has one from then on)."""
        conn = self.conn
        assert conn is not None
        return conn

    def _close_socket(self) -> None:
        if self.conn is not None:
            self.conn.close()

    # ------------------------------------------------------------------ the relay task

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read the server until the connection ends; see the module docstring."""
        pool = self.pool
        conn = self.conn
        assert conn is not None
        scanner = self.scanner
        conv = self.conv
        ops = conv.ops  # the same deque for the connection's life
        reason = "server conn crashed?"
        stats = pool.stats
        with trio.CancelScope() as scope:
            self.scope = scope
            task_status.started()
            try:
                while True:
                    data = await conn.recv()
                    if not data:
                        if self.close_reason:
                            reason = self.close_reason
                        break
                    stats.server_bytes += len(data)
                    pieces, intact = scanner.feed(data)
                    if ops:
                        out, matched = conv.match(self, pieces, self.pool.mode != "session")
                        if matched:
                            scanner.want = RELAY_WANT  # every request answered: back to the fast path
                    elif len(pieces) != 1 or pieces[0][0] != PASS:
                        out = self._inspect(pieces, intact, data)
                    else:
                        out = data if intact else pieces[0][1]
                    if self.resend is not None:
                        data, self.resend = self.resend, None
                        await conn.send_all(data)
                    if self.after_sql is not None:
                        # before the client sees its ReadyForQuery, so nothing it sends next can come first
                        sql, self.after_sql = self.after_sql, None
                        await conn.send_all(encode(m.Query(sql)))
                    client = self.client
                    if client is not None:
                        if client.notifications and scanner.at_boundary:
                            out = out + b"".join(client.notifications)
                            client.notifications.clear()
                        if out:
                            try:
                                await client.conn.send_all(out)
                            except ConnectionLost:
                                client.lost = True
                    if self.release_now:
                        self.release_now = False
                        self._release()
                    elif client is not None and client.kill_after is not None:
                        client.kill(client.kill_after)
            except RemoteProtocolError as exc:
                reason = f"server sent bad data: {exc.message}"
            except (OSError, ConnectionLost) as exc:
                reason = f"server connection error: {exc}"
            except Exception:  # a bug here must cost this one connection, never the pooler
                log.exception("%s: internal error", self)
                reason = "internal error"
        if scope.cancelled_caught and not self.close_reason:
            reason = "query timeout" if conv.pending_z else "server closed"
        self._finish(reason)

    def _inspect(self, pieces: list[tuple[int, bytes]], intact: bool, data: bytes) -> bytes:
        """Fast path: only ReadyForQuery, ParameterStatus and ErrorResponse are looked at."""
        out: list[bytes] = []
        modified = not intact
        for i, (t, p) in enumerate(pieces):
            if t == PASS:
                out.append(p)
            elif t == _Z:
                if not self.client_ready(p[5]):
                    return b""
                out.append(p)
            elif t == _E and self.retry is not None and self.retry_stale(p):
                # the rest of this chunk (the failed attempt's ReadyForQuery) is matched from here on
                rest, matched = self.conv.match(self, pieces[i + 1:], self.pool.mode != "session")
                if matched:
                    self.scanner.want = RELAY_WANT
                out.append(rest)
                return b"".join(out)
            elif t == _S:
                if self.param_status(p, from_client=self.client is not None):
                    out.append(p)
                else:
                    modified = True
            elif t == _E:
                self.reply_error(p)
                out.append(p)
            elif t == _A and self.pool.mode != "session":
                modified = True  # notifications come from the pool's LISTEN connection
            else:
                out.append(p)
        if not modified:
            return data
        return b"".join(out)

    def retry_stale(self, p: bytes) -> bool:
        """The ErrorResponse ``p`` answers the request in :attr:`retry`: when it says the shared
        statement went stale, the request is re-planned (:mod:`.replan`) and True returned -- the
        error is swallowed, the failed attempt's ReadyForQuery too, and the relay sends it again."""
        if self.retry is None or not replan.is_stale(p):
            return False
        retry = replan.candidate(self.retry)
        self.retry = None
        client = self.client
        if retry is None or client is None:
            return False
        b = emulate.rebuild(client, self, retry)
        self.conv.replace_failed(b.ops)
        self.scanner.want = ALL_TYPES
        self.resend = b"".join(b.out)
        log.debug("%s: %s went stale, re-prepared as %s", self, retry.st.query[:60], retry.st.server_name)
        return True

    def reply_error(self, p: bytes) -> None:
        body = p[5:]
        if replan.is_stale(p):
            self.statements_stale = True  # reached the client: drop them all before the next request
        i = 0 if body[:1] == b"C" else body.find(b"\0C") + 1  # the SQLSTATE field: errors by class
        if i > 0 or body[:1] == b"C":
            self.pool.stats.add_error(body[i + 1:i + 6].decode("ascii", "replace"))
        if body.find(b"VFATAL\0") >= 0 or body.find(b"SFATAL\0") >= 0:
            self.close_needed = True
            self.sent_fatal = True  # the client already has the server's own FATAL message
            self.close_reason = "server conn crashed?"  # pgbouncer's words when the server then closes

    def client_ready(self, status: int) -> bool:
        """A ReadyForQuery for the client.  False: swallow it (the client is being refused)."""
        conv = self.conv
        if not conv.ready(status):
            return True
        pool = self.pool
        client = self.client
        if client is not None and client.read_scope is not None:
            client.read_scope.deadline = client.idle_deadline()
        if self.scope is not None and pool.query_timeout:
            self.scope.deadline = _INF
        stats = pool.stats
        now = time.monotonic()
        dt, xact_dt = conv.timed(now, status == _I)
        if dt is not None:  # SHOW STATS query_time, the query histogram
            stats.query_time += dt
            stats.query_hist.observe(dt)
        if status == _I:
            stats.xact_count += 1
            if xact_dt is not None:
                stats.xact_time += xact_dt
                stats.xact_hist.observe(xact_dt)
            if client is None or pool.mode == "session" or conv.unsynced:
                return True
            sql = emulate.after_transaction(client, self)
            if sql is not None:
                self._after(client, sql)
            elif not client.emu.pinned:
                self.release_now = True
        elif pool.mode == "statement" and client is not None:
            # pgbouncer: a transaction block in statement mode closes client and server.
            client.kill_after = PoolerError(
                "transaction blocks not allowed in statement pooling mode", sqlstate.PROTOCOL_VIOLATION)
            self.close_needed = True
            self.close_reason = "transaction blocks not allowed in statement pooling mode"
            return False
        return True

    def _after(self, client: Client, sql: str) -> None:
        """Queue the end-of-transaction query; release (or keep pinned) when it answers."""

        asked = client.emu.after

        def done(sink: O.Sink) -> None:
            emulate.apply_after(client, self, sink, asked)
            if self.client is client and self.conv.idle and not client.emu.pinned and client.kill_after is None:
                self.release_now = True

        self.expect_internal(O.Sink(callback=done))
        self.after_sql = sql

    def param_status(self, p: bytes, *, from_client: bool) -> bool:
        """Take a ParameterStatus; False when it is for the pooler only (not to forward)."""
        r = Reader(p[5:])
        name, value = r.cstr(), r.cstr()
        if name == SESSION_STATE:
            self.session_state = value
            return False
        self.params[name] = value
        varcache = self.pooler.varcache
        if from_client and self.client is not None:
            varcache.client_changed(self.client, self, name, value)
        else:
            varcache.server_changed(self, name, value)
        return True

    def _release(self) -> None:
        """Transaction/statement mode: the transaction ended, the server goes back to the pool."""
        client = self.client
        if client is not None and client.kill_after is not None:
            return
        pooler = self.pooler
        if pooler.config.settings.server_reset_query_always:
            self.pool.mark_used(self)
            pooler.nursery.start_soon(guarded, pooler.reset_server, self)
            return
        self.pool.release(self)

    def _finish(self, reason: str) -> None:
        """The connection is over: close it, tell the linked client, forget the server."""
        pool = self.pool
        client = self.client
        server_closed(self)
        self._close_socket()
        self.conv.end()
        if client is not None:
            client.server_died(self, reason)
        pool.forget(self)
        self.pooler.servers.discard(self)
        self.pooler.log_server(self, f"closing because: {reason}")

    def close(self, reason: str) -> None:
        """Close now (from any task); the relay task finishes the cleanup."""
        if self.state is ServerState.CLOSED:
            return
        self.close_reason = reason
        self.close_needed = True
        if self.conn is not None and not self.conn.closed:
            # Terminate politely when nothing is in flight; the server then closes its side.
            try:
                self.conn.sock.send(b"X\0\0\0\4")
            except OSError:
                pass
            self.conn.close()
        if self.scope is None:  # never started its task
            self._finish(reason)

    # ------------------------------------------------------------------ the pooler's own queries

    def queue_ops(self, ops: list[O.Op]) -> None:
        """Queue the ops of requests about to be sent, so that replies can be matched."""
        self.conv.queue_ops(ops)
        self.scanner.want = ALL_TYPES

    def expect_internal(self, sink: O.Sink | None = None) -> O.Sink:
        """The next Query sent is the pooler's own: its reply goes to a Sink (the caller sends it)."""
        sink = sink or O.Sink()
        self.queue_ops([O.Op(O.QUERY, O.SKIP, sink=sink)])
        return sink

    async def run_internal_rows(self, sql: str) -> tuple[m.ErrorResponse | None, list[list[bytes | None]]]:
        """Like :meth:`run_internal`, also returning the rows (text format)."""
        assert self.conn is not None
        sink = self.expect_internal()
        await self.conn.send_all(encode(m.Query(sql)))
        await sink.done.wait()
        if self.state is ServerState.CLOSED:
            raise ConnectionLost("server closed during an internal query")
        return sink.error, sink.rows

    async def run_internal(self, sql: str) -> m.ErrorResponse | None:
        """Run ``sql`` on an unlinked server and wait for its ReadyForQuery.

        Returns the ErrorResponse if it failed, else None.  Errors: ConnectionLost
        if the server goes away (its task then cleans up).
        """
        return (await self.run_internal_rows(sql))[0]

    def needs_check(self) -> bool:
        s = self.pooler.config.settings
        return bool(s.server_check_query) and time.monotonic() - self.last_used > s.server_check_delay

    async def check(self) -> bool:
        """Run server_check_query; False if the server is not usable."""
        try:
            with trio.fail_after(self.pooler.config.settings.server_connect_timeout or _INF):
                err = await self.run_internal(self.pooler.config.settings.server_check_query)
        except (trio.TooSlowError, ConnectionLost, OSError):
            return False
        self.last_used = time.monotonic()
        return err is None

    async def reset(self) -> bool:
        """Make a server that a client left clean again; False means close it."""
        s = self.pooler.config.settings
        self.conv.client_left()
        try:
            with trio.fail_after(s.server_connect_timeout or _INF):
                if self.conv.in_transaction:
                    if await self.run_internal("ROLLBACK") is not None:
                        return False
                if s.server_reset_query and (self.pool.mode == "session" or s.server_reset_query_always):
                    if await self.run_internal(s.server_reset_query) is not None:
                        return False
                    self.pooler.varcache.server_reset(self)
                    self.statements.clear()
        except (trio.TooSlowError, ConnectionLost, OSError):
            return False
        return not self.conv.in_transaction


def param_status_bytes(params: dict[str, str]) -> bytes:
    return b"".join(encode(m.ParameterStatus(k, v)) for k, v in params.items())

