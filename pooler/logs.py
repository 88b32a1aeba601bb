"""Logging: pgbouncer's line format and phrases, or one JSON object per line.

Text lines are pgbouncer's, so log alerts written for pgbouncer keep working (the timestamp
``2026-11-24 21:00:00.123 UTC [4242]`` that starts every line left out)::

    LOG C-7: app/alice@127.0.0.1:50312 login attempt: db=app user=alice tls=no replication=no
    LOG C-7: app/alice@127.0.0.1:50312 closing because: client close request (age=4s)
    LOG S-3: app/alice@127.0.0.1:5432 new connection to server (from 127.0.0.1:41800)
    LOG stats: 120 xacts/s, 240 queries/s, 0 client parses/s, 0 server parses/s, 0 binds/s,
        in 9000 B/s, out 20000 B/s, xact 812 us, query 401 us, wait 12 us     (one line)
    WARNING C-9: app/bob@127.0.0.1:50400 pooler error: query_wait_timeout

With ``log_format = json`` each line is an object: ``ts`` (ISO 8601, UTC),
``pid``, ``level`` (pgbouncer's: LOG, WARNING, ERROR, FATAL, DEBUG), ``msg``
(the text after the level), and for connection events ``conn`` (``C-7`` /
``S-3``), ``database``, ``user``, ``addr``, ``port``, ``event`` (``login_attempt``,
``login_ok``, ``closing``, ``new_server``, ``pooler_error``, ``stats``, ...) and,
where it applies, ``reason``, ``age`` (seconds) and the stats figures.

Destinations follow pgbouncer: stderr, plus ``logfile`` when set, plus syslog
(``syslog = 1``, ``syslog_ident``, ``syslog_facility``).  ``log_connections``,
``log_disconnections`` and ``log_pooler_errors`` gate the connection lines;
:func:`reconfigure` applies a changed ``logfile``/``log_format``/``syslog`` after
RELOAD or SET (the janitor calls it every second; it is a no-op when nothing
changed).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from pgbundle.shared import tls

if TYPE_CHECKING:
    from .client import Client
    from .config import Settings
    from .objects import PoolerError, PoolerHost
    from .server import Server

log = logging.getLogger("pgbundle.pooler")

LEVELS = {"INFO": "LOG", "WARNING": "WARNING", "ERROR": "ERROR", "CRITICAL": "FATAL", "DEBUG": "DEBUG"}


class TextFormatter(logging.Formatter):
    """pgbouncer's line: ``2026-11-24 21:00:00.123 UTC [pid] LOG message``."""

    converter = staticmethod(time.gmtime)  # formatTime (and so %(asctime)s) in UTC too

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record.created))
        text = f"{ts}.{int(record.msecs):03d} UTC [{record.process}] " \
               f"{LEVELS.get(record.levelname, record.levelname)} {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        obj: dict[str, Any] = {"ts": ts, "pid": record.process,
                               "level": LEVELS.get(record.levelname, record.levelname), "msg": record.getMessage()}
        fields = getattr(record, "pgb", None)
        if fields:
            obj.update(fields)
        if record.exc_info:
            obj["exception"] = self.formatException(record.exc_info)
        return json.dumps(obj, default=str)


class SyslogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{LEVELS.get(record.levelname, record.levelname)} {record.getMessage()}"


_applied: tuple[str | None, str, bool, str, str] | None = None
_verbose = 0
_quiet = False


def _key(settings: Settings) -> tuple[str | None, str, bool, str, str]:
    return (settings.logfile, settings.log_format, settings.syslog, settings.syslog_ident, settings.syslog_facility)


def setup_logging(settings: Settings, verbose: int = 0, quiet: bool = False) -> None:
    """Install the handlers for ``settings`` on the ``pgbundle`` logger."""
    global _applied, _verbose, _quiet
    _verbose, _quiet = verbose, quiet
    fmt: logging.Formatter = JsonFormatter() if settings.log_format == "json" else TextFormatter()
    handlers: list[logging.Handler] = []
    if not quiet:
        err = logging.StreamHandler(sys.stderr)
        err.setFormatter(fmt)
        handlers.append(err)
    if settings.logfile:
        file = logging.FileHandler(settings.logfile)
        file.setFormatter(fmt)
        handlers.append(file)
    if settings.syslog:
        address: Any = "/dev/log" if os.path.exists("/dev/log") else ("localhost", logging.handlers.SYSLOG_UDP_PORT)
        facility = logging.handlers.SysLogHandler.facility_names.get(settings.syslog_facility.lower(),
                                                                     logging.handlers.SysLogHandler.LOG_DAEMON)
        try:
            sl = logging.handlers.SysLogHandler(address=address, facility=facility)
        except OSError as exc:
            log.warning("cannot open syslog: %s", exc)
        else:
            sl.ident = f"{settings.syslog_ident}[{os.getpid()}]: "
            sl.setFormatter(JsonFormatter() if settings.log_format == "json" else SyslogFormatter())
            handlers.append(sl)
    root = logging.getLogger("pgbundle")
    for old in root.handlers:
        old.close()
    root.handlers[:] = handlers or [logging.NullHandler()]
    root.setLevel(logging.DEBUG if verbose or settings.verbose else logging.INFO)
    root.propagate = False
    _applied = _key(settings)


def reconfigure(settings: Settings) -> None:
    """Re-install the handlers if a logging setting changed (RELOAD, SET)."""
    if _applied is not None and _key(settings) != _applied:
        try:
            setup_logging(settings, _verbose, _quiet)
        except OSError as exc:
            log.error("cannot reopen the log: %s", exc)
        else:
            log.info("logging reconfigured")


# ---------------------------------------------------------------------------- connection events

def _fields(conn: str, database: str, user: str, addr: str, port: int, event: str,
            **extra: Any) -> dict[str, Any]:
    d = {"conn": conn, "database": database, "user": user, "addr": addr, "port": port, "event": event}
    d.update(extra)
    return d


def _event(text: str) -> str:
    for prefix, name in (("login attempt", "login_attempt"), ("login ok", "login_ok"),
                         ("login failed", "login_failed"), ("closing because", "closing"),
                         ("new connection to server", "new_server")):
        if text.startswith(prefix):
            return name
    return text.split(":", 1)[0].replace(" ", "_")


def log_client(pooler: PoolerHost, client: Client, text: str, *, disconnect: bool = False,
               level: int = logging.INFO, **extra: Any) -> None:
    """``C-<id>: db/user@addr:port <text>``; a disconnect line gets ``(age=Ns)``."""
    s = pooler.config.settings
    if disconnect and not s.log_disconnections:
        return
    if not disconnect and level == logging.INFO and not s.log_connections:
        return
    host, port = client.conn.peer
    db = client.database or "(nodb)"
    user = client.user or "(nouser)"
    if text.startswith("login attempt:") and " tls=" not in text:
        text += f" tls={tls.summary(client.conn) or 'no'} replication=no"
    if disconnect:
        age = int(time.monotonic() - client.connect_time)
        extra.setdefault("reason", text.split("closing because: ", 1)[-1])
        extra["age"] = age
        text = f"{text} (age={age}s)"
    log.log(level, "C-%s: %s/%s@%s:%s %s", ptr(client.id), db, user, host, port, text,
            extra={"pgb": _fields(f"C-{ptr(client.id)}", db, user, host, port, _event(text), **extra)})


#: Connection ids are printed as pgbouncer prints its object pointers (``C-0x55d0c7a1e160``), so
#: tools that parse pgbouncer's log (pgbadger) read pgbundle's.  The number is the connection's id.
_PTR_BASE = 0x550000000000


def ptr(n: int) -> str:
    """``0x...``: a connection id in pgbouncer's pointer format (SHOW CLIENTS ptr/link)."""
    return f"0x{_PTR_BASE + (n << 4):x}"


def log_server(pooler: PoolerHost, server: Server, text: str, **extra: Any) -> None:
    """``S-<id>: db/user@host:port <text>``; a closing line gets ``(age=Ns)``."""
    s = pooler.config.settings
    closing = text.startswith("closing because")
    if not (s.log_disconnections if closing else s.log_connections):
        return
    host, port = server.addr
    pool = server.pool
    if closing:
        age = int(time.monotonic() - server.connect_time)
        extra.setdefault("reason", text.split("closing because: ", 1)[-1])
        extra["age"] = age
        text = f"{text} (age={age}s)"
    elif text.startswith("new connection to server") and server.conn is not None:
        try:
            local = server.conn.sock.getsockname()
            text = f"{text} (from {local[0]}:{local[1]})" if isinstance(local, tuple) else text
        except OSError:
            pass
        if server.conn.tls:
            text = f"{text} tls={tls.summary(server.conn)} auth={server.auth_method}"
    log.info("S-%s: %s/%s@%s:%s %s", ptr(server.id), pool.dbname, pool.server_user, host, port, text,
             extra={"pgb": _fields(f"S-{ptr(server.id)}", pool.dbname, pool.server_user, host, port, _event(text),
                                   backend_pid=server.backend_pid, **extra)})


def pooler_error(client: Client, err: PoolerError) -> None:
    """An ErrorResponse the pooler sends a client: counted by SQLSTATE class, logged as pgbouncer does."""
    pooler = client.pooler
    code = err.error_fields().get("C", err.code) if err.fields is not None else err.code
    pool = client.pool
    if pool is not None:
        pool.stats.add_error(code)
    else:
        cls = code[:2]
        pooler.stats.pooler_errors[cls] = pooler.stats.pooler_errors.get(cls, 0) + 1
    if err.fields is not None:  # the server's own error, passed on: not the pooler's
        return
    if pooler.config.settings.log_pooler_errors:
        log_client(pooler, client, f"pooler error: {err.message}", level=logging.WARNING, sqlstate=code)


def stats_line(avg: dict[str, int]) -> None:
    """pgbouncer's periodic line (every stats_period, when log_stats is on)."""
    log.info("stats: %d xacts/s, %d queries/s, %d client parses/s, %d server parses/s, %d binds/s, "
             "in %d B/s, out %d B/s, xact %d us, query %d us, wait %d us",
             avg["xact_count"], avg["query_count"], avg["client_parse_count"], avg["server_parse_count"],
             avg["bind_count"], avg["client_bytes"], avg["server_bytes"], avg["xact_time"], avg["query_time"],
             avg["wait_time"], extra={"pgb": {"event": "stats", **avg}})
