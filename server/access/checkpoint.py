"""Creating a checkpoint (PostgreSQL's CreateCheckPoint), used by the checkpointer, by
the startup process at the end of recovery, and by initdb.

Steps: (1) the redo point = the current WAL insert position, published as
``redo_ptr`` under WALInsertLock (from then on, the first change of each page logs a
full-page image); (2) write the commit log; (3) write every dirty buffer (WAL flushed
first, page by page); (4) fsync every relation file written since the last checkpoint
(the fsync request queue); (5) insert the checkpoint record and flush it; (6) update
global/pg_control; (7) remove WAL segments older than the redo point's segment.

Requesting one (PostgreSQL's RequestCheckpoint, :func:`request`): backends (CHECKPOINT,
CREATE DATABASE, WAL volume) set ``CKPT_*`` flags in ``ckpt_requested`` under
CheckpointerLock, signal the checkpointer (``ckpt_pid``) and may wait until ``ckpt_done``
passes the ``ckpt_started`` they saw (``ckpt_failed`` moving means it failed); without a
checkpointer (initdb, the startup process) a waiting request runs the checkpoint itself.
"""

from __future__ import annotations

import os
import signal
import struct
import time
from typing import Any

from pgbundle.server.access import control
from pgbundle.server.access.xlog import RM_XLOG, fmt_lsn
from pgbundle.server.errors import PgError

XLOG_CHECKPOINT_SHUTDOWN = 0x00
XLOG_CHECKPOINT_ONLINE = 0x10
XLOG_NEXTOID = 0x30
CKPT = struct.Struct("<QIIdB")

# checkpoint request flags (CHECKPOINT_* of xlog.h), OR-ed into ckpt_requested
CKPT_IMMEDIATE = 0x04
CKPT_FORCE = 0x08
CKPT_WAIT = 0x20
CKPT_CAUSE_XLOG = 0x80
CKPT_CAUSE_TIME = 0x100


def request(env: Any, flags: int, *, wait: bool, check: Any = None) -> None:
    """RequestCheckpoint: set flags, wake the checkpointer, optionally wait for it."""
    ctl = env.ctl
    with env.locks.CheckpointerLock:
        started = ctl.get("ckpt_started")
        failed = ctl.get("ckpt_failed")
        ctl.set("ckpt_requested", ctl.get("ckpt_requested") | flags)
        pid = ctl.get("ckpt_pid")
    if not pid:
        if wait:
            create_checkpoint(env)
        return
    try:
        os.kill(pid, signal.SIGUSR1)
    except ProcessLookupError:
        return
    if not wait:
        return
    delay = 0.005
    env.procs.set_wait("CheckpointDone")
    try:
        while ctl.get("ckpt_done") <= started:
            if ctl.get("ckpt_failed") != failed:
                raise PgError("XX000", "checkpoint request failed",
                              hint="Consult recent messages in the server log for details.")
            if check is not None:
                check()
            time.sleep(delay)
            delay = min(delay * 1.5, 0.05)
    finally:
        env.procs.set_wait(None)


def create_checkpoint(env: Any, *, shutdown: bool = False, end_of_recovery: bool = False,
                      log: Any = None, pace: Any = None) -> dict[str, Any]:
    t0 = time.time()
    xlog = env.xlog
    ctl = env.ctl
    with env.locks.WALInsertLock:
        redo = xlog.insert_pos
        st, off = ctl.offset("redo_ptr")
        st.pack_into(env.shm.buf, off, redo)
    env.clog.checkpoint()
    written = env.bm.sync_all(counter="buffers_checkpoint", pace=pace)
    t1 = time.time()
    synced = 0
    for tag in env.syncq.absorb():
        env.smgr.fsync(*tag)
        synced += 1
    t2 = time.time()
    next_xid = env.procs.next_xid()
    next_oid = ctl.get("next_oid")
    info = XLOG_CHECKPOINT_SHUTDOWN if shutdown or end_of_recovery else XLOG_CHECKPOINT_ONLINE
    end = xlog.insert(RM_XLOG, info, 0, (), CKPT.pack(redo, next_xid, max(next_oid, ctl.get("oid_limit")), t0,
                                                     1 if shutdown else 0))
    start = xlog.last_insert_start
    xlog.flush(end)
    with env.locks.ControlFileLock:
        cd = control.read(env.datadir)
        cd.checkpoint_lsn = start
        cd.redo_lsn = redo
        cd.next_xid = next_xid
        cd.next_oid = max(next_oid, ctl.get("oid_limit"))
        cd.checkpoint_time = t0
        cd.state = control.DB_SHUTDOWNED if shutdown else control.DB_IN_PRODUCTION
        control.write(env.datadir, cd)
    ctl.set("last_ckpt_lsn", start)
    ctl.set("segs_since_ckpt", 0)
    removed = xlog.remove_old_segments(redo)
    t3 = time.time()
    ctl.add("ckpt_write_time", (t1 - t0) * 1000.0)
    ctl.add("ckpt_sync_time", (t2 - t1) * 1000.0)
    stats = dict(written=written, synced=synced, removed=removed, write=t1 - t0, sync=t2 - t1, total=t3 - t0,
                 lsn=fmt_lsn(start), redo=fmt_lsn(redo))
    if log is not None:
        nbuf = env.shm.layout.nbuffers
        log(f"checkpoint complete: wrote {written} buffers ({100.0 * written / nbuf:.1f}%); 0 WAL file(s) added, "
            f"{removed} removed, 0 recycled; write={t1 - t0:.3f} s, sync={t2 - t1:.3f} s, total={t3 - t0:.3f} s; "
            f"sync files={synced}; lsn={fmt_lsn(start)}, redo lsn={fmt_lsn(redo)}")
    return stats
