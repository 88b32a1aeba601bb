"""Side-by-side benchmark: pgbundle server vs PostgreSQL 15 on this machine, one run.

    python bench/bench_server.py [--seconds 15] [--clients 10]

Both servers run with fsync on, synchronous_commit on, full_page_writes on and
shared_buffers 128MB.  Workloads (pgbench custom scripts, simple protocol):

* insert: one single-row INSERT per transaction (autocommit) into a table with a
  bigserial primary key — commits/s, i.e. WAL flushes with group commit;
* select: one primary-key SELECT per transaction on a 100 000-row table.

Prints tps for each and the ratio pgbundle / PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from targets import close_all, pgbundle_server, postgres

PGBIN = Path(os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin"))
SETUP = [
    "drop table if exists bench_ins",
    "drop table if exists bench_sel",
    "create table bench_ins (id bigserial primary key, v int)",
    "create table bench_sel (id int primary key, v int)",
    "insert into bench_sel select g, g from generate_series(1, 100000) g",
]
SCRIPTS = {
    "insert": "\\set v random(1, 1000000)\nINSERT INTO bench_ins (v) VALUES (:v);\n",
    "select": "\\set id random(1, 100000)\nSELECT v FROM bench_sel WHERE id = :id;\n",
}


def psql(port: int, sql: str) -> None:
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port), "-U",
                    "postgres", "-d", "postgres", "-c", sql], check=True, capture_output=True)


def pgbench(port: int, script: Path, clients: int, seconds: int) -> float:
    r = subprocess.run(["pgbench", "-n", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-c", str(clients),
                        "-j", "2", "-T", str(seconds), "-f", str(script), "postgres"],
                       capture_output=True, text=True, timeout=seconds + 120)
    m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", r.stdout)
    if not m:
        raise RuntimeError(f"pgbench failed: {r.stdout}\n{r.stderr}")
    return float(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--clients", type=int, default=10)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pgbundle-bench-"))
    os.chmod(root, 0o755)
    scripts = {}
    for name, text in SCRIPTS.items():
        p = root / f"{name}.sql"
        p.write_text(text)
        scripts[name] = p
    results: dict[str, dict[str, float]] = {}
    servers: list = []
    try:
        pg = postgres()
        servers.append(pg)
        pgb = pgbundle_server()
        servers.append(pgb)
        for label, srv in (("postgresql-15", pg), ("pgbundle", pgb)):
            for stmt in SETUP:
                psql(srv.port, stmt)
            psql(srv.port, "checkpoint")
            results[label] = {}
            for name, script in scripts.items():
                results[label][name] = pgbench(srv.port, script, args.clients, args.seconds)
        print(f"{'workload':<10} {'postgresql-15 tps':>18} {'pgbundle tps':>14} {'ratio':>8}")
        for name in scripts:
            a, b = results["postgresql-15"][name], results["pgbundle"][name]
            print(f"{name:<10} {a:>18.0f} {b:>14.0f} {b / a:>8.3f}")
    finally:
        close_all(servers)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
