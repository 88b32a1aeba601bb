"""Pools and every state change of a client or server connection (pgbouncer's objects.c).

A connection's state lives in one place -- its ``state`` field plus the pool
list it sits on -- and changes only through the functions in this module:

    client: LOGIN -> ACTIVE <-> WAITING        (ACTIVE = logged in, linked or not)
                   -> CLOSED
    server: LOGIN -> IDLE -> ACTIVE -> IDLE    (transaction/statement: at ReadyForQuery 'I')
                          -> USED -> IDLE      (being reset / checked)
                   -> CLOSED

``Pool.idle`` is a LIFO stack (pgbouncer's default; FIFO with
``server_round_robin``), except that a client gets back the server it had last when that
one is idle (its settings and prepared statements need no re-sync); ``Pool.waiting`` is a FIFO queue, so clients are
served in arrival order.  A server released while clients wait goes straight to
the first of them.  Everything here runs in the pooler's one trio thread: no
locks, and no awaits between a check and the state change it guards.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Protocol

import trio

from pgbundle.shared import sqlstate

from .stats import PoolStats

if TYPE_CHECKING:
    import socket

    from .auth import Authenticator
    from .cancel import CancelRouter
    from .client import Client
    from .config import Config, DatabaseConfig
    from .listen import Listeners
    from .prepare import StatementCache
    from .server import Server
    from .stats import Stats
    from .tlsconf import TlsSetup
    from .varcache import VarCache, VarState

log = logging.getLogger("pgbundle.pooler")


class ClientState(enum.Enum):
    LOGIN = "login"
    ACTIVE = "active"
    WAITING = "waiting"
    CLOSED = "closed"


class ServerState(enum.Enum):
    LOGIN = "login"
    IDLE = "idle"
    ACTIVE = "active"
    USED = "used"
    CLOSED = "closed"


class PoolHost(Protocol):
    """What a :class:`Pool` needs from the pooler that owns it (``main.Pooler`` is one)."""

    config: Config
    stats: Stats
    pause: PauseState
    shutting_down: bool

    def may_open_server(self, pool: Pool) -> bool: ...

    def start_server(self, pool: Pool) -> None: ...


class PoolerHost(PoolHost, Protocol):
    """What the connection modules, the janitor, the admin console and the metrics read
    from the pooler and ask it to do.  Nothing imports ``main``: they see it as this.

    ``pools``, ``clients`` and ``servers`` are the pooler's registry, read here and
    changed through :class:`Pool` methods and the pooler's own.
    """

    pools: dict[tuple[str, str], Pool]
    clients: set[Client]
    servers: set[Server]
    varcache: VarCache
    statements: StatementCache
    auth: Authenticator
    cancels: CancelRouter
    listeners: Listeners
    tls: TlsSetup
    nursery: trio.Nursery
    listen_socks: list[socket.socket]
    started: float

    @property
    def client_count(self) -> int: ...

    def find_database(self, name: str) -> DatabaseConfig | None: ...

    def check_client_limits(self, client: Client, db: DatabaseConfig) -> None: ...

    def get_pool(self, dbname: str, user: str, db: DatabaseConfig) -> Pool: ...

    def register_client(self, client: Client) -> None: ...

    def client_gone(self, client: Client, reason: str) -> None: ...

    async def reset_server(self, server: Server) -> None: ...

    async def verify_upstream(self, client: Client, db: DatabaseConfig, dbname: str, password: str | None,
                              ask: Callable[[], Awaitable[str | None]] | None = None) -> bool: ...

    async def admin_login(self, client: Client) -> None: ...

    async def serve_admin(self, client: Client) -> None: ...

    def log_client(self, client: Client, text: str, *, disconnect: bool = False) -> None: ...

    def log_server(self, server: Server, text: str) -> None: ...

    def reload(self) -> None: ...

    def close_listeners(self) -> None: ...

    def shutdown_now(self) -> None: ...

    async def shutdown_gracefully(self) -> None: ...

    async def shutdown_when_no_clients(self) -> None: ...


class PauseState:
    """PAUSE / SUSPEND / RESUME / DISABLE / ENABLE / KILL state (pgbouncer's cf_pause_mode and
    per-database db_paused / db_disabled).  The admin console changes it only through these
    methods; :meth:`db_paused` is what a new :class:`Pool` starts from, :meth:`db_disabled`
    what a new client login checks."""

    def __init__(self) -> None:
        self.mode = "none"  # none | pause | suspend
        self.paused_dbs: set[str] = set()
        self.disabled_dbs: set[str] = set()
        self.suspender: Client | None = None  # the admin client that ran SUSPEND
        self.suspend_start = 0.0  # monotonic time of SUSPEND (suspend_timeout counts from it)

    def db_paused(self, dbname: str) -> bool:
        return self.mode != "none" or dbname in self.paused_dbs

    def db_disabled(self, dbname: str) -> bool:
        return dbname in self.disabled_dbs

    def pause(self, db: str | None) -> None:
        if db:
            self.paused_dbs.add(db)
        else:
            self.mode = "pause"

    def pause_dbs(self, dbs: Iterable[str]) -> None:
        self.paused_dbs.update(dbs)

    def suspend(self, admin: Client) -> None:
        self.mode = "suspend"
        self.suspender = admin
        self.suspend_start = time.monotonic()

    def resume(self, db: str | None) -> None:
        if db:
            self.paused_dbs.discard(db)
        else:
            self.mode = "none"
            self.suspender = None
            self.paused_dbs.clear()

    def disable(self, db: str) -> None:
        self.disabled_dbs.add(db)

    def enable(self, db: str) -> None:
        self.disabled_dbs.discard(db)

    def apply(self, pools: Iterable[Pool]) -> None:
        """Bring every pool's ``paused`` flag in line; resumed pools serve their waiting clients."""
        for pool in list(pools):
            pool.set_paused(self.db_paused(pool.dbname))


class PoolerError(Exception):
    """An error the pooler reports to one client as an ErrorResponse.

    ``fatal`` errors close the client connection after the message.
    """

    def __init__(self, message: str, code: str = sqlstate.PROTOCOL_VIOLATION, *, fatal: bool = True,
                 detail: str | None = None, fields: dict[str, str] | None = None, auth_error: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.fatal = fatal
        self.detail = detail
        self.fields = fields  # a server's ErrorResponse fields, passed on as they are
        self.auth_error = auth_error  # a server login refused in a way retrying soon will not fix

    def error_fields(self) -> dict[str, str]:
        if self.fields is not None:
            return self.fields
        sev = "FATAL" if self.fatal else "ERROR"
        return sqlstate.error_fields(self.code, self.message, sev, detail=self.detail)


class Pool:
    """The server connections of one (database, user) pair and the clients that use them."""

    def __init__(self, pooler: PoolHost, dbname: str, user: str, db: DatabaseConfig, *, register: bool = True) -> None:
        self.pooler = pooler
        self.dbname = dbname  # the name clients use
        self.user = user  # the client user (key)
        self.db = db
        self.idle: list[Server] = []
        self.active: set[Server] = set()
        self.used: set[Server] = set()
        self.login: set[Server] = set()
        self.waiting: deque[Client] = deque()
        self.clients: set[Client] = set()
        self.welcome: dict[str, str] | None = None  # ParameterStatus set of a fresh server connection
        self.welcome_ready = trio.Event()
        self.welcome_cache: dict[VarState, bytes] = {}  # client varstate -> encoded ParameterStatus set
        self.last_login_failed = 0.0  # monotonic time of the last failed server login, 0 = none
        self.last_login_error: PoolerError | None = None
        self.paused = pooler.pause.db_paused(dbname)  # PAUSE/KILL db (admin console) covers new pools too
        self.host_index = 0
        self.empty_since = 0.0  # monotonic time since when it has had no client and no server (.janitor)
        self.configure()
        # statistics (SHOW STATS)
        self.stats = pooler.stats.for_pool(self) if register else PoolStats()

    def configure(self) -> None:
        """(Re)compute the effective limits from the current configuration."""
        s = self.pooler.config.settings
        db = self.db
        self.server_user = db.user or self.user
        self.server_dbname = db.dbname or self.dbname
        # [users] settings are the login user's: a forced user's, not the client's (pgbouncer)
        u = self.pooler.config.users.get(db.user or self.user)
        self.mode = (u.pool_mode if u is not None else None) or db.pool_mode or s.pool_mode
        self.pool_size = u.pool_size if (u is not None and u.pool_size is not None) else (
            db.pool_size if db.pool_size is not None else s.default_pool_size)
        if self.pool_size == 0:
            self.pool_size = 1 << 30  # 0 = unlimited (pgbouncer >= 1.24)
        self.min_pool_size = db.min_pool_size if db.min_pool_size is not None else s.min_pool_size
        self.reserve_size = u.reserve_pool_size if (u is not None and u.reserve_pool_size is not None) else (
            db.reserve_pool_size if db.reserve_pool_size is not None else s.reserve_pool_size)
        self.query_wait_timeout = db.query_wait_timeout if db.query_wait_timeout is not None else s.query_wait_timeout
        self.server_lifetime = db.server_lifetime if db.server_lifetime is not None else s.server_lifetime
        self.query_timeout = u.query_timeout if (u is not None and u.query_timeout is not None) else s.query_timeout
        self.idle_transaction_timeout = u.idle_transaction_timeout if (
            u is not None and u.idle_transaction_timeout is not None) else s.idle_transaction_timeout
        self.client_idle_timeout = u.client_idle_timeout if (
            u is not None and u.client_idle_timeout is not None) else s.client_idle_timeout
        self.transaction_timeout = u.transaction_timeout if (
            u is not None and u.transaction_timeout) else s.transaction_timeout
        if u is not None and u.query_wait_timeout is not None and u.query_wait_timeout >= 0:
            self.query_wait_timeout = u.query_wait_timeout  # pgbouncer: the user's wins over the database's

    # ------------------------------------------------------------------ counts

    @property
    def server_count(self) -> int:
        return len(self.idle) + len(self.active) + len(self.used) + len(self.login)

    def __repr__(self) -> str:
        return f"<Pool {self.dbname}/{self.user}>"

    def login_failing(self) -> bool:
        """pgbouncer's fast-fail: no servers, and the last login failed less than server_login_retry ago."""
        if not self.last_login_failed or self.server_count:
            return False
        return time.monotonic() - self.last_login_failed < self.pooler.config.settings.server_login_retry

    def set_paused(self, paused: bool) -> None:
        """PAUSE/RESUME: a resumed pool hands its idle servers to the clients waiting."""
        if self.paused == paused:
            return
        self.paused = paused
        if not paused:
            while self.idle and self.waiting:
                self.release(self.idle.pop())
            self.launch()

    # ------------------------------------------------------------------ clients

    def add_client(self, client: Client) -> None:
        self.clients.add(client)
        client.pool = self
        client.state = ClientState.ACTIVE
        self.stats.client_connect_count += 1

    def remove_client(self, client: Client) -> None:
        self.clients.discard(client)
        self._unqueue(client)
        client.state = ClientState.CLOSED

    def _unqueue(self, client: Client) -> None:
        if client.state is ClientState.WAITING:
            try:
                self.waiting.remove(client)
            except ValueError:
                pass

    async def acquire(self, client: Client) -> Server:
        """Link ``client`` to a server connection, waiting in FIFO order if none is free.

        Errors: PoolerError -- query_wait_timeout, the pool's logins failing, or the
        server's own login error.  Cancellation leaves the client unlinked.
        """
        while self.idle and not self.waiting and not self.paused:
            server = self._pick_idle(client)
            if server.needs_check():
                self.used.add(server)
                server.state = ServerState.USED
                ok = await server.check()
                self.used.discard(server)
                if not ok or server.state is ServerState.CLOSED:
                    server.close("server check failed")
                    continue
                if self.waiting or self.paused:  # someone queued while we checked: keep order
                    self.release(server)
                    break
            self._link(client, server)
            return server
        if self.server_count == 0 and self.login_failing():
            raise PoolerError("server login has been failing, try again later (server_login_retry)",
                              sqlstate.CONNECTION_FAILURE,
                              detail=self.last_login_error.message if self.last_login_error else None)
        client.state = ClientState.WAITING
        client.wait_start = time.monotonic()
        client.wait_error = None
        client.wait_notified = False
        client.wait_task = trio.lowlevel.current_task()
        self.waiting.append(client)
        self.launch()

        def abort(_raise_cancel: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:  # cancelled while queued
            client.wait_task = None
            if client.state is ClientState.WAITING:
                self._unqueue(client)
                client.state = ClientState.ACTIVE
            return trio.lowlevel.Abort.SUCCEEDED

        # Parked until _wake: a server handed over, an error, or query_wait_timeout (the janitor).
        try:
            await trio.lowlevel.wait_task_rescheduled(abort)
        finally:
            self.stats.add_wait(time.monotonic() - client.wait_start)
        if client.server is not None:
            return client.server
        raise client.wait_error or PoolerError("query_wait_timeout", sqlstate.PROTOCOL_VIOLATION)

    @staticmethod
    def _wake(client: Client) -> None:
        task = client.wait_task
        if task is not None:
            client.wait_task = None
            trio.lowlevel.reschedule(task)

    def expire_waiting(self, now: float) -> None:
        """query_wait_timeout for the clients queued longest (the janitor calls this)."""
        timeout = self.query_wait_timeout
        if not timeout:
            return
        while self.waiting and now - self.waiting[0].wait_start >= timeout:
            c = self.waiting.popleft()
            c.state = ClientState.ACTIVE
            c.wait_error = PoolerError("query_wait_timeout", sqlstate.PROTOCOL_VIOLATION,
                                       detail=self.last_login_error.message if self.last_login_error else None)
            self._wake(c)

    def _pick_idle(self, client: Client) -> Server:
        """The idle server ``client`` had last, if it is idle (its settings and prepared
        statements are already there: no re-sync), else the top of the LIFO stack."""
        last = client.last_server
        if last is not None and last.state is ServerState.IDLE and last.pool is self \
                and not self.pooler.config.settings.server_round_robin:
            if self.idle[-1] is last:
                return self.idle.pop()
            self.idle.remove(last)
            return last
        return self.idle.pop()

    def _link(self, client: Client, server: Server) -> None:
        self.active.add(server)
        server.state = ServerState.ACTIVE
        server.client = client
        client.last_server = server
        server.link_time = time.monotonic()
        client.server = server
        client.state = ClientState.ACTIVE
        self.stats.server_assignment_count += 1

    def fail_waiting(self, error: PoolerError) -> None:
        """Wake every waiting client with ``error`` (logins failing with no server left)."""
        while self.waiting:
            c = self.waiting.popleft()
            c.state = ClientState.ACTIVE
            c.wait_error = error
            self._wake(c)

    # ------------------------------------------------------------------ servers

    def add_login(self, server: Server) -> None:
        """A server connection being opened for this pool (counts toward its size)."""
        self.login.add(server)

    def unlink(self, server: Server) -> None:
        client = server.client
        if client is not None:
            client.server = None
            server.client = None
        self.active.discard(server)

    def release(self, server: Server) -> None:
        """Give a clean server back: to the first waiting client, else to the idle list.

        The caller has checked that it is clean (ReadyForQuery 'I', nothing pending).
        """
        self.unlink(server)
        self.used.discard(server)
        self.login.discard(server)
        if server.state is ServerState.CLOSED:
            return
        now = time.monotonic()
        if server.close_needed or (self.server_lifetime and now - server.connect_time > self.server_lifetime):
            server.close("server lifetime over" if not server.close_needed else server.close_reason or "close needed")
            return
        if server.cancels_in_flight:  # parked until the cancel has reached the server
            server.state = ServerState.USED
            server.cancel_hold = True
            self.used.add(server)
            return
        server.last_used = now
        if self.waiting and not self.paused:
            client = self.waiting.popleft()
            self._link(client, server)
            self._wake(client)
            return
        server.state = ServerState.IDLE
        if self.pooler.config.settings.server_round_robin:
            self.idle.insert(0, server)
        else:
            self.idle.append(server)

    def mark_used(self, server: Server) -> None:
        """A server that needs a reset or a check before reuse."""
        self.unlink(server)
        server.state = ServerState.USED
        self.used.add(server)

    def forget(self, server: Server) -> None:
        """Drop a closed server from every list."""
        self.unlink(server)
        if server in self.idle:
            self.idle.remove(server)
        self.used.discard(server)
        self.login.discard(server)
        server.state = ServerState.CLOSED
        if self.waiting and not self.pooler.shutting_down:
            self.launch()

    def server_limit(self) -> int:
        """How many server connections this pool may have right now (pool size, plus the reserve
        when a client has waited longer than reserve_pool_timeout)."""
        limit = self.pool_size
        if self.reserve_size and self.waiting:
            waited = time.monotonic() - self.waiting[0].wait_start
            if waited >= self.pooler.config.settings.reserve_pool_timeout:
                limit += self.reserve_size
        return limit

    def launch(self, *, minimum: int = 0) -> None:
        """Open server connections for the clients waiting (and up to ``minimum`` in all), within limits.

        Connections already logging in count as coming for a waiting client.
        """
        if self.pooler.shutting_down or self.paused:
            return
        if self.last_login_failed and time.monotonic() - self.last_login_failed < (
                self.pooler.config.settings.server_login_retry):
            return  # the janitor tries again once server_login_retry has passed
        limit = self.server_limit()
        need = max(len(self.waiting) - len(self.login), minimum - self.server_count)
        while need > 0 and self.server_count < limit:
            if not self.pooler.may_open_server(self):
                break
            self.pooler.start_server(self)
            need -= 1

    def login_succeeded(self, server: Server) -> None:
        self.login.discard(server)
        self.last_login_failed = 0.0
        self.last_login_error = None
        if self.welcome is None:
            self.welcome = dict(server.params)
            self.welcome_ready.set()
        server.connect_time = time.monotonic()
        self.release(server)

    def login_failed(self, server: Server | None, error: PoolerError) -> None:
        if server is not None:
            self.login.discard(server)
        self.last_login_failed = time.monotonic()
        self.last_login_error = error
        # pgbouncer 1.25 (server.c, kill_pool_logins): only a server's ErrorResponse to the first
        # login of a pool fails the clients waiting for it (they wait for the welcome message, which
        # nobody can give them).  A connect failure, or any failure once the pool has logged in
        # (the upstream in crash recovery: 57P03), leaves the queue alone: the janitor retries after
        # server_login_retry and query_wait_timeout ends a wait that lasts too long.  New requests
        # meanwhile fail fast in acquire() while no server is left (pgbouncer's check_fast_fail).
        if self.welcome is None and error.fields is not None:
            self.fail_waiting(error)


# ---------------------------------------------------------------------- outside any pool list


def client_logged_in(client: Client) -> None:
    """Login done (an admin console client has no pool): LOGIN -> ACTIVE."""
    client.state = ClientState.ACTIVE


def server_closed(server: Server) -> None:
    """The connection is over (its pool forgets it next, see :meth:`Pool.forget`)."""
    server.state = ServerState.CLOSED
