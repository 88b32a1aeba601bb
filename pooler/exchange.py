"""The password exchanges of a client login: cleartext, md5 and SCRAM-SHA-256 (with
``SCRAM-SHA-256-PLUS`` channel binding over TLS) -- the wire side of pgbouncer's client.c
and scram.c.

Each exchange runs in full whether or not the pooler could accept the client: with no
usable secret (``secret=None``: an unknown user, an md5 secret under SCRAM, an empty
password) it is a *mock* exchange that looks on the wire like a real one with a wrong
password -- the same messages, and for SCRAM a server-first-message whose salt and
iteration count are those a real user would have: derived from the user name and a
per-process random key (:class:`Salts`), so repeated probes of one name see one salt,
as they would for a user that exists.  Plain-text secrets get the same derived salt.

Contracts: every function returns whether the client proved its password (and for SCRAM
the reason it did not); a malformed or unexpected message is a :class:`PoolerError`
08P01 raised before any user-specific work.  Nothing here logs or decides: :mod:`.auth`
does.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import TYPE_CHECKING

from pgbundle.shared import sqlstate
from pgbundle.shared.auth.md5 import is_md5_secret, md5_secret, md5_verify
from pgbundle.shared.auth.scram import (
    MECHANISM,
    MECHANISM_PLUS,
    ScramError,
    ScramSecret,
    ScramVerifier,
    is_scram_secret,
    make_secret,
    parse_scram_secret,
)
from pgbundle.shared.protocol import messages as m, parse_password, parse_sasl_initial_response
from pgbundle.shared.protocol.errors import RemoteProtocolError
from pgbundle.shared.tls import TlsConn

from .objects import PoolerError

if TYPE_CHECKING:
    from .client import Client

#: PostgreSQL's defaults for a new SCRAM secret (and so for a mock one).
SCRAM_ITERATIONS = 4096
SCRAM_SALT_LEN = 16
_P = m.PasswordMessage.TYPE[0]  # PasswordMessage, SASLInitialResponse and SASLResponse share it


class Salts:
    """Per-process SCRAM salts for users without a SCRAM secret of their own (PostgreSQL's
    scram_mock_salt: a hash of the name and a random nonce, here an HMAC)."""

    def __init__(self) -> None:
        self._key = os.urandom(32)

    def salt(self, user: str) -> bytes:
        return hmac.new(self._key, user.encode("utf-8", "surrogateescape"), hashlib.sha256).digest()[:SCRAM_SALT_LEN]

    def scram_secret(self, user: str, secret: str | None, iterations: int = SCRAM_ITERATIONS) -> ScramSecret:
        """The SCRAM secret to verify ``user`` against: the stored one, one made from a plain
        password with the user's derived salt and ``iterations`` (pgbouncer's scram_iterations),
        or (``None``) one no proof can match."""
        if secret is not None and is_scram_secret(secret):
            return parse_scram_secret(secret)
        if secret is not None:
            return make_secret(secret, iterations, self.salt(user))
        return ScramSecret(iterations, self.salt(user), os.urandom(32), os.urandom(32))


def _violation(text: str) -> PoolerError:
    return PoolerError(text, sqlstate.PROTOCOL_VIOLATION)


async def _read_response(client: Client, what: str) -> bytes:
    t, payload = await client.read_message()
    if t != _P:
        raise _violation(f"expected {what} response, got message type {t}")
    return payload


async def _read_password(client: Client) -> str:
    payload = await _read_response(client, "password")
    try:
        return parse_password(payload)
    except RemoteProtocolError:
        raise _violation("invalid password packet") from None


async def ask_cleartext(client: Client) -> str:
    """AuthenticationCleartextPassword; the password the client sends."""
    await client.conn.send_all(client.encode(m.AuthenticationCleartextPassword()))
    return await _read_password(client)


def plain_matches(user: str, secret: str, password: str) -> bool:
    """Does a clear-text ``password`` match a stored secret (plain, md5 or SCRAM)?"""
    if is_scram_secret(secret):
        sec = parse_scram_secret(secret)
        mine = make_secret(password, sec.iterations, sec.salt)
        return hmac.compare_digest(mine.stored_key, sec.stored_key)
    if is_md5_secret(secret):
        return hmac.compare_digest(md5_secret(user, password), secret)
    return hmac.compare_digest(secret.encode(), password.encode())


async def cleartext(client: Client, secret: str | None) -> bool:
    """pgbouncer's ``plain`` (PostgreSQL's ``password``)."""
    pw = await ask_cleartext(client)
    return secret is not None and plain_matches(client.user, secret, pw)


async def md5(client: Client, secret: str | None) -> bool:
    """AuthenticationMD5Password with a fresh salt; ``secret`` is plain or md5."""
    salt = os.urandom(4)
    await client.conn.send_all(client.encode(m.AuthenticationMD5Password(salt)))
    resp = await _read_password(client)
    return secret is not None and md5_verify(client.user, secret, salt, resp)


def mechanisms(client: Client) -> tuple[tuple[str, ...], bytes | None]:
    """The SASL mechanisms to offer, PostgreSQL's order, and the channel-binding data: over
    TLS ``SCRAM-SHA-256-PLUS`` first (tls-server-end-point), else plain SCRAM only."""
    conn = client.conn
    binding = conn.server_end_point() if isinstance(conn, TlsConn) else None
    return ((MECHANISM_PLUS, MECHANISM) if binding is not None else (MECHANISM,)), binding


async def scram(client: Client, secret: ScramSecret, real: bool) -> tuple[bytes | None, str | None]:
    """A SCRAM exchange against ``secret`` (``real`` False: a mock one, which always fails).

    Returns ``(ClientKey, None)`` after a proof that matched, else ``(None, why)`` (``password
    does not match`` for a wrong proof).
    Errors: PoolerError 08P01 for a malformed message, an unoffered mechanism or a
    channel-binding negotiation error.
    """
    offered, binding = mechanisms(client)
    await client.conn.send_all(client.encode(m.AuthenticationSASL(offered)))
    payload = await _read_response(client, "SASL")
    try:
        init = parse_sasl_initial_response(payload)
    except RemoteProtocolError:
        raise _violation("malformed SASL message") from None
    if init.mechanism not in offered:
        raise _violation("client selected an invalid SASL authentication mechanism")
    verifier = ScramVerifier(secret, channel_binding=binding, mechanism=init.mechanism)
    try:
        first = verifier.server_first((init.data or b"").decode())
    except UnicodeDecodeError:
        raise _violation("malformed SCRAM message") from None
    except ScramError as exc:
        raise _violation(str(exc)) from None
    await client.conn.send_all(client.encode(m.AuthenticationSASLContinue(first.encode())))
    payload = await _read_response(client, "SASL")
    try:
        final = verifier.server_final(payload.decode())
    except UnicodeDecodeError:
        return None, "malformed SCRAM client-final-message"
    except ScramError as exc:
        return None, "password does not match" if str(exc) == "password authentication failed" else str(exc)
    if not real or verifier.client_key is None:
        return None, "mock authentication"
    await client.conn.send_all(client.encode(m.AuthenticationSASLFinal(final.encode())))
    return verifier.client_key, None
