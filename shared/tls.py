"""TLS for both programs: contexts built from pgbouncer's / PostgreSQL's settings, the
handshake on a :class:`~pgbundle.shared.netio.Conn`, and :class:`TlsConn`, a Conn whose
bytes travel through Python's ``ssl``.

A plain :class:`Conn` is upgraded after the SSLRequest exchange (or at once for
PostgreSQL 17's direct TLS) with :func:`accept` (we are the TLS server) or
:func:`connect` (we are the TLS client); the plain Conn must not be used afterwards
(its socket now belongs to the TlsConn).  :class:`TlsConn` drives a non-blocking
``ssl.SSLSocket`` (OpenSSL does the record layer in C) with trio's readiness waits,
like Conn does for plain sockets -- so plain connections keep Conn's code path,
untouched.

Contract (as :class:`Conn`): ``recv`` returns ``b""`` at EOF, on a reset and on a
broken TLS stream (the reason is kept in :attr:`TlsConn.tls_error`); ``send_all``
sends everything or raises :class:`ConnectionLost`.  :func:`accept` / :func:`connect`
raise :class:`TlsError` when the handshake fails (the message is OpenSSL's reason: a
certificate that does not verify, no shared protocol version, garbage instead of a
ClientHello) and :class:`ConnectionLost` when the peer leaves; use a cancel scope for
a timeout.  On any failure the connection is closed.

Channel binding (RFC 5929 ``tls-server-end-point``): :meth:`TlsConn.server_end_point`
is the hash of the TLS server's certificate, computed with the hash of its signature
algorithm (SHA-256 for MD5/SHA-1), the same on both ends.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import socket
import ssl
import tempfile
import warnings
from dataclasses import dataclass

import trio
from asn1crypto import x509

from pgbundle.shared.netio import RECV_SIZE, Conn, ConnectionLost, sock_readable, sock_writable

_YIELD_EVERY = 16
_checkpoint = trio.lowlevel.checkpoint

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
ALPN = "postgresql"
#: The first byte of a TLS handshake record: a client doing direct TLS (PostgreSQL 17).
TLS_HANDSHAKE_BYTE = 0x16

_VERSIONS = {
    "tlsv1.0": ssl.TLSVersion.TLSv1, "tlsv1": ssl.TLSVersion.TLSv1, "tlsv1.1": ssl.TLSVersion.TLSv1_1,
    "tlsv1.2": ssl.TLSVersion.TLSv1_2, "tlsv1.3": ssl.TLSVersion.TLSv1_3,
}
_PROTOCOL_SHORTCUTS = {
    "all": "tlsv1.0,tlsv1.1,tlsv1.2,tlsv1.3", "legacy": "tlsv1.0,tlsv1.1,tlsv1.2,tlsv1.3",
    "secure": "tlsv1.2,tlsv1.3", "default": "tlsv1.2,tlsv1.3",
}
# pgbouncer's (libusual's) cipher shortcuts, in OpenSSL's syntax.  They govern TLS 1.2 and
# older; TLS 1.3 suites are OpenSSL's defaults (pgbouncer has no setting for them either).
_CIPHER_SHORTCUTS = {
    "default": "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL",
    "secure": "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL",
    "normal": "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:ECDHE+AES:DHE+AES:!aNULL:!SHA1",
    "fast": "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL",
    "compat": "HIGH:!aNULL", "legacy": "HIGH:!aNULL",
    "insecure": "ALL:!aNULL:!eNULL", "all": "ALL:!aNULL:!eNULL",
}
# RFC 7919 ffdhe2048: the DH group for "auto" DHE key exchange (OpenSSL needs explicit
# parameters before it offers DHE suites; Python has no SSL_CTX_set_dh_auto).
_FFDHE2048 = """-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
"""


class TlsError(Exception):
    """A TLS handshake failed, or TLS settings are unusable (the message says why)."""


def _versions(protocols: str) -> tuple[ssl.TLSVersion, ssl.TLSVersion]:
    spec = _PROTOCOL_SHORTCUTS.get(protocols.strip().lower(), protocols)
    versions = []
    for item in spec.replace(" ", ",").split(","):
        item = item.strip().lower().lstrip("+")
        if not item:
            continue
        if item in _PROTOCOL_SHORTCUTS:
            versions += [_VERSIONS[v] for v in _PROTOCOL_SHORTCUTS[item].split(",")]
        elif item in _VERSIONS:
            versions.append(_VERSIONS[item])
        else:
            raise TlsError(f"invalid TLS protocol: {item!r} (tlsv1.0, tlsv1.1, tlsv1.2, tlsv1.3, all, secure, legacy)")
    if not versions:
        raise TlsError("no TLS protocol versions given")
    return min(versions), max(versions)


def _configure(ctx: ssl.SSLContext, *, protocols: str, ciphers: str, ecdhcurve: str = "auto",
               dheparams: str = "none") -> None:
    with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated -- and still pgbouncer's "all"/"legacy"
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version, ctx.maximum_version = _versions(protocols)
    if ctx.minimum_version < ssl.TLSVersion.TLSv1_2:
        # OpenSSL's default security level refuses TLS 1.0/1.1 even when allowed.
        ciphers_extra = ":@SECLEVEL=0"
    else:
        ciphers_extra = ""
    spec = _CIPHER_SHORTCUTS.get(ciphers.strip().lower(), ciphers)
    curve = ecdhcurve.strip().lower()
    if curve == "none":
        spec += ":!ECDHE:!EECDH"
    dh = dheparams.strip().lower()
    if dh == "none":
        spec += ":!DHE:!EDH"
    try:
        ctx.set_ciphers(spec + ciphers_extra)
    except ssl.SSLError:
        raise TlsError(f"invalid TLS ciphers: {ciphers!r}") from None
    if curve not in ("auto", "none", "secure", ""):
        try:
            ctx.set_ecdh_curve(ecdhcurve.strip())
        except (ValueError, ssl.SSLError):
            raise TlsError(f"invalid ECDH curve: {ecdhcurve!r}") from None
    if dh in ("auto", "legacy"):
        if ctx.protocol != ssl.PROTOCOL_TLS_CLIENT:
            with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as f:
                f.write(_FFDHE2048)
            try:
                ctx.load_dh_params(f.name)
            finally:
                os.unlink(f.name)
    elif dh != "none":
        raise TlsError(f"invalid DHE parameters: {dheparams!r} (none, auto, legacy)")


def server_context(*, cert_file: str, key_file: str, ca_file: str | None = None,
                   verify_client: str = "none", protocols: str = "secure", ciphers: str = "fast",
                   ecdhcurve: str = "auto", dheparams: str = "auto", what: str = "TLS") -> ssl.SSLContext:
    """A context for accepting TLS.  ``verify_client``: ``none`` (no certificate asked),
    ``optional`` (asked, verified against ``ca_file`` when given -- PostgreSQL with
    ssl_ca_file) or ``required`` (a valid one is needed -- pgbouncer's verify-ca/full).

    Errors: TlsError naming the file that is missing or unusable."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _configure(ctx, protocols=protocols, ciphers=ciphers, ecdhcurve=ecdhcurve, dheparams=dheparams)
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except FileNotFoundError as exc:
        raise TlsError(f'{what}: could not load certificate or key file "{exc.filename or cert_file}": '
                       f"{exc.strerror}") from None
    except (ssl.SSLError, OSError) as exc:
        raise TlsError(f'{what}: could not load certificate "{cert_file}" / key "{key_file}": {exc}') from None
    if verify_client != "none":
        if ca_file:
            _load_ca(ctx, ca_file, what)
        elif verify_client == "required":
            raise TlsError(f"{what}: verifying client certificates needs a CA file")
        ctx.verify_mode = ssl.CERT_REQUIRED if verify_client == "required" else ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols([ALPN])
    ctx.options |= ssl.OP_NO_COMPRESSION
    ctx.post_handshake_auth = False
    return ctx


def client_context(*, sslmode: str, ca_file: str | None = None, cert_file: str | None = None,
                   key_file: str | None = None, protocols: str = "secure", ciphers: str = "fast",
                   what: str = "TLS") -> ssl.SSLContext:
    """A context for connecting with TLS: ``verify-ca`` checks the chain against ``ca_file``,
    ``verify-full`` also the host name; the other modes check nothing (libpq's meaning).
    ``cert_file``/``key_file``: the client certificate to present."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _configure(ctx, protocols=protocols, ciphers=ciphers, dheparams="none")
    if sslmode in ("verify-ca", "verify-full"):
        if not ca_file:
            raise TlsError(f"{what}: sslmode {sslmode} needs a CA file")
        _load_ca(ctx, ca_file, what)
        ctx.check_hostname = sslmode == "verify-full"
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert_file:
        try:
            ctx.load_cert_chain(cert_file, key_file or None)
        except (ssl.SSLError, OSError) as exc:
            raise TlsError(f'{what}: could not load client certificate "{cert_file}": {exc}') from None
    ctx.set_alpn_protocols([ALPN])
    return ctx


def _load_ca(ctx: ssl.SSLContext, ca_file: str, what: str) -> None:
    try:
        ctx.load_verify_locations(cafile=ca_file)
    except (ssl.SSLError, OSError) as exc:
        raise TlsError(f'{what}: could not load root certificate file "{ca_file}": {exc}') from None


def end_point_hash(cert_der: bytes) -> bytes | None:
    """RFC 5929 tls-server-end-point data for a DER certificate (None: no usable hash)."""
    try:
        algo = x509.Certificate.load(cert_der)["signature_algorithm"].hash_algo
    except (ValueError, KeyError):
        return None
    if algo in ("md5", "sha1"):
        algo = "sha256"
    try:
        return hashlib.new(algo, cert_der).digest()
    except ValueError:
        return None


def _own_cert_der(cert_file: str | None) -> bytes | None:
    """The DER form of the first certificate in ``cert_file`` -- the one a context loaded from it
    presents.  Read once per version of the file (keyed by its path, mtime and size, so a
    certificate replaced before a reload is read again)."""
    if cert_file is None:
        return None
    try:
        st = os.stat(cert_file)
    except OSError:
        return None
    return _read_cert_der(cert_file, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=16)
def _read_cert_der(cert_file: str, mtime_ns: int, size: int) -> bytes | None:
    try:
        with open(cert_file, encoding="ascii") as f:
            pem = f.read()
        start = pem.index("-----BEGIN CERTIFICATE-----")
        end = pem.index("-----END CERTIFICATE-----", start) + len("-----END CERTIFICATE-----")
        return ssl.PEM_cert_to_DER_cert(pem[start:end])
    except (OSError, ValueError):
        return None


class TlsConn(Conn):
    """A :class:`Conn` over an ``ssl.SSLSocket`` (see the module docstring for the contract)."""

    __slots__ = ("tls_error", "server_side", "_cert_file")

    tls = True

    def __init__(self, plain: Conn, sslsock: ssl.SSLSocket, *, server_side: bool,
                 cert_file: str | None = None) -> None:
        self.sock = sslsock
        self.closed = False
        self._ops = 0
        self._wait_first = False
        self._lock = trio.StrictFIFOLock()
        self.is_unix = plain.is_unix
        self.peer = plain.peer
        self.tls_error = ""
        self.server_side = server_side
        self._cert_file = cert_file

    # ---------------------------------------------------------------- what was negotiated

    @property
    def sslsock(self) -> ssl.SSLSocket:
        sock = self.sock
        assert isinstance(sock, ssl.SSLSocket)
        return sock

    def version(self) -> str:
        return self.sslsock.version() or ""

    def cipher(self) -> tuple[str, int]:
        c = self.sslsock.cipher()
        return (c[0], c[2]) if c else ("", 0)

    def alpn(self) -> str | None:
        return self.sslsock.selected_alpn_protocol()

    def peer_cert(self) -> dict | None:  # type: ignore[type-arg]
        """The peer's verified certificate as ``ssl.getpeercert()`` gives it (None: none sent)."""
        return self.sslsock.getpeercert() or None

    def peer_cert_der(self) -> bytes | None:
        return self.sslsock.getpeercert(binary_form=True)

    def peer_cn(self) -> str | None:
        """The commonName of the peer certificate's subject."""
        cert = self.peer_cert()
        if not cert:
            return None
        for rdn in cert.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return str(value)
        return None

    def peer_dn(self) -> str | None:
        """The subject DN of the peer certificate in RFC 2253 order (PostgreSQL's clientname=DN)."""
        cert = self.peer_cert()
        if not cert:
            return None
        short = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
                 "countryName": "C", "stateOrProvinceName": "ST", "localityName": "L",
                 "emailAddress": "emailAddress", "domainComponent": "DC"}
        parts = [f"{short.get(k, k)}={v}" for rdn in cert.get("subject", ()) for k, v in rdn]
        return ",".join(reversed(parts))

    def server_end_point(self) -> bytes | None:
        """tls-server-end-point channel-binding data (None when it cannot be computed)."""
        if self.server_side:
            der = _own_cert_der(self._cert_file)
        else:
            der = self.peer_cert_der()
        return end_point_hash(der) if der else None

    # ---------------------------------------------------------------- I/O (Conn's contract)

    async def recv(self, n: int = RECV_SIZE) -> bytes:
        sock = self.sock
        while True:
            try:
                data = sock.recv(n)
            except ssl.SSLWantReadError:
                if self.closed:
                    return b""
                try:
                    await sock_readable(sock)
                except trio.ClosedResourceError:
                    return b""
                self._ops = 0
                continue
            except ssl.SSLWantWriteError:
                try:
                    await sock_writable(sock)
                except trio.ClosedResourceError:
                    return b""
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError, ConnectionResetError, TimeoutError):
                return b""
            except ssl.SSLError as exc:
                self.tls_error = str(exc)
                return b""
            except OSError as exc:
                if self.closed or exc.errno in (errno.EBADF, errno.ENOTCONN):
                    return b""
                raise
            self._ops += 1
            if self._ops >= _YIELD_EVERY:
                self._ops = 0
                await _checkpoint()
            return data

    def close(self) -> None:
        """Send our close_notify (SSL_shutdown, without waiting for the peer's), then close.
        Without it OpenSSL 3 peers see "unexpected eof while reading"."""
        if self.closed:
            return
        try:
            self.sslsock.unwrap()
        except (ssl.SSLError, OSError, ValueError):
            pass  # the peer's close_notify is not awaited; a broken or unfinished session has none to send
        super().close()

    async def wait_readable(self) -> None:
        if self.closed:
            return
        sock = self.sslsock
        if sock.pending():
            return  # decrypted bytes are already waiting
        try:
            await sock_readable(sock)
        except trio.ClosedResourceError:
            pass
        self._ops = 0

    _WOULD_BLOCK = (ssl.SSLWantWriteError, ssl.SSLWantReadError)

    async def _wait_to_send(self, exc: OSError) -> None:
        if isinstance(exc, ssl.SSLWantReadError):  # a TLS 1.2 renegotiation wants the peer first
            await sock_readable(self.sock)
        else:
            await sock_writable(self.sock)


def openssl_reason(exc: ssl.SSLError) -> str:
    """OpenSSL's reason string (``unexpected message``, ``wrong version number``), the text
    PostgreSQL's logs show, rather than Python's ``[SSL: CODE] ... (_ssl.c:N)`` wrapping."""
    text = exc.strerror or str(exc)
    if text.startswith("[") and "] " in text:
        text = text.split("] ", 1)[1]
    if text.endswith(")") and " (_ssl.c:" in text:
        text = text[: text.rindex(" (_ssl.c:")]
    return text or (exc.reason or "").lower().replace("_", " ") or str(exc)


async def _handshake(sslsock: ssl.SSLSocket) -> None:
    while True:
        try:
            sslsock.do_handshake()
            return
        except ssl.SSLWantReadError:
            await sock_readable(sslsock)
        except ssl.SSLWantWriteError:
            await sock_writable(sslsock)


async def _upgrade(conn: Conn, ctx: ssl.SSLContext, *, server_side: bool, hostname: str | None,
                   cert_file: str | None) -> TlsConn:
    if conn.closed:
        raise ConnectionLost("connection closed")
    plain = conn.sock
    try:
        sslsock = ctx.wrap_socket(plain, server_side=server_side, do_handshake_on_connect=False,
                                  server_hostname=hostname if not server_side else None)
    except (ssl.SSLError, ValueError, OSError) as exc:
        conn.close()
        raise TlsError(str(exc)) from None
    conn.closed = True  # the socket now belongs to the TlsConn
    tc = TlsConn(conn, sslsock, server_side=server_side, cert_file=cert_file)
    try:
        await _handshake(sslsock)
    except ssl.SSLCertVerificationError as exc:
        tc.close()
        raise TlsError(f"certificate verify failed: {exc.verify_message}") from None
    except (ssl.SSLZeroReturnError, ssl.SSLEOFError, ConnectionError, BrokenPipeError) as exc:
        tc.close()
        raise ConnectionLost(f"connection closed during the TLS handshake: {exc}") from None
    except ssl.SSLError as exc:
        tc.close()
        raise TlsError(openssl_reason(exc)) from None
    except OSError as exc:
        tc.close()
        raise ConnectionLost(str(exc)) from None
    except BaseException:
        tc.close()
        raise
    return tc


async def accept(conn: Conn, ctx: ssl.SSLContext, *, cert_file: str | None = None) -> TlsConn:
    """Do the server side of the handshake on ``conn`` (after answering ``S``, or at once
    for direct TLS).  ``cert_file`` is the certificate ``ctx`` presents (for channel binding)."""
    return await _upgrade(conn, ctx, server_side=True, hostname=None, cert_file=cert_file)


async def connect(conn: Conn, ctx: ssl.SSLContext, hostname: str | None) -> TlsConn:
    """Do the client side of the handshake on ``conn`` (after the server answered ``S``);
    ``hostname`` is checked against the certificate when ``ctx.check_hostname``."""
    if hostname is not None and (hostname.startswith("/") or hostname.startswith("@")):
        hostname = None
    return await _upgrade(conn, ctx, server_side=False, hostname=hostname, cert_file=None)


async def peek_first_byte(conn: Conn) -> int | None:
    """The first byte the client sent, left unread (None at EOF): 0x16 means a TLS
    ClientHello (direct TLS), anything else a PostgreSQL startup packet."""
    sock = conn.sock
    while True:
        try:
            data = sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            await conn.wait_readable()
            if conn.closed:
                return None
            continue
        except OSError:
            return None
        return data[0] if data else None


@dataclass(frozen=True)
class ConnTls:
    """What pg_stat_ssl / SHOW CLIENTS report about one connection's TLS."""

    version: str
    cipher: str
    bits: int
    client_dn: str | None
    client_serial: str | None
    issuer_dn: str | None


# OpenSSL's short names of the attributes a DN usually holds (OBJ_nid2sn), by OID.
_SHORT_NAMES = {
    "2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU",
    "2.5.4.5": "serialNumber", "2.5.4.4": "SN", "2.5.4.42": "GN", "2.5.4.12": "title", "2.5.4.9": "street",
    "2.5.4.17": "postalCode", "2.5.4.46": "dnQualifier", "2.5.4.65": "pseudonym",
    "1.2.840.113549.1.9.1": "emailAddress", "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
}
_RFC2253_SPECIAL = ',+"\\<>;'


def _oneline(name: x509.Name) -> str:
    """A DN as PostgreSQL's pg_stat_ssl and sslinfo print it (X509_NAME_to_cstring):
    ``/O=pgbundle tests/CN=alice`` -- entries in certificate order, short names, values
    escaped as RFC 2253 does."""
    out = []
    for rdn in name.chosen:
        for atv in rdn:
            oid = atv["type"].dotted
            value = atv["value"].native
            text = value if isinstance(value, str) else str(value)
            text = "".join("\\" + c if c in _RFC2253_SPECIAL else c for c in text)
            if text.startswith((" ", "#")):
                text = "\\" + text
            if text.endswith(" ") and not text.endswith("\\ "):
                text = text[:-1] + "\\ "
            out.append(f"/{_SHORT_NAMES.get(oid, oid)}={text}")
    return "".join(out)


def describe(conn: Conn) -> ConnTls | None:
    """The TLS facts of ``conn`` (None for a plain connection), in pg_stat_ssl's formats:
    DNs as ``/O=.../CN=...`` (see :func:`_oneline`), the serial number in decimal."""
    if not isinstance(conn, TlsConn):
        return None
    cipher, bits = conn.cipher()
    der = conn.peer_cert_der() if conn.peer_cert() else None
    if not der:
        return ConnTls(conn.version(), cipher, bits, None, None, None)
    tbs = x509.Certificate.load(der)["tbs_certificate"]
    return ConnTls(conn.version(), cipher, bits, _oneline(tbs["subject"]), str(tbs["serial_number"].native),
                   _oneline(tbs["issuer"]))


def summary(conn: Conn) -> str:
    """pgbouncer's ``tls`` column (SHOW CLIENTS / SERVERS): ``TLSv1.3/TLS_AES_256_GCM_SHA384``,
    ``""`` for a plain connection."""
    if not isinstance(conn, TlsConn) or conn.closed:
        return ""
    return f"{conn.version()}/{conn.cipher()[0]}"
