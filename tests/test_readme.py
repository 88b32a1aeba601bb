"""The README's two commands, as written: install-and-run in a clean virtual environment, and the
test command that .ci/run executes."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _block_after(heading: str) -> str:
    text = (REPO / "README.md").read_text()
    section = text.split(heading, 1)[1]
    m = re.search(r"```sh\n(.*?)\n```", section, re.S)
    assert m, f"no command block after {heading!r}"
    return m.group(1).strip()


def test_ci_runs_the_readme_test_command():
    readme_cmd = _block_after("<!-- test-command -->")
    out = subprocess.run(["awk", '/<!-- test-command -->/{getline; getline; print; exit}', "README.md"],
                         cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert out == readme_cmd
    assert "pytest" in readme_cmd and "pip install" in readme_cmd
    assert os.access(REPO / ".ci" / "run", os.X_OK)


def test_install_and_run_in_a_clean_venv(tmp_path):
    cmd = _block_after("## Install and run")
    assert "pgbundle pooler" in cmd
    with socket.socket() as s:  # the command listens on pgbouncer's default port
        try:
            s.bind(("127.0.0.1", 6432))
        except OSError:
            raise AssertionError("port 6432 is taken: the README command cannot run here") from None
    src = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    for f in files:
        if (REPO / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, src / f)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {**os.environ, "PATH": f"{venv}/bin:{os.environ['PATH']}", "VIRTUAL_ENV": str(venv)}
    env.pop("PYTHONPATH", None)
    log = open(tmp_path / "run.log", "wb")
    proc = subprocess.Popen(["bash", "-c", cmd], cwd=src, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while "connect with:" not in (tmp_path / "run.log").read_text(errors="replace"):
            assert proc.poll() is None, (tmp_path / "run.log").read_text()
            assert time.monotonic() < deadline, "the README command did not come up"
            time.sleep(0.2)
        assert (venv / "bin" / "pgbundle").exists()
        r = subprocess.run(["psql", "-X", "-A", "-t", "-h", "127.0.0.1", "-p", "6432", "-U", "postgres", "postgres",
                            "-c", "create table readme_check(a int); insert into readme_check values (7); "
                                  "select a from readme_check"], capture_output=True, text=True, timeout=60)
        assert r.stdout.strip().endswith("7"), r.stdout + r.stderr
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    assert proc.returncode == 0, (tmp_path / "run.log").read_text()[-3000:]
    assert (src / "pgbundle-data" / "PG_VERSION").exists()
