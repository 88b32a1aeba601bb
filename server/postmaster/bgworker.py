"""Background workers that users register from configuration (PostgreSQL's bgworker.c).

``background_workers = 'mypkg.jobs:main, other.mod:run'`` starts one process per entry
point, titled ``pgbundle: background worker <module:function>`` and shown in
pg_stat_activity as backend_type 'background worker' with the entry point as its
application_name.  The function is called as ``fn(worker)`` with a :class:`BgWorker`:

* ``worker.engine(dbname)`` — a BackendEngine connected to that database (the API of
  :mod:`pgbundle.server.access.api`), for reading and writing tables;
* ``worker.wait(seconds)`` — sleep on the process latch; returns False once shutdown
  was requested (SIGTERM), so loops read ``while worker.wait(1): ...``;
* ``worker.log(message)`` — a line in the server log.

Exit code 0 means done (not restarted); 1 means restart after
``bgworker_restart_time`` seconds; any other end (a signal, an exception that kills the
process) is a crash: shared memory is reset, as in PostgreSQL.

Signals: SIGTERM requests shutdown, SIGUSR1 wakes the latch, SIGQUIT exits at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pgbundle.server.access import api
from pgbundle.server.access.engine import BackendEngine
from pgbundle.server.catalog import defs as D
from pgbundle.server.postmaster.auxprocess import AuxProcess
from pgbundle.server.utils import elog

if TYPE_CHECKING:
    from pgbundle.server.postmaster.launch import ChildContext
    from pgbundle.server.utils.guc import GucSettings


def entries(settings: GucSettings) -> list[str]:
    raw = str(settings.value("background_workers") or "")
    return [e.strip() for e in raw.split(",") if e.strip()]


class BgWorker:
    def __init__(self, aux: AuxProcess, name: str) -> None:
        self.aux = aux
        self.name = name
        self._engines: list[Any] = []

    def engine(self, dbname: str = "postgres") -> Any:
        env = self.aux.env
        role = api.RoleInfo(D.BOOTSTRAP_SUPERUSER, "postgres", superuser=True)
        boot = BackendEngine(env, api.DatabaseInfo(0, "", 10), role, backend_type="background worker")
        boot.start_statement()
        db = boot.database_by_name(dbname)
        boot.rollback()
        if db is None:
            raise RuntimeError(f'database "{dbname}" does not exist')
        env.procs.set_identity(dboid=db.oid, datname=db.name, usename="postgres", userid=role.oid,
                               appname=self.name)
        eng = BackendEngine(env, db, role, backend_type="background worker")
        self._engines.append(eng)
        return eng

    def wait(self, seconds: float) -> bool:
        if "shutdown" in self.aux.flags:
            return False
        self.aux.wait(seconds)
        return "shutdown" not in self.aux.flags

    @property
    def shutdown_requested(self) -> bool:
        return "shutdown" in self.aux.flags

    def log(self, message: str, level: str = "LOG") -> None:
        elog.log(f"{self.name}: {message}", level)


def main(ctx: ChildContext, entry: str) -> int:
    name = entry
    aux = AuxProcess(ctx, "background worker", None)
    aux.env.procs.set_appname(name)
    mod_name, _, fn_name = entry.partition(":")
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name or "main")
    except (ImportError, AttributeError) as exc:
        elog.log(f'could not load background worker "{entry}": {exc}', "ERROR")
        aux.detach()
        return 0
    w = BgWorker(aux, name)
    try:
        rc = fn(w)
    finally:
        for eng in w._engines:
            try:
                eng.close()
            except Exception:
                pass
        aux.detach()
    return int(rc or 0)
