"""PostgreSQL's md5 password method.

A stored md5 secret is ``"md5" + md5(password + user)``; the client answers an
AuthenticationMD5Password(salt) with ``"md5" + md5(secret[3:] + salt)``.
Knowing the secret is enough to log in, so a secret works like a password.
"""

from __future__ import annotations

import hashlib
import hmac


def is_md5_secret(secret: str) -> bool:
    return len(secret) == 35 and secret.startswith("md5") and all(c in "0123456789abcdef" for c in secret[3:])


def md5_secret(user: str, password: str) -> str:
    """The secret PostgreSQL stores for ``password`` of ``user``."""
    return "md5" + hashlib.md5((password + user).encode()).hexdigest()


def md5_response(user: str, password_or_secret: str, salt: bytes) -> str:
    """What a client sends for AuthenticationMD5Password(salt)."""
    secret = password_or_secret if is_md5_secret(password_or_secret) else md5_secret(user, password_or_secret)
    return "md5" + hashlib.md5(secret[3:].encode() + salt).hexdigest()


def md5_verify(user: str, password_or_secret: str, salt: bytes, response: str) -> bool:
    """Check a client's md5 response against a stored plain password or md5 secret."""
    return hmac.compare_digest(md5_response(user, password_or_secret, salt), response)
