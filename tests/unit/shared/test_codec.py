"""The sans-IO codec: every message round-trips; framing and scanning hold under any split."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings, strategies as st

from pgbundle.shared.protocol import (
    PASS,
    FrameBuffer,
    LocalProtocolError,
    RemoteProtocolError,
    StreamScanner,
    decode_backend,
    decode_frontend,
    decode_startup,
    encode,
    messages as m,
    parse_password,
    parse_sasl_initial_response,
)

FRONTEND = [
    m.Query("select 1"),
    m.Parse("s1", "select $1::int", (23,)),
    m.Parse("", "select 1"),
    m.Bind("p", "s1", (1,), (b"\0\0\0\1", None), (0, 1)),
    m.Describe("S", "s1"),
    m.Describe("P", ""),
    m.Execute("p", 10),
    m.Close("S", "s1"),
    m.Sync(),
    m.Flush(),
    m.Terminate(),
    m.CopyData(b"1\t2\n"),
    m.CopyDone(),
    m.CopyFail("no"),
    m.FunctionCall(1234, (0,), (b"x", None), 1),
    m.PasswordMessage(b"secret\0"),
]

BACKEND = [
    m.AuthenticationOk(),
    m.AuthenticationCleartextPassword(),
    m.AuthenticationMD5Password(b"salt"),
    m.AuthenticationSASL(("SCRAM-SHA-256", "SCRAM-SHA-256-PLUS")),
    m.AuthenticationSASLContinue(b"r=abc,s=xyz,i=4096"),
    m.AuthenticationSASLFinal(b"v=sig"),
    m.BackendKeyData(42, b"\1\2\3\4"),
    m.ParameterStatus("TimeZone", "Etc/UTC"),
    m.ReadyForQuery("T"),
    m.RowDescription((m.FieldDescription("a", 16384, 1, 23, 4, -1, 0), m.FieldDescription("b"))),
    m.DataRow((b"1", None, b"")),
    m.CommandComplete("SELECT 1"),
    m.EmptyQueryResponse(),
    m.ErrorResponse({"S": "ERROR", "V": "ERROR", "C": "42P01", "M": 'relation "x" does not exist', "P": "15"}),
    m.NoticeResponse({"S": "NOTICE", "C": "00000", "M": "hi"}),
    m.ParseComplete(),
    m.BindComplete(),
    m.CloseComplete(),
    m.NoData(),
    m.PortalSuspended(),
    m.ParameterDescription((23, 25)),
    m.CopyInResponse(0, (0, 0)),
    m.CopyOutResponse(1, (1,)),
    m.CopyBothResponse(0, ()),
    m.CopyData(b"x"),
    m.CopyDone(),
    m.NotificationResponse(7, "chan", "payload"),
    m.FunctionCallResponse(None),
    m.NegotiateProtocolVersion(0, ("_pq_.foo",)),
]


def _split(data: bytes) -> tuple[int, bytes]:
    assert struct.unpack("!I", data[1:5])[0] == len(data) - 1
    return data[0], data[5:]


@pytest.mark.parametrize("msg", FRONTEND, ids=lambda x: type(x).__name__)
def test_frontend_round_trip(msg):
    assert decode_frontend(*_split(encode(msg))) == msg


@pytest.mark.parametrize("msg", BACKEND, ids=lambda x: type(x).__name__)
def test_backend_round_trip(msg):
    assert decode_backend(*_split(encode(msg))) == msg


@pytest.mark.parametrize("msg", [
    m.StartupMessage(196608, {"user": "u", "database": "d", "client_encoding": "'utf-8'"}),
    m.SSLRequest(), m.GSSENCRequest(), m.CancelRequest(5, b"abcd"), m.CancelRequest(5, b"k" * 32),
], ids=lambda x: type(x).__name__)
def test_startup_round_trip(msg):
    data = encode(msg)
    assert struct.unpack("!I", data[:4])[0] == len(data)
    assert decode_startup(data[4:]) == msg


def test_error_fields_accessors():
    e = BACKEND[13]
    assert (e.sqlstate, e.message, e.severity) == ("42P01", 'relation "x" does not exist', "ERROR")


def test_sasl_and_password_payloads():
    data = encode(m.SASLInitialResponse("SCRAM-SHA-256", b"n,,n=,r=abc"))
    assert parse_sasl_initial_response(data[5:]) == m.SASLInitialResponse("SCRAM-SHA-256", b"n,,n=,r=abc")
    assert parse_password(b"pw\0") == "pw"
    with pytest.raises(RemoteProtocolError):
        parse_password(b"no terminator")


@pytest.mark.parametrize("payload", [b"", b"x", b"\0\0", b"abc"])
def test_truncated_payloads_are_remote_errors(payload):
    for t in b"PBDECF":
        with pytest.raises(RemoteProtocolError) as ei:
            decode_frontend(t, payload)
        assert ei.value.sqlstate == "08P01"


def test_unknown_types():
    with pytest.raises(RemoteProtocolError):
        decode_frontend(ord("!"), b"")
    with pytest.raises(RemoteProtocolError):
        decode_backend(ord("!"), b"")


def test_encoding_misuse_is_local_error():
    with pytest.raises(LocalProtocolError):
        encode(m.Query("a\0b"))
    with pytest.raises(LocalProtocolError):
        encode(object())  # type: ignore[arg-type]


def test_startup_packet_rules():
    with pytest.raises(RemoteProtocolError):
        decode_startup(struct.pack("!I", 196608) + b"user\0u")  # no terminator
    fb = FrameBuffer(startup=True)
    fb.receive_data(struct.pack("!I", 3))
    with pytest.raises(RemoteProtocolError):
        fb.next_frame()
    fb = FrameBuffer(startup=True)
    fb.receive_data(struct.pack("!I", 100000))
    with pytest.raises(RemoteProtocolError):
        fb.next_frame()


@pytest.mark.parametrize("length", [0, 3, 0x80000000, 0xFFFFFFFF])
def test_frame_length_out_of_range(length):
    fb = FrameBuffer(max_length=1 << 20)
    fb.receive_data(b"Q" + struct.pack("!I", length))
    with pytest.raises(RemoteProtocolError):
        fb.next_frame()
    sc = StreamScanner({ord("Z")}, max_length=1 << 20)
    with pytest.raises(RemoteProtocolError):
        sc.feed(b"Q" + struct.pack("!I", length))


STREAM = b"".join(encode(x) for x in BACKEND if type(x).__name__ not in ("CopyData", "CopyDone")) + encode(
    m.DataRow((b"x" * 5000,))) + encode(m.ReadyForQuery("I"))


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=30))
def test_framebuffer_any_split(cuts):
    fb = FrameBuffer()
    frames = []
    pos = 0
    for cut in sorted(cuts) + [len(STREAM)]:
        fb.receive_data(STREAM[pos:cut])
        pos = cut
        while (f := fb.next_frame()) is not None:
            frames.append(f)
    assert b"".join(bytes([t]) + struct.pack("!I", len(p) + 4) + p for t, p in frames) == STREAM
    assert len(fb) == 0


@settings(max_examples=300, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=30),
       want=st.sets(st.sampled_from(list(b"ZSETDC1KR"))))
def test_scanner_any_split(cuts, want):
    sc = StreamScanner(set(want))
    out = []
    wanted = []
    pos = 0
    for cut in sorted(cuts) + [len(STREAM)]:
        chunk = STREAM[pos:cut]
        pos = cut
        pieces, intact = sc.feed(chunk)
        joined = b"".join(p for _, p in pieces)
        if intact:
            assert joined == chunk
        out.append(joined)
        for t, p in pieces:
            if t != PASS:
                assert t in want and p[0] == t and struct.unpack("!I", p[1:5])[0] == len(p) - 1
                wanted.append(t)
    assert b"".join(out) == STREAM
    assert sc.at_boundary
    expected = []
    fb = FrameBuffer()
    fb.receive_data(STREAM)
    while (f := fb.next_frame()) is not None:
        if f[0] in want:
            expected.append(f[0])
    assert wanted == expected
