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


def test_every_pgbouncer_setting_starts_and_shows(tmp_path, pg, pooler_factory):
    """A pgbouncer.ini with every setting of pgbouncer 1.25's doc/config.md starts, serves, and
    SHOW CONFIG lists every one of them with the value from the file."""
    from pathlib import Path

    import psycopg

    from tests.procs import free_port

    port = free_port()
    text = (Path(__file__).parents[1] / "data" / "pgbouncer-all-settings.ini").read_text()
    text = text.replace("{port}", str(port)).replace("{upstream_port}", str(pg.port)).replace("{dir}", str(tmp_path))
    (tmp_path / "pgbouncer.ini").write_text(text)
    (tmp_path / "users.txt").write_text('"postgres" ""\n"stats" ""\n')
    pooler = pooler_factory(["--config", str(tmp_path / "pgbouncer.ini")], port=port)
    with psycopg.connect(pooler.dsn(dbname="app"), autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with psycopg.connect(pooler.dsn(dbname="pgbouncer"), autocommit=True) as conn:
        shown = {r[0]: r[1] for r in conn.execute("SHOW CONFIG", prepare=False).fetchall()}
    keys = []
    section = None
    for line in text.splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "pgbouncer" and "=" in line and not line.startswith(";"):
            keys.append(line.split("=", 1)[0].strip())
    missing = [k for k in keys if k not in shown]
    assert not missing, missing
    assert shown["application_name_add_host"] == "1" and shown["peer_id"] == "1"
    assert shown["conffile"] == str(tmp_path / "pgbouncer.ini") and shown["dns_max_ttl"] == "15"
    assert pooler.alive()


def test_debians_stock_ini_starts_with_no_databases(tmp_path, pooler_factory):
    """Debian's /etc/pgbouncer/pgbouncer.ini (empty [databases]): the pooler starts with no databases
    -- no bundled server -- and a client is told ``no such database`` (pgbouncer 1.18 does the same)."""
    import os
    import re
    import subprocess
    from pathlib import Path

    from tests.procs import free_port

    port = free_port()
    text = (Path(__file__).parents[1] / "data" / "debian-pgbouncer.ini").read_text()
    for key, value in (("logfile", tmp_path / "p.log"), ("pidfile", tmp_path / "p.pid"), ("listen_port", port),
                       ("unix_socket_dir", tmp_path), ("auth_file", tmp_path / "u.txt"), ("listen_addr", "127.0.0.1")):
        text = re.sub(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
    (tmp_path / "pgbouncer.ini").write_text(text)
    (tmp_path / "u.txt").write_text('"postgres" "pw"\n')
    p = pooler_factory([str(tmp_path / "pgbouncer.ini")], port=port, cwd=str(tmp_path))
    r = subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "postgres",
                        "-c", "select 1"],
                       capture_output=True, text=True, timeout=60, env={**os.environ, "PGPASSWORD": "pw"})
    assert r.returncode != 0 and "FATAL:  no such database: postgres" in r.stderr, r.stderr
    assert not (tmp_path / "pgbundle-data").exists() and p.alive()
