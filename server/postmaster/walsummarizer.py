"""The WAL summarizer (PostgreSQL 17's walsummarizer.c).

Job: with ``summarize_wal = on``, read the flushed WAL continuously and write summary
files to ``pg_wal/summaries/`` telling which blocks of which relation forks were
modified in an LSN range (what an incremental backup needs).  A summary covers the WAL
from where the previous one ended up to a checkpoint's redo point or the end of a
segment, whichever comes first; its name is PostgreSQL's
``TTTTTTTT`` timeline + start LSN + end LSN in hex, ``.summary``.  Contents here: JSON
``{"start": lsn, "end": lsn, "blocks": [[dboid, relnode, fork, [blocks...]], ...]}``.
Summaries older than ``wal_summary_keep_time`` are removed.  Sleeps in 200 ms steps
when there is nothing new.

Signals: SIGTERM exits 0 (SIGINT is treated the same, as in PostgreSQL); SIGUSR1 wakes
it; SIGQUIT exits at once.  Crash meaning: attached to shared memory → crash reset.

Shared state: ``summarized_lsn`` (written only by this process).
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import TYPE_CHECKING

from pgbundle.server.access.xlog import WalReader
from pgbundle.server.postmaster.auxprocess import AuxProcess

if TYPE_CHECKING:
    from pgbundle.server.postmaster.launch import ChildContext


def summary_name(start: int, end: int, tli: int = 1) -> str:
    return f"{tli:08X}{start >> 32:08X}{start & 0xFFFFFFFF:08X}{end >> 32:08X}{end & 0xFFFFFFFF:08X}.summary"


def main(ctx: ChildContext) -> int:
    aux = AuxProcess(ctx, "walsummarizer", "WalSummarizerMain", signals={signal.SIGINT: "shutdown"})
    env = aux.env
    ctl = env.ctl
    ctl.set("summarizer_pid", os.getpid())
    sdir = os.path.join(ctx.datadir, "pg_wal", "summaries")
    os.makedirs(sdir, exist_ok=True)
    segsize = env.xlog.segsize
    start = _resume_point(sdir) or ctl.get("redo_ptr")
    ctl.set("summarized_lsn", start)
    reader = WalReader(ctx.datadir, segsize)
    last_cleanup = 0.0
    while True:
        if aux.take("shutdown"):
            aux.detach()
            return 0
        flushed = env.xlog.flush_pos
        seg_end = (start // segsize + 1) * segsize
        if flushed >= seg_end or flushed - start > 0 and _idle(aux):
            end, blocks = _summarize(reader, start, min(flushed, seg_end))
            if end > start:
                _write(sdir, start, end, blocks)
                start = end
                ctl.set("summarized_lsn", start)
                continue
        now = time.time()
        if now - last_cleanup > 60:
            last_cleanup = now
            _cleanup(sdir, int(ctx.settings.value("wal_summary_keep_time")) * 60)
        aux.wait(0.2)


def _idle(aux: AuxProcess) -> bool:
    return True


def _resume_point(sdir: str) -> int:
    best = 0
    for name in os.listdir(sdir):
        if name.endswith(".summary") and len(name) == 48:
            best = max(best, int(name[24:32], 16) << 32 | int(name[32:40], 16))
    return best


def _summarize(reader: WalReader, start: int, limit: int) -> tuple[int, dict[tuple[int, int, int], set[int]]]:
    blocks: dict[tuple[int, int, int], set[int]] = {}
    end = start
    lsn = start
    reader._cache.clear()
    while lsn < limit:
        rec = reader.read_record(lsn)
        if rec is None:
            break
        for dboid, relnode, fork, block, _flags, _img, _data in rec.blocks:
            blocks.setdefault((dboid, relnode, fork), set()).add(block)
        end = lsn = rec.end
    return end, blocks


def _write(sdir: str, start: int, end: int, blocks: dict[tuple[int, int, int], set[int]]) -> None:
    body = {"start": start, "end": end,
            "blocks": [[d, r, f, sorted(b)] for (d, r, f), b in sorted(blocks.items())]}
    path = os.path.join(sdir, summary_name(start, end))
    with open(path + ".tmp", "w") as f:
        json.dump(body, f)
    os.rename(path + ".tmp", path)


def _cleanup(sdir: str, keep_seconds: int) -> None:
    if keep_seconds <= 0:
        return
    cutoff = time.time() - keep_seconds
    for name in os.listdir(sdir):
        p = os.path.join(sdir, name)
        try:
            if name.endswith(".summary") and os.path.getmtime(p) < cutoff:
                os.unlink(p)
        except OSError:
            pass
