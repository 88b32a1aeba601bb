"""TLS through the pooler: clients -> pooler (client_tls_*) and pooler -> PostgreSQL 15
(server_tls_*), with a cluster whose pg_hba has only ``hostssl`` lines; real psql, psycopg,
asyncpg and pgbench; bad input during the handshake."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess

import asyncpg
import psycopg
import pytest

from pgbundle.shared.protocol import FrameBuffer, decode_backend, encode, messages as m
from tests.fix_pg import PgCluster
from tests.fix_tls import Certs

from .helpers import startup_bytes

TLS_USER, TLS_PASSWORD = "tls_user", "tls secret pw"
CERT_USER = "cert_user"  # PostgreSQL admits it with a client certificate only
SSL_REQUEST = encode(m.SSLRequest())


@pytest.fixture(scope="module")
def pg_ssl(tls_certs: Certs):
    """PostgreSQL 15 with ssl=on and a pg_hba of hostssl lines only (plus local)."""
    cluster = PgCluster(
        hba=[f"hostssl all {TLS_USER} 127.0.0.1/32 scram-sha-256",
             f"hostssl all {CERT_USER} 127.0.0.1/32 cert",
             "hostssl all all 127.0.0.1/32 trust",
             "local all all trust"],
        conf={"ssl": "on", "ssl_cert_file": f"'{tls_certs.server_cert}'",
              "ssl_key_file": f"'{tls_certs.server_key}'", "ssl_ca_file": f"'{tls_certs.ca}'"},
        default_hba=False)
    try:
        cluster.sql(f"SET password_encryption = 'scram-sha-256'; "
                    f"CREATE ROLE {TLS_USER} LOGIN PASSWORD '{TLS_PASSWORD}'")
        cluster.sql(f"CREATE ROLE {CERT_USER} LOGIN")
        yield cluster
    finally:
        cluster.close()


def _tls_args(pg, certs: Certs, *extra: str, client_mode: str = "require", server_mode: str = "verify-full",
              upstream_host: str = "localhost") -> list[str]:
    return ["--upstream", f"postgresql://{upstream_host}:{pg.port}", "--unix-socket-dir", "",
            "-s", f"client_tls_sslmode={client_mode}", "-s", f"client_tls_cert_file={certs.server_cert}",
            "-s", f"client_tls_key_file={certs.server_key}", "-s", f"client_tls_ca_file={certs.ca}",
            "-s", f"server_tls_sslmode={server_mode}", "-s", f"server_tls_ca_file={certs.ca}",
            "-s", "admin_users=postgres", *extra]


def _psql(port: int, conninfo: str, sql: str = "select 1", env: dict[str, str] | None = None):
    return subprocess.run(["psql", "-X", "-A", "-t", "-w", "-v", "ON_ERROR_STOP=1",
                           f"port={port} dbname=postgres {conninfo}", "-c", sql],
                          capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})


def test_psql_sslmodes_and_errors(pg_ssl, tls_certs, pooler_factory):
    p = pooler_factory(_tls_args(pg_ssl, tls_certs))
    ok_sql = "select ssl from pg_stat_ssl where pid = pg_backend_pid()"
    for conninfo in ("host=127.0.0.1 user=postgres sslmode=require",
                     f"host=127.0.0.1 user=postgres sslmode=verify-ca sslrootcert={tls_certs.ca}",
                     f"host=localhost user=postgres sslmode=verify-full sslrootcert={tls_certs.ca}"):
        r = _psql(p.port, conninfo, ok_sql)
        assert r.returncode == 0, (conninfo, r.stderr)
        assert r.stdout.strip() == "t"  # the pooler's own connection to the server is TLS too
    r = _psql(p.port, f"host=db.example.com hostaddr=127.0.0.1 user=postgres sslmode=verify-full "
                      f"sslrootcert={tls_certs.ca}")
    assert r.returncode != 0 and 'does not match host name "db.example.com"' in r.stderr, r.stderr
    r = _psql(p.port, f"host=localhost user=postgres sslmode=verify-full sslrootcert={tls_certs.other_ca}")
    assert r.returncode != 0 and "certificate verify failed" in r.stderr, r.stderr
    r = _psql(p.port, "host=127.0.0.1 user=postgres sslmode=disable")
    assert r.returncode != 0 and "SSL required" in r.stderr, r.stderr
    rows = _admin_rows(p, "SHOW CLIENTS")
    assert all(r["tls"] == "" or r["tls"].startswith("TLSv1.") for r in rows)
    assert "tls=TLSv1." in p.log()  # "login attempt: ... tls=TLSv1.3/..." and the server's line


def _admin_rows(p, sql: str, user: str = "postgres", password: str = "") -> list[dict]:
    with psycopg.connect(f"host=127.0.0.1 port={p.port} user={user} dbname=pgbouncer sslmode=require",
                         password=password, autocommit=True) as conn:
        cur = conn.execute(sql, prepare=False)
        cols = [d.name for d in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]


def test_channel_binding_and_scram_to_server(pg_ssl, tls_certs, pooler_factory, tmp_path):
    """The pooler logs in to PostgreSQL with SCRAM-SHA-256-PLUS over TLS (the server checks the binding)."""
    af = tmp_path / "userlist.txt"
    af.write_text(f'"{TLS_USER}" "{TLS_PASSWORD}"\n')
    p = pooler_factory(_tls_args(pg_ssl, tls_certs, "--auth-file", str(af), "--auth-type", "scram-sha-256",
                                 "-s", f"admin_users={TLS_USER}"))
    r = _psql(p.port, f"host=localhost user={TLS_USER} sslmode=verify-full sslrootcert={tls_certs.ca}",
              "select current_user, (select ssl from pg_stat_ssl where pid = pg_backend_pid())",
              env={"PGPASSWORD": TLS_PASSWORD})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{TLS_USER}|t"
    assert "auth=SCRAM-SHA-256-PLUS" in p.log()
    rows = [r for r in _admin_rows(p, "SHOW SERVERS", TLS_USER, TLS_PASSWORD) if r["user"] == TLS_USER]
    assert rows and all(r["tls"].startswith("TLSv1.") for r in rows)


def test_psycopg_and_asyncpg_over_tls(pg_ssl, tls_certs, pooler_factory):
    p = pooler_factory(_tls_args(pg_ssl, tls_certs))
    with psycopg.connect(f"host=localhost port={p.port} user=postgres dbname=postgres sslmode=verify-full "
                         f"sslrootcert={tls_certs.ca}", autocommit=True, connect_timeout=10) as conn:
        assert conn.info.pgconn.ssl_in_use
        assert conn.execute("select sum(x) from generate_series(1, 100000) x").fetchone()[0] == 5000050000
        big = "x" * 1_000_000
        assert conn.execute("select length(%s)", (big,)).fetchone()[0] == len(big)

    async def main() -> tuple[int, bool]:
        ctx = ssl.create_default_context(cafile=tls_certs.ca)
        c = await asyncpg.connect(host="localhost", port=p.port, user="postgres", database="postgres", ssl=ctx)
        try:
            n = await c.fetchval("select count(*) from generate_series(1, 1000)")
            s = await c.fetchval("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
            return n, s
        finally:
            await c.close()

    assert asyncio.run(main()) == (1000, True)


def test_pgbench_select_only_through_tls_on_both_sides(pg_ssl, tls_certs, pooler_factory):
    env = {**os.environ, "PGSSLMODE": "require"}
    init = subprocess.run(["pgbench", "-i", "-s", "1", "-q", "-h", "127.0.0.1", "-p", str(pg_ssl.port), "-U",
                           "postgres", "postgres"], capture_output=True, text=True, timeout=120, env=env)
    assert init.returncode == 0, init.stderr
    p = pooler_factory(_tls_args(pg_ssl, tls_certs, "--pool-mode", "transaction", "-s", "default_pool_size=4"))
    r = subprocess.run(["pgbench", "-n", "-S", "-c", "8", "-j", "2", "-t", "300", "-h", "127.0.0.1", "-p",
                        str(p.port), "-U", "postgres", "postgres"], capture_output=True, text=True, timeout=300,
                       env=env)
    assert r.returncode == 0, r.stderr
    assert "number of transactions actually processed: 2400/2400" in r.stdout
    assert "number of failed transactions: 0" in r.stdout


def test_server_tls_modes_against_plain_and_wrong_ca(pg, pg_ssl, tls_certs, pooler_factory):
    # require against a server without TLS: the login fails with the reason, not a hang
    p = pooler_factory(["--upstream", f"postgresql://127.0.0.1:{pg.port}", "--unix-socket-dir", "",
                        "-s", "server_tls_sslmode=require", "-s", "server_login_retry=1"])
    r = _psql(p.port, "host=127.0.0.1 user=postgres")
    assert r.returncode != 0 and "server refused TLS" in (r.stderr + p.log()), r.stderr
    # prefer (the default) falls back to plain against it
    p2 = pooler_factory(["--upstream", f"postgresql://127.0.0.1:{pg.port}", "--unix-socket-dir", ""])
    assert _psql(p2.port, "host=127.0.0.1 user=postgres").returncode == 0
    # verify-full with a CA that did not sign the server's certificate
    p3 = pooler_factory(["--upstream", f"postgresql://localhost:{pg_ssl.port}", "--unix-socket-dir", "",
                         "-s", "server_tls_sslmode=verify-full", "-s", f"server_tls_ca_file={tls_certs.other_ca}",
                         "-s", "server_login_retry=1"])
    r = _psql(p3.port, "host=127.0.0.1 user=postgres")
    assert r.returncode != 0
    assert "certificate verify failed" in (r.stderr + p3.log())
    # disable against a hostssl-only server: PostgreSQL's own refusal comes through
    p4 = pooler_factory(["--upstream", f"postgresql://127.0.0.1:{pg_ssl.port}", "--unix-socket-dir", "",
                         "-s", "server_tls_sslmode=disable", "-s", "server_login_retry=1"])
    r = _psql(p4.port, "host=127.0.0.1 user=postgres")
    assert r.returncode != 0
    assert "no encryption" in r.stderr + p4.log()


def test_bad_tls_settings_refused_at_startup(pg, tls_certs, pooler_factory):
    for extra, msg in ((["-s", "client_tls_sslmode=require"], "client_tls_key_file"),
                       (["-s", "client_tls_sslmode=require", "-s", "client_tls_cert_file=/nonexistent.crt",
                         "-s", "client_tls_key_file=/nonexistent.key"], "/nonexistent"),
                       (["-s", "server_tls_sslmode=verify-ca"], "server_tls_ca_file"),
                       (["-s", "client_tls_sslmode=bogus"], "client_tls_sslmode")):
        with pytest.raises(RuntimeError) as info:
            pooler_factory(["--upstream", f"postgresql://127.0.0.1:{pg.port}", "--unix-socket-dir", "", *extra])
        assert msg in str(info.value), str(info.value)


def _direct_tls(port: int, certs: Certs, alpn: list[str] | None) -> list:
    ctx = ssl.create_default_context(cafile=certs.ca)
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    out: list = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(startup_bytes())
            fb = FrameBuffer()
            while True:
                try:
                    data = s.recv(65536)
                except (ConnectionResetError, ssl.SSLError):
                    break
                if not data:
                    break
                fb.receive_data(data)
                while (f := fb.next_frame()) is not None:
                    msg = decode_backend(*f)
                    out.append(msg)
                    if isinstance(msg, m.ReadyForQuery):
                        return out
    return out


def test_direct_tls_needs_alpn(pg, tls_certs, pooler_factory):
    """PostgreSQL 17's sslnegotiation=direct: TLS from the first byte, ALPN "postgresql"."""
    p = pooler_factory(_tls_args(pg, tls_certs, server_mode="prefer", upstream_host="127.0.0.1"))
    msgs = _direct_tls(p.port, tls_certs, ["postgresql"])
    assert any(isinstance(x, m.AuthenticationOk) for x in msgs) and isinstance(msgs[-1], m.ReadyForQuery)
    msgs = _direct_tls(p.port, tls_certs, None)
    errs = [x for x in msgs if isinstance(x, m.ErrorResponse)]
    assert errs and "ALPN" in errs[0].message and errs[0].sqlstate == "08P01"


def _still_serves(port: int) -> None:
    r = _psql(port, "host=127.0.0.1 user=postgres sslmode=require")
    assert r.returncode == 0, r.stderr


def test_bad_input_during_handshake(pg, tls_certs, pooler_factory):
    p = pooler_factory(_tls_args(pg, tls_certs, "-s", "client_login_timeout=2", server_mode="prefer",
                                 upstream_host="127.0.0.1"))
    # unencrypted data right behind the SSLRequest: a protocol violation, answered in clear
    with socket.create_connection(("127.0.0.1", p.port), timeout=10) as s:
        s.sendall(SSL_REQUEST + startup_bytes())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert b"received unencrypted data after SSL request" in data and b"08P01" in data
    # garbage instead of a ClientHello after 'S': closed, nothing leaks
    with socket.create_connection(("127.0.0.1", p.port), timeout=10) as s:
        s.sendall(SSL_REQUEST)
        assert s.recv(1) == b"S"
        s.sendall(b"\x00garbage that is not TLS\r\n" * 20)
        s.settimeout(10)
        try:
            while s.recv(65536):
                pass
        except ConnectionResetError:
            pass
    # a client that stops mid-handshake is closed within client_login_timeout; others are served meanwhile
    with socket.create_connection(("127.0.0.1", p.port), timeout=20) as s:
        s.sendall(SSL_REQUEST)
        assert s.recv(1) == b"S"
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # the start of a ClientHello
        _still_serves(p.port)
        try:  # the pooler closes it after 2 s; our 20 s socket timeout would raise instead
            while s.recv(65536):
                pass
        except ConnectionResetError:
            pass
    _still_serves(p.port)
    assert "TLS handshake failed" in p.log()


def test_client_certificate_to_the_server(pg_ssl, tls_certs, pooler_factory):
    """server_tls_cert_file/key_file: the pooler presents a client certificate; PostgreSQL's
    ``cert`` method admits the user named by its CN, and refuses the pooler without it."""
    crt, key = tls_certs.client(CERT_USER)
    p = pooler_factory(_tls_args(pg_ssl, tls_certs, "-s", f"server_tls_cert_file={crt}",
                                 "-s", f"server_tls_key_file={key}"))
    r = _psql(p.port, f"host=127.0.0.1 user={CERT_USER} sslmode=require",
              "select current_user, (select client_dn from pg_stat_ssl where pid = pg_backend_pid())")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith(f"{CERT_USER}|") and f"CN={CERT_USER}" in r.stdout
    p2 = pooler_factory(_tls_args(pg_ssl, tls_certs, "-s", "server_login_retry=1"))
    r = _psql(p2.port, f"host=127.0.0.1 user={CERT_USER} sslmode=require")
    assert r.returncode != 0
    assert "connection requires a valid client certificate" in r.stderr + p2.log()
