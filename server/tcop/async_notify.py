"""LISTEN / NOTIFY across the forked backends (PostgreSQL's commands/async.c).

Design
------
*Inside a transaction.*  ``NOTIFY ch, 'payload'`` and ``pg_notify(ch, payload)`` only
record the pair in the backend's :class:`Notifier` (an identical channel + payload pair
queued twice in one transaction is sent once, in first-queued order); ``LISTEN`` /
``UNLISTEN`` / ``UNLISTEN *`` record an action.  Each entry carries the subtransaction
level it was made at: ``ROLLBACK TO SAVEPOINT`` drops the levels above, ``RELEASE`` merges
them.  The engine calls :meth:`Notifier.at_xact` at every transaction event
(``BackendEngine.xact_callbacks``): at COMMIT the actions are applied to the listen set and
the notifications are *published*; at ROLLBACK everything recorded is dropped.

*The queue.*  One per database, in files under the data directory::

    pg_notify/<dboid>.queue      header (magic, base, end) + records
    pg_notify/<dboid>.listeners  array of 32-byte records (pid, backend_start, position)
    pg_notify/<dboid>.lock       NotifyQueueLock

Positions are logical byte offsets that only grow (``base`` = position of the first byte
kept in the file, ``end`` = position after the last complete record).  A record is
``u32 length, i32 sender pid, channel NUL payload``.  Publishing writes the records at
``end`` and only then moves ``end`` in the header, so a record half-written by a process
that died is never read and is overwritten by the next publisher.

*The lock.*  Every access to a database's queue and listener files -- publish, read,
register, unregister, trim -- holds an exclusive ``flock`` on ``pg_notify/<dboid>.lock``.
Each is a handful of small reads and writes; nothing waits on anything else while holding
it, and the kernel drops it if the holder dies.

*Listeners.*  A backend takes a listener record at the commit of its first LISTEN (its
position = the current ``end``: it sees what commits after it), advances the position
as it reads, and frees the record when its last channel goes (UNLISTEN, DISCARD ALL) and
at session end.  After publishing, the publisher sends SIGUSR1 to every registered
listener that is a live backend of the database according to the backend slots in shared
memory (pid *and* backend start time, so a reused pid is never mistaken for a listener);
the signal handler sets a flag and pokes the backend's wake-up pipe.  The protocol loop
then reads the queue and sends ``NotificationResponse(sender pid, channel, payload)``: at
once when the client is idle outside a transaction, otherwise just before the
ReadyForQuery that ends the transaction (never inside another message).  A backend
notified by its own transaction reads the queue the same way.

*Trimming.*  When the file holds more than :data:`TRIM_BYTES` before the oldest position a
live listener still needs (or anything at all when no one listens), the kept tail is
written to a new file that is renamed over the old one; listener records of backends that
are gone are freed at the same time.  A queue larger than :data:`QUEUE_MAX_BYTES` (a
listener stuck in a transaction) makes further NOTIFYs fail with 54000, as PostgreSQL's
full queue does.

*Crashes.*  Notifications are not durable, exactly as in PostgreSQL: the postmaster empties
``pg_notify/`` at startup and when it reinitialises after a crash (all listeners are gone
then).  A notification whose transaction committed but whose backend died before
publishing it is lost.  A stale listener record (backend killed) is recognised by its
pid/start time and freed at the next trim.
"""

from __future__ import annotations

import fcntl
import os
import signal
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pgbundle.server.errors import PgError
from pgbundle.server.tcop import interrupts
from pgbundle.shared.protocol import messages as M

NOTIFY_PAYLOAD_MAX_LENGTH = 8000
NAMEDATALEN = 64
TRIM_BYTES = 64 * 1024
QUEUE_MAX_BYTES = 256 * 1024 * 1024

_MAGIC = b"PGBNOTQ1"
_HDR = struct.Struct("<8sQQ")  # magic, base, end
_REC = struct.Struct("<Ii")  # record length (header included), sender pid
_LST = struct.Struct("<i4xdQ8x")  # pid, backend_start, position

Alive = Callable[[], set[tuple[int, float]]]


def clear_all(datadir: str) -> None:
    """Empty ``pg_notify/`` (postmaster: at startup and after a crash, when no backend runs)."""
    d = os.path.join(datadir, "pg_notify")
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return
    for n in names:
        if n.endswith((".queue", ".listeners", ".lock", ".tmp")):
            try:
                os.unlink(os.path.join(d, n))
            except OSError:
                pass


def check_notify(channel: str | None, payload: str | None) -> tuple[str, str]:
    """Validate a NOTIFY / pg_notify() call (PostgreSQL's messages and SQLSTATEs)."""
    if not channel:
        raise PgError("22023", "channel name cannot be empty")
    if len(channel.encode()) >= NAMEDATALEN:
        raise PgError("22023", "channel name too long")
    payload = payload or ""
    if len(payload.encode()) >= NOTIFY_PAYLOAD_MAX_LENGTH:
        raise PgError("22023", "payload string too long")
    return channel, payload


class NotifyQueue:
    """One database's queue, seen from one process; every public method takes the lock."""

    def __init__(self, datadir: str, dboid: int) -> None:
        self.dir = os.path.join(datadir, "pg_notify")
        os.makedirs(self.dir, exist_ok=True)
        self.qpath = os.path.join(self.dir, f"{dboid}.queue")
        self.lpath = os.path.join(self.dir, f"{dboid}.listeners")
        self.lockpath = os.path.join(self.dir, f"{dboid}.lock")
        self._lockfd = -1

    # ------------------------------------------------------------------ lock and files
    @contextmanager
    def locked(self) -> Iterator[None]:
        if self._lockfd < 0:
            self._lockfd = os.open(self.lockpath, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lockfd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lockfd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._lockfd >= 0:
            os.close(self._lockfd)
            self._lockfd = -1

    def _open_queue(self) -> tuple[int, int, int]:
        """(fd, base, end); creates an empty queue file when there is none."""
        fd = os.open(self.qpath, os.O_RDWR | os.O_CREAT, 0o600)
        head = os.pread(fd, _HDR.size, 0)
        if len(head) < _HDR.size or head[:8] != _MAGIC:
            os.pwrite(fd, _HDR.pack(_MAGIC, 0, 0), 0)
            os.ftruncate(fd, _HDR.size)
            return fd, 0, 0
        _, base, end = _HDR.unpack(head)
        return fd, base, end

    def _listeners(self) -> list[tuple[int, int, float, int]]:
        """(index, pid, backend_start, position) of every record, free ones (pid 0) included."""
        try:
            with open(self.lpath, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        out = []
        for i in range(len(data) // _LST.size):
            pid, start, pos = _LST.unpack_from(data, i * _LST.size)
            out.append((i, pid, start, pos))
        return out

    def _set_listener(self, idx: int, pid: int, start: float, pos: int) -> None:
        fd = os.open(self.lpath, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, _LST.pack(pid, start, pos), idx * _LST.size)
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ listeners
    def register(self, pid: int, start: float) -> tuple[int, int]:
        """Take a listener record; returns (index, position = the current end)."""
        with self.locked():
            fd, _base, end = self._open_queue()
            os.close(fd)
            recs = self._listeners()
            idx = next((i for i, p, _s, _q in recs if p == 0 or p == pid), len(recs))
            self._set_listener(idx, pid, start, end)
            return idx, end

    def unregister(self, idx: int, pid: int) -> None:
        with self.locked():
            recs = self._listeners()
            if idx < len(recs) and recs[idx][1] == pid:
                self._set_listener(idx, 0, 0.0, 0)

    # ------------------------------------------------------------------ publish / read
    def size(self) -> int:
        with self.locked():
            fd, base, end = self._open_queue()
            os.close(fd)
            return end - base

    def publish(self, sender: int, items: list[tuple[str, str]], alive: Alive) -> list[int]:
        """Append the notifications; returns the pids of the live listeners to wake."""
        data = bytearray()
        for channel, payload in items:
            body = channel.encode() + b"\0" + payload.encode()
            data += _REC.pack(_REC.size + len(body), sender) + body
        with self.locked():
            fd, base, end = self._open_queue()
            try:
                os.pwrite(fd, bytes(data), _HDR.size + (end - base))
                end += len(data)
                os.pwrite(fd, _HDR.pack(_MAGIC, base, end), 0)
            finally:
                os.close(fd)
            recs = self._listeners()
            live = alive()
            pids = [p for _i, p, s, _q in recs if p and (p, s) in live]
            self._maybe_trim(base, end, recs, alive, live)
        return pids

    def read(self, idx: int, pid: int, start: float, pos: int, alive: Alive) -> tuple[list[tuple[int, str, str]], int,
                                                                                       int]:
        """Records from ``pos`` to the end: ([(sender, channel, payload)], new position, index).
        The listener record is re-taken if it was lost."""
        with self.locked():
            fd, base, end = self._open_queue()
            try:
                pos = max(pos, base)
                raw = os.pread(fd, end - pos, _HDR.size + (pos - base)) if end > pos else b""
            finally:
                os.close(fd)
            out = []
            off = 0
            while off + _REC.size <= len(raw):
                n, sender = _REC.unpack_from(raw, off)
                if n < _REC.size or off + n > len(raw):
                    break
                body = bytes(raw[off + _REC.size: off + n])
                ch, _, payload = body.partition(b"\0")
                out.append((sender, ch.decode("utf-8", "replace"), payload.decode("utf-8", "replace")))
                off += n
            recs = self._listeners()
            if not (idx < len(recs) and recs[idx][1] == pid):
                idx = next((i for i, p, _s, _q in recs if p == 0 or p == pid), len(recs))
            self._set_listener(idx, pid, start, end)
            recs = self._listeners()
            self._maybe_trim(base, end, recs, alive, None)
        return out, end, idx

    # ------------------------------------------------------------------ trimming
    def _maybe_trim(self, base: int, end: int, recs: list[tuple[int, int, float, int]], alive: Alive,
                    live: set[tuple[int, float]] | None) -> None:
        registered = [r for r in recs if r[1]]
        if registered and end - base < TRIM_BYTES:
            return
        if not registered and end == base:
            return
        if registered:
            if live is None:
                live = alive()
            for i, p, s, _q in registered:
                if (p, s) not in live:
                    self._set_listener(i, 0, 0.0, 0)
            keep = min((q for _i, p, s, q in registered if (p, s) in live), default=end)
            keep = min(max(keep, base), end)
            if keep - base < TRIM_BYTES and keep < end:
                return
        else:
            keep = end
        if keep == base:
            return
        fd = os.open(self.qpath, os.O_RDONLY)
        try:
            tail = os.pread(fd, end - keep, _HDR.size + (keep - base)) if end > keep else b""
        finally:
            os.close(fd)
        tmp = self.qpath + ".tmp"
        with open(tmp, "wb") as f:
            f.write(_HDR.pack(_MAGIC, keep, end) + tail)
        os.replace(tmp, self.qpath)


class Notifier:
    """The LISTEN/NOTIFY state of one backend (PostgreSQL's listenChannels, pendingActions,
    pendingNotifies, QUEUE_BACKEND_POS)."""

    def __init__(self, datadir: str, dboid: int, procs: Any, pid: int | None = None) -> None:
        self.queue = NotifyQueue(datadir, dboid)
        self.dboid = dboid
        self.procs = procs
        self.pid = pid or os.getpid()
        self.channels: dict[str, None] = {}  # committed LISTEN set, in LISTEN order
        self.actions: list[tuple[int, str, str | None]] = []  # (level, 'listen'|'unlisten'|'unlisten_all', ch)
        self.pending: dict[tuple[str, str], int] = {}  # (channel, payload) -> subtransaction level
        self.level = 0
        self.slot: int | None = None  # our listener record
        self.pos = 0
        self.start = 0.0
        self.wake = False  # our own commit published something: read the queue

    # ------------------------------------------------------------------ SQL commands
    def listen(self, channel: str) -> None:
        self.actions.append((self.level, "listen", channel))

    def unlisten(self, channel: str | None) -> None:
        self.actions.append((self.level, "unlisten" if channel is not None else "unlisten_all", channel))

    def notify(self, channel: str | None, payload: str | None) -> None:
        channel, payload = check_notify(channel, payload)
        key = (channel, payload)
        if key in self.pending:
            return
        if not self.pending and self.queue.size() > QUEUE_MAX_BYTES:
            raise PgError("54000", "too many notifications in the NOTIFY queue")
        self.pending[key] = self.level

    def listening_channels(self) -> list[str]:
        return list(self.channels)

    @property
    def listening(self) -> bool:
        return bool(self.channels)

    # ------------------------------------------------------------------ transaction events
    def at_xact(self, event: str, depth: int = 0) -> None:
        """Engine callback: 'commit' | 'abort' | 'savepoint' | 'release' | 'rollback_to'
        (``depth`` = savepoints open after the event)."""
        if event == "commit":
            try:
                self._at_commit()
            finally:
                self.actions.clear()
                self.pending.clear()
                self.level = 0
        elif event == "abort":
            self.actions.clear()
            self.pending.clear()
            self.level = 0
        elif event == "savepoint":
            self.level = depth
        elif event == "release":
            self.actions = [(min(lv, depth), a, c) for lv, a, c in self.actions]
            self.pending = {k: min(lv, depth) for k, lv in self.pending.items()}
            self.level = depth
        elif event == "rollback_to":
            self.actions = [x for x in self.actions if x[0] < depth]
            self.pending = {k: lv for k, lv in self.pending.items() if lv < depth}
            self.level = depth

    def _at_commit(self) -> None:
        if self.actions:
            chans = dict(self.channels)
            for _lv, act, ch in self.actions:
                if act == "listen":
                    chans[ch] = None  # type: ignore[index]
                elif act == "unlisten":
                    chans.pop(ch, None)  # type: ignore[arg-type]
                else:
                    chans.clear()
            self.channels = chans
            if chans and self.slot is None:
                self.start = self._my_start()
                self.slot, self.pos = self.queue.register(self.pid, self.start)
            elif not chans and self.slot is not None:
                self._unregister()
        if self.pending:
            pids = self.queue.publish(self.pid, list(self.pending), self._alive)
            for p in pids:
                if p == self.pid:
                    self.wake = True
                    continue
                try:
                    os.kill(p, signal.SIGUSR1)
                except ProcessLookupError:
                    pass

    # ------------------------------------------------------------------ delivery
    def collect(self) -> list[M.Message]:
        """Notifications waiting for this backend (call only outside a transaction)."""
        if not (self.wake or interrupts.notify_pending):
            return []
        self.wake = False
        interrupts.notify_pending = False
        if self.slot is None:
            return []
        recs, self.pos, self.slot = self.queue.read(self.slot, self.pid, self.start, self.pos, self._alive)
        chans = self.channels
        return [M.NotificationResponse(sender, ch, payload) for sender, ch, payload in recs if ch in chans]

    @property
    def ready(self) -> bool:
        return self.slot is not None and (self.wake or interrupts.notify_pending)

    # ------------------------------------------------------------------ session end
    def close(self) -> None:
        """Session end (and DISCARD ALL's UNLISTEN *): stop listening at once."""
        self.actions.clear()
        self.pending.clear()
        self.channels = {}
        if self.slot is not None:
            self._unregister()

    def _unregister(self) -> None:
        slot, self.slot = self.slot, None
        try:
            self.queue.unregister(slot, self.pid)  # type: ignore[arg-type]
        except OSError:
            pass

    # ------------------------------------------------------------------ helpers
    def _alive(self) -> set[tuple[int, float]]:
        """(pid, backend_start) of the live client backends of this database."""
        return {(e["pid"], e["backend_start"]) for e in self.procs.entries()
                if e["dboid"] == self.dboid and e["backend_type"] == "client backend"}

    def _my_start(self) -> float:
        for e in self.procs.entries():
            if e["pid"] == self.pid:
                return e["backend_start"]
        return 0.0
