"""shared/netio.Conn over real socket pairs: the contract its docstring states."""

from __future__ import annotations

import socket

import pytest
import trio

from pgbundle.shared.netio import Conn, ConnectionLost


def _pair() -> tuple[Conn, socket.socket]:
    a, b = socket.socketpair()
    return Conn(a), b


async def test_recv_after_close_reads_eof() -> None:
    """A recv() after the connection was closed returns b"" -- also when the previous read had
    to wait (the wait-first path), where trio would otherwise be asked to wait on fd -1 (a
    ValueError that took the whole pooler down when a server was closed under its relay)."""
    conn, peer = _pair()
    async with trio.open_nursery() as n:
        got: list[bytes] = []

        async def reader() -> None:
            got.append(await conn.recv())

        n.start_soon(reader)
        await trio.sleep(0.05)  # the reader is waiting: its next recv() waits first
        peer.sendall(b"x")
    assert got == [b"x"]
    conn.close()
    assert await conn.recv() == b""
    await conn.wait_readable()  # returns at once
    assert await conn.recv() == b""
    peer.close()


async def test_close_wakes_a_waiting_reader() -> None:
    conn, peer = _pair()
    got: list[bytes] = []
    async with trio.open_nursery() as n:
        async def reader() -> None:
            got.append(await conn.recv())

        n.start_soon(reader)
        await trio.sleep(0.05)
        conn.close()
    assert got == [b""]
    peer.close()


async def test_send_after_close_raises_connection_lost() -> None:
    conn, peer = _pair()
    conn.close()
    with pytest.raises(ConnectionLost):
        await conn.send_all(b"hello")
    peer.close()


async def test_reset_peer_reads_as_eof() -> None:
    conn, peer = _pair()
    peer.close()
    assert await conn.recv() == b""
    conn.close()
