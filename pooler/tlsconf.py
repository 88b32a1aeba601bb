"""The pooler's TLS: contexts built from pgbouncer's ``client_tls_*`` / ``server_tls_*``
settings, and the two negotiations that use them.

* Client side (:func:`negotiate_client`): ``client_tls_sslmode`` disable (an SSLRequest is
  answered ``N``), allow / prefer (TLS when the client asks, plain otherwise), require
  (a TCP client must use TLS), verify-ca / verify-full (and present a certificate that
  ``client_tls_ca_file`` verifies).  PostgreSQL 17's direct TLS (the first byte is a TLS
  ClientHello, ALPN ``postgresql``) is accepted whenever TLS is on.  Unix-socket clients
  never use TLS (as PostgreSQL and pgbouncer).
* Server side (:func:`negotiate_server`): ``server_tls_sslmode`` disable (no SSLRequest),
  allow / prefer (ask; plain when refused -- pgbouncer treats allow like prefer), require
  (refused -> the login fails), verify-ca / verify-full (the server certificate must
  verify against ``server_tls_ca_file``; verify-full also checks the host name).  The
  pooler presents ``server_tls_cert_file`` / ``server_tls_key_file`` when set.

Settings are checked when the pooler starts (a :class:`ConfigError` names the problem) and
on RELOAD (an unusable new TLS configuration keeps the old one and is logged).
``client_tls13_ciphers`` / ``server_tls13_ciphers``: Python's ``ssl`` cannot choose TLS 1.3
suites, so a list given here is enforced after the handshake (a connection that
negotiated another TLS 1.3 suite is closed).
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass

from pgbundle.shared import sqlstate, tls
from pgbundle.shared.netio import Conn
from pgbundle.shared.protocol import encode, messages as m
from pgbundle.shared.protocol.constants import SSL_REFUSED

from .config import ConfigError, Settings
from .objects import PoolerError

log = logging.getLogger("pgbundle.pooler")

SSL_ACCEPTED = b"S"
_SSL_REQUEST = encode(m.SSLRequest())


def _suites(text: str) -> frozenset[str] | None:
    items = [x.strip() for x in text.replace(",", ":").split(":") if x.strip()]
    if not items or [x.lower() for x in items] in (["default"], ["all"]):
        return None
    return frozenset(items)


@dataclass(frozen=True)
class TlsSetup:
    """TLS contexts and modes for both sides (None context = that side is plain)."""

    client_mode: str = "disable"
    client_ctx: ssl.SSLContext | None = None
    client_cert_file: str | None = None
    client_tls13: frozenset[str] | None = None
    server_mode: str = "disable"
    server_ctx: ssl.SSLContext | None = None
    server_tls13: frozenset[str] | None = None

    @classmethod
    def build(cls, s: Settings) -> TlsSetup:
        """Contexts for ``s``.  Errors: ConfigError naming the setting or file."""
        client_ctx = server_ctx = None
        try:
            if s.client_tls_sslmode != "disable":
                if not s.client_tls_key_file or not s.client_tls_cert_file:
                    raise ConfigError(f"client_tls_sslmode = {s.client_tls_sslmode} needs client_tls_key_file "
                                      "and client_tls_cert_file")
                verify = "required" if s.client_tls_sslmode in ("verify-ca", "verify-full") else "none"
                if verify == "required" and not s.client_tls_ca_file:
                    raise ConfigError(f"client_tls_sslmode = {s.client_tls_sslmode} needs client_tls_ca_file "
                                      "to verify client certificates")
                client_ctx = tls.server_context(
                    cert_file=s.client_tls_cert_file, key_file=s.client_tls_key_file, ca_file=s.client_tls_ca_file,
                    verify_client=verify, protocols=s.client_tls_protocols, ciphers=s.client_tls_ciphers,
                    ecdhcurve=s.client_tls_ecdhcurve, dheparams=s.client_tls_dheparams, what="client_tls")
            if s.server_tls_sslmode != "disable":
                if s.server_tls_sslmode in ("verify-ca", "verify-full") and not s.server_tls_ca_file:
                    raise ConfigError(f"server_tls_sslmode = {s.server_tls_sslmode} needs server_tls_ca_file")
                server_ctx = tls.client_context(
                    sslmode=s.server_tls_sslmode, ca_file=s.server_tls_ca_file, cert_file=s.server_tls_cert_file,
                    key_file=s.server_tls_key_file, protocols=s.server_tls_protocols,
                    ciphers=s.server_tls_ciphers, what="server_tls")
        except tls.TlsError as exc:
            raise ConfigError(str(exc)) from None
        return cls(s.client_tls_sslmode, client_ctx, s.client_tls_cert_file, _suites(s.client_tls13_ciphers),
                   s.server_tls_sslmode, server_ctx, _suites(s.server_tls13_ciphers))

    def rebuilt(self, s: Settings) -> TlsSetup:
        """RELOAD: the setup for ``s``, or this one when ``s`` is unusable (logged)."""
        try:
            return TlsSetup.build(s)
        except ConfigError as exc:
            log.error("TLS settings not reloaded, keeping the old ones: %s", exc)
            return self

    @property
    def client_required(self) -> bool:
        return self.client_mode in ("require", "verify-ca", "verify-full")

    # ------------------------------------------------------------------ client side

    async def start_direct(self, conn: Conn) -> Conn:
        """Before the first packet: a client doing direct TLS gets its handshake now
        (when TLS is on); anyone else is left as is.  Errors as :meth:`accept_request`;
        then :meth:`check_direct` on the connection returned."""
        if self.client_ctx is None or conn.is_unix:
            return conn
        first = await tls.peek_first_byte(conn)
        if first != tls.TLS_HANDSHAKE_BYTE:
            return conn
        return await self._accept(conn)

    @staticmethod
    def check_direct(conn: Conn) -> None:
        """Direct TLS needs ALPN ``postgresql`` (PostgreSQL 17's rule, against cross-protocol attacks)."""
        if isinstance(conn, tls.TlsConn) and conn.alpn() != tls.ALPN:
            raise PoolerError("received direct SSL connection request without ALPN protocol negotiation "
                              "extension", sqlstate.PROTOCOL_VIOLATION)

    async def accept_request(self, conn: Conn) -> Conn:
        """Answer an SSLRequest: ``N`` (TLS off, a Unix socket, already TLS) or ``S`` and
        the handshake.  Returns the connection to go on with.

        Errors: PoolerError for a failed handshake (it is logged; no ErrorResponse can reach
        the client: the plain connection is gone and there is no TLS one)."""
        if self.client_ctx is None or conn.is_unix or conn.tls:
            await conn.send_all(SSL_REFUSED)
            return conn
        await conn.send_all(SSL_ACCEPTED)
        return await self._accept(conn)

    async def _accept(self, conn: Conn) -> tls.TlsConn:
        assert self.client_ctx is not None
        try:
            tc = await tls.accept(conn, self.client_ctx, cert_file=self.client_cert_file)
        except tls.TlsError as exc:
            raise PoolerError(f"TLS handshake failed: {exc}", sqlstate.PROTOCOL_VIOLATION) from None
        self._check_tls13(tc, self.client_tls13, "client_tls13_ciphers")
        return tc

    def check_client(self, conn: Conn) -> None:
        """After the startup packet: a TCP client that must use TLS and does not is refused."""
        if self.client_required and not conn.tls and not conn.is_unix:
            raise PoolerError("SSL required", sqlstate.PROTOCOL_VIOLATION)

    # ------------------------------------------------------------------ server side

    async def negotiate_server(self, conn: Conn, host: str) -> Conn:
        """Before the StartupMessage to a server: the SSLRequest exchange and handshake.
        Returns the connection to log in over.  Errors: PoolerError (the socket is left for
        the caller to close)."""
        if self.server_ctx is None or conn.is_unix:
            return conn
        await conn.send_all(_SSL_REQUEST)
        answer = await conn.recv(1)
        if answer == SSL_ACCEPTED:
            try:
                tc = await tls.connect(conn, self.server_ctx, host)
            except tls.TlsError as exc:
                raise PoolerError(f"server TLS handshake failed ({host}): {exc}", sqlstate.CONNECTION_FAILURE,
                                  auth_error=True) from None
            self._check_tls13(tc, self.server_tls13, "server_tls13_ciphers")
            return tc
        if answer == SSL_REFUSED:
            if self.server_mode in ("require", "verify-ca", "verify-full"):
                raise PoolerError(f"server refused TLS ({host}) and server_tls_sslmode = {self.server_mode}",
                                  sqlstate.CONNECTION_FAILURE, auth_error=True)
            return conn
        if not answer:
            raise PoolerError("server closed the connection during TLS negotiation", sqlstate.CONNECTION_FAILURE)
        raise PoolerError(f"server sent {answer!r} in answer to SSLRequest", sqlstate.PROTOCOL_VIOLATION)

    @staticmethod
    def _check_tls13(tc: tls.TlsConn, allowed: frozenset[str] | None, setting: str) -> None:
        if allowed is None or tc.version() != "TLSv1.3":
            return
        suite = tc.cipher()[0]
        if suite not in allowed:
            tc.close()
            raise PoolerError(f"TLS 1.3 cipher suite {suite} is not in {setting}", sqlstate.PROTOCOL_VIOLATION)
