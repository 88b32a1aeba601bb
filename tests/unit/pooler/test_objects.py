"""Pool state transitions with no sockets: a fake host, bare clients and servers."""

from __future__ import annotations

from types import SimpleNamespace

import trio
import trio.testing

from pgbundle.pooler.config import Config, DatabaseConfig
from pgbundle.pooler.objects import ClientState, PauseState, Pool, ServerState, client_logged_in, server_closed
from pgbundle.pooler.stats import Stats


class FakeHost:
    """The PoolHost a Pool needs; records the server logins it is asked to start."""

    def __init__(self) -> None:
        self.config = Config()
        self.stats = Stats()
        self.pause = PauseState()
        self.shutting_down = False
        self.started: list[Pool] = []

    def may_open_server(self, pool: Pool) -> bool:
        return True

    def start_server(self, pool: Pool) -> None:
        self.started.append(pool)


class Bare(SimpleNamespace):
    """A stand-in connection: attributes only, hashable by identity like Client and Server."""

    __hash__ = object.__hash__
    __eq__ = object.__eq__  # type: ignore[assignment]


def _server(pool: Pool) -> Bare:
    s = Bare(state=ServerState.LOGIN, pool=pool, client=None, close_needed=False, close_reason=None,
                        cancels_in_flight=0, cancel_hold=False, connect_time=0.0, last_used=0.0, link_time=0.0,
                        params={"server_version": "17"})
    s.needs_check = lambda: False
    return s


def _client() -> Bare:
    return Bare(state=ClientState.LOGIN, pool=None, server=None, last_server=None, wait_task=None,
                           wait_error=None, wait_start=0.0)


def _pool(host: FakeHost) -> Pool:
    return Pool(host, "app", "alice", DatabaseConfig(), register=False)


def test_login_release_acquire_forget() -> None:
    host = FakeHost()
    pool = _pool(host)
    srv = _server(pool)
    pool.add_login(srv)
    assert pool.server_count == 1
    pool.login_succeeded(srv)
    assert srv.state is ServerState.IDLE and pool.idle == [srv] and pool.welcome == {"server_version": "17"}
    c = _client()
    pool.add_client(c)
    assert c.state is ClientState.ACTIVE and c.pool is pool

    async def go() -> None:
        assert await pool.acquire(c) is srv

    trio.run(go)
    assert srv.state is ServerState.ACTIVE and srv.client is c and c.server is srv and srv in pool.active
    pool.release(srv)
    assert srv.state is ServerState.IDLE and c.server is None and pool.idle == [srv]
    trio.run(go)  # linked again: the client's last server is idle, so it gets that one
    pool.mark_used(srv)  # the client left mid-transaction: reset before reuse
    assert srv.state is ServerState.USED and srv in pool.used and not pool.active and c.server is None
    pool.forget(srv)
    assert srv.state is ServerState.CLOSED and pool.server_count == 0
    pool.remove_client(c)
    assert c.state is ClientState.CLOSED and not pool.clients


def test_waiting_client_gets_the_released_server_and_pause() -> None:
    host = FakeHost()
    pool = _pool(host)
    c = _client()
    pool.add_client(c)
    got: list[object] = []

    async def go() -> None:
        async with trio.open_nursery() as n:
            async def waiter() -> None:
                got.append(await pool.acquire(c))
            n.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            assert c.state is ClientState.WAITING and list(pool.waiting) == [c]
            assert host.started == [pool]  # a login was asked for
            srv = _server(pool)
            pool.add_login(srv)
            pool.login_succeeded(srv)

    trio.run(go)
    assert len(got) == 1 and c.state is ClientState.ACTIVE and c.server is got[0]
    host.pause.pause("app")
    host.pause.apply([pool])
    assert pool.paused and host.pause.db_paused("app") and not host.pause.db_paused("other")
    host.pause.resume("app")
    host.pause.apply([pool])
    assert not pool.paused


def test_outside_pool_transitions_and_disable() -> None:
    c = _client()
    client_logged_in(c)
    assert c.state is ClientState.ACTIVE
    s = _server(None)  # type: ignore[arg-type]
    server_closed(s)
    assert s.state is ServerState.CLOSED
    p = PauseState()
    p.disable("app")
    assert p.db_disabled("app")
    p.enable("app")
    assert not p.db_disabled("app")
