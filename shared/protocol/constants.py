"""Protocol numbers: versions, special request codes, size limits.

See PostgreSQL's "Message Formats" chapter (protocol 3.0; 3.2 adds longer
cancel keys).
"""

from __future__ import annotations

PROTOCOL_3_0 = (3 << 16) | 0
PROTOCOL_3_2 = (3 << 16) | 2

# Special "protocol versions" that mark requests sent instead of a startup packet.
CANCEL_REQUEST_CODE = (1234 << 16) | 5678  # 80877102
SSL_REQUEST_CODE = (1234 << 16) | 5679  # 80877103
GSSENC_REQUEST_CODE = (1234 << 16) | 5680  # 80877104

# The one-byte answer to an SSLRequest (or GSSENCRequest) that is refused: the client
# goes on in clear with its StartupMessage (or gives up).
SSL_REFUSED = b"N"

# PostgreSQL's MAX_STARTUP_PACKET_LENGTH: a startup packet larger than this is refused.
MAX_STARTUP_PACKET_LENGTH = 10000
# PostgreSQL's PQ_LARGE_MESSAGE_LIMIT - 1: the largest regular message we accept by default.
DEFAULT_MAX_MESSAGE_LENGTH = 0x3FFFFFFF

