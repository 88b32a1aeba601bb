"""Cancel requests: the pooler's own keys, routed to the server serving the client.

Every client gets a BackendKeyData of the pooler's making (random pid and
secret).  A CancelRequest quoting it is forwarded -- on a new connection, as
the protocol wants -- to the server connection linked to that client at that
moment, with that server's key; a request for a client that is not running
anything, or with a wrong secret, is dropped, as PostgreSQL drops it.  While a
cancel is on its way the server is not handed to another client
(``Server.cancels_in_flight``), so it cannot hit somebody else's query.

Peers (pgbouncer >= 1.21, ``peer_id`` and ``[peers]``): several poolers behind one
address (``so_reuseport``) cannot tell which of them a cancel connection reaches.
With ``peer_id`` set, the pid of every key carries it (``pid >> 15``); a request
whose key names another peer is forwarded, as it came, to that peer's
``host:port`` from ``[peers]``, where it is handled as its own.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from typing import TYPE_CHECKING

import trio

from pgbundle.shared.netio import ConnectionLost, open_connection
from pgbundle.shared.protocol import encode, messages as m

from .guard import guarded
from .objects import ServerState

if TYPE_CHECKING:
    from .client import Client
    from .objects import PoolerHost
    from .server import Server

log = logging.getLogger("pgbundle.pooler")

#: With peer_id set, a key's pid is ``peer_id << 15 | 15 random bits`` (peer_id at most 16383).
_PEER_SHIFT = 15


class CancelRouter:
    def __init__(self, pooler: PoolerHost) -> None:
        self.pooler = pooler
        self.by_pid: dict[int, Client] = {}

    def register(self, client: Client) -> tuple[int, bytes]:
        peer_id = self.pooler.config.settings.peer_id
        while True:
            pid = (peer_id << _PEER_SHIFT | secrets.randbits(_PEER_SHIFT)) if peer_id else secrets.randbits(31)
            pid = pid or 1
            if pid not in self.by_pid:
                break
        key = os.urandom(4)
        self.by_pid[pid] = client
        return pid, key

    def unregister(self, client: Client) -> None:
        pid = client.cancel_key[0]
        if self.by_pid.get(pid) is client:
            del self.by_pid[pid]

    def request(self, pid: int, key: bytes) -> None:
        config = self.pooler.config
        own = config.settings.peer_id
        if own and pid >> _PEER_SHIFT != own:
            peer = config.peers.get(pid >> _PEER_SHIFT)
            if peer is not None:
                self.pooler.nursery.start_soon(guarded, self._to_peer, peer.host, peer.port, pid, key)
                return
        client = self.by_pid.get(pid)
        if client is None or not hmac.compare_digest(client.cancel_key[1], key):
            log.info("cancel request for unknown client %d ignored", pid)
            return
        server = client.server
        if server is None or server.state is not ServerState.ACTIVE or not server.backend_key:
            return  # nothing running for that client
        server.cancels_in_flight += 1
        self.pooler.nursery.start_soon(guarded, self._forward, server)

    async def _send(self, host: str, port: int, pid: int, key: bytes) -> None:
        """One CancelRequest on a connection of its own, waiting (cancel_wait_timeout) for the
        other end to close it after handling it.  Errors: OSError, ConnectionLost."""
        with trio.move_on_after(self.pooler.config.settings.cancel_wait_timeout or 10):
            conn = await open_connection(host, port)
            try:
                await conn.send_all(encode(m.CancelRequest(pid, key)))
                await conn.recv()
            finally:
                conn.close()

    async def _to_peer(self, host: str, port: int, pid: int, key: bytes) -> None:
        """A cancel request for a client of another peer: passed on as it came."""
        try:
            await self._send(host, port, pid, key)
        except (OSError, ConnectionLost) as exc:
            log.warning("cannot forward cancel request to peer %s:%s: %s", host, port, exc)

    async def _forward(self, server: Server) -> None:
        host, port = server.addr
        try:
            await self._send(host, port, server.backend_pid, server.backend_key)
        except (OSError, ConnectionLost) as exc:
            log.warning("%s: cannot forward cancel request: %s", server, exc)
        finally:
            server.cancels_in_flight -= 1
            pool = server.pool
            if server.cancels_in_flight == 0 and server.cancel_hold:
                server.cancel_hold = False
                pool.release(server)


