"""The pooler's authentication beyond the auth_file basics (tests/pooler/test_auth.py): zero-config
auth remembered per (user, database)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from tests.fix_pg import MD5_PASSWORD, MD5_USER, SCRAM_PASSWORD, SCRAM_USER, PgCluster

ALICE_PASSWORD = "alice pw"
DATABASES = ("postgres", "db_a", "db_b")


@pytest.fixture(scope="module")
def upg() -> Iterator[PgCluster]:
    """The upstream of this module: scram_user and md5_user as in the shared cluster; alice is
    trusted on db_a only and needs her SCRAM password elsewhere; root exists (the OS user the
    tests run as, for peer authentication); everyone else is trusted."""
    c = PgCluster(hba=[f"host all {SCRAM_USER} 127.0.0.1/32 scram-sha-256",
                       f"host all {MD5_USER} 127.0.0.1/32 md5",
                       "host db_a alice 127.0.0.1/32 trust",
                       "host all alice 127.0.0.1/32 scram-sha-256"])
    try:
        c.sql(f"SET password_encryption = 'scram-sha-256'; CREATE ROLE {SCRAM_USER} LOGIN PASSWORD '{SCRAM_PASSWORD}'")
        c.sql(f"SET password_encryption = 'md5'; CREATE ROLE {MD5_USER} LOGIN PASSWORD '{MD5_PASSWORD}'")
        c.sql(f"CREATE ROLE alice LOGIN PASSWORD '{ALICE_PASSWORD}'")
        c.sql("CREATE ROLE root LOGIN")
        c.sql("CREATE DATABASE db_a")
        c.sql("CREATE DATABASE db_b")
        yield c
    finally:
        c.close()


def _login(p, user: str, password: str | None = None, dbname: str = "postgres", **kw) -> str:
    """current_user after logging in through the pooler (psycopg), or the error's message."""
    try:
        with psycopg.connect(p.dsn(user=user, dbname=dbname, password=password), autocommit=True,
                             connect_timeout=10, **kw) as c:
            return c.execute("select current_user").fetchone()[0]
    except psycopg.OperationalError as exc:
        return str(exc)



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
