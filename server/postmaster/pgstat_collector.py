"""The statistics collector (PostgreSQL ≤ 14's pgstat.c process).

Job: receive the counters backends send (one datagram per backend per ≤ 500 ms, see
:mod:`pgbundle.server.utils.pgstat`) and add them into the shared statistics region
that pg_stat_database, pg_stat_user_tables and the autovacuum launcher read.  At a clean
shutdown it saves the region to ``pg_stat/pgstat.stat``; at the next clean start it
loads it back; after a crash the file is discarded and statistics start from zero
(PostgreSQL's rule).

Signals: SIGTERM = save and exit 0; SIGQUIT exits at once.
Crash meaning: not a crash of shared memory contents that matter for data (only
statistics), but it is attached to shared memory, so the postmaster treats its crash
like any other (crash reset).

Shared state: the statistics region; this process is its only writer, readers take
no lock (a torn counter is acceptable for statistics).  Shown in pg_stat_activity as
'stats collector' (PostgreSQL ≤ 14's name for the process).
"""

from __future__ import annotations

import os
import select
from typing import TYPE_CHECKING, Any

import msgspec

from pgbundle.server.postmaster.auxprocess import AuxProcess
from pgbundle.server.utils import pgstat

if TYPE_CHECKING:
    from pgbundle.server.postmaster.launch import ChildContext

STAT_FILE = os.path.join("pg_stat", "pgstat.stat")


def main(ctx: ChildContext, load_saved: bool) -> int:
    aux = AuxProcess(ctx, "stats collector", "PgStatMain")
    env = aux.env
    region = pgstat.Region(env.shm)
    path = os.path.join(ctx.datadir, STAT_FILE)
    lay = env.shm.layout
    size = pgstat.region_size(lay)
    if load_saved:
        try:
            with open(path, "rb") as f:
                data = f.read()
            if len(data) == size:
                env.shm.buf[lay.stats_off: lay.stats_off + size] = data
        except FileNotFoundError:
            pass
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = ctx.stats_recv
    if sock is None:
        raise RuntimeError("statistics collector started without its socket")
    sock.setblocking(False)
    dec = msgspec.msgpack.Decoder()
    while True:
        if aux.take("shutdown"):
            _drain(sock, dec, region)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path + ".tmp", "wb") as f:
                f.write(env.shm.buf[lay.stats_off: lay.stats_off + size])
            os.rename(path + ".tmp", path)
            aux.detach()
            return 0
        fds = [sock.fileno(), aux.latch_fd]
        if ctx.pm_alive_fd >= 0:
            fds.append(ctx.pm_alive_fd)
        try:
            r, _, _ = select.select(fds, [], [], 0.5)
        except InterruptedError:
            r = []
        if ctx.pm_alive_fd in r:
            aux.postmaster_died()
        if aux.latch_fd in r:
            try:
                os.read(aux.latch_fd, 4096)
            except BlockingIOError:
                pass
        _drain(sock, dec, region)


def _drain(sock: Any, dec: Any, region: Any) -> None:
    for _ in range(10000):
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        try:
            region.apply(dec.decode(data))
        except (msgspec.DecodeError, KeyError, TypeError, ValueError):
            continue
