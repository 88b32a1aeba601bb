"""TLS in pgbundle server (PostgreSQL's be-secure.c + be-secure-openssl.c).

The postmaster builds one :class:`ServerTls` from the ``ssl_*`` settings (:func:`load`)
before it forks anything, so every backend inherits the ``ssl.SSLContext`` through fork.
At server start a failure is FATAL with PostgreSQL's message and the server does not
start; on SIGHUP (:func:`reload`) a failure is logged, ``SSL configuration was not
reloaded``, and the previous context stays in use; ``ssl = off`` drops it.

:func:`load` follows be_tls_init step by step, with its messages: the certificate chain
(``ssl_cert_file``), the private key file's ownership and mode, the key
(``ssl_passphrase_command``, run at reload only when
``ssl_passphrase_command_supports_reload``), the protocol range
(``ssl_min/max_protocol_version``), no compression / renegotiation / session tickets,
DH parameters (``ssl_dh_params_file``), the ECDH curve, the cipher list (and
``ssl_prefer_server_ciphers``), the CA file (``ssl_ca_file``: client certificates are then
asked for and verified when sent) and the revocation lists (``ssl_crl_file``,
``ssl_crl_dir``).  Relative paths are relative to the data directory.  The context also
offers ALPN ``postgresql`` (PostgreSQL 17's direct TLS needs it).

A backend does the handshake itself, after fork (:func:`open_server`, called by backend
startup within ``authentication_timeout``): a failed handshake is logged as ``could not
accept SSL connection: <OpenSSL's reason>`` and raises :class:`HandshakeFailed` (the
backend then exits quietly; nothing can be told to a client that speaks no TLS).

Deviation: without ``ssl_dh_params_file`` no DHE cipher suites are offered (PostgreSQL has
built-in DH parameters; Python's ssl can only load them from a file); ECDHE suites and
TLS 1.3 are unaffected.
"""

from __future__ import annotations

import os
import ssl
import stat
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pgbundle.server.utils import elog
from pgbundle.shared import tls
from pgbundle.shared.netio import Conn, ConnectionLost

if TYPE_CHECKING:
    from pgbundle.server.utils.guc import GucSettings

_OPENSSL_VERSIONS = {"TLSv1": ssl.TLSVersion.TLSv1, "TLSv1.1": ssl.TLSVersion.TLSv1_1,
                     "TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
# OpenSSL reasons after which PostgreSQL hints at the protocol range (be_tls_open_server).
_PROTOCOL_REASONS = ("no protocols available", "unsupported protocol", "bad protocol version number",
                     "unknown protocol", "unknown ssl version", "unsupported ssl version", "wrong ssl version",
                     "wrong version number", "tlsv1 alert protocol version", "version too high", "version too low")
_PEM_CERT = ("-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----")


@dataclass(frozen=True)
class ServerTls:
    """What the postmaster loaded and every backend inherits."""

    context: ssl.SSLContext
    cert_file: str  # absolute path of the certificate the context presents
    end_point: bytes | None  # its tls-server-end-point hash (SCRAM-SHA-256-PLUS channel binding)
    verify_locations: bool  # ssl_ca_file was loaded: client certificates are asked for and verified
    min_version: str  # the protocol range, for the handshake failure hint
    max_version: str


class SslConfigError(Exception):
    """The ssl_* settings cannot be used (PostgreSQL's message and detail)."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class HandshakeFailed(Exception):
    """The TLS handshake with the client failed (already logged)."""


class _NeedsPassphrase(Exception):
    """The key is encrypted and no passphrase may be asked for now (a reload)."""


def _path(datadir: str, name: str) -> str:
    return name if os.path.isabs(name) else os.path.join(datadir, name)


def _first_certificate(path: str, name: str) -> bytes:
    """The DER of the first certificate of the PEM chain at ``path`` (its end-point hash is
    what channel binding uses, as SSL_get_certificate gives it to PostgreSQL)."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            pem = f.read()
    except OSError as exc:
        raise SslConfigError(f'could not load server certificate file "{name}": {exc.strerror}') from None
    start = pem.find(_PEM_CERT[0])
    end = pem.find(_PEM_CERT[1], start)
    if start < 0 or end < 0:
        raise SslConfigError(f'could not load server certificate file "{name}": no start line')
    try:
        return ssl.PEM_cert_to_DER_cert(pem[start:end + len(_PEM_CERT[1])])
    except ValueError:
        raise SslConfigError(f'could not load server certificate file "{name}": bad base64 decode') from None


def _check_key_file(path: str, name: str) -> None:
    """check_ssl_key_file_permissions: a regular file owned by us or root, no group or
    world access (0640 allowed when root owns it)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise SslConfigError(f'could not access private key file "{name}": {exc.strerror}') from None
    if not stat.S_ISREG(st.st_mode):
        raise SslConfigError(f'private key file "{name}" is not a regular file')
    euid = os.geteuid()
    if st.st_uid not in (euid, 0):
        raise SslConfigError(f'private key file "{name}" must be owned by the database user or root')
    if (st.st_uid == euid and st.st_mode & 0o077) or (
            st.st_uid == 0 and st.st_mode & (stat.S_IWGRP | stat.S_IXGRP | stat.S_IRWXO)):
        raise SslConfigError(f'private key file "{name}" has group or world access',
                             "File must have permissions u=rw (0600) or less if owned by the database user, or "
                             "permissions u=rw,g=r (0640) or less if owned by root.")


def _passphrase(settings: GucSettings, server_start: bool):  # type: ignore[no-untyped-def]
    """The password callback for the key: ssl_passphrase_command, or OpenSSL's own prompt at
    server start (None), or one that refuses at a reload."""
    command = str(settings.value("ssl_passphrase_command"))
    if command and (server_start or settings.value("ssl_passphrase_command_supports_reload")):
        def run() -> bytes:
            cmd = command.replace("%p", "'Enter PEM pass phrase:'").replace("%%", "%")
            r = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, check=False)
            if r.returncode != 0:
                raise SslConfigError(f'command "{command}" failed',
                                     f"child process exited with exit code {r.returncode}")
            return r.stdout.rstrip(b"\r\n")
        return run
    if server_start:
        return None

    def refuse() -> bytes:
        raise _NeedsPassphrase()
    return refuse


def load(settings: GucSettings, datadir: str, *, server_start: bool) -> ServerTls:
    """Build the server's TLS context from the ssl_* settings (be_tls_init); SslConfigError
    with PostgreSQL's message when something cannot be used."""
    cert_name = str(settings.value("ssl_cert_file"))
    key_name = str(settings.value("ssl_key_file"))
    cert_path, key_path = _path(datadir, cert_name), _path(datadir, key_name)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    der = _first_certificate(cert_path, cert_name)
    _check_key_file(key_path, key_name)
    try:
        ctx.load_cert_chain(cert_path, key_path, password=_passphrase(settings, server_start))
    except _NeedsPassphrase:
        raise SslConfigError(f'private key file "{key_name}" cannot be reloaded because it requires a '
                             f"passphrase") from None
    except ssl.SSLError as exc:
        raise SslConfigError(f'could not load private key file "{key_name}": {tls.openssl_reason(exc)}') from None
    except OSError as exc:
        raise SslConfigError(f'could not load private key file "{key_name}": {exc.strerror}') from None
    lo, hi = str(settings.value("ssl_min_protocol_version")), str(settings.value("ssl_max_protocol_version"))
    if lo:
        ctx.minimum_version = _OPENSSL_VERSIONS[lo]
    if hi:
        if lo and _OPENSSL_VERSIONS[lo] > _OPENSSL_VERSIONS[hi]:
            raise SslConfigError("could not set SSL protocol version range",
                                 '"ssl_min_protocol_version" cannot be higher than "ssl_max_protocol_version"')
        ctx.maximum_version = _OPENSSL_VERSIONS[hi]
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_TICKET
    _load_dh(ctx, settings, datadir)
    curve = str(settings.value("ssl_ecdh_curve"))
    try:
        ctx.set_ecdh_curve(curve)
    except (ValueError, ssl.SSLError):
        raise SslConfigError(f"ECDH: unrecognized curve name: {curve}") from None
    try:
        ctx.set_ciphers(str(settings.value("ssl_ciphers")))
    except ssl.SSLError:
        raise SslConfigError("could not set the cipher list (no valid ciphers available)") from None
    if settings.value("ssl_prefer_server_ciphers"):
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    ca_name = str(settings.value("ssl_ca_file"))
    if ca_name:
        try:
            ctx.load_verify_locations(cafile=_path(datadir, ca_name))
        except (ssl.SSLError, OSError) as exc:
            reason = tls.openssl_reason(exc) if isinstance(exc, ssl.SSLError) else exc.strerror
            raise SslConfigError(f'could not load root certificate file "{ca_name}": {reason}') from None
        # ask for a client certificate, verify it when one is sent; pg_hba decides whether one is needed
        ctx.verify_mode = ssl.CERT_OPTIONAL
    _load_crl(ctx, settings, datadir)
    ctx.set_alpn_protocols([tls.ALPN])
    return ServerTls(ctx, os.path.abspath(cert_path), tls.end_point_hash(der), bool(ca_name), lo or "TLSv1",
                     hi or "TLSv1.3")


def _load_dh(ctx: ssl.SSLContext, settings: GucSettings, datadir: str) -> None:
    name = str(settings.value("ssl_dh_params_file"))
    if not name:
        return
    path = _path(datadir, name)
    if not os.path.exists(path):
        raise SslConfigError(f'could not open DH parameters file "{name}": No such file or directory')
    try:
        ctx.load_dh_params(path)
    except (ssl.SSLError, OSError) as exc:
        reason = tls.openssl_reason(exc) if isinstance(exc, ssl.SSLError) else exc.strerror
        raise SslConfigError(f"could not load DH parameters file: {reason}") from None


def _load_crl(ctx: ssl.SSLContext, settings: GucSettings, datadir: str) -> None:
    crl_file, crl_dir = str(settings.value("ssl_crl_file")), str(settings.value("ssl_crl_dir"))
    if not crl_file and not crl_dir:
        return
    try:
        ctx.load_verify_locations(cafile=_path(datadir, crl_file) if crl_file else None,
                                  capath=_path(datadir, crl_dir) if crl_dir else None)
    except (ssl.SSLError, OSError) as exc:
        reason = tls.openssl_reason(exc) if isinstance(exc, ssl.SSLError) else exc.strerror
        if crl_file and not crl_dir:
            what = f'file "{crl_file}"'
        elif crl_dir and not crl_file:
            what = f'directory "{crl_dir}"'
        else:
            what = f'file "{crl_file}" or directory "{crl_dir}"'
        raise SslConfigError(f"could not load SSL certificate revocation list {what}: {reason}") from None
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_CHAIN


def reload(settings: GucSettings, datadir: str, current: ServerTls | None) -> ServerTls | None:
    """SIGHUP in the postmaster: the context to use from now on (the old one when the new
    settings do not load, None when ssl is off)."""
    if not settings.value("ssl"):
        return None
    try:
        return load(settings, datadir, server_start=False)
    except SslConfigError as exc:
        elog.log(exc.message, detail=exc.detail)
        elog.log("SSL configuration was not reloaded")
        return current


async def open_server(conn: Conn, server: ServerTls) -> tls.TlsConn:
    """The server side of the handshake on ``conn`` (secure_open_server).  The plain
    ``conn`` must not be used afterwards.  HandshakeFailed (logged) when it fails."""
    try:
        return await tls.accept(conn, server.context, cert_file=server.cert_file)
    except tls.TlsError as exc:
        reason, _, detail = str(exc).partition(": ") if str(exc).startswith("certificate verify failed") else (
            str(exc), "", "")
        hint = None
        if reason in _PROTOCOL_REASONS:
            hint = (f"This may indicate that the client does not support any SSL protocol version between "
                    f"{server.min_version} and {server.max_version}.")
        elog.log(f"could not accept SSL connection: {reason}", detail=detail or None, hint=hint)
    except ConnectionLost as exc:
        reason = "Connection reset by peer" if "reset" in str(exc).lower() else "EOF detected"
        elog.log(f"could not accept SSL connection: {reason}")
    raise HandshakeFailed()
