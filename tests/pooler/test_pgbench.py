"""pgbench through the pooler: -i in session mode, TPC-B and -S in transaction mode, no failures."""

from __future__ import annotations

import re
import subprocess

from .helpers import base_args


def pgbench(port: int, *args: str, timeout: float = 120) -> str:
    r = subprocess.run(["pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", *args, "postgres"],
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"pgbench {args} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


def failed(out: str) -> int:
    m = re.search(r"number of failed transactions: (\d+)", out)
    assert m, out
    return int(m.group(1))


def processed(out: str) -> int:
    m = re.search(r"number of transactions actually processed: (\d+)", out)
    assert m, out
    return int(m.group(1))


def test_pgbench_init_then_tpcb_and_select_only(pg, pooler_factory):
    session = pooler_factory(base_args(pg, "--pool-mode", "session"))
    pgbench(session.port, "-i", "-s", "1", "-q")
    tx = pooler_factory(base_args(pg, "--pool-mode", "transaction", "--pool-size", "5",
                                  "--max-connections", "100"))
    out = pgbench(tx.port, "-n", "-c", "20", "-j", "2", "-T", "5")
    assert failed(out) == 0 and processed(out) > 0
    out = pgbench(tx.port, "-n", "-S", "-c", "20", "-j", "2", "-T", "5")
    assert failed(out) == 0 and processed(out) > 0
    # TPC-B keeps the books balanced: every delta went into every balance exactly once
    r = subprocess.run(["psql", "-X", "-A", "-t", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "-c",
                        "select (select sum(abalance) from pgbench_accounts) = (select sum(delta) from pgbench_history)"
                        " and (select sum(bbalance) from pgbench_branches) = (select sum(delta) from pgbench_history)"],
                       capture_output=True, text=True)
    assert r.stdout.strip() == "t", r.stdout + r.stderr


def test_pgbench_connect_per_transaction(pg, pooler_factory):
    """-C: a new client connection for every transaction (the pattern a pooler exists for)."""
    tx = pooler_factory(base_args(pg, "--pool-mode", "transaction", "--pool-size", "5"))
    pgbench(tx.port, "-i", "-s", "1", "-q", "-I", "dtg")
    out = pgbench(tx.port, "-n", "-S", "-C", "-c", "10", "-j", "2", "-t", "50")
    assert failed(out) == 0 and processed(out) == 500
