"""Replaying a WAL record's block references on the buffer pool (PostgreSQL's xlogutils.c,
``XLogReadBufferForRedo``), shared by the heap, B-tree and sequence redo routines.

For each block the record references, :func:`redo_blocks` pins the buffer (reading the
page, or a zero page past the end of the file), takes its content lock and then:

* the record carries a full-page image → the image replaces the page;
* the block is marked ``BKP_WILL_INIT`` → the page is initialised and handed to the
  caller's redo function (its old contents do not matter);
* the page's LSN is at or past the record's end → the change is already on the page:
  nothing is done (unless the caller says the logged state always wins, as sequences do);
* otherwise → the caller's redo function applies the change to the page;

and, whenever the page was changed, sets its LSN to the record's end and marks the
buffer dirty; the lock and the pin are released in every case.  Only the startup
process calls it (crash recovery), one record at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pgbundle.server.access import page as P
from pgbundle.server.access.xlog import BKP_WILL_INIT, Record

if TYPE_CHECKING:
    from pgbundle.server.storage.bufmgr import BufMgr

BlockRedo = Callable[[memoryview, int, bytes], None]
"""A resource manager's change to one page: ``redo(page, block number, the block's data)``."""


def redo_nothing(page: memoryview, block: int, data: bytes) -> None:
    """For records whose blocks carry only full-page images."""


def redo_blocks(rec: Record, bm: BufMgr, redo: BlockRedo, *, logged_state_wins: bool = False) -> None:
    """Apply ``rec`` to every page it references (see the module docstring).
    ``logged_state_wins``: apply ``redo`` even when the page LSN is past the record
    (PostgreSQL's sequences rebuild their page from each record: a page written after a
    later, unlogged change must not keep that change)."""
    end = rec.end
    for dboid, relnode, fork, block, flags, image, data in rec.blocks:
        b = bm.read_buffer(dboid, relnode, fork, block)
        try:
            with bm.content_lock(b):
                page = bm.page(b)
                if image is not None:
                    page[:] = image
                else:
                    if flags & BKP_WILL_INIT:
                        P.init_page(page)
                    elif not logged_state_wins and P.page_lsn(page) >= end:
                        continue
                    redo(page, block, data)
                P.set_lsn(page, end)
                bm.mark_dirty(b)
        finally:
            bm.release(b)
