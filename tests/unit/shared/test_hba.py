"""shared.auth.hba: pg_hba.conf / pg_ident.conf parsing and first-match rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgbundle.shared.auth.hba import ConnInfo, HbaError, ident_match, match, parse, parse_ident


def _rules(tmp_path: Path, text: str) -> list:  # type: ignore[type-arg]
    p = tmp_path / "hba.conf"
    p.write_text(text)
    return parse(str(p))


def test_first_match_by_type_address_database_user(tmp_path: Path) -> None:
    (tmp_path / "admins.txt").write_text("root, alice\n# comment\nbob\n")
    rules = _rules(tmp_path, """
# a comment
local   all         all                     peer
hostssl app         @admins.txt 10.0.0.0/8  cert   clientcert=verify-full
hostnossl app       all         10.0.0.0/8  reject
host    "all"       carol       0.0.0.0/0   md5    # quoted all is a database named all
host    sameuser    all         192.168.1.0 255.255.255.0 scram-sha-256
host    all         all         ::1/128     trust
host    all,other   +staff      all \\
        password
""")
    assert [r.method for r in rules] == ["peer", "cert", "reject", "md5", "scram-sha-256", "trust", "password"]
    tcp = ConnInfo(local=False, address="10.1.2.3")
    tls = ConnInfo(local=False, address="10.1.2.3", tls=True)
    assert match(rules, ConnInfo(local=True), "x", "y").method == "peer"  # type: ignore[union-attr]
    assert match(rules, tls, "app", "bob").method == "cert"  # type: ignore[union-attr]
    assert match(rules, tls, "app", "bob").options == {"clientcert": "verify-full"}  # type: ignore[union-attr]
    assert match(rules, tcp, "app", "bob").method == "reject"  # type: ignore[union-attr]
    assert match(rules, tcp, "all", "carol").method == "md5"  # type: ignore[union-attr]
    assert match(rules, tcp, "postgres", "carol") is None or match(rules, tcp, "postgres", "carol").method != "md5"  # type: ignore[union-attr]
    lan = ConnInfo(local=False, address="192.168.1.7")
    assert match(rules, lan, "dave", "dave").method == "scram-sha-256"  # type: ignore[union-attr]
    assert match(rules, ConnInfo(local=False, address="::1"), "db", "u").method == "trust"  # type: ignore[union-attr]
    staff = match(rules, lan, "other", "eve", roles=lambda u, r: (u, r) == ("eve", "staff"))
    assert staff is not None and staff.method == "password"
    assert match(rules, lan, "other", "mallory") is None


def test_errors_name_file_and_line(tmp_path: Path) -> None:
    for text, msg in [("hots all all all trust", "invalid connection type"),
                      ("host all all 10.0.0.300/8 trust", "invalid IP address"),
                      ("host all all all magic", "invalid authentication method"),
                      ("host all all", "end-of-line before IP address"),
                      ("host all all all peer", "peer authentication is only supported"),
                      ("host all all all cert", "cert authentication is only supported"),
                      ("host all all all md5 map", "name=value"),
                      ("hostssl all all all cert clientcert=verify-ca", 'clientcert can only be set to "verify-full"'),
                      ("host all all all trust clientname=CN", 'clientname can only be configured for "hostssl"'),
                      ("hostssl all all all cert clientname=UID", 'invalid value for clientname: "UID"'),
                      ("host all all all md5 map=m", 'option "map" is only valid for authentication methods')]:
        with pytest.raises(HbaError, match=msg) as info:
            _rules(tmp_path, "\n" + text)
        assert "line 2" in str(info.value)
    assert parse(str(tmp_path / "missing.conf")) == []


def test_ident_maps(tmp_path: Path) -> None:
    p = tmp_path / "ident.conf"
    p.write_text('certmap  alice  alice_db\ncertmap /^(.*)@example\\.com$ \\1\nany  root  all\n')
    maps = parse_ident(str(p))
    assert ident_match(maps, "certmap", "alice", "alice_db")
    assert not ident_match(maps, "certmap", "alice", "bob")
    assert ident_match(maps, "certmap", "bob@example.com", "bob")
    assert not ident_match(maps, "certmap", "bob@example.org", "bob")
    assert ident_match(maps, "any", "root", "whoever")
    assert not ident_match(maps, "nomap", "root", "root")
    p.write_text("broken line\n")
    with pytest.raises(HbaError):
        parse_ident(str(p))
