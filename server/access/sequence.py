"""Sequences: a one-page relation holding (last_value, is_called), changed in place
under the page's content lock and WAL-logged (RM_SEQ), never rolled back
(PostgreSQL's sequence.c without the 32-value WAL prefetch).
"""

from __future__ import annotations

import struct
from typing import Any

from pgbundle.server.access import page as P
from pgbundle.server.access.xlog import RM_FPI, RM_SEQ, BlockRef
from pgbundle.server.errors import PgError

_STATE = struct.Struct("<qB")
_OFF = P.PH_SIZE


def init_relation(eng: Any, oid: int, start: int, xid: int) -> None:
    bm = eng.env.bm
    dboid = eng.database.oid
    _blk, b = bm.extend(dboid, oid)
    try:
        with bm.content_lock(b):
            page = bm.page(b)
            P.init_page(page)
            _STATE.pack_into(page, _OFF, start, 0)
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


def _change(eng: Any, rel: Any, fn: Any) -> int:
    bm = eng.env.bm
    dboid = eng.database.oid
    b = bm.read_buffer(dboid, rel.relfilenode, 0, 0)
    try:
        with bm.content_lock(b):
            page = bm.page(b)
            last, called = _STATE.unpack_from(page, _OFF)
            new, new_called, result = fn(last, bool(called))
            _STATE.pack_into(page, _OFF, new, 1 if new_called else 0)
            data = _STATE.pack(new, 1 if new_called else 0)
            lsn = eng.env.xlog.insert(RM_SEQ, 0, eng.x.xid, [BlockRef(dboid, rel.relfilenode, 0, 0, page, data)])
            P.set_lsn(page, lsn)
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

    return _change(eng, rel, fn)


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
            last, called = _STATE.unpack_from(bm.page(b), _OFF)
    finally:
        bm.release(b)
    return last, bool(called)


def redo(rec: Any, bm: Any) -> None:
    for dboid, relnode, fork, block, flags, image, data in rec.blocks:
        b = bm.read_buffer(dboid, relnode, fork, block)
        try:
            with bm.content_lock(b):
                page = bm.page(b)
                if image is not None:
                    page[:] = image
                elif P.page_lsn(page) >= rec.end:
                    continue
                else:
                    if P.is_new(page):
                        P.init_page(page)
                    page[_OFF:_OFF + _STATE.size] = data
                P.set_lsn(page, rec.end)
                bm.mark_dirty(b)
        finally:
            bm.release(b)
