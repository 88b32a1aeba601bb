"""Side-by-side benchmark: pgbundle server vs PostgreSQL 15 on this machine, one run.

    python tests/server/bench_server.py [--seconds 15] [--clients 10]

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
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def wait_ready(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "postgres",
                            "-Atc", "select 1"], capture_output=True, text=True)
        if r.returncode == 0:
            return
        time.sleep(0.2)
    raise TimeoutError(f"server on {port} not ready")


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


class Postgres:
    def __init__(self, root: Path) -> None:
        self.root = root / "pg"
        self.root.mkdir()
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self.port = free_port()
        self.data = self.root / "data"
        subprocess.run(as_postgres() + [str(PGBIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                                        "-E", "UTF8", "--locale=C"], check=True, capture_output=True, cwd="/tmp")
        conf = {"listen_addresses": "'127.0.0.1'", "port": str(self.port), "unix_socket_directories": f"'{self.root}'",
                "fsync": "on", "synchronous_commit": "on", "full_page_writes": "on", "shared_buffers": "128MB",
                "max_connections": "100"}
        with open(self.data / "postgresql.conf", "a") as f:
            for k, v in conf.items():
                f.write(f"{k} = {v}\n")
        log = open(self.root / "log", "ab")
        self.proc = subprocess.Popen(as_postgres() + [str(PGBIN / "postgres"), "-D", str(self.data)], stdout=log,
                                     stderr=subprocess.STDOUT, cwd="/tmp", start_new_session=True)
        wait_ready(self.port)

    def stop(self) -> None:
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGINT)
        self.proc.wait(60)


class Pgbundle:
    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.data = root / "pgbundle"
        out = open(root / "pgbundle.out", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "pgbundle.shared.cli", "server", "-D", str(self.data),
                                      "--port", str(self.port), "--listen-addresses", "127.0.0.1", "-c",
                                      "shared_buffers=128MB", "-c", "fsync=on", "-c", "synchronous_commit=on"],
                                     stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_ready(self.port)

    def stop(self) -> None:
        os.kill(self.proc.pid, signal.SIGINT)
        self.proc.wait(60)


def stop_all(servers: list, root: Path) -> None:
    """Stop every server started (each one even if another fails) and remove their directory."""
    for s in servers:
        try:
            s.stop()
        except Exception:
            pass
    shutil.rmtree(root, ignore_errors=True)


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
    servers = []
    try:
        pg = Postgres(root)
        servers.append(pg)
        pgb = Pgbundle(root)
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
        stop_all(servers, root)


if __name__ == "__main__":
    main()
