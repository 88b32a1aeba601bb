"""Shared server-side statements gone stale under a schema change: re-prepared transparently.

A statement the pooler shares between clients (:mod:`.prepare`) was analysed when
the first of them prepared it.  When the schema under it changes so that its
result type changes (``ALTER TABLE ... ADD COLUMN`` under ``SELECT *``),
PostgreSQL refuses the next Bind with ``0A000 cached plan must not change result
type`` -- right for the client that prepared it, wrong for one that prepared the
same text after the change and would, without the pooler, hold a fresh statement.

So when a request is a single Bind of a shared statement up to its Sync, with
nothing else outstanding on the server (:func:`candidate`, decided by
:func:`.emulate.build_batch`), and the server answers it with that error, the
relay does not pass the error on: the statement gets a new server-side name for
every server (:meth:`.prepare.StatementCache.renew`), and the request is sent
again behind a Close of the stale statement and a Parse under the new name
(:func:`.emulate.rebuild`).  The server's ReadyForQuery for the failed attempt is
swallowed; the client sees only the retried answer.  One retry per request: if
the fresh Parse fails too, that error reaches the client.

Anything pipelined after the request, or a request of several statements, is not
retried: the error then reaches the client as PostgreSQL would send it, and the
server drops every statement it holds before its next request (``DEALLOCATE
ALL``; :attr:`.server.Server.statements_stale`), so the next attempt gets fresh ones.
"""

from __future__ import annotations

from . import ops as O
from .prepare import Statement

_MESSAGE = b"\0Mcached plan must not change result type\0"
_CODE = b"C0A000\0"


class Retry:
    """What is needed to send a failed request again: the statement, the client's Bind (under the
    client's name), the bytes after it up to and including the Sync, and their request kinds."""

    __slots__ = ("st", "bind", "rest", "kinds")

    def __init__(self, st: Statement, bind: bytes, rest: bytes, kinds: list[int]) -> None:
        self.st = st
        self.bind = bind
        self.rest = rest
        self.kinds = kinds


def is_stale(p: bytes) -> bool:
    """Is the ErrorResponse ``p`` (whole message) PostgreSQL's 'cached plan must not change result type'?"""
    return p.find(_MESSAGE) >= 0 and p.find(_CODE) >= 0


#: What :func:`.emulate.build_batch` keeps of a batch that may be re-planned: its ops, the shared
#: statement of its last Bind, that Bind as the client sent it, where it is in the batch's
#: messages, and the messages (sent renamed).  Checked only when the server refuses the Bind.
Candidate = tuple[list[O.Op], Statement, bytes, int, list[bytes]]


def candidate(c: Candidate) -> Retry | None:
    """A Retry when a batch's requests are the pooler's own ParseComplete (optional), one Bind of
    a shared statement and then only Describe portal / Execute up to the one Sync at its end."""
    ops, st, bind, at, out = c
    i = 0
    n = len(ops)
    while i < n and ops[i].kind == O.PARSE and ops[i].mode == O.FAKE:
        i += 1
    if i == n or ops[i].kind != O.BIND or ops[-1].kind != O.SYNC:
        return None
    kinds = [op.kind for op in ops[i + 1:]]
    if any(k not in (O.DESCRIBE_P, O.EXECUTE) for k in kinds[:-1]):
        return None
    return Retry(st, bind, b"".join(out[at:]), kinds)
