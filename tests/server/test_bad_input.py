"""Bad input at pgbundle server's port: every case gets well-formed protocol messages back (a
FATAL ErrorResponse with PostgreSQL's SQLSTATE where PostgreSQL sends one) and a close; the
backend never sends a traceback, the postmaster lives on and other sessions never notice."""

from __future__ import annotations

import socket
import struct
import time

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings

from pgbundle.shared.protocol import FrameBuffer, decode_backend, encode, messages as m
from tests.strategies import mutated_streams


def _startup(**params: str) -> bytes:
    return encode(m.StartupMessage(3 << 16, {"user": "postgres", "database": "postgres", **params}))


def _exchange(port: int, data: bytes, timeout: float = 10.0) -> list:
    """Send ``data``, half-close, and decode everything the server sends until it closes.
    Decoding fails the test if the server sends anything that is not a protocol message."""
    out: list = []
    fb = FrameBuffer()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            fb.receive_data(chunk)
            while (f := fb.next_frame()) is not None:
                out.append(decode_backend(*f))
    return out


def _fatal(msgs: list) -> m.ErrorResponse:
    errs = [x for x in msgs if isinstance(x, m.ErrorResponse)]
    assert errs, msgs
    assert errs[-1].severity == "FATAL", errs
    return errs[-1]


@pytest.mark.parametrize("tail, code, text", [
    (b"Q" + struct.pack("!I", 0x7FFFFFF0), "08P01", "invalid message length"),  # oversized
    (b"Q" + struct.pack("!I", 2), "08P01", "invalid message length"),  # shorter than its header
    (b"\x01\x00\x00\x00\x04", "08P01", "invalid frontend message type"),
    (b"B" + struct.pack("!I", 10) + b"\x00\x00\xff\xff\xff\xff", "08P01", "invalid"),  # bad Bind counts
    (b"P" + struct.pack("!I", 8) + b"ab\x00\x00", "08P01", "invalid"),  # Parse cut inside its fields
])
def test_bad_messages_after_login(server, tail, code, text):
    msgs = _exchange(server.port, _startup() + tail)
    assert any(isinstance(x, m.ReadyForQuery) for x in msgs)  # the login went through first
    err = _fatal(msgs)
    assert err.sqlstate == code and text in err.message, err


@pytest.mark.parametrize("data, code", [
    (struct.pack("!I", 1 << 20) + b"\0" * 16, "08P01"),  # startup packet far too long
    (struct.pack("!I", 3), "08P01"),  # shorter than a length word and a version
    (struct.pack("!II", 8, 2 << 16), "0A000"),  # protocol 2
    (encode(m.StartupMessage(3 << 16, {"database": "postgres"})), "28000"),  # no user
    (_startup(user="nobody_here"), "28000"),
    (_startup(database="no_such_db"), "3D000"),
])
def test_bad_startup(server, data, code):
    assert _fatal(_exchange(server.port, data)).sqlstate == code


def test_truncated_message_then_close(server):
    """The client vanishes mid-message: its backend exits too (no hung process)."""
    def backends() -> set[int]:
        return {pid for pid, title in server.children().items() if "127.0.0.1(" in title}

    before = backends()
    _exchange(server.port, _startup() + b"Q\x00\x00\x00\x20sel")  # returns once the server closed
    deadline = time.monotonic() + 10
    while backends() - before:
        assert time.monotonic() < deadline, f"backend still running: {server.children()}"
        time.sleep(0.05)


VALID = (_startup(application_name="fuzz") + encode(m.Query("select 1")) + encode(m.Parse("", "select $1::int", (23,)))
         + encode(m.Bind("", "", (), (b"1",), ())) + encode(m.Describe("P", "")) + encode(m.Execute("", 0))
         + encode(m.Sync()) + encode(m.Terminate()))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutated_streams(VALID))
def test_fuzz(server, data):
    for msg in _exchange(server.port, data):
        if isinstance(msg, m.ErrorResponse):
            assert len(msg.sqlstate) == 5 and msg.message, msg
            assert "Traceback" not in msg.message


def test_healthy_after_bad_input(server):
    with server.connect() as c:
        assert c.execute("select 1").fetchone() == (1,)
    log = server.log()
    assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]
    assert server.proc.poll() is None


def test_other_sessions_unharmed(server):
    with server.connect(autocommit=True) as c:
        c.execute("create table if not exists bad_input_t (a int)")
        c.execute("insert into bad_input_t values (1)")
        for data in (b"\xff" * 64, _startup() + b"Q" + struct.pack("!I", 0x7FFFFFF0), _startup() + b"\x01junk"):
            _exchange(server.port, data)
        assert c.execute("select count(*) from bad_input_t").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"host=127.0.0.1 port={server.port} user=postgres dbname=no_such_db")


def _raw_query(sql: bytes) -> bytes:
    return b"Q" + struct.pack("!I", len(sql) + 5) + sql + b"\0"


def _raw_parse(sql: bytes) -> bytes:
    body = b"\0" + sql + b"\0\0\0"
    return b"P" + struct.pack("!I", len(body) + 4) + body


def test_bytes_that_are_not_utf8(server):
    """22021 naming the bytes (an ERROR: the session goes on), as PostgreSQL answers."""
    bad = b"\xc3\x28"
    want = 'invalid byte sequence for encoding "UTF8": 0xc3 0x28'
    msgs = _exchange(server.port, _startup() + _raw_query(b"select 'a" + bad + b"'") + encode(m.Query("select 7")))
    errs = [x for x in msgs if isinstance(x, m.ErrorResponse)]
    assert [(e.severity, e.sqlstate, e.message) for e in errs] == [("ERROR", "22021", want)]
    assert m.DataRow((b"7",)) in msgs
    msgs = _exchange(server.port, _startup() + _raw_parse(b"select 'a" + bad + b"'") + encode(m.Sync()))
    assert [(e.sqlstate, e.message) for e in msgs if isinstance(e, m.ErrorResponse)] == [("22021", want)]
    msgs = _exchange(server.port, _startup() + encode(m.Query("create temp table cc (a text); copy cc from stdin"))
                     + encode(m.CopyData(b"ok\nx" + bad + b"\n")) + encode(m.CopyDone()))
    assert [(e.sqlstate, e.message) for e in msgs if isinstance(e, m.ErrorResponse)] == [("22021", want)]
    # application_name from the startup packet: printable ASCII only, the rest '?' (pg_clean_ascii)
    body = struct.pack("!I", 3 << 16) + b"user\0postgres\0database\0postgres\0application_name\0a" + bad + b"\0\0"
    msgs = _exchange(server.port, struct.pack("!I", len(body) + 4) + body + encode(m.Query("show application_name")))
    assert m.DataRow((b"a?(",)) in msgs
