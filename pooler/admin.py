"""Admin console: the virtual database ``pgbouncer`` (also ``pgbundle``).

pgbouncer's commands with pgbouncer's column names and order (doc/usage.md),
over the simple query protocol (and the extended one, for drivers that only
speak it).  ``admin_users`` may run everything, ``stats_users`` only SHOW;
anyone else is refused.
"""

from __future__ import annotations

import logging
import re
import time
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import msgspec

from pgbundle.shared import sqlstate
from pgbundle.shared.protocol import decode_frontend, encode, messages as m
from pgbundle.shared.protocol.errors import RemoteProtocolError

from .config import ConfigError, set_setting
from .objects import PoolerError

if TYPE_CHECKING:
    from .client import Client
    from .main import Pooler

log = logging.getLogger("pgbundle.pooler")
TEXT, INT8 = 25, 20


def _version() -> str:
    try:
        return version("pgbundle")
    except PackageNotFoundError:
        return "0+unknown"


def _ts(wall: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(wall))


class Result:
    def __init__(self, columns: list[tuple[str, int]], rows: list[list[Any]], tag: str | None = None) -> None:
        self.columns = columns
        self.rows = rows
        self.tag = tag or f"SHOW"

    def encode(self, with_description: bool = True) -> bytes:
        out = []
        if with_description:
            out.append(self.description())
        for row in self.rows:
            out.append(encode(m.DataRow(tuple(None if v is None else str(v).encode() for v in row))))
        out.append(encode(m.CommandComplete(self.tag)))
        return b"".join(out)

    def description(self) -> bytes:
        return encode(m.RowDescription(tuple(
            m.FieldDescription(name, type_oid=t, type_size=8 if t == INT8 else -1) for name, t in self.columns)))


class AdminConsole:
    def __init__(self, pooler: Pooler) -> None:
        self.pooler = pooler

    # ------------------------------------------------------------------ login

    async def login(self, client: Client) -> None:
        s = self.pooler.config.settings
        user = client.user
        if user not in s.admin_users and user not in s.stats_users and not (
                user == "pgbouncer" and client.conn.is_unix):
            raise PoolerError(f'admin console access denied for user "{user}"',
                              sqlstate.INSUFFICIENT_PRIVILEGE)
        if not (user == "pgbouncer" and client.conn.is_unix):
            await self.pooler.auth.authenticate(client, None)
        client.cancel_key = self.pooler.cancels.register(client)
        params = {"application_name": client.application_name, "client_encoding": "UTF8",
                  "server_encoding": "UTF8", "server_version": "1.18.0/bouncer (pgbundle " + _version() + ")",
                  "DateStyle": "ISO", "standard_conforming_strings": "on", "integer_datetimes": "on",
                  "TimeZone": "UTC"}
        pid, key = client.cancel_key
        await client.conn.send_all(
            encode(m.AuthenticationOk())
            + b"".join(encode(m.ParameterStatus(k, v)) for k, v in params.items())
            + encode(m.BackendKeyData(pid, key)) + b"Z\0\0\0\5I")

    def is_admin(self, client: Client) -> bool:
        s = self.pooler.config.settings
        return client.user in s.admin_users or (client.user == "pgbouncer" and client.conn.is_unix)

    # ------------------------------------------------------------------ serving

    async def serve(self, client: Client) -> None:
        leftover = client.frames.pending()
        frames = client.frames
        if leftover:
            frames.receive_data(leftover)
        pending: list[bytes] = []
        failed = False
        stmt: str | None = None
        while True:
            t, payload = await client.read_message()
            try:
                msg = decode_frontend(t, payload)
            except RemoteProtocolError as exc:
                raise PoolerError(exc.message, exc.sqlstate) from None
            if isinstance(msg, m.Terminate):
                return
            if isinstance(msg, m.Query):
                await client.conn.send_all(await self.run_query(client, msg.query) + b"Z\0\0\0\5I")
                continue
            # extended protocol: Parse/Bind/Describe/Execute/Sync, no parameters
            if isinstance(msg, m.Sync):
                pending.append(b"Z\0\0\0\5I")
                await client.conn.send_all(b"".join(pending))
                pending = []
                failed = False
                continue
            if failed:
                continue
            if isinstance(msg, m.Parse):
                stmt = msg.query
                pending.append(encode(m.ParseComplete()))
            elif isinstance(msg, m.Bind):
                pending.append(encode(m.BindComplete()))
            elif isinstance(msg, m.Describe):
                if msg.kind == "S":
                    pending.append(encode(m.ParameterDescription(())))
                res = self._result_only(client, stmt or "")
                pending.append(res.description() if isinstance(res, Result) and res.columns else encode(m.NoData()))
            elif isinstance(msg, m.Execute):
                res = await self._execute(client, stmt or "")
                if isinstance(res, PoolerError):
                    pending.append(encode(m.ErrorResponse(res.error_fields())))
                    failed = True
                elif isinstance(res, Result):
                    pending.append(res.encode(with_description=False))
                else:
                    pending.append(encode(m.CommandComplete(res)))
            elif isinstance(msg, m.Close):
                pending.append(encode(m.CloseComplete()))
            elif isinstance(msg, m.Flush):
                await client.conn.send_all(b"".join(pending))
                pending = []
            else:
                pending.append(encode(m.ErrorResponse(sqlstate.error_fields(
                    sqlstate.FEATURE_NOT_SUPPORTED, "unsupported message in the admin console"))))
                failed = True

    def _result_only(self, client: Client, query: str) -> Result | None:
        cmd = _split(query)
        if cmd and cmd[0] == "SHOW" and len(cmd) > 1:
            fn = getattr(self, "show_" + cmd[1].lower(), None)
            if fn is not None:
                return fn()
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
            return encode(m.ErrorResponse(res.error_fields()))
        if isinstance(res, Result):
            return res.encode()
        if res == "":
            return encode(m.EmptyQueryResponse())
        return encode(m.CommandComplete(res))

    async def command(self, client: Client, query: str) -> Result | str:
        cmd = _split(query)
        if not cmd:
            return ""
        verb = cmd[0]
        if verb == "SHOW":
            if len(cmd) < 2:
                raise PoolerError("SHOW needs an argument; try SHOW HELP", sqlstate.SYNTAX_ERROR)
            what = cmd[1].lower()
            if what == "help":
                await client.conn.send_all(encode(m.NoticeResponse(sqlstate.error_fields(
                    "00000", "Console usage", "NOTICE", detail=HELP))))
                return "SHOW"
            fn = getattr(self, "show_" + what, None)
            if fn is None:
                raise PoolerError(f"unknown SHOW command: {cmd[1]}", sqlstate.SYNTAX_ERROR)
            return fn()
        if not self.is_admin(client):
            raise PoolerError("admin access needed", sqlstate.INSUFFICIENT_PRIVILEGE)
        p = self.pooler
        arg = cmd[1] if len(cmd) > 1 else None
        if verb == "PAUSE":
            for pool in self._pools(arg):
                pool.paused = True
            return "PAUSE"
        if verb == "RESUME":
            for pool in self._pools(arg):
                pool.paused = False
                while pool.idle and pool.waiting:
                    pool.release(pool.idle.pop())
                pool.launch()
            return "RESUME"
        if verb == "RELOAD":
            try:
                p.reload()
            except ConfigError as exc:
                log.error("RELOAD failed: %s", exc)
                raise PoolerError("RELOAD failed, see logs for additional details", sqlstate.CONFIG_FILE_ERROR)
            return "RELOAD"
        if verb == "SHUTDOWN":
            if arg and arg.upper() in ("WAIT_FOR_CLIENTS", "WAIT_FOR_SERVERS"):
                p.nursery.start_soon(p.shutdown_gracefully)
            else:
                p.shutdown_now()
            return "SHUTDOWN"
        if verb in ("KILL", "RECONNECT"):
            for pool in self._pools(arg):
                if verb == "KILL":
                    pool.paused = True
                    for c in list(pool.clients):
                        c.kill(PoolerError("database removed", sqlstate.ADMIN_SHUTDOWN))
                for srv in list(pool.idle):
                    srv.close("RECONNECT" if verb == "RECONNECT" else "KILL")
                for srv in list(pool.active) + list(pool.used):
                    srv.close_needed = True
                    srv.close_reason = verb
            return verb
        if verb == "KILL_CLIENT":
            target = next((c for c in p.clients if str(c.id) == arg), None)
            if target is None:
                raise PoolerError(f"no such client: {arg}", sqlstate.UNDEFINED_OBJECT)
            target.kill(PoolerError("client killed by admin", sqlstate.ADMIN_SHUTDOWN))
            return "KILL_CLIENT"
        if verb == "SET":
            m_ = re.match(r"(?is)^\s*set\s+(\w+)\s*(?:=|to)\s*(.*?)\s*;?\s*$", query)
            if not m_:
                raise PoolerError("syntax error in SET", sqlstate.SYNTAX_ERROR)
            value = m_.group(2)
            if len(value) >= 2 and value[0] == value[-1] == "'":
                value = value[1:-1].replace("''", "'")
            try:
                new = set_setting(p.config.settings, m_.group(1), value)
            except ConfigError as exc:
                raise PoolerError(str(exc), sqlstate.INVALID_PARAMETER_VALUE) from None
            p.config = msgspec.structs.replace(p.config, settings=new)
            for pool in p.pools.values():
                pool.configure()
            return "SET"
        raise PoolerError(f"unknown command: {query.strip()}", sqlstate.SYNTAX_ERROR)

    def _pools(self, db: str | None):
        pools = [pl for pl in self.pooler.pools.values() if db is None or pl.dbname == db]
        if db is not None and not pools and self.pooler.find_database(db) is None:
            raise PoolerError(f"no such database: {db}", sqlstate.INVALID_CATALOG_NAME)
        return pools

    # ------------------------------------------------------------------ SHOW

    def show_version(self) -> Result:
        return Result([("version", TEXT)], [[f"PgBouncer 1.18.0 compatible (pgbundle {_version()})"]])

    def show_pools(self) -> Result:
        now = time.monotonic()
        rows = []
        for pool in self.pooler.pools.values():
            waiting = len(pool.waiting)
            maxwait = now - pool.waiting[0].wait_start if waiting else 0.0
            active = sum(1 for c in pool.clients if c.server is not None)
            rows.append([pool.dbname, pool.user, active, waiting, 0, 0, len(pool.active), 0, 0, len(pool.idle),
                         len(pool.used), 0, len(pool.login), int(maxwait), int((maxwait % 1) * 1e6), pool.mode])
        cols = ["database", "user", "cl_active", "cl_waiting", "cl_active_cancel_req", "cl_waiting_cancel_req",
                "sv_active", "sv_active_cancel", "sv_being_canceled", "sv_idle", "sv_used", "sv_tested",
                "sv_login", "maxwait", "maxwait_us", "pool_mode"]
        return Result([(c, TEXT if c in ("database", "user", "pool_mode") else INT8) for c in cols], rows)

    _SOCK_COLS = ["type", "user", "database", "state", "addr", "port", "local_addr", "local_port", "connect_time",
                  "request_time", "wait", "wait_us", "close_needed", "ptr", "link", "remote_pid", "tls",
                  "application_name", "prepared_statements", "id"]

    def _sock_result(self, rows: list[list[Any]]) -> Result:
        ints = {"port", "local_port", "wait", "wait_us", "close_needed", "remote_pid", "prepared_statements", "id"}
        return Result([(c, INT8 if c in ints else TEXT) for c in self._SOCK_COLS], rows)

    def show_clients(self) -> Result:
        now = time.monotonic()
        rows = []
        for c in self.pooler.clients:
            host, port = c.conn.peer
            wait = now - c.wait_start if c.state.value == "waiting" else 0.0
            state = c.state.value if c.state.value != "active" or c.server is not None else "idle"
            rows.append(["C", c.user, c.database, state, host, port, "", 0, _ts(c.connect_wall),
                         _ts(time.time() - (now - c.request_time)), int(wait), int((wait % 1) * 1e6), 0,
                         f"C-{c.id}", f"S-{c.server.id}" if c.server else "", c.cancel_key[0], "",
                         c.application_name, 0, c.id])
        return self._sock_result(rows)

    def show_servers(self) -> Result:
        now = time.monotonic()
        rows = []
        for s in self.pooler.servers:
            host, port = s.addr
            rows.append(["S", s.pool.server_user, s.pool.server_dbname, s.state.value, host, port, "", 0,
                         _ts(time.time() - (now - s.connect_time)), _ts(time.time() - (now - s.last_used)), 0, 0,
                         int(s.close_needed), f"S-{s.id}", f"C-{s.client.id}" if s.client else "", s.backend_pid,
                         "", s.params.get("application_name", ""), 0, s.id])
        return self._sock_result(rows)

    def show_databases(self) -> Result:
        cols = [("name", TEXT), ("host", TEXT), ("port", INT8), ("database", TEXT), ("force_user", TEXT),
                ("pool_size", INT8), ("min_pool_size", INT8), ("reserve_pool", INT8), ("pool_mode", TEXT),
                ("max_connections", INT8), ("current_connections", INT8), ("paused", INT8), ("disabled", INT8)]
        s = self.pooler.config.settings
        rows = []
        for name, db in self.pooler.config.databases.items():
            pools = [p for p in self.pooler.pools.values() if p.dbname == name]
            rows.append([name, ",".join(db.host), db.port, db.dbname or name, db.user or "",
                         db.pool_size if db.pool_size is not None else s.default_pool_size,
                         db.min_pool_size if db.min_pool_size is not None else s.min_pool_size,
                         db.reserve_pool_size if db.reserve_pool_size is not None else s.reserve_pool_size,
                         db.pool_mode or "", db.max_db_connections or s.max_db_connections,
                         sum(p.server_count for p in pools), int(any(p.paused for p in pools)), 0])
        return Result(cols, rows)

    def show_stats(self) -> Result:
        names = ["xact_count", "query_count", "server_assignment_count", "received", "sent", "xact_time",
                 "query_time", "wait_time", "client_parse_count", "server_parse_count", "bind_count"]
        cols = [("database", TEXT)] + [(f"total_{n}", INT8) for n in names] + [(f"avg_{n}", INT8) for n in names]
        rows = []
        for db, st in self.pooler.stats.by_database().items():
            totals = [st.xact_count, st.query_count, st.server_assignment_count, st.client_bytes, st.server_bytes,
                      int(st.xact_time * 1e6), int(st.query_time * 1e6), int(st.wait_time * 1e6),
                      st.client_parse_count, st.server_parse_count, st.bind_count]
            rows.append([db] + totals + [0] * len(names))
        return Result(cols, rows)

    def show_config(self) -> Result:
        rows = []
        for k, v in msgspec.to_builtins(self.pooler.config.settings).items():
            if isinstance(v, list):
                v = ",".join(v)
            elif isinstance(v, bool):
                v = int(v)
            rows.append([k, "" if v is None else str(v), "", "yes"])
        return Result([("key", TEXT), ("value", TEXT), ("default", TEXT), ("changeable", TEXT)], rows)

    def show_users(self) -> Result:
        users = sorted({p.user for p in self.pooler.pools.values()} | set(self.pooler.config.users))
        return Result([("name", TEXT), ("pool_mode", TEXT)],
                      [[u, (self.pooler.config.users.get(u) and self.pooler.config.users[u].pool_mode) or ""]
                       for u in users])

    def show_lists(self) -> Result:
        p = self.pooler
        rows = [["databases", len(p.config.databases)], ["users", len({pl.user for pl in p.pools.values()})],
                ["pools", len(p.pools)], ["free_clients", 0], ["used_clients", len(p.clients)],
                ["login_clients", sum(1 for c in p.clients if c.state.value == "login")], ["free_servers", 0],
                ["used_servers", len(p.servers)], ["dns_names", 0], ["dns_zones", 0], ["dns_queries", 0],
                ["dns_pending", 0]]
        return Result([("list", TEXT), ("items", INT8)], rows)


def _split(query: str) -> list[str]:
    q = query.strip().rstrip(";").strip()
    if not q:
        return []
    parts = q.split()
    parts[0] = parts[0].upper()
    return parts


HELP = """Available commands:
\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION
\tSHOW LISTS|STATS
\tSET key = arg
\tRELOAD
\tPAUSE [<db>]
\tRESUME [<db>]
\tKILL <db>
\tKILL_CLIENT <id>
\tRECONNECT [<db>]
\tSHUTDOWN
\tSHUTDOWN WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS"""

