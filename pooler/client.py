"""Client side: one client connection, from startup packet to goodbye (pgbouncer's client.c).

:func:`serve_client` owns the connection.  Login: an SSLRequest gets ``S`` and the TLS handshake
when client_tls_sslmode allows (``N`` otherwise; direct TLS too: :mod:`.tlsconf`),
a GSSENCRequest ``N``, a CancelRequest is routed (:mod:`.cancel`) and the connection closed,
a StartupMessage is checked (protocol 3.x, user present, max_client_conn,
database known), the client authenticates (:mod:`.auth`) and gets the pool's
ParameterStatus set, the pooler's own BackendKeyData and ReadyForQuery -- all
within client_login_timeout.

Then the relay: bytes from the client go to its server connection, acquired
from the pool when the client has none (waiting in FIFO order, at most
query_wait_timeout).  In session mode only message headers are looked at:
Query, Sync and FunctionCall each expect one ReadyForQuery back
(counted by the server's :class:`.conversation.Conversation`), extended-protocol messages after the last Sync keep the
server linked, and Terminate is not passed on.  In transaction and statement
mode each batch goes through :func:`.emulate.build_batch`, which also keeps
prepared statements, settings, LISTEN and pinning right across server
connections; a batch that only prepares statements some server already
accepted is answered without a server.  client_idle_timeout and
idle_transaction_timeout are a cancel scope around the read, whose deadline the
server side moves as the client's state changes.

Every error the pooler reports goes out as an ErrorResponse with a SQLSTATE;
nothing a client sends can raise out of this module.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from typing import TYPE_CHECKING

import trio

from pgbundle.shared import sqlstate
from pgbundle.shared.netio import Conn, ConnectionLost
from pgbundle.shared.protocol import PASS, FrameBuffer, StreamScanner, decode_startup, encode, messages as m
from pgbundle.shared.protocol.constants import SSL_REFUSED
from pgbundle.shared.protocol.errors import RemoteProtocolError
from pgbundle.shared.protocol.states import TransactionStatus

from . import logs
from .emulate import Batch, EmulationState, build_batch, local_reply
from .guard import guarded
from .objects import ClientState, PoolerError, client_logged_in
from .varcache import ParamState, parse_options

if TYPE_CHECKING:
    from .objects import Pool, PoolerHost
    from .server import Server
    from .stats import PoolStats

log = logging.getLogger("pgbundle.pooler")

_Q, _S, _F, _X = m.Query.TYPE[0], m.Sync.TYPE[0], m.FunctionCall.TYPE[0], m.Terminate.TYPE[0]
_EXTENDED = frozenset(c.TYPE[0] for c in (m.Parse, m.Bind, m.Describe, m.Execute, m.Close, m.Flush))
#: Frontend messages the relay looks at (headers only, in practice: all are small).
CLIENT_WANT = frozenset((_Q, _S, _F, _X)) | _EXTENDED
ADMIN_DATABASES = ("pgbouncer", "pgbundle")
_LOCAL_FIRST = frozenset(map(ord, "PC"))
#: Set on a pgbundle server for the client it serves ("addr:port"); pg_stat_activity shows it.
CLIENT_ADDR_SETTING = "pgbundle.client_addr"
_ids = itertools.count(1)
_INF = math.inf
_IDLE = TransactionStatus.IDLE
_READY_IDLE = encode(m.ReadyForQuery(_IDLE.char))


class Client:
    """State of one client connection (its transitions live in :mod:`.objects`)."""

    state: ClientState = ClientState.LOGIN  # changed only in .objects

    def __init__(self, pooler: PoolerHost, conn: Conn) -> None:
        self.id = next(_ids)
        self.pooler = pooler
        self.conn = conn
        self.pool: Pool | None = None
        self.server: Server | None = None
        self.last_server: Server | None = None  # the server it had last (Pool._pick_idle prefers it)
        self.user = ""
        self.database = ""
        self.startup_params: dict[str, str] = {}
        self.application_name = ""
        self.vars = ParamState()  # tracked parameters (written only by .varcache)
        self.cancel_key = (0, b"")
        self.wait_task: trio.lowlevel.Task | None = None  # the parked task while queued for a server (see Pool.acquire)
        self.wait_error: PoolerError | None = None
        self.wait_notified = False  # query_wait_notify's NOTICE went out for this wait (set by .janitor)
        self.welcome_sent = False  # logged in: AuthenticationOk .. ReadyForQuery went out (pgbouncer's welcome_sent)
        now = time.monotonic()
        self.wait_start = now
        self.connect_time = now
        self.connect_wall = time.time()
        self.request_time = now
        self.emu = EmulationState()  # transaction-mode session emulation (written only by .emulate)
        self.listening: set[str] = set()  # LISTEN channels (kept by .listen)
        self.notifications: list[bytes] = []  # to deliver after the current reply
        self._outbox: list[bytes] = []  # to send to the idle client now, in order
        self._sending = False  # a task is draining _outbox
        self.kill_error: PoolerError | None = None
        self.kill_after: PoolerError | None = None
        self.lost = False
        self.admin = False
        self.scope: trio.CancelScope | None = None
        self.read_scope: trio.CancelScope | None = None  # carries client_idle / idle_transaction timeouts
        self.frames = FrameBuffer(startup=True, max_length=pooler.config.settings.max_packet_size)
        self.scanner = StreamScanner(CLIENT_WANT, pooler.config.settings.max_packet_size)

    def __repr__(self) -> str:
        return f"C-{logs.ptr(self.id)}"

    @staticmethod
    def encode(msg: m.Message) -> bytes:
        return encode(msg)

    # ------------------------------------------------------------------ reading during login

    async def read_message(self) -> tuple[int, bytes]:
        """The next whole message (type 0 = untyped startup packet); EOFError when the client left."""
        frames = self.frames
        while True:
            f = frames.next_frame()
            if f is not None:
                return f
            data = await self.conn.recv()
            if not data:
                raise EOFError
            frames.receive_data(data)

    async def send_error(self, err: PoolerError) -> None:
        """Send an ErrorResponse (best effort: the client may be gone)."""
        logs.pooler_error(self, err)  # log_pooler_errors, errors by SQLSTATE class
        data = encode(m.ErrorResponse(err.error_fields()))
        if not err.fatal:
            data += _READY_IDLE
        with trio.move_on_after(1):
            try:
                await self.conn.send_all(data)
            except (ConnectionLost, OSError):
                pass

    # ------------------------------------------------------------------ login

    async def login(self) -> bool:
        """Startup, auth, welcome.  True when the client may proceed to the relay."""
        pooler = self.pooler
        tlsconf = pooler.tls
        if tlsconf.client_ctx is not None:
            self.conn = await tlsconf.start_direct(self.conn)
            tlsconf.check_direct(self.conn)
        while True:
            t, payload = await self.read_message()
            msg = decode_startup(payload)
            if isinstance(msg, m.SSLRequest):
                if len(self.frames):
                    raise PoolerError("received unencrypted data after SSL request", sqlstate.PROTOCOL_VIOLATION)
                self.conn = await tlsconf.accept_request(self.conn)
                continue
            if isinstance(msg, m.GSSENCRequest):
                if len(self.frames):
                    raise PoolerError("received unencrypted data after GSSAPI encryption request",
                                      sqlstate.PROTOCOL_VIOLATION)
                await self.conn.send_all(SSL_REFUSED)
                continue
            if isinstance(msg, m.CancelRequest):
                pooler.cancels.request(msg.process_id, msg.secret_key)
                return False
            assert isinstance(msg, m.StartupMessage)
            break
        self.frames.startup = False
        tlsconf.check_client(self.conn)
        major, minor = msg.protocol >> 16, msg.protocol & 0xFFFF
        if major != 3:
            raise PoolerError(f"unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0",
                              sqlstate.FEATURE_NOT_SUPPORTED)
        params = msg.params
        unknown_pq = tuple(k for k in params if k.startswith("_pq_."))
        if minor > 0 or unknown_pq:
            await self.conn.send_all(encode(m.NegotiateProtocolVersion(0, unknown_pq)))
        user = params.get("user", "")
        if not user:
            raise PoolerError("no PostgreSQL user name specified in startup packet",
                              sqlstate.INVALID_AUTHORIZATION_SPECIFICATION)
        if "replication" in params and params["replication"].lower() not in ("false", "off", "0", "no"):
            raise PoolerError("replication connections are not supported by the pooler",
                              sqlstate.FEATURE_NOT_SUPPORTED)
        self.user = user
        self.database = params.get("database") or user
        self.startup_params = params
        self.application_name = params.get("application_name", "")
        pooler.log_client(self, f"login attempt: db={self.database} user={user}")
        if "options" in params and "options" not in pooler.varcache.ignore:
            try:
                parse_options(params["options"], strict=True)
            except ValueError as exc:  # pgbouncer: only settings may come in options
                raise PoolerError(str(exc), sqlstate.PROTOCOL_VIOLATION) from None
        self.admin = self.database in ADMIN_DATABASES
        if not self.admin and pooler.client_count > pooler.config.settings.max_client_conn:
            raise PoolerError("no more connections allowed (max_client_conn)", sqlstate.TOO_MANY_CONNECTIONS)
        if self.admin:
            await pooler.admin_login(self)
            return True
        db = pooler.find_database(self.database)
        if db is not None:
            pooler.check_client_limits(self, db)
        await pooler.auth.authenticate(self, db)  # unknown databases too: nothing is told before auth
        if db is None:
            raise PoolerError(f"no such database: {self.database}", sqlstate.PROTOCOL_VIOLATION)  # pgbouncer: 08P01
        if pooler.pause.db_disabled(self.database):  # DISABLE db
            raise PoolerError(f"database does not allow connections: {self.database}",
                              sqlstate.OBJECT_NOT_IN_PREREQUISITE_STATE)
        pool = pooler.get_pool(self.database, db.user or user, db)  # a forced user: one pool for all (pgbouncer)
        pool.add_client(self)
        if pool.welcome is None:  # the first client of a pool waits for a server login (CL_WAITING_LOGIN)
            server = await pool.acquire(self)
            pool.release(server)
        pooler.varcache.client_startup(self, params, pool)
        if "pgbundle" in (pool.welcome or {}).get("server_version", ""):
            # A pgbundle server shows the pooled client's address in pg_stat_activity: the setting
            # follows the client from server to server like any other (see server/INTERFACES.md).
            pooler.varcache.add_startup(self, CLIENT_ADDR_SETTING, "%s:%s" % self.conn.peer)
        self.cancel_key = pooler.cancels.register(self)
        pid, key = self.cancel_key
        notice = pooler.config.settings.login_notify_message
        await self.conn.send_all(
            encode(m.AuthenticationOk())
            + pooler.varcache.welcome(pool, self)
            + encode(m.BackendKeyData(pid, key))
            + (encode(m.NoticeResponse(sqlstate.error_fields(sqlstate.SUCCESSFUL_COMPLETION, notice, "NOTICE")))
               if notice else b"")
            + _READY_IDLE
        )
        self.welcome_sent = True
        return True

    # ------------------------------------------------------------------ relay

    async def relay(self) -> None:
        """Client -> server until the client leaves; see the module docstring."""
        pool = self.pool
        assert pool is not None
        conn = self.conn
        scanner = self.scanner
        pooler = self.pooler
        varcache = pooler.varcache
        stats = pool.stats
        leftover = self.frames.pending()
        while True:
            server = self.server
            if leftover:
                data, leftover = leftover, b""
            else:
                if pool.client_idle_timeout or pool.idle_transaction_timeout:
                    with trio.CancelScope(deadline=self.idle_deadline()) as sc:
                        self.read_scope = sc
                        data = await conn.recv()
                    self.read_scope = None
                    if sc.cancelled_caught:
                        server = self.server
                        if server is not None and server.conv.in_transaction:
                            raise PoolerError("idle transaction timeout", sqlstate.PROTOCOL_VIOLATION)
                        raise PoolerError("client_idle_timeout", sqlstate.PROTOCOL_VIOLATION)
                else:
                    data = await conn.recv()
            if not data:
                return
            stats.client_bytes += len(data)
            pieces, intact = scanner.feed(data)
            if pooler.config.settings.disable_pqexec and any(t == _Q for t, _ in pieces):
                logs.log_client(pooler, self, 'client used "Query" packet type', level=logging.ERROR)
                raise PoolerError("PQexec disallowed", sqlstate.PROTOCOL_VIOLATION)
            if pool.mode == "session":
                data, nsync, ext, terminate = _plain(pieces, intact, data, stats)
                if data:
                    server = self.server or await self._acquire()
                    await self._send(server, data, nsync, ext, None)
            else:
                server = self.server
                if server is None and _needs_server(pieces):
                    if pieces[0][0] in _LOCAL_FIRST:  # maybe only prepares/closes: no server needed
                        reply = local_reply(self, pieces)
                        if reply is not None:
                            await conn.send_all(reply)
                            continue
                    server = await self._acquire()
                if server is not None:
                    batch = build_batch(self, server, pieces)
                    emu = self.emu
                    while (channel := emu.next_listen()) is not None:  # LISTEN returns once notifications can arrive
                        await pooler.listeners.listen(self, channel)
                    terminate = batch.terminate
                    data = b"".join(batch.out)
                    sql = varcache.sync_sql(self, server)
                    if sql is not None:  # settings first, their reply swallowed
                        server.expect_internal()
                        data = encode(m.Query(sql)) + data
                    conv = server.conv
                    # Replies are matched while edited requests are outstanding -- and for requests not
                    # yet synced, since a later batch of the same pipeline may be edited: its replies
                    # can only be placed when those before it are counted (ReadyForQuery alone does not).
                    if batch.precise or conv.ops or conv.unsynced or batch.ext == 1:
                        server.queue_ops(batch.ops)
                    if data or batch.ops:
                        await self._send(server, data, batch.nsync, batch.ext, batch)
                else:
                    terminate = any(t == _X for t, _ in pieces)
            if terminate:
                server = self.server
                if server is not None:
                    await self._drain(server)
                return

    async def _drain(self, server: Server) -> None:
        """After Terminate: requests sent just before it still get their answers -- while the client
        keeps its side open.  Once it closes (or sends anything more) nobody reads them, so stop
        waiting: the server, not ready, is then closed as in pgbouncer (a COPY FROM STDIN left
        open would otherwise hold client and server forever)."""
        async with trio.open_nursery() as n:
            async def watch() -> None:
                await self.conn.wait_readable()
                n.cancel_scope.cancel()

            n.start_soon(watch)
            await server.conv.drain()
            n.cancel_scope.cancel()

    async def _acquire(self) -> Server:
        pool = self.pool
        assert pool is not None  # logged in
        server = await pool.acquire(self)
        self.request_time = time.monotonic()
        if pool.mode == "session":
            sql = self.pooler.varcache.sync_sql(self, server)
            if sql is not None:
                server.expect_internal()
                await server.linked_conn().send_all(encode(m.Query(sql)))
        return server

    async def _send(self, server: Server, data: bytes, nsync: int, ext: int, batch: Batch | None) -> None:
        """Account for what is sent (ReadyForQuery replies expected, unsynced state) and send it."""
        if server.conv.sent(nsync, ext):  # a request starts: query_timeout runs until its ReadyForQuery
            query_timeout = server.pool.query_timeout
            if query_timeout and server.scope is not None:
                server.scope.deadline = trio.current_time() + query_timeout
        if data:
            try:
                await server.linked_conn().send_all(data)
            except ConnectionLost:
                raise PoolerError("server conn crashed?", sqlstate.CONNECTION_FAILURE) from None

    def push(self, message: bytes) -> None:
        """Send ``message`` (a NoticeResponse) now if no server is linked, else after the current reply."""
        self._post(message, self.state in (ClientState.ACTIVE, ClientState.WAITING))

    def deliver(self, notification: bytes) -> None:
        """A NotificationResponse from the pool's LISTEN connection."""
        self._post(notification, self.state is ClientState.ACTIVE)

    def _post(self, message: bytes, now: bool) -> None:
        if now and self.server is None:
            # One sender per client drains the outbox, so messages arrive in the order sent.
            self._outbox.append(message)
            if not self._sending:
                self._sending = True
                self.pooler.nursery.start_soon(guarded, self._send_notifications)
        else:
            self.notifications.append(message)

    async def _send_notifications(self) -> None:
        try:
            while self._outbox:
                if self.server is not None:  # linked meanwhile: after the current reply
                    self.notifications.extend(self._outbox)
                    self._outbox.clear()
                    return
                data = b"".join(self._outbox)
                self._outbox.clear()
                try:
                    await self.conn.send_all(data)
                except ConnectionLost:
                    self._outbox.clear()
                    return
        finally:
            self._sending = False

    def idle_deadline(self) -> float:
        """When an idle client is cut off (trio time): client_idle_timeout outside a transaction,
        idle_transaction_timeout inside one; no limit while a request is in flight."""
        server = self.server
        pool = self.pool
        assert pool is not None  # logged in
        if server is None:
            t = pool.client_idle_timeout
        elif server.conv.busy:
            return _INF
        else:
            t = pool.idle_transaction_timeout if server.conv.in_transaction else pool.client_idle_timeout
        return trio.current_time() + t if t else _INF

    # ------------------------------------------------------------------ being told to stop

    def kill(self, error: PoolerError | None) -> None:
        """End this client from another task: ``error`` (if any) is sent, then the connection closes."""
        if self.kill_error is None:
            self.kill_error = error
        if self.scope is not None:
            self.scope.cancel()
        else:
            self.conn.close()

    def server_died(self, server: Server, reason: str) -> None:
        """The linked server connection ended under this client."""
        if self.server is server:
            self.server = None
        if self.kill_after is not None:
            self.kill(self.kill_after)
            return
        if server.sent_fatal:
            self.kill(None)  # the server's own FATAL message already went to the client
        elif reason == "query timeout":
            self.kill(PoolerError("query timeout", sqlstate.QUERY_CANCELED))
        else:
            self.kill(PoolerError(reason, sqlstate.CONNECTION_FAILURE))


def _plain(pieces: list[tuple[int, bytes]], intact: bool, data: bytes,
           stats: PoolStats) -> tuple[bytes, int, int, bool]:
    """Session mode: relay as is; count what expects a ReadyForQuery."""
    nsync = 0
    ext = -1
    terminate = False
    for t, _p in pieces:
        if t == PASS:
            continue
        if t == _Q or t == _S or t == _F:
            nsync += 1
            ext = 0
            if t == _Q:
                stats.query_count += 1
        elif t == _X:
            terminate = True
            intact = False
        else:
            ext = 1
            if t == 69:  # Execute
                stats.query_count += 1
    if terminate:
        data = b"".join(p for t, p in pieces if t != _X)
    elif not intact:
        data = b"".join(p for _, p in pieces)
    return data, nsync, ext, terminate


def _needs_server(pieces: list[tuple[int, bytes]]) -> bool:
    """Anything but a lone Terminate needs a server."""
    return any(t != _X for t, _ in pieces)


async def serve_client(pooler: PoolerHost, conn: Conn) -> None:
    """Own one accepted connection until it is closed.  Never raises (logs instead)."""
    client = Client(pooler, conn)
    pooler.register_client(client)
    error: PoolerError | None = None
    reason = "client close request"
    try:
        with trio.CancelScope() as scope:
            client.scope = scope
            try:
                with trio.fail_after(pooler.config.settings.client_login_timeout or _INF):
                    ok = await client.login()
            except trio.TooSlowError:
                raise PoolerError("client_login_timeout", sqlstate.PROTOCOL_VIOLATION) from None
            if ok:
                client_logged_in(client)
                pooler.log_client(client, f"login ok: db={client.database} user={client.user}")
                if client.admin:
                    await pooler.serve_admin(client)
                else:
                    await client.relay()
            else:
                reason = "cancel request" if client.state is ClientState.LOGIN else reason
        if scope.cancelled_caught:
            error = client.kill_error
            reason = error.message if error else "server closed the connection"
    except PoolerError as exc:
        error = exc
        reason = exc.message
    except RemoteProtocolError as exc:
        error = PoolerError(exc.message, exc.sqlstate)
        reason = f"bad packet: {exc.message}"
    except EOFError:
        reason = "client unexpected eof"
    except ConnectionLost:
        reason = "client connection lost"
    except Exception:  # a bug: never let it reach the client as anything but an error
        log.exception("%s: internal error", client)
        error = PoolerError("internal error in the pooler", sqlstate.INTERNAL_ERROR)
        reason = "internal error"
    finally:
        try:
            if error is not None:
                with trio.CancelScope(shield=True):
                    await client.send_error(error)
        finally:
            pooler.client_gone(client, reason)
            client.conn.close()
            conn.close()

