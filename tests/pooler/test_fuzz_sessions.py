"""The CI slice of the fuzz campaign (bench/fuzz_sessions.py): a few thousand seeded inputs --
garbage, mutated startups and streams, truncated and oversized messages, sessions closed at
every protocol step -- against a pooler in front of PostgreSQL 15.  The pooler must live, hold
no client once the fuzzer has closed them all, and still serve a normal client."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import base_args, connect

FUZZER = Path(__file__).resolve().parents[2] / "bench" / "fuzz_sessions.py"


@pytest.mark.timeout(400)
def test_fuzz_sessions_slice(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "--pool-size", "10", "--admin-users", "postgres",
                                 "--max-connections", "1000"))
    r = subprocess.run([sys.executable, str(FUZZER), "--port", str(p.port), "--pid", str(p.pid), "--count", "2000",
                        "--concurrency", "32", "--seed", "7", "--duration", "150", "--close-within", "60"],
                       capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    assert "pooler exits: 0" in out, out[-3000:]
    assert "clients not closed within 60 s: 0" in out, out[-3000:]
    assert "normal client works: yes" in out, out[-3000:]
    assert r.returncode == 0, out[-3000:]
    assert p.alive()
    log = p.log()
    assert "internal error" not in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    with connect(p) as c:
        assert c.execute("select 1").fetchone() == (1,)
