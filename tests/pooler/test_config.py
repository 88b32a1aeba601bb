"""Configuration errors and the version, as the command line reports them."""

from __future__ import annotations

import subprocess
import sys


def test_cli_reports_config_errors(tmp_path):
    (tmp_path / "c.ini").write_text("[pgbouncer]\nbogus_key = 1\n")
    r = subprocess.run([sys.executable, "-m", "pgbundle.shared.cli", "pooler", "--config", str(tmp_path / "c.ini")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "bogus_key" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "pgbundle.shared.cli", "pooler", "--upstream", "postgresql://x",
                        "-s", "pool_mode=nope"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "pool_mode" in r.stderr


def test_version():
    r = subprocess.run([sys.executable, "-m", "pgbundle.shared.cli", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and "pgbundle" in r.stdout
