"""The one trio adapter in shared/: drive the sans-IO codec over a trio stream.

:class:`MessageStream` reads whole messages (via :class:`FrameBuffer`) and
writes encoded messages.  It is used where every message is decoded (logins,
the server's backends, tests); the pooler's relay path reads raw bytes itself.

Contract: :meth:`MessageStream.receive` returns ``(type, payload)`` or raises
:class:`EOFError` when the peer closed cleanly, RemoteProtocolError for bad framing,
and trio's BrokenResourceError/ClosedResourceError for a broken socket.  The
caller owns the stream and closes it.
"""

from __future__ import annotations

import trio

from pgbundle.shared.protocol import FrameBuffer, encode
from pgbundle.shared.protocol.constants import DEFAULT_MAX_MESSAGE_LENGTH
from pgbundle.shared.protocol.framing import NEED_DATA
from pgbundle.shared.protocol.messages import Message

RECEIVE_SIZE = 65536


class MessageStream:
    """Whole-message reads and writes over a trio stream."""

    __slots__ = ("stream", "frames")

    def __init__(
        self, stream: trio.abc.Stream, *, startup: bool = False, max_length: int = DEFAULT_MAX_MESSAGE_LENGTH
    ) -> None:
        self.stream = stream
        self.frames = FrameBuffer(startup=startup, max_length=max_length)

    async def receive(self) -> tuple[int, bytes]:
        """The next complete message as ``(type, payload)`` (type 0 = startup packet)."""
        while True:
            f = self.frames.next_frame()
            if f is not NEED_DATA:
                return f
            data = await self.stream.receive_some(RECEIVE_SIZE)
            if not data:
                raise EOFError("peer closed the connection")
            self.frames.receive_data(bytes(data))

    async def send(self, *msgs: Message) -> None:
        """Encode and send ``msgs`` in one write."""
        await self.stream.send_all(b"".join(encode(x) for x in msgs))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)
