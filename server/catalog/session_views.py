"""SQL surface of per-session state: LISTEN/NOTIFY, temporary schema, cursors, locks.

* ``LISTEN`` / ``UNLISTEN`` / ``NOTIFY`` and ``pg_notify(channel, payload)`` go to the
  backend's :class:`pgbundle.server.tcop.async_notify.Notifier` (``session.notifier``, set by
  the protocol loop); they take effect at COMMIT.  ``pg_listening_channels()``.
* ``pg_my_temp_schema()`` -- the session's temp schema (see
  :mod:`pgbundle.server.catalog.tempns`), 0 before the session made a temporary relation.
* ``pg_cursors`` -- SQL cursors (DECLARE) and named protocol-level portals of the session.
* ``pg_locks`` -- every lock of the shared lock table (relation and advisory locks, fast-path
  relation locks included) with the pid of its holder.

:func:`discard` is DISCARD TEMP / DISCARD ALL's part for this state (DISCARD ALL also
releases session advisory locks and stops listening, as in PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from pgbundle.server.catalog import tempns
from pgbundle.server.catalog.system_views import vt
from pgbundle.server.errors import PgError
from pgbundle.server.tcop.async_notify import check_notify
from pgbundle.server.utils.adt import functions as F

if TYPE_CHECKING:
    from pgbundle.server.tcop.session import Session
    from pgbundle.server.utils.session_env import SessionEnv

LOCKTYPES = {1: "relation", 2: "advisory", 3: "object"}
LOCKMODES = {1: "AccessShareLock", 2: "RowShareLock", 3: "RowExclusiveLock", 4: "ShareUpdateExclusiveLock",
             5: "ShareLock", 6: "ShareRowExclusiveLock", 7: "ExclusiveLock", 8: "AccessExclusiveLock"}


def ensure_transaction(s: Session) -> None:
    """LISTEN/NOTIFY/DISCARD run outside the statement machinery (NO_XACT); their effect is
    tied to the implicit transaction, so make sure there is one for COMMIT to end."""
    if not s.engine.in_transaction:
        s.storage.start_command()
        s.env.start_statement(True)


# ----------------------------------------------------------------------------- LISTEN / NOTIFY

def listen(s: Session, channel: str) -> None:
    n = getattr(s, "notifier", None)
    if n is None:
        s.listening.add(channel)
        return
    ensure_transaction(s)
    n.listen(channel)


def unlisten(s: Session, channel: str | None) -> None:
    n = getattr(s, "notifier", None)
    if n is None:
        if channel is None:
            s.listening.clear()
        else:
            s.listening.discard(channel)
        return
    ensure_transaction(s)
    n.unlisten(channel)


def notify(s: Session, channel: str | None, payload: str | None) -> None:
    n = getattr(s, "notifier", None)
    if n is None:
        check_notify(channel, payload)
        return
    ensure_transaction(s)
    n.notify(channel, payload)


def _pg_notify(env: SessionEnv, channel: str, payload: str | None) -> None:
    notify(env.session, channel, payload)
    return None


F.fn("pg_notify", "text,text", "void", strict=False, env=True, volatile=True)(_pg_notify)


def _pg_listening_channels(env: SessionEnv) -> list[str]:
    n = getattr(env.session, "notifier", None)
    return list(n.listening_channels()) if n is not None else sorted(env.session.listening)


F.fn("pg_listening_channels", "", "text", env=True, volatile=True, retset=True)(_pg_listening_channels)
F.SRF_IMPLS.add(_pg_listening_channels)


# ----------------------------------------------------------------------------- DISCARD

def discard(s: Session, target: str) -> None:
    """DISCARD TEMP (drop temporary relations) / DISCARD ALL (also UNLISTEN * and
    pg_advisory_unlock_all())."""
    eng = s.engine
    if target == "DISCARD_ALL":
        unlisten(s, None)
        f = getattr(eng, "advisory_unlock_all", None)
        if f is not None:
            f()
    if target in ("DISCARD_ALL", "DISCARD_TEMP") and tempns.used(eng):
        ensure_transaction(s)
        tempns.drop_all(eng)


# ----------------------------------------------------------------------------- temp schema

F.fn("pg_my_temp_schema", "", "oid", env=True, volatile=True)(lambda env: tempns.namespace(env.engine) or 0)


def temp_schema(s: Session, schema: str | None) -> str:
    """The schema a CREATE TEMP relation goes to (42P16 for a non-temporary one)."""
    if schema is not None and schema not in (tempns.ALIAS, tempns.schema_name(s.engine)):
        raise PgError("42P16", "cannot create temporary relation in non-temporary schema")
    return tempns.ALIAS


# ----------------------------------------------------------------------------- pg_cursors

@vt("pg_cursors", "name text, statement text, is_holdable bool, is_binary bool, is_scrollable bool, "
                  "creation_time timestamptz")
def _pg_cursors(env: SessionEnv) -> Iterator[tuple]:
    s = env.session
    for name, cur in list(s.cursors.items()):
        yield (name, cur.prep.text, bool(cur.hold), cur.binary, bool(cur.scroll), cur.creation_time)
    for name, p in list(s.portals.items()):
        if name and name not in s.cursors:
            yield (name, p.prep.text, False, any(f == 1 for f in (p.formats or ())), False, None)


# ----------------------------------------------------------------------------- pg_locks

@vt("pg_locks", "locktype text, database oid, relation oid, page int4, tuple int2, virtualxid text, "
                "transactionid xid, classid oid, objid oid, objsubid int2, virtualtransaction text, pid int4, "
                "mode text, granted bool, fastpath bool, waitstart timestamptz")
def _pg_locks(env: SessionEnv) -> Iterator[tuple]:
    eng = env.engine
    table = getattr(getattr(eng, "env", None), "locktable", None)
    if table is None:
        return
    pids = {e["slot"]: e["pid"] for e in eng.procs.entries()}
    for lt, mode, holder, db, obj, fast in table.grants():
        pid = pids.get(holder)
        if pid is None:
            continue
        kind = LOCKTYPES.get(lt, "object")
        if kind == "advisory":
            yield (kind, db, None, None, None, None, None, (obj >> 32) & 0xFFFFFFFF, obj & 0xFFFFFFFF, 1, None, pid,
                   LOCKMODES.get(mode), True, False, None)
        elif kind == "relation":
            yield (kind, db or 0, obj, None, None, None, None, None, None, None, None, pid, LOCKMODES.get(mode),
                   True, fast, None)
        else:
            yield (kind, db, None, None, None, None, None, None, obj, 0, None, pid, LOCKMODES.get(mode), True, False,
                   None)
