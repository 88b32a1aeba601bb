"""The fuzz campaign, side by side: one PostgreSQL 15, pgbundle's pooler and (``--pgbouncer``)
pgbouncer 1.18 in front of it, the same seeded inputs from bench/fuzz_sessions.py thrown at each.

    python bench/fuzz_campaign.py --count 100000 --pgbouncer --out bench/results/fuzz.txt

Everything started here binds 127.0.0.1 and is stopped by its pid at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fix_pg import PgCluster  # noqa: E402
from tests.fix_pooler import PoolerProcess  # noqa: E402
from tests.procs import free_port, wait_port  # noqa: E402

HERE = Path(__file__).resolve().parent


def start_pgbouncer(pg: PgCluster, extra: str = "") -> tuple[subprocess.Popen, int, Path]:
    """pgbouncer 1.18 as the postgres user in a temp dir, same pool settings as pgbundle's run
    (``extra``: more [pgbouncer] lines)."""
    root = Path(tempfile.mkdtemp(prefix="pgbundle-fuzz-pgb-"))
    port = free_port()
    (root / "users.txt").write_text('"postgres" ""\n')
    (root / "pgbouncer.ini").write_text(f"""[databases]
* = host=127.0.0.1 port={pg.port}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {root}/users.txt
admin_users = postgres
pool_mode = transaction
default_pool_size = 20
max_client_conn = 2000
logfile = {root}/pgbouncer.log
{extra}""")
    shutil.chown(root, "postgres")
    for f in root.iterdir():
        shutil.chown(f, "postgres")
    proc = subprocess.Popen(["runuser", "-u", "postgres", "--", "/usr/sbin/pgbouncer", str(root / "pgbouncer.ini")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=str(root))
    wait_port(port, 20, proc)
    return proc, port, root


def pgbouncer_pid(root: Path, runuser_pid: int) -> int:
    """pgbouncer's own pid (runuser sits in between)."""
    out = subprocess.run(["pgrep", "-P", str(runuser_pid)], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else runuser_pid


def fuzz(port: int, pid: int, count: int, concurrency: int, seed: int, duration: float) -> str:
    cmd = [sys.executable, str(HERE / "fuzz_sessions.py"), "--port", str(port), "--pid", str(pid), "--count",
           str(count), "--concurrency", str(concurrency), "--seed", str(seed), "--duration", str(duration)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    print(r.stdout[-3000:], r.stderr[-2000:], flush=True)
    return r.stdout.strip().splitlines()[-5:] and "\n".join(r.stdout.strip().splitlines()[-5:])


@click.command()
@click.option("--count", type=int, default=100_000, show_default=True)
@click.option("--concurrency", type=int, default=64, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--duration", type=float, default=1800, show_default=True)
@click.option("--pgbouncer/--no-pgbouncer", default=False, help="also fuzz pgbouncer 1.18")
@click.option("--out", type=click.Path(), default=None, help="append the figures to this file")
def main(count: int, concurrency: int, seed: int, duration: float, pgbouncer: bool, out: str | None) -> None:
    pg = PgCluster(conf={"max_connections": "300"})
    report = [f"# fuzz campaign {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: count={count} "
              f"concurrency={concurrency} seed={seed}"]
    try:
        p = PoolerProcess(["--upstream", f"postgresql://127.0.0.1:{pg.port}", "--unix-socket-dir", "",
                           "--pool-mode", "transaction", "--pool-size", "20", "--admin-users", "postgres",
                           "--max-connections", "2000"])
        try:
            report.append("## pgbundle\n" + fuzz(p.port, p.pid, count, concurrency, seed, duration))
            log = p.log()
            report.append(f"pooler log: {log.count('internal error')} internal errors, "
                          f"{log.count('Traceback')} tracebacks")
        finally:
            p.stop()
        if pgbouncer:
            proc, port, root = start_pgbouncer(pg)
            try:
                report.append("## pgbouncer 1.18\n" + fuzz(port, pgbouncer_pid(root, proc.pid), count, concurrency,
                                                         seed, duration))
            finally:
                os.kill(pgbouncer_pid(root, proc.pid), 15)
                proc.wait(30)
    finally:
        pg.close()
    emit(report, out)


def emit(report: list[str], out: str | None) -> None:
    """Print the report's lines; append them to ``out`` too when given."""
    text = "\n".join(report) + "\n"
    print(text)
    if out:
        with open(out, "a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
