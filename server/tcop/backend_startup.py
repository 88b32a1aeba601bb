"""Backend startup: the startup packet, SSL/GSS negotiation and cancel requests
(PostgreSQL's backend_startup.c); authentication is :mod:`.auth`.

Order, as PostgreSQL: a first byte 0x16 is PostgreSQL 17's direct TLS (a handshake at
once, which must negotiate ALPN ``postgresql``; refused without a word when ssl is off or
on a Unix socket).  Then packets until a StartupMessage: an SSLRequest is answered ``S``
when the postmaster loaded TLS (never on a Unix socket) and the handshake follows here, in
the backend, or ``N``; a GSSENCRequest is answered ``N``; bytes the client sent behind
either request before our answer are a protocol violation (FATAL 08P01 ``received
unencrypted data after SSL request``, sent over TLS when it was accepted); a second
request of a kind already negotiated is an unsupported protocol; a CancelRequest signals
the target backend and closes.  Then the protocol version is negotiated (3.0; a newer
minor gets NegotiateProtocolVersion).

The client connection lives in a :class:`Port`, whose ``ms`` is replaced by one over
TLS when the handshake succeeds.  Every failure is a FATAL ErrorResponse with
PostgreSQL's SQLSTATE and text, then close; a failed or refused TLS negotiation raises
:class:`~.be_secure.HandshakeFailed` (logged where PostgreSQL logs it) and the connection
closes without a message.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from pgbundle.server.errors import FatalError, PgError
from pgbundle.server.tcop import be_secure
from pgbundle.server.utils import elog
from pgbundle.shared.netio import ConnectionLost, MessageConn
from pgbundle.shared.protocol import SSL_REFUSED, codec, messages as M
from pgbundle.shared.protocol.errors import ProtocolError
from pgbundle.shared.tls import ALPN, TLS_HANDSHAKE_BYTE, ConnTls, TlsConn, describe, peek_first_byte

if TYPE_CHECKING:
    from pgbundle.server.storage.procarray import ProcArray

_SSL_ACCEPTED = b"S"
_UNENCRYPTED_DETAIL = ("This could be either a client-software bug or evidence of an attempted man-in-the-middle "
                       "attack.")


@dataclass
class Port:
    """One client connection through startup (PostgreSQL's Port).

    ``ms`` is the connection to talk to (over TLS once negotiated: the plain one must not be
    used then); ``local`` a Unix socket; ``address``/``port_number`` the peer (``local``/0 on
    a Unix socket); ``tls`` what pg_stat_ssl shows of the TLS session; ``server_tls`` what
    the postmaster loaded (None: ssl is off)."""

    ms: MessageConn
    local: bool
    address: str
    port_number: int
    server_tls: be_secure.ServerTls | None = None
    tls: ConnTls | None = None

    @property
    def tls_conn(self) -> TlsConn | None:
        conn = self.ms.conn
        return conn if isinstance(conn, TlsConn) else None

    @property
    def encryption(self) -> str:
        """How pg_hba messages describe the connection's encryption."""
        return "SSL encryption" if self.tls is not None else "no encryption"

    async def start_tls(self) -> None:
        """Handshake now (HandshakeFailed when it fails); later packets travel over TLS."""
        assert self.server_tls is not None
        conn = await be_secure.open_server(self.ms.conn, self.server_tls)
        self.ms = MessageConn(conn, startup=self.ms.frames.startup)
        self.tls = describe(conn)


class CancelHandled(Exception):
    """The connection was a CancelRequest; it has been handled."""


async def read_startup(port: Port, procs: ProcArray | None) -> M.StartupMessage:
    """Packets until the StartupMessage; negotiates TLS, answers GSS requests, serves cancels."""
    can_tls = port.server_tls is not None and not port.local
    ssl_done = gss_done = False
    first = await peek_first_byte(port.ms.conn)
    if first is None:
        raise EOFError("peer closed the connection")
    if first == TLS_HANDSHAKE_BYTE:  # direct TLS (PostgreSQL 17)
        if not can_tls:
            raise be_secure.HandshakeFailed()
        await port.start_tls()
        tconn = port.tls_conn
        assert tconn is not None
        if tconn.alpn() != ALPN:
            elog.log("received direct SSL connection request without ALPN protocol negotiation extension")
            raise be_secure.HandshakeFailed()
        ssl_done = True
    ms = port.ms
    while True:
        typ, payload = await ms.receive()
        msg = codec.decode_startup(payload)
        if isinstance(msg, M.SSLRequest) and not ssl_done:
            await ms.conn.send_all(_SSL_ACCEPTED if can_tls else SSL_REFUSED)
            unencrypted = len(ms.frames) > 0
            if can_tls:
                await port.start_tls()
                ms = port.ms
            if unencrypted:
                raise FatalError("08P01", "received unencrypted data after SSL request", _UNENCRYPTED_DETAIL)
            ssl_done, gss_done = True, can_tls
            continue
        if isinstance(msg, M.GSSENCRequest) and not gss_done:
            await ms.conn.send_all(SSL_REFUSED)  # no GSSAPI encryption here
            if len(ms.frames) > 0:
                raise FatalError("08P01", "received unencrypted data after GSSAPI encryption request",
                                 _UNENCRYPTED_DETAIL)
            gss_done = True
            continue
        if isinstance(msg, (M.SSLRequest, M.GSSENCRequest)):  # a second one: not a protocol we speak
            code = 5679 if isinstance(msg, M.SSLRequest) else 5680
            raise FatalError("0A000", f"unsupported frontend protocol 1234.{code}: server supports 3.0 to 3.0")
        if isinstance(msg, M.CancelRequest):
            key = int.from_bytes(msg.secret_key[:4], "big") if len(msg.secret_key) >= 4 else -1
            if procs is not None and procs.find_cancel(msg.process_id, key):
                try:
                    os.kill(msg.process_id, signal.SIGINT)
                except ProcessLookupError:
                    pass
            raise CancelHandled()
        assert isinstance(msg, M.StartupMessage)
        ms.frames.startup = False
        major, minor = msg.protocol >> 16, msg.protocol & 0xFFFF
        if major != 3:
            raise FatalError("0A000", f"unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0")
        unknown = tuple(k for k in msg.params if k.startswith("_pq_."))
        if minor > 0 or unknown:
            await ms.send(M.NegotiateProtocolVersion(0, unknown))
        return msg


def _clean_ascii(value: str) -> str:
    """PostgreSQL 15's pg_clean_ascii: anything but printable ASCII becomes '?'."""
    return value if value.isascii() and value.isprintable() else "".join(
        c if " " <= c <= "~" else "?" for c in value)


def normalize_params(params: dict[str, str]) -> dict[str, str]:
    out = dict(params)
    if "application_name" in out:
        out["application_name"] = _clean_ascii(out["application_name"])
    enc = out.get("client_encoding")
    if enc is not None:
        e = enc.strip().strip("'\"").lower().replace("-", "").replace("_", "")
        if e in ("utf8", "unicode"):
            out["client_encoding"] = "UTF8"
        elif e in ("sqlascii",):
            out["client_encoding"] = "SQL_ASCII"
        else:
            raise FatalError("22023", f'invalid value for parameter "client_encoding": "{enc}"')
    opts = out.pop("options", None)
    if opts:
        toks = opts.replace("--", "-c ").split()
        i = 0
        while i < len(toks):
            t = toks[i]
            if t == "-c" and i + 1 < len(toks):
                k, _, v = toks[i + 1].partition("=")
                out[k.replace("-", "_")] = v
                i += 2
                continue
            if t.startswith("-c") and "=" in t:
                k, _, v = t[2:].partition("=")
                out[k.replace("-", "_")] = v
            i += 1
    return out


async def send_fatal(ms: MessageConn, err: PgError) -> None:
    if err.severity != "FATAL":
        err.severity = "FATAL"
    try:
        with trio.move_on_after(1):
            await ms.send(M.ErrorResponse(err.fields()))
    except (ConnectionLost, OSError):
        pass


def protocol_error(exc: ProtocolError) -> FatalError:
    return FatalError(exc.sqlstate, exc.message)
