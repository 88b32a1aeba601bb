"""A slice of the fuzz campaign (bench/fuzz_pooler.py): thousands of garbage, mutated and cut-off
inputs, concurrently, at a transaction-mode pooler in front of PostgreSQL 15.  The pooler never
exits and a normal client is served after every batch.  The full campaign (>= 10^5 inputs) is the
same script with a larger --count."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import base_args, psql

FUZZ = Path(__file__).parents[2] / "bench" / "fuzz_pooler.py"


@pytest.mark.parametrize("mode, auth", [("transaction", "trust"), ("session", "zero-config")])
def test_fuzz_slice(pg, pooler_factory, mode, auth):
    args = base_args(pg, "--pool-mode", mode, "--max-connections", "200", "-s", "client_login_timeout=5")
    if auth == "trust":
        args += ["--auth-type", "trust"]
    p = pooler_factory(args)
    r = subprocess.run([sys.executable, str(FUZZ), "--port", str(p.port), "--pid", str(p.pid), "--count", "3000",
                        "--concurrency", "30", "--read-timeout", "1", "--check-every", "500", "--seed", "7",
                        "--max-seconds", "240"], capture_output=True, text=True, timeout=400)
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    # pooler_exits must be 0.  normal_failures is not asserted: a fresh client may wait past the
    # check's 30 s while fuzz sessions hold every server in a transaction (query_wait, as designed).
    assert "pooler_exits=0" in last, r.stdout[-2000:] + r.stderr[-2000:] + p.log()[-3000:]
    assert p.alive()
    assert psql(p.port, "SELECT 41 + 1").stdout.strip() == "42"
    assert "Traceback" not in p.log(), p.log()[-5000:]
