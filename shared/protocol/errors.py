"""The two ways a protocol exchange goes wrong (h11's split).

* :class:`LocalProtocolError` -- *we* misused the codec (encoding a message that
  is not valid to send, calling the API in the wrong state).  A bug on our side.
* :class:`RemoteProtocolError` -- *the peer* misbehaved (garbage bytes, a length
  field out of range, a message that is not allowed now).  The right reaction is
  to answer with an ErrorResponse carrying :attr:`sqlstate` and close.

Any other exception escaping the codec is a bug in the codec.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class; carries the SQLSTATE that describes the failure."""

    def __init__(self, message: str, sqlstate: str = "08P01") -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate


class LocalProtocolError(ProtocolError):
    """We tried to do something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""
