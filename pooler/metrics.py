"""Prometheus metrics: ``--metrics-listen 127.0.0.1:9127`` serves ``/metrics``.

Served from trio, not from prometheus-client's HTTP server thread.  The pooler's
state (pools, client and server lists, counters) belongs to its one trio
thread and is changed without locks (see :mod:`.objects`); a scrape from
another thread could see a pool half-way through a state change, or a set
changing size while it is iterated.  Answering in the trio thread makes every
scrape a consistent snapshot for free.  The cost is that the event loop is
busy while the text is generated: a custom collector reads the existing
counters (nothing is recorded twice on the relay path) and the work is
proportional to the number of pools -- well under a millisecond for dozens of
pools -- and the HTTP handling (one GET, ``Connection: close``) is a few lines.

Exposition (one series per pool, labels ``database`` and ``user``):

* ``pgbundle_pool_clients{state=active|idle|waiting}``,
  ``pgbundle_pool_servers{state=active|idle|used|tested|login|being_canceled}``,
  ``pgbundle_pool_maxwait_seconds`` (the oldest waiting client), ``pgbundle_pool_size``;
* counters, the same numbers as SHOW STATS' totals: ``pgbundle_transactions_total``,
  ``pgbundle_queries_total``, ``pgbundle_server_assignments_total``, ``pgbundle_client_connections_total``,
  ``pgbundle_received_bytes_total``, ``pgbundle_sent_bytes_total``, ``pgbundle_transaction_time_seconds_total``,
  ``pgbundle_query_time_seconds_total``, ``pgbundle_wait_time_seconds_total``, ``pgbundle_client_parses_total``,
  ``pgbundle_server_parses_total``, ``pgbundle_binds_total``;
* ``pgbundle_errors_total{sqlstate_class}`` -- ErrorResponses sent to clients (the
  server's and the pooler's) by SQLSTATE class; errors outside any pool have
  empty database and user;
* histograms ``pgbundle_query_duration_seconds``, ``pgbundle_transaction_duration_seconds``,
  ``pgbundle_wait_duration_seconds`` (their ``_sum`` is the matching ``*_time_seconds_total``);
* ``pgbundle_clients``, ``pgbundle_servers`` (all connections), ``pgbundle_paused``, ``pgbundle_info``,
  and prometheus-client's process and Python collectors.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import TYPE_CHECKING, Iterator

import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from .admin import PGBOUNCER_VERSION, pgbundle_version
from .config import ConfigError
from .objects import ClientState, ServerState
from .stats import BUCKETS

if TYPE_CHECKING:
    from .objects import PoolerHost

log = logging.getLogger("pgbundle.pooler")

_LE = [repr(b) for b in BUCKETS] + ["+Inf"]
_COUNTERS = (  # metric name, PoolStats field, help, scale
    ("pgbundle_transactions", "xact_count", "Transactions pooled (SHOW STATS total_xact_count).", 1),
    ("pgbundle_queries", "query_count", "SQL commands pooled (SHOW STATS total_query_count).", 1),
    ("pgbundle_server_assignments", "server_assignment_count", "Times a server was linked to a client.", 1),
    ("pgbundle_client_connections", "client_connect_count", "Client logins into the pool.", 1),
    ("pgbundle_received_bytes", "client_bytes", "Bytes received from clients (SHOW STATS total_received).", 1),
    ("pgbundle_sent_bytes", "server_bytes", "Bytes received from servers and sent on (SHOW STATS total_sent).", 1),
    ("pgbundle_transaction_time_seconds", "xact_time", "Time in transactions (SHOW STATS total_xact_time).", 1),
    ("pgbundle_query_time_seconds", "query_time", "Time running queries (SHOW STATS total_query_time).", 1),
    ("pgbundle_wait_time_seconds", "wait_time", "Time clients waited for a server (SHOW STATS total_wait_time).", 1),
    ("pgbundle_client_parses", "client_parse_count", "Prepared statements created by clients.", 1),
    ("pgbundle_server_parses", "server_parse_count", "Prepared statements created on servers.", 1),
    ("pgbundle_binds", "bind_count", "Binds forwarded to servers.", 1),
)


class PoolerCollector:
    """Reads the pooler's state at scrape time (called in the trio thread)."""

    def __init__(self, pooler: PoolerHost) -> None:
        self.pooler = pooler

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        p = self.pooler
        now = time.monotonic()
        labels = ["database", "user"]
        clients = GaugeMetricFamily("pgbundle_pool_clients", "Client connections by state.", labels=labels + ["state"])
        servers = GaugeMetricFamily("pgbundle_pool_servers", "Server connections by state.", labels=labels + ["state"])
        maxwait = GaugeMetricFamily("pgbundle_pool_maxwait_seconds", "How long the oldest waiting client has waited.",
                                    labels=labels)
        size = GaugeMetricFamily("pgbundle_pool_size", "Server connections the pool may open.", labels=labels)
        for (db, user), pool in list(p.pools.items()):
            lv = [db, user]
            active = idle = 0
            for c in pool.clients:
                if c.state is ClientState.ACTIVE:
                    if c.server is not None:
                        active += 1
                    else:
                        idle += 1
            waiting = len(pool.waiting)
            for state, n in (("active", active), ("idle", idle), ("waiting", waiting)):
                clients.add_metric(lv + [state], n)
            kinds = {"active": len(pool.active), "idle": len(pool.idle), "used": 0, "tested": 0,
                     "login": len(pool.login), "being_canceled": 0}
            for s in pool.used:
                kinds["being_canceled" if s.cancel_hold else "tested" if s.conv.ops else "used"] += 1
            for state, n in kinds.items():
                servers.add_metric(lv + [state], n)
            maxwait.add_metric(lv, now - pool.waiting[0].wait_start if waiting else 0.0)
            size.add_metric(lv, min(pool.pool_size, 1 << 30))
        yield from (clients, servers, maxwait, size)

        stats = list(p.stats.pools.items())
        for name, field, doc, _ in _COUNTERS:
            fam = CounterMetricFamily(name, doc, labels=labels)
            for (db, user), st in stats:
                fam.add_metric([db, user], getattr(st, field))
            yield fam
        errors = CounterMetricFamily("pgbundle_errors", "ErrorResponses sent to clients, by SQLSTATE class.",
                                     labels=labels + ["sqlstate_class"])
        for (db, user), st in stats:
            for cls, n in sorted(st.errors.items()):
                errors.add_metric([db, user, cls], n)
        for cls, n in sorted(p.stats.pooler_errors.items()):
            errors.add_metric(["", "", cls], n)
        yield errors
        for name, doc, attr, total in (
                ("pgbundle_query_duration_seconds", "Time from a client's request to the server's ReadyForQuery.",
                 "query_hist", "query_time"),
                ("pgbundle_transaction_duration_seconds", "Time from a transaction's first request to its end.",
                 "xact_hist", "xact_time"),
                ("pgbundle_wait_duration_seconds", "Time a client waited for a server connection (0 when one was "
                                                   "free).", "wait_hist", "wait_time")):
            hist = HistogramMetricFamily(name, doc, labels=labels)
            for (db, user), st in stats:
                zeros = max(0, st.server_assignment_count - st.wait_count) if attr == "wait_hist" else 0
                cum = getattr(st, attr).cumulative(zeros)
                hist.add_metric([db, user], list(zip(_LE, cum)), getattr(st, total))
            yield hist
        yield GaugeMetricFamily("pgbundle_clients", "Client connections (all, admin console included).",
                                value=len(p.clients))
        yield GaugeMetricFamily("pgbundle_servers", "Server connections (all).",
                                value=sum(1 for s in p.servers if s.state is not ServerState.CLOSED))
        yield GaugeMetricFamily("pgbundle_paused", "1 while PAUSE or SUSPEND is in effect.",
                                value=int(p.pause.mode != "none"))
        info = InfoMetricFamily("pgbundle", "pgbundle pooler version.")
        info.add_metric([], {"version": pgbundle_version(), "pgbouncer_compatible": PGBOUNCER_VERSION})
        yield info


def make_registry(pooler: PoolerHost) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(PoolerCollector(pooler))
    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    GCCollector(registry=reg)
    return reg


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        return host, int(port)
    except ValueError:
        raise ConfigError(f"metrics_listen: expected host:port, got {text!r}") from None


class MetricsServer:
    """A tiny HTTP server for /metrics, in the pooler's trio nursery."""

    def __init__(self, pooler: PoolerHost, listen: str) -> None:
        self.pooler = pooler
        self.registry = make_registry(pooler)
        host, port = parse_listen(listen)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            family, type_, proto, _, sa = infos[0]
            sock = socket.socket(family, type_, proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sa)
            sock.listen(64)
        except OSError as exc:
            raise ConfigError(f"cannot listen for metrics on {listen}: {exc.strerror or exc}") from None
        self.sock = trio.socket.from_stdlib_socket(sock)
        self.where = f"{sa[0]}:{sock.getsockname()[1]}"

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        log.info("metrics on http://%s/metrics", self.where)
        async with trio.open_nursery() as nursery:
            task_status.started()
            try:
                while True:
                    conn, _ = await self.sock.accept()
                    nursery.start_soon(self._serve, conn)
            finally:
                self.sock.close()

    async def _serve(self, conn: trio.socket.SocketType) -> None:
        stream = trio.SocketStream(conn)
        try:
            with trio.move_on_after(10):
                data = b""
                while b"\r\n\r\n" not in data and b"\n\n" not in data and len(data) < 16384:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        return
                    data += chunk
                line = data.split(b"\n", 1)[0].decode("latin-1").strip()
                parts = line.split()
                method = parts[0] if parts else ""
                path = parts[1].split("?", 1)[0] if len(parts) > 1 else ""
                if method not in ("GET", "HEAD"):
                    await self._reply(stream, 405, b"method not allowed\n", "text/plain", method == "HEAD")
                elif path in ("/metrics", "/"):
                    body = generate_latest(self.registry)
                    await self._reply(stream, 200, body, CONTENT_TYPE_LATEST, method == "HEAD")
                else:
                    await self._reply(stream, 404, b"not found: try /metrics\n", "text/plain", method == "HEAD")
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await stream.aclose()

    @staticmethod
    async def _reply(stream: trio.SocketStream, status: int, body: bytes, ctype: str, head: bool) -> None:
        reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}[status]
        header = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                  f"Connection: close\r\n\r\n").encode()
        await stream.send_all(header if head else header + body)
