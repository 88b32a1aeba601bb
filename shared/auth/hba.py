"""Host-based authentication rules: PostgreSQL's ``pg_hba.conf`` and ``pg_ident.conf``
formats (hba.c), shared by pgbundle server (its ``hba_file``) and the pooler
(pgbouncer's ``auth_hba_file`` / ``auth_ident_file``).

Lines: ``local``, ``host``, ``hostssl``, ``hostnossl`` (``hostgssenc`` never matches:
nothing here speaks GSSAPI encryption, ``hostnogssenc`` matches like ``host``); the
database and user fields take comma lists, double-quoted names (a quoted keyword is
a plain name), ``all``, ``sameuser``, ``samerole``/``samegroup`` (matched by the
caller's ``roles`` callback), ``replication``, ``+role`` and ``@file`` (names read from
a file next to the hba file); addresses as CIDR, address + mask, ``all``, ``samehost``,
``samenet``; a backslash at the end of a line continues it; options after the method
(``map=``, ``clientcert=``, ``clientname=``).  The first matching line decides.

Which methods a program supports is its own business: :func:`parse` accepts every
method name PostgreSQL knows and the caller rejects what it cannot do.

Errors: :class:`HbaError` (a message naming file and line) for a malformed file.
A missing file is an empty rule list from :func:`parse` (the caller decides whether
that is fatal).
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

CONN_TYPES = ("local", "host", "hostssl", "hostnossl", "hostgssenc", "hostnogssenc")
METHODS = ("trust", "reject", "md5", "password", "scram-sha-256", "cert", "peer", "ident",
           "pam", "ldap", "gss", "sspi", "radius", "bsd")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAP_METHODS = ("ident", "peer", "gss", "sspi", "cert")


class HbaError(ValueError):
    """A malformed hba or ident file (the message names the file and line)."""


@dataclass(frozen=True)
class Token:
    """One field item; ``quoted`` names never act as keywords."""

    text: str
    quoted: bool = False

    def is_kw(self, word: str) -> bool:
        return not self.quoted and self.text == word


@dataclass(frozen=True)
class HbaLine:
    conntype: str
    databases: tuple[Token, ...]
    users: tuple[Token, ...]
    network: str | Network | None  # "all"/"samehost"/"samenet", a network, None for local
    method: str
    line: int
    options: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    raw: str = ""

    @property
    def map(self) -> str | None:
        return self.options.get("map")


@dataclass(frozen=True)
class ConnInfo:
    """What hba matching needs to know about a connection."""

    local: bool  # a Unix socket
    address: str | None = None  # the peer's IP address for TCP
    tls: bool = False


def _read_lines(path: str) -> list[tuple[int, str]]:
    """(line number, text) of each logical line, comments dropped, continuations joined."""
    with open(path, encoding="utf-8") as f:
        physical = f.read().splitlines()
    out: list[tuple[int, str]] = []
    buf = ""
    start = 0
    for n, raw in enumerate(physical, 1):
        if not buf:
            start = n
        text = _strip_comment(raw)
        if text.endswith("\\"):
            buf += text[:-1] + " "
            continue
        buf += text
        if buf.strip():
            out.append((start, buf))
        buf = ""
    if buf.strip():
        out.append((start, buf))
    return out


def _file_lines(path: str) -> list[tuple[int, str]]:
    """:func:`_read_lines` of a top-level file: ``[]`` when it does not exist, HbaError when it
    cannot be read."""
    try:
        return _read_lines(path)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise HbaError(f'could not open file "{path}": {exc.strerror}') from None


def _strip_comment(text: str) -> str:
    in_quote = False
    for i, ch in enumerate(text):
        if ch == '"':
            in_quote = not in_quote
        elif ch == "#" and not in_quote:
            return text[:i]
    return text


def _fields(text: str, where: str) -> list[list[Token]]:
    """Split a line into whitespace-separated fields, each a comma list of tokens."""
    fields: list[list[Token]] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        items: list[Token] = []
        while True:
            quoted = False
            word = ""
            while i < n and not text[i].isspace() and text[i] != ",":
                if text[i] == '"':
                    quoted = True
                    end = text.find('"', i + 1)
                    if end < 0:
                        raise HbaError(f"unterminated quoted string {where}")
                    word += text[i + 1:end]
                    i = end + 1
                else:
                    word += text[i]
                    i += 1
            items.append(Token(word, quoted))
            if i < n and text[i] == ",":
                i += 1
                continue
            break
        fields.append(items)
    return fields


def _expand_files(tokens: list[Token], base: str, where: str, depth: int = 0) -> tuple[Token, ...]:
    out: list[Token] = []
    for t in tokens:
        if t.quoted or not t.text.startswith("@"):
            out.append(t)
            continue
        name = t.text[1:]
        path = name if os.path.isabs(name) else os.path.join(base, name)
        if depth > 10:
            raise HbaError(f'could not open file "{path}": too many levels of inclusion {where}')
        try:
            lines = _read_lines(path)
        except OSError as exc:
            raise HbaError(f'could not open file "{path}": {exc.strerror} {where}') from None
        for _, text in lines:
            for items in _fields(text, where):
                out.extend(_expand_files(items, os.path.dirname(path), where, depth + 1))
    return tuple(out)


def _network(tokens: list[Token], rest: list[list[Token]], where: str) -> str | Network:
    addr = tokens[0].text
    if len(tokens) != 1:
        raise HbaError(f"multiple values specified for host address {where}")
    if not tokens[0].quoted and addr in ("all", "samehost", "samenet"):
        return addr
    try:
        if "/" in addr:
            return ipaddress.ip_network(addr, strict=False)
        if rest and rest[0] and _looks_like_ip(rest[0][0].text):
            mask = rest.pop(0)[0].text
            return ipaddress.ip_network(f"{addr}/{mask}", strict=False)
        ip = ipaddress.ip_address(addr)
        return ipaddress.ip_network(ip)
    except ValueError:
        raise HbaError(f'invalid IP address "{addr}" {where}') from None


def _looks_like_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse(path: str) -> list[HbaLine]:
    """The rules of the hba file at ``path`` (``[]`` when it does not exist)."""
    lines = _file_lines(path)
    base = os.path.dirname(path)
    out: list[HbaLine] = []
    for n, text in lines:
        where = f'in file "{path}" line {n}'
        fl = _fields(text, where)
        conntype = fl[0][0].text
        if conntype not in CONN_TYPES:
            raise HbaError(f'invalid connection type "{conntype}" {where}')
        if len(fl) < 2:
            raise HbaError(f"end-of-line before database specification {where}")
        if len(fl) < 3:
            raise HbaError(f"end-of-line before role specification {where}")
        dbs = _expand_files(fl[1], base, where)
        users = _expand_files(fl[2], base, where)
        rest = fl[3:]
        network: str | Network | None = None
        if conntype != "local":
            if not rest:
                raise HbaError(f"end-of-line before IP address specification {where}")
            network = _network(rest.pop(0), rest, where)
        if not rest:
            raise HbaError(f"end-of-line before authentication method {where}")
        method = rest.pop(0)[0].text
        if method not in METHODS:
            raise HbaError(f'invalid authentication method "{method}" {where}')
        if method == "peer" and conntype != "local":
            raise HbaError(f'peer authentication is only supported on local sockets {where}')
        if method == "cert" and conntype not in ("hostssl",):
            raise HbaError(f"cert authentication is only supported on hostssl connections {where}")
        options: dict[str, str] = {}
        for item in rest:
            for tok in item:
                key, eq, value = tok.text.partition("=")
                if not eq:
                    raise HbaError(f'authentication option not in name=value format: {tok.text} {where}')
                options[key] = value
        cc = options.get("clientcert")
        if cc is not None and cc not in ("verify-ca", "verify-full"):
            raise HbaError(f'invalid value for clientcert: "{cc}" {where}')
        if cc is not None and conntype != "hostssl":
            raise HbaError(f"clientcert can only be configured for \"hostssl\" rows {where}")
        if cc is not None and method == "cert" and cc != "verify-full":
            raise HbaError(f'clientcert can only be set to "verify-full" when using "cert" authentication {where}')
        cn = options.get("clientname")
        if cn is not None and conntype != "hostssl":
            raise HbaError(f"clientname can only be configured for \"hostssl\" rows {where}")
        if cn is not None and cn not in ("CN", "DN"):
            raise HbaError(f'invalid value for clientname: "{cn}" {where}')
        if "map" in options and method not in _MAP_METHODS:
            raise HbaError(f'authentication option "map" is only valid for authentication methods ident, peer, '
                           f"gssapi, sspi, and cert {where}")
        out.append(HbaLine(conntype, dbs, users, network, method, n, options, text.strip()))
    return out


def _local_networks() -> list[Network]:
    """The networks of this host's addresses (for ``samenet``): loopback plus what the
    host name resolves to, with a /24 (IPv4) or /64 (IPv6) around each."""
    nets: list[Network] = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            ip = ipaddress.ip_address(info[4][0])
            nets.append(ipaddress.ip_network(f"{ip}/{24 if ip.version == 4 else 64}", strict=False))
    except (OSError, ValueError):
        pass
    return nets


def _address_ok(rule: HbaLine, ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
    net = rule.network
    if net == "all":
        return True
    if ip is None:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if net == "samehost":
        return ip.is_loopback or any(ip in n and n.prefixlen == n.max_prefixlen
                                     for n in _local_networks() if n.version == ip.version)
    if net == "samenet":
        return any(ip in n for n in _local_networks() if n.version == ip.version)
    if isinstance(net, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return ip.version == net.version and ip in net
    return False


def match(rules: list[HbaLine], conn: ConnInfo, database: str, user: str, *,
          replication: bool = False, roles: Callable[[str, str], bool] | None = None) -> HbaLine | None:
    """The first rule that applies to ``user`` connecting to ``database`` over ``conn``.

    ``roles(user, role)`` answers ``+role`` and ``samerole`` (membership); without it a
    ``+role`` entry matches only the role itself.
    """
    ip = None
    if conn.address and not conn.local:
        try:
            ip = ipaddress.ip_address(conn.address)
        except ValueError:
            ip = None
    member = roles or (lambda u, r: u == r)
    for r in rules:
        ct = r.conntype
        if conn.local != (ct == "local"):
            continue
        if ct == "hostssl" and not conn.tls:
            continue
        if ct == "hostnossl" and conn.tls:
            continue
        if ct == "hostgssenc":
            continue
        if not conn.local and not _address_ok(r, ip):
            continue
        if not _database_ok(r.databases, database, user, replication, member):
            continue
        if not any(u.is_kw("all") or (u.text.startswith("+") and not u.quoted and member(user, u.text[1:]))
                   or u.text == user for u in r.users):
            continue
        return r
    return None


def _database_ok(dbs: tuple[Token, ...], database: str, user: str, replication: bool,
                 member: Callable[[str, str], bool]) -> bool:
    for d in dbs:
        if replication:
            if d.is_kw("replication"):
                return True
            continue
        if d.is_kw("all") or (d.is_kw("sameuser") and database == user):
            return True
        if (d.is_kw("samerole") or d.is_kw("samegroup")) and member(user, database):
            return True
        if d.is_kw("replication"):
            continue
        if d.text == database:
            return True
    return False


# ---------------------------------------------------------------------- pg_ident.conf

@dataclass(frozen=True)
class IdentLine:
    map: str
    system_user: str  # a name, or a regular expression when it starts with "/"
    db_user: str
    line: int


def parse_ident(path: str) -> list[IdentLine]:
    """The user-name maps of an ident file (``[]`` when it does not exist)."""
    lines = _file_lines(path)
    out: list[IdentLine] = []
    for n, text in lines:
        where = f'in file "{path}" line {n}'
        fl = _fields(text, where)
        if len(fl) != 3 or any(len(f) != 1 for f in fl):
            raise HbaError(f"missing entry at end of line {where}" if len(fl) < 3
                           else f"invalid ident map line {where}")
        system = fl[1][0].text
        if system.startswith("/"):
            try:
                re.compile(system[1:])
            except re.error as exc:
                raise HbaError(f'invalid regular expression "{system[1:]}": {exc} {where}') from None
        out.append(IdentLine(fl[0][0].text, system, fl[2][0].text, n))
    return out


def ident_match(maps: list[IdentLine], name: str, system_user: str, db_user: str) -> bool:
    """May ``system_user`` (an OS user, a certificate name) log in as ``db_user`` under map ``name``?"""
    for line in maps:
        if line.map != name:
            continue
        target = line.db_user
        if line.system_user.startswith("/"):
            mo = re.search(line.system_user[1:], system_user)
            if mo is None:
                continue
            if "\\1" in target:
                target = target.replace("\\1", mo.group(1) if mo.groups() else "")
        elif line.system_user != system_user:
            continue
        if target == "all" or target == db_user:
            return True
    return False
