"""The layout of a buffer descriptor and its state bits (PostgreSQL's buf_internals.h),
shared by the buffer manager (:mod:`.bufmgr`, the mechanism) and the replacement policy
(:mod:`.freelist`).

A descriptor is a *tag* (:data:`TAG`: dboid u32, relnode u32, block u32, fork u8) and a
*state* (:data:`STATE`: usage_count u8, flags u16, refcount u16).  The state is guarded by
the buffer's header lock, the tag by its mapping partition lock (see :mod:`.bufmgr`).
"""

from __future__ import annotations

import struct

TAG = struct.Struct("<IIIBxxx")
STATE = struct.Struct("<BxHHxx")
NONE = 0xFFFFFFFF  # no buffer (end of a hash chain, empty bucket)

# state flags (BM_*)
VALID = 1  # the page holds the tag's data
DIRTY = 2  # changed since it was last written
TAG_VALID = 4  # the tag names a page (the buffer is in the hash table)
IO_IN_PROGRESS = 8  # a read or write of the page is under way
JUST_DIRTIED = 16  # dirtied again while being written
CHECKPOINT_NEEDED = 32  # dirty at the start of the running checkpoint
IO_ERROR = 64  # the last read or write failed
PERMANENT = 128  # a permanent (WAL-logged) relation's page

MAX_USAGE = 5  # BM_MAX_USAGE_COUNT: the clock sweep's usage counter saturates here
