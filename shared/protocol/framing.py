"""Framing: where messages begin and end in a byte stream.  No I/O.

Two tools, for two jobs:

* :class:`FrameBuffer` collects bytes and hands out complete messages
  (``(type, payload)``; untyped startup packets have type 0).  Used wherever
  every message is decoded: logins, the server's backends, tests.
* :class:`StreamScanner` walks a relayed stream *without* copying payloads it
  does not need: it reports the bytes to pass through and the complete bytes
  only of the message types the caller asked to see.  The pooler's data path
  uses it, as pgbouncer's sbuf looks at packet headers while copying.

Both enforce a maximum message length; a length word that is below 4 or above
the maximum raises :class:`RemoteProtocolError` (08P01), after which the stream is
unusable and must be closed.
"""

from __future__ import annotations

import struct

from .constants import DEFAULT_MAX_MESSAGE_LENGTH, MAX_STARTUP_PACKET_LENGTH
from .errors import RemoteProtocolError

_U32 = struct.Struct("!I")
_unpack_u32 = _U32.unpack_from

#: A sentinel returned by :meth:`FrameBuffer.next_frame` when more bytes are needed.
NEED_DATA = None

#: The type used for untyped startup-phase packets.
STARTUP = 0


class FrameBuffer:
    """Accumulates bytes and yields whole messages.

    Call :meth:`receive_data` with what arrived, then :meth:`next_frame` until it
    returns :data:`NEED_DATA`.  While ``startup`` is true the next packet is read as
    untyped (length word first); set it to false once the startup packet is in.

    Errors: :class:`RemoteProtocolError` for a length word out of range.
    """

    __slots__ = ("_buf", "_pos", "startup", "max_length")

    def __init__(self, *, startup: bool = False, max_length: int = DEFAULT_MAX_MESSAGE_LENGTH) -> None:
        self._buf = bytearray()
        self._pos = 0
        self.startup = startup
        self.max_length = max_length

    def receive_data(self, data: bytes) -> None:
        """Append bytes read from the peer."""
        if self._pos > 65536 and self._pos * 2 > len(self._buf):
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def __len__(self) -> int:
        """Bytes received and not yet returned as frames."""
        return len(self._buf) - self._pos

    def pending(self) -> bytes:
        """The bytes not yet framed (consumes them)."""
        out = bytes(self._buf[self._pos :])
        self._buf.clear()
        self._pos = 0
        return out

    def next_frame(self) -> tuple[int, bytes] | None:
        """Return ``(type_byte, payload)`` for the next complete message, or NEED_DATA.

        For a startup-phase packet ``type_byte`` is :data:`STARTUP` (0).
        """
        buf = self._buf
        pos = self._pos
        avail = len(buf) - pos
        if self.startup:
            if avail < 4:
                return NEED_DATA
            length = _unpack_u32(buf, pos)[0]
            if length < 8 or length > MAX_STARTUP_PACKET_LENGTH:
                raise RemoteProtocolError("invalid length of startup packet")
            if avail < length:
                return NEED_DATA
            payload = bytes(buf[pos + 4 : pos + length])
            self._pos = pos + length
            return STARTUP, payload
        if avail < 5:
            return NEED_DATA
        length = _unpack_u32(buf, pos + 1)[0]
        if length < 4 or length > self.max_length:
            raise RemoteProtocolError(f"invalid message length {length}")
        if avail < length + 1:
            return NEED_DATA
        t = buf[pos]
        payload = bytes(buf[pos + 5 : pos + 1 + length])
        self._pos = pos + 1 + length
        if self._pos == len(buf):
            buf.clear()
            self._pos = 0
        return t, payload


#: Piece kind for pass-through bytes in :meth:`StreamScanner.feed`'s result.
PASS = -1


class StreamScanner:
    """Finds message boundaries in a relayed stream of typed messages.

    ``want`` is the set of type bytes (ints) whose complete message the caller
    needs to see.  :meth:`feed` returns a list of pieces ``(kind, data)``:

    * ``(PASS, bytes)`` -- bytes to relay unchanged: whole messages of other
      types, or parts of one that spans feeds;
    * ``(type, bytes)`` -- one complete message of a wanted type, header included.

    Joining every piece's data gives back exactly the bytes fed so far, except
    that up to 4 bytes of a header split across feeds are held back until the
    next feed.  ``feed`` also returns whether the pieces equal its input exactly
    (so an unchanged relay can send the input object itself).

    Errors: RemoteProtocolError for a length word below 4 or above ``max_length``.
    """

    __slots__ = ("want", "max_length", "_skip", "_acc", "_acc_need", "_acc_type", "_hold")

    def __init__(self, want: frozenset[int] | set[int], max_length: int = DEFAULT_MAX_MESSAGE_LENGTH) -> None:
        self.want = frozenset(want)
        self.max_length = max_length
        self._skip = 0  # bytes still to pass of a message that spans feeds
        self._acc: bytearray | None = None  # a wanted message being collected
        self._acc_need = 0
        self._acc_type = 0
        self._hold = b""  # a partial header

    @property
    def at_boundary(self) -> bool:
        """True when no message is partly fed."""
        return not self._skip and self._acc is None and not self._hold

    def feed(self, data: bytes) -> tuple[list[tuple[int, bytes]], bool]:
        pieces: list[tuple[int, bytes]] = []
        intact = True
        if self._hold:
            data = self._hold + data
            self._hold = b""
            intact = False
        n = len(data)
        i = 0
        run = 0  # start of the pending pass-through run
        if self._acc is not None:
            take = min(self._acc_need, n)
            self._acc += data[:take]
            self._acc_need -= take
            i = take
            if self._acc_need:
                return pieces, False
            pieces.append((self._acc_type, bytes(self._acc)))
            self._acc = None
            intact = False
            run = i
        elif self._skip:
            take = min(self._skip, n)
            self._skip -= take
            i = take
        want = self.want
        maxlen = self.max_length
        while i < n:
            if n - i < 5:
                if run < i:
                    pieces.append((PASS, data[run:i]))
                self._hold = bytes(data[i:])
                return pieces, False
            t = data[i]
            length = _unpack_u32(data, i + 1)[0]
            if length < 4 or length > maxlen:
                raise RemoteProtocolError(f"invalid message length {length}")
            end = i + 1 + length
            if t in want:
                if run < i:
                    pieces.append((PASS, data[run:i]))
                if end <= n:
                    pieces.append((t, data[i:end]))
                else:
                    self._acc = bytearray(data[i:])
                    self._acc_need = end - n
                    self._acc_type = t
                    return pieces, False
                i = run = end
            else:
                if end > n:
                    self._skip = end - n
                    i = n
                    break
                i = end
        if run < n:
            if run == 0 and not pieces:
                pieces.append((PASS, data))
                return pieces, intact
            pieces.append((PASS, data[run:n]))
        return pieces, intact
