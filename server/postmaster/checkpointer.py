"""The checkpointer: handles all checkpoints (PostgreSQL's checkpointer.c).

Job: a checkpoint every ``checkpoint_timeout`` (5 min), or sooner when requested —
by the CHECKPOINT command, by backends that filled ``max_wal_size`` worth of WAL
segments since the last one (the checkpointer itself does not watch the WAL), by CREATE
DATABASE — and the shutdown checkpoint.  Timed checkpoints spread their writes over
``checkpoint_completion_target`` of the interval; requested ones go at full speed.
Idle periods (no WAL since the last checkpoint) skip timed checkpoints.  Logs each
checkpoint (``log_checkpoints``) and warns 'checkpoints are occurring too frequently'.
Counts pg_stat_checkpointer / pg_stat_bgwriter's checkpoint columns.

Signals: SIGUSR1 = a request is waiting (latch); SIGUSR2 = write the shutdown
checkpoint and exit 0; SIGTERM is ignored on purpose (the postmaster decides when the
shutdown checkpoint happens); SIGQUIT exits at once.

Crash meaning: losing the checkpointer is a crash (its fsync bookkeeping is lost), so
the postmaster resets shared memory.

Shared state (control block, guarded by CheckpointerLock): ``ckpt_requested`` (flags
set by requesters), ``ckpt_started`` / ``ckpt_done`` / ``ckpt_failed`` counters that
requesters wait on — a request is satisfied when ``ckpt_done`` passes the value
``ckpt_started`` had when it was made; ``ckpt_pid`` for signalling.  Statistics fields are
written only by this process.
"""

from __future__ import annotations

import os
import signal
import time
from typing import TYPE_CHECKING

from pgbundle.server.access import checkpoint as CK

# the requester's side (RequestCheckpoint) lives with CreateCheckPoint in access/checkpoint
# and is used from there by the engine (CHECKPOINT) and ipc (WAL volume); named here too
from pgbundle.server.access.checkpoint import (  # noqa: F401
    CKPT_CAUSE_TIME,
    CKPT_CAUSE_XLOG,
    CKPT_FORCE,
    CKPT_IMMEDIATE,
    CKPT_WAIT,
    request,
)
from pgbundle.server.postmaster.auxprocess import AuxProcess
from pgbundle.server.utils import elog

if TYPE_CHECKING:
    from pgbundle.server.postmaster.launch import ChildContext
    from pgbundle.server.storage.ipc import Env


def main(ctx: ChildContext) -> int:
    aux = AuxProcess(ctx, "checkpointer", "CheckpointerMain",
                     signals={signal.SIGTERM: "ignore", signal.SIGINT: "ignore"})
    env = aux.env
    ctl = env.ctl
    settings = ctx.settings
    ctl.set("ckpt_pid", os.getpid())
    ckpt_end = env.xlog.insert_pos  # the end-of-recovery checkpoint was the last record
    last = time.time()
    last_xlog_ckpt = 0.0
    while True:
        if aux.take("usr2"):
            _do(env, aux, shutdown=True, cause="shutdown immediate")
            ctl.set("ckpt_pid", 0)
            aux.detach()
            return 0
        timeout = float(settings.value("checkpoint_timeout"))
        now = time.time()
        with env.locks.CheckpointerLock:
            flags = ctl.get("ckpt_requested")
            if flags:
                ctl.set("ckpt_requested", 0)
        timed = now - last >= timeout
        if flags or timed:
            if flags & CKPT_CAUSE_XLOG:
                warn = float(settings.value("checkpoint_warning"))
                if last_xlog_ckpt and now - last_xlog_ckpt < warn:
                    elog.log(f"checkpoints are occurring too frequently ({int(now - last_xlog_ckpt)} seconds apart)",
                             detail=None, hint='Consider increasing the configuration parameter "max_wal_size".')
                last_xlog_ckpt = now
            idle = ctl.get("insert_pos") == ckpt_end and not flags & CKPT_FORCE
            if idle and not flags:
                last = now
            else:
                causes = []
                if flags & CKPT_IMMEDIATE:
                    causes.append("immediate")
                if flags & CKPT_FORCE:
                    causes.append("force")
                if flags & CKPT_WAIT:
                    causes.append("wait")
                if flags & CKPT_CAUSE_XLOG:
                    causes.append("wal")
                if not flags:
                    causes.append("time")
                if flags:
                    ctl.add("num_requested", 1)
                else:
                    ctl.add("num_timed", 1)
                spread = not flags & CKPT_IMMEDIATE and not flags & CKPT_FORCE
                ckpt_end = _do(env, aux, shutdown=False, cause=" ".join(causes), spread=spread, timeout=timeout)
                last = time.time()
        wait = max(0.0, timeout - (time.time() - last))
        aux.wait(min(wait, 1.0))


def _do(env: Env, aux: AuxProcess, *, shutdown: bool, cause: str, spread: bool = False,
        timeout: float = 0.0) -> int:
    """One checkpoint; returns the WAL insert position right after it (its record's end)."""
    ctl = env.ctl
    with env.locks.CheckpointerLock:
        ctl.add("ckpt_started", 1)
    log_ckpt = bool(env.settings.value("log_checkpoints"))
    if log_ckpt:
        elog.log(f"{'shutdown ' if shutdown else ''}checkpoint starting: {cause}" if not shutdown
                 else "shutting down")
    pace = None
    if spread and timeout:
        target = float(env.settings.value("checkpoint_completion_target")) * timeout
        t0 = time.time()

        def pace(done: int, total: int) -> None:
            while not aux.flags & {"usr2"}:
                goal = t0 + target * done / max(total, 1)
                delay = goal - time.time()
                if delay <= 0:
                    return
                with env.locks.CheckpointerLock:
                    if ctl.get("ckpt_requested") & (CKPT_IMMEDIATE | CKPT_FORCE):
                        return
                aux.wait(min(delay, 0.1))
    try:
        CK.create_checkpoint(env, shutdown=shutdown, log=elog.log if log_ckpt else None, pace=pace)
        ckpt_end = env.xlog.insert_pos
    except Exception:
        with env.locks.CheckpointerLock:
            ctl.add("ckpt_failed", 1)
        elog.log_exception("checkpoint failed")
        raise
    with env.locks.CheckpointerLock:
        ctl.set("ckpt_done", ctl.get("ckpt_started"))
        ctl.set("ckpt_time", time.time())
    return ckpt_end
