"""Configuration: pgbouncer.ini as pgbouncer reads it, pgbundle.toml typed, upstream URLs, durations, auth_file."""

from __future__ import annotations

import pytest

from pgbundle.pooler.config import (
    ConfigError,
    Settings,
    load_auth_file,
    load_ini,
    load_toml,
    parse_duration,
    parse_upstream,
    set_setting,
)


def test_ini_full(tmp_path):
    (tmp_path / "extra.ini").write_text("[pgbouncer]\nmax_client_conn = 500\n")
    (tmp_path / "pgbouncer.ini").write_text(f"""
;; comment
[databases]
app = host=db1,db2 port=6543 dbname=realapp user=svc password='p w' pool_size=7 pool_mode=transaction
"quoted db" = host=/var/run/postgresql
* = host=fallback

[pgbouncer]
listen_addr = *
listen_port = 7432
auth_type = scram-sha-256
auth_file = users.txt
admin_users = a, b
default_pool_size = 11
query_wait_timeout = 2min
server_lifetime = 1h
client_idle_timeout = 500ms
server_reset_query_always = 1
%include {tmp_path / "extra.ini"}

[users]
bob = pool_mode=session max_user_connections=3
""")
    cfg = load_ini(tmp_path / "pgbouncer.ini")
    s = cfg.settings
    assert (s.listen_addr, s.listen_port, s.auth_type, s.default_pool_size) == ("*", 7432, "scram-sha-256", 11)
    assert s.auth_file == str(tmp_path / "users.txt")
    assert s.admin_users == ["a", "b"]
    assert (s.query_wait_timeout, s.server_lifetime, s.client_idle_timeout) == (120.0, 3600.0, 0.5)
    assert s.server_reset_query_always is True and s.max_client_conn == 500
    app = cfg.databases["app"]
    assert (app.host, app.port, app.dbname, app.user, app.password) == (["db1", "db2"], 6543, "realapp", "svc", "p w")
    assert (app.pool_size, app.pool_mode) == (7, "transaction")
    assert cfg.databases["quoted db"].host == ["/var/run/postgresql"]
    assert cfg.databases["*"].host == ["fallback"]
    assert cfg.users["bob"].pool_mode == "session" and cfg.users["bob"].max_user_connections == 3


@pytest.mark.parametrize("text, needle", [
    ("[pgbouncer]\nno_such = 1\n", "no_such"),
    ("[pgbouncer]\ndefault_pool_size = lots\n", "default_pool_size"),
    ("[pgbouncer]\npool_mode = sometimes\n", "pool_mode"),
    ("[databases]\nx = host=a bogus=1\n", "bogus"),
    ("[weird]\n", "weird"),
])
def test_ini_errors_name_the_key(tmp_path, text, needle):
    (tmp_path / "c.ini").write_text(text)
    with pytest.raises(ConfigError) as ei:
        load_ini(tmp_path / "c.ini")
    assert needle in str(ei.value)


def test_toml(tmp_path):
    (tmp_path / "pgbundle.toml").write_text("""
[pgbundle]
pool_mode = "transaction"
default_pool_size = 5
query_wait_timeout = "30s"
server_idle_timeout = 60

[databases]
app = "host=127.0.0.1 port=5433 dbname=x"
other = { host = "h1,h2", port = 5434, pool_size = 3 }
""")
    cfg = load_toml(tmp_path / "pgbundle.toml")
    assert cfg.settings.pool_mode == "transaction" and cfg.settings.query_wait_timeout == 30.0
    assert cfg.settings.server_idle_timeout == 60.0
    assert cfg.databases["app"].port == 5433 and cfg.databases["other"].host == ["h1", "h2"]


@pytest.mark.parametrize("text, needle", [
    ("[pgbundle]\npool_sise = 3\n", "pool_sise"),
    ("[pgbundle]\ndefault_pool_size = 'x'\n", "default_pool_size"),
    ("[databases]\napp = { host = 'h', colour = 'red' }\n", "colour"),
    ("[pgbundle\n", "pgbundle.toml"),
])
def test_toml_errors_name_the_key(tmp_path, text, needle):
    (tmp_path / "pgbundle.toml").write_text(text)
    with pytest.raises(ConfigError) as ei:
        load_toml(tmp_path / "pgbundle.toml")
    assert needle in str(ei.value)


def test_upstream_urls():
    assert parse_upstream("postgresql://127.0.0.1:5433")[0] == "*"
    name, e = parse_upstream("postgresql://u:p%40ss@h1:5432,h2:5433/app")
    assert (name, e.host, e.port, e.user, e.password, e.dbname) == ("app", ["h1", "h2"], 5433, "u", "p@ss", "app")
    with pytest.raises(ConfigError):
        parse_upstream("mysql://x")


def test_durations():
    assert parse_duration("15") == 15 and parse_duration("250ms") == 0.25 and parse_duration("2h") == 7200
    with pytest.raises(ConfigError):
        parse_duration("soon")


def test_auth_file(tmp_path):
    (tmp_path / "u.txt").write_text('; comment\n"alice" "pw"\n"bob" "md5abc"\n"we""ird" "p""w"\n')
    assert load_auth_file(tmp_path / "u.txt") == {"alice": "pw", "bob": "md5abc", 'we"ird': 'p"w'}
    (tmp_path / "bad.txt").write_text('alice pw\n')
    with pytest.raises(ConfigError):
        load_auth_file(tmp_path / "bad.txt")


def test_auth_files_relative_to_the_config_file(tmp_path):
    (tmp_path / "pgbouncer.ini").write_text("[pgbouncer]\nauth_type = hba\nauth_hba_file = hba.conf\n"
                                            "auth_ident_file = /etc/ident.conf\n")
    s = load_ini(tmp_path / "pgbouncer.ini").settings
    assert (s.auth_hba_file, s.auth_ident_file) == (str(tmp_path / "hba.conf"), "/etc/ident.conf")
    (tmp_path / "pgbundle.toml").write_text('[pgbundle]\nauth_type = "hba"\nauth_hba_file = "x/hba.conf"\n')
    assert load_toml(tmp_path / "pgbundle.toml").settings.auth_hba_file == str(tmp_path / "x" / "hba.conf")


@pytest.mark.parametrize("auth_type", ["pam", "ldap"])
def test_pam_and_ldap_are_refused(tmp_path, auth_type):
    """pgbouncer knows them, pgbundle does not do them: a config error, not a login error."""
    (tmp_path / "pgbouncer.ini").write_text(f"[pgbouncer]\nauth_type = {auth_type}\n")
    with pytest.raises(ConfigError, match=f"auth_type = {auth_type} is not supported: pgbundle has no"):
        load_ini(tmp_path / "pgbouncer.ini")
    (tmp_path / "pgbundle.toml").write_text(f'[pgbundle]\nauth_type = "{auth_type}"\n')
    with pytest.raises(ConfigError, match="is not supported"):
        load_toml(tmp_path / "pgbundle.toml")
    with pytest.raises(ConfigError, match="is not supported"):
        set_setting(Settings(), "auth_type", auth_type)
