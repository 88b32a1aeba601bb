"""Periodic maintenance (pgbouncer's janitor.c), three times a second as pgbouncer's full_maint_period.

* close idle servers past server_idle_timeout (keeping min_pool_size) or past
  server_lifetime;
* close idle and used servers of paused pools (PAUSE disconnects from the
  servers once their clients have released them);
* open servers up to min_pool_size, and for waiting clients when the
  reserve pool opens (a client waited reserve_pool_timeout) or when
  server_login_retry has passed after a failed login;
* every stats_period: move the SHOW STATS averages window on
  (:meth:`.stats.Stats.tick`) and log pgbouncer's ``stats:`` line;
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

from . import logs
from .stats import COUNTERS

if TYPE_CHECKING:
    from .objects import PoolerHost

log = logging.getLogger("pgbundle.pooler")
PERIOD = 1.0 / 3  # pgbouncer: full maintenance every 1/3 s


def maintain(pooler: PoolerHost) -> None:
    """One round of maintenance; synchronous, so it sees a consistent state."""
    s = pooler.config.settings
    now = time.monotonic()
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
        if pool.waiting:
            pool.expire_waiting(now)
            pool.launch()
        if keep and pool.server_count < keep:
            pool.launch(minimum=keep)


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
