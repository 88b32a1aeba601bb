"""Sequences: a one-page relation holding (last_value, is_called, log_cnt), changed in
place under the page's content lock, never rolled back (PostgreSQL's sequence.c).

Like PostgreSQL, nextval WAL-logs only every SEQ_LOG_VALS (32) calls: the record carries
the value 32 steps ahead, and redo always restores the logged state, so after a crash
the sequence continues past anything it may have handed out (a gap, never a repeat).
The first nextval after a checkpoint always logs (its page may be written before the
next record).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from pgbundle.server.access import page as P
from pgbundle.server.access.xlog import RM_FPI, RM_SEQ, BlockRef, Record
from pgbundle.server.access.xlogutils import redo_blocks
from pgbundle.server.errors import PgError

if TYPE_CHECKING:
    from pgbundle.server.storage.bufmgr import BufMgr

_STATE = struct.Struct("<qBxxxi")  # last_value, is_called, log_cnt
SEQ_LOG_VALS = 32
_OFF = P.PH_SIZE


def init_relation(eng: Any, oid: int, start: int, xid: int) -> None:
    bm = eng.env.bm
    dboid = eng.database.oid
    _blk, b = bm.extend(dboid, oid)
    try:
        with bm.content_lock(b):
            page = bm.page(b)
            P.init_page(page)
            _STATE.pack_into(page, _OFF, start, 0, 0)
            lsn = eng.env.xlog.insert(RM_FPI, 0, xid, [BlockRef(dboid, oid, 0, 0, page, force_image=True)])
            P.set_lsn(page, lsn)
            bm.mark_dirty(b)
    finally:
        bm.release(b)


def _params(eng: Any, seq_oid: int) -> tuple[Any, Any]:
    rel = eng.relation(seq_oid)
    if rel.kind.value != "S":
        raise PgError("42809", f'"{rel.name}" is not a sequence')
    params = eng.catalog().sequences.get(seq_oid)
    if params is None:
        raise PgError("42P01", f'relation "{rel.name}" does not exist')
    return rel, params


def _change(eng: Any, rel: Any, fn: Any, ahead: Any = None) -> int:
    """Apply ``fn(last, called) -> (new_last, new_called, result)`` to the sequence page.
    ``ahead(new_last) -> logged_last`` (nextval) enables logging only every 32 calls."""
    bm = eng.env.bm
    xlog = eng.env.xlog
    dboid = eng.database.oid
    b = bm.read_buffer(dboid, rel.relfilenode, 0, 0)
    try:
        with bm.content_lock(b):
            page = bm.page(b)
            last, called, log_cnt = _STATE.unpack_from(page, _OFF)
            new, new_called, result = fn(last, bool(called))
            logit = ahead is None or log_cnt <= 0 or P.page_lsn(page) <= xlog.redo_ptr
            if logit:
                logged = ahead(new) if ahead is not None else new
                cnt = SEQ_LOG_VALS - 1 if ahead is not None else 0
                data = _STATE.pack(logged, 1 if new_called else 0, 0)
                # as PostgreSQL: the page holds the logged state while the record (and a
                # possible full-page image of it) is made, then the real one
                page[_OFF:_OFF + _STATE.size] = data
                lsn = xlog.insert(RM_SEQ, 0, eng.x.xid, [BlockRef(dboid, rel.relfilenode, 0, 0, page, data)])
                P.set_lsn(page, lsn)
                eng.x.wal_lsn = max(eng.x.wal_lsn, lsn)
            else:
                cnt = log_cnt - 1
            _STATE.pack_into(page, _OFF, new, 1 if new_called else 0, cnt)
            bm.mark_dirty(b)
            return result
    finally:
        bm.release(b)


def nextval(eng: Any, seq_oid: int) -> int:
    rel, p = _params(eng, seq_oid)
    _oid, _typ, start, inc, maxv, minv, _cache, cycle = p

    def fn(last: int, called: bool) -> tuple[int, bool, int]:
        if not called:
            return last, True, last
        nxt = last + inc
        if inc > 0 and nxt > maxv:
            if not cycle:
                raise PgError("2200H", f'nextval: reached maximum value of sequence "{rel.name}" ({maxv})')
            nxt = minv
        elif inc < 0 and nxt < minv:
            if not cycle:
                raise PgError("2200H", f'nextval: reached minimum value of sequence "{rel.name}" ({minv})')
            nxt = maxv
        return nxt, True, nxt

    def ahead(new: int) -> int:
        v = new + inc * SEQ_LOG_VALS
        return min(v, maxv) if inc > 0 else max(v, minv)

    return _change(eng, rel, fn, ahead)


def setval(eng: Any, seq_oid: int, value: int, is_called: bool) -> None:
    rel, p = _params(eng, seq_oid)
    _oid, _typ, start, inc, maxv, minv, _cache, cycle = p
    if value < minv or value > maxv:
        raise PgError("22003", f'setval: value {value} is out of bounds for sequence "{rel.name}" ({minv}..{maxv})')
    _change(eng, rel, lambda last, called: (value, is_called, value))


def read_state(eng: Any, seq_oid: int) -> tuple[int, bool]:
    rel, _ = _params(eng, seq_oid)
    bm = eng.env.bm
    b = bm.read_buffer(eng.database.oid, rel.relfilenode, 0, 0)
    try:
        with bm.content_lock(b):
            last, called, _cnt = _STATE.unpack_from(bm.page(b), _OFF)
    finally:
        bm.release(b)
    return last, bool(called)


def redo(rec: Record, bm: BufMgr) -> None:
    """Like seq_redo: the logged state always wins, whatever the page LSN (nextval changes
    the page without WAL between records, so a page written after the record may hold a
    value already handed out; the logged state is ahead of all of them)."""
    redo_blocks(rec, bm, _redo_state, logged_state_wins=True)


def _redo_state(page: memoryview, block: int, data: bytes) -> None:
    if P.is_new(page):
        P.init_page(page)
    page[_OFF:_OFF + _STATE.size] = data
