"""md5 and SCRAM-SHA-256, both sides, including SCRAM with a recovered ClientKey."""

from __future__ import annotations

import pytest

from pgbundle.shared.auth.md5 import is_md5_secret, md5_response, md5_secret, md5_verify
from pgbundle.shared.auth.scram import (
    ScramClient,
    ScramError,
    ScramVerifier,
    is_scram_secret,
    make_secret,
    parse_scram_secret,
)


def test_md5():
    secret = md5_secret("alice", "pw")
    assert is_md5_secret(secret)
    salt = b"\1\2\3\4"
    assert md5_response("alice", "pw", salt) == md5_response("alice", secret, salt)
    assert md5_verify("alice", secret, salt, md5_response("alice", "pw", salt))
    assert not md5_verify("alice", secret, salt, md5_response("alice", "other", salt))


def _exchange(verifier: ScramVerifier, client: ScramClient) -> None:
    first = verifier.server_first(client.client_first())
    final = verifier.server_final(client.client_final(first))
    client.verify_server_final(final)


@pytest.mark.parametrize("stored", ["secret", "parsed"])
def test_scram_password(stored):
    sec = make_secret("pw", 4096)
    assert is_scram_secret(str(sec)) and parse_scram_secret(str(sec)) == sec
    v = ScramVerifier(sec if stored == "parsed" else "pw")
    _exchange(v, ScramClient("u", password="pw"))
    assert v.client_key is not None


def test_scram_wrong_password():
    with pytest.raises(ScramError):
        _exchange(ScramVerifier(make_secret("pw")), ScramClient("u", password="nope"))


def test_scram_pass_through_with_client_key():
    """A ClientKey recovered from one exchange logs in to a server holding the same secret."""
    sec = make_secret("pw", 4096)
    v1 = ScramVerifier(sec)
    _exchange(v1, ScramClient("u", password="pw"))
    key = v1.client_key
    _exchange(ScramVerifier(sec), ScramClient("u", client_key=key, secret=sec))
    # a different salt upstream cannot be served with that key
    other = make_secret("pw", 4096)
    with pytest.raises(ScramError):
        _exchange(ScramVerifier(other), ScramClient("u", client_key=key, secret=sec))
