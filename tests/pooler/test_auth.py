"""Client auth (trust, plain, md5, scram-sha-256 from an auth_file; zero-config upstream-verified),
server login with whatever the server asks, and the errors: 28P01, 08P01."""

from __future__ import annotations

import psycopg
import pytest

from tests.fix_pg import MD5_PASSWORD, MD5_USER, SCRAM_PASSWORD, SCRAM_USER, PgCluster

from .helpers import base_args, error_of, raw_exchange, startup_bytes


def _userlist(tmp_path, entries: dict[str, str]):
    path = tmp_path / "userlist.txt"
    path.write_text("".join(f'"{u}" "{p}"\n' for u, p in entries.items()))
    return str(path)


def _query(p, user, password, sql="select current_user"):
    with psycopg.connect(p.dsn(user=user, password=password), autocommit=True, connect_timeout=10) as c:
        return c.execute(sql).fetchone()[0]


@pytest.mark.parametrize("auth_type", ["md5", "scram-sha-256", "plain"])
def test_auth_file_plain_secrets_against_scram_and_md5_server(pg, pooler_factory, tmp_path, auth_type):
    af = _userlist(tmp_path, {SCRAM_USER: SCRAM_PASSWORD, MD5_USER: MD5_PASSWORD})
    p = pooler_factory(base_args(pg, "--auth-file", af, "--auth-type", auth_type))
    assert _query(p, SCRAM_USER, SCRAM_PASSWORD) == SCRAM_USER  # server demands SCRAM
    assert _query(p, MD5_USER, MD5_PASSWORD) == MD5_USER  # server demands md5
    with pytest.raises(psycopg.OperationalError) as ei:
        _query(p, SCRAM_USER, "wrong")
    assert f'password authentication failed for user "{SCRAM_USER}"' in str(ei.value)


def test_scram_secret_pass_through(pg, pooler_factory, tmp_path):
    """auth_file holds the server's own SCRAM secret: the client's SCRAM proof lets the pooler in."""
    secret = pg.sql(f"select rolpassword from pg_authid where rolname = '{SCRAM_USER}'")
    assert secret.startswith("SCRAM-SHA-256$")
    af = _userlist(tmp_path, {SCRAM_USER: secret})
    p = pooler_factory(base_args(pg, "--auth-file", af, "--auth-type", "scram-sha-256"))
    assert _query(p, SCRAM_USER, SCRAM_PASSWORD) == SCRAM_USER
    # md5 auth_type switches to SCRAM for a SCRAM secret (pgbouncer's rule)
    p2 = pooler_factory(base_args(pg, "--auth-file", af, "--auth-type", "md5"))
    assert _query(p2, SCRAM_USER, SCRAM_PASSWORD) == SCRAM_USER
    with pytest.raises(psycopg.OperationalError):
        _query(p2, SCRAM_USER, "wrong")


def test_md5_secret_in_auth_file(pg, pooler_factory, tmp_path):
    secret = pg.sql(f"select rolpassword from pg_authid where rolname = '{MD5_USER}'")
    assert secret.startswith("md5")
    af = _userlist(tmp_path, {MD5_USER: secret})
    p = pooler_factory(base_args(pg, "--auth-file", af, "--auth-type", "md5"))
    assert _query(p, MD5_USER, MD5_PASSWORD) == MD5_USER


def test_wrong_password_sqlstate(pg, pooler_factory, tmp_path):
    af = _userlist(tmp_path, {MD5_USER: MD5_PASSWORD})
    p = pooler_factory(base_args(pg, "--auth-file", af, "--auth-type", "plain"))
    from pgbundle.shared.protocol import encode, messages as m

    msgs = raw_exchange(p.port, startup_bytes(MD5_USER) + encode(m.PasswordMessage(b"nope\0")))
    err = error_of(msgs)
    assert err.sqlstate == "28P01"
    # an unknown user fails the same way (no hint that it does not exist)
    msgs = raw_exchange(p.port, startup_bytes("ghost") + encode(m.PasswordMessage(b"nope\0")))
    assert error_of(msgs).sqlstate == "28P01"


def test_trust_needs_listed_user(pg, pooler_factory, tmp_path):
    af = _userlist(tmp_path, {"postgres": ""})
    p = pooler_factory(base_args(pg, "--auth-file", af, "--auth-type", "trust"))
    assert _query(p, "postgres", None) == "postgres"
    with pytest.raises(psycopg.OperationalError):
        _query(p, MD5_USER, None)


def test_unknown_database(pg, pooler_factory, tmp_path):
    af = _userlist(tmp_path, {"postgres": ""})
    cfg = tmp_path / "pgbouncer.ini"
    cfg.write_text(f"[databases]\npostgres = host=127.0.0.1 port={pg.port}\n[pgbouncer]\nauth_type = trust\n"
                   f"auth_file = {af}\nunix_socket_dir =\n")
    p = pooler_factory(["--config", str(cfg)])
    err = error_of(raw_exchange(p.port, startup_bytes(database="nope")))
    assert (err.sqlstate, err.message) == ("08P01", "no such database: nope")  # pgbouncer's code
    with pytest.raises(psycopg.OperationalError) as ei:
        psycopg.connect(p.dsn(dbname="nope"), connect_timeout=5)
    assert "no such database: nope" in str(ei.value)


def test_zero_config_upstream_verified(pg, pooler_factory):
    """No auth_file: the upstream decides.  Trust users pass; password users are asked in clear
    (loopback only) and checked upstream; the password then serves later logins and servers."""
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction"))
    assert _query(p, "postgres", None) == "postgres"
    assert _query(p, SCRAM_USER, SCRAM_PASSWORD) == SCRAM_USER
    assert _query(p, SCRAM_USER, SCRAM_PASSWORD) == SCRAM_USER  # checked locally now
    assert _query(p, MD5_USER, MD5_PASSWORD) == MD5_USER
    with pytest.raises(psycopg.OperationalError) as ei:
        _query(p, SCRAM_USER, "wrong")
    assert "password authentication failed" in str(ei.value)
    with pytest.raises(psycopg.OperationalError):
        _query(p, "no_such_role", "x")


def test_unknown_upstream_database(pg, pooler_factory):
    p = pooler_factory(base_args(pg))  # '*' fallback: the name goes upstream as it is
    with pytest.raises(psycopg.OperationalError) as ei:
        psycopg.connect(p.dsn(dbname="no_such_db"), connect_timeout=10).execute("select 1")
    assert 'database "no_such_db" does not exist' in str(ei.value)


def test_auth_query(pg, pooler_factory, tmp_path):
    """Users not in the auth_file are looked up with auth_query as auth_user (pgbouncer's way)."""
    af = _userlist(tmp_path, {"postgres": ""})
    cfg = tmp_path / "pgbouncer.ini"
    cfg.write_text(f"[databases]\n* = host=127.0.0.1 port={pg.port} auth_user=postgres\n[pgbouncer]\n"
                   f"auth_type = md5\nauth_file = {af}\nunix_socket_dir =\n")
    p = pooler_factory(["--config", str(cfg)])
    assert _query(p, SCRAM_USER, SCRAM_PASSWORD) == SCRAM_USER  # SCRAM secret from pg_shadow
    assert _query(p, MD5_USER, MD5_PASSWORD) == MD5_USER  # md5 secret from pg_shadow
    with pytest.raises(psycopg.OperationalError) as ei:
        _query(p, MD5_USER, "wrong")
    assert "password authentication failed" in str(ei.value)
    with pytest.raises(psycopg.OperationalError):
        _query(p, "no_such_role", "x")


def test_scram_iterations_for_plain_auth_file_passwords(pg, pooler_factory, tmp_path):
    """A plain password of the auth_file is verified with a SCRAM secret of scram_iterations rounds
    (the server-first-message says i=...), and the login still works."""
    import os
    import socket
    import subprocess

    from pgbundle.shared.protocol import FrameBuffer, decode_backend, encode, messages as m

    af = tmp_path / "users.txt"
    af.write_text('"iter_user" "iter pw"\n')
    p = pooler_factory(base_args(pg, "--auth-file", str(af), "--auth-type", "scram-sha-256",
                                 "-s", "scram_iterations=8192"))
    with socket.create_connection(("127.0.0.1", p.port), timeout=30) as s:
        s.sendall(encode(m.StartupMessage(3 << 16, {"user": "iter_user", "database": "postgres"})))
        fb = FrameBuffer()

        def read():
            while (f := fb.next_frame()) is None:
                fb.receive_data(s.recv(65536))
            return decode_backend(*f)

        assert isinstance(read(), m.AuthenticationSASL)
        s.sendall(encode(m.SASLInitialResponse("SCRAM-SHA-256", b"n,,n=,r=abcdefghijklmnop")))
        cont = read()
        assert isinstance(cont, m.AuthenticationSASLContinue)
        assert dict(kv.split("=", 1) for kv in cont.data.decode().split(","))["i"] == "8192"
    r = subprocess.run(["psql", "-X", "-At", "-h", "127.0.0.1", "-p", str(p.port), "-U", "iter_user", "-d", "postgres",
                        "-c", "select 1"], capture_output=True, text=True, env={**os.environ, "PGPASSWORD": "iter pw"},
                       timeout=60)
    assert "password authentication failed" not in r.stderr


def test_cleartext_server_login_uses_the_database_entry_password(pooler_factory, tmp_path):
    """An upstream that asks for the password in clear (pg_hba `password`) gets the `password=` of
    the [databases] entry, as md5 and SCRAM logins do (pgbouncer; it was ignored for cleartext)."""
    cluster = PgCluster(hba=["host all plain_user 127.0.0.1/32 password"])
    try:
        cluster.sql("CREATE ROLE plain_user LOGIN PASSWORD 'clear pw'")
        af = _userlist(tmp_path, {"app": "app pw"})
        cfg = tmp_path / "pgbouncer.ini"
        cfg.write_text(f"[databases]\npostgres = host=127.0.0.1 port={cluster.port} user=plain_user "
                       f"password='clear pw'\n[pgbouncer]\nauth_type = md5\nauth_file = {af}\nunix_socket_dir =\n")
        p = pooler_factory(["--config", str(cfg)])
        assert _query(p, "app", "app pw", "SELECT current_user") == "plain_user"
    finally:
        cluster.close()


def test_auth_dbname_and_per_database_auth_query(pg, pooler_factory, tmp_path):
    """auth_query runs in the [databases] entry named by auth_dbname (per database or global), and
    a database's own auth_query overrides the global one (pgbouncer >= 1.20)."""
    if pg.sql("SELECT count(*) FROM pg_database WHERE datname = 'authsrc'") == "0":
        pg.sql("CREATE DATABASE authsrc")
    only_in_authsrc = ("SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = $1 "
                       "AND current_database() = 'authsrc'")
    af = _userlist(tmp_path, {"postgres": ""})
    cfg = tmp_path / "pgbouncer.ini"
    cfg.write_text(
        "[databases]\n"
        f"authsrc = host=127.0.0.1 port={pg.port} dbname=authsrc\n"
        f"viadb = host=127.0.0.1 port={pg.port} dbname=postgres auth_user=postgres auth_dbname=authsrc\n"
        f"here = host=127.0.0.1 port={pg.port} dbname=postgres auth_user=postgres\n"
        f"ownquery = host=127.0.0.1 port={pg.port} dbname=postgres auth_user=postgres "
        "auth_query='SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = $1'\n"
        f"[pgbouncer]\nauth_type = md5\nauth_file = {af}\nunix_socket_dir =\nauth_query = {only_in_authsrc}\n")
    p = pooler_factory(["--config", str(cfg)])

    def login(db: str) -> str:
        with psycopg.connect(p.dsn(user=MD5_USER, password=MD5_PASSWORD, dbname=db), connect_timeout=10) as c:
            return c.execute("SELECT current_database()").fetchone()[0]

    assert login("viadb") == "postgres"  # the secret was found by the query run in authsrc
    assert login("ownquery") == "postgres"  # the database's own query
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        login("here")  # the global query run in postgres finds nothing
