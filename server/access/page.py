"""Slotted 8 KB pages (PostgreSQL's bufpage.c) and the heap tuple header.

Page header (24 bytes): pd_lsn u64, pd_checksum u16, pd_flags u16, pd_lower u16,
pd_upper u16, pd_special u16, pd_pagesize_version u16, pd_prune_xid u32.  Line pointers
(u32: offset 15 bits, flags 2 bits, length 15 bits) grow from the header; items grow
down from ``pd_special``.  Offsets (line pointer numbers) start at 1.

Heap tuple header (24 bytes): t_xmin u32, t_xmax u32, t_cmin u32, t_cmax u32, t_ctid
(block u32, offset u16), t_infomask u16 — followed by the row data (see
:mod:`.tupdesc`).  Unlike PostgreSQL, cmin and cmax are both stored (no combo cids).
"""

from __future__ import annotations

import struct
from typing import Any

from pgbundle.server.storage.smgr import BLCKSZ

PH = struct.Struct("<QHHHHHHI")
PH_SIZE = PH.size  # 24
LP = struct.Struct("<I")
LSN = struct.Struct("<Q")
U16 = struct.Struct("<H")
TH = struct.Struct("<IIIIIHH")
TH_SIZE = TH.size  # 24

LP_UNUSED = 0
LP_NORMAL = 1
LP_REDIRECT = 2
LP_DEAD = 3

PD_HAS_FREE_LINES = 1

# t_infomask
XMIN_COMMITTED = 0x0100
XMIN_INVALID = 0x0200
XMAX_COMMITTED = 0x0400
XMAX_INVALID = 0x0800
XMAX_LOCK_ONLY = 0x0080
HEAP_UPDATED = 0x2000
HEAP_HOT_UPDATED = 0x4000  # t_ctid points at a heap-only successor on the same page
HEAP_ONLY_TUPLE = 0x8000  # no index entry points here: reached through a HOT chain
HINT_MASK = XMIN_COMMITTED | XMIN_INVALID | XMAX_COMMITTED | XMAX_INVALID
# bits a tuple keeps when a new xmax is set on it (update, delete, row lock)
KEEP_ON_XMAX = XMIN_COMMITTED | XMIN_INVALID | HEAP_UPDATED | HEAP_ONLY_TUPLE

MAX_TUPLE_SIZE = BLCKSZ - PH_SIZE - 4


def lp_pack(off: int, flags: int, length: int) -> int:
    return off | (flags << 15) | (length << 17)


def lp_unpack(v: int) -> tuple[int, int, int]:
    return v & 0x7FFF, (v >> 15) & 3, v >> 17


def init_page(page: Any, special: int = 0) -> None:
    page[:] = bytes(BLCKSZ)
    PH.pack_into(page, 0, 0, 0, 0, PH_SIZE, BLCKSZ - special, BLCKSZ - special, BLCKSZ | 4, 0)


def is_new(page: Any) -> bool:
    return PH.unpack_from(page, 0)[3] == 0


def page_lsn(page: Any) -> int:
    return LSN.unpack_from(page, 0)[0]


def set_lsn(page: Any, lsn: int) -> None:
    LSN.pack_into(page, 0, lsn)


def header(page: Any) -> tuple[int, ...]:
    return PH.unpack_from(page, 0)


def max_offset(page: Any) -> int:
    return (U16.unpack_from(page, 12)[0] - PH_SIZE) // 4


def free_space(page: Any) -> int:
    """Bytes available for a new item, counting a new line pointer (conservative: a free
    line pointer may be reused, but one is not promised)."""
    _, _, flags, lower, upper, _, _, _ = PH.unpack_from(page, 0)
    if lower == 0:
        return 0
    room = upper - lower
    return room - 4 if room >= 4 else 0


def line_pointers(page: Any) -> tuple[int, ...]:
    n = max_offset(page)
    return struct.unpack_from(f"<{n}I", page, PH_SIZE) if n else ()


def get_lp(page: Any, offnum: int) -> tuple[int, int, int]:
    return lp_unpack(LP.unpack_from(page, PH_SIZE + 4 * (offnum - 1))[0])


def set_lp(page: Any, offnum: int, off: int, flags: int, length: int) -> None:
    LP.pack_into(page, PH_SIZE + 4 * (offnum - 1), lp_pack(off, flags, length))


def add_item(page: Any, data: bytes, offnum: int = 0) -> int:
    """Put ``data`` on the page; returns its offset number or 0 if it does not fit.
    ``offnum`` forces the slot (redo replays the original placement)."""
    lsn, cks, flags, lower, upper, special, ver, prune = PH.unpack_from(page, 0)
    n = (lower - PH_SIZE) // 4
    size = len(data)
    if offnum == 0:
        if flags & PD_HAS_FREE_LINES:
            for i, v in enumerate(struct.unpack_from(f"<{n}I", page, PH_SIZE)):
                if (v >> 15) & 3 == LP_UNUSED and v >> 17 == 0:
                    offnum = i + 1
                    break
            else:
                flags &= ~PD_HAS_FREE_LINES
        if offnum == 0:
            offnum = n + 1
    new_lower = max(lower, PH_SIZE + 4 * offnum)
    if upper - size < new_lower:
        return 0
    upper -= size
    page[upper: upper + size] = data
    if offnum > n:
        for k in range(n + 1, offnum):  # redo may place past unused slots
            LP.pack_into(page, PH_SIZE + 4 * (k - 1), 0)
    LP.pack_into(page, PH_SIZE + 4 * (offnum - 1), upper | (LP_NORMAL << 15) | (size << 17))
    PH.pack_into(page, 0, lsn, cks, flags, new_lower, upper, special, ver, prune)
    return offnum


def item(page: Any, offnum: int) -> tuple[int, int]:
    """(offset, length) of a normal item, or (0, 0) (also past the line pointer array)."""
    at = PH_SIZE + 4 * (offnum - 1)
    if offnum < 1 or at >= U16.unpack_from(page, 12)[0]:
        return 0, 0
    v = LP.unpack_from(page, at)[0]
    if (v >> 15) & 3 != LP_NORMAL:
        return 0, 0
    return v & 0x7FFF, v >> 17


def prune_xid(page: Any) -> int:
    return struct.unpack_from("<I", page, 20)[0]


def set_prune_xid(page: Any, xid: int) -> None:
    struct.pack_into("<I", page, 20, xid)


def set_prunable(page: Any, xid: int) -> None:
    """PageSetPrunable: remember the oldest xid whose delete/update may leave dead tuples."""
    cur = struct.unpack_from("<I", page, 20)[0]
    if cur == 0 or xid < cur:
        struct.pack_into("<I", page, 20, xid)


def compact(page: Any, unused: Any, dead: Any = frozenset(), redirect: Any = None) -> None:
    """Make ``unused`` slots LP_UNUSED, ``dead`` ones LP_DEAD (storage freed), ``redirect``
    ({offnum: target offnum}) LP_REDIRECT, and pack the remaining items at the end of the
    page (PageRepairFragmentation).  Deterministic: redo replays it to the same layout."""
    lsn, cks, flags, lower, upper, special, ver, prune = PH.unpack_from(page, 0)
    n = (lower - PH_SIZE) // 4
    lps = list(struct.unpack_from(f"<{n}I", page, PH_SIZE))
    items = []
    for i, v in enumerate(lps):
        off, fl, ln = v & 0x7FFF, (v >> 15) & 3, v >> 17
        if i + 1 in unused:
            lps[i] = 0
            continue
        if i + 1 in dead:
            lps[i] = LP_DEAD << 15
            continue
        if redirect and i + 1 in redirect:
            lps[i] = redirect[i + 1] | (LP_REDIRECT << 15)
            continue
        if fl == LP_NORMAL:
            items.append((i, bytes(page[off: off + ln])))
    # trailing unused line pointers can go
    while lps and lps[-1] == 0:
        lps.pop()
    pos = special
    for i, data in items:
        pos -= len(data)
        page[pos: pos + len(data)] = data
        lps[i] = pos | (LP_NORMAL << 15) | (len(data) << 17)
    n = len(lps)
    if n:
        struct.pack_into(f"<{n}I", page, PH_SIZE, *lps)
    lower = PH_SIZE + 4 * n
    page[lower:pos] = bytes(pos - lower)
    if any(v == 0 for v in lps):
        flags |= PD_HAS_FREE_LINES
    else:
        flags &= ~PD_HAS_FREE_LINES
    PH.pack_into(page, 0, lsn, cks, flags, lower, pos, special, ver, prune)
