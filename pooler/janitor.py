"""Periodic maintenance (pgbouncer's janitor.c), once a second.

* close idle servers past server_idle_timeout (keeping min_pool_size) or past
  server_lifetime;
* open servers up to min_pool_size, and for waiting clients when the
  reserve pool opens (a client waited reserve_pool_timeout) or when
  server_login_retry has passed after a failed login;
* log a stats line every stats_period.

Timeouts that belong to one task (client_login_timeout, client_idle_timeout,
idle_transaction_timeout, query_timeout, query_wait_timeout,
server_connect_timeout) are cancel scopes in that task, not here.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from .main import Pooler

log = logging.getLogger("pgbundle.pooler")
PERIOD = 1.0


def maintain(pooler: Pooler) -> None:
    """One round of maintenance; synchronous, so it sees a consistent state."""
    s = pooler.config.settings
    now = time.monotonic()
    for pool in list(pooler.pools.values()):
        keep = pool.min_pool_size
        for server in list(pool.idle):
            age = now - server.connect_time
            idle = now - server.last_used
            if pool.server_lifetime and age > pool.server_lifetime:
                server.close("server lifetime over")
            elif s.server_idle_timeout and idle > s.server_idle_timeout and pool.server_count > keep:
                server.close("server idle timeout")
        if pool.waiting:
            pool.launch()
        if keep and pool.server_count < keep and not pool.paused:
            pool.launch(minimum=keep)


async def janitor(pooler: Pooler) -> None:
    last_stats = time.monotonic()
    prev = {}
    while True:
        await trio.sleep(PERIOD)
        try:
            maintain(pooler)
        except Exception:  # a bug must not stop maintenance
            log.exception("janitor failed")
        s = pooler.config.settings
        now = time.monotonic()
        if s.log_stats and s.stats_period and now - last_stats >= s.stats_period:
            span = now - last_stats
            last_stats = now
            for db, st in pooler.stats.by_database().items():
                p = prev.get(db, (0, 0, 0, 0))
                xacts, queries = st.xact_count - p[0], st.query_count - p[1]
                inb, outb = st.client_bytes - p[2], st.server_bytes - p[3]
                prev[db] = (st.xact_count, st.query_count, st.client_bytes, st.server_bytes)
                log.info("stats: %d xacts/s, %d queries/s, in %d B/s, out %d B/s (db %s)",
                         xacts / span, queries / span, inb / span, outb / span, db)
