"""The pooler process: listeners, pools, signals (pgbouncer's main.c + pooler.c).

:class:`Pooler` owns everything with one nursery: the accept loops, one task
per client (:func:`.client.serve_client`), one per server connection
(:meth:`.server.Server.run`), the janitor and the signal handler.

Signals: SIGHUP reloads the config file and the auth_file; SIGINT shuts down
gracefully (stop accepting, let running transactions finish, then close); a
second SIGINT, or SIGTERM, shuts down at once.
"""

from __future__ import annotations

import errno
import grp
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from pgbundle.shared import sqlstate
from pgbundle.shared.netio import Conn, set_tcp_options, sock_readable

from . import logs
from .admin import AdminConsole
from .auth import Authenticator, Credentials
from .cancel import CancelRouter
from .client import Client, serve_client
from .config import Config, ConfigError, DatabaseConfig, apply_overrides, load_file, tcp_options
from .guard import guarded
from .janitor import janitor
from .listen import Listeners
from .metrics import MetricsServer
from .objects import PauseState, Pool, PoolerError, ServerState, server_closed
from .prepare import StatementCache
from .server import Server
from .stats import Stats
from .tlsconf import TlsSetup
from .varcache import VarCache

if TYPE_CHECKING:
    from .embedded import EmbeddedServer

log = logging.getLogger("pgbundle.pooler")


class Pooler:
    def __init__(self, config: Config, overrides: dict[str, Any] | None = None,
                 embedded: EmbeddedServer | None = None) -> None:
        self.config = config
        self.embedded = embedded  # EmbeddedServer when no upstream was given
        if embedded is not None:
            embedded.on_restart = self.upstream_back
        self.overrides = overrides or {}
        self.pools: dict[tuple[str, str], Pool] = {}
        self.clients: set[Client] = set()
        self.servers: set[Server] = set()
        self.stats = Stats()
        self.pause = PauseState()
        self.varcache = VarCache(config.settings.ignore_startup_parameters)
        self.cancels = CancelRouter(self)
        self.auth = Authenticator(self)
        self.admin = AdminConsole(self)
        self.statements = StatementCache()
        self.listeners = Listeners(self)
        self.tls = TlsSetup.build(config.settings)  # ConfigError when a TLS setting is unusable
        self.shutting_down = False
        self.draining = False  # SHUTDOWN WAIT_FOR_CLIENTS / SIGTERM: waiting for the clients to leave
        self.nursery: trio.Nursery = None  # type: ignore[assignment]
        self.listen_socks: list[socket.socket] = []
        self.started = time.time()
        self._stop = trio.Event()
        self._graceful = False

    # ------------------------------------------------------------------ lookups

    @property
    def client_count(self) -> int:
        return len(self.clients)

    def find_database(self, name: str) -> DatabaseConfig | None:
        dbs = self.config.databases
        return dbs.get(name) or dbs.get("*")

    def check_client_limits(self, client: Client, db: DatabaseConfig) -> None:
        """max_db_client_connections / max_user_client_connections (pgbouncer >= 1.24)."""
        s = self.config.settings
        max_db = db.max_db_client_connections if db.max_db_client_connections is not None \
            else s.max_db_client_connections
        if max_db and sum(1 for c in self.clients if c.database == client.database) > max_db:
            raise PoolerError("client connections exceeded (max_db_client_connections)",
                              sqlstate.TOO_MANY_CONNECTIONS)
        u = self.config.users.get(client.user)
        max_user = u.max_user_client_connections if (u and u.max_user_client_connections is not None) \
            else s.max_user_client_connections
        if max_user and sum(1 for c in self.clients if c.user == client.user) > max_user:
            raise PoolerError("client connections exceeded (max_user_client_connections)",
                              sqlstate.TOO_MANY_CONNECTIONS)

    def register_client(self, client: Client) -> None:
        self.clients.add(client)

    def get_pool(self, dbname: str, user: str, db: DatabaseConfig) -> Pool:
        key = (dbname, user)
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = Pool(self, dbname, user, db)
        return pool

    # ------------------------------------------------------------------ server connections

    def may_open_server(self, pool: Pool) -> bool:
        """max_db_connections / max_user_connections; closes an idle server elsewhere to make room."""
        s = self.config.settings
        max_db = pool.db.max_db_connections if pool.db.max_db_connections is not None else s.max_db_connections
        u = self.config.users.get(pool.user)
        max_user = u.max_user_connections if (u and u.max_user_connections is not None) else s.max_user_connections
        for limit, same in ((max_db, lambda p: p.dbname == pool.dbname),
                            (max_user, lambda p: p.server_user == pool.server_user)):
            if not limit:
                continue
            pools = [p for p in self.pools.values() if same(p)]
            if sum(p.server_count for p in pools) < limit:
                continue
            victim = next((p for p in pools if p is not pool and p.idle), None)
            if victim is None:
                return False
            victim.idle[0].close("evicted to make room for another pool")
            if sum(p.server_count for p in pools) >= limit:
                return False
        return True

    def upstream_back(self) -> None:
        """The bundled server accepts logins again after a restart: no pool waits out
        server_login_retry for it; queued clients get servers now."""
        for pool in list(self.pools.values()):
            pool.last_login_failed = 0.0
            pool.last_login_error = None
            pool.launch()

    def start_server(self, pool: Pool) -> None:
        server = Server(pool, self)
        pool.add_login(server)
        self.servers.add(server)
        self.nursery.start_soon(guarded, self._server_task, server)

    async def _server_task(self, server: Server, creds: Credentials | None = None, adopted: bool = False) -> None:
        pool = server.pool
        if not adopted:
            creds = self.auth.server_credentials(pool)
            try:
                await server.login(creds)
            except Exception as exc:  # a PoolerError, or a bug: either way this login failed
                if not isinstance(exc, PoolerError):
                    log.exception("%s: internal error during login", server)
                    exc = PoolerError("internal error in the pooler during server login", sqlstate.INTERNAL_ERROR)
                if server.conn is not None:
                    server.conn.close()
                self.servers.discard(server)
                server_closed(server)
                if exc.message == "pgbouncer cannot connect to server" or "connect timeout" in exc.message:
                    # pgbouncer's line, and the reason (which pgbouncer leaves to a separate warning)
                    self.log_server(server, "closing because: connect failed")
                    log.warning("%s: connect failed: %s", server, exc.detail or exc.message)
                else:
                    self.log_server(server, f"login failed: {exc.message}")
                pool.login_failed(server, exc)
                return
        self.log_server(server, "new connection to server")
        async with trio.open_nursery() as n:
            await n.start(server.run)
            if pool.db.connect_query:
                try:
                    err = await server.run_internal(pool.db.connect_query)
                except OSError:
                    err = None
                if err is not None:
                    log.warning("%s: connect_query failed: %s", server, err.message)
            refused = _session_attrs_refusal(pool.db.target_session_attrs, server.params)
            if refused is not None and server.state is not ServerState.CLOSED:
                self.log_server(server, refused)
                # like a server's own refusal: the clients waiting for the pool's first login are told
                fields = sqlstate.error_fields(sqlstate.CONNECTION_FAILURE, refused, "FATAL")
                pool.login_failed(server, PoolerError(refused, sqlstate.CONNECTION_FAILURE, fields=fields))
                server.close(refused)
            elif server.state is not ServerState.CLOSED:
                pool.login_succeeded(server)

    async def verify_upstream(self, client: Client, db: DatabaseConfig, dbname: str, password: str | None,
                              ask: Callable[[], Awaitable[str | None]] | None = None) -> bool:
        """Zero-config auth: can ``client.user`` log in to ``dbname`` (a pool name) of ``db``
        upstream (with ``password``, or asking)?

        A connection that got in joins the pool when it is one (no forced user) and has room.
        Errors: PoolerError when the upstream cannot be reached.
        """
        real = self.get_pool(dbname, db.user or client.user, db)
        forced = db.user is not None and db.user != client.user
        pool = real if not forced else Pool(self, real.dbname, client.user,
                                            msgspec.structs.replace(db, user=None, password=None), register=False)
        server = Server(pool, self)
        creds = Credentials(password=password, ask_password=ask)
        try:
            await server.login(creds)
        except PoolerError as exc:
            if exc.code in (sqlstate.INVALID_PASSWORD, sqlstate.INVALID_AUTHORIZATION_SPECIFICATION):
                # the client is told no more than "password authentication failed"; the log says why
                logs.log_client(self, client, f"login failed: the upstream refused the login: {exc.message}",
                                level=logging.WARNING)
                return False
            raise
        if not forced and real.welcome is None:
            real.welcome = dict(server.params)
            real.welcome_ready.set()
        if not forced and real.server_count < real.server_limit() and not self.shutting_down \
                and self.may_open_server(real):
            real.add_login(server)
            self.servers.add(server)
            self.nursery.start_soon(guarded, self._server_task, server, creds, True)
        else:
            server.close("login check done")
        return True

    # ------------------------------------------------------------------ clients

    def client_gone(self, client: Client, reason: str) -> None:
        self.clients.discard(client)
        self.cancels.unregister(client)
        self.listeners.client_gone(client)
        pool = client.pool
        server = client.server
        if server is not None and pool is not None:
            if server.state is ServerState.CLOSED:
                pool.unlink(server)
            elif server.conv.busy or server.close_needed or client.kill_after is not None:
                server.close("client disconnect while server was not ready")
            elif not server.conv.in_transaction and pool.mode != "session" \
                    and not self.config.settings.server_reset_query_always:
                pool.release(server)
            else:
                pool.mark_used(server)
                self.nursery.start_soon(guarded, self.reset_server, server)
        if pool is not None:
            pool.remove_client(client)
        if client.state is not None:
            self.log_client(client, f"closing because: {reason}", disconnect=True)

    async def reset_server(self, server: Server) -> None:
        ok = await server.reset()
        if server.state is ServerState.CLOSED:
            return
        if ok:
            server.pool.release(server)
        else:
            server.close("server reset failed")

    # ------------------------------------------------------------------ the admin console

    async def admin_login(self, client: Client) -> None:
        await self.admin.login(client)

    async def serve_admin(self, client: Client) -> None:
        await self.admin.serve(client)

    # ------------------------------------------------------------------ logging

    def log_client(self, client: Client, text: str, *, disconnect: bool = False) -> None:
        logs.log_client(self, client, text, disconnect=disconnect)

    def log_server(self, server: Server, text: str) -> None:
        logs.log_server(self, server, text)

    # ------------------------------------------------------------------ config

    def reload(self) -> None:
        """RELOAD / SIGHUP: re-read the config file and the auth_file; apply what can change live."""
        if self.config.source:
            new = load_file(self.config.source)
            new = apply_overrides(new, {k: v for k, v in self.overrides.items() if not k.startswith("_")})
            if self.overrides.get("_databases"):
                new.databases.update(self.overrides["_databases"])
        else:
            new = self.config
        old = self.config.settings
        keep = {"listen_addr": old.listen_addr, "listen_port": old.listen_port, "unix_socket_dir": old.unix_socket_dir}
        new = msgspec.structs.replace(new, settings=msgspec.structs.replace(new.settings, **keep))
        self.config = new
        self.tls = self.tls.rebuilt(new.settings)
        self.auth.reload()
        self.varcache.ignore = {x.lower() for x in new.settings.ignore_startup_parameters}
        for (dbname, _user), pool in list(self.pools.items()):
            db = self.find_database(dbname)
            if db is None:
                continue
            if _connection_of(db) != _connection_of(pool.db):  # pgbouncer: servers of the old entry go
                for srv in list(pool.idle):
                    srv.close("database configuration changed")
                for srv in list(pool.active) + list(pool.used) + list(pool.login):
                    srv.close_needed = True
                    srv.close_reason = "database configuration changed"
            pool.db = db
            pool.configure()
            pool.launch()
        log.info("config reloaded")

    # ------------------------------------------------------------------ listening

    def _bind(self) -> None:
        s = self.config.settings
        addrs = [a.strip() for a in s.listen_addr.split(",") if a.strip()]
        for addr in addrs:
            host = "0.0.0.0" if addr == "*" else addr
            for family, type_, proto, _, sa in socket.getaddrinfo(host, s.listen_port, type=socket.SOCK_STREAM,
                                                                  flags=socket.AI_PASSIVE):
                sock = socket.socket(family, type_, proto)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if s.so_reuseport:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                if s.tcp_defer_accept and hasattr(socket, "TCP_DEFER_ACCEPT"):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 45)  # pgbouncer's fixed 45 s
                try:
                    sock.bind(sa)
                except OSError as exc:
                    sock.close()
                    raise ConfigError(f"cannot listen on {addr}:{s.listen_port}: {exc.strerror}") from None
                sock.listen(s.listen_backlog)
                sock.setblocking(False)
                self.listen_socks.append(sock)
        if s.unix_socket_dir:
            path = os.path.join(s.unix_socket_dir, f".s.PGSQL.{s.listen_port}")
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise ConfigError(f"cannot remove stale socket {path}: {exc.strerror}") from None
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(path)
                os.chmod(path, s.unix_socket_mode)
                if s.unix_socket_group:
                    os.chown(path, -1, grp.getgrnam(s.unix_socket_group).gr_gid)
            except KeyError:
                sock.close()
                raise ConfigError(f"unix_socket_group: no such group: {s.unix_socket_group}") from None
            except OSError as exc:
                sock.close()
                raise ConfigError(f"cannot listen on {path}: {exc.strerror}") from None
            sock.listen(s.listen_backlog)
            sock.setblocking(False)
            self.listen_socks.append(sock)
            self._unix_path = path
        if not self.listen_socks:
            raise ConfigError("nothing to listen on: set listen_addr or unix_socket_dir")

    async def _accept_loop(self, lsock: socket.socket) -> None:
        nursery = self.nursery
        while True:
            try:
                sock, _ = lsock.accept()
            except BlockingIOError:
                try:
                    await sock_readable(lsock)
                except trio.ClosedResourceError:
                    return  # listeners closed: shutting down
                continue
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.error("accept failed: %s; pausing 100 ms", exc.strerror)
                    await trio.sleep(0.1)
                    continue
                if self.shutting_down or exc.errno == errno.EBADF:
                    return
                log.warning("accept failed: %s", exc.strerror)  # e.g. ECONNABORTED: that one connection only
                continue
            set_tcp_options(sock, **tcp_options(self.config.settings))
            nursery.start_soon(serve_client, self, Conn(sock))

    def close_listeners(self) -> None:
        for sock in self.listen_socks:
            try:
                trio.lowlevel.notify_closing(sock)
            except (RuntimeError, ValueError):
                pass
            sock.close()
        self.listen_socks = []
        path = getattr(self, "_unix_path", None)
        if path:
            try:
                os.unlink(path)
            except OSError:
                pass

    # ------------------------------------------------------------------ lifecycle

    async def run(self, task_status: trio.TaskStatus[Pooler] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until shut down.  ``task_status.started()`` once listening."""
        self._bind()
        s = self.config.settings
        metrics = MetricsServer(self, s.metrics_listen) if s.metrics_listen else None
        if s.pidfile:
            _write_pidfile(s.pidfile)
        if s.user:
            _switch_user(s.user)
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                if self.embedded is not None:
                    await nursery.start(self.embedded.run)
                with trio.open_signal_receiver(signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGUSR1,
                                               signal.SIGUSR2) as sigs:
                    nursery.start_soon(self._signals, sigs)
                    for sock in self.listen_socks:
                        nursery.start_soon(self._accept_loop, sock)
                    nursery.start_soon(janitor, self)
                    if metrics is not None:
                        await nursery.start(metrics.run)
                    where = ", ".join(_describe(x) for x in self.listen_socks)
                    log.info("listening on %s", where)
                    print(f"pgbundle pooler listening on {where}", file=sys.stderr, flush=True)
                    tcp = next((x.getsockname() for x in self.listen_socks if x.family != socket.AF_UNIX), None)
                    if tcp is not None:
                        print(f"connect with: psql -h {tcp[0]} -p {tcp[1]} -U postgres postgres", file=sys.stderr,
                              flush=True)
                    task_status.started(self)
                    await self._stop.wait()
                    nursery.cancel_scope.cancel()
        finally:
            self.close_listeners()
            if s.pidfile:
                try:
                    os.unlink(s.pidfile)
                except OSError:
                    pass
            log.info("shutdown complete")

    async def _signals(self, sigs: AsyncIterator[int]) -> None:
        """pgbouncer 1.25's signals: SIGHUP reload; SIGINT safe shutdown (SHUTDOWN WAIT_FOR_SERVERS);
        SIGTERM super safe shutdown (SHUTDOWN WAIT_FOR_CLIENTS); either during a shutdown: at once;
        SIGUSR1 PAUSE; SIGUSR2 RESUME."""
        async for signum in sigs:
            if signum == signal.SIGHUP:
                log.info("got SIGHUP, re-reading config")
                try:
                    self.reload()
                except ConfigError as exc:
                    log.error("RELOAD failed: %s", exc)
            elif signum in (signal.SIGINT, signal.SIGTERM) and (self.shutting_down or self.draining):
                log.info("got %s while shutting down, fast exit", signal.Signals(signum).name)
                self.shutdown_now()
            elif signum == signal.SIGINT:
                log.info("got SIGINT, shutting down, waiting for all servers connections to be released")
                self.nursery.start_soon(self.shutdown_gracefully)
            elif signum == signal.SIGTERM:
                log.info("got SIGTERM, shutting down, waiting for all clients disconnect")
                self.nursery.start_soon(self.shutdown_when_no_clients)
            elif signum == signal.SIGUSR1:
                if self.pause.mode == "none":
                    log.info("got SIGUSR1, pausing all activity")
                    self.pause.pause(None)
                    self.pause.apply(self.pools.values())
                else:
                    log.info("got SIGUSR1, but already paused/suspended")
            elif signum == signal.SIGUSR2:
                log.info("got SIGUSR2, continuing")
                self.pause.resume(None)
                self.pause.apply(self.pools.values())

    def shutdown_now(self) -> None:
        self.shutting_down = True
        for srv in list(self.servers):
            srv.close("pooler shutting down")
        self._stop.set()

    async def shutdown_when_no_clients(self) -> None:
        """SHUTDOWN WAIT_FOR_CLIENTS / SIGTERM: stop accepting, stop once every client has left
        (the clients still connected are served as usual until then)."""
        self.draining = True
        self.close_listeners()
        while any(not c.admin for c in list(self.clients)):
            await trio.sleep(0.1)
        log.info("client connections dropped, exiting")
        self.shutdown_now()

    async def shutdown_gracefully(self) -> None:
        """Stop accepting; close clients as soon as they are not inside a transaction; then stop."""
        self._graceful = True
        self.shutting_down = True
        self.close_listeners()
        err = PoolerError("pooler is shutting down", sqlstate.ADMIN_SHUTDOWN)
        while True:
            for c in list(self.clients):
                if c.server is None and c.state is not None:
                    c.kill(err)
            if not self.clients:
                break
            await trio.sleep(0.05)
        self.shutdown_now()


def _write_pidfile(path: str) -> None:
    """pgbouncer's pidfile: refused while the PID in it is alive; a stale one is overwritten.
    Errors: ConfigError (one line) when it cannot be written."""
    try:
        with open(path) as f:
            old = int(f.read().strip() or 0)
    except (OSError, ValueError):
        old = 0
    if old and old != os.getpid():
        try:
            os.kill(old, 0)  # PermissionError: alive, another user's
            running = True
        except ProcessLookupError:
            running = False
        except PermissionError:
            running = True
        if running:
            raise ConfigError(f"pidfile {path} names a running process ({old}): is another pooler running?")
    try:
        with open(path, "w") as f:
            f.write(f"{os.getpid()}\n")
    except OSError as exc:
        raise ConfigError(f"cannot write pidfile {path}: {exc.strerror}") from None


def _switch_user(name: str) -> None:
    """pgbouncer's ``user`` / ``-u``: after binding, become ``name`` (only root can; being ``name``
    already is fine).  Errors: ConfigError."""
    import pwd

    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise ConfigError(f"user: no such user: {name}") from None
    if os.geteuid() == pw.pw_uid:
        return
    if os.geteuid() != 0:
        raise ConfigError(f"user: cannot switch to {name}: not running as root")
    os.setgroups(os.getgrouplist(name, pw.pw_gid))
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)
    log.info("switched to user %s (uid %d)", name, pw.pw_uid)


def _session_attrs_refusal(wanted: str, params: dict[str, str]) -> str | None:
    """Why a server does not match ``target_session_attrs`` (after login and connect_query), or None."""
    if wanted == "any":
        return None
    standby, read_only = params.get("in_hot_standby"), params.get("default_transaction_read_only")
    if standby is None or (wanted in ("read-write", "read-only") and read_only is None):
        return f"server does not report in_hot_standby/default_transaction_read_only (target_session_attrs={wanted})"
    ok = {"read-write": standby == "off" and read_only == "off", "read-only": standby == "on" or read_only == "on",
          "primary": standby == "off", "standby": standby == "on"}[wanted]
    if ok:
        return None
    return (f"server is not {wanted} (in_hot_standby={standby}, default_transaction_read_only={read_only}; "
            f"target_session_attrs={wanted})")


#: The parts of a [databases] entry a server connection was made with (a change closes them).
_CONNECTION_KEYS = ("host", "port", "dbname", "user", "password", "connect_query", "client_encoding", "datestyle",
                    "timezone", "application_name", "auth_user")


def _connection_of(db: DatabaseConfig) -> tuple[Any, ...]:
    return tuple(getattr(db, k) for k in _CONNECTION_KEYS)


def _describe(sock: socket.socket) -> str:
    name = sock.getsockname()
    if isinstance(name, str):
        return name
    return f"{name[0]}:{name[1]}"
