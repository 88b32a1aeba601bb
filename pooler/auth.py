"""Client authentication, and the credentials server connections log in with.

Two regimes:

* **auth_file** (pgbouncer's rules, ``auth_type`` default md5): users and their
  secrets come from userlist.txt.  ``trust`` needs the user to be listed;
  ``any`` admits anyone; ``plain`` asks for the password in clear; ``md5``
  uses SCRAM when the stored secret is SCRAM; ``scram-sha-256`` needs a plain
  or SCRAM secret.  A client that logged in with SCRAM against a stored SCRAM
  secret leaves its ClientKey behind, so server connections for that user can
  log in with SCRAM without the password (pgbouncer's pass-through).
* **upstream-verified** (no auth_file, no auth_type: the zero-config default):
  a client is admitted when the upstream admits the same user to the same
  database.  A trusting upstream needs nothing; when it asks for a password, the
  pooler asks the client for it in clear -- only over loopback, a Unix socket or
  TLS -- and tries it upstream.  What worked is remembered per (user, upstream,
  database) and checked locally for the next clients.

Failures are :class:`PoolerError` with SQLSTATE 28P01 (wrong password) or 28000,
worded as PostgreSQL words them.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec
import trio

from pgbundle.shared import sqlstate
from pgbundle.shared.auth.md5 import is_md5_secret, md5_secret, md5_verify
from pgbundle.shared.auth.scram import (
    MECHANISM,
    ScramError,
    ScramSecret,
    ScramVerifier,
    is_scram_secret,
    make_secret,
    parse_scram_secret,
)
from pgbundle.shared.netio import ConnectionLost
from pgbundle.shared.protocol import messages as m, parse_password, parse_sasl_initial_response
from pgbundle.shared.protocol.errors import RemoteProtocolError
from pgbundle.shared.quoting import quote_literal

from .config import load_auth_file
from .objects import Pool, PoolerError, ServerState
from .server import Server

if TYPE_CHECKING:
    from .client import Client
    from .config import DatabaseConfig
    from .objects import PoolerHost

TRUST = object()  # marker in the upstream-verified cache: the upstream asked for no password
#: An auth_query connection's upstream: (hosts, port, dbname, auth_user).
AuthQueryKey = tuple[tuple[str, ...], int, str, str]
#: What the upstream-verified cache is keyed by: (user, hosts, port, upstream database).
VerifiedKey = tuple[str, tuple[str, ...], int, str]


def verified_key(user: str, db: DatabaseConfig, server_dbname: str) -> VerifiedKey:
    return (user, tuple(db.host), db.port, server_dbname)


@dataclass
class Credentials:
    """What a server connection may log in with (any of them may be missing)."""

    password: str | None = None
    md5: str | None = None
    scram: ScramSecret | None = None
    scram_client_key: bytes | None = None
    ask_password: Callable[[], Awaitable[str | None]] | None = None


def password_failed(user: str) -> PoolerError:
    return PoolerError(f'password authentication failed for user "{user}"', sqlstate.INVALID_PASSWORD)


class Authenticator:
    """Authenticates clients for one pooler; holds the user secrets and learned credentials."""

    def __init__(self, pooler: PoolerHost) -> None:
        self.pooler = pooler
        self.users: dict[str, str] = {}
        self.client_keys: dict[str, bytes] = {}  # user -> SCRAM ClientKey learned from a client login
        self.verified: dict[VerifiedKey, object | str] = {}  # upstream-verified: TRUST or the password
        # one upstream check per (user, upstream, database) / one auth_query per database at a time
        self.locks: dict[VerifiedKey | AuthQueryKey, trio.Lock] = {}
        self.queried: dict[str, str] = {}  # secrets fetched with auth_query
        self.auth_servers: dict[AuthQueryKey, Server] = {}  # auth_query connections
        self.reload()

    def reload(self) -> None:
        s = self.pooler.config.settings
        self.users = load_auth_file(s.auth_file) if s.auth_file else {}

    @property
    def upstream_verified(self) -> bool:
        s = self.pooler.config.settings
        return s.auth_file is None and s.auth_type is None

    # ---------------------------------------------------------------- server-side credentials

    def server_credentials(self, pool: Pool) -> Credentials:
        """Credentials for a server connection of ``pool``."""
        server_user, db = pool.server_user, pool.db
        if db.password is not None and (db.user is None or db.user == server_user):
            return Credentials(password=db.password)
        secret = self.users.get(server_user) or self.queried.get(server_user)
        if secret is not None:
            if is_scram_secret(secret):
                return Credentials(scram=parse_scram_secret(secret), scram_client_key=self.client_keys.get(server_user))
            if is_md5_secret(secret):
                return Credentials(md5=secret)
            return Credentials(password=secret)
        v = self.verified.get(verified_key(server_user, db, pool.server_dbname))
        if isinstance(v, str):
            return Credentials(password=v)
        return Credentials()

    # ---------------------------------------------------------------- client side

    async def authenticate(self, client: Client, db: DatabaseConfig | None) -> None:
        """Run the authentication exchange with ``client``; return when it may proceed.

        ``db`` is None for the admin console.  Does not send AuthenticationOk.
        Errors: PoolerError (28P01, 28000, 08P01 for a malformed reply).
        """
        user = client.user
        s = self.pooler.config.settings
        if self.upstream_verified:
            await self._upstream_verified(client, db)
            return
        auth_type = s.auth_type or "md5"
        if auth_type == "any":
            return
        secret = self.users.get(user)
        if auth_type == "trust":
            if s.auth_file is not None and secret is None:
                raise PoolerError(f'no such user: "{user}"', sqlstate.INVALID_AUTHORIZATION_SPECIFICATION)
            return
        if auth_type in ("hba", "cert"):
            raise PoolerError(f"auth_type {auth_type} is not supported", sqlstate.FEATURE_NOT_SUPPORTED)
        auth_user = (db.auth_user or s.auth_user) if db is not None else None
        if secret is None and db is not None and auth_user:
            secret = await self._auth_query(client, db, auth_user)
        if secret is None:
            # PostgreSQL does not tell whether the user exists: ask, then fail the same way.
            await self._fake_auth(client, auth_type)
            raise password_failed(user)
        if auth_type == "plain":
            pw = await self._ask_cleartext(client)
            if not self._check_plain(user, secret, pw):
                raise password_failed(user)
            return
        scram = is_scram_secret(secret)
        if auth_type == "scram-sha-256" or (auth_type == "md5" and scram):
            if is_md5_secret(secret):
                raise PoolerError(f'user "{user}" has an md5 secret and cannot use SCRAM authentication',
                                  sqlstate.INVALID_PASSWORD)
            await self._scram(client, parse_scram_secret(secret) if scram else secret)
            return
        # md5 with a plain or md5 secret
        salt = os.urandom(4)
        await client.conn.send_all(client.encode(m.AuthenticationMD5Password(salt)))
        resp = await self._read_password(client)
        if not md5_verify(user, secret, salt, resp):
            raise password_failed(user)

    def _check_plain(self, user: str, secret: str, pw: str) -> bool:
        if is_scram_secret(secret):
            sec = parse_scram_secret(secret)
            mine = make_secret(pw, sec.iterations, sec.salt)
            return hmac.compare_digest(mine.stored_key, sec.stored_key)
        if is_md5_secret(secret):
            return hmac.compare_digest(md5_secret(user, pw), secret)
        return hmac.compare_digest(secret.encode(), pw.encode())

    async def _read_password(self, client: Client) -> str:
        t, payload = await client.read_message()
        if t != m.PasswordMessage.TYPE[0]:  # SASL responses share the type byte
            raise PoolerError(f"expected password response, got message type {t}", sqlstate.PROTOCOL_VIOLATION)
        try:
            return parse_password(payload)
        except RemoteProtocolError:
            raise PoolerError("invalid password packet", sqlstate.PROTOCOL_VIOLATION) from None

    async def _ask_cleartext(self, client: Client) -> str:
        await client.conn.send_all(client.encode(m.AuthenticationCleartextPassword()))
        return await self._read_password(client)

    async def _fake_auth(self, client: Client, auth_type: str) -> None:
        if auth_type == "plain":
            await self._ask_cleartext(client)
        elif auth_type == "scram-sha-256":
            try:
                await self._scram(client, os.urandom(16).hex())
            except PoolerError:
                pass
        else:
            await client.conn.send_all(client.encode(m.AuthenticationMD5Password(os.urandom(4))))
            await self._read_password(client)

    async def _scram(self, client: Client, secret: ScramSecret | str) -> None:
        user = client.user
        await client.conn.send_all(client.encode(m.AuthenticationSASL((MECHANISM,))))
        t, payload = await client.read_message()
        if t != m.PasswordMessage.TYPE[0]:  # SASL responses share the type byte
            raise PoolerError(f"expected SASL response, got message type {t}", sqlstate.PROTOCOL_VIOLATION)
        try:
            init = parse_sasl_initial_response(payload)
        except RemoteProtocolError:
            raise PoolerError("malformed SASL message", sqlstate.PROTOCOL_VIOLATION) from None
        if init.mechanism != MECHANISM:
            raise PoolerError("client selected an invalid SASL authentication mechanism",
                              sqlstate.PROTOCOL_VIOLATION)
        verifier = ScramVerifier(secret)
        try:
            first = verifier.server_first((init.data or b"").decode())
        except (ScramError, UnicodeDecodeError):
            raise PoolerError("malformed SCRAM message", sqlstate.PROTOCOL_VIOLATION) from None
        await client.conn.send_all(client.encode(m.AuthenticationSASLContinue(first.encode())))
        t, payload = await client.read_message()
        if t != m.PasswordMessage.TYPE[0]:  # SASL responses share the type byte
            raise PoolerError(f"expected SASL response, got message type {t}", sqlstate.PROTOCOL_VIOLATION)
        try:
            final = verifier.server_final(payload.decode())
        except (ScramError, UnicodeDecodeError):
            raise password_failed(user) from None
        if isinstance(secret, ScramSecret) and verifier.client_key is not None:
            self.client_keys[user] = verifier.client_key
        await client.conn.send_all(client.encode(m.AuthenticationSASLFinal(final.encode())))

    def _target(self, client: Client, db: DatabaseConfig | None) -> tuple[DatabaseConfig, str]:
        """The upstream entry and pool name to verify ``client`` against (for the admin console
        and unknown databases: the postgres database)."""
        if db is not None:
            return db, client.database
        dbs = self.pooler.config.databases
        return (self.pooler.find_database("postgres") or next(iter(dbs.values()))), "postgres"

    async def _upstream_verified(self, client: Client, db: DatabaseConfig | None) -> None:
        """Zero-config: admit the client when the upstream admits the same user to the same database.

        One check per (user, upstream, database) at a time: a thousand clients arriving
        together wait for the first one's check instead of each opening its own upstream
        connection.
        """
        db, dbname = self._target(client, db)
        key = verified_key(client.user, db, db.dbname or dbname)
        if key in self.verified:
            await self._verify_locked(client, db, dbname, key)
            return
        lock = self.locks.get(key)
        if lock is None:
            lock = self.locks[key] = trio.Lock()
        async with lock:  # only while nothing is known about it yet
            await self._verify_locked(client, db, dbname, key)

    async def _verify_locked(self, client: Client, db: DatabaseConfig, dbname: str, key: VerifiedKey) -> None:
        user = client.user
        known = self.verified.get(key)
        if known is TRUST:
            return
        may_ask = client.conn.is_local or client.conn.tls
        if isinstance(known, str):
            if not may_ask:
                raise self._not_local(user)
            pw = await self._ask_cleartext(client)
            if hmac.compare_digest(pw.encode(), known.encode()):
                return
            # maybe the password changed upstream: try it there
            if await self.pooler.verify_upstream(client, db, dbname, pw):
                self.verified[key] = pw
                return
            raise password_failed(user)
        asked: list[str] = []
        refused_ask = False

        async def ask() -> str | None:
            nonlocal refused_ask
            if not may_ask:
                refused_ask = True
                return None
            pw = await self._ask_cleartext(client)
            asked.append(pw)
            return pw

        if not await self.pooler.verify_upstream(client, db, dbname, None, ask):
            if refused_ask:
                raise self._not_local(user)
            raise password_failed(user)
        self.verified[key] = asked[-1] if asked else TRUST

    def _not_local(self, user: str) -> PoolerError:
        return PoolerError(
            f'password authentication for user "{user}" needs a local connection, TLS or an auth_file',
            sqlstate.INVALID_AUTHORIZATION_SPECIFICATION,
            detail="Without an auth_file the pooler asks for passwords in clear, which it does only over "
                   "loopback, a Unix socket or TLS.")

    async def _auth_query(self, client: Client, db: DatabaseConfig, auth_user: str) -> str | None:
        """pgbouncer's auth_query: fetch the user's secret upstream, as auth_user.

        One connection per database does it (kept open, one query at a time).  Returns the
        secret, or None when the role does not exist or has no password.  Errors: PoolerError
        when the upstream cannot be reached or the query fails.
        """
        s = self.pooler.config.settings
        dbname = db.dbname or client.database
        key = (tuple(db.host), db.port, dbname, auth_user)
        lock = self.locks.setdefault(key, trio.Lock())
        async with lock:
            server = self.auth_servers.get(key)
            if server is None or server.state is ServerState.CLOSED:
                adb = msgspec.structs.replace(db, user=auth_user, dbname=dbname,
                                              password=db.password if db.user == auth_user else None)
                pool = Pool(self.pooler, dbname, auth_user, adb, register=False)
                server = Server(pool, self.pooler)
                await server.login(self.server_credentials(pool))
                await self.pooler.nursery.start(server.run)
                pool.mark_used(server)  # never handed to a client
                self.auth_servers[key] = server
            sql = s.auth_query.replace("$1", quote_literal(client.user))
            try:
                err, rows = await server.run_internal_rows(sql)
            except (OSError, ConnectionLost) as exc:
                raise PoolerError(f"auth_query failed: {exc}", sqlstate.CONNECTION_FAILURE) from None
        if err is not None:
            raise PoolerError(f"auth_query failed: {err.message}", sqlstate.INVALID_AUTHORIZATION_SPECIFICATION)
        if not rows or len(rows[0]) < 2 or rows[0][1] is None:
            return None
        secret = rows[0][1].decode("utf-8", "surrogateescape")
        self.queried[client.user] = secret  # server connections for this user log in with it
        return secret
