"""Load test of many short-lived clients: connect, query, disconnect.

Two scenarios, one command line (run from anywhere)::

    python examples/loadtest/loadtest.py pg   -t LABEL=DSN [-t LABEL=DSN ...] [options]
    python examples/loadtest/loadtest.py http -t LABEL=URL [-t LABEL=URL ...] [options]
    python examples/loadtest/loadtest.py compare --postgres DSN --postgres-pooled DSN \\
        [--pgbouncer DSN] [--server DSN --server-pooled DSN] [options]

``pg``: ``--concurrency`` clients, each in a loop: open a new connection (psycopg 3,
asyncio), run ``--query``, close.  ``http``: each client sends one HTTP request per new TCP
connection (the example web app's JSON API: list entries, and a share of writes).  With
several targets they run one after the other with the same settings (side by side), and
each target's figures are compared with the first target of its group (the part of the
label before ``/``, e.g. ``postgres/direct`` and ``postgres/pooler``).

While it runs a progress bar shows the live rate; at the end it prints throughput and latency
percentiles (p50, p95, p99) and, with ``--plot``, writes a PNG: latency distribution and
throughput over time.  Everything is bounded: ``--duration`` seconds (plus ``--warmup``),
at most ``--max-requests`` operations per target, each operation at most ``--timeout``
seconds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import json
import math
import os
import random
import re
import resource
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

LIBPQ_KEYWORDS = {"host", "hostaddr", "port", "dbname", "user", "password", "service", "sslmode",
                  "connect_timeout", "application_name", "options", "passfile", "target_session_attrs"}

# Not a terminal (CI logs, a pipe): wide enough for the results table anyway.
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
out_console = Console(width=None if sys.stdout.isatty() else 160)


# --------------------------------------------------------------------------- results


@dataclass
class Result:
    """What one target did: latencies of the successful operations, when they finished, errors."""

    label: str
    target: str
    scenario: str
    concurrency: int
    duration: float = 0.0                       # measured seconds (after warm-up)
    latencies: list[float] = field(default_factory=list)   # seconds, successful operations
    finished_at: list[float] = field(default_factory=list)  # seconds since the measured start
    errors: Counter = field(default_factory=Counter)
    truncated: bool = False                     # stopped early by --max-requests
    loadavg: list[float] = field(default_factory=list)  # 1-min load average around each slice (noise check)

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    @property
    def throughput(self) -> float:
        return self.ok / self.duration if self.duration > 0 else 0.0

    def percentile(self, p: float) -> float:
        """Latency percentile in seconds (nearest rank), NaN without samples."""
        if not self.latencies:
            return math.nan
        s = sorted(self.latencies)
        k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
        return s[k]

    def series(self, bin_s: float) -> tuple[list[float], list[float]]:
        """Throughput over time: (bin centres in s, operations per second in that bin)."""
        n = max(1, round(self.duration / bin_s))
        width = self.duration / n  # equal bins that cover the run exactly
        counts = [0] * n
        for t in self.finished_at:
            counts[min(n - 1, max(0, int(t / width)))] += 1
        return [(i + 0.5) * width for i in range(n)], [c / width for c in counts]

    def summary(self) -> dict[str, Any]:
        def ms(v: float) -> float | None:
            return None if math.isnan(v) else round(v * 1000, 3)

        return {
            "label": self.label, "target": self.target, "scenario": self.scenario,
            "concurrency": self.concurrency, "duration_s": round(self.duration, 3),
            "ok": self.ok, "errors": self.failed, "per_second": round(self.throughput, 1),
            "p50_ms": ms(self.percentile(50)), "p95_ms": ms(self.percentile(95)),
            "p99_ms": ms(self.percentile(99)), "max_ms": ms(max(self.latencies, default=math.nan)),
            "mean_ms": ms(sum(self.latencies) / self.ok if self.ok else math.nan),
            "error_kinds": dict(self.errors.most_common(10)), "stopped_by_max_requests": self.truncated,
            "loadavg_1min": [round(v, 2) for v in self.loadavg],
        }


def group_of(label: str) -> str:
    return label.split("/", 1)[0] if "/" in label else ""


# --------------------------------------------------------------------------- operations


def redact(target: str) -> str:
    """A DSN or URL without its password, for printing."""
    target = re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", target)
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", target)


def pg_operation(dsn: str, query: str, timeout: float) -> Callable[[], Awaitable[None]]:
    """connect (a new connection every time) -> query -> fetch -> disconnect."""
    import psycopg

    connect_timeout = max(2, math.ceil(timeout))

    async def op() -> None:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, connect_timeout=connect_timeout)
        try:
            cur = await conn.execute(query, prepare=False)
            if cur.description is not None:
                await cur.fetchall()
        finally:
            await conn.close()

    return op


class HttpOperation:
    """One HTTP request on a new TCP connection (``Connection: close``), in a thread.

    The mix is the example web app's JSON API: ``GET /api/entries?limit=20``, and with
    probability ``write_ratio`` a ``POST /api/entries`` instead.  A ``--path`` other than the
    default turns the mix off and sends plain GETs to that path.
    """

    def __init__(self, url: str, path: str | None, write_ratio: float, timeout: float,
                 executor: concurrent.futures.Executor) -> None:
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise click.BadParameter(f"not an http(s) URL: {url}")
        self.https = u.scheme == "https"
        self.host, self.port = u.hostname, u.port or (443 if self.https else 80)
        self.prefix = u.path.rstrip("/")
        self.path, self.write_ratio, self.timeout, self.executor = path, write_ratio, timeout, executor
        self.n = 0

    def _request(self, method: str, path: str, body: bytes | None) -> None:
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=self.timeout)
        try:
            headers = {"Connection": "close", "Accept": "application/json"}
            if body is not None:
                headers["Content-Type"] = "application/json"
            conn.request(method, self.prefix + path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status >= 400:
                raise RuntimeError(f"HTTP {resp.status} {resp.reason} on {method} {path}")
        finally:
            conn.close()

    async def __call__(self) -> None:
        self.n += 1
        if self.path is not None:
            method, path, body = "GET", self.path, None
        elif random.random() < self.write_ratio:
            body = json.dumps({"name": f"loadtest-{self.n % 1000}",
                               "message": f"short-lived client #{self.n}"}).encode()
            method, path = "POST", "/api/entries"
        else:
            method, path, body = "GET", "/api/entries?limit=20", None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, self._request, method, path, body)


# --------------------------------------------------------------------------- the runner


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:120] if text else ''}".rstrip(": ")


async def run_slice(result: Result, op: Callable[[], Awaitable[None]], *, concurrency: int, duration: float,
                    warmup: float, timeout: float, max_requests: int, progress: Progress, task: Any,
                    done_before: float) -> int:
    """One stretch of load on one target: ``concurrency`` clients repeat ``op`` for ``warmup +
    duration`` seconds; only the part after the warm-up is measured and added to ``result``
    (its times continue after ``result.duration``).  At most ``max_requests`` operations; a
    hard deadline cancels what is left.  Returns the number of operations issued."""
    label = result.label
    offset = result.duration
    result.loadavg.append(os.getloadavg()[0])
    loop_start = time.monotonic()
    measure_start = loop_start + warmup
    end = measure_start + duration
    issued = 0
    last_error = ""
    ok_before = result.ok
    if warmup:
        progress.update(task, description=escape(f"{label} (warm-up)"))

    async def client() -> None:
        nonlocal issued, last_error
        while True:
            now = time.monotonic()
            if now >= end or issued >= max_requests:
                return
            issued += 1
            t0 = time.perf_counter()
            try:
                async with asyncio.timeout(timeout):
                    await op()
            except Exception as exc:  # noqa: BLE001 -- every failure is counted and shown, none stops the run
                if time.monotonic() >= measure_start:
                    result.errors[describe_error(exc)] += 1
                last_error = describe_error(exc)
                await asyncio.sleep(0.01)  # no hot loop against a target that refuses
                continue
            lat = time.perf_counter() - t0
            t1 = time.monotonic()
            if now >= measure_start and t1 <= end:
                result.latencies.append(lat)
                result.finished_at.append(offset + t1 - measure_start)

    async def ticker() -> None:
        warm = bool(warmup)
        prev_n, prev_t = result.ok, time.monotonic()
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            if warm and now >= measure_start:
                warm = False
                progress.update(task, description=escape(label))
            n = result.ok
            rate = (n - prev_n) / (now - prev_t) if now > prev_t else 0.0
            prev_n, prev_t = n, now
            stats = f"{n:>8} ok  {rate:>8.0f}/s  {result.failed} err"
            if last_error and result.failed:
                stats += f"  [dim]{escape(last_error[:60])}[/dim]"
            progress.update(task, completed=done_before + min(warmup + duration, now - loop_start), stats=stats)

    tick = asyncio.create_task(ticker())
    try:
        # hard bound: clients stop issuing at `end`; an operation in flight gets `timeout` more
        async with asyncio.timeout(warmup + duration + timeout + 5):
            await asyncio.gather(*(client() for _ in range(concurrency)))
    except TimeoutError:
        result.errors["run cancelled at the hard deadline"] += 1
    finally:
        tick.cancel()
    measured = max(1e-9, min(time.monotonic(), end) - measure_start)
    result.duration += measured
    result.loadavg.append(os.getloadavg()[0])
    rate = (result.ok - ok_before) / measured
    progress.update(task, description=escape(label), completed=done_before + warmup + duration,
                    stats=f"{result.ok:>8} ok  {rate:>8.0f}/s  {result.failed} err")
    return issued


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


async def run_all(targets: list[tuple[str, str]], scenario: str, make_op, opts: dict) -> list[Result]:
    """Every target with the same settings, one after the other.  With ``rounds`` > 1 each
    target's ``duration`` is cut into that many slices, run in rotation (t1 t2 t3 t1 t2 t3 ...),
    so that a burst of other work on the machine falls on every target alike."""
    rounds, duration, warmup = opts["rounds"], opts["duration"], opts["warmup"]
    piece = duration / rounds
    results = [Result(label, redact(target), scenario, opts["concurrency"]) for label, target in targets]
    ops = [make_op(target) for _, target in targets]
    issued = [0] * len(targets)
    width = max(len(label) for label, _ in targets) + len(" (warm-up)")
    progress = Progress(TextColumn(f"[bold]{{task.description:<{width}}}"), BarColumn(),
                        TextColumn("{task.percentage:>3.0f}%"), TimeRemainingColumn(),
                        TextColumn("{task.fields[stats]}"), console=err_console, transient=False)
    with progress:
        tasks = [progress.add_task(escape(label), total=rounds * (warmup + piece), stats="")
                 for label, _ in targets]
        first = True
        for rnd in range(rounds):
            for i, result in enumerate(results):
                if issued[i] >= opts["max_requests"]:
                    result.truncated = True
                    continue
                if not first and opts["pause"]:
                    await asyncio.sleep(opts["pause"])
                first = False
                issued[i] += await run_slice(
                    result, ops[i], concurrency=opts["concurrency"], duration=piece, warmup=warmup,
                    timeout=opts["timeout"], max_requests=opts["max_requests"] - issued[i], progress=progress,
                    task=tasks[i], done_before=rnd * (warmup + piece))
                result.truncated = issued[i] >= opts["max_requests"]
    return results


# --------------------------------------------------------------------------- reporting


def report(results: list[Result], what: str) -> None:
    table = Table(title=f"{what}: concurrency {results[0].concurrency}, {results[0].duration:.1f} s per target",
                  title_justify="left")
    for col in ("target", "ok", "errors", "per s", "p50 ms", "p95 ms", "p99 ms", "max ms",
                "per s vs base", "p99 vs base"):
        table.add_column(col, justify="left" if col == "target" else "right")
    base: dict[str, Result] = {}
    for r in results:
        g = group_of(r.label)
        b = base.setdefault(g, r)
        in_group = sum(group_of(x.label) == g for x in results)
        cmp = ["base", "base"] if b is r and in_group > 1 else ["", ""]
        if b is not r and b.throughput and r.ok and b.ok:
            cmp = [f"{r.throughput / b.throughput:.2f}x", f"{r.percentile(99) / b.percentile(99):.2f}x"]

        def f(v: float) -> str:
            return "-" if math.isnan(v) else f"{v * 1000:.2f}"

        table.add_row(escape(r.label), str(r.ok), str(r.failed), f"{r.throughput:.1f}", f(r.percentile(50)),
                      f(r.percentile(95)), f(r.percentile(99)), f(max(r.latencies, default=math.nan)), *cmp)
    out_console.print(table)
    if len({group_of(r.label) for r in results}) < len(results):
        out_console.print("base = the first target of the same group (label before '/')")
    loads = ", ".join(f"{escape(r.label)} {min(r.loadavg, default=0):.1f}-{max(r.loadavg, default=0):.1f}"
                      for r in results)
    out_console.print(f"1-min load average ({os.cpu_count()} cpus) around each target's runs: {loads}",
                      soft_wrap=True)
    for r in results:
        for kind, n in r.errors.most_common(5):
            out_console.print(f"  [yellow]{escape(r.label)}[/yellow]: {n} x {escape(kind)}", soft_wrap=True)
        if r.truncated:
            out_console.print(f"  [yellow]{escape(r.label)}[/yellow]: stopped at --max-requests")


def plot(results: list[Result], path: Path, title: str) -> None:
    """PNG with the latency distribution (log-spaced histogram, p99 marked) and throughput over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (ax_lat, ax_tp) = plt.subplots(1, 2, figsize=(14, 6.2), constrained_layout=True)
    colors = plt.get_cmap("tab10").colors
    all_lat = [v for r in results for v in r.latencies]
    if all_lat:
        lo, hi = max(min(all_lat) * 1000, 1e-3), max(all_lat) * 1000
        if hi <= lo:
            hi = lo * 1.5
        edges = [lo * (hi / lo) ** (i / 60) for i in range(61)]
    for i, r in enumerate(results):
        c = colors[i % len(colors)]
        p99 = r.percentile(99) * 1000
        name = f"{r.label}: {r.throughput:.0f}/s, p99 {p99:.1f} ms" if r.ok else f"{r.label}: no successful op"
        if r.ok:
            counts, _ = _histogram([v * 1000 for v in r.latencies], edges)
            share = [100 * n / r.ok for n in counts]
            ax_lat.stairs(share, edges, color=c, label=name, linewidth=1.6)
            ax_lat.axvline(p99, color=c, linestyle="--", linewidth=1)
        bin_s = max(0.5, r.duration / 60)
        xs, ys = r.series(bin_s)
        ax_tp.plot(xs, ys, color=c, label=name, linewidth=1.6, marker="." if len(xs) < 30 else None)
    ax_lat.set_xscale("log")
    ax_lat.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax_lat.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax_lat.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax_lat.set_xlabel("latency of one client: connect + query + disconnect (ms, log scale; dashed: p99)"
                      if results and results[0].scenario == "pg" else
                      "latency of one HTTP request on a new connection (ms, log scale; dashed: p99)")
    ax_lat.set_ylabel("% of operations")
    ax_lat.set_title("Latency distribution")
    ax_lat.grid(True, which="both", alpha=0.3)
    ax_tp.set_xlabel("seconds since the start of the measured run")
    ax_tp.set_ylabel("completed operations per second")
    ax_tp.set_title("Throughput over time")
    ax_tp.set_ylim(bottom=0)
    ax_tp.grid(True, alpha=0.3)
    # one legend for both panels, under them, so that it hides no data
    handles, labels = ax_tp.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(3, max(1, len(labels))), fontsize=9,
               frameon=False)
    fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _histogram(values: list[float], edges: list[float]) -> tuple[list[int], list[float]]:
    import bisect

    counts = [0] * (len(edges) - 1)
    for v in values:
        k = bisect.bisect_right(edges, v) - 1
        counts[max(0, min(len(counts) - 1, k))] += 1
    return counts, edges


# --------------------------------------------------------------------------- command line


def parse_target(spec: str, kind: str, index: int) -> tuple[str, str]:
    """``LABEL=DSN`` / ``LABEL=URL``, or a bare DSN/URL (labelled by its position)."""
    m = re.match(r"^([A-Za-z][\w .+-]*(?:/[\w .+-]+)?)=(.*)$", spec)
    if m and m.group(1).strip().lower() not in LIBPQ_KEYWORDS:
        return m.group(1).strip(), m.group(2).strip()
    return f"{kind} {index + 1}", spec


def common_options(f):
    opts = [
        click.option("-c", "--concurrency", type=click.IntRange(1, 10_000), default=20, show_default=True,
                     help="Clients running at the same time."),
        click.option("-d", "--duration", type=click.FloatRange(0.5, 3600), default=10.0, show_default=True,
                     help="Measured seconds per target."),
        click.option("--warmup", type=click.FloatRange(0, 600), default=1.0, show_default=True,
                     help="Seconds of load before measuring (not counted)."),
        click.option("--timeout", type=click.FloatRange(0.1, 600), default=30.0, show_default=True,
                     help="Longest one operation may take; slower ones count as errors."),
        click.option("--max-requests", type=click.IntRange(1), default=2_000_000, show_default=True,
                     help="Stop a target after this many operations even before --duration."),
        click.option("--pause", type=click.FloatRange(0, 60), default=1.0, show_default=True,
                     help="Seconds of rest between targets."),
        click.option("--rounds", type=click.IntRange(1, 100), default=1, show_default=True,
                     help="Cut each target's --duration into this many slices, run in rotation across "
                          "targets (each slice after its own --warmup): fairer on a busy machine."),
        click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path),
                     help="Write a PNG: latency distribution and throughput over time."),
        click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
                     help="Write the figures as JSON."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def rounds_note(opts: dict) -> str:
    return f" (in {opts['rounds']} interleaved rounds)" if opts["rounds"] > 1 else ""


def finish(results: list[Result], what: str, title: str, plot_path: Path | None, json_path: Path | None,
           settings: dict) -> None:
    report(results, what)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({"settings": settings, "results": [r.summary() for r in results]},
                                        indent=2) + "\n")
        out_console.print(f"figures written to {json_path}", soft_wrap=True)
    if plot_path:
        plot(results, plot_path, title)
        out_console.print(f"plot written to {plot_path}", soft_wrap=True)
    if not any(r.ok for r in results):
        raise SystemExit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Many short-lived clients against PostgreSQL-protocol servers, poolers or a web app."""


def _run_pg(targets: list[tuple[str, str]], query: str, opts: dict) -> None:
    raise_fd_limit(opts["concurrency"] * 2 + 256)
    settings = {**{k: v for k, v in opts.items() if k not in ("plot_path", "json_path")},
                "query": query, "targets": [(lbl, redact(t)) for lbl, t in targets]}
    results = asyncio.run(run_all(targets, "pg", lambda dsn: pg_operation(dsn, query, opts["timeout"]), opts))
    title = (f"Short-lived clients (connect, {query!r}, disconnect): concurrency {opts['concurrency']}, "
             f"{opts['duration']:g} s per target{rounds_note(opts)}")
    finish(results, f"connect-query-disconnect{rounds_note(opts)}", title, opts["plot_path"], opts["json_path"],
           settings)


@cli.command()
@click.option("-t", "--target", "targets", multiple=True, required=True, metavar="[LABEL=]DSN",
              help="A libpq DSN or URL, optionally labelled (repeatable: targets run one after the other). "
                   "Labels like GROUP/NAME are compared with the first target of their GROUP.")
@click.option("-q", "--query", default="SELECT 1", show_default=True, help="The query each client runs.")
@common_options
def pg(targets: tuple[str, ...], query: str, **opts) -> None:
    """Connect, run one query, disconnect; over and over, from --concurrency clients."""
    _run_pg([parse_target(t, "target", i) for i, t in enumerate(targets)], query, opts)


@cli.command()
@click.option("--postgres", metavar="DSN", help="PostgreSQL, directly.")
@click.option("--postgres-pooled", metavar="DSN", help="The same PostgreSQL through pgbundle pooler.")
@click.option("--pgbouncer", metavar="DSN", help="The same PostgreSQL through pgbouncer.")
@click.option("--server", metavar="DSN", help="pgbundle server, directly.")
@click.option("--server-pooled", metavar="DSN", help="The same pgbundle server through pgbundle pooler.")
@click.option("-q", "--query", default="SELECT 1", show_default=True, help="The query each client runs.")
@common_options
def compare(postgres, postgres_pooled, pgbouncer, server, server_pooled, query, **opts) -> None:
    """Side by side: direct-to-server versus through-the-pooler, for PostgreSQL and pgbundle server."""
    targets = [(lbl, dsn) for lbl, dsn in (
        ("postgres/direct", postgres), ("postgres/pgbundle pooler", postgres_pooled),
        ("postgres/pgbouncer", pgbouncer), ("pgbundle server/direct", server),
        ("pgbundle server/pgbundle pooler", server_pooled)) if dsn]
    if not targets:
        raise click.UsageError("give at least one of --postgres, --postgres-pooled, --pgbouncer, --server, "
                               "--server-pooled")
    _run_pg(targets, query, opts)


@cli.command("http")
@click.option("-t", "--target", "targets", multiple=True, required=True, metavar="[LABEL=]URL",
              help="Base URL of the example web app (or any HTTP server with --path); repeatable.")
@click.option("--path", default=None, help="GET this path only, instead of the web app's API mix.")
@click.option("--write-ratio", type=click.FloatRange(0, 1), default=0.2, show_default=True,
              help="Share of requests that add a guestbook entry (POST /api/entries).")
@common_options
def http_command(targets: tuple[str, ...], path: str | None, write_ratio: float, **opts) -> None:
    """Many concurrent HTTP requests, each on a new connection, against the example web app."""
    parsed = [parse_target(t, "app", i) for i, t in enumerate(targets)]
    raise_fd_limit(opts["concurrency"] * 4 + 256)
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=opts["concurrency"],
                                                     thread_name_prefix="http-client")
    settings = {**{k: v for k, v in opts.items() if k not in ("plot_path", "json_path")},
                "path": path, "write_ratio": write_ratio, "targets": parsed}
    try:
        results = asyncio.run(run_all(
            parsed, "http", lambda url: HttpOperation(url, path, write_ratio, opts["timeout"], executor), opts))
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    what = f"GET {path}" if path else f"web app API (GET list, {write_ratio:.0%} POST)"
    title = f"HTTP, one connection per request, {what}: concurrency {opts['concurrency']}, " \
            f"{opts['duration']:g} s per target{rounds_note(opts)}"
    finish(results, f"HTTP requests{rounds_note(opts)}", title, opts["plot_path"], opts["json_path"], settings)


if __name__ == "__main__":
    sys.exit(cli())
