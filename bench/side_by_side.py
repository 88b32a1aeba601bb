#!/usr/bin/env python3
"""Side-by-side pgbench runs: PostgreSQL 15 direct, pgbouncer, pgbundle pooler -- one run, one table.

Complements ../shared/bench/compare.sh for cases it does not cover (e.g. -M prepared at c50).
Everything runs on 127.0.0.1 and is stopped on exit.  Needs /usr/lib/postgresql/15/bin,
pgbench, and pgbouncer (``apt-get install -y pgbouncer``).

    python bench/side_by_side.py --case "-S -M prepared" --clients 10,50 -T 15
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from targets import free_port, wait_port

from tests.procs import as_postgres

PGBIN = "/usr/lib/postgresql/15/bin"


def as_pg(cmd: list[str]) -> list[str]:
    return as_postgres() + cmd


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", action="append", required=True, help="pgbench flags, e.g. '-S -M prepared'")
    ap.add_argument("--clients", default="10,50")
    ap.add_argument("-T", type=int, default=15)
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--pool-size", type=int, default=20)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="sbs-")
    os.chmod(root, 0o755)
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
    procs: list[subprocess.Popen] = []
    pg_port, bt_port, bs_port, pb_port = free_port(), free_port(), free_port(), free_port()
    try:
        data = f"{root}/data"
        subprocess.run(as_pg([f"{PGBIN}/initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-locale"]),
                       check=True, capture_output=True, cwd="/tmp")
        with open(f"{data}/postgresql.conf", "a") as f:
            f.write(f"listen_addresses='127.0.0.1'\nport={pg_port}\nunix_socket_directories='{root}'\n"
                    "max_connections=200\nfsync=on\nsynchronous_commit=on\n")
        procs.append(subprocess.Popen(as_pg([f"{PGBIN}/postgres", "-D", data]), cwd="/tmp",
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(pg_port, 30)
        time.sleep(0.5)
        subprocess.run(["pgbench", "-i", "-q", "-s", str(args.scale), "-h", "127.0.0.1", "-p", str(pg_port),
                        "-U", "postgres", "postgres"], check=True, capture_output=True)
        with open(f"{root}/users.txt", "w") as f:
            f.write('"postgres" ""\n')
        most = max(int(x) for x in args.clients.split(","))
        # session mode needs a server per client; transaction mode gets the pool size under test
        for name, port, mode, pool in (("bnc_tx", bt_port, "transaction", args.pool_size),
                                       ("bnc_session", bs_port, "session", max(most, args.pool_size))):
            with open(f"{root}/{name}.ini", "w") as f:
                f.write(f"[databases]\n* = host=127.0.0.1 port={pg_port}\n[pgbouncer]\nlisten_addr=127.0.0.1\n"
                        f"listen_port={port}\nunix_socket_dir=\nauth_type=trust\nauth_file={root}/users.txt\n"
                        f"pool_mode={mode}\ndefault_pool_size={pool}\nmax_client_conn=1000\n"
                        f"log_connections=0\nlog_disconnections=0\npidfile={root}/{name}.pid\n")
            if os.geteuid() == 0:
                shutil.chown(f"{root}/{name}.ini", "postgres")
            procs.append(subprocess.Popen(as_pg(["pgbouncer", f"{root}/{name}.ini"]), cwd="/tmp",
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_port(port, 30)
        pb = subprocess.Popen([sys.executable, "-m", "pgbundle.shared.cli", "pooler", "--listen-port", str(pb_port),
                               "--upstream", f"postgresql://127.0.0.1:{pg_port}", "--pool-mode", "transaction",
                               "--pool-size", str(args.pool_size), "--max-connections", "1000",
                               "--unix-socket-dir", "", "-s", "log_connections=0", "-s", "log_disconnections=0",
                               "-s", "log_stats=0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(pb)
        wait_port(pb_port, 30)
        def pidof(name: str) -> int:
            with open(f"{root}/{name}.pid") as f:
                return int(f.read().split()[0])

        targets = [("direct", pg_port, None), ("pgbouncer-tx", bt_port, pidof("bnc_tx")),
                   ("pgbouncer-session", bs_port, pidof("bnc_session")), ("pgbundle-tx", pb_port, pb.pid)]
        print(f"{'case':<18}{'c':>4}  {'target':<18}{'tps':>9}{'status':>9}{'pooler us/tx':>13}  ratios", flush=True)
        for case in args.case:
            for c in [int(x) for x in args.clients.split(",")]:
                res = {}
                for name, port, pid in targets:
                    c0 = cpu_seconds(pid) if pid else 0.0
                    r = subprocess.run(["pgbench", "-n", *case.split(), "-c", str(c), "-j", "2", "-T", str(args.T),
                                        "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "postgres"],
                                       capture_output=True, text=True)
                    out = r.stdout + r.stderr
                    m = re.search(r"tps = ([\d.]+) \(without", out)
                    n = re.search(r"actually processed: (\d+)", out)
                    fl = re.search(r"failed transactions: (\d+)", out)
                    tps = float(m.group(1)) if m else 0.0
                    ntx = int(n.group(1)) if n else 0
                    us = (cpu_seconds(pid) - c0) * 1e6 / ntx if pid and ntx else 0.0
                    res[name] = tps
                    aborted = re.search(r"(\d+) of \d+ clients? aborted|aborted in command", out)
                    status = "ok" if r.returncode == 0 and fl and fl.group(1) == "0" and not aborted else (
                        f"fail:{fl.group(1)}" if fl and fl.group(1) != "0" else "ABORT")
                    ratios = ""
                    if name == "pgbundle-tx":
                        ratios = "  ".join(f"{tps / res[k]:.2f}x {k}" for k in ("direct", "pgbouncer-tx",
                                                                               "pgbouncer-session") if res.get(k))
                    print(f"{case:<18}{c:>4}  {name:<18}{tps:>9.0f}{status:>9}{us:>13.1f}  {ratios}", flush=True)
    finally:
        for p in reversed(procs):
            try:
                p.send_signal(signal.SIGINT)
                p.wait(20)
            except Exception:
                p.kill()
        subprocess.run(["pkill", "-f", root], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
