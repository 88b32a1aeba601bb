"""Authentication from DIR/pg_hba.conf against roles in the catalog: trust, md5 and
scram-sha-256 (CREATE ROLE ... LOGIN PASSWORD), wrong passwords, unknown roles and
databases, NOLOGIN roles; startup parameters as asyncpg sends them."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

HBA = """
host all scram_user 127.0.0.1/32 scram-sha-256
host all md5_user 127.0.0.1/32 md5
host all nologin_user 127.0.0.1/32 trust
host all all 127.0.0.1/32 trust
"""


@pytest.fixture(scope="module")
def authsrv(module_server_factory):
    s = module_server_factory()
    (s.datadir / "pg_hba.conf").write_text(HBA)
    with s.connect() as c:
        c.execute("create role scram_user login password 'scram secret pw'")
        c.execute("set password_encryption = 'md5'")
        c.execute("create role md5_user login password 'md5 secret pw'")
        c.execute("create role nologin_user nologin")
    return s


def test_scram(authsrv):
    with psycopg.connect(authsrv.dsn(user="scram_user", password="scram secret pw")) as c:
        assert c.execute("select current_user").fetchone() == ("scram_user",)
    with pytest.raises(psycopg.OperationalError) as ei:
        psycopg.connect(authsrv.dsn(user="scram_user", password="wrong"))
    assert 'password authentication failed for user "scram_user"' in str(ei.value)


def test_md5(authsrv):
    with psycopg.connect(authsrv.dsn(user="md5_user", password="md5 secret pw")) as c:
        assert c.execute("select 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError) as ei:
        psycopg.connect(authsrv.dsn(user="md5_user", password="nope"))
    assert "password authentication failed" in str(ei.value)


def test_stored_secrets_are_hashed(authsrv):
    rows = dict(authsrv.sql("select rolname, rolpassword from pg_authid where rolname in "
                            "('scram_user', 'md5_user')"))
    assert rows["scram_user"].startswith("SCRAM-SHA-256$4096:")
    assert rows["md5_user"].startswith("md5") and len(rows["md5_user"]) == 35


def test_unknown_role_database_and_nologin(authsrv):
    with pytest.raises(psycopg.OperationalError) as ei:
        psycopg.connect(authsrv.dsn(user="nobody"))
    assert 'role "nobody" does not exist' in str(ei.value)
    with pytest.raises(psycopg.OperationalError) as ei:
        psycopg.connect(authsrv.dsn(dbname="nodb"))
    assert 'database "nodb" does not exist' in str(ei.value)
    with pytest.raises(psycopg.OperationalError) as ei:
        psycopg.connect(authsrv.dsn(user="nologin_user"))
    assert 'role "nologin_user" is not permitted to log in' in str(ei.value)


def test_asyncpg_quoted_utf8_and_scram(authsrv):
    import asyncpg

    async def main() -> tuple:
        conn = await asyncpg.connect(host="127.0.0.1", port=authsrv.port, user="scram_user",
                                     password="scram secret pw", database="postgres")
        try:
            v = await conn.fetchval("select $1::int + 1", 41)
            enc = await conn.fetchval("show client_encoding")
            return v, enc
        finally:
            await conn.close()

    assert asyncio.run(main()) == (42, "UTF8")
