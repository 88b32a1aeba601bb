"""Sans-IO PostgreSQL protocol v3: message objects, framing and the codec.

Bytes in, message objects out; message objects in, bytes out.  No sockets and
no trio anywhere in this package (h11's rule).
"""

from . import messages
from .codec import (
    decode_backend,
    decode_backend_as,
    decode_frontend,
    decode_startup,
    encode,
    encode_many,
    frame,
    parse_password,
    parse_sasl_initial_response,
)
from .constants import (
    CANCEL_REQUEST_CODE,
    DEFAULT_MAX_MESSAGE_LENGTH,
    GSSENC_REQUEST_CODE,
    MAX_STARTUP_PACKET_LENGTH,
    PROTOCOL_3_0,
    PROTOCOL_3_2,
    SSL_REFUSED,
    SSL_REQUEST_CODE,
)
from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from .framing import NEED_DATA, PASS, STARTUP, FrameBuffer, StreamScanner
from .states import TransactionStatus

__all__ = [
    "messages",
    "decode_backend",
    "decode_backend_as",
    "decode_frontend",
    "decode_startup",
    "encode",
    "encode_many",
    "frame",
    "parse_password",
    "parse_sasl_initial_response",
    "CANCEL_REQUEST_CODE",
    "DEFAULT_MAX_MESSAGE_LENGTH",
    "GSSENC_REQUEST_CODE",
    "MAX_STARTUP_PACKET_LENGTH",
    "PROTOCOL_3_0",
    "PROTOCOL_3_2",
    "SSL_REFUSED",
    "SSL_REQUEST_CODE",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "NEED_DATA",
    "PASS",
    "STARTUP",
    "FrameBuffer",
    "StreamScanner",
    "TransactionStatus",
]
