"""What a backend tells besides query results, at each ReadyForQuery and while idle.

* **Session state for the pooler** (server/INTERFACES.md, 2026-11-24): when the startup
  packet has ``pgbundle.report_session_state=on``, the backend sends
  ``ParameterStatus("pgbundle.session_state", value)`` after authentication and again,
  just before a ReadyForQuery, whenever the value changed.  ``value`` is ``clean`` or the
  sorted comma list of what the session holds beyond one transaction: ``advisory_lock``
  (session-level advisory locks), ``hold_cursor`` (WITH HOLD cursors), ``listen`` (LISTEN
  channels, committed), ``temp_table`` (temporary relations).
* **Notifications** (:mod:`.async_notify`): sent just before a ReadyForQuery 'I', and at once
  while the client is idle outside a transaction (the protocol loop's idle wait is
  cancelled by the SIGUSR1 wake-up).
* **pg_stat_activity identity**: ``application_name`` as currently set (SET, set_config,
  RESET, SET LOCAL undone at transaction end) and, while the setting
  ``pgbundle.client_addr`` holds ``ip:port`` (the pooler sets it to the address of the
  client it is serving), that address as ``client_addr`` / ``client_port``; RESET or ''
  shows the real peer again.  Checked at each ReadyForQuery (two dictionary lookups).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from pgbundle.server.catalog import tempns
from pgbundle.shared.protocol import TransactionStatus, messages as M

if TYPE_CHECKING:
    import trio

    from pgbundle.server.storage.procarray import ProcArray
    from pgbundle.server.tcop.async_notify import Notifier
    from pgbundle.server.tcop.session import Session

_IDLE = TransactionStatus.IDLE.char  # Session.transaction_status / ReadyForQuery.status

SESSION_STATE_REQUEST = "pgbundle.report_session_state"
SESSION_STATE = "pgbundle.session_state"
CLIENT_ADDR = "pgbundle.client_addr"


def session_state(session: Session, engine: Any, notifier: Any) -> str:
    """``clean`` or the sorted comma list of what pins the session."""
    parts = []
    if getattr(engine, "_advisory", None):
        parts.append("advisory_lock")
    if any(c.hold for c in session.cursors.values()):
        parts.append("hold_cursor")
    if notifier is not None and notifier.listening:
        parts.append("listen")
    if tempns.used(engine) and tempns.has_relations(engine):
        parts.append("temp_table")
    return ",".join(parts) if parts else "clean"


def parse_addr(value: str) -> tuple[str, int] | None:
    """``ip:port`` (IPv6 with or without brackets) → (ip, port); None when malformed."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return host, int(port)


class BackendReport:
    """One backend's reporter; the protocol loop calls :meth:`before_ready` on every reply
    that ends with ReadyForQuery and :meth:`idle_messages` while waiting for the client."""

    def __init__(self, session: Session, engine: Any, notifier: Notifier | None, params: dict[str, str],
                 procs: ProcArray, client_addr: str, client_port: int) -> None:
        self.session = session
        self.engine = engine
        self.notifier = notifier
        self.procs = procs
        self.settings = engine.settings
        self.enabled = str(params.get(SESSION_STATE_REQUEST, "")).strip().lower() in ("on", "true", "yes", "1")
        self.last_state: str | None = None
        self.peer = (client_addr, client_port)
        self.app = params.get("application_name", "")
        self.shown_addr = ""
        self.idle_scope: trio.CancelScope | None = None  # the idle wait the SIGUSR1 watcher may cancel

    # ------------------------------------------------------------------ messages
    def startup_messages(self) -> list[M.Message]:
        self.sync_identity()
        if not self.enabled:
            return []
        self.last_state = session_state(self.session, self.engine, self.notifier)
        return [M.ParameterStatus(SESSION_STATE, self.last_state)]

    def before_ready(self, out: list[M.Message]) -> None:
        """Insert notifications and a changed session state before the final ReadyForQuery."""
        if not out or type(out[-1]) is not M.ReadyForQuery:
            return
        self.sync_identity()
        extra: list[M.Message] = []
        if out[-1].status == _IDLE and self.notifier is not None and self.notifier.ready:
            extra.extend(self.notifier.collect())
        if self.enabled:
            st = session_state(self.session, self.engine, self.notifier)
            if st != self.last_state:
                self.last_state = st
                extra.append(M.ParameterStatus(SESSION_STATE, st))
        if extra:
            out[-1:-1] = extra

    def wants_idle_wakeup(self) -> bool:
        return self.notifier is not None and self.notifier.slot is not None \
            and self.session.transaction_status == _IDLE

    def idle_messages(self) -> list[M.Message]:
        """Notifications to send now (the client is idle, outside a transaction)."""
        if self.notifier is None or not self.notifier.ready or self.session.transaction_status != _IDLE:
            return []
        return self.notifier.collect()

    # ------------------------------------------------------------------ pg_stat_activity
    def sync_identity(self) -> None:
        s = self.settings
        try:
            app = s.get("application_name")
        except Exception:
            app = self.app
        if app != self.app:
            self.app = app
            self.procs.set_appname(app)
        addr = ""
        try:
            if s.exists(CLIENT_ADDR):
                addr = s.get(CLIENT_ADDR) or ""
        except Exception:
            addr = ""
        if addr != self.shown_addr:
            self.shown_addr = addr
            parsed = parse_addr(addr) if addr else None
            host, port = parsed if parsed is not None else self.peer
            self.procs.set_client(host, port)
