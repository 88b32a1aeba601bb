"""Client authentication (PostgreSQL's auth.c ClientAuthentication, and hba.c's
check_usermap for ``map=``).

:func:`client_authentication` finds the first pg_hba.conf line for the connection
(``hostssl`` / ``hostnossl`` match on whether it is TLS), then, as PostgreSQL 15:

1. a line with ``clientcert=verify-ca|verify-full`` (``cert`` implies verify-full) needs a
   client certificate that verified against ``ssl_ca_file`` (F0000 'client certificates
   can only be checked if a root certificate store is available' without one, 28000
   'connection requires a valid client certificate' without a certificate);
2. the method: ``trust``; ``reject`` (28000 'pg_hba.conf rejects connection for host ...');
   ``password`` / ``md5`` / ``scram-sha-256`` against the role's secret in pg_authid
   (``md5`` with a SCRAM secret does SCRAM; over TLS SCRAM-SHA-256-PLUS with
   tls-server-end-point channel binding is offered first); ``peer`` on a Unix socket (the
   OS user of the peer's uid, SO_PEERCRED); ``cert``;
3. for ``cert`` and ``clientcert=verify-full``: the certificate's CN (``clientname=DN``:
   its subject DN in RFC 2253 form) must be the user name, or map to it through
   ``map=`` in ``ident_file`` (default ``DIR/pg_ident.conf``).

Failures are FATAL with PostgreSQL's texts (``password authentication failed for user
"x"`` is 28P01, the others 28000) and are logged with the DETAIL 'Connection matched
pg_hba.conf line N: "..."', as PostgreSQL logs them; why a certificate or peer name did
not match goes to the log only.  Whether the role exists is checked afterwards by the
caller (a trusted unknown role is 28000 'role "x" does not exist', as in PostgreSQL).
"""

from __future__ import annotations

import pwd
import secrets
import socket
import struct
from typing import TYPE_CHECKING, NoReturn

from pgbundle.server.access import api
from pgbundle.server.errors import FatalError
from pgbundle.server.tcop import hba
from pgbundle.server.utils import elog
from pgbundle.shared.auth import md5 as md5auth, scram
from pgbundle.shared.protocol import codec, messages as M

if TYPE_CHECKING:
    from pgbundle.server.tcop.backend_startup import Port
    from pgbundle.server.utils.guc import GucSettings

# The type byte of the client's answers during authentication (PasswordMessage, SASLInitialResponse
# and SASLResponse all travel as 'p').
_PASSWORD_TYPE = M.PasswordMessage.TYPE[0]
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid

# auth_failed's message per method ("%s" is the user name).
_FAILED = {
    "trust": '"trust" authentication failed for user "{}"',
    "peer": 'Peer authentication failed for user "{}"',
    "ident": 'Ident authentication failed for user "{}"',
    "password": 'password authentication failed for user "{}"',
    "md5": 'password authentication failed for user "{}"',
    "scram-sha-256": 'password authentication failed for user "{}"',
    "cert": 'certificate authentication failed for user "{}"',
}

# ScramVerifier's complaints -> PostgreSQL's SQLSTATE, message and detail (auth-scram.c).
_SCRAM_ERRORS = (
    ("channel binding is not supported", "08P01", "malformed SCRAM message",
     "The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding "
     "data."),
    ("client requested channel binding but selected", "08P01", "malformed SCRAM message",
     "The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding "
     "data."),
    ("selected SCRAM-SHA-256-PLUS without binding", "08P01", "malformed SCRAM message",
     "The client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel binding data."),
    ("a downgrade", "08P01", "SCRAM channel binding negotiation error",
     "The client supports SCRAM channel binding but thinks the server does not.  However, this server does "
     "support channel binding."),
    ("unsupported SCRAM channel-binding type", "08P01", None, None),
    ("channel binding check failed", "28000", "SCRAM channel binding check failed", None),
    ("malformed", "08P01", "malformed SCRAM message", None),
)


class AuthFailed(Exception):
    """The method's check failed: auth_failed reports it."""


async def client_authentication(port: Port, settings: GucSettings, datadir: str, *, database: str, user: str,
                                role: api.RoleInfo | None) -> None:
    """Authenticate ``user`` for ``database`` over ``port``; FatalError when refused."""
    rules = hba.parse(hba.hba_path(datadir, settings))
    line = hba.match(rules, local=port.local, address=None if port.local else port.address, database=database,
                     user=user, tls=port.tls is not None)
    host = "[local]" if port.local else port.address
    if line is None:
        raise FatalError("28000", f'no pg_hba.conf entry for host "{host}", user "{user}", database "{database}", '
                                  f"{port.encryption}")
    method = line.method
    clientcert = line.options.get("clientcert") or ("verify-full" if method == "cert" else None)
    tconn = port.tls_conn
    if clientcert is not None:
        if port.server_tls is None or not port.server_tls.verify_locations:
            raise FatalError("F0000", "client certificates can only be checked if a root certificate store is "
                                      "available")
        if tconn is None or not tconn.peer_cert():
            raise FatalError("28000", "connection requires a valid client certificate")
    if method == "reject":
        raise FatalError("28000", f'pg_hba.conf rejects connection for host "{host}", user "{user}", '
                                  f'database "{database}", {port.encryption}')
    try:
        if method == "peer":
            _check_usermap(settings, datadir, line.map, user, _peer_user(port))
        elif method in ("password", "md5", "scram-sha-256"):
            await _password_exchange(port, method, role, user)
        elif method not in ("trust", "cert"):
            raise FatalError("28000", f'authentication method "{method}" not supported')
        if method == "cert" or clientcert == "verify-full":
            _check_cert(settings, datadir, line, user, port)
    except AuthFailed as exc:
        message = _FAILED.get(method, 'authentication failed for user "{}"').format(user)
        detail = f'Connection matched pg_hba.conf line {line.line}: "{line.raw}"'
        elog.log(message, "FATAL", detail=f"{exc}\n{detail}" if str(exc) else detail)
        raise FatalError("28P01" if method in ("password", "md5", "scram-sha-256") else "28000", message) from None


# ----------------------------------------------------------------------------- peer and cert


def _peer_user(port: Port) -> str:
    """The OS user name of the process at the other end of the Unix socket (auth_peer)."""
    try:
        _pid, uid, _gid = _UCRED.unpack(port.ms.conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                                     _UCRED.size))
    except OSError as exc:
        elog.log(f"could not get peer credentials: {exc.strerror}")
        raise AuthFailed() from None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        elog.log(f"could not look up local user ID {uid}: user does not exist")
        raise AuthFailed() from None


def _check_cert(settings: GucSettings, datadir: str, line: hba.HbaLine, user: str, port: Port) -> None:
    """CheckCertAuth: the certificate's CN (or DN) must be, or map to, the user."""
    tconn = port.tls_conn
    assert tconn is not None
    by_dn = line.options.get("clientname") == "DN"
    name = tconn.peer_dn() if by_dn else tconn.peer_cn()
    if not name:
        elog.log(f'certificate authentication failed for user "{user}": client certificate contains no user name')
        raise AuthFailed()
    try:
        _check_usermap(settings, datadir, line.map, user, name)
    except AuthFailed:
        if line.method != "cert":
            elog.log(f'certificate validation (clientcert=verify-full) failed for user "{user}": '
                     f'{"DN" if by_dn else "CN"} mismatch')
        raise


def _check_usermap(settings: GucSettings, datadir: str, usermap: str | None, pg_role: str, auth_user: str) -> None:
    """check_usermap: without a map the names must be equal, with one pg_ident.conf decides."""
    if not usermap:
        if pg_role == auth_user:
            return
        elog.log(f"provided user name ({pg_role}) and authenticated user name ({auth_user}) do not match")
        raise AuthFailed()
    if hba.ident_match(hba.ident_path(datadir, settings), usermap, auth_user, pg_role):
        return
    elog.log(f'no match in usermap "{usermap}" for user "{pg_role}" authenticated as "{auth_user}"')
    raise AuthFailed()


# ----------------------------------------------------------------------------- passwords


async def _receive_response(port: Port, what: str) -> bytes:
    typ, payload = await port.ms.receive()
    if typ != _PASSWORD_TYPE:
        raise FatalError("08P01", f"expected {what} response, got message type {typ}")
    return payload


async def _password_exchange(port: Port, method: str, role: api.RoleInfo | None, user: str) -> None:
    secret = role.password if role is not None else None
    if method == "md5" and secret is not None and scram.is_scram_secret(secret):
        method = "scram-sha-256"
    if method == "scram-sha-256":
        await _scram_exchange(port, secret)
    elif method == "md5":
        salt = secrets.token_bytes(4)
        await port.ms.send(M.AuthenticationMD5Password(salt))
        resp = codec.parse_password(await _receive_response(port, "password"))
        if secret is None or not md5auth.is_md5_secret(secret) or not md5auth.md5_verify(user, secret, salt, resp):
            raise AuthFailed()
    else:
        await port.ms.send(M.AuthenticationCleartextPassword())
        if not _password_matches(codec.parse_password(await _receive_response(port, "password")), secret, user):
            raise AuthFailed()


def _password_matches(pw: str, secret: str | None, user: str) -> bool:
    if secret is None:
        return False
    if scram.is_scram_secret(secret):
        s = scram.parse_scram_secret(secret)
        return str(scram.make_secret(pw, s.iterations, s.salt)) == secret
    if md5auth.is_md5_secret(secret):
        return md5auth.md5_secret(user, pw) == secret
    return pw == secret


async def _scram_exchange(port: Port, secret: str | None) -> None:
    """SASL with SCRAM-SHA-256 (and -PLUS over TLS, offered first, as PostgreSQL does)."""
    binding = port.server_tls.end_point if port.tls is not None and port.server_tls is not None else None
    offered = (scram.MECHANISM_PLUS, scram.MECHANISM) if binding is not None else (scram.MECHANISM,)
    await port.ms.send(M.AuthenticationSASL(offered))
    init = codec.parse_sasl_initial_response(await _receive_response(port, "SASL"))
    if init.mechanism not in offered:
        raise FatalError("08P01", "client selected an invalid SASL authentication mechanism")
    if secret is None or not scram.is_scram_secret(secret):
        raise AuthFailed()
    # given the binding even for plain SCRAM-SHA-256, the verifier refuses a 'y' flag (a downgrade)
    v = scram.ScramVerifier(scram.parse_scram_secret(secret), channel_binding=binding, mechanism=init.mechanism)
    try:
        first = v.server_first((init.data or b"").decode())
        await port.ms.send(M.AuthenticationSASLContinue(first.encode()))
        final = v.server_final((await _receive_response(port, "SASL")).decode())
    except UnicodeDecodeError:
        raise FatalError("08P01", "malformed SCRAM message") from None
    except scram.ScramError as exc:
        _scram_failure(str(exc))
    await port.ms.send(M.AuthenticationSASLFinal(final.encode()))


def _scram_failure(text: str) -> NoReturn:
    for needle, sqlstate, message, detail in _SCRAM_ERRORS:
        if needle in text:
            raise FatalError(sqlstate, message or text, detail)
    raise AuthFailed()
