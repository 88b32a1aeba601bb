"""LISTEN/NOTIFY in transaction mode: one listening connection per pool fans notifications out.

A client's LISTEN runs on whatever server it happens to use, and that server
soon serves somebody else, so notifications from pooled servers are dropped
and delivery comes from a dedicated connection per (database, user) that
LISTENs on the union of the channels its clients listen on.  A notification
reaches a client at once when it is idle, or right after the current reply
when it is running something (never inside a message).  UNLISTEN, UNLISTEN *,
DISCARD ALL and disconnecting unsubscribe.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING

import trio

from pgbundle.shared.netio import ConnectionLost
from pgbundle.shared.protocol import FrameBuffer, decode_backend_as, encode, messages as m

from .guard import guarded
from .server import Server

if TYPE_CHECKING:
    from .client import Client
    from .objects import Pool, PoolerHost

log = logging.getLogger("pgbundle.pooler")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PoolListener:
    """The listening connection of one pool and who listens on what."""

    def __init__(self, pooler: PoolerHost, pool: Pool) -> None:
        self.pooler = pooler
        self.pool = pool
        self.channels: dict[str, set[Client]] = {}
        self.server: Server | None = None
        self.ready = trio.Event()  # the connection is up and listens on every channel
        self.replies: deque[trio.Event] = deque()  # one per command sent, set at its ReadyForQuery
        self.running = False

    async def add(self, client: Client, channel: str) -> None:
        """Subscribe ``client``; returns once the pool's connection listens on ``channel``."""
        subs = self.channels.setdefault(channel, set())
        new = not subs
        subs.add(client)
        if not self.running:
            self.running = True
            self.pooler.nursery.start_soon(guarded, self.run)
        with trio.move_on_after(self.pooler.config.settings.server_connect_timeout or 15):
            await self.ready.wait()
            if new and channel in self.channels:
                await self._command(f"LISTEN {_ident(channel)}")

    def remove(self, client: Client, channel: str) -> None:
        subs = self.channels.get(channel)
        if subs is None:
            return
        subs.discard(client)
        if not subs:
            del self.channels[channel]
            if self.ready.is_set():
                self.pooler.nursery.start_soon(guarded, self._command, f"UNLISTEN {_ident(channel)}")

    async def _command(self, sql: str) -> None:
        server = self.server
        if server is None:
            return
        done = trio.Event()
        self.replies.append(done)
        try:
            await server.linked_conn().send_all(encode(m.Query(sql)))
        except ConnectionLost:
            return
        await done.wait()

    async def run(self) -> None:
        """Keep the listening connection up (reconnecting after server_login_retry) and dispatch."""
        retry = self.pooler.config.settings.server_login_retry or 1
        while not self.pooler.shutting_down:
            server = Server(self.pool, self.pooler)
            try:
                await server.login(self.pooler.auth.server_credentials(self.pool))
            except Exception as exc:  # PoolerError or a network error: try again later
                log.warning("LISTEN connection for %s failed: %s", self.pool, getattr(exc, "message", exc))
                await trio.sleep(retry)
                continue
            self.server = server
            try:
                async with trio.open_nursery() as n:
                    n.start_soon(self._read, server, n.cancel_scope)
                    for ch in list(self.channels):  # (re)subscribe everything before anyone relies on it
                        await self._command(f"LISTEN {_ident(ch)}")
                    self.ready.set()
            except Exception:  # bad data from the server, a bug: this connection only; reconnect
                log.exception("LISTEN connection for %s: internal error", self.pool)
                await trio.sleep(retry)
            finally:
                self.ready = trio.Event()
                self.server = None
                for ev in self.replies:
                    ev.set()
                self.replies.clear()
                server._close_socket()

    async def _read(self, server: Server, scope: trio.CancelScope) -> None:
        frames = FrameBuffer()
        while True:
            data = await server.linked_conn().recv()
            if not data:
                scope.cancel()
                return
            frames.receive_data(data)
            while (f := frames.next_frame()) is not None:
                t = f[0]
                if t == m.NotificationResponse.TYPE[0]:
                    msg = decode_backend_as(m.NotificationResponse, *f)
                    raw = encode(msg)
                    for c in list(self.channels.get(msg.channel, ())):
                        c.deliver(raw)
                elif t == m.ReadyForQuery.TYPE[0]:
                    if self.replies:
                        self.replies.popleft().set()
                elif t == m.ErrorResponse.TYPE[0]:
                    err = decode_backend_as(m.ErrorResponse, *f)
                    log.warning("LISTEN connection for %s: %s", self.pool, err.message)


class Listeners:
    """All pools' listeners; clients subscribe through here."""

    def __init__(self, pooler: PoolerHost) -> None:
        self.pooler = pooler
        self.by_pool: dict[tuple[str, str], PoolListener] = {}

    async def listen(self, client: Client, channel: str) -> None:
        pool = client.pool
        assert pool is not None  # a logged-in client of a pool
        key = (pool.dbname, pool.user)
        pl = self.by_pool.get(key)
        if pl is None:
            pl = self.by_pool[key] = PoolListener(self.pooler, pool)
        client.listening.add(channel)
        await pl.add(client, channel)

    def unlisten(self, client: Client, channel: str) -> None:
        pool = client.pool
        assert pool is not None
        pl = self.by_pool.get((pool.dbname, pool.user))
        chans = list(client.listening) if channel == "*" else [channel]
        for ch in chans:
            client.listening.discard(ch)
            if pl is not None:
                pl.remove(client, ch)

    def client_gone(self, client: Client) -> None:
        if client.listening:
            self.unlisten(client, "*")
