"""pgbundle server's client authentication rules: ``hba_file`` (default ``DIR/pg_hba.conf``)
and the user name maps of ``ident_file`` (default ``DIR/pg_ident.conf``), read with the
shared parser (:mod:`pgbundle.shared.auth.hba`), its errors turned into PostgreSQL's
``F0000`` (config_file_error).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from pgbundle.server.errors import PgError
from pgbundle.shared.auth import hba as _hba
from pgbundle.shared.auth.hba import ConnInfo, HbaLine

if TYPE_CHECKING:
    from pgbundle.server.utils.guc import GucSettings

__all__ = ["ConnInfo", "HbaLine", "hba_path", "ident_match", "ident_path", "match", "parse"]


def parse(path: str) -> list[HbaLine]:
    """The rules in ``path`` (PgError F0000 when the file is malformed)."""
    try:
        return _hba.parse(path)
    except _hba.HbaError as exc:
        raise PgError("F0000", str(exc)) from None


def match(rules: list[HbaLine], *, local: bool, address: str | None, database: str, user: str,
          tls: bool = False) -> HbaLine | None:
    return _hba.match(rules, ConnInfo(local=local, address=address, tls=tls), database, user)


def hba_path(datadir: str, settings: GucSettings) -> str:
    p = str(settings.value("hba_file") or "")
    return p or os.path.join(datadir, "pg_hba.conf")


def ident_path(datadir: str, settings: GucSettings) -> str:
    p = str(settings.value("ident_file") or "")
    return p or os.path.join(datadir, "pg_ident.conf")


def ident_match(path: str, usermap: str, system_user: str, db_user: str) -> bool:
    """Does map ``usermap`` of the ident file at ``path`` let ``system_user`` be ``db_user``?"""
    try:
        maps = _hba.parse_ident(path)
    except _hba.HbaError as exc:
        raise PgError("F0000", str(exc)) from None
    return _hba.ident_match(maps, usermap, system_user, db_user)
