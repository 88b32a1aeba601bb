"""Which server reply belongs to which request, when the pooler edits the conversation.

In transaction mode the pooler sometimes answers for the server (a fake
ParseComplete when the server already holds a statement, a fake CloseComplete)
and sometimes sends requests of its own (a Parse for a statement the client
prepared on another server, parameter SETs, reset and check queries) whose
replies must not reach the client.  Then every request sent to the server gets
an :class:`Op` in its conversation's queue (``Server.conv.ops``), in order, and
the replies are matched to them one message at a time
(:meth:`.conversation.Conversation.match`).  When no Op is queued the relay
passes bytes through without looking (the fast path).

Completion rules follow the protocol: Parse -> ParseComplete, Bind ->
BindComplete, Describe statement -> ParameterDescription then RowDescription or
NoData, Describe portal -> RowDescription or NoData, Execute -> CommandComplete,
PortalSuspended or EmptyQueryResponse, Close -> CloseComplete, Sync / Query /
FunctionCall -> ReadyForQuery.  An ErrorResponse in the extended protocol ends
every request up to the next Sync (the server skips them).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from pgbundle.shared.protocol import TransactionStatus, messages as m

if TYPE_CHECKING:
    from .prepare import Statement

# kinds
PARSE, BIND, DESCRIBE_S, DESCRIBE_P, EXECUTE, CLOSE, SYNC, QUERY, FUNC, ZCOUNT = range(10)
# modes
REAL, SKIP, FAKE = 0, 1, 2

_Z = m.ReadyForQuery.TYPE[0]
_E = m.ErrorResponse.TYPE[0]
# notice, notification, parameter status: not part of any reply
_ASYNC = frozenset(c.TYPE[0] for c in (m.NoticeResponse, m.NotificationResponse, m.ParameterStatus))
_DONE = {
    PARSE: frozenset((m.ParseComplete.TYPE[0],)),
    BIND: frozenset((m.BindComplete.TYPE[0],)),
    DESCRIBE_S: frozenset((m.RowDescription.TYPE[0], m.NoData.TYPE[0])),
    DESCRIBE_P: frozenset((m.RowDescription.TYPE[0], m.NoData.TYPE[0])),
    EXECUTE: frozenset(c.TYPE[0] for c in (m.CommandComplete, m.PortalSuspended, m.EmptyQueryResponse)),
    CLOSE: frozenset((m.CloseComplete.TYPE[0],)),
}
KIND_OF_REQUEST = {m.Parse.TYPE[0]: PARSE, m.Bind.TYPE[0]: BIND, m.Execute.TYPE[0]: EXECUTE, m.Close.TYPE[0]: CLOSE,
                   m.Sync.TYPE[0]: SYNC, m.Query.TYPE[0]: QUERY, m.FunctionCall.TYPE[0]: FUNC}


@dataclass
class Sink:
    """Collects the reply of one of the pooler's own queries."""

    rows: list[list[bytes | None]] = field(default_factory=list)
    error: m.ErrorResponse | None = None
    status: int = int(TransactionStatus.IDLE)
    done: trio.Event = field(default_factory=trio.Event)
    callback: Callable[[Sink], None] | None = None  # called (in the relay task) with the Sink when complete


class Op:
    __slots__ = ("kind", "mode", "payload", "sink", "n", "forward_errors", "stmt", "undo")

    def __init__(self, kind: int, mode: int = REAL, payload: bytes = b"", sink: Sink | None = None, n: int = 0,
                 forward_errors: bool = False, stmt: Statement | None = None,
                 undo: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self.mode = mode
        self.payload = payload  # FAKE: the bytes to give the client
        self.sink = sink  # SKIP QUERY: where its reply goes
        self.n = n  # ZCOUNT: ReadyForQuery messages still to pass
        self.forward_errors = forward_errors  # SKIP: an error still concerns the client
        self.stmt = stmt  # PARSE of a named statement: marked validated on ParseComplete
        self.undo = undo  # called if the server refuses or skips the request (see skip_to_sync)

    def __repr__(self) -> str:
        return f"Op({self.kind},{self.mode})"


def ends_at_z(kind: int) -> bool:
    return kind in (SYNC, QUERY, FUNC, ZCOUNT)


def completes(op: Op, t: int) -> bool:
    """Does a reply message of type ``t`` complete ``op`` (ReadyForQuery and errors aside)?"""
    done = _DONE.get(op.kind)
    return done is not None and t in done


def skip_to_sync(ops: deque[Op]) -> list[Op]:
    """After an extended-protocol error: drop every queued request up to the next Sync (the one
    that failed first) and undo, latest first, what the pooler recorded for them -- the server
    skipped them, so a statement it was to create or close is as it was before."""
    dropped = []
    while ops and ops[0].kind not in (SYNC, QUERY, FUNC, ZCOUNT):
        dropped.append(ops.popleft())
    for op in reversed(dropped):
        if op.undo is not None:
            op.undo()
    return dropped
