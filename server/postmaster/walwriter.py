"""The WAL writer (PostgreSQL's walwriter.c).

Job: every ``wal_writer_delay`` (200 ms) write and flush the WAL inserted so far, so
that commits made with ``synchronous_commit = off`` become durable within about three
delays and backends seldom have to write WAL themselves.

Signals: SIGTERM exits 0, SIGUSR1 wakes it, SIGQUIT exits at once.
Crash meaning: attached to shared memory → crash reset.

Shared state: ``write_pos``/``flush_pos`` under WALWriteLock (see xlog).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgbundle.server.postmaster.auxprocess import AuxProcess

if TYPE_CHECKING:
    from pgbundle.server.postmaster.launch import ChildContext


def main(ctx: ChildContext) -> int:
    aux = AuxProcess(ctx, "walwriter", "WalWriterMain")
    env = aux.env
    while True:
        if aux.take("shutdown"):
            env.xlog.background_flush()
            aux.detach()
            return 0
        env.xlog.background_flush()
        aux.wait(int(ctx.settings.value("wal_writer_delay")) / 1000.0)
