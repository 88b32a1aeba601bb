"""Counters per pool, as pgbouncer's SHOW STATS reports them.

Counters only grow; rates and averages are computed from two readings.
Times are kept in seconds (floats) and reported in microseconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .objects import Pool


class PoolStats:
    __slots__ = ("xact_count", "query_count", "server_assignment_count", "client_bytes", "server_bytes",
                 "xact_time", "query_time", "wait_time", "client_parse_count", "server_parse_count",
                 "bind_count", "login_count", "errors")

    def __init__(self) -> None:
        self.xact_count = 0
        self.query_count = 0
        self.server_assignment_count = 0
        self.client_bytes = 0
        self.server_bytes = 0
        self.xact_time = 0.0
        self.query_time = 0.0
        self.wait_time = 0.0
        self.client_parse_count = 0
        self.server_parse_count = 0
        self.bind_count = 0
        self.login_count = 0
        self.errors: dict[str, int] = {}


class Stats:
    """All pools' counters, kept per database name for SHOW STATS."""

    def __init__(self) -> None:
        self.pools: dict[tuple[str, str], PoolStats] = {}

    def for_pool(self, pool: Pool) -> PoolStats:
        key = (pool.dbname, pool.user)
        st = self.pools.get(key)
        if st is None:
            st = self.pools[key] = PoolStats()
        return st

    def by_database(self) -> dict[str, PoolStats]:
        out: dict[str, PoolStats] = {}
        for (db, _user), st in self.pools.items():
            agg = out.setdefault(db, PoolStats())
            for f in PoolStats.__slots__:
                if f == "errors":
                    for k, v in st.errors.items():
                        agg.errors[k] = agg.errors.get(k, 0) + v
                else:
                    setattr(agg, f, getattr(agg, f) + getattr(st, f))
        return out
