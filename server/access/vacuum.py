"""VACUUM and ANALYZE (PostgreSQL's vacuumlazy.c, simplified).

For each table: (1) prune every page: tuples dead to every snapshot (inserter aborted,
or deleter committed before the oldest xmin of any running transaction) give up their
storage and become LP_DEAD, collecting their TIDs; (2) remove the index entries that
point at those TIDs from every index; (3) turn the LP_DEAD line pointers into LP_UNUSED
so their slots can be reused, and record each page's free space in the free-space map;
(4) store relpages/reltuples in pg_class and report n_live_tup/n_dead_tup to the
statistics collector.  Progress of a long VACUUM VERBOSE is reported as notices.
"""

from __future__ import annotations

import time
from typing import Any

from pgbundle.server.access.api import Notice, RelationInfo, RelKind, VacuumResult


def vacuum(eng: Any, rel: RelationInfo | None, *, analyze: bool = False, verbose: bool = False,
           autovacuum: bool = False) -> list[VacuumResult]:
    rels = [rel] if rel is not None else [r for r in eng.relations("r") if r.namespace != "pg_toast"]
    out = []
    for r in rels:
        if r.kind not in (RelKind.TABLE, RelKind.MATVIEW):
            eng.notices.append(Notice("WARNING", "01000", f'skipping "{r.name}" --- cannot vacuum non-tables or '
                                                          f"special system tables"))
            continue
        out.append(vacuum_rel(eng, r, verbose=verbose, autovacuum=autovacuum, analyze=analyze))
    return out


def vacuum_rel(eng: Any, rel: RelationInfo, *, verbose: bool = False, autovacuum: bool = False,
               analyze: bool = False) -> VacuumResult:
    eng.lock_relation(rel.oid, 4)
    rt = eng._runtime(rel)
    heap = eng.heap
    bm = eng.env.bm
    horizon = eng.procs.oldest_xmin()
    nblocks = bm.nblocks(rt.dboid, rt.relnode)
    dead: list = []
    live = removed = recent = 0
    t0 = time.monotonic()
    for block in range(nblocks):
        eng.check_for_interrupts()
        lv, rm, rc = heap.prune_page(rt.dboid, rt.relnode, block, horizon, 0, dead)
        live += lv
        removed += rm
        recent += rc
    dead_set = set(dead)
    idx_removed = 0
    for idx, relnode, _cols, _types in rt.indexes:
        idx_removed += eng.btree.bulk_delete(rt.dboid, relnode, dead_set, 0)
    by_block: dict[int, set[int]] = {}
    for t in dead:
        by_block.setdefault(t.block, set()).add(t.offset)
    for block, offs in by_block.items():
        eng.check_for_interrupts()
        heap.prune_page(rt.dboid, rt.relnode, block, horizon, 0, [], allow_unused=offs)
    res = VacuumResult(rel.name, nblocks, removed, live, recent, idx_removed, 0)
    _store_stats(eng, rel, nblocks, float(live))
    eng.stats.vacuumed(rel.oid, live, recent, autovacuum, analyze)
    if verbose:
        eng.notices.append(Notice(
            "INFO", "00000", f'vacuuming "{eng.database.name}.{rel.namespace}.{rel.name}"',
            detail=f"tuples: {removed} removed, {live} remain, {recent} are dead but not yet removable; "
                   f"index entries removed: {idx_removed}; pages: {nblocks}; "
                   f"elapsed: {time.monotonic() - t0:.2f} s"))
    return res


def _store_stats(eng: Any, rel: RelationInfo, pages: int, tuples: float) -> None:
    oid = rel.oid
    eng._cat_update("pg_class", lambda r: r[0] == oid,
                    lambda r: r[:9] + (pages, tuples) + r[11:], invalidate=False)


def analyze(eng: Any, rel: RelationInfo | None) -> None:
    rels = [rel] if rel is not None else eng.relations("r")
    for r in rels:
        rt = eng._runtime(r)
        n = 0
        for _ in eng.seq_scan(r):
            n += 1
        _store_stats(eng, r, eng.env.bm.nblocks(rt.dboid, rt.relnode), float(n))
        eng.stats.analyzed(r.oid, n)
