"""pgbouncer's TCP settings on the pooler's real sockets, client side and server side, read back
with ``ss`` (iproute2): the keepalive timer stands for the whole set.  (TCP_USER_TIMEOUT is not shown by ss.)"""

from __future__ import annotations

import re
import subprocess
import time

import psycopg

from .helpers import base_args


def _sockets(pid: int) -> list[str]:
    out = subprocess.run(["ss", "-tnopH", "state", "established"], capture_output=True, text=True, timeout=30).stdout
    return [line for line in out.splitlines() if f"pid={pid}," in line]


def _keepalive_timer(line: str) -> str | None:
    """ss's keepalive timer, e.g. ``36sec``, ``9min59sec``, ``6.780ms``; None without keepalive."""
    m = re.search(r"timer:\(keepalive,([^,]+),", line)
    return m.group(1) if m else None


def test_keepalive_settings_on_client_and_server_sockets(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "-s", "tcp_keepidle=37", "-s", "tcp_keepintvl=5", "-s", "tcp_keepcnt=3"))
    with psycopg.connect(p.dsn(), autocommit=True) as conn:
        conn.execute("SELECT 1")

        def sides() -> tuple[list[str], list[str]]:
            lines = _sockets(p.pid)
            return ([ln for ln in lines if ln.split()[2].endswith(f":{p.port}")],
                    [ln for ln in lines if ln.split()[3].endswith(f":{pg.port}")])

        def ok(lines: list[str]) -> bool:
            # tcp_keepidle=37: under a minute (the OS default idle time is 7200 s: "119min");
            # a socket with data in flight shows its retransmit timer instead: asked again
            return bool(lines) and all((t := _keepalive_timer(ln)) is not None and "min" not in t for ln in lines)

        deadline = time.monotonic() + 30
        while True:
            client_side, server_side = sides()
            if ok(client_side) and ok(server_side) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert ok(client_side) and ok(server_side), (client_side, server_side)


def test_keepalive_off(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "-s", "tcp_keepalive=0"))
    with psycopg.connect(p.dsn(), autocommit=True) as conn:
        conn.execute("SELECT 1")
        lines = _sockets(p.pid)
        assert lines and all("keepalive" not in ln for ln in lines), lines


def test_unreachable_upstream_is_logged_as_pgbouncer_does(pooler_factory):
    import re

    from tests.procs import free_port

    from .helpers import psql

    dead = free_port()  # nothing listens there
    p = pooler_factory(["--upstream", f"postgresql://127.0.0.1:{dead}", "--unix-socket-dir", "", "--auth-type",
                        "trust", "-s", "server_login_retry=1", "-s", "query_wait_timeout=2"])
    r = psql(p.port, "SELECT 1", check=False)
    assert r.returncode != 0
    log = p.log()
    assert re.search(rf"LOG S-0x[0-9a-f]+: postgres/postgres@127\.0\.0\.1:{dead} closing because: connect failed "
                     r"\(age=0s\)", log), log
    assert "connect failed: " in log and ("Connection refused" in log or "ECONNREFUSED" in log), log


def test_unresolvable_first_host_is_skipped(pg, pooler_factory, tmp_path):
    """host=a,b: a host that cannot be resolved is skipped for the next one, for every connection
    (round-robin starts at each host in turn, disable always at the first)."""
    for balance in ("round-robin", "disable"):
        cfg = tmp_path / f"{balance}.ini"
        cfg.write_text(f"[databases]\npostgres = host=no-such-host.invalid,127.0.0.1 port={pg.port} "
                       f"load_balance_hosts={balance}\n[pgbouncer]\nauth_type = trust\n"
                       f"auth_file = {tmp_path / 'users.txt'}\nunix_socket_dir =\npool_mode = transaction\n"
                       "server_lifetime = 0\n")
        (tmp_path / "users.txt").write_text('"postgres" ""\n')
        p = pooler_factory(["--config", str(cfg)])
        for _ in range(3):
            with psycopg.connect(p.dsn(), connect_timeout=10, autocommit=True) as c:
                assert c.execute("SELECT 1").fetchone() == (1,)
        assert "no-such-host.invalid" in p.log() and "trying the next host" in p.log()
