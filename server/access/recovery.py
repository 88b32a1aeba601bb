"""Crash recovery: replay the WAL from the last checkpoint's redo point (PostgreSQL's
StartupXLOG, crash-recovery part).

Read global/pg_control → the last checkpoint record → its redo point; if the server
was not shut down cleanly (or WAL follows the checkpoint), apply every record from the
redo point to the end of valid WAL through the shared buffer pool: a full-page image
replaces the page; otherwise a record is applied only when the page's LSN is older
than the record.  Progress is logged every 10 s of replay.  At the end: the WAL tail
is zeroed, next xid/oid are set past anything seen, and an end-of-recovery checkpoint
makes the result durable.
"""

from __future__ import annotations

import os
import struct
import time
from typing import Any

from pgbundle.server.access import checkpoint as CK, control, heapam, nbtree, sequence, xact
from pgbundle.server.access.xlog import (
    RM_BTREE,
    RM_CLOG,
    RM_DBASE,
    RM_FPI,
    RM_HEAP,
    RM_SEQ,
    RM_XACT,
    RM_XLOG,
    WalReader,
    fmt_lsn,
)
from pgbundle.server.catalog.ddl import copy_database_dir

_U32 = struct.Struct("<I")
_DB = struct.Struct("<II")
PROGRESS_INTERVAL = 10.0


def startup(env: Any, log: Any) -> None:
    """Bring WAL and shared state to a consistent end; called by the startup process."""
    cd = control.read(env.datadir)
    reader = WalReader(env.datadir, env.xlog.segsize)
    ckpt = reader.read_record(cd.checkpoint_lsn)
    if ckpt is None or ckpt.rmid != RM_XLOG:
        raise RuntimeError(f"could not locate a valid checkpoint record at {fmt_lsn(cd.checkpoint_lsn)}")
    redo, next_xid, next_oid, _t, _shut = CK.CKPT.unpack_from(ckpt.main, 0)
    env.procs.set_next_xid(max(next_xid, 3))
    env.ctl.set("next_oid", next_oid)
    env.ctl.set("oid_limit", next_oid)
    clean = cd.state == control.DB_SHUTDOWNED and redo == cd.checkpoint_lsn
    after = reader.read_record(ckpt.end, ckpt.lsn)
    if clean and after is None:
        env.xlog.init_positions(ckpt.end, ckpt.lsn)
        st, off = env.ctl.offset("redo_ptr")
        st.pack_into(env.shm.buf, off, redo)
        env.ctl.set("last_ckpt_lsn", cd.checkpoint_lsn)
        cd.state = control.DB_IN_PRODUCTION
        control.write(env.datadir, cd)
        return
    log("database system was interrupted; last known up at "
        + time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(cd.time)))
    log("database system was not properly shut down; automatic recovery in progress")
    cd.state = control.DB_IN_CRASH_RECOVERY
    control.write(env.datadir, cd)
    env.smgr.recovery = True
    st, off = env.ctl.offset("redo_ptr")
    st.pack_into(env.shm.buf, off, redo)
    log(f"redo starts at {fmt_lsn(redo)}")
    t0 = time.monotonic()
    last_report = t0
    n = 0
    max_xid = max(next_xid, 3)
    oid_limit = next_oid
    last = None
    prev = None
    for rec in reader.records(redo, None):
        apply(env, rec)
        n += 1
        if rec.xid >= max_xid:
            max_xid = rec.xid + 1
        if rec.rmid == RM_XLOG and rec.info == CK.XLOG_NEXTOID:
            oid_limit = max(oid_limit, _U32.unpack_from(rec.main, 0)[0])
        elif rec.rmid == RM_XLOG and rec.info in (CK.XLOG_CHECKPOINT_ONLINE, CK.XLOG_CHECKPOINT_SHUTDOWN):
            _r, nx, no, _tt, _s = CK.CKPT.unpack_from(rec.main, 0)
            max_xid = max(max_xid, nx)
            oid_limit = max(oid_limit, no)
        last = rec
        prev = rec.lsn
        now = time.monotonic()
        if now - last_report >= PROGRESS_INTERVAL:
            last_report = now
            log(f"redo in progress, elapsed time: {now - t0:.2f} s, current LSN: {fmt_lsn(rec.lsn)}")
    end = last.end if last is not None else ckpt.end
    if last is not None:
        log(f"redo done at {fmt_lsn(last.lsn)} system usage: records: {n}, elapsed: {time.monotonic() - t0:.2f} s")
    else:
        log("redo is not required")
    env.xlog.zero_tail(end)
    env.xlog.init_positions(end, prev if prev is not None else ckpt.lsn)
    env.procs.set_next_xid(max_xid)
    env.ctl.set("next_oid", oid_limit)
    env.ctl.set("oid_limit", oid_limit)
    env.smgr.recovery = False
    CK.create_checkpoint(env, end_of_recovery=True, log=log)


def apply(env: Any, rec: Any) -> None:
    rm = rec.rmid
    if rm in (RM_HEAP, RM_FPI):
        heapam.redo(rec, env.bm)
    elif rm == RM_BTREE:
        nbtree.redo(rec, env.bm)
    elif rm == RM_XACT:
        xact.redo(rec, env)
    elif rm == RM_SEQ:
        sequence.redo(rec, env.bm)
    elif rm == RM_DBASE:
        src, dst = _DB.unpack_from(rec.main, 0)
        env.bm.sync_all(dboid=src)
        copy_database_dir(os.path.join(env.datadir, "base", str(src)), os.path.join(env.datadir, "base", str(dst)))
    elif rm in (RM_XLOG, RM_CLOG):
        pass
