"""``pgbundle top``: a live view of a running pooler, read from its admin console.

    pgbundle top [-h HOST] [-p PORT] [-U USER] [--interval 1] [--window 10]

Every ``--interval`` seconds it runs SHOW POOLS, SHOW TOTALS, SHOW CLIENTS,
SHOW STATE and SHOW LATENCY (pgbundle's histograms) on the console and
redraws, in place:

* a header: throughput (transactions, queries, bytes in and out per second) over
  the last ``--window`` seconds, client and server totals, the pause state;
* one row per pool: clients active and waiting, the oldest wait, servers active,
  idle, used and logging in, transactions per second, and query latency
  p50/p95/p99 and wait p99 over the window (from histogram buckets: a
  percentile is interpolated inside its bucket);
* the longest-waiting clients.

``q`` or Ctrl-C quits.  It talks to the pooler with the protocol codec in
:mod:`pgbundle.shared.protocol` over a plain socket (no driver needed), so a
stats user is enough (``stats_users``); the password comes from ``--password``
or ``PGPASSWORD``.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import time
from collections import deque
from typing import Any

import click
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from pgbundle.shared.auth.md5 import md5_response
from pgbundle.shared.auth.scram import MECHANISM, ScramClient
from pgbundle.shared.protocol import PROTOCOL_3_0, FrameBuffer, decode_backend, encode, messages as m

from .stats import percentile


class ConsoleError(Exception):
    pass


class AdminClient:
    """A minimal synchronous client for the admin console (simple query protocol)."""

    def __init__(self, host: str, port: int, user: str, password: str | None, dbname: str = "pgbouncer",
                 timeout: float = 10.0) -> None:
        self.user = user
        self.password = password
        try:
            if host.startswith("/"):
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(timeout)
                self.sock.connect(os.path.join(host, f".s.PGSQL.{port}"))
            else:
                self.sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise ConsoleError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
        self.frames = FrameBuffer(max_length=1 << 30)
        self.params: dict[str, str] = {}
        self._send(encode(m.StartupMessage(PROTOCOL_3_0, {"user": user, "database": dbname,
                                                     "application_name": "pgbundle top"})))
        self._login()

    def _send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise ConsoleError(f"connection lost: {exc}") from None

    def _next(self) -> m.Message:
        while True:
            f = self.frames.next_frame()
            if f is not None:
                return decode_backend(*f)
            try:
                data = self.sock.recv(65536)
            except OSError as exc:
                raise ConsoleError(f"connection lost: {exc}") from None
            if not data:
                raise ConsoleError("the pooler closed the connection")
            self.frames.receive_data(data)

    def _need_password(self) -> str:
        if self.password is None:
            raise ConsoleError(f'the pooler asks a password for "{self.user}": give --password or PGPASSWORD')
        return self.password

    def _login(self) -> None:
        scram: ScramClient | None = None
        while True:
            msg = self._next()
            if isinstance(msg, m.ErrorResponse):
                raise ConsoleError(msg.message)
            if isinstance(msg, m.AuthenticationCleartextPassword):
                self._send(encode(m.PasswordMessage(self._need_password().encode() + b"\0")))
            elif isinstance(msg, m.AuthenticationMD5Password):
                resp = md5_response(self.user, self._need_password(), msg.salt)
                self._send(encode(m.PasswordMessage(resp.encode() + b"\0")))
            elif isinstance(msg, m.AuthenticationSASL):
                scram = ScramClient(self.user, password=self._need_password())
                self._send(encode(m.SASLInitialResponse(MECHANISM, scram.client_first().encode())))
            elif isinstance(msg, m.AuthenticationSASLContinue) and scram is not None:
                self._send(encode(m.SASLResponse(scram.client_final(msg.data.decode()).encode())))
            elif isinstance(msg, m.AuthenticationSASLFinal) and scram is not None:
                scram.verify_server_final(msg.data.decode())
            elif isinstance(msg, m.ParameterStatus):
                self.params[msg.name] = msg.value
            elif isinstance(msg, m.ReadyForQuery):
                return

    def query(self, sql: str) -> list[dict[str, Any]]:
        self._send(encode(m.Query(sql)))
        cols: list[str] = []
        rows: list[dict[str, Any]] = []
        error: str | None = None
        while True:
            msg = self._next()
            if isinstance(msg, m.RowDescription):
                cols = [f.name for f in msg.fields]
            elif isinstance(msg, m.DataRow):
                rows.append({c: (None if v is None else v.decode()) for c, v in zip(cols, msg.values)})
            elif isinstance(msg, m.ErrorResponse):
                error = msg.message
            elif isinstance(msg, m.ReadyForQuery):
                if error is not None:
                    raise ConsoleError(f"{sql}: {error}")
                return rows

    def close(self) -> None:
        try:
            self.sock.sendall(encode(m.Terminate()))
        except OSError:
            pass
        self.sock.close()


def _int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


class Sample:
    """One reading of the console."""

    def __init__(self, client: AdminClient) -> None:
        self.t = time.monotonic()
        self.pools = [r for r in client.query("SHOW POOLS") if r["database"] != "pgbouncer"]
        self.totals = {r["name"]: _int(r["value"]) for r in client.query("SHOW TOTALS")}
        self.clients = client.query("SHOW CLIENTS")
        self.console_state = {r["key"]: r["value"] for r in client.query("SHOW STATE")}
        self.servers = len(client.query("SHOW SERVERS"))
        self.hist: dict[tuple[str, str, str], list[int]] = {}
        for r in client.query("SHOW LATENCY"):
            self.hist.setdefault((r["database"], r["user"], r["kind"]), []).append(_int(r["count"]))


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f}µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f}ms"
    return f"{seconds:.2f}s"


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def render(where: str, version: str, window: deque[Sample], window_secs: float) -> Group:
    new = window[-1]
    old = window[0]
    dt = new.t - old.t

    def rate(name: str) -> float:
        return (new.totals.get(name, 0) - old.totals.get(name, 0)) / dt if dt > 0 else 0.0

    cs = new.console_state
    state = "suspended" if cs.get("suspended") == "yes" else "paused" if cs.get("paused") == "yes" else "active"
    head = Text.assemble(("pgbundle top", "bold"), f"  {where}  {version}  ",
                         ("state: ", "dim"), (state, "bold green" if state == "active" else "bold red"),
                         (f"  window {min(dt, window_secs):.0f}s   q quits", "dim"))
    clients_total = sum(1 for c in new.clients if c.get("database") != "pgbouncer")
    waiting_total = sum(1 for c in new.clients if c.get("state") == "waiting")
    line = Text(f"xacts/s {rate('total_xact_count'):.0f}   queries/s {rate('total_query_count'):.0f}   "
                f"in {_fmt_bytes(rate('total_client_bytes'))}/s   out {_fmt_bytes(rate('total_server_bytes'))}/s   "
                f"clients {clients_total} (waiting {waiting_total})   servers {new.servers}")
    pools = Table(box=box.SIMPLE_HEAD, title="pools", title_justify="left", pad_edge=False)
    for col in ("pool", "mode", "cl_active", "cl_waiting", "maxwait", "sv_active", "sv_idle", "sv_used",
                "sv_login"):
        pools.add_column(col, justify="left" if col in ("pool", "mode") else "right", no_wrap=True)
    lat = Table(box=box.SIMPLE_HEAD, title=f"throughput and latency (last {min(dt, window_secs):.0f}s)",
                title_justify="left", pad_edge=False)
    for col in ("pool", "xact/s", "query p50", "query p95", "query p99", "wait p99", "xacts"):
        lat.add_column(col, justify="left" if col == "pool" else "right", no_wrap=True)
    for p in new.pools:
        db, user = p["database"], p["user"]

        def diff(kind: str, db: str = db, user: str = user) -> list[int]:
            cur = new.hist.get((db, user, kind), [])
            prev = old.hist.get((db, user, kind), [0] * len(cur))
            return [a - b for a, b in zip(cur, prev)] if len(prev) == len(cur) else cur

        q, w, x = diff("query"), diff("wait"), new.hist.get((db, user, "xact"), [0])
        xacts_window = diff("xact")[-1] if x else 0
        maxwait = _int(p["maxwait"]) + _int(p["maxwait_us"]) / 1e6
        name = f"{db}/{user}"
        pools.add_row(name, p["pool_mode"], p["cl_active"], p["cl_waiting"], _fmt_time(maxwait) if maxwait else "0",
                      p["sv_active"], p["sv_idle"], str(_int(p["sv_used"]) + _int(p["sv_tested"])), p["sv_login"])
        lat.add_row(name, f"{xacts_window / dt:.0f}" if dt > 0 else "0", _fmt_time(percentile(q, 0.5)),
                    _fmt_time(percentile(q, 0.95)), _fmt_time(percentile(q, 0.99)), _fmt_time(percentile(w, 0.99)),
                    str(x[-1] if x else 0))
    waiters = sorted((c for c in new.clients if c.get("state") == "waiting"),
                     key=lambda c: -(_int(c["wait"]) + _int(c["wait_us"]) / 1e6))[:8]
    wt = Table(box=box.SIMPLE_HEAD, title="longest waiters", title_justify="left", pad_edge=False)
    for col in ("id", "database/user", "addr", "application_name", "waiting"):
        wt.add_column(col, justify="right" if col in ("id", "waiting") else "left")
    for c in waiters:
        wt.add_row(c["id"], f"{c['database']}/{c['user']}", f"{c['addr']}:{c['port']}", c["application_name"] or "",
                   _fmt_time(_int(c["wait"]) + _int(c["wait_us"]) / 1e6))
    if not waiters:
        wt.add_row("", "(no client is waiting)", "", "", "")
    return Group(head, line, pools, lat, wt)


class _Keys:
    """Single key presses from a terminal (cbreak mode: Ctrl-C still interrupts)."""

    def __init__(self) -> None:
        self.fd = sys.stdin.fileno() if sys.stdin is not None and sys.stdin.isatty() else None
        self.saved: list[Any] | None = None  # termios attributes to restore

    def __enter__(self) -> _Keys:
        if self.fd is not None:
            # Ctrl-C must quit even when we were started with SIGINT ignored (a script's
            # `cmd &` does that, and Python then leaves it ignored): take it back.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            import termios
            import tty

            self.saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None and self.saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)

    def wait(self, timeout: float) -> str:
        """Wait up to ``timeout`` seconds; the key pressed, or ''."""
        if self.fd is None:
            time.sleep(timeout)
            return ""
        r, _, _ = select.select([self.fd], [], [], timeout)
        if r:
            return os.read(self.fd, 1).decode(errors="replace")
        return ""


@click.command("top")
@click.option("-h", "--host", default="127.0.0.1", show_default=True,
              help="Pooler host (a directory for its Unix socket).")
@click.option("-p", "--port", default=6432, show_default=True, type=int, help="Pooler port.")
@click.option("-U", "--user", default=lambda: os.environ.get("PGUSER", "postgres"),
              help="An admin_users or stats_users user.  [default: $PGUSER or postgres]")
@click.option("--password", default=lambda: os.environ.get("PGPASSWORD"), help="[default: $PGPASSWORD]")
@click.option("-d", "--dbname", default="pgbouncer", show_default=True, help="The console's database.")
@click.option("-n", "--interval", default=1.0, show_default=True, type=float, help="Seconds between refreshes.")
@click.option("-w", "--window", default=10.0, show_default=True, type=float,
              help="Seconds of history for rates and percentiles.")
@click.option("--iterations", type=int, default=0, help="Stop after this many refreshes (0: until q / Ctrl-C).")
def top(host: str, port: int, user: str, password: str | None, dbname: str, interval: float, window: float,
        iterations: int) -> None:
    """A live view of a running pooler (q or Ctrl-C quits)."""
    try:
        client = AdminClient(host, port, user, password, dbname)
    except ConsoleError as exc:
        raise click.ClickException(str(exc)) from None
    where = f"{host}:{port}"
    try:
        version = client.query("SHOW VERSION")[0]["version"]
        samples: deque[Sample] = deque()
        console = Console()
        n = 0
        with _Keys() as keys, Live(console=console, auto_refresh=False, transient=False) as live:
            while True:
                samples.append(Sample(client))
                while len(samples) > 2 and samples[-1].t - samples[1].t >= window:
                    samples.popleft()
                live.update(render(where, version, samples, window), refresh=True)
                n += 1
                if iterations and n >= iterations:
                    break
                key = keys.wait(interval)
                if key in ("q", "Q"):
                    break
    except KeyboardInterrupt:
        pass
    except ConsoleError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        client.close()
