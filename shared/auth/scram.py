"""SCRAM-SHA-256 (RFC 5802/7677) as PostgreSQL uses it.

Secrets and the password-based client come from :mod:`scramp`:

* :class:`ScramVerifier` -- server side (our own: see its docstring), verifying a client against a stored
  secret (``SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>``) or a plain
  password.  After a successful exchange it also knows the client's
  ``ClientKey`` (``ClientProof XOR ClientSignature``), which is what a pooler
  needs to log in to a server holding the *same* secret without the password
  (pgbouncer's SCRAM pass-through).
* :class:`ScramClient` -- client side, from a password (scramp) or from a
  ClientKey + ServerKey recovered as above.

Errors: :class:`ScramError` for anything malformed or a failed proof.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

import scramp

MECHANISM = "SCRAM-SHA-256"
MECHANISM_PLUS = "SCRAM-SHA-256-PLUS"
CB_TYPE = "tls-server-end-point"


class ScramError(Exception):
    """A SCRAM exchange failed (bad message, wrong password, mismatched secret)."""


@dataclass(frozen=True)
class ScramSecret:
    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes

    def __str__(self) -> str:
        b = base64.b64encode
        return (
            f"{MECHANISM}${self.iterations}:{b(self.salt).decode()}"
            f"${b(self.stored_key).decode()}:{b(self.server_key).decode()}"
        )


def is_scram_secret(secret: str) -> bool:
    try:
        parse_scram_secret(secret)
    except ScramError:
        return False
    return True


def parse_scram_secret(secret: str) -> ScramSecret:
    """Parse PostgreSQL's stored SCRAM secret format."""
    try:
        mech, rest = secret.split("$", 1)
        iter_salt, keys = rest.split("$", 1)
        it, salt = iter_salt.split(":", 1)
        stored, server = keys.split(":", 1)
        if mech != MECHANISM:
            raise ValueError(mech)
        d = base64.b64decode
        return ScramSecret(int(it), d(salt, validate=True), d(stored, validate=True), d(server, validate=True))
    except (ValueError, TypeError) as exc:
        raise ScramError(f"not a SCRAM-SHA-256 secret: {exc}") from None


def make_secret(password: str, iterations: int = 4096, salt: bytes | None = None) -> ScramSecret:
    """The SCRAM secret PostgreSQL would store for ``password``."""
    mech = scramp.ScramMechanism(MECHANISM)
    salt_, stored, server, it = mech.make_auth_info(password, iteration_count=iterations, salt=salt)
    return ScramSecret(it, salt_, stored, server)


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _attrs(msg: str) -> dict[str, str]:
    out = {}
    for part in msg.split(","):
        if len(part) >= 2 and part[1] == "=":
            out[part[0]] = part[2:]
    return out


class ScramVerifier:
    """Server side of one SCRAM exchange (RFC 5802 / 7677, and 5929's tls-server-end-point
    channel binding for ``SCRAM-SHA-256-PLUS``).

    Written here rather than taken from scramp because PostgreSQL's clients send
    an empty user name (``n=,r=...``: the user is in the startup packet), which
    scramp's server rejects.  ``secret`` is a :class:`ScramSecret` or a plain
    password.  Feed the client's messages in order: :meth:`server_first` (takes
    client-first, returns server-first), :meth:`server_final` (takes client-final,
    returns server-final, or raises ScramError on a wrong proof or a malformed
    message).

    ``channel_binding``: the tls-server-end-point data of this TLS connection when the
    server offered ``SCRAM-SHA-256-PLUS`` (None: no TLS, only plain SCRAM offered);
    ``mechanism``: what the client chose.  A client that chose PLUS must bind
    (``p=tls-server-end-point``) and its binding must match; one that says ``y`` (it
    could bind but thinks the server cannot) while PLUS was offered is refused -- a
    downgrade (RFC 5802 section 6).
    """

    def __init__(self, secret: ScramSecret | str, *, channel_binding: bytes | None = None,
                 mechanism: str = MECHANISM) -> None:
        if isinstance(secret, str):
            secret = make_secret(secret)
        self.secret = secret
        self.channel_binding = channel_binding
        self.mechanism = mechanism
        self.bound = False
        self._client_first_bare = ""
        self._server_first = ""
        self._gs2_header = ""
        self._nonce = ""
        self.client_key: bytes | None = None

    def server_first(self, client_first: str) -> str:
        parts = client_first.split(",", 2)
        if len(parts) != 3 or not (parts[0] in ("n", "y") or parts[0].startswith("p=")):
            raise ScramError("malformed SCRAM client-first-message")
        flag = parts[0]
        if flag.startswith("p="):
            if self.mechanism != MECHANISM_PLUS or self.channel_binding is None:
                raise ScramError("channel binding is not supported by this connection"
                                 if self.channel_binding is None else
                                 "SCRAM channel binding negotiation error: client requested channel binding "
                                 f"but selected {self.mechanism}")
            if flag[2:] != CB_TYPE:
                raise ScramError(f'unsupported SCRAM channel-binding type "{flag[2:]}"')
            self.bound = True
        elif self.mechanism == MECHANISM_PLUS:
            raise ScramError("SCRAM channel binding negotiation error: client selected SCRAM-SHA-256-PLUS "
                             "without binding")
        elif flag == "y" and self.channel_binding is not None:
            raise ScramError("SCRAM channel binding negotiation error: client supports channel binding but "
                             "thinks the server does not (a downgrade)")
        self._gs2_header = parts[0] + "," + parts[1] + ","
        self._client_first_bare = parts[2]
        attrs = _attrs(parts[2])
        cnonce = attrs.get("r", "")
        if not cnonce or "n" not in attrs:
            raise ScramError("malformed SCRAM client-first-message")
        self._nonce = cnonce + base64.b64encode(os.urandom(18)).decode()
        salt = base64.b64encode(self.secret.salt).decode()
        self._server_first = f"r={self._nonce},s={salt},i={self.secret.iterations}"
        return self._server_first

    def server_final(self, client_final: str) -> str:
        attrs = _attrs(client_final)
        without_proof, sep, proof_b64 = client_final.rpartition(",p=")
        if not sep or attrs.get("r") != self._nonce:
            raise ScramError("malformed SCRAM client-final-message")
        cbind = self._gs2_header.encode() + (self.channel_binding or b"" if self.bound else b"")
        if attrs.get("c") != base64.b64encode(cbind).decode():
            raise ScramError("SCRAM channel binding check failed")
        try:
            proof = base64.b64decode(proof_b64, validate=True)
        except ValueError:
            raise ScramError("malformed SCRAM proof") from None
        if len(proof) != len(self.secret.stored_key):
            raise ScramError("malformed SCRAM proof")
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        client_key = _xor(proof, _hmac(self.secret.stored_key, auth_message))
        if not hmac.compare_digest(hashlib.sha256(client_key).digest(), self.secret.stored_key):
            raise ScramError("password authentication failed")
        self.client_key = client_key
        return "v=" + base64.b64encode(_hmac(self.secret.server_key, auth_message)).decode()


class ScramClient:
    """Client side of one SCRAM exchange, from a password or from keys.

    Give ``password``, or ``client_key`` and ``secret`` (a ClientKey recovered by
    :class:`ScramVerifier` and the stored secret it belongs to); the latter only
    works against a server that stores the same secret (same salt and iterations).

    Channel binding: ``channel_binding`` (the tls-server-end-point data of this TLS
    connection) makes it ``SCRAM-SHA-256-PLUS`` -- give it only when the server offered
    that mechanism (without it the flag is ``n``: RFC 5802 allows that to a client that
    does not bind; ``y`` would only tell a server that did not offer PLUS that we could
    have).  :attr:`mechanism` is the name to put in the SASLInitialResponse.
    """

    def __init__(
        self,
        user: str = "",
        *,
        password: str | None = None,
        client_key: bytes | None = None,
        secret: ScramSecret | None = None,
        channel_binding: bytes | None = None,
    ) -> None:
        self._password_client = None
        self.mechanism = MECHANISM_PLUS if channel_binding is not None else MECHANISM
        self._gs2 = f"p={CB_TYPE},," if channel_binding is not None else "n,,"
        self._cbind = base64.b64encode(self._gs2.encode() + (channel_binding or b"")).decode()
        if password is not None:
            cb = (CB_TYPE, channel_binding) if channel_binding is not None else None
            self._password_client = scramp.ScramClient([self.mechanism], user, password, channel_binding=cb)
        elif client_key is None or secret is None:
            raise ValueError("ScramClient needs a password, or a client_key and its secret")
        self._client_key = client_key
        self._secret = secret
        self._nonce = base64.b64encode(os.urandom(18)).decode()
        self._client_first_bare = f"n=,r={self._nonce}"
        self._auth_message = b""

    def client_first(self) -> str:
        if self._password_client is not None:
            first: str = self._password_client.get_client_first()
            return first
        return self._gs2 + self._client_first_bare

    def client_final(self, server_first: str) -> str:
        if self._password_client is not None:
            try:
                self._password_client.set_server_first(server_first)
                final: str = self._password_client.get_client_final()
                return final
            except scramp.ScramException as exc:
                raise ScramError(str(exc)) from None
        assert self._client_key is not None and self._secret is not None
        a = _attrs(server_first)
        try:
            nonce, salt, iterations = a["r"], base64.b64decode(a["s"]), int(a["i"])
        except (KeyError, ValueError) as exc:
            raise ScramError(f"malformed server-first-message: {exc}") from None
        if not nonce.startswith(self._nonce):
            raise ScramError("server nonce does not extend the client nonce")
        if salt != self._secret.salt or iterations != self._secret.iterations:
            raise ScramError("the server's SCRAM secret differs from the pooler's (salt or iterations)")
        without_proof = f"c={self._cbind},r={nonce}"
        self._auth_message = f"{self._client_first_bare},{server_first},{without_proof}".encode()
        signature = _hmac(self._secret.stored_key, self._auth_message)
        proof = _xor(self._client_key, signature)
        return f"{without_proof},p={base64.b64encode(proof).decode()}"

    def verify_server_final(self, server_final: str) -> None:
        if self._password_client is not None:
            try:
                self._password_client.set_server_final(server_final)
            except scramp.ScramException as exc:
                raise ScramError(str(exc)) from None
            return
        assert self._secret is not None
        a = _attrs(server_final)
        if "e" in a:
            raise ScramError(f"server error: {a['e']}")
        expected = _hmac(self._secret.server_key, self._auth_message)
        if not hmac.compare_digest(base64.b64decode(a.get("v", "")), expected):
            raise ScramError("invalid server signature")
