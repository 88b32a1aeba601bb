"""VACUUM and ANALYZE (PostgreSQL's vacuumlazy.c, simplified).

For each table: (1) prune every page: tuples dead to every snapshot (inserter aborted,
or deleter committed before the oldest xmin of any running transaction) give up their
storage and become LP_DEAD, collecting their TIDs; (2) remove the index entries that
point at those TIDs from every index; (3) turn the LP_DEAD line pointers into LP_UNUSED
so their slots can be reused, and record each page's free space in the free-space map;
(4) store relpages/reltuples in pg_class and report n_live_tup/n_dead_tup to the
statistics collector.  Progress of a long VACUUM VERBOSE is reported as notices.
VACUUM FULL rewrites the table into new files instead.

ANALYZE (analyze.c): a sample of at most ``300 × default_statistics_target`` rows, taken
from a random sample of pages, gives reltuples (scaled to the whole table) and per-column
statistics in pg_statistic — NULL fraction, average width, number of distinct values
(Haas & Stokes' estimator, negative = a fraction of the rows), the most common values
with their frequencies and an equi-depth histogram of the rest — which the planner uses
for selectivity estimates.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

from pgbundle.server.access.api import Notice, RelationInfo, RelKind, VacuumResult
from pgbundle.shared.types import text_encoder


def vacuum(eng: Any, rel: RelationInfo | None, *, analyze: bool = False, verbose: bool = False,
           autovacuum: bool = False, full: bool = False) -> list[VacuumResult]:
    rels = [rel] if rel is not None else [r for r in eng.relations("r") if r.namespace != "pg_toast"]
    out = []
    for r in rels:
        if r.kind not in (RelKind.TABLE, RelKind.MATVIEW):
            eng.notices.append(Notice("WARNING", "01000", f'skipping "{r.name}" --- cannot vacuum non-tables or '
                                                          f"special system tables"))
            continue
        out.append(vacuum_rel(eng, r, verbose=verbose, autovacuum=autovacuum, analyze=analyze, full=full))
    return out


def vacuum_rel(eng: Any, rel: RelationInfo, *, verbose: bool = False, autovacuum: bool = False,
               analyze: bool = False, full: bool = False) -> VacuumResult:
    if full:
        n = eng.rewrite_table(rel.oid)
        rel = eng.relation(rel.oid)
        rt = eng._runtime(rel)
        pages = eng.env.bm.nblocks(rt.dboid, rt.relnode)
        _store_stats(eng, rel, pages, float(n))
        if analyze:
            analyze_rel(eng, rel)
        eng.stats.vacuumed(rel.oid, n, 0, autovacuum, analyze)
        return VacuumResult(rel.name, pages, 0, n, 0, 0, 0)
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
    for _idx, relnode, _cols, _types in rt.indexes:
        idx_removed += eng.btree.bulk_delete(rt.dboid, relnode, dead_set, 0)
    by_block: dict[int, set[int]] = {}
    for t in dead:
        by_block.setdefault(t.block, set()).add(t.offset)
    for block, offs in by_block.items():
        eng.check_for_interrupts()
        heap.prune_page(rt.dboid, rt.relnode, block, horizon, 0, [], allow_unused=offs)
    res = VacuumResult(rel.name, nblocks, removed, live, recent, idx_removed, 0)
    _store_stats(eng, rel, nblocks, float(live))
    if analyze:
        analyze_rel(eng, rel, count_all=False)
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
    eng.ddl.update_rows("pg_class", lambda r: r[0] == oid,
                        lambda r: r[:9] + (pages, tuples) + r[11:], invalidate=False)


def analyze(eng: Any, rel: RelationInfo | None) -> None:
    rels = [rel] if rel is not None else [r for r in eng.relations("r") if r.namespace != "pg_catalog"]
    for r in rels:
        analyze_rel(eng, r)


def analyze_rel(eng: Any, rel: RelationInfo, count_all: bool = True) -> None:
    """Sample the table, store reltuples (with ``count_all``) and column statistics."""
    rt = eng._runtime(rel)
    bm = eng.env.bm
    nblocks = bm.nblocks(rt.dboid, rt.relnode)
    target = int(eng.settings.value("default_statistics_target") or 100)
    want_rows = 300 * target
    snap = eng.snapshot()
    eng._dml_lock(rel.oid, 1)
    blocks = list(range(nblocks))
    max_blocks = max(1, want_rows // 50)
    if nblocks > max_blocks:
        blocks = sorted(random.Random(rel.oid ^ nblocks).sample(blocks, max_blocks))
    rows: list[tuple] = []
    seen = 0
    for b in blocks:
        eng.check_for_interrupts()
        for _off, data in eng.heap.scan_block(rt.dboid, rt.relnode, b, snap):
            seen += 1
            if len(rows) < want_rows:
                rows.append(rt.codec.decode(data))
            else:
                k = random.randrange(seen)
                if k < want_rows:
                    rows[k] = rt.codec.decode(data)
    total = float(seen) if len(blocks) == nblocks else (seen * nblocks / max(len(blocks), 1))
    if count_all:
        _store_stats(eng, rel, nblocks, total)
    _store_column_stats(eng, rel, rows, total)
    eng.stats.analyzed(rel.oid, int(total))


def _text(v: Any, oid: int) -> str:
    try:
        return text_encoder(oid)(v)
    except Exception:  # noqa: BLE001
        return str(v)


def _store_column_stats(eng: Any, rel: RelationInfo, rows: list[tuple], total: float) -> None:
    out = []
    n = len(rows)
    for i, col in enumerate(rel.columns):
        if col.dropped:
            continue
        vals = [r[i] for r in rows if i < len(r)]
        nonnull = [v for v in vals if v is not None]
        nullfrac = (n - len(nonnull)) / n if n else 0.0
        width = 0
        if nonnull:
            width = int(sum(len(_text(v, col.type_oid).encode()) for v in nonnull[:1000]) / min(len(nonnull), 1000))
        counts: dict[Any, int] = {}
        hashable = True
        for v in nonnull:
            try:
                counts[v] = counts.get(v, 0) + 1
            except TypeError:
                hashable = False
                break
        stats: dict[str, Any] = {}
        ndistinct = 0.0
        if hashable and nonnull:
            d = len(counts)
            f1 = sum(1 for c in counts.values() if c == 1)
            nn = len(nonnull)
            if f1 == nn:  # every sampled value unique: assume unique
                ndistinct = -1.0 * (1 - nullfrac)
            elif f1 == 0 or n >= total:
                ndistinct = float(d)
            else:
                big_n = total * (1 - nullfrac)
                ndistinct = nn * d / (nn - f1 + f1 * nn / big_n)
                ndistinct = min(max(ndistinct, d), big_n)
            if ndistinct > 0.1 * total and total > 0:
                ndistinct = -min(ndistinct / total, 1.0)
            avg = nn / d
            mcv = sorted(((c, v) for v, c in counts.items() if c > 1 and c >= 1.25 * avg),
                         key=lambda cv: -cv[0])[:100]
            if d <= 100 and all(c > 1 for c in counts.values()):
                mcv = sorted(((c, v) for v, c in counts.items()), key=lambda cv: -cv[0])
            stats["mcv"] = [_text(v, col.type_oid) for _c, v in mcv]
            stats["mcf"] = [c / n for c, _v in mcv]
            mcvset = {v for _c, v in mcv}
            rest = [v for v in nonnull if v not in mcvset]
            try:
                rest.sort()
                if len(rest) >= 2:
                    nb = min(101, len(set(rest)))
                    if nb >= 2:
                        hist = [rest[(len(rest) - 1) * k // (nb - 1)] for k in range(nb)]
                        stats["hist"] = [_text(v, col.type_oid) for v in hist]
            except TypeError:
                pass
        out.append((rel.oid, col.attnum, False, float(nullfrac), width, float(ndistinct), json.dumps(stats)))
    oid = rel.oid
    eng.ddl.delete_rows("pg_statistic", lambda r: r[0] == oid)
    for row in out:
        eng.ddl.insert_row("pg_statistic", row)
    eng._mark_catalog_changed()
