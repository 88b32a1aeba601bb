"""A server connection's request accounting: what was asked and which replies are still owed.

One :class:`Conversation` per server connection (``Server.conv``).  The client
side tells it what it sent (:meth:`Conversation.sent`: how many ReadyForQuery
replies are owed, whether extended-protocol messages wait for a Sync), the
server side tells it what came back (:meth:`Conversation.ready`), and both read
where it stands (:attr:`~Conversation.busy`, :attr:`~Conversation.idle`,
:attr:`~Conversation.in_transaction`) to decide when a link may be released, a
timeout armed or a server reused.  It also times requests and transactions
(SHOW STATS query_time / xact_time).

When the pooler edits the conversation, each request gets an :class:`.ops.Op`
(:meth:`Conversation.queue_ops`) and :meth:`Conversation.match` matches the
server's replies to them (the relay's precise path; see :mod:`.ops`), calling
back into the server connection (:class:`ReplySide`) for what the relay does
with a ReadyForQuery, an ErrorResponse or a ParameterStatus.

Only this module assigns the fields (tests/unit/test_layering.py checks); the
rest of the pooler calls the verbs.  Apart from :meth:`~Conversation.match`,
which is the per-message loop itself, the verbs are called once per batch or
per ReadyForQuery.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Protocol

import trio

from pgbundle.shared.protocol import PASS, decode_backend_as, messages as m
from pgbundle.shared.protocol.states import TransactionStatus

from . import ops as O

log = logging.getLogger("pgbundle.pooler")

_Z, _S, _E = m.ReadyForQuery.TYPE[0], m.ParameterStatus.TYPE[0], m.ErrorResponse.TYPE[0]
_A, _D = m.NotificationResponse.TYPE[0], m.DataRow.TYPE[0]
_ASYNC = frozenset((m.NoticeResponse.TYPE[0], _A, _S))

_IDLE = TransactionStatus.IDLE
#: Status byte -> TransactionStatus; a byte that is no status counts as in a transaction block
#: (only IDLE lets a link go), as the raw byte always did.
_KNOWN = {s.value: s for s in TransactionStatus}
_STATUS = tuple(_KNOWN.get(b, TransactionStatus.IN_BLOCK) for b in range(256))


class ReplySide(Protocol):
    """What :meth:`Conversation.match` needs of its server connection (``pooler.server.Server``)."""

    @property
    def client(self) -> object | None: ...

    def client_ready(self, status: int) -> bool:
        """A ReadyForQuery for the client; False: swallow it."""
        ...

    def reply_error(self, p: bytes) -> None:
        """An ErrorResponse for the client (counted, FATAL closes the connection)."""
        ...

    def param_status(self, p: bytes, *, from_client: bool) -> bool:
        """A ParameterStatus; False when it is not to be forwarded."""
        ...

    def retry_stale(self, p: bytes) -> bool:
        """An ErrorResponse to a Bind: True when the request is being sent again (see .replan)."""
        ...


class Conversation:
    """Requests sent to one server connection and the replies owed (see the module docstring)."""

    __slots__ = ("pending_z", "unsynced", "status", "ops", "query_start", "xact_start", "_drained")

    def __init__(self) -> None:
        self.pending_z = 0  # Sync/Query/FunctionCall sent whose ReadyForQuery has not come back
        self.unsynced = False  # extended-protocol messages sent after the last Sync
        self.status: TransactionStatus = _IDLE  # the last ReadyForQuery's status
        self.ops: deque[O.Op] = deque()  # requests whose replies must be matched (see .ops)
        self.query_start = 0.0  # monotonic time the request in flight was sent (0: none timed)
        self.xact_start = 0.0  # monotonic time the client's transaction began (0: none timed)
        self._drained: trio.Event | None = None  # set when pending_z drops to 0 (a terminating client waits)

    def __repr__(self) -> str:
        return (f"Conversation(pending_z={self.pending_z}, unsynced={self.unsynced}, "
                f"status={self.status.char}, ops={len(self.ops)})")

    # ------------------------------------------------------------------ where it stands

    @property
    def busy(self) -> bool:
        """A ReadyForQuery is owed, or extended-protocol messages wait for their Sync: the link holds."""
        return bool(self.pending_z or self.unsynced)

    @property
    def idle(self) -> bool:
        """Nothing owed, nothing unsynced, outside a transaction block."""
        return not self.pending_z and not self.unsynced and self.status is _IDLE

    @property
    def in_transaction(self) -> bool:
        """The last ReadyForQuery said the server is inside a transaction block (or a failed one)."""
        return self.status is not _IDLE

    # ------------------------------------------------------------------ the client side

    def sent(self, nsync: int, ext: int) -> bool:
        """Requests go to the server: ``nsync`` of them (Sync, Query, FunctionCall) each owe a
        ReadyForQuery; ``ext`` is 1 when extended-protocol messages follow the last Sync, 0 when the
        batch ends synced, -1 when it held no extended message (the unsynced state stays).

        True when this starts a request (none was outstanding): the caller arms query_timeout.
        """
        started = False
        if nsync:
            if self.pending_z == 0:
                now = time.monotonic()
                self.query_start = now
                if not self.xact_start:
                    self.xact_start = now
                started = True
            self.pending_z += nsync
        if ext >= 0:
            self.unsynced = bool(ext)
        return started

    def queue_ops(self, ops: list[O.Op]) -> None:
        """Queue the ops of requests about to be sent, so that replies can be matched."""
        queue = self.ops
        if not queue and self.pending_z:
            queue.append(O.Op(O.ZCOUNT, n=self.pending_z))  # replies already on their way pass first
        queue.extend(ops)

    async def drain(self) -> None:
        """Wait until every ReadyForQuery owed has come back (or the connection ended)."""
        if self.pending_z:
            self._drained = trio.Event()
            await self._drained.wait()

    # ------------------------------------------------------------------ the server side

    def ready(self, status: int) -> bool:
        """A ReadyForQuery for the client came back with status byte ``status``.

        True when it answered the last request outstanding (then the link may change hands,
        timeouts move and the request is timed); False while more are owed.
        """
        self.status = _STATUS[status]
        n = self.pending_z
        if n > 1:
            self.pending_z = n - 1
            return False
        self.pending_z = 0
        if self._drained is not None:
            self._drained.set()
        return True

    def pooler_ready(self, status: int) -> None:
        """A ReadyForQuery the pooler consumed itself (login, its own query): only the status is taken."""
        self.status = _STATUS[status]

    def timed(self, now: float, xact_ended: bool) -> tuple[float | None, float | None]:
        """How long the request that just ended took, and the transaction when it ended too
        (``xact_ended``); None for what was not timed.  Both are over afterwards."""
        query = xact = None
        if self.query_start:
            query = now - self.query_start
            self.query_start = 0.0
        if xact_ended and self.xact_start:
            xact = now - self.xact_start
            self.xact_start = 0.0
        return query, xact

    def match(self, server: ReplySide, pieces: list[tuple[int, bytes]],
              drop_notifications: bool) -> tuple[bytes, bool]:
        """Match the server's replies to the requests queued (see :mod:`.ops`): what the pooler
        asked is consumed here, what it answered itself is put in place, the rest is for the client.

        ``pieces`` are a StreamScanner's; ``drop_notifications``: NotificationResponse messages come
        from the pool's LISTEN connection instead (not session mode).  Returns the bytes for the
        client, and True when every queued request has been answered.
        """
        ops = self.ops
        out: list[bytes] = []
        for t, p in pieces:
            while ops and ops[0].mode == O.FAKE:
                out.append(ops.popleft().payload)
            if t == PASS or not ops:
                if t == _Z:
                    if not server.client_ready(p[5]):
                        continue
                elif t == _E:
                    server.reply_error(p)
                elif t == _S:
                    if not server.param_status(p, from_client=server.client is not None):
                        continue
                elif t == _A and drop_notifications:
                    continue
                out.append(p)
                continue
            op = ops[0]
            skip = op.mode == O.SKIP
            if t in _ASYNC:
                if t == _S:
                    if not server.param_status(p, from_client=not skip and server.client is not None) or skip:
                        continue
                elif t == _A and drop_notifications:
                    continue
                elif skip:
                    continue
                out.append(p)
                continue
            if t == _E:
                if op.kind == O.BIND and not skip and server.retry_stale(p):
                    continue  # re-planned: replace_failed has rewritten the queue
                if skip:
                    err = decode_backend_as(m.ErrorResponse, t, p[5:])
                    if op.sink is not None:
                        op.sink.error = err
                    if op.forward_errors:
                        out.append(p)
                    else:
                        log.warning("%s: pooler query failed: %s", server, getattr(err, "message", err))
                else:
                    server.reply_error(p)
                    out.append(p)
                if not O.ends_at_z(op.kind):
                    O.skip_to_sync(ops)  # this request and the skipped ones after it are undone
                elif op.undo is not None:
                    op.undo()
                continue
            if t == _Z:
                if op.kind == O.ZCOUNT:
                    op.n -= 1
                    if op.n <= 0:
                        ops.popleft()
                elif not O.ends_at_z(op.kind):
                    O.skip_to_sync(ops)  # out of step: resynchronise at the ReadyForQuery
                    if ops:
                        op = ops[0]
                        skip = op.mode == O.SKIP
                        ops.popleft()
                else:
                    ops.popleft()
                if skip:
                    self.status = _STATUS[p[5]]
                    sink = op.sink
                    if sink is not None:
                        sink.status = p[5]
                        if sink.callback is not None:
                            sink.callback(sink)
                        sink.done.set()
                    continue
                if not server.client_ready(p[5]):
                    return b"".join(out), False
                out.append(p)
                continue
            if skip:
                if t == _D and op.sink is not None:
                    op.sink.rows.append(list(decode_backend_as(m.DataRow, t, p[5:]).values))
            else:
                out.append(p)
            if O.completes(op, t):
                ops.popleft()
                if op.stmt is not None:
                    op.stmt.validated = True
        while ops and ops[0].mode == O.FAKE:
            out.append(ops.popleft().payload)
        return b"".join(out), not ops

    def replace_failed(self, ops: list[O.Op]) -> None:
        """The request failing now is sent again (.replan): what the server skips after the error is
        dropped, the ReadyForQuery it still owes for the failed attempt is swallowed, and the
        replies of the new attempt are matched to ``ops``."""
        queue = self.ops
        O.skip_to_sync(queue)
        if queue and queue[0].kind == O.SYNC:
            queue[0].mode = O.SKIP
        else:
            queue.appendleft(O.Op(O.SYNC, O.SKIP))
        queue.extend(ops)

    def client_left(self) -> None:
        """The client's request and transaction are over (the server is being reset)."""
        self.query_start = self.xact_start = 0.0

    def end(self) -> None:
        """The connection is over: every waiter wakes (the pooler's own queries, a terminating client)."""
        for op in self.ops:
            if op.sink is not None:
                op.sink.done.set()
        self.ops.clear()
        if self._drained is not None:
            self._drained.set()
