"""The autovacuum launcher and workers (PostgreSQL's autovacuum.c).

Launcher job: wake every ``autovacuum_naptime`` (1 min), read the shared table
statistics, and when some table of a database has more dead tuples than
``autovacuum_vacuum_threshold + autovacuum_vacuum_scale_factor × reltuples`` (50 + 0.2 ×
reltuples; reltuples estimated by n_live_tup here), ask the postmaster for a worker for
that database — the launcher cannot fork: it writes the request into shared memory and
signals the postmaster (SIGUSR1 + PMSignalReason.START_AUTOVAC_WORKER), which forks the worker
if fewer than ``autovacuum_max_workers`` run.

Worker job: connect to the database, pick the tables over threshold (with pg_class's
reltuples when VACUUM has set it), VACUUM each in its own transaction (the statistics
then show last_autovacuum / autovacuum_count), exit.

Signals: launcher — SIGTERM exits 0, SIGUSR1/SIGUSR2 wake it, SIGHUP reloads; worker —
SIGTERM cancels the vacuum and exits, SIGINT cancels the current table.  SIGQUIT exits
at once.  Crash meaning: both are attached to shared memory → crash reset.

Shared state (control block, AutovacuumLock): ``av_request_db``, ``av_request_pending``
(launcher → postmaster); ``av_launcher_pid``.
"""

from __future__ import annotations

import os
import signal
import time
from typing import TYPE_CHECKING

from pgbundle.server.access import api
from pgbundle.server.access.engine import BackendEngine
from pgbundle.server.access.vacuum import vacuum_rel
from pgbundle.server.catalog import defs as D
from pgbundle.server.postmaster.auxprocess import AuxProcess
from pgbundle.server.storage import pmsignal
from pgbundle.server.storage.pmsignal import PMSignalReason
from pgbundle.server.tcop import interrupts
from pgbundle.server.utils import elog, pgstat

if TYPE_CHECKING:
    from pgbundle.server.postmaster.launch import ChildContext
    from pgbundle.server.utils.guc import GucSettings


def needs_vacuum(settings: GucSettings, n_dead: int, reltuples: float) -> bool:
    thresh = int(settings.value("autovacuum_vacuum_threshold")) + \
        float(settings.value("autovacuum_vacuum_scale_factor")) * max(reltuples, 0)
    return n_dead > thresh


def launcher_main(ctx: ChildContext) -> int:
    aux = AuxProcess(ctx, "autovacuum launcher", "AutoVacuumMain", signals={signal.SIGUSR2: "wakeup"})
    env = aux.env
    ctl = env.ctl
    ctl.set("av_launcher_pid", os.getpid())
    region = pgstat.Region(env.shm)
    s = ctx.settings
    last_started: dict[int, float] = {}
    while True:
        if aux.take("shutdown"):
            aux.detach()
            return 0
        naptime = float(s.value("autovacuum_naptime"))
        now = time.time()
        wanted = set()
        for row in region.tables():
            dboid = row[0]
            if not dboid:
                continue
            live, dead = row[2 + 8], row[2 + 9]
            if needs_vacuum(s, dead, live):
                wanted.add(dboid)
        for dboid in sorted(wanted):
            if now - last_started.get(dboid, 0) < naptime:
                continue
            with env.locks.AutovacuumLock:
                if ctl.get("av_request_pending"):
                    break
                ctl.set("av_request_db", dboid)
                ctl.set("av_request_pending", 1)
                pmsignal.set_reason(ctl, PMSignalReason.START_AUTOVAC_WORKER)
            last_started[dboid] = now
            pmsignal.signal_postmaster(ctl)
            break
        aux.wait(min(naptime, 1.0) if wanted else naptime)


def worker_main(ctx: ChildContext, dboid: int) -> int:
    aux = AuxProcess(ctx, "autovacuum worker", None)
    interrupts.reset()
    signal.signal(signal.SIGTERM, interrupts.on_sigterm)
    env = aux.env
    s = ctx.settings
    region = pgstat.Region(env.shm)
    boot = BackendEngine(env, api.DatabaseInfo(0, "", 10), api.RoleInfo(D.BOOTSTRAP_SUPERUSER, "postgres",
                                                                          superuser=True),
                         backend_type="autovacuum worker")
    boot.start_statement()
    db = None
    for d in boot.databases():
        if d.oid == dboid:
            db = d
    boot.rollback()
    if db is None:
        aux.detach()
        return 0
    env.procs.set_identity(dboid=db.oid, datname=db.name)
    eng = BackendEngine(env, db, api.RoleInfo(D.BOOTSTRAP_SUPERUSER, "postgres", superuser=True),
                        backend_type="autovacuum worker")
    eng.start_statement()
    tables = [r for r in eng.relations("r")]
    eng.commit()
    min_dur = float(s.value("log_autovacuum_min_duration")) / 1000.0
    for rel in tables:
        row = region.table(db.oid if not rel.is_shared else 0, rel.oid)
        if row is None:
            continue
        live, dead = row[2 + 8], row[2 + 9]
        reltuples = rel.tuples if rel.tuples >= 0 else live
        if not needs_vacuum(s, dead, reltuples):
            continue
        t0 = time.time()
        try:
            eng.start_statement()
            env.procs.set_state("active", f"autovacuum: VACUUM {rel.namespace}.{rel.name}")
            res = vacuum_rel(eng, rel, autovacuum=True)
            eng.commit()
        except Exception as exc:
            eng.rollback()
            elog.log(f'automatic vacuum of table "{db.name}.{rel.namespace}.{rel.name}" failed: {exc}', "ERROR")
            continue
        if min_dur >= 0 and time.time() - t0 >= min_dur:
            elog.log(f'automatic vacuum of table "{db.name}.{rel.namespace}.{rel.name}": '
                     f"tuples: {res.tuples_removed} removed, {res.tuples_remaining} remain, "
                     f"{res.dead_not_yet_removable} are dead but not yet removable; "
                     f"elapsed: {time.time() - t0:.2f} s")
    eng.stats.flush(force=True)
    aux.detach()
    return 0
