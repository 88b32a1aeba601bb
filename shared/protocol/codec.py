"""Encode message objects to bytes and decode payloads to message objects.

Pure functions, no state and no I/O.  Framing (finding where a message ends)
is :mod:`.framing`'s job; these functions see one message at a time:

* :func:`encode` -- message object -> complete wire bytes (type, length, payload).
* :func:`decode_frontend` / :func:`decode_backend` -- type byte + payload -> object;
  :func:`decode_backend_as` when the caller knows which message the type byte is.
* :func:`decode_startup` -- payload of an untyped startup-phase packet -> object.

Malformed payloads raise :class:`RemoteProtocolError` (SQLSTATE 08P01, PostgreSQL's
"invalid message format").  Encoding something that cannot be sent raises
:class:`LocalProtocolError`.
"""

from __future__ import annotations

import builtins
import struct
from collections.abc import Callable
from typing import Any, TypeVar

from . import messages as m
from .constants import CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, SSL_REQUEST_CODE
from .errors import LocalProtocolError, RemoteProtocolError

_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
_I16 = struct.Struct("!h")
_HDR = struct.Struct("!cI")
_FIELD = struct.Struct("!IhIhih")


def _s(text: str) -> bytes:
    """A NUL-terminated string."""
    b = text.encode("utf-8", "surrogateescape")
    if b"\0" in b:
        raise LocalProtocolError(f"string contains a NUL byte: {text!r}")
    return b + b"\0"


def frame(type_byte: bytes, payload: bytes = b"") -> bytes:
    """Wrap ``payload`` as a typed message."""
    return _HDR.pack(type_byte, len(payload) + 4) + payload


# ----------------------------------------------------------------------------- reading


class Reader:
    """Cursor over one message payload; every overrun is a RemoteProtocolError."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def _need(self, n: int) -> int:
        p = self.pos
        if n < 0 or p + n > len(self.buf):
            raise RemoteProtocolError("invalid message format")
        self.pos = p + n
        return p

    def byte(self) -> int:
        return self.buf[self._need(1)]

    def int16(self) -> int:
        v: int
        (v,) = _I16.unpack_from(self.buf, self._need(2))
        return v

    def int32(self) -> int:
        v: int
        (v,) = _I32.unpack_from(self.buf, self._need(4))
        return v

    def uint32(self) -> int:
        v: int
        (v,) = _U32.unpack_from(self.buf, self._need(4))
        return v

    def bytes(self, n: int) -> builtins.bytes:
        p = self._need(n)
        return bytes(self.buf[p : p + n])

    def rest(self) -> builtins.bytes:
        p = self.pos
        self.pos = len(self.buf)
        return bytes(self.buf[p:])

    def cstr(self) -> str:
        buf = self.buf
        pos = self.pos
        end = buf.find(b"\0", pos)
        if end < 0:
            raise RemoteProtocolError("invalid string in message")
        self.pos = end + 1
        return bytes(buf[pos:end]).decode("utf-8", "surrogateescape")

    def value(self) -> builtins.bytes | None:
        n = self.int32()
        if n == -1:
            return None
        if n < -1:
            raise RemoteProtocolError("invalid value length in message")
        return self.bytes(n)

    def int16s(self) -> tuple[int, ...]:
        n = self.int16()
        if n < 0:
            raise RemoteProtocolError("invalid count in message")
        if n == 0:
            return ()
        p = self.pos
        if p + 2 * n > len(self.buf):
            raise RemoteProtocolError("invalid message format")
        self.pos = p + 2 * n
        return struct.unpack_from(f"!{n}h", self.buf, p)

    def values(self, n: int) -> tuple[builtins.bytes | None, ...]:
        """``n`` length-prefixed values (-1 = NULL), as :meth:`value` ``n`` times."""
        buf = self.buf
        pos = self.pos
        size = len(buf)
        out: list[bytes | None] = []
        try:
            for _ in range(n):
                if pos + 4 > size:
                    raise RemoteProtocolError("invalid message format")
                ln = _I32.unpack_from(buf, pos)[0]
                pos += 4
                if ln == -1:
                    out.append(None)
                    continue
                if ln < -1:
                    raise RemoteProtocolError("invalid value length in message")
                if pos + ln > size:
                    raise RemoteProtocolError("invalid message format")
                out.append(bytes(buf[pos : pos + ln]))
                pos += ln
        finally:
            self.pos = pos
        return tuple(out)

    def done(self) -> None:
        if self.pos != len(self.buf):
            raise RemoteProtocolError("invalid message format")


def _fields(r: Reader) -> dict[str, str]:
    out: dict[str, str] = {}
    while True:
        code = r.byte()
        if code == 0:
            return out
        out[chr(code)] = r.cstr()


# ----------------------------------------------------------------------------- startup


def decode_startup(payload: bytes) -> m.Message:
    """Decode an untyped startup-phase packet (its payload, after the length word).

    Returns StartupMessage, SSLRequest, GSSENCRequest or CancelRequest.  An
    unsupported protocol version is returned as a StartupMessage; the caller decides.
    """
    r = Reader(payload)
    code = r.uint32()
    if code == SSL_REQUEST_CODE:
        r.done()
        return m.SSLRequest()
    if code == GSSENC_REQUEST_CODE:
        r.done()
        return m.GSSENCRequest()
    if code == CANCEL_REQUEST_CODE:
        pid = r.uint32()
        key = r.rest()
        if not 4 <= len(key) <= 256:
            raise RemoteProtocolError("invalid length of cancel request packet")
        return m.CancelRequest(pid, key)
    params: dict[str, str] = {}
    if code >> 16 != 3:  # another protocol: the caller refuses it before reading any parameter
        return m.StartupMessage(code, params)
    while True:
        if r.pos >= len(payload):
            raise RemoteProtocolError("invalid startup packet layout: expected terminator as last byte")
        name = r.cstr()
        if name == "":
            break
        params[name] = r.cstr()
    r.done()
    return m.StartupMessage(code, params)


# ----------------------------------------------------------------------------- frontend


def _d_query(r: Reader) -> m.Message:
    return m.Query(r.cstr())


def _d_parse(r: Reader) -> m.Message:
    name = r.cstr()
    query = r.cstr()
    n = r.int16()
    if n < 0:
        raise RemoteProtocolError("invalid count in message")
    return m.Parse(name, query, tuple(r.uint32() for _ in range(n)))


def _d_bind(r: Reader) -> m.Message:
    portal = r.cstr()
    stmt = r.cstr()
    fmts = r.int16s()
    n = r.int16()
    if n < 0:
        raise RemoteProtocolError("invalid count in message")
    params = r.values(n)
    return m.Bind(portal, stmt, fmts, params, r.int16s())


def _kind(r: Reader) -> str:
    k = chr(r.byte())
    if k not in "SP":
        raise RemoteProtocolError(f"invalid DESCRIBE/CLOSE message subtype {ord(k)}")
    return k


def _d_describe(r: Reader) -> m.Message:
    kind = _kind(r)
    return m.Describe(kind, r.cstr())


def _d_execute(r: Reader) -> m.Message:
    portal = r.cstr()
    return m.Execute(portal, r.int32())


def _d_close(r: Reader) -> m.Message:
    kind = _kind(r)
    return m.Close(kind, r.cstr())


def _d_function_call(r: Reader) -> m.Message:
    oid = r.uint32()
    fmts = r.int16s()
    n = r.int16()
    if n < 0:
        raise RemoteProtocolError("invalid count in message")
    args = tuple(r.value() for _ in range(n))
    return m.FunctionCall(oid, fmts, args, r.int16())


_FRONTEND: dict[int, Callable[[Reader], m.Message]] = {
    ord("Q"): _d_query,
    ord("P"): _d_parse,
    ord("B"): _d_bind,
    ord("D"): _d_describe,
    ord("E"): _d_execute,
    ord("C"): _d_close,
    ord("S"): lambda r: m.Sync(),
    ord("H"): lambda r: m.Flush(),
    ord("X"): lambda r: m.Terminate(),
    ord("p"): lambda r: m.PasswordMessage(r.rest()),
    ord("d"): lambda r: m.CopyData(r.rest()),
    ord("c"): lambda r: m.CopyDone(),
    ord("f"): lambda r: m.CopyFail(r.cstr()),
    ord("F"): _d_function_call,
}


# messages without a payload: one (immutable) instance each
_FRONTEND_EMPTY: dict[int, m.Message] = {ord("S"): m.Sync(), ord("H"): m.Flush(), ord("X"): m.Terminate(),
                                         ord("c"): m.CopyDone()}


def decode_frontend(type_byte: int, payload: bytes) -> m.Message:
    """Decode a message a client sent.  Unknown types raise RemoteProtocolError."""
    if not payload:
        msg = _FRONTEND_EMPTY.get(type_byte)
        if msg is not None:
            return msg
    fn = _FRONTEND.get(type_byte)
    if fn is None:
        raise RemoteProtocolError(f"invalid frontend message type {type_byte}")
    r = Reader(payload)
    msg = fn(r)
    r.done()
    return msg


def parse_sasl_initial_response(data: bytes) -> m.SASLInitialResponse:
    """Interpret a PasswordMessage payload as SASLInitialResponse."""
    r = Reader(data)
    mech = r.cstr()
    n = r.int32()
    body = None if n == -1 else r.bytes(n)
    r.done()
    return m.SASLInitialResponse(mech, body)


def parse_password(data: bytes) -> str:
    """Interpret a PasswordMessage payload as a NUL-terminated password."""
    r = Reader(data)
    pw = r.cstr()
    r.done()
    return pw


# ----------------------------------------------------------------------------- backend


def _d_auth(r: Reader) -> m.Message:
    code = r.int32()
    if code == 0:
        return m.AuthenticationOk()
    if code == 3:
        return m.AuthenticationCleartextPassword()
    if code == 5:
        return m.AuthenticationMD5Password(r.bytes(4))
    if code == 10:
        mechs = []
        while True:
            s = r.cstr()
            if not s:
                break
            mechs.append(s)
        return m.AuthenticationSASL(tuple(mechs))
    if code == 11:
        return m.AuthenticationSASLContinue(r.rest())
    if code == 12:
        return m.AuthenticationSASLFinal(r.rest())
    if code == 2:
        return m.AuthenticationKerberosV5()
    if code == 7:
        return m.AuthenticationGSS()
    if code == 8:
        return m.AuthenticationGSSContinue(r.rest())
    if code == 9:
        return m.AuthenticationSSPI()
    raise RemoteProtocolError(f"unsupported authentication request {code}")


def _d_row_description(r: Reader) -> m.Message:
    n = r.int16()
    fields = []
    for _ in range(n):
        name = r.cstr()
        p = r._need(_FIELD.size)
        fields.append(m.FieldDescription(name, *_FIELD.unpack_from(r.buf, p)))
    return m.RowDescription(tuple(fields))


def _d_data_row(r: Reader) -> m.Message:
    n = r.int16()
    return m.DataRow(tuple(r.value() for _ in range(n)))


def _d_copy_response(
    cls: type[m.CopyInResponse | m.CopyOutResponse | m.CopyBothResponse],
) -> Callable[[Reader], m.Message]:
    def d(r: Reader) -> m.Message:
        fmt = r.byte()
        return cls(fmt, r.int16s())

    return d


def _d_negotiate(r: Reader) -> m.Message:
    minor = r.int32()
    n = r.int32()
    return m.NegotiateProtocolVersion(minor, tuple(r.cstr() for _ in range(n)))


def _d_notification(r: Reader) -> m.Message:
    pid = r.int32()
    channel = r.cstr()
    return m.NotificationResponse(pid, channel, r.cstr())


_BACKEND: dict[int, Callable[[Reader], m.Message]] = {
    ord("R"): _d_auth,
    ord("K"): lambda r: m.BackendKeyData(r.uint32(), r.rest()),
    ord("S"): lambda r: m.ParameterStatus(r.cstr(), r.cstr()),
    ord("Z"): lambda r: m.ReadyForQuery(chr(r.byte())),
    ord("T"): _d_row_description,
    ord("D"): _d_data_row,
    ord("C"): lambda r: m.CommandComplete(r.cstr()),
    ord("I"): lambda r: m.EmptyQueryResponse(),
    ord("E"): lambda r: m.ErrorResponse(_fields(r)),
    ord("N"): lambda r: m.NoticeResponse(_fields(r)),
    ord("1"): lambda r: m.ParseComplete(),
    ord("2"): lambda r: m.BindComplete(),
    ord("3"): lambda r: m.CloseComplete(),
    ord("n"): lambda r: m.NoData(),
    ord("s"): lambda r: m.PortalSuspended(),
    ord("t"): lambda r: m.ParameterDescription(tuple(r.uint32() for _ in range(r.int16()))),
    ord("G"): _d_copy_response(m.CopyInResponse),
    ord("H"): _d_copy_response(m.CopyOutResponse),
    ord("W"): _d_copy_response(m.CopyBothResponse),
    ord("d"): lambda r: m.CopyData(r.rest()),
    ord("c"): lambda r: m.CopyDone(),
    ord("A"): _d_notification,
    ord("V"): lambda r: m.FunctionCallResponse(r.value()),
    ord("v"): _d_negotiate,
}


def decode_backend(type_byte: int, payload: bytes) -> m.Message:
    """Decode a message a server sent.  Unknown types raise RemoteProtocolError."""
    fn = _BACKEND.get(type_byte)
    if fn is None:
        raise RemoteProtocolError(f"invalid backend message type {type_byte}")
    r = Reader(payload)
    msg = fn(r)
    r.done()
    return msg


_M = TypeVar("_M", bound=m.Message)


def decode_backend_as(cls: type[_M], type_byte: int, payload: bytes) -> _M:
    """:func:`decode_backend` for a type byte the caller has already matched to ``cls``
    (``decode_backend_as(m.DataRow, t, payload)``); a message of another class raises
    RemoteProtocolError."""
    msg = decode_backend(type_byte, payload)
    if not isinstance(msg, cls):
        raise RemoteProtocolError(f"expected {cls.__name__}, got {type(msg).__name__}")
    return msg


# ----------------------------------------------------------------------------- encoding


def _value(v: bytes | None) -> bytes:
    if v is None:
        return b"\xff\xff\xff\xff"
    return _I32.pack(len(v)) + v


def _e_data_row(x: m.DataRow) -> bytes:
    vals = x.values
    out = [_I16.pack(len(vals))]
    for v in vals:
        if v is None:
            out.append(b"\xff\xff\xff\xff")
        else:
            out.append(_I32.pack(len(v)))
            out.append(v)
    body = b"".join(out)
    return _HDR.pack(b"D", len(body) + 4) + body


_READY = {st: frame(b"Z", st.encode("ascii")) for st in ("I", "T", "E")}
_TAGS: dict[str, bytes] = {}  # CommandComplete of the tags sent again and again


def _e_command_complete(x: m.CommandComplete) -> bytes:
    b = _TAGS.get(x.tag)
    if b is None:
        b = frame(b"C", _s(x.tag))
        if len(_TAGS) >= 256:
            _TAGS.clear()
        _TAGS[x.tag] = b
    return b


_ROW_DESCRIPTIONS: dict[m.RowDescription, bytes] = {}  # a server sends the same ones again


def _e_row_description(x: m.RowDescription) -> bytes:
    b = _ROW_DESCRIPTIONS.get(x)
    if b is None:
        b = frame(
            b"T",
            _I16.pack(len(x.fields))
            + b"".join(
                _s(f.name)
                + _FIELD.pack(f.table_oid, f.column_attnum, f.type_oid, f.type_size, f.type_modifier, f.format)
                for f in x.fields
            ),
        )
        if len(_ROW_DESCRIPTIONS) >= 256:
            _ROW_DESCRIPTIONS.clear()
        _ROW_DESCRIPTIONS[x] = b
    return b


def _int16s(xs: tuple[int, ...]) -> bytes:
    return struct.pack(f"!h{len(xs)}h", len(xs), *xs)


def _fields_bytes(fields: dict[str, str]) -> bytes:
    out = bytearray()
    for k, v in fields.items():
        if len(k) != 1:
            raise LocalProtocolError(f"error field code must be one character: {k!r}")
        out += k.encode("ascii") + _s(v)
    return bytes(out) + b"\0"


def _e_startup(msg: m.StartupMessage) -> bytes:
    body = _U32.pack(msg.protocol)
    for k, v in msg.params.items():
        body += _s(k) + _s(v)
    body += b"\0"
    return _U32.pack(len(body) + 4) + body


def _e_auth(code: int, extra: bytes = b"") -> bytes:
    return frame(b"R", _I32.pack(code) + extra)


_ENCODERS: dict[type, Callable[[Any], bytes]] = {
    m.StartupMessage: _e_startup,
    m.SSLRequest: lambda x: _U32.pack(8) + _U32.pack(SSL_REQUEST_CODE),
    m.GSSENCRequest: lambda x: _U32.pack(8) + _U32.pack(GSSENC_REQUEST_CODE),
    m.CancelRequest: lambda x: _U32.pack(12 + len(x.secret_key))
    + _U32.pack(CANCEL_REQUEST_CODE)
    + _U32.pack(x.process_id)
    + x.secret_key,
    m.PasswordMessage: lambda x: frame(b"p", x.data),
    m.SASLInitialResponse: lambda x: frame(
        b"p", _s(x.mechanism) + (_I32.pack(-1) if x.data is None else _I32.pack(len(x.data)) + x.data)
    ),
    m.SASLResponse: lambda x: frame(b"p", x.data),
    m.Query: lambda x: frame(b"Q", _s(x.query)),
    m.Parse: lambda x: frame(
        b"P",
        _s(x.name) + _s(x.query) + struct.pack(f"!h{len(x.param_types)}I", len(x.param_types), *x.param_types),
    ),
    m.Bind: lambda x: frame(
        b"B",
        _s(x.portal)
        + _s(x.statement)
        + _int16s(x.param_formats)
        + _I16.pack(len(x.params))
        + b"".join(_value(v) for v in x.params)
        + _int16s(x.result_formats),
    ),
    m.Describe: lambda x: frame(b"D", x.kind.encode("ascii") + _s(x.name)),
    m.Execute: lambda x: frame(b"E", _s(x.portal) + _I32.pack(x.max_rows)),
    m.Close: lambda x: frame(b"C", x.kind.encode("ascii") + _s(x.name)),
    m.Sync: lambda x: b"S\0\0\0\4",
    m.Flush: lambda x: b"H\0\0\0\4",
    m.Terminate: lambda x: b"X\0\0\0\4",
    m.FunctionCall: lambda x: frame(
        b"F",
        _U32.pack(x.function_oid)
        + _int16s(x.arg_formats)
        + _I16.pack(len(x.args))
        + b"".join(_value(v) for v in x.args)
        + _I16.pack(x.result_format),
    ),
    m.CopyFail: lambda x: frame(b"f", _s(x.message)),
    m.CopyData: lambda x: frame(b"d", x.data),
    m.CopyDone: lambda x: b"c\0\0\0\4",
    m.AuthenticationOk: lambda x: b"R\0\0\0\x08\0\0\0\0",
    m.AuthenticationKerberosV5: lambda x: _e_auth(2),
    m.AuthenticationCleartextPassword: lambda x: _e_auth(3),
    m.AuthenticationMD5Password: lambda x: _e_auth(5, x.salt),
    m.AuthenticationGSS: lambda x: _e_auth(7),
    m.AuthenticationGSSContinue: lambda x: _e_auth(8, x.data),
    m.AuthenticationSSPI: lambda x: _e_auth(9),
    m.AuthenticationSASL: lambda x: _e_auth(10, b"".join(_s(s) for s in x.mechanisms) + b"\0"),
    m.AuthenticationSASLContinue: lambda x: _e_auth(11, x.data),
    m.AuthenticationSASLFinal: lambda x: _e_auth(12, x.data),
    m.BackendKeyData: lambda x: frame(b"K", _U32.pack(x.process_id) + x.secret_key),
    m.ParameterStatus: lambda x: frame(b"S", _s(x.name) + _s(x.value)),
    m.ReadyForQuery: lambda x: _READY.get(x.status) or frame(b"Z", x.status.encode("ascii")),
    m.RowDescription: _e_row_description,
    m.DataRow: _e_data_row,
    m.CommandComplete: _e_command_complete,
    m.EmptyQueryResponse: lambda x: b"I\0\0\0\4",
    m.ErrorResponse: lambda x: frame(b"E", _fields_bytes(x.fields)),
    m.NoticeResponse: lambda x: frame(b"N", _fields_bytes(x.fields)),
    m.ParseComplete: lambda x: b"1\0\0\0\4",
    m.BindComplete: lambda x: b"2\0\0\0\4",
    m.CloseComplete: lambda x: b"3\0\0\0\4",
    m.NoData: lambda x: b"n\0\0\0\4",
    m.PortalSuspended: lambda x: b"s\0\0\0\4",
    m.ParameterDescription: lambda x: frame(
        b"t", struct.pack(f"!h{len(x.type_oids)}I", len(x.type_oids), *x.type_oids)
    ),
    m.CopyInResponse: lambda x: frame(b"G", bytes([x.format]) + _int16s(x.column_formats)),
    m.CopyOutResponse: lambda x: frame(b"H", bytes([x.format]) + _int16s(x.column_formats)),
    m.CopyBothResponse: lambda x: frame(b"W", bytes([x.format]) + _int16s(x.column_formats)),
    m.NotificationResponse: lambda x: frame(b"A", _I32.pack(x.process_id) + _s(x.channel) + _s(x.payload)),
    m.FunctionCallResponse: lambda x: frame(b"V", _value(x.value)),
    m.NegotiateProtocolVersion: lambda x: frame(
        b"v", _I32.pack(x.newest_minor) + _I32.pack(len(x.unrecognized)) + b"".join(_s(s) for s in x.unrecognized)
    ),
}


def encode(msg: m.Message) -> bytes:
    """The complete wire bytes of ``msg``."""
    try:
        fn = _ENCODERS[type(msg)]
    except KeyError:
        raise LocalProtocolError(f"cannot encode {type(msg).__name__}") from None
    try:
        return fn(msg)
    except struct.error as exc:
        raise LocalProtocolError(f"cannot encode {msg!r}: {exc}") from None


def encode_many(msgs: list[m.Message] | tuple[m.Message, ...]) -> bytes:
    """The wire bytes of several messages, in order."""
    enc = _ENCODERS
    try:
        return b"".join([enc[type(x)](x) for x in msgs])
    except (KeyError, struct.error):
        return b"".join([encode(x) for x in msgs])  # raises encode()'s error
