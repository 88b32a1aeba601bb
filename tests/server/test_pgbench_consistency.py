"""pgbench's invariant on pgbundle server: after concurrent TPC-B runs the sums of
abalance, tbalance, bbalance and history.delta are equal — also after kill -9 of the
whole server in the middle of a run and a restart, with nothing acknowledged lost."""

from __future__ import annotations

import glob
import os
import subprocess
import tempfile
import time


def _pgbench(srv, *args: str, cwd: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(["pgbench", "-h", "127.0.0.1", "-p", str(srv.port), "-U", "postgres", *args, "postgres"],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)


def _sums(srv) -> tuple:
    with srv.connect() as c:
        return c.execute(
            "select (select sum(abalance) from pgbench_accounts), (select sum(tbalance) from pgbench_tellers), "
            "(select sum(bbalance) from pgbench_branches), (select coalesce(sum(delta), 0) from pgbench_history), "
            "(select count(*) from pgbench_history), (select count(*) from pgbench_branches), "
            "(select count(*) from pgbench_accounts)").fetchone()


def test_pgbench_c10_sums_agree_and_survive_kill9(server_factory):
    srv = server_factory(shared_buffers="32MB")
    r = _pgbench(srv, "-i", "-s", "1", "-q", timeout=300)
    assert r.returncode == 0, r.stderr
    # 10 clients, simple protocol, 10 seconds
    r = _pgbench(srv, "-n", "-c", "10", "-j", "2", "-T", "10")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "number of failed transactions: 0" in r.stdout
    a, t, b, h, n, nb, na = _sums(srv)
    assert n > 0
    assert a == t == b == h, (a, t, b, h)
    assert (nb, na) == (1, 100000)

    # now the same with prepared statements, killed (postmaster and every child) mid-run
    logdir = tempfile.mkdtemp(prefix="pgbench-log-")
    before = n
    proc = subprocess.Popen(["pgbench", "-h", "127.0.0.1", "-p", str(srv.port), "-U", "postgres", "-n", "-c", "10",
                             "-j", "2", "-T", "30", "-M", "prepared", "-l", "postgres"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=logdir)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until transactions are being acknowledged
            logged = sum(os.path.getsize(p) for p in glob.glob(os.path.join(logdir, "pgbench_log.*")))
            if logged > 2000:
                break
            time.sleep(0.2)
        time.sleep(2)
        srv.kill9()
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    acknowledged = 0
    for p in glob.glob(os.path.join(logdir, "pgbench_log.*")):
        with open(p) as f:
            acknowledged += sum(1 for line in f if line.strip())
    assert acknowledged > 0, out
    srv.start()
    a, t, b, h, n, nb, na = _sums(srv)
    assert a == t == b == h, (a, t, b, h)
    assert n - before >= acknowledged, (n, before, acknowledged)
    assert (nb, na) == (1, 100000)
    # and the server goes on working
    r = _pgbench(srv, "-n", "-c", "4", "-j", "2", "-t", "20", "-M", "extended")
    assert r.returncode == 0, r.stdout + r.stderr
    a, t, b, h, n2, _nb, _na = _sums(srv)
    assert a == t == b == h and n2 == n + 80
