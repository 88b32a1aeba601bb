"""A server connection's request accounting with no sockets: the Conversation verbs."""

from __future__ import annotations

import trio
import trio.testing

from pgbundle.pooler import ops as O
from pgbundle.pooler.conversation import Conversation
from pgbundle.shared.protocol import encode, messages as m
from pgbundle.shared.protocol.states import TransactionStatus

_I, _T, _E = (s.value for s in (TransactionStatus.IDLE, TransactionStatus.IN_BLOCK, TransactionStatus.FAILED))


def test_starts_idle() -> None:
    c = Conversation()
    assert c.idle and not c.busy and not c.in_transaction
    assert c.status is TransactionStatus.IDLE and c.pending_z == 0 and not c.ops


def test_simple_query_round_trip_is_timed() -> None:
    c = Conversation()
    assert c.sent(1, 0) is True  # a request starts: the caller arms query_timeout
    assert c.busy and not c.idle and c.pending_z == 1 and c.query_start and c.xact_start
    started = c.query_start
    assert c.ready(_I) is True
    assert c.idle and c.status is TransactionStatus.IDLE
    query, xact = c.timed(started + 2.0, True)
    assert query == 2.0 and xact == 2.0
    assert c.timed(started + 3.0, True) == (None, None)  # timed once


def test_pipelined_requests_answered_in_turn() -> None:
    c = Conversation()
    assert c.sent(2, 0)
    assert c.sent(1, -1) is False  # one is outstanding already: nothing new starts
    assert c.pending_z == 3
    assert c.ready(_T) is False and c.ready(_T) is False
    assert c.busy and c.in_transaction
    assert c.ready(_T) is True
    assert not c.busy and c.in_transaction and not c.idle


def test_transaction_time_spans_requests() -> None:
    c = Conversation()
    c.sent(1, 0)
    begun = c.xact_start
    c.ready(_T)
    query, xact = c.timed(begun + 1.0, False)  # BEGIN answered: the transaction goes on
    assert query == 1.0 and xact is None and c.xact_start == begun
    c.sent(1, 0)
    assert c.xact_start == begun  # the transaction started with the first request
    c.ready(_I)
    assert c.timed(begun + 5.0, True)[1] == 5.0
    assert c.xact_start == 0.0


def test_extended_protocol_unsynced_until_sync() -> None:
    c = Conversation()
    assert c.sent(0, 1) is False  # Parse/Bind/Describe/Flush without Sync: nothing owed yet
    assert c.busy and c.unsynced and c.pending_z == 0 and not c.query_start
    c.sent(0, -1)  # no extended message: the unsynced state stays
    assert c.unsynced
    c.sent(1, 0)  # the Sync
    assert not c.unsynced and c.pending_z == 1
    c.ready(_I)
    assert c.idle


def test_failed_transaction_and_unknown_status_count_as_in_transaction() -> None:
    c = Conversation()
    c.sent(1, 0)
    c.ready(_E)
    assert c.status is TransactionStatus.FAILED and c.in_transaction and not c.idle
    c.sent(1, 0)
    c.ready(ord("?"))
    assert c.status is TransactionStatus.IN_BLOCK and c.in_transaction


def test_pooler_ready_takes_only_the_status() -> None:
    c = Conversation()
    c.sent(1, 0)
    c.pooler_ready(_T)  # the pooler's own query answered: the client's request is still owed
    assert c.pending_z == 1 and c.in_transaction
    c.ready(_I)
    assert c.idle


def test_ready_without_request_stays_at_zero() -> None:
    c = Conversation()
    assert c.ready(_I) is True
    assert c.pending_z == 0


def test_queue_ops_lets_replies_on_their_way_pass_first() -> None:
    c = Conversation()
    c.sent(2, 0)
    c.queue_ops([O.Op(O.QUERY)])
    assert [op.kind for op in c.ops] == [O.ZCOUNT, O.QUERY] and c.ops[0].n == 2
    c.queue_ops([O.Op(O.SYNC)])  # ops already queued: no second ZCOUNT
    assert [op.kind for op in c.ops] == [O.ZCOUNT, O.QUERY, O.SYNC]
    fresh = Conversation()
    fresh.queue_ops([O.Op(O.PARSE)])
    assert [op.kind for op in fresh.ops] == [O.PARSE]


def test_client_left_forgets_the_timing() -> None:
    c = Conversation()
    c.sent(1, 0)
    c.client_left()
    assert c.query_start == 0.0 and c.xact_start == 0.0


def test_drain_waits_for_the_last_reply() -> None:
    c = Conversation()
    c.sent(2, 0)
    drained = []

    async def go() -> None:
        async with trio.open_nursery() as nursery:
            async def wait() -> None:
                await c.drain()
                drained.append(True)

            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            c.ready(_I)
            await trio.testing.wait_all_tasks_blocked()
            assert not drained
            c.ready(_I)
        assert drained

    trio.run(go)

    async def nothing_owed() -> None:
        await c.drain()  # returns at once

    trio.run(nothing_owed)


def test_end_wakes_every_waiter() -> None:
    c = Conversation()
    sink = O.Sink()
    c.queue_ops([O.Op(O.QUERY, O.SKIP, sink=sink), O.Op(O.SYNC)])
    c.sent(1, 0)

    async def go() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(c.drain)
            nursery.start_soon(sink.done.wait)
            await trio.testing.wait_all_tasks_blocked()
            c.end()

    trio.run(go)
    assert not c.ops


class FakeServer:
    """The ReplySide the matcher calls back: records what reached the client side."""

    def __init__(self) -> None:
        self.client: object | None = object()
        self.ready: list[int] = []
        self.errors: list[bytes] = []

    def client_ready(self, status: int) -> bool:
        self.ready.append(status)
        return True

    def reply_error(self, p: bytes) -> None:
        self.errors.append(p)

    def param_status(self, p: bytes, *, from_client: bool) -> bool:
        return True


def _pieces(*msgs: m.Message) -> list[tuple[int, bytes]]:
    return [(msg.TYPE[0], encode(msg)) for msg in msgs]


def test_match_puts_the_pooler_s_own_answer_in_place() -> None:
    c = Conversation()
    fake_parse = encode(m.ParseComplete())
    c.queue_ops([O.Op(O.PARSE, O.FAKE, fake_parse), O.Op(O.BIND), O.Op(O.SYNC)])
    c.sent(1, 0)
    server = FakeServer()
    bind, ready = encode(m.BindComplete()), encode(m.ReadyForQuery("I"))
    out, matched = c.match(server, _pieces(m.BindComplete(), m.ReadyForQuery("I")), True)
    assert out == fake_parse + bind + ready and matched and not c.ops
    assert server.ready == [_I]


def test_match_swallows_the_reply_to_the_pooler_s_query() -> None:
    c = Conversation()
    sink = O.Sink()
    c.queue_ops([O.Op(O.QUERY, O.SKIP, sink=sink)])
    server = FakeServer()
    out, matched = c.match(server, _pieces(m.DataRow((b"1",)), m.CommandComplete("SELECT 1"),
                                           m.ReadyForQuery("T")), True)
    assert out == b"" and matched
    assert sink.rows == [[b"1"]] and sink.done.is_set() and sink.status == _T
    assert server.ready == [] and c.in_transaction  # the status is taken; nothing was owed the client


def test_match_error_skips_the_rest_up_to_sync() -> None:
    c = Conversation()
    c.queue_ops([O.Op(O.PARSE), O.Op(O.BIND), O.Op(O.EXECUTE), O.Op(O.SYNC)])
    c.sent(1, 0)
    server = FakeServer()
    err = m.ErrorResponse({"S": "ERROR", "C": "42601", "M": "syntax error"})
    out, matched = c.match(server, _pieces(err), True)
    assert out == encode(err) and not matched and [op.kind for op in c.ops] == [O.SYNC]
    assert server.errors == [encode(err)]
    out, matched = c.match(server, _pieces(m.ReadyForQuery("I")), True)
    assert matched and server.ready == [_I]
