"""Bad input at the listener: every case gets an ErrorResponse (08P01 where PostgreSQL would
send it) and a close, or a close within client_login_timeout; the pooler lives on and other
clients never notice."""

from __future__ import annotations

import socket
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings

from pgbundle.shared.protocol import encode, messages as m
from tests.strategies import mutated_streams

from .helpers import base_args, connect, error_of, raw_exchange, startup_bytes


@pytest.fixture(scope="module")
def bad_pooler(pg):
    from tests.fix_pooler import PoolerProcess

    p = PoolerProcess(base_args(pg, "--pool-mode", "transaction", "-s", "client_login_timeout=2",
                                "-s", "max_packet_size=65536"))
    yield p
    p.close()


def _closed_with(port: int, data: bytes) -> list:
    return raw_exchange(port, data, timeout=10)


@pytest.mark.parametrize("data, code", [
    (b"\x00\x00\x00\x00", "08P01"),  # length 0
    (b"\xff\xff\xff\xff" + b"\0" * 8, "08P01"),  # negative length
    (struct.pack("!I", 1 << 20) + b"\0" * 16, "08P01"),  # startup packet far too long
    (struct.pack("!II", 8, 2 << 16), "0A000"),  # protocol 2
    (struct.pack("!II", 12, 3 << 16) + b"x\0y\0", "08P01"),  # no terminator
    (startup_bytes(user=""), "28000"),  # no user
])
def test_bad_startup_packets(bad_pooler, data, code):
    err = error_of(_closed_with(bad_pooler.port, data))
    assert err.sqlstate == code
    assert err.severity == "FATAL"


def test_garbage_bytes(bad_pooler):
    msgs = _closed_with(bad_pooler.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert error_of(msgs).sqlstate == "08P01"


def test_truncated_startup_then_close(bad_pooler):
    with socket.create_connection(("127.0.0.1", bad_pooler.port)) as s:
        s.sendall(struct.pack("!I", 100) + b"\0\3")
    with connect(bad_pooler) as c:
        assert c.execute("select 1").fetchone() == (1,)


def test_oversized_message_after_login(bad_pooler):
    data = startup_bytes() + b"Q" + struct.pack("!I", 1 << 24) + b"x" * 100
    msgs = _closed_with(bad_pooler.port, data)
    err = error_of(msgs)
    assert err.sqlstate == "08P01" and "invalid message length" in err.message


def test_invalid_length_after_login(bad_pooler):
    msgs = _closed_with(bad_pooler.port, startup_bytes() + b"Q\0\0\0\1")
    assert error_of(msgs).sqlstate == "08P01"


def test_unknown_message_type_after_login(bad_pooler):
    msgs = _closed_with(bad_pooler.port, startup_bytes() + b"!\0\0\0\4")
    assert error_of(msgs).sqlstate == "08P01"


def test_message_before_authentication(pg, pooler_factory, tmp_path):
    af = tmp_path / "users.txt"
    af.write_text('"postgres" "pw"\n')
    p = pooler_factory(base_args(pg, "--auth-file", str(af), "--auth-type", "md5"))
    msgs = _closed_with(p.port, startup_bytes() + encode(m.Query("select 1")))
    err = error_of(msgs)
    assert err.sqlstate == "08P01" and "expected password response" in err.message
    assert not any(isinstance(x, m.AuthenticationOk) for x in msgs)


def test_slow_client_is_closed_by_client_login_timeout(bad_pooler):
    data = startup_bytes()
    with socket.create_connection(("127.0.0.1", bad_pooler.port), timeout=10) as s:
        start = time.monotonic()
        closed = False
        for b in data:  # one byte a second
            try:
                s.sendall(bytes([b]))
            except OSError:
                closed = True
                break
            s.settimeout(1.0)
            try:
                chunk = s.recv(1024)
            except TimeoutError:
                continue
            if not chunk or b"client_login_timeout" in chunk:
                closed = True
                break
            if time.monotonic() - start > 15:
                break
        assert closed
    with connect(bad_pooler) as c:
        assert c.execute("select 1").fetchone() == (1,)


def test_ssl_and_gss_requests_answered_n(bad_pooler):
    with socket.create_connection(("127.0.0.1", bad_pooler.port), timeout=10) as s:
        s.sendall(encode(m.GSSENCRequest()))
        assert s.recv(1) == b"N"
        s.sendall(encode(m.SSLRequest()))
        assert s.recv(1) == b"N"
        s.sendall(startup_bytes() + encode(m.Query("select 1")) + encode(m.Terminate()))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        assert b"SELECT 1" in data


VALID = startup_bytes(application_name="fuzz") + encode(m.Query("select 1")) + encode(
    m.Parse("", "select $1::int", (23,))) + encode(m.Bind("", "", (), (b"1",), ())) + encode(
    m.Execute("", 0)) + encode(m.Sync()) + encode(m.Terminate())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutated_streams(VALID))
def test_fuzz_listener(bad_pooler, data):
    try:
        with socket.create_connection(("127.0.0.1", bad_pooler.port), timeout=5) as s:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(5)
            while s.recv(65536):
                pass
    except (ConnectionResetError, BrokenPipeError, TimeoutError):
        pass
    assert bad_pooler.alive()


def test_still_healthy_after_fuzz(bad_pooler):
    with connect(bad_pooler) as c:
        assert c.execute("select 1").fetchone() == (1,)
    log = bad_pooler.log()
    assert "internal error" not in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
