"""Every pgbouncer 1.25 setting is accepted with its meaning's type; errors are one line naming file:line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pgbundle.pooler.config import ConfigError, Settings, load_ini, set_setting

ALL = Path(__file__).parents[2] / "data" / "pgbouncer-all-settings.ini"


def _all_settings_ini(tmp_path: Path) -> Path:
    text = ALL.read_text().replace("{port}", "6999").replace("{upstream_port}", "5999").replace("{dir}", str(tmp_path))
    p = tmp_path / "pgbouncer.ini"
    p.write_text(text)
    return p


def _documented_settings() -> list[str]:
    """The [pgbouncer] keys of the data file: one per setting of pgbouncer 1.25's doc/config.md."""
    out, section = [], None
    for line in ALL.read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "pgbouncer" and (m := re.match(r"^(\w+)\s*=", line)):
            out.append(m.group(1))
    return out


def test_the_file_has_every_documented_setting():
    names = _documented_settings()
    assert len(names) == len(set(names)) >= 99
    assert set(names) <= set(Settings.__struct_fields__)


def test_every_setting_is_read(tmp_path):
    cfg = load_ini(_all_settings_ini(tmp_path))
    s = cfg.settings
    assert s.application_name_add_host is True and s.peer_id == 1
    assert s.conffile == str(tmp_path / "pgbouncer.ini")
    assert (s.unix_socket_group, s.user, s.auth_dbname, s.resolv_conf) == (None, None, None, None)
    assert (s.dns_max_ttl, s.dns_nxdomain_ttl, s.query_wait_notify, s.transaction_timeout) == (15.0, 15.0, 5.0, 0.0)
    assert s.tcp_defer_accept is True and s.tcp_keepalive is True and s.tcp_user_timeout == 0
    assert s.ignore_startup_parameters == ["extra_float_digits"] and s.track_extra_parameters == ["IntervalStyle"]
    assert s.job_name == "pgbouncer" and s.scram_iterations == 4096 and s.stats_users == ["stats"]
    app = cfg.databases["app"]
    assert app.auth_dbname == "app" and app.target_session_attrs == "any" and app.reserve_pool_size == 1
    assert app.auth_query == "SELECT usename, passwd FROM pg_shadow WHERE usename=$1"
    u = cfg.users["postgres"]
    assert (u.pool_size, u.query_wait_timeout, u.transaction_timeout) == (4, 120.0, 0.0)
    assert cfg.peers[1].host == str(tmp_path) and cfg.peers[1].port == 6999
    assert cfg.has_databases_section


def test_aliases(tmp_path):
    (tmp_path / "a.ini").write_text("[databases]\nx = host=h reserve_pool=2\n[pgbouncer]\nservice_name = svc\n")
    cfg = load_ini(tmp_path / "a.ini")
    assert cfg.settings.job_name == "svc" and cfg.databases["x"].reserve_pool_size == 2
    assert set_setting(cfg.settings, "service_name", "other").job_name == "other"


def test_empty_databases_section_is_remembered(tmp_path):
    (tmp_path / "e.ini").write_text("[databases]\n\n[pgbouncer]\nlisten_port = 6000\n")
    cfg = load_ini(tmp_path / "e.ini")
    assert cfg.databases == {} and cfg.has_databases_section
    (tmp_path / "n.ini").write_text("[pgbouncer]\nlisten_port = 6000\n")
    assert not load_ini(tmp_path / "n.ini").has_databases_section


@pytest.mark.parametrize("line, needle", [
    ("unix_socket_mode = abc", "unix_socket_mode: 'abc'"),
    ("tcp_keepcnt = many", "tcp_keepcnt"),
    ("dns_max_ttl = soon", "dns_max_ttl"),
    ("tcp_defer_accept = maybe", "tcp_defer_accept"),
    ("pool_mode = sometimes", "pool_mode"),
    ("peer_id = x", "peer_id"),
    ("no_such_setting = 1", "no_such_setting"),
])
def test_bad_values_name_file_line_and_key(tmp_path, line, needle):
    p = tmp_path / "bad.ini"
    p.write_text(f"[databases]\n[pgbouncer]\nlisten_port = 6000\n{line}\n")
    with pytest.raises(ConfigError) as ei:
        load_ini(p)
    msg = str(ei.value)
    assert msg.startswith(f"{p}:4: ") and needle in msg and "\n" not in msg, msg


@pytest.mark.parametrize("text, needle", [
    ("[peers]\nx = host=a\n", "peer id"),
    ("[peers]\n0 = host=a\n", "peer id"),
    ("[peers]\n2 = port=1\n", "no host"),
    ("[peers]\n2 = host=a bogus=1\n", "bogus"),
])
def test_bad_peers(tmp_path, text, needle):
    (tmp_path / "p.ini").write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_ini(tmp_path / "p.ini")


def test_scram_iterations_below_the_minimum(tmp_path):
    p = tmp_path / "s.ini"
    p.write_text("[pgbouncer]\nscram_iterations = 100\n")
    with pytest.raises(ConfigError, match=r"s.ini:2: scram_iterations must be at least 4096"):
        load_ini(p)


@pytest.mark.parametrize(("key", "raw", "needle"), [
    ("max_prepared_statements", "-1", "must not be negative"),
    ("default_pool_size", "-1", "must not be negative"),
    ("max_prepared_statements", "3147483648", "out of range"),
    ("listen_backlog", "-2147483649", "out of range"),
])
def test_integer_settings_are_range_checked(key, raw, needle):
    with pytest.raises(ConfigError, match=needle):
        set_setting(Settings(), key, raw)


def test_integer_settings_in_range_are_taken():
    s = set_setting(Settings(), "max_prepared_statements", "2147483647")
    assert s.max_prepared_statements == 2147483647
    assert set_setting(s, "max_prepared_statements", "0").max_prepared_statements == 0
