"""Backend startup: the startup packet, SSL/GSS negotiation, cancel requests,
authentication and the first messages (PostgreSQL's backend_startup.c + auth.c).

Order, as PostgreSQL: read packets until a StartupMessage (SSLRequest and
GSSENCRequest are answered 'N'; a CancelRequest signals the target backend and
closes), negotiate the protocol version (3.0; a newer minor gets
NegotiateProtocolVersion), take a backend slot (FATAL 53300 at max_connections),
match pg_hba.conf, authenticate (trust / password / md5 / scram-sha-256 against the
role's secret in pg_authid), check the database, then send AuthenticationOk, the
ParameterStatus set, BackendKeyData and ReadyForQuery.

Every failure is a FATAL ErrorResponse with PostgreSQL's SQLSTATE and text, then close.
The client is a :class:`pgbundle.shared.netio.MessageConn`; the one byte refusing SSL is
:data:`pgbundle.shared.protocol.SSL_REFUSED`.
"""

from __future__ import annotations

import os
import secrets
import signal
from typing import TYPE_CHECKING

import trio

from pgbundle.server.access import api
from pgbundle.server.errors import FatalError, PgError
from pgbundle.server.tcop import hba
from pgbundle.shared.auth import md5 as md5auth, scram
from pgbundle.shared.netio import ConnectionLost, MessageConn
from pgbundle.shared.protocol import SSL_REFUSED, codec, messages as M
from pgbundle.shared.protocol.errors import ProtocolError

if TYPE_CHECKING:
    from pgbundle.server.storage.procarray import ProcArray
    from pgbundle.server.utils.guc import GucSettings

# The type byte of the client's answers during authentication (PasswordMessage, SASLInitialResponse
# and SASLResponse all travel as 'p').
_PASSWORD_TYPE = M.PasswordMessage.TYPE[0]


class CancelHandled(Exception):
    """The connection was a CancelRequest; it has been handled."""


async def read_startup(ms: MessageConn, procs: ProcArray | None) -> M.StartupMessage:
    """Packets until the StartupMessage; answers SSL/GSS requests, serves cancels."""
    while True:
        typ, payload = await ms.receive()
        msg = codec.decode_startup(payload)
        if isinstance(msg, (M.SSLRequest, M.GSSENCRequest)):
            await ms.conn.send_all(SSL_REFUSED)
            continue
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


async def authenticate(ms: MessageConn, *, method: str, role: api.RoleInfo | None, user: str) -> None:
    """Run the exchange for ``method``; raise FatalError 28P01 on failure."""
    fail = FatalError("28P01", f'password authentication failed for user "{user}"')
    if method == "trust":
        if role is None:
            raise FatalError("28000", f'role "{user}" does not exist')
        return
    if method == "reject":
        raise FatalError("28000", f'pg_hba.conf rejects connection for user "{user}"')
    secret = role.password if role is not None else None
    if method == "md5" and secret is not None and scram.is_scram_secret(secret):
        method = "scram-sha-256"
    if method == "scram-sha-256":
        await ms.send(M.AuthenticationSASL((scram.MECHANISM,)))
        typ, payload = await ms.receive()
        if typ != _PASSWORD_TYPE:
            raise FatalError("08P01", f"expected SASL response, got message type {typ}")
        init = codec.parse_sasl_initial_response(payload)
        if init.mechanism != scram.MECHANISM:
            raise FatalError("08P01", "client selected an invalid SASL authentication mechanism")
        if secret is None or not scram.is_scram_secret(secret):
            raise fail
        v = scram.ScramVerifier(scram.parse_scram_secret(secret))
        try:
            first = v.server_first((init.data or b"").decode())
        except (scram.ScramError, UnicodeDecodeError):
            raise fail from None
        await ms.send(M.AuthenticationSASLContinue(first.encode()))
        typ, payload = await ms.receive()
        if typ != _PASSWORD_TYPE:
            raise FatalError("08P01", f"expected SASL response, got message type {typ}")
        try:
            final = v.server_final(payload.decode())
        except (scram.ScramError, UnicodeDecodeError):
            raise fail from None
        await ms.send(M.AuthenticationSASLFinal(final.encode()))
        return
    if method == "md5":
        salt = secrets.token_bytes(4)
        await ms.send(M.AuthenticationMD5Password(salt))
        typ, payload = await ms.receive()
        if typ != _PASSWORD_TYPE:
            raise FatalError("08P01", f"expected password response, got message type {typ}")
        resp = codec.parse_password(payload)
        if secret is None or not md5auth.is_md5_secret(secret) or not md5auth.md5_verify(user, secret, salt, resp):
            raise fail
        return
    if method == "password":
        await ms.send(M.AuthenticationCleartextPassword())
        typ, payload = await ms.receive()
        pw = codec.parse_password(payload)
        ok = False
        if secret is not None:
            if scram.is_scram_secret(secret):
                s = scram.parse_scram_secret(secret)
                ok = str(scram.make_secret(pw, s.iterations, s.salt)) == secret
            elif md5auth.is_md5_secret(secret):
                ok = md5auth.md5_secret(user, pw) == secret
            else:
                ok = pw == secret
        if not ok:
            raise fail
        return
    raise FatalError("28000", f'authentication method "{method}" not supported')


def hba_method(datadir: str, settings: GucSettings, *, local: bool, address: str | None, database: str,
               user: str) -> str:
    rules = hba.parse(hba.hba_path(datadir, settings))
    line = hba.match(rules, local=local, address=address, database=database, user=user)
    if line is None:
        host = "[local]" if local else address
        raise FatalError("28000", f'no pg_hba.conf entry for host "{host}", user "{user}", database "{database}", '
                                  f"no encryption")
    return line.method


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
