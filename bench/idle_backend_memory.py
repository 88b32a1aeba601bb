"""Memory of idle backends, pgbundle server vs PostgreSQL, side by side.

    python bench/idle_backend_memory.py PGBUNDLE_PORT POSTGRES_PORT [--connections 20]

Opens N psycopg connections to each server (127.0.0.1, user postgres), runs one catalog
query on each, then reads /proc/PID/smaps_rollup of every backend (run it on the servers'
machine, as a user who may read them) and prints the mean USS (private pages), PSS and RSS.
USS is what each further connection costs.
"""

from __future__ import annotations

import argparse
import time

import psycopg


def rollup(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[0].endswith(":"):
                out[parts[0][:-1]] = int(parts[1])
    return out


def measure(port: int, n: int) -> tuple[float, float, float]:
    conns = [psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True)
             for _ in range(n)]
    try:
        for c in conns:
            c.execute("select count(*) from pg_class").fetchone()
        pids = [c.execute("select pg_backend_pid()").fetchone()[0] for c in conns]
        time.sleep(1)
        rs = [rollup(p) for p in pids]
    finally:
        for c in conns:
            c.close()

    def mean(key: str) -> float:
        return sum(r[key] for r in rs) / len(rs) / 1024

    uss = sum(r["Private_Clean"] + r["Private_Dirty"] for r in rs) / len(rs) / 1024
    return uss, mean("Pss"), mean("Rss")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pgbundle_port", type=int)
    ap.add_argument("postgres_port", type=int)
    ap.add_argument("--connections", type=int, default=20)
    a = ap.parse_args()
    for label, port in (("pgbundle server", a.pgbundle_port), ("PostgreSQL", a.postgres_port)):
        uss, pss, rss = measure(port, a.connections)
        print(f"{label:16} idle backend: USS {uss:5.1f} MiB  PSS {pss:5.1f} MiB  RSS {rss:5.1f} MiB"
              f"  (mean of {a.connections})")


if __name__ == "__main__":
    main()
