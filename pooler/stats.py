"""Counters per pool, as pgbouncer's SHOW STATS reports them (its stats.c).

Counters only grow.  Times are kept in seconds (floats) and reported in
microseconds.  pgbouncer's meaning of each counter:

* ``xact_count`` -- transactions: counted when the server reports ReadyForQuery
  ``I`` with no other reply outstanding (a transaction ended);
* ``query_count`` -- SQL commands: each Query message and each Execute;
* ``query_time`` -- time from the client's request (a batch ending in Sync /
  Query) to the server's last ReadyForQuery for it, summed over requests;
* ``xact_time`` -- time from a transaction's first request to its ReadyForQuery
  ``I`` (idle in transaction included);
* ``wait_time`` -- time clients spent waiting for a server connection;
* ``server_assignment_count`` -- times a server was linked to a client.

Averages (avg_*) are pgbouncer's: every ``stats_period`` the janitor takes a
snapshot (:meth:`Stats.tick`); an average compares the live counters with the
snapshot before the last one.  avg_*_count and bytes are per second over that
span; avg_query_time = Δquery_time / Δquery_count, avg_xact_time = Δxact_time /
Δxact_count, avg_wait_time = Δwait_time / Δserver_assignment_count (integer
microseconds, as pgbouncer's integer arithmetic gives).

Histograms (:class:`Histogram`) record the same query, transaction and wait
times by bucket for /metrics and ``pgbundle top``.  Recording is one C-level
bisect and two additions; a wait of zero (a server was free) is not recorded
but counted from ``server_assignment_count`` when the histogram is read.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .objects import Pool

#: Upper bounds (seconds) of the histogram buckets; the last bucket is +Inf.
BUCKETS = (0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5,
           1.0, 2.0, 5.0, 10.0, 30.0, 60.0)

#: The counters SHOW STATS reports, in pgbouncer's column order, with their column suffixes.
COUNTERS = ("server_assignment_count", "xact_count", "query_count", "client_bytes", "server_bytes", "xact_time",
            "query_time", "wait_time", "client_parse_count", "server_parse_count", "bind_count",
            "client_connect_count")
TIMES = frozenset(("xact_time", "query_time", "wait_time"))
#: One pool's COUNTERS values at one moment, in COUNTERS order (times in seconds).
Snapshot = tuple[float, ...]


class Histogram:
    """Bucketed durations (seconds).  ``counts[i]`` counts values <= BUCKETS[i] (not cumulative);
    the last slot counts the rest.  ``sum`` is kept by the caller's counter (see PoolStats)."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1

    def cumulative(self, zeros: int = 0) -> list[int]:
        """Cumulative counts per bucket (Prometheus ``le``), with ``zeros`` extra values of 0 s."""
        out = []
        total = zeros
        for c in self.counts:
            total += c
            out.append(total)
        return out


def percentile(cumulative: list[int], q: float) -> float | None:
    """The q-quantile (0..1) of a cumulative bucket list, interpolated inside its bucket.

    None when there are no values.  The +Inf bucket reports its lower bound."""
    total = cumulative[-1] if cumulative else 0
    if total <= 0:
        return None
    rank = q * total
    prev_count = 0
    lower = 0.0
    for i, c in enumerate(cumulative):
        if c >= rank and c > prev_count:
            if i >= len(BUCKETS):
                return BUCKETS[-1]
            upper = BUCKETS[i]
            return lower + (upper - lower) * (rank - prev_count) / (c - prev_count)
        prev_count = c
        lower = BUCKETS[i] if i < len(BUCKETS) else lower
    return BUCKETS[-1]


class PoolStats:
    __slots__ = COUNTERS + ("errors", "query_hist", "xact_hist", "wait_hist", "wait_count")

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
        self.client_connect_count = 0
        self.errors: dict[str, int] = {}  # SQLSTATE class (2 chars) or pooler error name -> count
        self.query_hist = Histogram()
        self.xact_hist = Histogram()
        self.wait_hist = Histogram()
        self.wait_count = 0  # waits recorded in wait_hist

    def add_wait(self, seconds: float) -> None:
        self.wait_time += seconds
        self.wait_hist.observe(seconds)
        self.wait_count += 1

    def add_error(self, sqlstate: str) -> None:
        cls = sqlstate[:2]
        self.errors[cls] = self.errors.get(cls, 0) + 1

    def snapshot(self) -> Snapshot:
        return tuple(getattr(self, f) for f in COUNTERS)


def usec_totals(values: Snapshot) -> list[int]:
    """Counter values as SHOW STATS reports them (times in integer microseconds)."""
    return [int(v * 1_000_000) if f in TIMES else int(v) for f, v in zip(COUNTERS, values)]


def averages(cur: list[int], old: list[int], span: float) -> list[int]:
    """pgbouncer's calc_average over two usec_totals lists ``span`` seconds apart."""
    d = [c - o for c, o in zip(cur, old)]
    idx = {f: i for i, f in enumerate(COUNTERS)}
    out = [0] * len(COUNTERS)
    if span <= 0:
        return out
    for f, i in idx.items():
        if f not in TIMES:
            out[i] = int(d[i] / span)
    for tf, cf in (("query_time", "query_count"), ("xact_time", "xact_count"),
                   ("wait_time", "server_assignment_count")):
        n = d[idx[cf]]
        out[idx[tf]] = d[idx[tf]] // n if n > 0 else 0
    return out


class Stats:
    """All pools' counters, keyed by (database, user), and the stats_period snapshots."""

    def __init__(self) -> None:
        self.pools: dict[tuple[str, str], PoolStats] = {}
        now = time.monotonic()
        self.new_stamp = now
        self.old_stamp = now - 1.0  # pgbouncer: the first averages span one second more
        self.newer: dict[tuple[str, str], Snapshot] = {}
        self.older: dict[tuple[str, str], Snapshot] = {}
        self.pooler_errors: dict[str, int] = {}  # errors the pooler sent to clients outside any pool

    def for_pool(self, pool: Pool) -> PoolStats:
        key = (pool.dbname, pool.user)
        st = self.pools.get(key)
        if st is None:
            st = self.pools[key] = PoolStats()
        return st

    def tick(self, now: float | None = None) -> None:
        """stats_period elapsed: the snapshot averages are computed against moves on."""
        self.old_stamp = self.new_stamp
        self.new_stamp = time.monotonic() if now is None else now
        self.older = self.newer
        self.newer = {k: st.snapshot() for k, st in self.pools.items()}

    def _zero(self) -> Snapshot:
        return tuple(0 for _ in COUNTERS)

    def rows(self, group: Callable[[tuple[str, str]], str] = lambda key: key[0],
             ) -> dict[str, tuple[list[int], list[int]]]:
        """{group: (totals, averages)} with pools grouped by ``group(key)`` (default: database)."""
        now = time.monotonic()
        span = now - self.old_stamp
        cur: dict[str, list[int]] = {}
        old: dict[str, list[int]] = {}
        zero = self._zero()
        for key, st in list(self.pools.items()):
            g = group(key)
            c = usec_totals(st.snapshot())
            o = usec_totals(self.older.get(key, zero))
            if g in cur:
                cur[g] = [a + b for a, b in zip(cur[g], c)]
                old[g] = [a + b for a, b in zip(old[g], o)]
            else:
                cur[g], old[g] = c, o
        return {g: (cur[g], averages(cur[g], old[g], span)) for g in cur}

    def period_averages(self) -> list[int]:
        """Averages of all pools over the last stats_period (for the log line), right after tick()."""
        zero = self._zero()
        cur = [0] * len(COUNTERS)
        old = [0] * len(COUNTERS)
        for key in self.pools:
            c = usec_totals(self.newer.get(key, zero))
            o = usec_totals(self.older.get(key, zero))
            cur = [a + b for a, b in zip(cur, c)]
            old = [a + b for a, b in zip(old, o)]
        return averages(cur, old, self.new_stamp - self.old_stamp)

    def by_database(self) -> dict[str, PoolStats]:
        out: dict[str, PoolStats] = {}
        for (db, _user), st in list(self.pools.items()):
            agg = out.setdefault(db, PoolStats())
            for f in COUNTERS:
                setattr(agg, f, getattr(agg, f) + getattr(st, f))
            for k, v in st.errors.items():
                agg.errors[k] = agg.errors.get(k, 0) + v
        return out
