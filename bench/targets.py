"""The servers a benchmark runs against, started by the tests' own launchers (one place each:
tests/fix_pg.py, tests/fix_server.py, tests/fix_pooler.py), with durable settings: fsync,
synchronous_commit and full_page_writes on, shared_buffers 128MB.

Run the scripts from the repository root (``python bench/bench_pgbench.py``): this module puts
the root on ``sys.path`` so that ``tests.*`` imports.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fix_pg import PgCluster  # noqa: E402
from tests.fix_pooler import PoolerProcess  # noqa: E402
from tests.fix_server import PgbServer  # noqa: E402
from tests.procs import as_postgres, free_port, wait_port  # noqa: E402

__all__ = ["PgCluster", "PgbServer", "PoolerProcess", "as_postgres", "free_port", "wait_port", "postgres",
           "pgbundle_server", "pooler", "close_all"]

DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on", "shared_buffers": "128MB",
           "max_connections": "100"}


def postgres() -> PgCluster:
    """A PostgreSQL 15 cluster with :data:`DURABLE` settings, started."""
    return PgCluster(conf=DURABLE)


def pgbundle_server() -> PgbServer:
    """A ``pgbundle server`` with :data:`DURABLE` settings, started."""
    s = PgbServer(**DURABLE)
    s.start()
    return s


def pooler(upstream_port: int, pool_size: int) -> PoolerProcess:
    """``pgbundle pooler`` in transaction mode in front of 127.0.0.1:``upstream_port``."""
    return PoolerProcess(["--upstream", f"postgresql://127.0.0.1:{upstream_port}", "--unix-socket-dir", "",
                          "--pool-mode", "transaction", "--pool-size", str(pool_size), "--max-connections", "200"])


def close_all(targets: list[PgCluster | PgbServer | PoolerProcess]) -> None:
    """Stop every target started (each one even if another fails) and remove its directory."""
    for t in targets:
        with contextlib.suppress(Exception):
            t.close()
