"""Admin console: the virtual database ``pgbouncer`` (also ``pgbundle``).

pgbouncer's commands (its admin.c and doc/usage.md), with its column names,
column order and counter semantics, so existing pgbouncer tooling and
exporters work unchanged::

    SHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION
    SHOW PEERS|PEER_POOLS
    SHOW FDS|SOCKETS|ACTIVE_SOCKETS|LISTS|MEM|STATE
    SHOW DNS_HOSTS|DNS_ZONES
    SHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS
    SET key = arg
    RELOAD
    PAUSE [<db>]  RESUME [<db>]  DISABLE <db>  ENABLE <db>  RECONNECT [<db>]
    KILL [<db>]  KILL_CLIENT <client_id>  SUSPEND  WAIT_CLOSE [<db>]
    SHUTDOWN  SHUTDOWN WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS

Beyond pgbouncer: ``SHOW LATENCY`` (pgbundle's histograms of query,
transaction and wait times, cumulative per bucket, read by ``pgbundle top``),
and the extended query protocol (Parse/Bind/Describe/Execute/Sync with text or
binary results), so psycopg and asyncpg can read the console.

Access: ``admin_users`` may run everything, ``stats_users`` only SHOW (and
SHOW FDS needs admin, as in pgbouncer); with ``auth_type = any`` every user gets
in as a stats user; user ``pgbouncer`` over the Unix socket, from the OS user the
pooler runs as, is an admin without a password.  Anyone else authenticates, then is
refused at login unless listed.

Pause state (PAUSE, SUSPEND, DISABLE, KILL) lives in :class:`~.objects.PauseState`;
the commands here change it through its methods and :class:`~.objects.Pool`'s.
"""

from __future__ import annotations

import gc
import logging
import re
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from pgbundle.shared import sqlstate, tls
from pgbundle.shared.protocol import decode_frontend, encode, messages as m
from pgbundle.shared.protocol.errors import RemoteProtocolError
from pgbundle.shared.protocol.states import TransactionStatus
from pgbundle.shared.quoting import unquote

from . import logs
from .config import ConfigError, Settings, set_setting
from .hba import is_pooler_os_user
from .janitor import unsuspended
from .objects import ClientState, PoolerError, ServerState
from .stats import BUCKETS, COUNTERS, PoolStats, averages, usec_totals

if TYPE_CHECKING:
    import socket

    from .client import Client
    from .objects import Pool, PoolerHost
    from .server import Server

log = logging.getLogger("pgbundle.pooler")
_READY_IDLE = encode(m.ReadyForQuery(TransactionStatus.IDLE.char))
TEXT, INT8 = 25, 20
ADMIN_DB = ("pgbouncer", "pgbundle")
PGBOUNCER_VERSION = "1.25.0"

#: Settings that only take effect at start (pgbouncer's CF_NO_RELOAD).
NOT_CHANGEABLE = frozenset(("listen_addr", "listen_port", "listen_backlog", "unix_socket_dir", "unix_socket_mode",
                            "so_reuseport", "pidfile", "pkt_buf", "metrics_listen"))
#: pgbouncer answers these SHOW/SET itself, for clients that poke at session settings.
FAKE_PARAMS = {"client_encoding": "UTF-8", "default_transaction_isolation": "read committed",
               "standard_conforming_strings": "on", "datestyle": "ISO", "timezone": "GMT"}

_WORD = r'("(?:[^"]|"")*"|[0-9a-zA-Z_]+)'
_CMD_RX = re.compile(r"^\s*" + _WORD + r"(?:\s+" + _WORD + r")?\s*(?:;\s*)?$", re.S)
_SET_RX = re.compile(r"^\s*set\s+" + _WORD + r"\s*(?:=|\s+to\s+|\s+to$)\s*(?:" + _WORD +
                     r"|('(?:[^']|'')*'))\s*(?:;\s*)?$", re.I | re.S)


def version_text() -> str:
    """What SHOW VERSION answers and ``pgbundle pooler -V`` prints."""
    return f"PgBouncer {PGBOUNCER_VERSION} (pgbundle {pgbundle_version()})"


def pgbundle_version() -> str:
    try:
        return version("pgbundle")
    except PackageNotFoundError:
        return "0+unknown"


def _ts(wall: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(wall))


def _wall(mono: float) -> float:
    return time.time() - (time.monotonic() - mono)


class Result:
    def __init__(self, columns: list[tuple[str, int]], rows: list[list[Any]], tag: str = "SHOW") -> None:
        self.columns = columns
        self.rows = rows
        self.tag = tag

    def encode(self, with_description: bool = True, formats: tuple[int, ...] = ()) -> bytes:
        out = []
        if with_description:
            out.append(self.description(formats))
        types = [t for _, t in self.columns]
        n = len(types)
        fmts = [(formats[i] if len(formats) > 1 else formats[0]) if formats else 0 for i in range(n)]
        for row in self.rows:
            vals: list[bytes | None] = []
            for v, t, f in zip(row, types, fmts):
                if v is None:
                    vals.append(None)
                elif f == 1 and t == INT8:
                    vals.append(struct.pack("!q", int(v)))
                else:
                    vals.append(str(v).encode())
            out.append(encode(m.DataRow(tuple(vals))))
        out.append(encode(m.CommandComplete(self.tag)))
        return b"".join(out)

    def description(self, formats: tuple[int, ...] = ()) -> bytes:
        n = len(self.columns)
        fmts = [(formats[i] if len(formats) > 1 else formats[0]) if formats else 0 for i in range(n)]
        return encode(m.RowDescription(tuple(
            m.FieldDescription(name, type_oid=t, type_size=8 if t == INT8 else -1, format=f)
            for (name, t), f in zip(self.columns, fmts))))


def _own_user(client: Client) -> bool:
    """pgbouncer's rule: user ``pgbouncer`` from the pooler's own OS user, over the Unix socket."""
    return client.user == "pgbouncer" and is_pooler_os_user(client.conn)


def _cols(names: list[str], text: set[str] | frozenset[str]) -> list[tuple[str, int]]:
    return [(c, TEXT if c in text else INT8) for c in names]


class AdminConsole:
    def __init__(self, pooler: PoolerHost) -> None:
        self.pooler = pooler
        self.pause = pooler.pause
        self.stats = PoolStats()  # the admin pool's own counters (SHOW STATS row "pgbouncer")

    def _apply_pause(self) -> None:
        self.pause.apply(self.pooler.pools.values())

    # ------------------------------------------------------------------ login

    def access(self, user: str, own_user: bool) -> str | None:
        """'admin', 'stats' or None (refused); ``own_user``: see :func:`_own_user`."""
        s = self.pooler.config.settings
        if user in s.admin_users or own_user:
            return "admin"
        if user in s.stats_users or s.auth_type == "any":
            return "stats"
        return None

    async def login(self, client: Client) -> None:
        user = client.user
        own = _own_user(client)
        if own:
            self.pooler.log_client(client, "pgbouncer access from unix socket")
        else:
            await self.pooler.auth.authenticate(client, None)  # nothing is told before authentication
        if self.access(user, own) is None:
            raise PoolerError(f'admin console access denied for user "{user}"', sqlstate.INSUFFICIENT_PRIVILEGE)
        client.cancel_key = self.pooler.cancels.register(client)
        params = {"application_name": client.application_name, "client_encoding": "UTF8",
                  "server_encoding": "UTF8",
                  "server_version": f"{PGBOUNCER_VERSION}/bouncer (pgbundle {pgbundle_version()})",
                  "DateStyle": "ISO", "standard_conforming_strings": "on", "integer_datetimes": "on",
                  "TimeZone": "GMT", "is_superuser": "on"}
        pid, key = client.cancel_key
        await client.conn.send_all(
            encode(m.AuthenticationOk())
            + b"".join(encode(m.ParameterStatus(k, v)) for k, v in params.items())
            + encode(m.BackendKeyData(pid, key)) + _READY_IDLE)
        self.stats.client_connect_count += 1

    def is_admin(self, client: Client) -> bool:
        return self.access(client.user, _own_user(client)) == "admin"

    # ------------------------------------------------------------------ serving

    async def serve(self, client: Client) -> None:
        try:
            await self._serve(client)
        finally:
            if self.pause.suspender is client and self.pause.mode == "suspend":
                log.info("admin disappeared when suspended, doing RESUME")
                self.pause.resume(None)
                self._apply_pause()

    async def _serve(self, client: Client) -> None:
        leftover = client.frames.pending()
        frames = client.frames
        if leftover:
            frames.receive_data(leftover)
        pending: list[bytes] = []
        failed = False
        statements: dict[str, str] = {}
        portals: dict[str, tuple[str, tuple[int, ...]]] = {}
        st = self.stats
        while True:
            t, payload = await client.read_message()
            st.client_bytes += len(payload) + 5
            try:
                msg = decode_frontend(t, payload)
            except RemoteProtocolError as exc:
                raise PoolerError(exc.message, exc.sqlstate) from None
            if isinstance(msg, m.Terminate):
                return
            if isinstance(msg, m.Query):
                st.query_count += 1
                st.xact_count += 1
                out = await self.run_query(client, msg.query) + _READY_IDLE
                st.server_bytes += len(out)
                await client.conn.send_all(out)
                continue
            # the extended protocol: Parse/Bind/Describe/Execute/Close/Sync/Flush, no parameters
            if isinstance(msg, m.Sync):
                pending.append(_READY_IDLE)
                out = b"".join(pending)
                st.server_bytes += len(out)
                await client.conn.send_all(out)
                pending = []
                failed = False
                portals.pop("", None)
                continue
            if isinstance(msg, m.Flush):
                await client.conn.send_all(b"".join(pending))
                pending = []
                continue
            if failed:
                continue
            try:
                if isinstance(msg, m.Parse):
                    if any(msg.param_types):
                        raise PoolerError("the admin console takes no parameters", sqlstate.FEATURE_NOT_SUPPORTED)
                    statements[msg.name] = msg.query
                    pending.append(encode(m.ParseComplete()))
                elif isinstance(msg, m.Bind):
                    if msg.statement not in statements:
                        raise PoolerError(f'prepared statement "{msg.statement}" does not exist',
                                          sqlstate.INVALID_SQL_STATEMENT_NAME)
                    if msg.params:
                        raise PoolerError("the admin console takes no parameters", sqlstate.FEATURE_NOT_SUPPORTED)
                    portals[msg.portal] = (statements[msg.statement], tuple(msg.result_formats))
                    pending.append(encode(m.BindComplete()))
                elif isinstance(msg, m.Describe):
                    formats: tuple[int, ...]
                    if msg.kind == "S":
                        query, formats = statements.get(msg.name), ()
                        if query is None:
                            raise PoolerError(f'prepared statement "{msg.name}" does not exist',
                                              sqlstate.INVALID_SQL_STATEMENT_NAME)
                        pending.append(encode(m.ParameterDescription(())))
                    else:
                        if msg.name not in portals:
                            raise PoolerError(f'portal "{msg.name}" does not exist', sqlstate.INVALID_CURSOR_NAME)
                        query, formats = portals[msg.name]
                    shape = self.describe(client, query)
                    pending.append(shape.description(formats) if shape is not None else encode(m.NoData()))
                elif isinstance(msg, m.Execute):
                    if msg.portal not in portals:
                        raise PoolerError(f'portal "{msg.portal}" does not exist', sqlstate.INVALID_CURSOR_NAME)
                    query, formats = portals[msg.portal]
                    st.query_count += 1
                    st.xact_count += 1
                    res = await self._execute(client, query)
                    if isinstance(res, PoolerError):
                        raise res
                    if isinstance(res, Result):
                        pending.append(res.encode(with_description=False, formats=formats))
                    elif res == "":
                        pending.append(encode(m.EmptyQueryResponse()))
                    else:
                        pending.append(encode(m.CommandComplete(res)))
                elif isinstance(msg, m.Close):
                    (statements if msg.kind == "S" else portals).pop(msg.name, None)
                    pending.append(encode(m.CloseComplete()))
                else:
                    raise PoolerError(f"unsupported message in the admin console: {type(msg).__name__}",
                                      sqlstate.FEATURE_NOT_SUPPORTED)
            except PoolerError as exc:
                exc.fatal = False
                pending.append(encode(m.ErrorResponse(exc.error_fields())))
                failed = True

    def describe(self, client: Client, query: str) -> Result | None:
        """The columns a query will return, without running it (SHOW only; other commands: no rows)."""
        verb, arg, _ = self._parse(query)
        if verb in ("SHOW", "SELECT") and arg:
            what = arg.lower()
            if what in FAKE_PARAMS:
                return Result([(what, TEXT)], [])
            fn: Callable[[], Result] | None = getattr(self, "show_" + what, None)
            if fn is not None and what != "help":
                res = fn()
                res.rows = []
                return res
        return None

    async def _execute(self, client: Client, query: str) -> Result | str | PoolerError:
        try:
            return await self.command(client, query)
        except PoolerError as exc:
            exc.fatal = False
            return exc

    async def run_query(self, client: Client, query: str) -> bytes:
        res = await self._execute(client, query)
        if isinstance(res, PoolerError):
            log.error("%s: admin command failed: %s", client, res.message)
            return encode(m.ErrorResponse(res.error_fields()))
        if isinstance(res, Result):
            return res.encode()
        if res == "":
            return encode(m.EmptyQueryResponse())
        return encode(m.CommandComplete(res))

    # ------------------------------------------------------------------ commands

    def _parse(self, query: str) -> tuple[str, str | None, re.Match[str] | None]:
        """(VERB, argument, SET match) as pgbouncer's regexes read a command; VERB '' = empty query."""
        if not query.strip().rstrip(";").strip():
            return "", None, None
        mt = _CMD_RX.match(query)
        if mt:
            arg = mt.group(2)
            return unquote(mt.group(1)).upper(), unquote(arg) if arg is not None else None, None
        ms = _SET_RX.match(query)
        if ms:
            return "SET", None, ms
        return "?", None, None

    async def command(self, client: Client, query: str) -> Result | str:
        """Run one console command.  Errors: PoolerError with PoolerError's default SQLSTATE, 08P01,
        for every failure, as pgbouncer's admin_error() sends them."""
        verb, arg, set_match = self._parse(query)
        if verb == "":
            return ""
        if verb == "?":
            raise PoolerError(f"invalid command '{query.strip()}', use SHOW HELP;")
        if verb in ("SHOW", "SELECT"):
            return await self.show(client, arg, query)
        if verb == "SET":
            assert set_match is not None
            key = unquote(set_match.group(1))
            word, literal = set_match.group(2), set_match.group(3)
            value = unquote(word) if word is not None else unquote(literal, "'") if literal is not None else ""
            return self.cmd_set(client, key, value)
        fn: Callable[[Client, str | None], Awaitable[str]] | None = getattr(self, "cmd_" + verb.lower(), None)
        if fn is None:
            raise PoolerError(f"invalid command '{query.strip()}', use SHOW HELP;")
        if not self.is_admin(client):
            raise PoolerError("admin access needed")
        return await fn(client, arg)

    async def show(self, client: Client, arg: str | None, query: str) -> Result | str:
        if not arg:
            raise PoolerError(f"invalid command '{query.strip()}', use SHOW HELP;")
        what = arg.lower()
        if what in FAKE_PARAMS:
            return Result([(what, TEXT)], [[FAKE_PARAMS[what]]])
        if what == "help":
            await client.conn.send_all(encode(m.NoticeResponse(sqlstate.error_fields(
                "00000", "Console usage", "NOTICE", detail=HELP))))
            return "SHOW"
        if what == "fds" and not self.is_admin(client):
            raise PoolerError("admin access needed")
        show: Callable[[], Result] | None = getattr(self, "show_" + what, None)
        if show is None:
            raise PoolerError(f"invalid command '{query.strip()}', use SHOW HELP;")
        return show()

    def _need_db(self, arg: str | None, verb: str) -> str:
        if not arg:
            raise PoolerError("a database is required")
        if arg in ADMIN_DB:
            raise PoolerError(f"cannot {verb} admin db: {arg}")
        if self.pooler.find_database(arg) is None:
            raise PoolerError(f"no such database: {arg}")
        return arg

    def _pools(self, db: str | None) -> list[Pool]:
        return [pl for pl in list(self.pooler.pools.values()) if db is None or pl.dbname == db]

    @staticmethod
    async def _wait_until(cond: Callable[[], bool], step: float = 0.05) -> None:
        while not cond():
            await trio.sleep(step)

    async def cmd_pause(self, client: Client, arg: str | None) -> str:
        if self.pause.mode != "none":
            raise PoolerError("already suspended/paused")
        if arg:
            db: str | None = self._need_db(arg, "pause")
            log.info("PAUSE '%s' command issued", db)
        else:
            db = None
            log.info("PAUSE command issued")
        self.pause.pause(db)
        self._apply_pause()
        # pgbouncer: PAUSE returns once every server connection has been released (and closed)
        await self._wait_until(lambda: not any(pl.active or pl.used for pl in self._pools(db)))
        return "PAUSE"

    async def cmd_suspend(self, client: Client, arg: str | None) -> str:
        if arg:
            raise PoolerError("SUSPEND takes no argument")
        if self.pause.mode != "none":
            raise PoolerError("already suspended/paused")
        if self.pause.paused_dbs:
            raise PoolerError("cannot suspend with paused databases")
        log.info("SUSPEND command issued")
        self.pause.suspend(client)
        self._apply_pause()
        # pgbouncer: SUSPEND returns once every socket is quiet; the janitor closes, after
        # suspend_timeout, the clients that are not
        await self._wait_until(lambda: not unsuspended(self.pooler))
        return "SUSPEND"

    async def cmd_resume(self, client: Client, arg: str | None) -> str:
        if arg:
            log.info("RESUME '%s' command issued", arg)
            if self.pooler.find_database(arg) is None and arg not in ADMIN_DB:
                raise PoolerError(f"no such database: {arg}")
            if arg not in self.pause.paused_dbs:
                raise PoolerError(f"database {arg} is not paused")
            self.pause.resume(arg)
        else:
            log.info("RESUME command issued")
            if self.pooler.shutting_down:
                raise PoolerError("pooler is shutting down")
            if self.pause.mode == "none" and not self.pause.paused_dbs:
                raise PoolerError("pooler is not paused/suspended")
            self.pause.resume(None)
        self._apply_pause()
        return "RESUME"

    async def cmd_disable(self, client: Client, arg: str | None) -> str:
        db = self._need_db(arg, "disable")
        log.info("DISABLE '%s' command issued", db)
        self.pause.disable(db)
        return "DISABLE"

    async def cmd_enable(self, client: Client, arg: str | None) -> str:
        db = self._need_db(arg, "enable")
        log.info("ENABLE '%s' command issued", db)
        self.pause.enable(db)
        return "ENABLE"

    async def cmd_reconnect(self, client: Client, arg: str | None) -> str:
        db = self._need_db(arg, "reconnect") if arg else None
        log.info("RECONNECT '%s' command issued" % db if db else "RECONNECT command issued")
        for pool in self._pools(db):
            for srv in list(pool.idle):
                srv.close("RECONNECT")
            for srv in list(pool.active) + list(pool.used) + list(pool.login):
                srv.close_needed = True
                srv.close_reason = "RECONNECT"
        return "RECONNECT"

    async def cmd_kill(self, client: Client, arg: str | None) -> str:
        if self.pause.mode != "none":
            raise PoolerError("already suspended/paused")
        db = self._need_db(arg, "kill") if arg else None
        log.info("KILL '%s' command issued" % db if db else "KILL command issued")
        pools = self._pools(db)
        self.pause.pause_dbs([db] if db else [pl.dbname for pl in pools])
        self._apply_pause()
        err = PoolerError("database removed", sqlstate.ADMIN_SHUTDOWN)
        for pool in pools:
            for c in list(pool.clients):
                c.kill(err)
            for srv in list(pool.idle) + list(pool.active) + list(pool.used) + list(pool.login):
                srv.close("database removed")
        return "KILL"

    async def cmd_kill_client(self, client: Client, arg: str | None) -> str:
        try:
            target_id = int(arg or "")
        except ValueError:
            raise PoolerError("invalid client pointer supplied") from None
        target = next((c for c in list(self.pooler.clients)
                       if c.id == target_id and c.state is not ClientState.LOGIN), None)
        if target is None:
            raise PoolerError("client not found")
        log.info("KILL_CLIENT %d command issued", target_id)
        target.kill(PoolerError("admin forced disconnect", sqlstate.ADMIN_SHUTDOWN))
        return "KILL_CLIENT"

    async def cmd_wait_close(self, client: Client, arg: str | None) -> str:
        db = self._need_db(arg, "wait in") if arg else None
        log.info("WAIT_CLOSE '%s' command issued" % db if db else "WAIT_CLOSE command issued")

        def done() -> bool:
            return not any(srv.close_needed for pl in self._pools(db)
                           for srv in list(pl.idle) + list(pl.active) + list(pl.used) + list(pl.login))
        await self._wait_until(done)
        return "WAIT_CLOSE"

    async def cmd_reload(self, client: Client, arg: str | None) -> str:
        if arg:
            raise PoolerError("RELOAD takes no argument")
        log.info("RELOAD command issued")
        try:
            self.pooler.reload()
        except ConfigError as exc:
            log.error("RELOAD failed: %s", exc)
            raise PoolerError("RELOAD failed, see logs for additional details") from None
        logs.reconfigure(self.pooler.config.settings)
        return "RELOAD"

    async def cmd_shutdown(self, client: Client, arg: str | None) -> str:
        p = self.pooler
        mode = (arg or "").upper()
        if mode not in ("", "WAIT_FOR_CLIENTS", "WAIT_FOR_SERVERS"):
            raise PoolerError(f"invalid command 'SHUTDOWN {arg}', use SHOW HELP;")
        if mode == "WAIT_FOR_SERVERS":
            log.info("SHUTDOWN WAIT_FOR_SERVERS command issued")
            p.nursery.start_soon(p.shutdown_gracefully)
        elif mode == "WAIT_FOR_CLIENTS":
            log.info("SHUTDOWN WAIT_FOR_CLIENTS command issued")
            p.nursery.start_soon(p.shutdown_when_no_clients)
        else:
            log.info("SHUTDOWN command issued")
            p.shutdown_now()
        return "SHUTDOWN"

    def cmd_set(self, client: Client, key: str, value: str) -> str:
        p = self.pooler
        if key.lower() in FAKE_PARAMS:
            return "SET"
        if not self.is_admin(client):
            raise PoolerError("admin access needed")
        key = key.lower()
        if key in NOT_CHANGEABLE:
            raise PoolerError(f"SET failed: {key} cannot be changed while running")
        try:
            new = set_setting(p.config.settings, key, value)
        except ConfigError as exc:
            raise PoolerError(f"SET failed: {exc}") from None
        p.config = msgspec.structs.replace(p.config, settings=new)
        for pool in list(p.pools.values()):
            pool.configure()
        logs.reconfigure(new)
        log.info("SET %s=%s", key, value)
        return f"SET {key}={value}"

    # ------------------------------------------------------------------ SHOW

    def show_version(self) -> Result:
        return Result([("version", TEXT)], [[version_text()]])

    def show_state(self) -> Result:
        pm = self.pause.mode
        return Result([("key", TEXT), ("value", TEXT)],
                      [["active", "yes" if pm == "none" else "no"], ["paused", "yes" if pm == "pause" else "no"],
                       ["suspended", "yes" if pm == "suspend" else "no"]])

    @staticmethod
    def _server_kind(s: Server) -> str:
        st = s.state
        if st is ServerState.ACTIVE:
            return "active"
        if st is ServerState.IDLE:
            return "idle"
        if st is ServerState.LOGIN:
            return "new"
        if st is ServerState.USED:
            if s.cancel_hold:
                return "being_canceled"
            return "tested" if s.conv.ops else "used"
        return "closed"

    def show_pools(self) -> Result:
        now = time.monotonic()
        cols = ["database", "user", "cl_active", "cl_waiting", "cl_active_cancel_req", "cl_waiting_cancel_req",
                "sv_active", "sv_active_cancel", "sv_being_canceled", "sv_idle", "sv_used", "sv_tested",
                "sv_login", "maxwait", "maxwait_us", "pool_mode", "load_balance_hosts"]
        admins = sum(1 for c in list(self.pooler.clients) if c.admin and c.state is not ClientState.LOGIN)
        rows = [["pgbouncer", "pgbouncer", admins, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, "statement", None]]
        for pool in list(self.pooler.pools.values()):
            waiting = len(pool.waiting)
            maxwait = now - pool.waiting[0].wait_start if waiting else 0.0
            cl_active = sum(1 for c in list(pool.clients) if c.state is ClientState.ACTIVE)
            kinds = [self._server_kind(s) for s in list(pool.used)]
            rows.append([pool.dbname, pool.user, cl_active, waiting, 0, 0, len(pool.active), 0,
                         kinds.count("being_canceled"), len(pool.idle), kinds.count("used"), kinds.count("tested"),
                         len(pool.login), int(maxwait), int((maxwait % 1) * 1e6), pool.mode,
                         pool.db.load_balance_hosts if len(pool.db.host) > 1 else None])
        return Result(_cols(cols, {"database", "user", "pool_mode", "load_balance_hosts"}), rows)

    def show_peer_pools(self) -> Result:
        return Result(_cols(["peer_id", "cl_active_cancel_req", "cl_waiting_cancel_req", "sv_active_cancel",
                             "sv_login"], set()), [])

    def show_peers(self) -> Result:
        return Result(_cols(["peer_id", "host", "port", "pool_size"], {"host"}), [])

    SOCK_COLS = ["type", "user", "database", "replication", "state", "addr", "port", "local_addr", "local_port",
                 "connect_time", "request_time", "wait", "wait_us", "close_needed", "ptr", "link", "remote_pid", "tls",
                 "application_name", "prepared_statements", "id"]
    SOCK_DEBUG = ["recv_pos", "pkt_pos", "pkt_remain", "send_pos", "send_remain", "pkt_avail", "send_avail"]
    SOCK_TEXT = {"type", "user", "database", "replication", "state", "addr", "local_addr", "connect_time",
                 "request_time", "ptr", "link", "tls", "application_name"}

    @staticmethod
    def _local(sock: socket.socket) -> tuple[str, int]:
        try:
            name = sock.getsockname()
        except OSError:
            return "", 0
        if isinstance(name, tuple):
            return name[0], name[1]
        return "unix", 0

    @staticmethod
    def client_app(c: Client) -> str:
        default = (c.pool.welcome or {}).get("application_name", "") if c.pool is not None else c.application_name
        return c.vars.tracked.get("application_name", default)

    def _client_row(self, c: Client, state: str, now: float, debug: bool) -> list[Any]:
        host, port = c.conn.peer
        laddr, lport = self._local(c.conn.sock)
        wait = now - c.wait_start if c.state is ClientState.WAITING else 0.0
        row = ["C", c.user or "(nouser)", c.database or "(nodb)", "none", state, host, port, laddr, lport,
               _ts(c.connect_wall), _ts(_wall(c.request_time)), int(wait), int((wait % 1) * 1e6), 0,
               logs.ptr(c.id), logs.ptr(c.server.id) if c.server else "", 0, tls.summary(c.conn), self.client_app(c),
               len(c.emu.prepared) + len(c.emu.sql_prepared), c.id]
        if debug:
            row += [0, 0, 0, 0, 0, len(c.frames), 0]
        return row

    def _server_row(self, s: Server, state: str, debug: bool) -> list[Any]:
        host, port = s.addr
        laddr, lport = self._local(s.conn.sock) if s.conn is not None else ("", 0)
        client = s.client
        req = s.link_time if client is not None else s.last_used
        row = ["S", s.pool.server_user, s.pool.dbname, "none", state, host, port, laddr, lport,
               _ts(_wall(s.connect_time)), _ts(_wall(req)), 0, 0, int(s.close_needed), logs.ptr(s.id),
               logs.ptr(client.id) if client is not None else "", s.backend_pid,
               tls.summary(s.conn) if s.conn is not None else "",
               self.client_app(client) if client is not None else "", len(s.statements.lru), s.id]
        if debug:
            row += [0, 0, 0, 0, 0, 0, 0]
        return row

    def _client_state(self, c: Client) -> str | None:
        if c.state is ClientState.WAITING:
            return "waiting"
        if c.state is ClientState.ACTIVE:
            return "active" if c.server is not None else "idle"
        return None

    def show_clients(self) -> Result:
        now = time.monotonic()
        rows = []
        for c in sorted(self.pooler.clients, key=lambda c: c.id):
            state = self._client_state(c)
            if state is not None:
                rows.append(self._client_row(c, state, now, False))
        return Result(_cols(self.SOCK_COLS, self.SOCK_TEXT), rows)

    def _servers(self) -> list[Server]:
        return sorted(self.pooler.servers, key=lambda s: (s.pool.dbname, s.pool.user, s.id))

    def show_servers(self) -> Result:
        rows = [self._server_row(s, self._server_kind(s), False) for s in self._servers()
                if s.state is not ServerState.CLOSED]
        return Result(_cols(self.SOCK_COLS, self.SOCK_TEXT), rows)

    def _sockets(self, active_only: bool) -> Result:
        now = time.monotonic()
        rows = []
        for c in sorted(self.pooler.clients, key=lambda c: c.id):
            state = self._client_state(c)
            state = {"waiting": "cl_waiting", None: "cl_login"}.get(state, "cl_active")
            if active_only and not len(c.frames):
                continue
            rows.append(self._client_row(c, state, now, True))
        for s in self._servers():
            if s.state is ServerState.CLOSED or active_only:
                continue
            kind = self._server_kind(s)
            rows.append(self._server_row(s, "sv_" + ("login" if kind == "new" else kind), True))
        return Result(_cols(self.SOCK_COLS + self.SOCK_DEBUG, self.SOCK_TEXT), rows)

    def show_sockets(self) -> Result:
        return self._sockets(False)

    def show_active_sockets(self) -> Result:
        return self._sockets(True)

    def show_fds(self) -> Result:
        cols = ["fd", "task", "user", "database", "addr", "port", "cancel", "link", "client_encoding",
                "std_strings", "datestyle", "timezone", "password"]
        rows: list[list[Any]] = []
        for sock in list(self.pooler.listen_socks):
            addr, port = self._local(sock)
            rows.append([sock.fileno(), "pooler", None, None, addr, port, 0, 0, None, None, None, None, None])
        for c in sorted(self.pooler.clients, key=lambda c: c.id):
            if c.conn.closed:
                continue
            host, port = c.conn.peer
            ckey = int.from_bytes(struct.pack("!i", c.cancel_key[0]) + (c.cancel_key[1] or b"\0" * 4)[:4], "big")
            link = c.server.conn.sock.fileno() if c.server is not None and c.server.conn is not None else 0
            tr = c.vars.tracked
            rows.append([c.conn.sock.fileno(), "client", c.user, c.database, host, port, ckey, link,
                         tr.get("client_encoding"), tr.get("standard_conforming_strings"), tr.get("DateStyle"),
                         tr.get("TimeZone"), None])
        for s in self._servers():
            if s.conn is None or s.conn.closed:
                continue
            host, port = s.addr
            ckey = int.from_bytes(struct.pack("!i", s.backend_pid) + (s.backend_key or b"\0" * 4)[:4], "big")
            link = s.client.conn.sock.fileno() if s.client is not None and not s.client.conn.closed else 0
            pr = s.params
            rows.append([s.conn.sock.fileno(), "server", s.pool.server_user, s.pool.dbname, host, port, ckey, link,
                         pr.get("client_encoding"), pr.get("standard_conforming_strings"), pr.get("DateStyle"),
                         pr.get("TimeZone"), None])
        return Result(_cols(cols, {"task", "user", "database", "addr", "client_encoding", "std_strings",
                                   "datestyle", "timezone", "password"}), rows)

    def _database_names(self) -> list[str]:
        """Configured databases plus those auto-registered through the ``*`` entry (pgbouncer's autodb)."""
        names = [n for n in self.pooler.config.databases if n != "*"]
        for pool in list(self.pooler.pools.values()):
            if pool.dbname not in names:
                names.append(pool.dbname)
        return names

    def show_databases(self) -> Result:
        cols = ["name", "host", "port", "database", "force_user", "pool_size", "min_pool_size", "reserve_pool",
                "server_lifetime", "pool_mode", "load_balance_hosts", "max_connections", "current_connections",
                "max_client_connections", "current_client_connections", "paused", "disabled"]
        p = self.pooler
        s = p.config.settings
        clients = list(p.clients)
        admins = sum(1 for c in clients if c.admin)
        rows: list[list[Any]] = [["pgbouncer", None, s.listen_port, "pgbouncer", "pgbouncer", 2, 0, 0, 0,
                                  "statement", None, 0, 0, 0, admins, 0, 0]]
        for name in self._database_names():
            db = p.find_database(name)
            if db is None:
                continue
            pools = [pl for pl in list(p.pools.values()) if pl.dbname == name]
            lifetime = db.server_lifetime if db.server_lifetime is not None else s.server_lifetime
            rows.append([name, ",".join(db.host), db.port, db.dbname or name, db.user,
                         db.pool_size if db.pool_size is not None else s.default_pool_size,
                         db.min_pool_size if db.min_pool_size is not None else s.min_pool_size,
                         db.reserve_pool_size if db.reserve_pool_size is not None else s.reserve_pool_size,
                         int(lifetime), db.pool_mode, db.load_balance_hosts if len(db.host) > 1 else None,
                         db.max_db_connections if db.max_db_connections is not None else s.max_db_connections,
                         sum(pl.server_count for pl in pools),
                         db.max_db_client_connections if db.max_db_client_connections is not None
                         else s.max_db_client_connections,
                         sum(1 for c in clients if c.database == name and not c.admin),
                         int(name in self.pause.paused_dbs), int(self.pause.db_disabled(name))])
        return Result(_cols(cols, {"name", "host", "database", "force_user", "pool_mode", "load_balance_hosts"}),
                      rows)

    def show_users(self) -> Result:
        p = self.pooler
        s = p.config.settings
        users = {"pgbouncer"} | {pl.user for pl in list(p.pools.values())} | set(p.config.users) \
            | set(s.admin_users) | set(s.stats_users)
        clients = list(p.clients)
        rows = []
        for u in sorted(users):
            uc = p.config.users.get(u)
            rows.append([u, str(uc.pool_size) if uc and uc.pool_size is not None else "",
                         str(uc.reserve_pool_size) if uc and uc.reserve_pool_size is not None else "",
                         uc.pool_mode if uc else None,
                         uc.max_user_connections if uc and uc.max_user_connections is not None
                         else s.max_user_connections,
                         sum(pl.server_count for pl in list(p.pools.values()) if pl.server_user == u),
                         uc.max_user_client_connections if uc and uc.max_user_client_connections is not None
                         else s.max_user_client_connections,
                         sum(1 for c in clients if c.user == u and c.state is not ClientState.LOGIN)])
        return Result(_cols(["name", "pool_size", "reserve_pool_size", "pool_mode", "max_user_connections",
                             "current_connections", "max_user_client_connections", "current_client_connections"],
                            {"name", "pool_size", "reserve_pool_size", "pool_mode"}), rows)

    def show_lists(self) -> Result:
        p = self.pooler
        clients = list(p.clients)
        rows = [["databases", len(self._database_names()) + 1], ["users", len(self.show_users().rows)],
                ["peers", 0], ["pools", len(p.pools) + 1], ["peer_pools", 0], ["free_clients", 0],
                ["used_clients", len(clients)],
                ["login_clients", sum(1 for c in clients if c.state is ClientState.LOGIN)], ["free_servers", 0],
                ["used_servers", len(p.servers)], ["dns_names", 0], ["dns_zones", 0], ["dns_queries", 0],
                ["dns_pending", 0]]
        return Result([("list", TEXT), ("items", INT8)], rows)

    def show_mem(self) -> Result:
        """pgbouncer shows its slab caches; here: the Python objects behind each list (approximate sizes)."""
        p = self.pooler
        rows = []
        for name, objs in (("user_cache", list({pl.user for pl in p.pools.values()})),
                           ("db_cache", self._database_names()), ("pool_cache", list(p.pools.values())),
                           ("server_cache", list(p.servers)), ("client_cache", list(p.clients))):
            size = max((sys.getsizeof(o) + sum(sys.getsizeof(v) for v in getattr(o, "__dict__", {}).values())
                        for o in objs[:20]), default=0)
            rows.append([name, size, len(objs), 0, size * len(objs)])
        buffered = sum(len(c.frames) for c in list(p.clients))
        rows.append(["iobuf_cache", 0, buffered, 0, buffered])
        rows.append(["gc_objects", 0, len(gc.get_objects()), 0, 0])
        return Result(_cols(["name", "size", "used", "free", "memtotal"], {"name"}), rows)

    def show_dns_hosts(self) -> Result:
        return Result(_cols(["hostname", "ttl", "addrs"], {"hostname", "addrs"}), [])

    def show_dns_zones(self) -> Result:
        return Result(_cols(["zonename", "serial", "count"], {"zonename"}), [])

    def _stat_rows(self) -> list[tuple[str, list[int], list[int]]]:
        """(database, totals, averages) rows; the admin database first, as in pgbouncer."""
        st = self.pooler.stats
        admin_tot = usec_totals(self.stats.snapshot())
        out = [("pgbouncer", admin_tot, averages(admin_tot, [0] * len(COUNTERS), time.monotonic() - st.old_stamp))]
        for db, (tot, avg) in st.rows().items():
            out.append((db, tot, avg))
        return out

    TOTAL_NAMES = ["server_assignment_count", "xact_count", "query_count", "received", "sent", "xact_time",
                   "query_time", "wait_time", "client_parse_count", "server_parse_count", "bind_count",
                   "client_connect_count"]
    AVG_NAMES = ["server_assignment_count", "xact_count", "query_count", "recv", "sent", "xact_time", "query_time",
                 "wait_time", "client_parse_count", "server_parse_count", "bind_count", "client_connect_count"]

    def show_stats(self) -> Result:
        cols = ["database"] + [f"total_{n}" for n in self.TOTAL_NAMES] + [f"avg_{n}" for n in self.AVG_NAMES]
        return Result(_cols(cols, {"database"}), [[db] + tot + avg for db, tot, avg in self._stat_rows()])

    _SUB_NAMES = ["server_assignment_count", "xact_count", "query_count", "bytes_received", "bytes_sent",
                  "xact_time", "query_time", "wait_time"]

    def show_stats_totals(self) -> Result:
        cols = ["database"] + self._SUB_NAMES + ["client_parse_count", "server_parse_count", "bind_count",
                                                 "client_connect_count"]
        return Result(_cols(cols, {"database"}), [[db] + tot for db, tot, _ in self._stat_rows()])

    def show_stats_averages(self) -> Result:
        cols = ["database"] + self._SUB_NAMES + ["avg_client_parse_count", "avg_server_parse_count",
                                                 "avg_bind_count", "client_connect_count"]
        return Result(_cols(cols, {"database"}), [[db] + avg for db, _, avg in self._stat_rows()])

    def show_totals(self) -> Result:
        rows = self._stat_rows()
        tot = [sum(r[1][i] for r in rows) for i in range(len(COUNTERS))]
        st = self.pooler.stats
        old = [0] * len(COUNTERS)

        zero = tuple(0 for _ in COUNTERS)
        for key in list(st.pools):
            o = usec_totals(st.older.get(key, zero))
            old = [a + b for a, b in zip(old, o)]
        avg = averages(tot, old, time.monotonic() - st.old_stamp)
        names = ["server_assignment_count", "xact_count", "query_count", "client_bytes", "server_bytes",
                 "xact_time", "query_time", "wait_time", "ps_client_parse_count", "ps_server_parse_count",
                 "ps_bind_count", "client_connect_count"]
        out = [[f"total_{n}", v] for n, v in zip(names, tot)] + [[f"avg_{n}", v] for n, v in zip(names, avg)]
        return Result([("name", TEXT), ("value", INT8)], out)

    def show_latency(self) -> Result:
        """pgbundle: cumulative histogram buckets per pool (kind = query | xact | wait; le in seconds)."""
        rows = []
        les = [repr(b) for b in BUCKETS] + ["+Inf"]
        for (db, user), st in list(self.pooler.stats.pools.items()):
            for kind, hist, zeros in (("query", st.query_hist, 0), ("xact", st.xact_hist, 0),
                                      ("wait", st.wait_hist, max(0, st.server_assignment_count - st.wait_count))):
                for le, c in zip(les, hist.cumulative(zeros)):
                    rows.append([db, user, kind, le, c])
        return Result(_cols(["database", "user", "kind", "le", "count"], {"database", "user", "kind", "le"}), rows)

    def show_config(self) -> Result:
        rows = []
        defaults = msgspec.to_builtins(Settings())
        for k, v in msgspec.to_builtins(self.pooler.config.settings).items():
            rows.append([k, _config_text(k, v), _config_text(k, defaults.get(k)),
                         "no" if k in NOT_CHANGEABLE else "yes"])
        return Result([("key", TEXT), ("value", TEXT), ("default", TEXT), ("changeable", TEXT)], rows)


def _config_text(key: str, v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, list):
        return ",".join(v)
    if isinstance(v, bool):
        return str(int(v))
    if key == "unix_socket_mode" and isinstance(v, int):
        return f"0{v:o}"
    if isinstance(v, float):
        return str(int(v)) if v == int(v) else repr(v)
    return str(v)


HELP = """
\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION
\tSHOW PEERS|PEER_POOLS
\tSHOW FDS|SOCKETS|ACTIVE_SOCKETS|LISTS|MEM|STATE
\tSHOW DNS_HOSTS|DNS_ZONES
\tSHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS
\tSHOW LATENCY
\tSET key = arg
\tRELOAD
\tPAUSE [<db>]
\tRESUME [<db>]
\tDISABLE <db>
\tENABLE <db>
\tRECONNECT [<db>]
\tKILL [<db>]
\tKILL_CLIENT <client_id>
\tSUSPEND
\tSHUTDOWN
\tSHUTDOWN WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS
\tWAIT_CLOSE [<db>]"""
