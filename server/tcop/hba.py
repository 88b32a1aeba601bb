"""Client authentication rules from ``DIR/pg_hba.conf`` (PostgreSQL's hba.c, the subset
pgbundle needs): ``local``/``host``/``hostssl``/``hostnossl`` lines, database and user
lists (``all``, ``sameuser``, names, comma lists), addresses as CIDR or address + mask,
``all``, ``samehost``; methods ``trust``, ``reject``, ``md5``, ``scram-sha-256``,
``password``.  The first matching line decides.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pgbundle.server.errors import PgError

if TYPE_CHECKING:
    from pgbundle.server.utils.guc import GucSettings

METHODS = ("trust", "reject", "md5", "scram-sha-256", "password", "peer", "ident")


@dataclass(frozen=True)
class HbaLine:
    conntype: str
    databases: tuple[str, ...]
    users: tuple[str, ...]
    network: str | ipaddress.IPv4Network | ipaddress.IPv6Network | None  # all/samehost/samenet or a network
    method: str
    line: int


def parse(path: str) -> list[HbaLine]:
    out: list[HbaLine] = []
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return out
    for n, raw in enumerate(lines, 1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        tok = text.split()
        conntype = tok[0]
        if conntype not in ("local", "host", "hostssl", "hostnossl", "hostgssenc", "hostnogssenc"):
            raise PgError("F0000", f'invalid connection type "{conntype}" in file "{path}" line {n}')
        if len(tok) < 4:
            raise PgError("F0000", f'end-of-line before authentication method in file "{path}" line {n}')
        dbs = tuple(tok[1].split(","))
        users = tuple(tok[2].split(","))
        rest = tok[3:]
        network: str | ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
        if conntype != "local":
            addr = rest.pop(0)
            if addr in ("all", "samehost", "samenet"):
                network = addr
            else:
                try:
                    if "/" in addr:
                        network = ipaddress.ip_network(addr, strict=False)
                    else:
                        mask = rest.pop(0)
                        network = ipaddress.ip_network(f"{addr}/{mask}", strict=False)
                except (ValueError, IndexError):
                    raise PgError("F0000", f'invalid IP address "{addr}" in file "{path}" line {n}') from None
        if not rest:
            raise PgError("F0000", f'end-of-line before authentication method in file "{path}" line {n}')
        method = rest[0]
        if method not in METHODS:
            raise PgError("F0000", f'invalid authentication method "{method}" in file "{path}" line {n}')
        out.append(HbaLine(conntype, dbs, users, network, method, n))
    return out


def match(rules: list[HbaLine], *, local: bool, address: str | None, database: str, user: str) -> HbaLine | None:
    ip = None
    if address and not local:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            ip = None
    for r in rules:
        if local != (r.conntype == "local"):
            continue
        if r.conntype in ("hostssl", "hostgssenc"):
            continue
        if not local:
            if r.network == "all":
                pass
            elif r.network == "samehost":
                if ip is None or not ip.is_loopback:
                    continue
            elif isinstance(r.network, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
                if ip is None or ip.version != r.network.version or ip not in r.network:
                    continue
            else:
                continue
        if not any(d == "all" or d == database or (d == "sameuser" and database == user)
                   or (d == "replication" and False) for d in r.databases):
            continue
        if not any(u == "all" or u == user or u.lstrip("+") == user for u in r.users):
            continue
        return r
    return None


def hba_path(datadir: str, settings: GucSettings) -> str:
    p = str(settings.value("hba_file") or "")
    return p or os.path.join(datadir, "pg_hba.conf")
