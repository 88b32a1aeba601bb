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
  "swallowed": their replies are consumed here and never reach a client.

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
from pgbundle.shared.auth.scram import MECHANISM, ScramClient, ScramError
from pgbundle.shared.protocol import PASS, FrameBuffer, StreamScanner, decode_backend, encode, messages as m
from pgbundle.shared.protocol.codec import Reader
from pgbundle.shared.protocol.errors import RemoteProtocolError

from .netio import Conn, ConnectionLost, open_connection
from .objects import PoolerError, ServerState

if TYPE_CHECKING:
    from .auth import Credentials
    from .client import Client
    from .objects import Pool

log = logging.getLogger("pgbundle.pooler")

_Z, _S, _E = ord("Z"), ord("S"), ord("E")
_I, _T = ord("I"), ord("T")
#: Backend messages the relay looks at.
RELAY_WANT = frozenset((_Z, _S, _E))
#: While swallowing the pooler's own queries every message is looked at.
ALL_TYPES = frozenset(range(256))
#: SQLSTATEs of a server login error that retrying will not fix soon.
AUTH_ERRORS = frozenset(("28000", "28P01", "3D000", "42704"))
_ids = itertools.count(1)
_INF = math.inf


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class Server:
    """One server connection and its relay task."""

    def __init__(self, pool: Pool) -> None:
        self.id = next(_ids)
        self.pool = pool
        self.state = ServerState.LOGIN
        self.conn: Conn | None = None
        self.client: Client | None = None
        self.addr = ("", 0)
        self.params: dict[str, str] = {}
        self.tracked: dict[str, str] = {}  # tracked parameters that differ from the pool's defaults
        self.varstate: tuple = ()
        self.backend_pid = 0
        self.backend_key = b""
        self.pending_z = 0  # Sync/Query/FunctionCall sent whose ReadyForQuery has not come back
        self.unsynced = False  # extended-protocol messages sent after the last Sync
        self.status = _I
        self.swallow = 0  # ReadyForQuery replies of the pooler's own queries still to come
        self._internal_done: trio.Event | None = None
        self._internal_error: m.ErrorResponse | None = None
        self.scanner = StreamScanner(RELAY_WANT, pool.pooler.config.settings.max_packet_size)
        now = time.monotonic()
        self.connect_time = self.last_used = self.link_time = now
        self.request_time = now
        self.close_needed = False
        self.close_reason: str | None = None
        self.cancels_in_flight = 0
        self.cancel_hold = False
        self.scope: trio.CancelScope | None = None
        self.release_now = False
        self.drained: trio.Event | None = None  # set when pending_z drops to 0 (a terminating client waits)
        self.query_start = 0.0
        self.xact_start = 0.0

    def __repr__(self) -> str:
        return f"S-{self.id}"

    # ------------------------------------------------------------------ login

    async def login(self, creds: Credentials | None) -> None:
        """Connect and authenticate; on return the server is ready (its ParameterStatus known).

        Errors: PoolerError (``fields`` holds the server's ErrorResponse when it refused us);
        ``auth_error`` attribute tells whether retrying soon is pointless.  The socket is
        closed on any failure, including cancellation.
        """
        pool = self.pool
        s = pool.pooler.config.settings
        hosts = pool.db.host
        host = hosts[pool.host_index % len(hosts)]
        if len(hosts) > 1 and pool.db.load_balance_hosts == "round-robin":
            pool.host_index += 1
        self.addr = (host, pool.db.port)
        try:
            with trio.fail_after(s.server_connect_timeout or _INF):
                self.conn = await open_connection(host, pool.db.port)
                await self._startup(creds)
        except trio.TooSlowError:
            self._close_socket()
            raise PoolerError(f"server connect timeout ({host}:{pool.db.port})", sqlstate.CONNECTION_FAILURE,
                              detail="server_connect_timeout") from None
        except OSError as exc:
            self._close_socket()
            raise PoolerError("pgbouncer cannot connect to server", sqlstate.CONNECTION_FAILURE,
                              detail=str(exc)) from None
        except BaseException:
            self._close_socket()
            raise

    async def _startup(self, creds: Credentials | None) -> None:
        pool = self.pool
        conn = self.conn
        assert conn is not None
        params = {"user": pool.server_user, "database": pool.server_dbname}
        db = pool.db
        for key, name in (("client_encoding", "client_encoding"), ("datestyle", "DateStyle"),
                          ("timezone", "TimeZone"), ("application_name", "application_name")):
            v = getattr(db, key)
            if v:
                params[name] = v
        await conn.send_all(encode(m.StartupMessage(3 << 16, params)))
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
                err = PoolerError(msg.message, msg.sqlstate, fields=dict(msg.fields))
                err.auth_error = msg.sqlstate in AUTH_ERRORS  # type: ignore[attr-defined]
                raise err
            if isinstance(msg, m.AuthenticationOk):
                continue
            if isinstance(msg, m.ParameterStatus):
                self.params[msg.name] = msg.value
            elif isinstance(msg, m.BackendKeyData):
                self.backend_pid, self.backend_key = msg.process_id, msg.secret_key
            elif isinstance(msg, m.ReadyForQuery):
                self.status = ord(msg.status)
                self.frames_leftover = frames.pending()
                if self.frames_leftover:
                    raise PoolerError("server sent data after ReadyForQuery during login", sqlstate.PROTOCOL_VIOLATION)
                return
            elif isinstance(msg, m.NoticeResponse):
                continue
            elif isinstance(msg, m.NegotiateProtocolVersion):
                continue
            elif isinstance(msg, m.AuthenticationCleartextPassword):
                pw = await self._password(creds, "cleartext")
                await conn.send_all(encode(m.PasswordMessage(pw.encode() + b"\0")))
            elif isinstance(msg, m.AuthenticationMD5Password):
                secret = creds.password if creds and creds.password is not None else (creds.md5 if creds else None)
                if secret is None:
                    secret = await self._password(creds, "md5")
                resp = md5_response(pool.server_user, secret, msg.salt)
                await conn.send_all(encode(m.PasswordMessage(resp.encode() + b"\0")))
            elif isinstance(msg, m.AuthenticationSASL):
                if MECHANISM not in msg.mechanisms:
                    raise PoolerError(f"server offers no supported SASL mechanism: {list(msg.mechanisms)}",
                                      sqlstate.FEATURE_NOT_SUPPORTED)
                if creds and creds.password is not None:
                    scram = ScramClient(pool.server_user, password=creds.password)
                elif creds and creds.scram_client_key is not None and creds.scram is not None:
                    scram = ScramClient(pool.server_user, client_key=creds.scram_client_key, secret=creds.scram)
                else:
                    pw = await self._password(creds, "SCRAM")
                    scram = ScramClient(pool.server_user, password=pw)
                await conn.send_all(encode(m.SASLInitialResponse(MECHANISM, scram.client_first().encode())))
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
        err = PoolerError(text, sqlstate.INVALID_PASSWORD)
        err.auth_error = True  # type: ignore[attr-defined]
        return err

    async def _password(self, creds: Credentials | None, method: str) -> str:
        if creds is not None and creds.ask_password is not None:
            pw = await creds.ask_password()
            if pw is not None:
                creds.password = pw
                return pw
        raise self._auth_fail(
            f'server asked for a {method} password for user "{self.pool.server_user}" and the pooler has none '
            "(give it in auth_file, the upstream URL or the [databases] entry)")

    def _close_socket(self) -> None:
        if self.conn is not None:
            self.conn.close()

    # ------------------------------------------------------------------ the relay task

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Read the server until the connection ends; see the module docstring."""
        pool = self.pool
        conn = self.conn
        assert conn is not None
        scanner = self.scanner
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
                    if self.swallow or len(pieces) != 1 or pieces[0][0] != PASS:
                        out = self._inspect(pieces, intact, data)
                    else:
                        out = data if intact else pieces[0][1]
                    client = self.client
                    if out and client is not None:
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
        if scope.cancelled_caught and not self.close_reason:
            reason = "query timeout" if self.pending_z else "server closed"
            if self.pending_z:
                pool.stats.errors["query_timeout"] = pool.stats.errors.get("query_timeout", 0) + 1
        self._finish(reason)

    def _inspect(self, pieces: list[tuple[int, bytes]], intact: bool, data: bytes) -> bytes:
        out: list[bytes] = []
        modified = not intact
        pool = self.pool
        for t, p in pieces:
            if self.swallow:
                modified = True
                if t == _Z:
                    self.status = p[5]
                    self.swallow -= 1
                    if self.swallow == 0:
                        self.scanner.want = RELAY_WANT
                        if self._internal_done is not None:
                            self._internal_done.set()
                elif t == _E:
                    self._internal_error = decode_backend(t, p[5:])  # type: ignore[assignment]
                elif t == _S:
                    self._param_status(p, from_client=False)
                continue
            if t == PASS:
                out.append(p)
                continue
            if t == _Z:
                status = p[5]
                self.status = status
                if self.pending_z:
                    self.pending_z -= 1
                if self.pending_z == 0:
                    if self.drained is not None:
                        self.drained.set()
                    client = self.client
                    if client is not None and client.read_scope is not None:
                        client.read_scope.deadline = client.idle_deadline()
                    if self.scope is not None and pool.query_timeout:
                        self.scope.deadline = _INF
                    now = time.monotonic()
                    if status == _I:
                        pool.stats.xact_count += 1
                        if self.xact_start:
                            pool.stats.xact_time += now - self.xact_start
                            self.xact_start = 0.0
                        if pool.mode != "session" and not self.unsynced and self.client is not None \
                                and not self.client.pinned:
                            self.release_now = True
                    elif pool.mode == "statement" and self.client is not None:
                        # pgbouncer: a transaction block in statement mode closes client and server.
                        modified = True
                        self.client.kill_after = PoolerError(
                            "transaction blocks not allowed in statement pooling mode", sqlstate.PROTOCOL_VIOLATION)
                        self.close_needed = True
                        self.close_reason = "transaction blocks not allowed in statement pooling mode"
                        return b""  # the client gets the error instead of this reply
            elif t == _S:
                self._param_status(p, from_client=self.client is not None)
            elif t == _E:
                if p[5:].find(b"VFATAL\0") >= 0 or p[5:].find(b"SFATAL\0") >= 0:
                    self.close_needed = True
                    self.close_reason = "server sent FATAL"
            out.append(p)
        if not modified:
            return data
        return b"".join(out)

    def _param_status(self, p: bytes, *, from_client: bool) -> None:
        r = Reader(p[5:])
        name, value = r.cstr(), r.cstr()
        self.params[name] = value
        varcache = self.pool.pooler.varcache
        if from_client and self.client is not None:
            varcache.client_changed(self.client, self, name, value)
        elif not self.swallow:
            varcache.server_changed(self, name, value)

    def _release(self) -> None:
        """Transaction/statement mode: the transaction ended, the server goes back to the pool."""
        client = self.client
        if client is not None and client.kill_after is not None:
            return
        pooler = self.pool.pooler
        if pooler.config.settings.server_reset_query_always:
            self.pool.mark_used(self)
            pooler.nursery.start_soon(pooler._reset_server, self)
            return
        self.pool.release(self)

    def _finish(self, reason: str) -> None:
        """The connection is over: close it, tell the linked client, forget the server."""
        pool = self.pool
        client = self.client
        self.state = ServerState.CLOSED
        self._close_socket()
        if self._internal_done is not None:
            self._internal_done.set()
        if self.drained is not None:
            self.drained.set()
        if client is not None:
            client.server_died(self, reason)
        pool.forget(self)
        pool.pooler.servers.discard(self)
        pool.pooler.log_server(self, f"closing because: {reason}")

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

    def expect_internal(self) -> None:
        """The next query sent is the pooler's own: swallow its reply (the caller sends it)."""
        self.swallow += 1
        self.scanner.want = ALL_TYPES
        self._internal_error = None

    async def run_internal(self, sql: str) -> m.ErrorResponse | None:
        """Run ``sql`` on an unlinked server and wait for its ReadyForQuery.

        Returns the ErrorResponse if it failed, else None.  Errors: ConnectionLost
        if the server goes away (its task then cleans up).
        """
        assert self.conn is not None
        self._internal_done = done = trio.Event()
        self.expect_internal()
        await self.conn.send_all(encode(m.Query(sql)))
        await done.wait()
        self._internal_done = None
        if self.state is ServerState.CLOSED:
            raise ConnectionLost("server closed during an internal query")
        return self._internal_error

    def needs_check(self) -> bool:
        s = self.pool.pooler.config.settings
        return bool(s.server_check_query) and time.monotonic() - self.last_used > s.server_check_delay

    async def check(self) -> bool:
        """Run server_check_query; False if the server is not usable."""
        try:
            with trio.fail_after(self.pool.pooler.config.settings.server_connect_timeout or _INF):
                err = await self.run_internal(self.pool.pooler.config.settings.server_check_query)
        except (trio.TooSlowError, ConnectionLost, OSError):
            return False
        self.last_used = time.monotonic()
        return err is None

    async def reset(self) -> bool:
        """Make a server that a client left clean again; False means close it."""
        s = self.pool.pooler.config.settings
        try:
            with trio.fail_after(s.server_connect_timeout or _INF):
                if self.status != _I:
                    if await self.run_internal("ROLLBACK") is not None:
                        return False
                if s.server_reset_query and (self.pool.mode == "session" or s.server_reset_query_always):
                    if await self.run_internal(s.server_reset_query) is not None:
                        return False
                    self.pool.pooler.varcache.server_reset(self)
        except (trio.TooSlowError, ConnectionLost, OSError):
            return False
        return self.status == _I


def param_status_bytes(params: dict[str, str]) -> bytes:
    return b"".join(encode(m.ParameterStatus(k, v)) for k, v in params.items())

