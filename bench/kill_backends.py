"""kill -9 of PostgreSQL backends under ``pgbench -c 20 -S``, through pgbundle and pgbouncer 1.18.

    python bench/kill_backends.py --seconds 24 --kills 3 --out bench/results/kill_backends.md

One PostgreSQL 15 cluster; for each pooler (transaction mode, pool size 20,
server_login_retry = 1): ``pgbench -c 20 -S -T SECONDS -P 1`` through it, and at evenly spaced
times a backend serving the pooler (by PID from pg_stat_activity) is killed with SIGKILL --
the postmaster then ends every backend and runs crash recovery, during which logins get 57P03.
Printed per pooler: clients aborted (of 20), and for each kill the seconds until pgbench's
per-second tps is back to half of what it was before the first kill.  Everything started here
binds 127.0.0.1 and is stopped by PID.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fuzz_campaign import emit, pgbouncer_pid, start_pgbouncer  # noqa: E402

from tests.fix_pg import PgCluster  # noqa: E402
from tests.fix_pooler import PoolerProcess  # noqa: E402

PGBENCH = "/usr/lib/postgresql/15/bin/pgbench"


def victim(pg: PgCluster) -> int | None:
    out = pg.sql("select pid from pg_stat_activity where backend_type = 'client backend' and datname = 'postgres' "
                 "and pid <> pg_backend_pid() and application_name <> 'psql' order by random() limit 1")
    return int(out) if out.strip() else None


def run(pg: PgCluster, port: int, seconds: int, kills: int) -> tuple[int, list[float | None], str]:
    cmd = [PGBENCH, "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-c", "20", "-j", "2", "-S",
           "-T", str(seconds), "-P", "1", "-n", "postgres"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[tuple[float, str]] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.monotonic(), line.rstrip()))

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    start = time.monotonic()
    kill_at = [start + seconds * (i + 1) / (kills + 1) for i in range(kills)]
    kill_times: list[float] = []
    for at in kill_at:
        time.sleep(max(0.0, at - time.monotonic()))
        deadline = time.monotonic() + 5
        pid = None
        while pid is None and time.monotonic() < deadline:
            try:
                pid = victim(pg)
            except RuntimeError:  # in recovery
                time.sleep(0.1)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            kill_times.append(time.monotonic() - start)
    proc.wait(seconds + 60)
    t.join(10)
    text = "\n".join(line for _, line in lines)
    aborted = len(set(re.findall(r"client (\d+) (?:script \d+ )?aborted", text)))
    # progress: "progress: 3.0 s, 1234.5 tps, ..."
    prog = [(float(a), float(b)) for a, b in re.findall(r"progress: ([\d.]+) s, ([\d.]+) tps", text)]
    before = [tps for s, tps in prog if kill_times and s <= kill_times[0]]
    base = sum(before) / len(before) if before else 0.0
    back: list[float | None] = []
    for kt in kill_times:
        after = [s for s, tps in prog if s > kt + 0.5 and tps >= base / 2]
        back.append(round(after[0] - kt, 1) if after else None)
    return aborted, back, text


@click.command()
@click.option("--seconds", type=int, default=24, show_default=True)
@click.option("--kills", type=int, default=3, show_default=True)
@click.option("--out", type=click.Path(), default=None)
def main(seconds: int, kills: int, out: str | None) -> None:
    pg = PgCluster(conf={"max_connections": "200", "restart_after_crash": "on"})
    report = [f"# kill -9 of {kills} backends under pgbench -c 20 -S -T {seconds} "
              f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
              "| pooler | clients aborted (of 20) | s until tps back to half, per kill |", "|---|---|---|"]
    try:
        subprocess.run([PGBENCH, "-i", "-s", "2", "-q", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres",
                        "postgres"], check=True, capture_output=True)
        p = PoolerProcess(["--upstream", f"postgresql://127.0.0.1:{pg.port}", "--unix-socket-dir", "",
                           "--pool-mode", "transaction", "--pool-size", "20", "-s", "server_login_retry=1"])
        try:
            aborted, back, text = run(pg, p.port, seconds, kills)
            report.append(f"| pgbundle | {aborted} | {back} |")
            print(text[-1500:], flush=True)
        finally:
            p.stop()
        ini_extra = "server_login_retry = 1\n"
        proc, port, root = start_pgbouncer(pg, ini_extra)
        try:
            aborted, back, text = run(pg, port, seconds, kills)
            report.append(f"| pgbouncer 1.18 | {aborted} | {back} |")
            print(text[-1500:], flush=True)
        finally:
            os.kill(pgbouncer_pid(root, proc.pid), signal.SIGTERM)
            proc.wait(30)
    finally:
        pg.close()
    report.append("")
    report.append("None = throughput did not come back to half before pgbench ended (all clients aborted).")
    emit(report, out)


if __name__ == "__main__":
    main()
