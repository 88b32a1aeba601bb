"""pgbadger (Debian's 12) reads pgbundle's log as it reads pgbouncer's: a scripted set of sessions
through the pooler, then pgbadger's JSON report counts the same connections, hosts, databases and
users (pgbouncer 1.18 gives exactly these numbers for the same script)."""

from __future__ import annotations

import json
import subprocess

from .helpers import base_args, psql


def test_pgbadger_counts_the_sessions(tmp_path, pg, pooler_factory):
    logfile = tmp_path / "pooler.log"
    p = pooler_factory(base_args(pg, "--auth-type", "trust", "--logfile", str(logfile)))
    for _ in range(5):
        psql(p.port, "SELECT 1")
    psql(p.port, "SELECT 1", db="template1")
    p.stop()
    report = tmp_path / "report.json"
    r = subprocess.run(["pgbadger", "-q", "-o", str(report), "-x", "json", str(logfile)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    info = json.loads(report.read_text())["pgb_connection_info"]
    assert info["count"] == 6, info
    assert info["host"] == {"127.0.0.1": 6}
    assert info["database"] == {"postgres": 5, "template1": 1}
    assert info["user"] == {"postgres": 6}
