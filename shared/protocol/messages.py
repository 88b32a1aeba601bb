"""One immutable value object per protocol message (protocol 3.0 and 3.2).

Messages are frozen :class:`msgspec.Struct` instances.  Each class names the
wire type byte it is sent with in ``TYPE`` (``b""`` for the untyped startup-phase
packets).  Encoding and decoding live in :mod:`.codec`; nothing here does I/O.

Frontend = sent by a client, backend = sent by a server.  ``CopyData``,
``CopyDone`` and ``CopyFail`` travel in both directions (CopyFail frontend only).

Field names follow PostgreSQL's "Message Formats" chapter.  Strings are
``str`` (decoded as UTF-8 with surrogateescape so no input can fail to
decode); parameter and column values are ``bytes`` or ``None`` for NULL.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec


class Message(msgspec.Struct, frozen=True, gc=False):
    """Base of every message.  ``TYPE`` is the type byte, ``b""`` if untyped."""

    TYPE: ClassVar[bytes] = b""


# --------------------------------------------------------------------------
# Startup phase (untyped, frontend)


class StartupMessage(Message, frozen=True, gc=False):
    """First packet of a session: protocol version and parameters (user, database, ...)."""

    protocol: int
    params: dict[str, str]


class SSLRequest(Message, frozen=True, gc=False):
    """Asks for TLS; the server answers one byte, ``S`` or ``N``."""


class GSSENCRequest(Message, frozen=True, gc=False):
    """Asks for GSSAPI encryption; the server answers one byte, ``G`` or ``N``."""


class CancelRequest(Message, frozen=True, gc=False):
    """Sent on a fresh connection to cancel the query of (process_id, secret_key).

    ``secret_key`` is 4 bytes in protocol 3.0 and up to 256 in 3.2.
    """

    process_id: int
    secret_key: bytes


# --------------------------------------------------------------------------
# Frontend, typed


class PasswordMessage(Message, frozen=True, gc=False):
    """``p``: a password, or a SASL/GSS response; what it is depends on the auth exchange.

    ``data`` is the raw payload.  Use :func:`.codec.parse_sasl_initial_response` or take
    ``data`` as a SASLResponse / a NUL-terminated password as the exchange requires.
    """

    TYPE: ClassVar[bytes] = b"p"
    data: bytes


class SASLInitialResponse(Message, frozen=True, gc=False):
    """``p``: first SASL message: mechanism name and initial client response."""

    TYPE: ClassVar[bytes] = b"p"
    mechanism: str
    data: bytes | None


class SASLResponse(Message, frozen=True, gc=False):
    """``p``: a later SASL message."""

    TYPE: ClassVar[bytes] = b"p"
    data: bytes


class Query(Message, frozen=True, gc=False):
    """``Q``: simple query; may hold several statements."""

    TYPE: ClassVar[bytes] = b"Q"
    query: str


class Parse(Message, frozen=True, gc=False):
    """``P``: prepare ``query`` as statement ``name`` ("" = unnamed); 0 = unspecified type."""

    TYPE: ClassVar[bytes] = b"P"
    name: str
    query: str
    param_types: tuple[int, ...] = ()


class Bind(Message, frozen=True, gc=False):
    """``B``: bind parameters to ``statement``, creating ``portal``."""

    TYPE: ClassVar[bytes] = b"B"
    portal: str
    statement: str
    param_formats: tuple[int, ...] = ()
    params: tuple[bytes | None, ...] = ()
    result_formats: tuple[int, ...] = ()


class Describe(Message, frozen=True, gc=False):
    """``D``: describe statement (kind ``S``) or portal (kind ``P``)."""

    TYPE: ClassVar[bytes] = b"D"
    kind: str
    name: str


class Execute(Message, frozen=True, gc=False):
    """``E``: run ``portal``; ``max_rows`` 0 means all rows."""

    TYPE: ClassVar[bytes] = b"E"
    portal: str
    max_rows: int = 0


class Close(Message, frozen=True, gc=False):
    """``C`` (frontend): close statement (kind ``S``) or portal (kind ``P``)."""

    TYPE: ClassVar[bytes] = b"C"
    kind: str
    name: str


class Sync(Message, frozen=True, gc=False):
    """``S`` (frontend): end of an extended-protocol batch; asks for ReadyForQuery."""

    TYPE: ClassVar[bytes] = b"S"


class Flush(Message, frozen=True, gc=False):
    """``H``: asks the server to send what it has buffered, without a ReadyForQuery."""

    TYPE: ClassVar[bytes] = b"H"


class Terminate(Message, frozen=True, gc=False):
    """``X``: the client is closing the session."""

    TYPE: ClassVar[bytes] = b"X"


class FunctionCall(Message, frozen=True, gc=False):
    """``F``: the legacy fast-path function call."""

    TYPE: ClassVar[bytes] = b"F"
    function_oid: int
    arg_formats: tuple[int, ...]
    args: tuple[bytes | None, ...]
    result_format: int


class CopyFail(Message, frozen=True, gc=False):
    """``f``: the client aborts COPY FROM STDIN with ``message``."""

    TYPE: ClassVar[bytes] = b"f"
    message: str


# --------------------------------------------------------------------------
# Both directions


class CopyData(Message, frozen=True, gc=False):
    """``d``: a chunk of COPY data."""

    TYPE: ClassVar[bytes] = b"d"
    data: bytes


class CopyDone(Message, frozen=True, gc=False):
    """``c``: end of COPY data."""

    TYPE: ClassVar[bytes] = b"c"


# --------------------------------------------------------------------------
# Backend


class AuthenticationOk(Message, frozen=True, gc=False):
    """``R`` 0."""

    TYPE: ClassVar[bytes] = b"R"


class AuthenticationKerberosV5(Message, frozen=True, gc=False):
    """``R`` 2 (unsupported by every modern client)."""

    TYPE: ClassVar[bytes] = b"R"


class AuthenticationCleartextPassword(Message, frozen=True, gc=False):
    """``R`` 3: send the password in clear."""

    TYPE: ClassVar[bytes] = b"R"


class AuthenticationMD5Password(Message, frozen=True, gc=False):
    """``R`` 5: send md5(md5(password + user) + salt)."""

    TYPE: ClassVar[bytes] = b"R"
    salt: bytes


class AuthenticationGSS(Message, frozen=True, gc=False):
    """``R`` 7."""

    TYPE: ClassVar[bytes] = b"R"


class AuthenticationGSSContinue(Message, frozen=True, gc=False):
    """``R`` 8."""

    TYPE: ClassVar[bytes] = b"R"
    data: bytes


class AuthenticationSSPI(Message, frozen=True, gc=False):
    """``R`` 9."""

    TYPE: ClassVar[bytes] = b"R"


class AuthenticationSASL(Message, frozen=True, gc=False):
    """``R`` 10: the SASL mechanisms the server offers."""

    TYPE: ClassVar[bytes] = b"R"
    mechanisms: tuple[str, ...]


class AuthenticationSASLContinue(Message, frozen=True, gc=False):
    """``R`` 11: a SASL challenge."""

    TYPE: ClassVar[bytes] = b"R"
    data: bytes


class AuthenticationSASLFinal(Message, frozen=True, gc=False):
    """``R`` 12: SASL outcome data (server signature)."""

    TYPE: ClassVar[bytes] = b"R"
    data: bytes


class BackendKeyData(Message, frozen=True, gc=False):
    """``K``: the key a CancelRequest must quote."""

    TYPE: ClassVar[bytes] = b"K"
    process_id: int
    secret_key: bytes


class ParameterStatus(Message, frozen=True, gc=False):
    """``S`` (backend): a run-time parameter's current value."""

    TYPE: ClassVar[bytes] = b"S"
    name: str
    value: str


class ReadyForQuery(Message, frozen=True, gc=False):
    """``Z``: ready for a new query; ``status`` is ``I``, ``T`` or ``E``."""

    TYPE: ClassVar[bytes] = b"Z"
    status: str


class FieldDescription(msgspec.Struct, frozen=True, gc=False):
    """One column of a RowDescription."""

    name: str
    table_oid: int = 0
    column_attnum: int = 0
    type_oid: int = 25
    type_size: int = -1
    type_modifier: int = -1
    format: int = 0


class RowDescription(Message, frozen=True, gc=False):
    """``T``: the columns of the rows that follow."""

    TYPE: ClassVar[bytes] = b"T"
    fields: tuple[FieldDescription, ...]


class DataRow(Message, frozen=True, gc=False):
    """``D`` (backend): one row; ``None`` is NULL."""

    TYPE: ClassVar[bytes] = b"D"
    values: tuple[bytes | None, ...]


class CommandComplete(Message, frozen=True, gc=False):
    """``C`` (backend): a statement finished; ``tag`` such as ``SELECT 1``."""

    TYPE: ClassVar[bytes] = b"C"
    tag: str


class EmptyQueryResponse(Message, frozen=True, gc=False):
    """``I``: the query string was empty."""

    TYPE: ClassVar[bytes] = b"I"


class ErrorResponse(Message, frozen=True, gc=False):
    """``E`` (backend): an error; ``fields`` maps field codes (S, V, C, M, D, H, ...) to text."""

    TYPE: ClassVar[bytes] = b"E"
    fields: dict[str, str]

    @property
    def sqlstate(self) -> str:
        return self.fields.get("C", "")

    @property
    def message(self) -> str:
        return self.fields.get("M", "")

    @property
    def severity(self) -> str:
        return self.fields.get("V") or self.fields.get("S", "")


class NoticeResponse(Message, frozen=True, gc=False):
    """``N``: a notice; same fields as ErrorResponse."""

    TYPE: ClassVar[bytes] = b"N"
    fields: dict[str, str]

    @property
    def sqlstate(self) -> str:
        return self.fields.get("C", "")

    @property
    def message(self) -> str:
        return self.fields.get("M", "")


class ParseComplete(Message, frozen=True, gc=False):
    """``1``."""

    TYPE: ClassVar[bytes] = b"1"


class BindComplete(Message, frozen=True, gc=False):
    """``2``."""

    TYPE: ClassVar[bytes] = b"2"


class CloseComplete(Message, frozen=True, gc=False):
    """``3``."""

    TYPE: ClassVar[bytes] = b"3"


class NoData(Message, frozen=True, gc=False):
    """``n``: the statement or portal returns no rows."""

    TYPE: ClassVar[bytes] = b"n"


class PortalSuspended(Message, frozen=True, gc=False):
    """``s``: Execute stopped at max_rows; more rows may follow."""

    TYPE: ClassVar[bytes] = b"s"


class ParameterDescription(Message, frozen=True, gc=False):
    """``t``: the parameter types of a statement."""

    TYPE: ClassVar[bytes] = b"t"
    type_oids: tuple[int, ...]


class CopyInResponse(Message, frozen=True, gc=False):
    """``G``: COPY FROM STDIN begins; send CopyData then CopyDone or CopyFail."""

    TYPE: ClassVar[bytes] = b"G"
    format: int
    column_formats: tuple[int, ...]


class CopyOutResponse(Message, frozen=True, gc=False):
    """``H`` (backend): COPY TO STDOUT begins."""

    TYPE: ClassVar[bytes] = b"H"
    format: int
    column_formats: tuple[int, ...]


class CopyBothResponse(Message, frozen=True, gc=False):
    """``W``: COPY in both directions (replication)."""

    TYPE: ClassVar[bytes] = b"W"
    format: int
    column_formats: tuple[int, ...]


class NotificationResponse(Message, frozen=True, gc=False):
    """``A``: a NOTIFY delivered to a listener."""

    TYPE: ClassVar[bytes] = b"A"
    process_id: int
    channel: str
    payload: str


class FunctionCallResponse(Message, frozen=True, gc=False):
    """``V``: result of a FunctionCall; ``None`` is NULL."""

    TYPE: ClassVar[bytes] = b"V"
    value: bytes | None


class NegotiateProtocolVersion(Message, frozen=True, gc=False):
    """``v``: the newest minor version the server supports and the options it did not know."""

    TYPE: ClassVar[bytes] = b"v"
    newest_minor: int
    unrecognized: tuple[str, ...] = ()
