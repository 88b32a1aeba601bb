"""shared.tls over real sockets: handshakes, data both ways, verification failures,
channel-binding data equal on both ends."""

from __future__ import annotations

import socket

import pytest
import trio

from pgbundle.shared import tls
from pgbundle.shared.netio import Conn
from tests.fix_tls import Certs


def _pair() -> tuple[Conn, Conn]:
    a, b = socket.socketpair()
    return Conn(a), Conn(b)


async def _both(certs: Certs, *, sslmode: str = "require", hostname: str | None = "localhost",
                ca: str | None = None, client_cert: tuple[str, str] | None = None,
                verify_client: str = "none") -> tuple[tls.TlsConn, tls.TlsConn]:
    sctx = tls.server_context(cert_file=certs.server_cert, key_file=certs.server_key, ca_file=certs.ca,
                              verify_client=verify_client)
    cctx = tls.client_context(sslmode=sslmode, ca_file=ca or certs.ca,
                              cert_file=client_cert[0] if client_cert else None,
                              key_file=client_cert[1] if client_cert else None)
    a, b = _pair()
    out: dict[str, tls.TlsConn] = {}

    async def srv() -> None:
        out["s"] = await tls.accept(a, sctx, cert_file=certs.server_cert)

    async def cli() -> None:
        out["c"] = await tls.connect(b, cctx, hostname)

    async with trio.open_nursery() as n:
        n.start_soon(srv)
        n.start_soon(cli)
    return out["s"], out["c"]


async def test_data_both_ways_and_channel_binding(tls_certs: Certs) -> None:
    s, c = await _both(tls_certs, sslmode="verify-full")
    big = bytes(range(256)) * 4096  # 1 MiB: many records, sends that must wait

    async def reader(conn: tls.TlsConn, n: int, into: list[bytes]) -> None:
        got = 0
        while got < n:
            data = await conn.recv()
            assert data
            into.append(data)
            got += len(data)

    chunks: list[bytes] = []
    async with trio.open_nursery() as n:
        n.start_soon(reader, s, len(big), chunks)
        await c.send_all(big)
    assert b"".join(chunks) == big
    await s.send_all(b"pong")
    assert await c.recv() == b"pong"
    assert s.version() in ("TLSv1.2", "TLSv1.3")
    assert s.alpn() == "postgresql"
    cb = s.server_end_point()
    assert cb is not None and len(cb) == 32
    assert cb == c.server_end_point()
    c.close()
    assert await s.recv() == b""
    s.close()


async def test_client_certificate_cn(tls_certs: Certs) -> None:
    s, c = await _both(tls_certs, client_cert=tls_certs.client("alice"), verify_client="required")
    assert s.peer_cn() == "alice"
    assert "CN=alice" in (s.peer_dn() or "")
    info = tls.describe(s)
    assert info is not None and info.client_dn and info.client_serial
    s.close()
    c.close()


@pytest.mark.parametrize("case", ["wrong-ca", "wrong-host"])
async def test_verification_failures(tls_certs: Certs, case: str) -> None:
    kwargs = {"ca": tls_certs.other_ca} if case == "wrong-ca" else {"hostname": "db.example.com"}
    with pytest.raises((tls.TlsError, BaseExceptionGroup)) as info:  # the nursery may group it
        await _both(tls_certs, sslmode="verify-full", **kwargs)  # type: ignore[arg-type]
    text = str(info.value) + "".join(str(e) for e in getattr(info.value, "exceptions", ()))
    assert "certificate verify failed" in text


async def test_garbage_instead_of_client_hello(tls_certs: Certs) -> None:
    sctx = tls.server_context(cert_file=tls_certs.server_cert, key_file=tls_certs.server_key)
    a, b = _pair()
    b.sock.send(b"GET / HTTP/1.1\r\n\r\n" * 10)
    with pytest.raises(tls.TlsError):
        await tls.accept(a, sctx)
    b.close()


async def test_peer_leaves_mid_handshake(tls_certs: Certs) -> None:
    sctx = tls.server_context(cert_file=tls_certs.server_cert, key_file=tls_certs.server_key)
    a, b = _pair()
    b.sock.send(b"\x16\x03\x01\x00\xff\x01")  # the start of a ClientHello, then gone
    b.close()
    with pytest.raises((tls.TlsError, tls.ConnectionLost)):
        await tls.accept(a, sctx)


def test_settings_are_checked(tls_certs: Certs) -> None:
    with pytest.raises(tls.TlsError, match="invalid TLS protocol"):
        tls.server_context(cert_file=tls_certs.server_cert, key_file=tls_certs.server_key, protocols="sslv3")
    with pytest.raises(tls.TlsError, match="could not load"):
        tls.server_context(cert_file="/nonexistent.crt", key_file="/nonexistent.key")
    with pytest.raises(tls.TlsError, match="invalid TLS ciphers"):
        tls.server_context(cert_file=tls_certs.server_cert, key_file=tls_certs.server_key, ciphers="NOPE-NOTHING")
    for shortcut in ("fast", "normal", "secure", "default", "compat", "legacy", "all", "insecure"):
        tls.server_context(cert_file=tls_certs.server_cert, key_file=tls_certs.server_key, ciphers=shortcut,
                           protocols="all" if shortcut in ("all", "legacy") else "secure")
    tls.server_context(cert_file=tls_certs.server_cert, key_file=tls_certs.server_key, ecdhcurve="prime256v1",
                       dheparams="none")
