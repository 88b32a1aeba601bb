"""Client authentication, and the credentials server connections log in with.

Three regimes:

* **auth_type** (pgbouncer's rules, default md5 with an auth_file): users and their
  secrets come from userlist.txt, or from the upstream through ``auth_query``.
  ``trust`` needs the user to be listed; ``any`` admits anyone; ``plain`` asks for the
  password in clear; ``md5`` uses SCRAM when the stored secret is SCRAM;
  ``scram-sha-256`` needs a plain or SCRAM secret (and over TLS also offers
  SCRAM-SHA-256-PLUS); ``cert`` takes the user from the verified client certificate's
  CN; ``peer`` from the OS user at the other end of a Unix socket.  A client that logged
  in with SCRAM against a stored SCRAM secret leaves its ClientKey behind, so server
  connections for that user can log in with SCRAM without the password (pgbouncer's
  pass-through).
* **hba** (``auth_type = hba``): the first line of ``auth_hba_file`` that matches the
  connection (:mod:`.hba`) names the method for this login -- one of the above,
  ``password`` (= plain) or ``reject``; no matching line is a rejection, as in
  PostgreSQL.  ``map=`` on cert and peer lines maps names through ``auth_ident_file``.
* **upstream-verified** (no auth_file, no auth_type: the zero-config default):
  a client is admitted when the upstream admits the same user to the same database.
  A trusting upstream needs nothing; when it asks for a password, the pooler asks the
  client for it in clear -- only over loopback, a Unix socket or TLS -- and tries it
  upstream.  What worked is remembered per (user, upstream, database) and checked
  locally for the next clients.

Nothing is told before authentication: a wrong password, an unknown user, an unusable
secret and (see :meth:`Authenticator.authenticate`) an unknown database all fail the same
way -- after a full exchange (:mod:`.exchange`'s mock authentication) -- with
``password authentication failed for user "..."`` (28P01); the log says the real
reason.  Other failures are :class:`PoolerError` 28000 worded as PostgreSQL words them.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec
import trio

from pgbundle.shared import sqlstate
from pgbundle.shared.auth.md5 import is_md5_secret
from pgbundle.shared.auth.scram import ScramSecret, is_scram_secret, parse_scram_secret
from pgbundle.shared.netio import ConnectionLost
from pgbundle.shared.quoting import quote_literal

from . import exchange, logs
from .config import ConfigError, load_auth_file
from .hba import (
    Rules,
    cert_name,
    cert_settings_problem,
    describe,
    identity_ok,
    load_rules,
    peer_user,
    rule_files,
    rule_for,
)
from .objects import Pool, PoolerError, ServerState
from .server import Server

if TYPE_CHECKING:
    from pgbundle.shared.auth.hba import HbaLine

    from .client import Client
    from .config import DatabaseConfig
    from .objects import PoolerHost

log = logging.getLogger("pgbundle.pooler")

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


def _refused(message: str) -> PoolerError:
    return PoolerError(message, sqlstate.INVALID_AUTHORIZATION_SPECIFICATION)


class Authenticator:
    """Authenticates clients for one pooler; holds the user secrets, hba rules and learned credentials."""

    def __init__(self, pooler: PoolerHost) -> None:
        self.pooler = pooler
        self.users: dict[str, str] = {}
        self.client_keys: dict[str, bytes] = {}  # user -> SCRAM ClientKey learned from a client login
        self.verified: dict[VerifiedKey, object | str] = {}  # upstream-verified: TRUST or the password
        # one upstream check per (user, upstream, database) / one auth_query per database at a time
        self.locks: dict[VerifiedKey | AuthQueryKey, trio.Lock] = {}
        self.queried: dict[str, str] = {}  # secrets fetched with auth_query
        self.auth_servers: dict[AuthQueryKey, Server] = {}  # auth_query connections
        self.rules: Rules | None = None  # auth_hba_file + auth_ident_file, when auth_type = hba
        self._rules_tried: tuple[str | None, str | None] | None = None
        self.salts = exchange.Salts()
        self.reload(initial=True)

    def reload(self, *, initial: bool = False) -> None:
        """Re-read the auth_file, and with auth_type = hba the hba and ident files.

        Errors: ConfigError.  A bad hba or ident file, or auth_type = cert without verified
        client certificates, is one only ``initial``ly (at startup); on RELOAD it is logged
        (and the hba rules in use stay).
        """
        s = self.pooler.config.settings
        self.users = load_auth_file(s.auth_file) if s.auth_file else {}
        if s.auth_type == "hba":
            self._load_rules(initial)
        problem = cert_settings_problem(s)
        if problem is not None:
            if initial:
                raise ConfigError(problem)
            log.error("%s: every login will fail", problem)

    def _load_rules(self, initial: bool) -> None:
        s = self.pooler.config.settings
        self._rules_tried = rule_files(s)
        try:
            self.rules = load_rules(s)
        except ConfigError as exc:
            if initial:
                raise
            log.error("auth_hba_file not loaded, the rules in use stay: %s", exc)

    def _hba_rules(self) -> Rules:
        """The rules, loaded once more when SET changed the files (or auth_type) since."""
        if self._rules_tried != rule_files(self.pooler.config.settings):
            self._load_rules(False)
        return self.rules or Rules()

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

        ``db`` is None for the admin console and for a database the pooler does not know:
        the client authenticates all the same (no auth_query, nothing to look it up in), and
        the caller reports the unknown database only to a client that got through.  Does
        not send AuthenticationOk.  Errors: PoolerError (28P01, 28000, 08P01 for a malformed
        reply).
        """
        if self.upstream_verified:
            await self._upstream_verified(client, db)
            return
        s = self.pooler.config.settings
        method, rule = self._method(client)
        if method == "any":
            return
        user = client.user
        secret = self.users.get(user)
        auth_user = (db.auth_user or s.auth_user) if db is not None else None
        if secret is None and db is not None and auth_user:
            secret = await self._auth_query(client, db, auth_user)
        known = secret is not None or s.auth_file is None
        if method == "trust":
            if not known:
                raise self._failed(client, f"no such user: {user}", _refused(f'no such user: "{user}"'))
        elif method == "cert":
            self._cert(client, rule, known)
        elif method == "peer":
            self._peer(client, rule, known)
        else:
            if rule is not None and "clientcert" in rule.options:
                self._clientcert(client, rule)
            await self._password(client, method, secret)

    def _method(self, client: Client) -> tuple[str, HbaLine | None]:
        """The auth_type for this login, and the hba line it came from (auth_type = hba)."""
        auth_type = self.pooler.config.settings.auth_type or "md5"
        if auth_type != "hba":
            return auth_type, None
        rule = rule_for(self._hba_rules(), client.conn, client.database, client.user)
        where = describe(client.conn, client.database, client.user)
        if rule is None:
            raise self._failed(client, "no auth_hba_file line matches", _refused(f"no pg_hba.conf entry for {where}"))
        if rule.method == "reject":
            raise self._failed(client, f"auth_hba_file line {rule.line} rejects it",
                               _refused(f"pg_hba.conf rejects connection for {where}"))
        return ("plain" if rule.method == "password" else rule.method), rule

    def _failed(self, client: Client, reason: str, err: PoolerError) -> PoolerError:
        """Log why a login failed (the client is told only ``err``)."""
        logs.log_client(self.pooler, client, f"login failed: {reason}", level=logging.WARNING)
        return err

    async def _password(self, client: Client, method: str, secret: str | None) -> None:
        """plain, md5 or scram-sha-256 against ``secret``; a mock exchange when it is unusable."""
        user = client.user
        scram = method == "scram-sha-256" or (method == "md5" and secret is not None and is_scram_secret(secret))
        if secret is None:
            problem: str | None = f"no such user: {user}"
        elif not secret:
            problem = f'user "{user}" has an empty password'
        elif scram and is_md5_secret(secret):
            problem = f'user "{user}" has an md5 secret, which SCRAM authentication cannot use'
        else:
            problem = None
        usable = None if problem is not None else secret
        why = "password does not match"
        if scram:
            verifier = self.salts.scram_secret(user, usable, self.pooler.config.settings.scram_iterations)
            key, failure = await exchange.scram(client, verifier, usable is not None)
            if key is not None:
                if usable is not None and is_scram_secret(usable):
                    self.client_keys[user] = key
                return
            why = failure or why
        elif await (exchange.cleartext(client, usable) if method == "plain" else exchange.md5(client, usable)):
            return
        raise self._failed(client, problem or f"{why} for user {user}", password_failed(user))

    def _cert(self, client: Client, rule: HbaLine | None, known: bool) -> None:
        user = client.user
        name = cert_name(client.conn, rule)
        err = _refused(f'certificate authentication failed for user "{user}"')
        if not client.conn.tls:
            raise self._failed(client, "certificate authentication needs a TLS connection", err)
        if name is None:
            raise self._failed(client, "the client sent no verified certificate", err)
        mapname = rule.map if rule is not None else None
        if not identity_ok(self.rules, mapname, name, user):
            how = f'map "{mapname}" has no line for it' if mapname else "they differ"
            raise self._failed(client, f'certificate name "{name}" may not log in as "{user}": {how}', err)
        if not known:
            raise self._failed(client, f"no such user: {user}", err)

    def _clientcert(self, client: Client, rule: HbaLine) -> None:
        """hostssl ... clientcert=verify-ca|verify-full: a verified certificate too (and for
        verify-full one whose CN is the user)."""
        name = cert_name(client.conn, rule)
        if name is None:
            raise self._failed(client, f"auth_hba_file line {rule.line} needs a client certificate",
                               _refused("connection requires a valid client certificate"))
        if rule.options["clientcert"] == "verify-full" and name != client.user:
            raise self._failed(client, f'certificate name "{name}" is not the user (clientcert=verify-full)',
                               _refused(f'certificate authentication failed for user "{client.user}"'))

    def _peer(self, client: Client, rule: HbaLine | None, known: bool) -> None:
        user = client.user
        err = _refused(f'Peer authentication failed for user "{user}"')
        if not client.conn.is_unix:
            raise self._failed(client, "peer authentication is only available on Unix sockets", err)
        os_user = peer_user(client.conn)
        if os_user is None:
            raise self._failed(client, "could not look up the OS user of the peer", err)
        mapname = rule.map if rule is not None else None
        if not identity_ok(self.rules, mapname, os_user, user):
            how = f'map "{mapname}" has no line for it' if mapname else "they differ"
            raise self._failed(client, f"provided user name ({user}) and authenticated user name ({os_user}) "
                                       f"do not match: {how}", err)
        if not known:
            raise self._failed(client, f"no such user: {user}", err)

    # ---------------------------------------------------------------- upstream-verified

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
            pw = await exchange.ask_cleartext(client)
            if hmac.compare_digest(pw.encode(), known.encode()):
                return
            # maybe the password changed upstream: try it there
            if await self.pooler.verify_upstream(client, db, dbname, pw):
                self.verified[key] = pw
                return
            raise password_failed(user)  # verify_upstream logged the upstream's reason
        asked: list[str] = []
        refused_ask = False

        async def ask() -> str | None:
            nonlocal refused_ask
            if not may_ask:
                refused_ask = True
                return None
            pw = await exchange.ask_cleartext(client)
            asked.append(pw)
            return pw

        if not await self.pooler.verify_upstream(client, db, dbname, None, ask):
            if refused_ask:
                raise self._not_local(user)
            raise password_failed(user)  # verify_upstream logged the upstream's reason
        self.verified[key] = asked[-1] if asked else TRUST

    def _not_local(self, user: str) -> PoolerError:
        return PoolerError(
            f'password authentication for user "{user}" needs a local connection, TLS or an auth_file',
            sqlstate.INVALID_AUTHORIZATION_SPECIFICATION,
            detail="Without an auth_file the pooler asks for passwords in clear, which it does only over "
                   "loopback, a Unix socket or TLS.")

    # ---------------------------------------------------------------- auth_query

    async def _auth_query(self, client: Client, db: DatabaseConfig, auth_user: str) -> str | None:
        """pgbouncer's auth_query: fetch the user's secret upstream, as auth_user.

        The query is the database's ``auth_query`` (or the global one); it runs in the entry named
        by ``auth_dbname`` (the database's, or the global one) when one is set, else in the
        client's.  One connection per database does it (kept open, one query at a time).  Returns the
        secret, or None when the role does not exist or has no password.  Errors: PoolerError
        when the upstream cannot be reached or the query fails.
        """
        s = self.pooler.config.settings
        client_db = db
        dbname = db.dbname or client.database
        auth_dbname = db.auth_dbname or s.auth_dbname
        if auth_dbname:  # the query runs in that [databases] entry instead (pgbouncer >= 1.20)
            adb_entry = self.pooler.find_database(auth_dbname)
            if adb_entry is None:
                raise PoolerError(f'auth_dbname "{auth_dbname}" is not a configured database',
                                  sqlstate.INVALID_AUTHORIZATION_SPECIFICATION)
            db, dbname = adb_entry, adb_entry.dbname or auth_dbname
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
            sql = (client_db.auth_query or s.auth_query).replace("$1", quote_literal(client.user))
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
