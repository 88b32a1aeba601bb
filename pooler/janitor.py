"""Periodic maintenance (pgbouncer's janitor.c), three times a second as pgbouncer's full_maint_period.

* close idle servers past server_idle_timeout (keeping min_pool_size) or past
  server_lifetime;
* close idle and used servers of paused pools (PAUSE disconnects from the
  servers once their clients have released them);
* open servers up to min_pool_size -- for pools with a client, and for forced-user
  databases even before any client came (pgbouncer creates those pools) -- and for
  waiting clients when the reserve pool opens (a client waited reserve_pool_timeout)
  or when server_login_retry has passed after a failed login;
* server_fast_close: a session-mode server marked close_needed (RECONNECT, a changed
  [databases] entry) is closed, with its client, as soon as it is outside a transaction;
* transaction_timeout: a transaction open longer is ended by closing its server (and client);
* query_wait_notify: a client queued longer gets pgbouncer's NOTICE once;
* free pools: autodb pools (databases reached through ``*``) unused for autodb_idle_timeout,
  any pool with no client and no server for pool_idle_timeout (their statistics go too);
* every stats_period: move the SHOW STATS averages window on
  (:meth:`.stats.Stats.tick`) and log pgbouncer's ``stats:`` line;
* SUSPEND: once suspend_timeout has passed, clients that could not be suspended -- still
  logging in, or with a request in flight -- are closed (``suspend_timeout``), as pgbouncer
  does, so that SUSPEND returns;
* apply changed logging settings (RELOAD / SET / SIGHUP).

query_wait_timeout is enforced here too (as in pgbouncer): a queued client is parked
without a timer of its own, which keeps queueing cheap.  Timeouts that belong to one
task (client_login_timeout, client_idle_timeout, idle_transaction_timeout,
query_timeout, server_connect_timeout) are cancel scopes in that task.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import trio

from pgbundle.shared import sqlstate
from pgbundle.shared.protocol import encode, messages as m

from . import logs
from .objects import ClientState, PoolerError
from .stats import COUNTERS

if TYPE_CHECKING:
    from .client import Client
    from .objects import Pool, PoolerHost

log = logging.getLogger("pgbundle.pooler")
PERIOD = 1.0 / 3  # pgbouncer: full maintenance every 1/3 s


QUEUED_NOTICE = encode(m.NoticeResponse(sqlstate.error_fields(
    sqlstate.SUCCESSFUL_COMPLETION, "No server connection available in postgres backend, client being queued",
    "NOTICE")))


def maintain(pooler: PoolerHost) -> None:
    """One round of maintenance; synchronous, so it sees a consistent state."""
    s = pooler.config.settings
    now = time.monotonic()
    _forced_user_pools(pooler)
    pause = pooler.pause
    if pause.mode == "suspend" and s.suspend_timeout > 0 and now - pause.suspend_start >= s.suspend_timeout:
        for client in unsuspended(pooler):
            client.kill(PoolerError("suspend_timeout", sqlstate.PROTOCOL_VIOLATION))
    for pool in list(pooler.pools.values()):
        keep = pool.min_pool_size
        if pool.paused:
            if pooler.pause.mode == "suspend":  # SUSPEND keeps the server connections
                continue
            for server in list(pool.idle) + list(pool.used):
                if server.state.value == "idle" or not server.conv.ops:
                    server.close("pause mode")
            continue
        for server in list(pool.idle):
            age = now - server.connect_time
            idle = now - server.last_used
            if pool.server_lifetime and age > pool.server_lifetime:
                server.close("server lifetime over")
            elif s.server_idle_timeout and idle > s.server_idle_timeout and pool.server_count > keep:
                server.close("server idle timeout")
        if s.server_fast_close or pool.transaction_timeout:
            _active_servers(pool, now, s.server_fast_close)
        if pool.waiting:
            if s.query_wait_notify > 0:
                _notify_queued(pool, now, s.query_wait_notify)
            pool.expire_waiting(now)
            pool.launch()
        # pgbouncer: min_pool_size only for pools with a client, or of a forced-user database
        if keep and pool.server_count < min(keep, pool.pool_size) and (pool.clients or pool.db.user):
            pool.launch(minimum=keep)
    _free_pools(pooler, now)


def unsuspended(pooler: PoolerHost) -> list[Client]:
    """Clients SUSPEND waits for: logging in, or linked to a server with a request in flight."""
    return [c for c in list(pooler.clients) if not c.admin and (
        c.state is ClientState.LOGIN or (c.server is not None and c.server.conv.busy))]


def _forced_user_pools(pooler: PoolerHost) -> None:
    """A forced-user database with min_pool_size gets its pool (and its servers) before any client."""
    s = pooler.config.settings
    for name, db in list(pooler.config.databases.items()):
        if name != "*" and db.user and (db.min_pool_size if db.min_pool_size is not None else s.min_pool_size):
            if (name, db.user) not in pooler.pools:
                pooler.get_pool(name, db.user, db)


def _active_servers(pool: Pool, now: float, fast_close: bool) -> None:
    for server in list(pool.active):
        conv = server.conv
        if fast_close and server.close_needed and conv.idle:
            server.close(server.close_reason if server.close_reason not in (None, "", "RECONNECT")
                         else "database configuration changed")
        elif pool.transaction_timeout and conv.xact_start and not conv.idle \
                and now - conv.xact_start > pool.transaction_timeout:
            server.close("transaction timeout")


def _notify_queued(pool: Pool, now: float, after: float) -> None:
    """pgbouncer's query_wait_notify: once per wait, after whole seconds past the setting."""
    for client in list(pool.waiting):
        if client.welcome_sent and not client.wait_notified and int(now - client.wait_start) > after:
            client.wait_notified = True
            client.push(QUEUED_NOTICE)


def _free_pools(pooler: PoolerHost, now: float) -> None:
    """Forget pools nobody uses: autodb ones after autodb_idle_timeout, any after pool_idle_timeout."""
    s = pooler.config.settings
    configured = pooler.config.databases
    for key, pool in list(pooler.pools.items()):
        if pool.clients or pool.server_count or pool.waiting:
            pool.empty_since = 0.0
            continue
        if not pool.empty_since:
            pool.empty_since = now
            continue
        empty = now - pool.empty_since
        autodb = pool.dbname not in configured
        if autodb and s.autodb_idle_timeout > 0 and empty > s.autodb_idle_timeout:
            log.warning("dropping database '%s' as it does not exist anymore or inactive auto-database",
                        pool.dbname)
        elif not (s.pool_idle_timeout > 0 and empty > s.pool_idle_timeout):
            continue
        del pooler.pools[key]
        pooler.stats.pools.pop(key, None)


def stats_period(pooler: PoolerHost) -> None:
    """stats_period elapsed: new averages window, and the log line."""
    pooler.stats.tick()
    if pooler.config.settings.log_stats:
        logs.stats_line(dict(zip(COUNTERS, pooler.stats.period_averages())))


async def janitor(pooler: PoolerHost) -> None:
    last_stats = time.monotonic()
    while True:
        await trio.sleep(PERIOD)
        try:
            maintain(pooler)
            s = pooler.config.settings
            logs.reconfigure(s)
            now = time.monotonic()
            if s.stats_period and now - last_stats >= s.stats_period:
                last_stats = now
                stats_period(pooler)
        except Exception:  # a bug must not stop maintenance
            log.exception("janitor failed")
