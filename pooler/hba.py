"""Who may log in how, and the identities that need no password (pgbouncer's hba.c and the
peer / cert parts of client.c).

* **Rules** (``auth_type = hba``): ``auth_hba_file`` in pg_hba.conf format and
  ``auth_ident_file`` in pg_ident.conf format, read by the one parser
  (:mod:`pgbundle.shared.auth.hba`).  :func:`load_rules` accepts what the pooler can
  do: ``local``, ``host``, ``hostssl``, ``hostnossl`` lines with the methods
  ``trust``, ``reject``, ``md5``, ``scram-sha-256``, ``password``, ``cert`` and
  ``peer``; ``map=`` on ``cert`` and ``peer`` lines; ``clientcert=`` and ``clientname=``
  on ``hostssl`` lines.  Anything else (``pam``, ``ldap``, ``ident``, ``gss``..., ``+role`` and
  ``samerole``, which need role membership the pooler cannot see) is a
  :class:`~.config.ConfigError` naming file and line.  :func:`rule_for` gives the first
  line that applies to a connection, or None.
* **Peer** (Unix sockets only): :func:`peer_uid` is the connecting process's uid
  (SO_PEERCRED), :func:`peer_user` its OS user name.
* **Certificates**: :func:`cert_name` is the CommonName (or with ``clientname=DN`` the
  subject DN) of a client certificate that the TLS handshake verified against
  ``client_tls_ca_file``.
* :func:`identity_ok`: may an OS user / certificate name log in as a database user --
  the same name, or a line of the ``map=`` map in the ident file.

Everything here is synchronous and answers from what the kernel or the TLS layer already
knows; the exchanges with the client live in :mod:`.auth`.
"""

from __future__ import annotations

import logging
import os
import pwd
import socket
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pgbundle.shared.auth import hba as parser
from pgbundle.shared.tls import TlsConn

from .config import ConfigError

if TYPE_CHECKING:
    from pgbundle.shared.netio import Conn

    from .config import Settings

log = logging.getLogger("pgbundle.pooler")

#: hba methods the pooler does (PostgreSQL's names; ``password`` is pgbouncer's ``plain``).
METHODS = ("trust", "reject", "md5", "scram-sha-256", "password", "cert", "peer")
_VERIFY_MODES = ("verify-ca", "verify-full")  # client_tls_sslmode values that verify client certificates
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


@dataclass(frozen=True)
class Rules:
    """The parsed auth_hba_file and auth_ident_file, and the settings they came from."""

    lines: list[parser.HbaLine] = field(default_factory=list)
    idents: list[parser.IdentLine] = field(default_factory=list)
    files: tuple[str | None, str | None] = (None, None)


def rule_files(settings: Settings) -> tuple[str | None, str | None]:
    """The (auth_hba_file, auth_ident_file) pair rules are loaded from."""
    return settings.auth_hba_file, settings.auth_ident_file


def load_rules(settings: Settings) -> Rules:
    """Read and check ``auth_hba_file`` and ``auth_ident_file``.

    Errors: ConfigError for a missing setting or file, a malformed line or a method /
    feature the pooler does not do (the message names the file and the line).
    """
    hba_path, ident_path = rule_files(settings)
    if not hba_path:
        raise ConfigError("auth_type = hba needs auth_hba_file")
    if not os.path.exists(hba_path):
        raise ConfigError(f'could not open auth_hba_file "{hba_path}": no such file')
    if ident_path and not os.path.exists(ident_path):
        raise ConfigError(f'could not open auth_ident_file "{ident_path}": no such file')
    try:
        lines = parser.parse(hba_path)
        idents = parser.parse_ident(ident_path) if ident_path else []
    except parser.HbaError as exc:
        raise ConfigError(str(exc)) from None
    for line in lines:
        _check_line(line, hba_path)
    if settings.client_tls_sslmode not in _VERIFY_MODES and any(
            line.method == "cert" or "clientcert" in line.options for line in lines):
        log.warning('%s: lines with cert or clientcert= never match a client: client_tls_sslmode = %s verifies '
                    "no client certificates (verify-ca or verify-full does)", hba_path, settings.client_tls_sslmode)
    return Rules(lines, idents, (hba_path, ident_path))


def cert_settings_problem(settings: Settings) -> str | None:
    """Why ``auth_type = cert`` cannot work with these settings (None: it can)."""
    if settings.auth_type == "cert" and settings.client_tls_sslmode not in _VERIFY_MODES:
        return (f"auth_type = cert needs client_tls_sslmode = verify-ca or verify-full (client certificates "
                f"verified against client_tls_ca_file), not {settings.client_tls_sslmode}")
    return None


def _check_line(line: parser.HbaLine, path: str) -> None:
    where = f'in file "{path}" line {line.line}'
    if line.conntype not in ("local", "host", "hostssl", "hostnossl"):
        raise ConfigError(f'connection type "{line.conntype}" is not supported by the pooler {where}')
    if line.method not in METHODS:
        raise ConfigError(f'authentication method "{line.method}" is not supported by the pooler {where}')
    for tok in line.users:
        if tok.text.startswith("+") and not tok.quoted:
            raise ConfigError(f'role membership ("{tok.text}") is not supported by the pooler {where}')
    for tok in line.databases:
        if tok.is_kw("samerole") or tok.is_kw("samegroup"):
            raise ConfigError(f'"{tok.text}" (role membership) is not supported by the pooler {where}')
    unknown = set(line.options) - {"map", "clientcert", "clientname"}
    if unknown:
        raise ConfigError(f'authentication option "{sorted(unknown)[0]}" is not supported by the pooler {where}')


def conn_info(conn: Conn) -> parser.ConnInfo:
    return parser.ConnInfo(local=conn.is_unix, address=None if conn.is_unix else conn.peer[0], tls=conn.tls)


def rule_for(rules: Rules, conn: Conn, database: str, user: str) -> parser.HbaLine | None:
    """The first line of ``rules`` that applies to ``user`` connecting to ``database`` over ``conn``."""
    return parser.match(rules.lines, conn_info(conn), database, user)


def describe(conn: Conn, database: str, user: str) -> str:
    """PostgreSQL's ``host "...", user "...", database "...", no encryption`` (for hba errors)."""
    host = "[local]" if conn.is_unix else conn.peer[0]
    return f'host "{host}", user "{user}", database "{database}", {"SSL" if conn.tls else "no"} encryption'


# ---------------------------------------------------------------------- identities


def peer_uid(conn: Conn) -> int | None:
    """The uid of the process at the other end of a Unix socket (None over TCP)."""
    if not conn.is_unix:
        return None
    try:
        _pid, uid, _gid = _UCRED.unpack(conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    except OSError:
        return None
    return int(uid)


def peer_user(conn: Conn) -> str | None:
    """The OS user name of the process at the other end of a Unix socket (None over TCP, or
    when the uid has no name)."""
    uid = peer_uid(conn)
    if uid is None:
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def is_pooler_os_user(conn: Conn) -> bool:
    """Is the peer of this Unix socket the OS user the pooler runs as?"""
    uid = peer_uid(conn)
    return uid is not None and uid == os.getuid()


def cert_name(conn: Conn, rule: parser.HbaLine | None = None) -> str | None:
    """The CommonName of the client certificate the TLS handshake verified -- its subject DN
    when ``rule`` says ``clientname=DN`` (None: no TLS, or no verified certificate)."""
    if not isinstance(conn, TlsConn):
        return None
    if rule is not None and rule.options.get("clientname") == "DN":
        return conn.peer_dn()
    return conn.peer_cn()


def identity_ok(rules: Rules | None, map_name: str | None, system_user: str, db_user: str) -> bool:
    """May ``system_user`` (an OS user, a certificate CN) log in as ``db_user``?  Without a
    map only under its own name; with one, when the ident file's map allows it."""
    if map_name is None:
        return system_user == db_user
    return rules is not None and parser.ident_match(rules.idents, map_name, system_user, db_user)
