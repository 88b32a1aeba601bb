"""The one WAL-redo helper (access/xlogutils.redo_blocks) and the heap, B-tree and
sequence redo routines on top of it, on in-memory pages: no process, no shared memory."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator

import pytest

from pgbundle.server.access import heapam, nbtree, page as P, sequence
from pgbundle.server.access.xlog import BKP_WILL_INIT, RM_BTREE, RM_FPI, RM_HEAP, RM_SEQ, Record
from pgbundle.server.access.xlogutils import redo_blocks

BLCKSZ = P.BLCKSZ


class MemoryBuffers:
    """The part of the buffer manager redo uses, over a dict of pages; records the pins,
    locks and dirty marks so the tests can check them."""

    def __init__(self) -> None:
        self.pages: dict[tuple[int, int, int, int], bytearray] = {}
        self.bufs: list[tuple[int, int, int, int]] = []
        self.pins: dict[int, int] = {}
        self.locked: set[int] = set()
        self.dirty: set[int] = set()

    def read_buffer(self, dboid: int, relnode: int, fork: int, block: int) -> int:
        tag = (dboid, relnode, fork, block)
        self.pages.setdefault(tag, bytearray(BLCKSZ))
        if tag not in self.bufs:
            self.bufs.append(tag)
        b = self.bufs.index(tag)
        self.pins[b] = self.pins.get(b, 0) + 1
        return b

    @contextlib.contextmanager
    def content_lock(self, b: int) -> Iterator[None]:
        assert self.pins.get(b), "content lock on an unpinned buffer"
        self.locked.add(b)
        try:
            yield
        finally:
            self.locked.discard(b)

    def page(self, b: int) -> memoryview:
        assert b in self.locked, "page touched without its content lock"
        return memoryview(self.pages[self.bufs[b]])

    def mark_dirty(self, b: int) -> None:
        assert b in self.locked
        self.dirty.add(b)

    def release(self, b: int) -> None:
        self.pins[b] -= 1

    # test helpers
    def at(self, block: int, relnode: int = 100) -> bytearray:
        return self.pages.setdefault((1, relnode, 0, block), bytearray(BLCKSZ))

    def all_released(self) -> bool:
        return not any(self.pins.values()) and not self.locked


def _record(rmid: int, info: int, blocks: list[tuple[int, int, int, int, int, bytes | None, bytes]],
            end: int = 5000) -> Record:
    return Record(end - 100, end, 0, 7, rmid, info, blocks, b"")


def _page_with_lsn(lsn: int) -> bytearray:
    page = bytearray(BLCKSZ)
    P.init_page(page)
    P.set_lsn(page, lsn)
    return page


def test_full_page_image_replaces_the_page_whatever_its_lsn() -> None:
    bm = MemoryBuffers()
    bm.at(3)[:] = _page_with_lsn(9999)
    image = bytearray(b"\x01" * BLCKSZ)
    calls: list[int] = []
    redo_blocks(_record(RM_FPI, 0, [(1, 100, 0, 3, 0, bytes(image), b"")]), bm,
                lambda page, block, data: calls.append(block))
    page = bm.at(3)
    assert calls == []
    assert P.page_lsn(page) == 5000
    assert page[8:] == image[8:]
    assert bm.dirty == {0} and bm.all_released()


def test_page_already_past_the_record_is_left_alone() -> None:
    bm = MemoryBuffers()
    before = _page_with_lsn(5000)
    bm.at(0)[:] = before
    calls: list[int] = []
    redo_blocks(_record(RM_HEAP, 0, [(1, 100, 0, 0, 0, None, b"x")]), bm, lambda p, b, d: calls.append(b))
    assert calls == [] and bm.at(0) == before
    assert bm.dirty == set() and bm.all_released()


def test_older_page_gets_the_change_the_lsn_and_a_dirty_mark() -> None:
    bm = MemoryBuffers()
    bm.at(2)[:] = _page_with_lsn(4999)
    seen: list[tuple[int, bytes]] = []

    def redo(page: memoryview, block: int, data: bytes) -> None:
        seen.append((block, data))
        page[100] = 42

    redo_blocks(_record(RM_HEAP, 0, [(1, 100, 0, 2, 0, None, b"data")]), bm, redo)
    assert seen == [(2, b"data")]
    assert bm.at(2)[100] == 42 and P.page_lsn(bm.at(2)) == 5000
    assert bm.dirty == {0} and bm.all_released()


def test_will_init_starts_from_an_initialised_page() -> None:
    bm = MemoryBuffers()
    bm.at(0)[:] = b"\xff" * BLCKSZ  # garbage, LSN far ahead: does not matter
    seen: list[int] = []

    def redo(page: memoryview, block: int, data: bytes) -> None:
        seen.append(P.max_offset(page))

    redo_blocks(_record(RM_HEAP, 0, [(1, 100, 0, 0, BKP_WILL_INIT, None, b"")]), bm, redo)
    assert seen == [0]
    assert P.page_lsn(bm.at(0)) == 5000 and bm.all_released()


def test_logged_state_wins_applies_even_past_the_record() -> None:
    bm = MemoryBuffers()
    bm.at(0)[:] = _page_with_lsn(8000)
    seen: list[int] = []
    redo_blocks(_record(RM_SEQ, 0, [(1, 100, 0, 0, 0, None, b"")]), bm, lambda p, b, d: seen.append(b),
                logged_state_wins=True)
    assert seen == [0] and P.page_lsn(bm.at(0)) == 5000


def test_every_block_is_released_when_redo_fails() -> None:
    bm = MemoryBuffers()

    def redo(page: memoryview, block: int, data: bytes) -> None:
        raise RuntimeError("did not fit")

    with pytest.raises(RuntimeError):
        redo_blocks(_record(RM_HEAP, 0, [(1, 100, 0, 0, 0, None, b"")]), bm, redo)
    assert bm.all_released() and bm.dirty == set()


def test_several_blocks_each_decided_on_its_own_lsn() -> None:
    bm = MemoryBuffers()
    bm.at(0)[:] = _page_with_lsn(6000)  # already replayed
    bm.at(1)[:] = _page_with_lsn(10)  # not yet
    seen: list[int] = []
    redo_blocks(_record(RM_HEAP, 0, [(1, 100, 0, 0, 0, None, b""), (1, 100, 0, 1, 0, None, b"")]), bm,
                lambda p, b, d: seen.append(b))
    assert seen == [1]
    assert P.page_lsn(bm.at(0)) == 6000 and P.page_lsn(bm.at(1)) == 5000 and bm.all_released()


def test_heap_insert_redo_places_the_tuple_at_its_logged_slot() -> None:
    bm = MemoryBuffers()
    tup = bytes(range(40))
    rec = _record(RM_HEAP, heapam.XLOG_HEAP_INSERT, [(1, 100, 0, 0, BKP_WILL_INIT, None, struct.pack("<H", 1) + tup)])
    heapam.redo(rec, bm)
    page = bm.at(0)
    off, ln = P.item(page, 1)
    assert bytes(page[off: off + ln]) == tup
    heapam.redo(rec, bm)  # replayed twice (LSN now at the record's end: WILL_INIT still rebuilds)
    assert P.max_offset(bm.at(0)) == 1 and bm.all_released()


def test_heap_record_of_an_older_lsn_is_skipped() -> None:
    bm = MemoryBuffers()
    bm.at(0)[:] = _page_with_lsn(7000)
    rec = _record(RM_HEAP, heapam.XLOG_HEAP_INSERT, [(1, 100, 0, 0, 0, None, struct.pack("<H", 1) + b"t" * 30)])
    heapam.redo(rec, bm)
    assert P.max_offset(bm.at(0)) == 0 and P.page_lsn(bm.at(0)) == 7000


def test_btree_and_sequence_redo_go_through_the_helper() -> None:
    bm = MemoryBuffers()
    bm.at(0, relnode=200)[:] = _page_with_lsn(9000)
    nbtree.redo(_record(RM_BTREE, 0, [(1, 200, 0, 0, 0, None, b"\x01\x00" + b"k" * 16)]), bm)
    assert P.page_lsn(bm.at(0, relnode=200)) == 9000  # newer page: the entry is already there
    state = struct.pack("<qBxxxi", 132, 1, 0)
    bm.at(0, relnode=300)[:] = _page_with_lsn(9000)
    sequence.redo(_record(RM_SEQ, 0, [(1, 300, 0, 0, 0, None, state)]), bm)
    page = bm.at(0, relnode=300)
    assert bytes(page[P.PH_SIZE: P.PH_SIZE + len(state)]) == state  # the logged state always wins
    assert P.page_lsn(page) == 5000 and bm.all_released()
