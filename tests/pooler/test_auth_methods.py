"""The pooler's authentication methods beyond the auth_file basics (tests/pooler/test_auth.py):
auth_type = hba (auth_hba_file, auth_ident_file), peer, cert; pam/ldap refused at startup;
mock authentication (nothing is told before authentication); zero-config auth remembered per
(user, database), passwords in clear over TLS; SCRAM channel binding, hostssl / hostnossl and
client certificates over TLS."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgbundle.shared.auth.scram import ScramClient
from pgbundle.shared.protocol import encode, messages as m
from tests.fix_pg import MD5_PASSWORD, MD5_USER, SCRAM_PASSWORD, SCRAM_USER, PgCluster
from tests.fix_tls import Certs

from .helpers import error_of, raw_exchange, startup_bytes

ALICE_PASSWORD = "alice pw"
DATABASES = ("postgres", "db_a", "db_b")


@pytest.fixture(scope="module")
def upg() -> Iterator[PgCluster]:
    """The upstream of this module: scram_user and md5_user as in the shared cluster; alice is
    trusted on db_a only and needs her SCRAM password elsewhere; root exists (the OS user the
    tests run as, for peer authentication), carol too (for certificates); everyone else is
    trusted."""
    c = PgCluster(hba=[f"host all {SCRAM_USER} 127.0.0.1/32 scram-sha-256",
                       f"host all {MD5_USER} 127.0.0.1/32 md5",
                       "host db_a alice 127.0.0.1/32 trust",
                       "host all alice 127.0.0.1/32 scram-sha-256"])
    try:
        c.sql(f"SET password_encryption = 'scram-sha-256'; CREATE ROLE {SCRAM_USER} LOGIN PASSWORD '{SCRAM_PASSWORD}'")
        c.sql(f"SET password_encryption = 'md5'; CREATE ROLE {MD5_USER} LOGIN PASSWORD '{MD5_PASSWORD}'")
        c.sql(f"CREATE ROLE alice LOGIN PASSWORD '{ALICE_PASSWORD}'")
        c.sql("CREATE ROLE root LOGIN")
        c.sql("CREATE ROLE carol LOGIN")
        c.sql("CREATE DATABASE db_a")
        c.sql("CREATE DATABASE db_b")
        yield c
    finally:
        c.close()


@pytest.fixture
def sockdir() -> Iterator[str]:
    """A Unix socket directory every OS user may reach."""
    d = tempfile.mkdtemp(prefix="pgbundle-sock-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _ini(tmp_path: Path, upg: PgCluster, *, users: dict[str, str] | None = None, hba: str | None = None,
         ident: str | None = None, **settings: str) -> str:
    """A pgbouncer.ini for ``upg`` (its DATABASES, no ``*``) with ``settings``, and its userlist /
    hba / ident files."""
    lines = ["[databases]\n", *(f"{db} = host=127.0.0.1 port={upg.port}\n" for db in DATABASES), "[pgbouncer]\n"]
    settings.setdefault("unix_socket_dir", "")
    if users is not None:
        (tmp_path / "userlist.txt").write_text("".join(f'"{u}" "{p}"\n' for u, p in users.items()))
        settings["auth_file"] = "userlist.txt"
    if hba is not None:
        (tmp_path / "hba.conf").write_text(hba)
        settings.setdefault("auth_type", "hba")
        settings["auth_hba_file"] = "hba.conf"
    if ident is not None:
        (tmp_path / "ident.conf").write_text(ident)
        settings["auth_ident_file"] = "ident.conf"
    lines += [f"{k} = {v}\n" for k, v in settings.items()]
    path = tmp_path / "pgbouncer.ini"
    path.write_text("".join(lines))
    return str(path)


def _login(p, user: str, password: str | None = None, dbname: str = "postgres", **kw) -> str:
    """current_user after logging in through the pooler (psycopg), or the error's message."""
    try:
        with psycopg.connect(p.dsn(user=user, dbname=dbname, password=password), autocommit=True,
                             connect_timeout=10, **kw) as c:
            return c.execute("select current_user").fetchone()[0]
    except psycopg.OperationalError as exc:
        return str(exc)


def _psql(args: list[str], sql: str, *, password: str | None = None, as_user: str | None = None
          ) -> subprocess.CompletedProcess:
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
    env.pop("PGPASSWORD", None)
    if password is not None:
        env["PGPASSWORD"] = password
    cmd = ["psql", "-X", "-w", "-A", "-t", *args, "-c", sql]
    if as_user is not None:
        cmd = ["runuser", "-u", as_user, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, cwd="/tmp")


def _wait_log(p, text: str, count: int = 1) -> None:
    """Until the pooler's log holds ``text`` ``count`` times (a reload is asynchronous)."""
    deadline = time.monotonic() + 30
    while p.log().count(text) < count:
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{p.log()[-3000:]}"
        time.sleep(0.05)


def _error(port: int, user: str, database: str = "postgres", *, source: str | None = None):
    return error_of(raw_exchange(port, startup_bytes(user, database), source=source))


class _Wire:
    """A client speaking the protocol by hand, for looking at every message of a login."""

    def __init__(self, port: int) -> None:
        import socket

        from pgbundle.shared.protocol import FrameBuffer

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.frames = FrameBuffer()

    def send(self, msg: m.Message) -> None:
        self.sock.sendall(encode(msg))

    def recv(self) -> m.Message:
        from pgbundle.shared.protocol import decode_backend

        while (f := self.frames.next_frame()) is None:
            data = self.sock.recv(65536)
            assert data, "the pooler closed the connection"
            self.frames.receive_data(data)
        return decode_backend(*f)

    def close(self) -> None:
        self.sock.close()


def _first_message(port: int, user: str, database: str = "postgres") -> m.Message:
    """What the pooler answers a StartupMessage with (the challenge)."""
    w = _Wire(port)
    try:
        w.send(m.StartupMessage(3 << 16, {"user": user, "database": database}))
        return w.recv()
    finally:
        w.close()


def _scram_login(port: int, user: str, password: str, database: str = "postgres") -> tuple[str, m.Message]:
    """A SCRAM login by hand: (the server-first-message without its nonce, the final answer)."""
    w = _Wire(port)
    try:
        w.send(m.StartupMessage(3 << 16, {"user": user, "database": database}))
        sasl = w.recv()
        assert isinstance(sasl, m.AuthenticationSASL), sasl
        c = ScramClient(user, password=password)
        w.send(m.SASLInitialResponse(c.mechanism, c.client_first().encode()))
        cont = w.recv()
        assert isinstance(cont, m.AuthenticationSASLContinue), cont
        first = cont.data.decode()
        w.send(m.SASLResponse(c.client_final(first).encode()))
        return ",".join(a for a in first.split(",") if not a.startswith("r=")), w.recv()
    finally:
        w.close()


# ---------------------------------------------------------------------------- auth_type = hba

HBA = f"""\
# by database, user and address; the first matching line decides
host    db_a          all          127.0.0.1/32   trust
host    all           {MD5_USER}   127.0.0.1/32   md5
host    all           {SCRAM_USER} 127.0.0.1/32   scram-sha-256
host    all           alice        127.0.0.1/32   password
host    all           blocked      127.0.0.1/32   reject
host    all           all          127.0.0.2/32   trust
"""


def test_hba_rules_pick_the_method(upg, pooler_factory, tmp_path):
    users = {"postgres": "", MD5_USER: MD5_PASSWORD, SCRAM_USER: SCRAM_PASSWORD, "alice": ALICE_PASSWORD,
             "blocked": "x"}
    p = pooler_factory(["--config", _ini(tmp_path, upg, users=users, hba=HBA)])
    assert _login(p, "postgres", dbname="db_a") == "postgres"  # trust by database
    assert _login(p, MD5_USER, MD5_PASSWORD) == MD5_USER
    assert _login(p, SCRAM_USER, SCRAM_PASSWORD) == SCRAM_USER
    assert _login(p, "alice", ALICE_PASSWORD, dbname="db_b") == "alice"
    assert "password authentication failed" in _login(p, MD5_USER, "wrong")
    # which challenge each line gives
    first = {u: _first_message(p.port, u) for u in (MD5_USER, SCRAM_USER, "alice")}
    assert isinstance(first[MD5_USER], m.AuthenticationMD5Password)
    assert isinstance(first[SCRAM_USER], m.AuthenticationSASL)
    assert isinstance(first["alice"], m.AuthenticationCleartextPassword)
    # reject, and no matching line: PostgreSQL's words, 28000, before any password
    err = _error(p.port, "blocked")
    assert (err.sqlstate, err.message) == (
        "28000", 'pg_hba.conf rejects connection for host "127.0.0.1", user "blocked", database "postgres", '
                 "no encryption")
    err = _error(p.port, "postgres")
    assert (err.sqlstate, err.message) == (
        "28000", 'no pg_hba.conf entry for host "127.0.0.1", user "postgres", database "postgres", no encryption')
    assert "login failed: auth_hba_file line 6 rejects it" in p.log()
    # by address: the same user and database from 127.0.0.2 is trusted
    msgs = raw_exchange(p.port, startup_bytes("postgres"), source="127.0.0.2", until_close=False)
    assert isinstance(msgs[0], m.AuthenticationOk) and isinstance(msgs[-1], m.ReadyForQuery)


def test_hba_reload_keeps_the_old_rules_when_the_new_file_is_bad(upg, pooler_factory, tmp_path):
    ini = _ini(tmp_path, upg, users={"postgres": ""}, hba="host all postgres 127.0.0.1/32 trust\n")
    p = pooler_factory(["--config", ini])
    assert _login(p, "postgres") == "postgres"
    (tmp_path / "hba.conf").write_text("host all postgres 127.0.0.1/32 reject\nhost all all 127.0.0.1/32 ldap\n")
    p.signal(signal.SIGHUP)
    _wait_log(p, "config reloaded")
    assert "auth_hba_file not loaded, the rules in use stay" in p.log()
    assert 'authentication method "ldap" is not supported by the pooler' in p.log()
    assert _login(p, "postgres") == "postgres"  # the old rules
    (tmp_path / "hba.conf").write_text("host all postgres 127.0.0.1/32 reject\n")
    p.signal(signal.SIGHUP)
    _wait_log(p, "config reloaded", 2)
    assert "pg_hba.conf rejects connection" in _login(p, "postgres")


def _start_fails(ini: str, *extra: str) -> str:
    """Start the pooler with a config it must refuse; return what it said."""
    r = subprocess.run([sys.executable, "-m", "pgbundle.shared.cli", "pooler", "--config", ini,
                        "--listen-addr", "127.0.0.1", "--listen-port", "1", *extra],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    return r.stderr


@pytest.mark.parametrize(("settings", "hba", "expected"), [
    ({"auth_type": "pam"}, None, "auth_type = pam is not supported: pgbundle has no PAM authentication"),
    ({"auth_type": "ldap"}, None, "auth_type = ldap is not supported: pgbundle has no LDAP authentication"),
    ({"auth_type": "hba"}, None, "auth_type = hba needs auth_hba_file"),
    ({"auth_type": "hba", "auth_hba_file": "missing.conf"}, None, 'could not open auth_hba_file'),
    ({}, "host all all 127.0.0.1/32 pam\n", 'authentication method "pam" is not supported by the pooler'),
    ({}, "host all all 127.0.0.1/32 peer\n", "peer authentication is only supported on local sockets"),
    ({}, "hostx all all 127.0.0.1/32 trust\n", 'invalid connection type "hostx"'),
    ({}, "host all +admins 127.0.0.1/32 trust\n", "role membership"),
    ({}, "host all all 127.0.0.1/32 md5 map=m\n", 'authentication option "map" is only valid for'),
    ({}, "hostssl all all 127.0.0.1/32 trust clientname=CN foo=1\n", 'option "foo" is not supported by the pooler'),
    ({"auth_type": "cert"}, None, "auth_type = cert needs client_tls_sslmode = verify-ca or verify-full"),
])
def test_refused_at_startup(upg, tmp_path, settings, hba, expected):
    assert expected in _start_fails(_ini(tmp_path, upg, users={"postgres": ""}, hba=hba, **settings))


# ---------------------------------------------------------------------------- peer, and the admin console


def test_peer_on_the_unix_socket(upg, pooler_factory, tmp_path, sockdir):
    """auth_type = peer: the OS user (root, running the tests) logs in as itself over the Unix
    socket; as anyone else, or over TCP, it fails."""
    p = pooler_factory(["--config", _ini(tmp_path, upg, auth_type="peer", unix_socket_dir=sockdir)])
    unix = ["-h", sockdir, "-p", str(p.port), "-d", "postgres"]
    r = _psql([*unix, "-U", "root"], "select current_user")
    assert (r.returncode, r.stdout.strip()) == (0, "root"), r.stderr
    r = _psql([*unix, "-U", "postgres"], "select 1")
    assert r.returncode != 0 and 'Peer authentication failed for user "postgres"' in r.stderr
    assert "provided user name (postgres) and authenticated user name (root) do not match" in p.log()
    assert 'Peer authentication failed for user "root"' in _login(p, "root")  # TCP
    assert "peer authentication is only available on Unix sockets" in p.log()


def test_peer_with_an_ident_map(upg, pooler_factory, tmp_path, sockdir):
    hba = "local all all peer map=ops\nhost all all 127.0.0.1/32 reject\n"
    ident = "# map system-user db-user\nops root postgres\nops root alice\n"
    p = pooler_factory(["--config", _ini(tmp_path, upg, hba=hba, ident=ident, unix_socket_dir=sockdir)])
    unix = ["-h", sockdir, "-p", str(p.port)]
    for user, db in (("postgres", "postgres"), ("alice", "db_a")):
        r = _psql([*unix, "-U", user, "-d", db], "select current_user")
        assert (r.returncode, r.stdout.strip()) == (0, user), r.stderr
    r = _psql([*unix, "-U", MD5_USER, "-d", "postgres"], "select 1")
    assert r.returncode != 0 and f'Peer authentication failed for user "{MD5_USER}"' in r.stderr
    assert 'map "ops" has no line for it' in p.log()


def test_admin_console_for_the_pooler_os_user(upg, pooler_factory, tmp_path, sockdir):
    """pgbouncer's rule: user pgbouncer over the Unix socket from the OS user running the pooler
    gets the admin console without a password -- whatever the auth settings say."""
    ini = _ini(tmp_path, upg, users={"postgres": "pw"}, auth_type="scram-sha-256", unix_socket_dir=sockdir)
    p = pooler_factory(["--config", ini])
    unix = ["-h", sockdir, "-p", str(p.port), "-U", "pgbouncer", "pgbouncer"]
    r = _psql(unix, "SHOW VERSION")
    assert r.returncode == 0 and "PgBouncer" in r.stdout, r.stderr
    r = _psql(unix, "SHOW VERSION", password="x", as_user="postgres")  # another OS user: a normal login
    assert r.returncode != 0 and 'password authentication failed for user "pgbouncer"' in r.stderr
    r = _psql(["-h", "127.0.0.1", "-p", str(p.port), "-U", "pgbouncer", "pgbouncer"], "SHOW VERSION", password="x")
    assert r.returncode != 0 and 'password authentication failed for user "pgbouncer"' in r.stderr
    assert p.log().count("pgbouncer access from unix socket") == 1


# ---------------------------------------------------------------------------- nothing is told before auth


def test_scram_failures_all_look_the_same(upg, pooler_factory, tmp_path):
    """An unknown user, an md5 secret under SCRAM, a wrong password and an unknown database
    (with a wrong password) get one answer, after a full exchange whose salt is stable per
    user name; the log says what really happened."""
    md5_secret = upg.sql(f"select rolpassword from pg_authid where rolname = '{MD5_USER}'")
    users = {SCRAM_USER: SCRAM_PASSWORD, MD5_USER: md5_secret}
    p = pooler_factory(["--config", _ini(tmp_path, upg, users=users, auth_type="scram-sha-256")])
    probes = {"unknown user": ("ghost", "x", "postgres"), "md5 secret": (MD5_USER, MD5_PASSWORD, "postgres"),
              "wrong password": (SCRAM_USER, "wrong", "postgres"), "unknown database": ("ghost", "x", "nope")}
    seen = {k: _scram_login(p.port, *v) for k, v in probes.items()}
    answers = {k: (type(v[1]).__name__, v[1].sqlstate, v[1].message) if isinstance(v[1], m.ErrorResponse)
               else v[1] for k, v in seen.items()}
    for what, (user, _pw, _db) in probes.items():
        assert answers[what] == ("ErrorResponse", "28P01", f'password authentication failed for user "{user}"'), what
    # the server-first-messages have one shape (16-byte salt, 4096 iterations) and one salt per user
    for first, _ in seen.values():
        assert first.startswith("s=") and first.endswith(",i=4096") and len(first) == len("s=,i=4096") + 24
    assert _scram_login(p.port, "ghost", "y")[0] == seen["unknown user"][0]
    assert _scram_login(p.port, "ghost2", "y")[0] != seen["unknown user"][0]
    assert _scram_login(p.port, SCRAM_USER, "y")[0] == seen["wrong password"][0]
    log = p.log()
    assert "login failed: no such user: ghost" in log
    assert f'login failed: user "{MD5_USER}" has an md5 secret, which SCRAM authentication cannot use' in log
    assert f"login failed: password does not match for user {SCRAM_USER}" in log
    # the right password to an unknown database: now it may know
    first, final = _scram_login(p.port, SCRAM_USER, SCRAM_PASSWORD, "nope")
    assert isinstance(final, m.AuthenticationSASLFinal)
    assert _login(p, SCRAM_USER, SCRAM_PASSWORD, dbname="nope").endswith("no such database: nope")
    # psql sees one message for all of them
    for user, pw in (("ghost", "x"), (MD5_USER, MD5_PASSWORD), (SCRAM_USER, "wrong")):
        r = _psql(["-h", "127.0.0.1", "-p", str(p.port), "-U", user, "-d", "postgres"], "select 1", password=pw)
        assert r.stderr.strip().endswith(f'FATAL:  password authentication failed for user "{user}"'), r.stderr


@pytest.mark.parametrize("auth_type", ["md5", "plain"])
def test_md5_and_plain_failures_look_the_same(upg, pooler_factory, tmp_path, auth_type):
    p = pooler_factory(["--config", _ini(tmp_path, upg, users={MD5_USER: MD5_PASSWORD}, auth_type=auth_type)])
    challenge = m.AuthenticationMD5Password if auth_type == "md5" else m.AuthenticationCleartextPassword
    for user, db in ((MD5_USER, "postgres"), ("ghost", "postgres"), ("ghost", "nope"), (MD5_USER, "nope")):
        first = _first_message(p.port, user, db)
        assert isinstance(first, challenge), (user, db, first)
        r = _psql(["-h", "127.0.0.1", "-p", str(p.port), "-U", user, "-d", db], "select 1", password="wrong")
        assert r.stderr.strip().endswith(f'FATAL:  password authentication failed for user "{user}"'), r.stderr
    assert "login failed: no such user: ghost" in p.log()
    assert _login(p, MD5_USER, MD5_PASSWORD, dbname="nope").endswith("no such database: nope")


# ---------------------------------------------------------------------------- zero-config


def test_zero_config_remembers_per_user_and_database(upg, pooler_factory):
    """alice is trusted upstream on db_a only: that admits her to db_a without a password, not
    to db_b -- where the pooler asks and checks upstream, and the pool stays usable."""
    p = pooler_factory(["--upstream", f"postgresql://127.0.0.1:{upg.port}", "--unix-socket-dir", ""])
    assert _login(p, "alice", dbname="db_a") == "alice"
    assert "no password supplied" in _login(p, "alice", dbname="db_b")
    assert "password authentication failed" in _login(p, "alice", "wrong", dbname="db_b")
    assert _login(p, "alice", ALICE_PASSWORD, dbname="db_b") == "alice"
    assert _login(p, "alice", ALICE_PASSWORD, dbname="db_b") == "alice"  # checked locally now
    assert "password authentication failed" in _login(p, "alice", "wrong", dbname="db_b")
    assert _login(p, "alice", dbname="db_a") == "alice"
    assert "server_login_retry" not in p.log()


# ---------------------------------------------------------------------------- TLS: channel binding, hostssl, cert


def _tls(certs: Certs, mode: str) -> dict[str, str]:
    return {"client_tls_sslmode": mode, "client_tls_cert_file": certs.server_cert,
            "client_tls_key_file": certs.server_key, "client_tls_ca_file": certs.ca}


def _conninfo(p, user: str, certs: Certs, *, db: str = "postgres", cert: str | None = None, **kw: str) -> str:
    """psql's connection string for a TLS login (verify-full), with the client certificate of CN ``cert``."""
    s = f"host=localhost port={p.port} dbname={db} user={user} sslmode=verify-full sslrootcert={certs.ca}"
    if cert is not None:
        crt, key = certs.client(cert)
        s += f" sslcert={crt} sslkey={key}"
    return s + "".join(f" {k}={v}" for k, v in kw.items())


def _tls_login(p, user: str, certs: Certs, password: str | None = None, **kw: str) -> subprocess.CompletedProcess:
    return _psql([_conninfo(p, user, certs, **kw)], "select current_user", password=password)


def test_scram_channel_binding_through_the_pooler(upg, pooler_factory, tmp_path, tls_certs):
    """Over TLS the pooler offers SCRAM-SHA-256-PLUS (to unknown users too) and checks the binding;
    with the server's own SCRAM secret the pooler then logs in upstream with the client's key."""
    p = pooler_factory(["--config", _ini(tmp_path, upg, users={SCRAM_USER: SCRAM_PASSWORD},
                                         auth_type="scram-sha-256", **_tls(tls_certs, "require"))])
    r = _tls_login(p, SCRAM_USER, tls_certs, SCRAM_PASSWORD, channel_binding="require")
    assert (r.returncode, r.stdout.strip()) == (0, SCRAM_USER), r.stderr
    for user, pw in ((SCRAM_USER, "wrong"), ("ghost", "x")):
        r = _tls_login(p, user, tls_certs, pw, channel_binding="require")
        assert r.stderr.strip().endswith(f'FATAL:  password authentication failed for user "{user}"'), r.stderr
    secret = upg.sql(f"select rolpassword from pg_authid where rolname = '{SCRAM_USER}'")
    (tmp_path / "own").mkdir()
    p2 = pooler_factory(["--config", _ini(tmp_path / "own", upg, users={SCRAM_USER: secret},
                                          auth_type="scram-sha-256", **_tls(tls_certs, "require"))])
    r = _tls_login(p2, SCRAM_USER, tls_certs, SCRAM_PASSWORD, channel_binding="require")
    assert (r.returncode, r.stdout.strip()) == (0, SCRAM_USER), r.stderr


def test_hostssl_and_hostnossl(upg, pooler_factory, tmp_path, tls_certs):
    hba = (f"hostssl all postgres 127.0.0.1/32 trust\nhostnossl all postgres 127.0.0.1/32 reject\n"
           f"hostnossl all {MD5_USER} 127.0.0.1/32 md5\n")
    p = pooler_factory(["--config", _ini(tmp_path, upg, users={"postgres": "", MD5_USER: MD5_PASSWORD}, hba=hba,
                                         **_tls(tls_certs, "prefer"))])
    r = _tls_login(p, "postgres", tls_certs)
    assert (r.returncode, r.stdout.strip()) == (0, "postgres"), r.stderr
    assert 'pg_hba.conf rejects connection for host "127.0.0.1", user "postgres", database "postgres", ' \
           "no encryption" in _login(p, "postgres", sslmode="disable")
    assert _login(p, MD5_USER, MD5_PASSWORD, sslmode="disable") == MD5_USER
    r = _tls_login(p, MD5_USER, tls_certs, MD5_PASSWORD)
    assert r.returncode != 0 and f'no pg_hba.conf entry for host "127.0.0.1", user "{MD5_USER}", ' \
                                 'database "postgres", SSL encryption' in r.stderr, r.stderr


def test_auth_type_cert(upg, pooler_factory, tmp_path, tls_certs):
    """The CN of a client certificate client_tls_ca_file verifies is the user."""
    p = pooler_factory(["--config", _ini(tmp_path, upg, auth_type="cert", **_tls(tls_certs, "verify-ca"))])
    r = _tls_login(p, "carol", tls_certs, cert="carol")
    assert (r.returncode, r.stdout.strip()) == (0, "carol"), r.stderr
    r = _tls_login(p, "alice", tls_certs, cert="carol")
    assert r.returncode != 0 and 'certificate authentication failed for user "alice"' in r.stderr, r.stderr
    assert 'certificate name "carol" may not log in as "alice": they differ' in p.log()
    r = _tls_login(p, "carol", tls_certs)  # no certificate: the handshake already fails
    assert r.returncode != 0 and "certificate required" in r.stderr, r.stderr
    assert "SSL required" in _login(p, "carol", sslmode="disable")


def test_hba_cert_with_an_ident_map_and_clientcert(upg, pooler_factory, tmp_path, tls_certs):
    hba = (f"hostssl db_b {SCRAM_USER} 127.0.0.1/32 scram-sha-256 clientcert=verify-full\n"
           "hostssl db_a all 127.0.0.1/32 cert clientname=DN map=dnmap\n"
           "hostssl all all 127.0.0.1/32 cert map=certmap\n")
    ident = ('certmap carol postgres\ncertmap carol carol\ncertmap carol alice\n'
             'dnmap "CN=carol,O=pgbundle tests" postgres\n')
    users = {"postgres": "", "carol": "", SCRAM_USER: SCRAM_PASSWORD}  # with an auth_file, users must be in it
    p = pooler_factory(["--config", _ini(tmp_path, upg, users=users, hba=hba, ident=ident,
                                         **_tls(tls_certs, "verify-ca"))])
    for user in ("postgres", "carol"):
        r = _tls_login(p, user, tls_certs, cert="carol")
        assert (r.returncode, r.stdout.strip()) == (0, user), r.stderr
    r = _tls_login(p, MD5_USER, tls_certs, cert="carol")
    assert r.returncode != 0 and f'certificate authentication failed for user "{MD5_USER}"' in r.stderr
    assert f'certificate name "carol" may not log in as "{MD5_USER}": map "certmap" has no line for it' in p.log()
    r = _tls_login(p, "alice", tls_certs, cert="carol")  # mapped, but not in the auth_file
    assert r.returncode != 0 and 'certificate authentication failed for user "alice"' in r.stderr
    assert "login failed: no such user: alice" in p.log()
    # clientname=DN: the subject DN is the name the map sees
    r = _tls_login(p, "postgres", tls_certs, db="db_a", cert="carol")
    assert (r.returncode, r.stdout.strip()) == (0, "postgres"), r.stderr
    r = _tls_login(p, "carol", tls_certs, db="db_a", cert="carol")
    assert r.returncode != 0 and 'certificate authentication failed for user "carol"' in r.stderr
    assert 'certificate name "CN=carol,O=pgbundle tests" may not log in as "carol": map "dnmap"' in p.log()
    # clientcert=verify-full: the password and a certificate of the user's own name
    r = _tls_login(p, SCRAM_USER, tls_certs, SCRAM_PASSWORD, db="db_b", cert=SCRAM_USER)
    assert (r.returncode, r.stdout.strip()) == (0, SCRAM_USER), r.stderr
    r = _tls_login(p, SCRAM_USER, tls_certs, SCRAM_PASSWORD, db="db_b", cert="carol")
    assert r.returncode != 0 and f'certificate authentication failed for user "{SCRAM_USER}"' in r.stderr


def test_hba_cert_lines_without_verified_certificates(upg, pooler_factory, tmp_path, tls_certs):
    """client_tls_sslmode = require asks for no client certificate: cert lines fail (and say so)."""
    ini = _ini(tmp_path, upg, hba="hostssl all all 127.0.0.1/32 cert\n", **_tls(tls_certs, "require"))
    p = pooler_factory(["--config", ini])
    assert "lines with cert or clientcert= never match a client" in p.log()
    r = _tls_login(p, "carol", tls_certs, cert="carol")
    assert r.returncode != 0 and 'certificate authentication failed for user "carol"' in r.stderr, r.stderr
    assert "the client sent no verified certificate" in p.log()


def _outside_address() -> str:
    """This host's address towards the outside (the route a packet to 192.0.2.1 would take)."""
    addr = "127.0.0.1"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # UDP: nothing is sent
            addr = s.getsockname()[0]
    except OSError:  # no default route: any address of this host's name will do
        addr = next((a for a in socket.gethostbyname_ex(socket.gethostname())[2] if not a.startswith("127.")),
                    addr)
    assert not addr.startswith("127."), "this test needs a non-loopback IPv4 address"
    return addr


def test_zero_config_asks_in_clear_over_tls_from_another_host(upg, pooler_factory, tls_certs):
    addr = _outside_address()
    tls = [x for k, v in _tls(tls_certs, "prefer").items() for x in ("-s", f"{k}={v}")]
    p = pooler_factory(["--upstream", f"postgresql://127.0.0.1:{upg.port}", "--unix-socket-dir", "",
                        "--listen-addr", f"127.0.0.1,{addr}", *tls])
    conninfo = f"host={addr} port={p.port} dbname=db_b user=alice"
    r = _psql([conninfo + " sslmode=disable"], "select 1", password=ALICE_PASSWORD)
    assert r.returncode != 0 and "needs a local connection, TLS or an auth_file" in r.stderr, r.stderr
    r = _psql([conninfo + " sslmode=require"], "select current_user", password=ALICE_PASSWORD)
    assert (r.returncode, r.stdout.strip()) == (0, "alice"), r.stderr
