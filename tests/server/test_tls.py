"""TLS and the authentication methods of ``pgbundle server``, driven by psql, psycopg and
asyncpg: sslmode require / verify-ca / verify-full, channel binding, hostssl / hostnossl,
cert and peer authentication with pg_ident.conf maps, clientcert=, pg_stat_ssl and the
sslinfo functions, PostgreSQL 17's direct TLS, a server that cannot load its certificate,
reload, and clients that misbehave during the negotiation.

The same psql connections run against PostgreSQL 15 configured alike: pgbundle must
print exactly what PostgreSQL prints.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from cryptography import x509

from tests.fix_pg import PgCluster
from tests.fix_server import PgbServer, kill_backend_expect_crash_notice

SSL_REQUEST = struct.pack("!II", 8, 80877103)

HBA = """\
hostssl all certuser 127.0.0.1/32 cert
hostssl all mapped 127.0.0.1/32 cert map=certmap
hostssl all dnuser 127.0.0.1/32 cert clientname=DN map=dnmap
hostssl all ccuser 127.0.0.1/32 trust clientcert=verify-ca
hostssl all ccfull 127.0.0.1/32 trust clientcert=verify-full
hostnossl all sslonly 127.0.0.1/32 reject
hostssl all sslonly 127.0.0.1/32 trust
hostssl all nossl 127.0.0.1/32 reject
hostnossl all nossl 127.0.0.1/32 trust
hostssl all onlyssl 127.0.0.1/32 trust
host all scram 127.0.0.1/32 scram-sha-256
local all root peer
local all peeruser peer
local all mappedpeer peer map=peermap
local all all trust
host all postgres 127.0.0.1/32 trust
"""
IDENT = """\
certmap alice mapped
dnmap "CN=bob,O=pgbundle tests" dnuser
peermap root mappedpeer
"""
ROLES = ("certuser", "mapped", "dnuser", "ccuser", "ccfull", "sslonly", "nossl", "onlyssl", "root", "peeruser",
         "mappedpeer")


def _install_server_cert(datadir: Path, certs) -> None:  # type: ignore[no-untyped-def]
    """server.crt / server.key in the data directory (the defaults), owned by us, key 0600."""
    for src, name in ((certs.server_cert, "server.crt"), (certs.server_key, "server.key")):
        dst = datadir / name
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o600)


def _initdb(datadir: Path) -> None:
    subprocess.run([sys.executable, "-m", "pgbundle.shared.cli", "initdb", "-D", str(datadir)], check=True,
                   capture_output=True, timeout=120)


def _tls_server(server_factory, certs, **settings: str) -> PgbServer:  # type: ignore[no-untyped-def]
    """A started server with ssl = on and the test certificate in its data directory."""
    s = server_factory(start=False, ssl="on", **settings)
    _initdb(s.datadir)
    _install_server_cert(s.datadir, certs)
    s.start()
    return s


def _create_roles(run_sql) -> None:  # type: ignore[no-untyped-def]
    for r in ROLES:
        run_sql(f"create role {r} login")
    run_sql("create role scram login password 'scram pw'")


@pytest.fixture(scope="module")
def tlssrv(module_server_factory, tls_certs) -> PgbServer:
    s = module_server_factory(start=False, ssl="on", ssl_ca_file=tls_certs.ca, log_connections="on")
    s.settings["unix_socket_directories"] = str(s.root)
    _initdb(s.datadir)
    _install_server_cert(s.datadir, tls_certs)
    (s.datadir / "pg_hba.conf").write_text(HBA)
    (s.datadir / "pg_ident.conf").write_text(IDENT)
    s.start()
    _create_roles(s.sql)
    return s


@pytest.fixture(scope="module")
def tlspg(tls_certs):
    """PostgreSQL 15 with the same certificates, pg_hba.conf and pg_ident.conf."""
    cluster = PgCluster(conf={"ssl": "on", "ssl_cert_file": f"'{tls_certs.server_cert}'",
                              "ssl_key_file": f"'{tls_certs.server_key}'", "ssl_ca_file": f"'{tls_certs.ca}'"})
    try:
        _create_roles(cluster.sql)
        cluster._write(cluster.data / "pg_hba.conf", HBA)
        cluster._write(cluster.data / "pg_ident.conf", IDENT)
        cluster.sql("select pg_reload_conf()")
        deadline = time.monotonic() + 60
        while _psql(cluster.port, "user=onlyssl sslmode=disable").returncode == 0:  # until the new rules apply
            assert time.monotonic() < deadline, "PostgreSQL did not reload pg_hba.conf"
            time.sleep(0.1)
        yield cluster
    finally:
        cluster.close()


def _psql(port: int, conninfo: str, query: str = "select current_user, ssl from pg_stat_ssl where pid = "
                                                 "pg_backend_pid()", host: str = "127.0.0.1"
          ) -> subprocess.CompletedProcess:
    dsn = f"host={host} port={port} dbname=postgres {conninfo}"
    return subprocess.run(["psql", "-X", "-A", "-t", "-c", query, dsn], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PGCONNECT_TIMEOUT": "30"})


def _outcome(r: subprocess.CompletedProcess, port: int, sockdir: str) -> str:
    """What psql printed, without what differs between the two servers (port, socket path)."""
    text = (r.stdout + r.stderr).strip()
    return text.replace(f"port {port}", "port N").replace(f"{sockdir}/.s.PGSQL.{port}", "SOCKET")


def _cert(certs, user: str) -> str:  # type: ignore[no-untyped-def]
    crt, key = certs.client(user)
    return f"sslcert={crt} sslkey={key}"


def _cases(certs) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(conninfo, where: 'tcp' or 'unix') of every connection compared with PostgreSQL."""
    req = "sslmode=require"
    return [
        ("user=onlyssl sslmode=disable", "tcp"),
        ("user=onlyssl " + req, "tcp"),
        ("user=nobody " + req, "tcp"),
        ("user=nossl " + req, "tcp"),
        ("user=nossl sslmode=disable", "tcp"),
        ("user=sslonly sslmode=disable", "tcp"),
        ("user=sslonly " + req, "tcp"),
        ("user=certuser " + req, "tcp"),
        (f"user=certuser {req} {_cert(certs, 'certuser')}", "tcp"),
        (f"user=certuser {req} {_cert(certs, 'alice')}", "tcp"),
        (f"user=mapped {req} {_cert(certs, 'alice')}", "tcp"),
        (f"user=mapped {req} {_cert(certs, 'bob')}", "tcp"),
        (f"user=dnuser {req} {_cert(certs, 'bob')}", "tcp"),
        (f"user=dnuser {req} {_cert(certs, 'alice')}", "tcp"),
        ("user=ccuser " + req, "tcp"),
        (f"user=ccuser {req} {_cert(certs, 'bob')}", "tcp"),
        (f"user=ccfull {req} {_cert(certs, 'bob')}", "tcp"),
        (f"user=ccfull {req} {_cert(certs, 'ccfull')}", "tcp"),
        ("user=scram password='scram pw' sslmode=require channel_binding=require", "tcp"),
        ("user=scram password='scram pw' sslmode=disable channel_binding=require", "tcp"),
        ("user=scram password='wrong' sslmode=require channel_binding=require", "tcp"),
        ("user=postgres sslmode=require channel_binding=require", "tcp"),
        (f"user=postgres sslmode=verify-ca sslrootcert={certs.other_ca}", "tcp"),
        (f"user=postgres sslmode=verify-full sslrootcert={certs.ca}", "tcp"),
        (f"user=postgres sslmode=verify-full sslrootcert={certs.ca} host=wrong.example hostaddr=127.0.0.1", "tcp"),
        ("user=root", "unix"),
        ("user=peeruser", "unix"),
        ("user=mappedpeer", "unix"),
        ("user=postgres sslmode=require", "unix"),
    ]


def test_same_answers_as_postgresql(tlssrv, tlspg, tls_certs):
    """Every case: the same success (user, ssl) or the same error text as PostgreSQL 15."""
    diffs = []
    for conninfo, where in _cases(tls_certs):
        outs = []
        for port, sockdir in ((tlspg.port, str(tlspg.root)), (tlssrv.port, str(tlssrv.root))):
            host = sockdir if where == "unix" else "127.0.0.1"
            outs.append(_outcome(_psql(port, conninfo, host=host), port, sockdir))
        if outs[0] != outs[1]:
            diffs.append(f"{conninfo} [{where}]\n  postgres: {outs[0]}\n  pgbundle: {outs[1]}")
    assert not diffs, "\n".join(diffs)


def test_sslmodes(tlssrv, tls_certs):
    assert _psql(tlssrv.port, "user=postgres sslmode=require").stdout.strip() == "postgres|t"
    assert _psql(tlssrv.port, "user=postgres sslmode=disable").stdout.strip() == "postgres|f"
    r = _psql(tlssrv.port, f"user=postgres sslmode=verify-ca sslrootcert={tls_certs.ca}")
    assert r.stdout.strip() == "postgres|t", r.stderr
    r = _psql(tlssrv.port, f"user=postgres sslmode=verify-full sslrootcert={tls_certs.ca}", host="localhost")
    assert r.stdout.strip() == "postgres|t", r.stderr
    r = _psql(tlssrv.port, f"user=postgres sslmode=verify-full sslrootcert={tls_certs.ca} host=wrong.example "
                           f"hostaddr=127.0.0.1")
    assert r.returncode != 0
    assert 'server certificate for "localhost" (and 1 other name) does not match host name "wrong.example"' in \
        r.stderr
    r = _psql(tlssrv.port, f"user=postgres sslmode=verify-ca sslrootcert={tls_certs.other_ca}")
    assert r.returncode != 0 and "SSL error: certificate verify failed" in r.stderr
    # no TLS on a Unix socket, even when asked for: the server answers N
    assert _psql(tlssrv.port, "user=postgres sslmode=prefer", host=str(tlssrv.root)).stdout.strip() == "postgres|f"


def test_psycopg_and_asyncpg_over_tls(tlssrv, tls_certs):
    dsn = f"host=localhost port={tlssrv.port} dbname=postgres sslrootcert={tls_certs.ca}"
    with psycopg.connect(f"{dsn} user=postgres sslmode=verify-full") as c:
        assert c.pgconn.ssl_in_use
        assert c.execute("select ssl_is_used(), ssl_version() like 'TLSv1._'").fetchone() == (True, True)
    with psycopg.connect(f"{dsn} user=scram password='scram pw' sslmode=require channel_binding=require") as c:
        assert c.execute("select current_user, ssl_is_used()").fetchone() == ("scram", True)
    crt, key = tls_certs.client("certuser")
    with psycopg.connect(f"{dsn} user=certuser sslmode=verify-full sslcert={crt} sslkey={key}") as c:
        assert c.execute("select current_user, ssl_client_cert_present()").fetchone() == ("certuser", True)

    async def main() -> tuple:
        ctx = ssl.create_default_context(cafile=tls_certs.ca)
        conn = await asyncpg.connect(host="localhost", port=tlssrv.port, user="postgres", database="postgres",
                                     ssl=ctx)
        try:
            used = await conn.fetchval("select ssl_is_used()")
        finally:
            await conn.close()
        conn = await asyncpg.connect(host="127.0.0.1", port=tlssrv.port, user="scram", password="scram pw",
                                     database="postgres", ssl="require")
        try:
            row = await conn.fetchrow("select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()")
        finally:
            await conn.close()
        return used, tuple(row)

    import asyncpg

    assert asyncio.run(main()) == (True, ("scram", True))


def test_pg_stat_ssl_and_sslinfo(tlssrv, tls_certs):
    crt, key = tls_certs.client("certuser")
    cert = x509.load_pem_x509_certificate(Path(crt).read_bytes())
    dsn = f"host=127.0.0.1 port={tlssrv.port} dbname=postgres"
    with psycopg.connect(f"{dsn} user=certuser sslmode=require sslcert={crt} sslkey={key}", autocommit=True) as t, \
            psycopg.connect(f"{dsn} user=postgres sslmode=disable", autocommit=True) as p:
        tpid, ppid = t.info.backend_pid, p.info.backend_pid
        mine = t.execute("select ssl, version, cipher, bits, client_dn, client_serial, issuer_dn from pg_stat_ssl "
                         "where pid = pg_backend_pid()").fetchone()
        assert mine is not None
        assert mine[0] is True and mine[1] in ("TLSv1.2", "TLSv1.3") and mine[2] and mine[3] >= 128
        assert mine[4:] == ("/O=pgbundle tests/CN=certuser", cert.serial_number,
                            "/O=pgbundle tests/CN=pgbundle test CA")
        assert t.execute("select ssl_is_used(), ssl_version(), ssl_cipher(), ssl_client_cert_present(), "
                         "ssl_client_dn(), ssl_client_serial(), ssl_issuer_dn()").fetchone() == (
            True, mine[1], mine[2], True, mine[4], mine[5], mine[6])
        # each session sees the other's row: the facts live in shared memory
        rows = {r[0]: r[1:] for r in p.execute("select pid, ssl, version, client_dn from pg_stat_ssl")}
        assert rows[tpid] == (True, mine[1], mine[4])
        assert rows[ppid] == (False, None, None)
        assert t.execute("select ssl, version, cipher, bits, client_dn, client_serial, issuer_dn from pg_stat_ssl "
                         "where pid = %s", (ppid,)).fetchone() == (False, None, None, None, None, None, None)
        assert p.execute("select ssl_is_used(), ssl_version(), ssl_cipher(), ssl_client_cert_present(), "
                         "ssl_client_dn(), ssl_client_serial(), ssl_issuer_dn()").fetchone() == (
            False, None, None, False, None, None, None)
        # rows for client backends only, none for the background processes
        ssl_pids = {r[0] for r in p.execute("select pid from pg_stat_ssl")}
        aux = {r[0] for r in p.execute("select pid from pg_stat_activity where backend_type <> 'client backend'")}
        assert aux and not ssl_pids & aux and {tpid, ppid} <= ssl_pids


def test_settings_visible(tlssrv):
    rows = dict(tlssrv.sql("select name, setting from pg_settings where name like 'ssl%'"))
    assert rows["ssl"] == "on"
    assert rows["ssl_cert_file"] == "server.crt" and rows["ssl_key_file"] == "server.key"
    assert rows["ssl_min_protocol_version"] == "TLSv1.2" and rows["ssl_max_protocol_version"] == ""
    assert rows["ssl_ciphers"] == "HIGH:MEDIUM:+3DES:!aNULL"
    assert rows["ssl_library"] == "OpenSSL"
    assert tlssrv.sql("show ssl_ecdh_curve") == [("prime256v1",)]


def test_direct_tls(tlssrv, tls_certs):
    """PostgreSQL 17's sslnegotiation=direct (psycopg's libpq is newer than 17), and a direct
    handshake without ALPN, which is refused."""
    assert psycopg.pq.version() >= 170000
    with psycopg.connect(f"host=localhost port={tlssrv.port} dbname=postgres user=postgres sslmode=verify-full "
                         f"sslrootcert={tls_certs.ca} sslnegotiation=direct") as c:
        assert c.pgconn.ssl_in_use
        assert c.execute("select ssl from pg_stat_ssl where pid = pg_backend_pid()").fetchone() == (True,)
    ctx = ssl.create_default_context(cafile=tls_certs.ca)  # offers no ALPN
    with socket.create_connection(("localhost", tlssrv.port), timeout=60) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as s:
        assert s.selected_alpn_protocol() is None
        assert _read_to_eof(s) == b""
    _wait_for_log(tlssrv, "received direct SSL connection request without ALPN protocol negotiation extension")


def _read_to_eof(s: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            data = s.recv(65536)
        except (ssl.SSLEOFError, ConnectionResetError):
            return out
        if not data:
            return out
        out += data


def _wait_for_log(s: PgbServer, text: str) -> None:
    deadline = time.monotonic() + 60
    while text not in s.log():
        assert time.monotonic() < deadline, f"not logged: {text}\n{s.log()[-3000:]}"
        time.sleep(0.1)


def _insecure_client() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_unencrypted_data_after_ssl_request(tlssrv):
    """Bytes sent behind an SSLRequest, before the answer, are refused -- over TLS after an S,
    in clear after an N (a Unix socket)."""
    with socket.create_connection(("127.0.0.1", tlssrv.port), timeout=60) as raw:
        raw.sendall(SSL_REQUEST + b"injected startup packet")
        assert raw.recv(1) == b"S"
        with _insecure_client().wrap_socket(raw) as s:
            out = _read_to_eof(s)
    assert out[:1] == b"E" and b"C08P01\0" in out and b"received unencrypted data after SSL request" in out
    with socket.socket(socket.AF_UNIX) as u:
        u.settimeout(60)
        u.connect(str(tlssrv.root / f".s.PGSQL.{tlssrv.port}"))
        u.sendall(SSL_REQUEST + b"injected")
        out = _read_to_eof(u)
    assert out[:1] == b"N" and b"received unencrypted data after SSL request" in out
    assert tlssrv.sql("select 1") == [(1,)]


def test_bad_handshakes_are_logged_and_harmless(tlssrv, tls_certs, tmp_path):
    # not a ClientHello after the S
    with socket.create_connection(("127.0.0.1", tlssrv.port), timeout=60) as raw:
        raw.sendall(SSL_REQUEST)
        assert raw.recv(1) == b"S"
        raw.sendall(b"\x16\x03\x01\x00\x05hello, this is not TLS")
        out = _read_to_eof(raw)
    assert out[:1] == b"\x15"  # a TLS alert, then the close
    _wait_for_log(tlssrv, "could not accept SSL connection: ")
    # a client certificate from a CA the server does not trust
    crt, key = _self_signed(tmp_path, "ccuser")
    r = _psql(tlssrv.port, f"user=ccuser sslmode=require sslcert={crt} sslkey={key}")
    assert r.returncode != 0 and "SSL error: tlsv1 alert unknown ca" in r.stderr
    _wait_for_log(tlssrv, "could not accept SSL connection: certificate verify failed")
    assert _psql(tlssrv.port, "user=postgres sslmode=require").stdout.strip() == "postgres|t"


def _self_signed(tmp_path: Path, cn: str) -> tuple[str, str]:
    import datetime

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    crt, kpath = tmp_path / "self.crt", tmp_path / "self.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kpath.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    os.chmod(kpath, 0o600)
    return str(crt), str(kpath)


def _unauthenticated_backends(s: PgbServer) -> set[int]:
    """Backends still in startup (their title is set to user and database once they are in)."""
    return {pid for pid, title in s.children().items() if title.strip() == "pgbundle: backend"}


def test_client_that_stops_mid_handshake(server_factory, tls_certs):
    """A client that answers S with half a ClientHello, and one that sends nothing: each
    backend gives up at authentication_timeout; other clients go on meanwhile."""
    s = _tls_server(server_factory, tls_certs, authentication_timeout="2s")
    hello = _client_hello()
    stalled = []
    try:
        for payload in (hello[: len(hello) // 2], b""):
            raw = socket.create_connection(("127.0.0.1", s.port), timeout=60)
            stalled.append(raw)
            raw.sendall(SSL_REQUEST)
            assert raw.recv(1) == b"S"
            raw.sendall(payload)
        waiting = _unauthenticated_backends(s)
        assert len(waiting) >= 2
        with psycopg.connect(s.dsn() + " sslmode=require", connect_timeout=30) as c:
            assert c.execute("select ssl_is_used()").fetchone() == (True,)
        for raw in stalled:
            assert _read_to_eof(raw) == b""  # closed by the server (no TLS session: no alert, no message)
        deadline = time.monotonic() + 60
        while waiting & set(s.children()):
            assert time.monotonic() < deadline, s.children()
            time.sleep(0.1)
        assert s.sql("select 1") == [(1,)]
    finally:
        for raw in stalled:
            raw.close()


def _client_hello() -> bytes:
    """The bytes of a real TLS ClientHello."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = _insecure_client().wrap_bio(incoming, outgoing)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def test_refuses_to_start_without_certificate(server_factory, tls_certs):
    s = server_factory(start=False, ssl="on")
    with pytest.raises(RuntimeError, match="server exited"):
        s.start(timeout=120)
    assert 'FATAL:  could not load server certificate file "server.crt": No such file or directory' in s.log()
    # a key that others may read is refused as PostgreSQL refuses it
    _install_server_cert(s.datadir, tls_certs)
    os.chmod(s.datadir / "server.key", 0o644)
    with pytest.raises(RuntimeError, match="server exited"):
        s.start(timeout=120)
    assert 'FATAL:  private key file "server.key" has group or world access' in s.log()
    os.chmod(s.datadir / "server.key", 0o600)
    s.start(timeout=120)
    assert _psql(s.port, "user=postgres sslmode=require").stdout.strip() == "postgres|t"


def test_reload(server_factory, tls_certs):
    """SIGHUP rebuilds the context: ssl turned on from postgresql.conf takes effect; a broken
    certificate leaves the old context in use; ssl = off refuses TLS again."""
    s = server_factory()
    with socket.create_connection(("127.0.0.1", s.port), timeout=60) as raw:
        raw.sendall(SSL_REQUEST)
        assert raw.recv(1) == b"N"
    _install_server_cert(s.datadir, tls_certs)
    conf = s.datadir / "postgresql.conf"
    base = conf.read_text()

    def reload(extra: str) -> None:
        conf.write_text(base + extra)
        os.kill(s.pid, signal.SIGHUP)

    def answer() -> bytes:
        with socket.create_connection(("127.0.0.1", s.port), timeout=60) as raw:
            raw.sendall(SSL_REQUEST)
            return raw.recv(1)

    def wait_answer(want: bytes) -> None:
        deadline = time.monotonic() + 60
        while answer() != want:
            assert time.monotonic() < deadline
            time.sleep(0.1)

    reload("ssl = on\n")
    wait_answer(b"S")
    assert _psql(s.port, "user=postgres sslmode=require").stdout.strip() == "postgres|t"
    reload("ssl = on\nssl_cert_file = 'missing.crt'\n")
    _wait_for_log(s, "SSL configuration was not reloaded")
    assert 'could not load server certificate file "missing.crt": No such file or directory' in s.log()
    assert _psql(s.port, "user=postgres sslmode=require").stdout.strip() == "postgres|t"
    reload("ssl = off\n")
    wait_answer(b"N")


def test_crash_notice_reaches_tls_clients(server_factory, tls_certs):
    """A backend killed with SIGKILL: the others' last ErrorResponse (57P02, written by the
    SIGQUIT handler) goes through the TLS session, so the client can read it."""
    s = _tls_server(server_factory, tls_certs)
    a = psycopg.connect(s.dsn() + " sslmode=require", autocommit=True, connect_timeout=30)
    b = psycopg.connect(s.dsn() + " sslmode=require", autocommit=True, connect_timeout=30)
    try:
        assert a.pgconn.ssl_in_use
        kill_backend_expect_crash_notice(b, a)
    finally:
        a.close()
        b.close()
    s.wait_ready(60)
    assert _psql(s.port, "user=postgres sslmode=require").stdout.strip() == "postgres|t"
