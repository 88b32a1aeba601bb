"""Graceful limits: 1,000 concurrent clients against ``pgbundle pooler --max-connections 1000
--pool-size 20`` in front of PostgreSQL 15 are all served, and PostgreSQL never sees more than
20 backends for them.

Transaction mode: all 1,000 hold a connection at the same moment, then each runs a write
transaction.  Session mode: 1,000 connect-query-disconnect clients arrive at once and queue
for the 20 server connections.  Clients are psycopg 3 on asyncio, in this process.
"""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from .helpers import fresh_database, raise_fd_limit

N_CLIENTS = 1000
POOL_SIZE = 20


# "trust": auth_type=trust, as pgbouncer is usually run in front of a trusting server.
# "zero-config": no auth settings: the pooler admits a user once the upstream has admitted it.
# A cold burst of 1,000 *first* logins in zero-config mode: the pooler runs one upstream check
# for the user and the other 999 wait for its answer (no herd past PostgreSQL's max_connections).
AUTH = {"trust": ["--auth-type", "trust"], "zero-config": []}


def pooler_args(pg, mode: str, auth: str) -> list[str]:
    return ["--upstream", f"postgresql://127.0.0.1:{pg.port}", "--unix-socket-dir", "", "--pool-mode", mode,
            "--max-connections", str(N_CLIENTS), "--pool-size", str(POOL_SIZE), "--admin-users", "postgres",
            *AUTH[auth]]


def pool_row(pooler, db: str) -> dict:
    with psycopg.connect(pooler.dsn(dbname="pgbouncer"), autocommit=True) as conn:
        cur = conn.execute("SHOW POOLS", prepare=False)
        cols = [d.name for d in cur.description]
        for row in cur.fetchall():
            d = dict(zip(cols, row))
            if d["database"] == db and d["user"] == "postgres":
                return d
    raise AssertionError(f"no pool for {db}")


async def watch_backends(pg, db: str, stop: asyncio.Event, seen: list[int]) -> None:
    """Sample, directly on PostgreSQL, how many backends serve ``db`` (the pooler's servers)."""
    async with await psycopg.AsyncConnection.connect(pg.dsn(), autocommit=True) as conn:
        while not stop.is_set():
            cur = await conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (db,))
            seen.append((await cur.fetchone())[0])
            try:
                await asyncio.wait_for(stop.wait(), 0.05)
            except TimeoutError:
                pass


@pytest.fixture
def thousand_fds():
    raise_fd_limit(N_CLIENTS * 3 + 512)  # this process's 1,000 sockets; the pooler inherits the limit


@pytest.mark.parametrize("auth", list(AUTH))
def test_1000_clients_transaction_mode(pg, pooler_factory, thousand_fds, auth):
    db = "limits_tx"
    fresh_database(pg.dsn(), db)
    with psycopg.connect(pg.dsn(dbname=db), autocommit=True) as c:
        c.execute("CREATE TABLE served (client int PRIMARY KEY, backend int NOT NULL)")
    pooler = pooler_factory(pooler_args(pg, "transaction", auth))
    dsn = pooler.dsn(dbname=db)
    all_in, failed, go = asyncio.Event(), asyncio.Event(), asyncio.Event()
    connected = 0
    peak: dict = {}

    async def client(i: int) -> tuple[int, int]:
        nonlocal connected
        try:
            conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, connect_timeout=60)
        except BaseException:
            failed.set()  # the others would wait for this one forever
            raise
        try:
            connected += 1
            if connected == N_CLIENTS:
                all_in.set()
            await go.wait()  # every client holds its connection now, and the pooler has been asked
            async with conn.transaction():
                cur = await conn.execute("INSERT INTO served VALUES (%s, pg_backend_pid()) RETURNING client, backend",
                                         (i,))
                row = await cur.fetchone()
                await conn.execute("SELECT pg_sleep(0.005)")
            return row
        finally:
            await conn.close()

    async def main() -> tuple[list, list[int]]:
        stop, seen = asyncio.Event(), []
        watcher = asyncio.create_task(watch_backends(pg, db, stop, seen))
        tasks = [asyncio.create_task(client(i)) for i in range(N_CLIENTS)]
        waiters = [asyncio.create_task(all_in.wait()), asyncio.create_task(failed.wait())]
        await asyncio.wait(waiters, timeout=90, return_when=asyncio.FIRST_COMPLETED)
        for w in waiters:
            w.cancel()
        if all_in.is_set():
            # 1,000 clients connected at once; the pooler's view, taken while they all wait
            # (none has started its transaction yet: a fast one could have closed already)
            peak.update(await asyncio.to_thread(pool_row, pooler, db))
            go.set()
        else:  # one failed or the connects took too long: stop the rest, report below
            for t in tasks:
                t.cancel()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 90)
        stop.set()
        await watcher
        return results, seen

    t0 = time.monotonic()
    results, seen = asyncio.run(main())
    elapsed = time.monotonic() - t0
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, f"{len(errors)} clients failed, first: {errors[0]!r}\n{pooler.log()[-3000:]}"
    assert all_in.is_set(), f"only {connected} of {N_CLIENTS} clients connected within 90 s"
    assert sorted(r[0] for r in results) == list(range(N_CLIENTS))
    # the pooler held all of them as clients...
    assert peak["cl_active"] + peak["cl_waiting"] == N_CLIENTS, peak
    # ...on at most 20 PostgreSQL backends
    backends = {r[1] for r in results}
    assert 1 <= len(backends) <= POOL_SIZE, len(backends)
    assert seen and max(seen) <= POOL_SIZE, max(seen)
    with psycopg.connect(pg.dsn(dbname=db)) as c:
        assert c.execute("SELECT count(*), count(DISTINCT backend) FROM served").fetchone() == \
            (N_CLIENTS, len(backends))
    print(f"{N_CLIENTS} clients served in {elapsed:.1f}s by {len(backends)} backends "
          f"(peak {max(seen)} seen on PostgreSQL)")
    assert pooler.alive()


@pytest.mark.parametrize("auth", list(AUTH))
def test_1000_clients_session_mode(pg, pooler_factory, thousand_fds, auth):
    db = "limits_session"
    fresh_database(pg.dsn(), db)
    pooler = pooler_factory(pooler_args(pg, "session", auth))
    dsn = pooler.dsn(dbname=db)

    async def client(i: int) -> int:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, connect_timeout=60) as conn:
            cur = await conn.execute("SELECT %s::int + 0, pg_backend_pid()", (i,))
            return (await cur.fetchone())[0]

    async def main() -> tuple[list, list[int]]:
        stop, seen = asyncio.Event(), []
        watcher = asyncio.create_task(watch_backends(pg, db, stop, seen))
        results = await asyncio.wait_for(
            asyncio.gather(*(client(i) for i in range(N_CLIENTS)), return_exceptions=True), 90)
        stop.set()
        await watcher
        return results, seen

    results, seen = asyncio.run(main())
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, f"{len(errors)} clients failed, first: {errors[0]!r}\n{pooler.log()[-3000:]}"
    assert sorted(results) == list(range(N_CLIENTS))
    assert seen and max(seen) <= POOL_SIZE, max(seen)
    # every client has closed its side; the pooler notices each close as it reads it (not before
    # the client's last bytes are processed), so the count is asked until it is 0
    deadline = time.monotonic() + 60
    while (row := pool_row(pooler, db))["cl_active"] + row["cl_waiting"] != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert row["cl_active"] + row["cl_waiting"] == 0, row
    assert pooler.alive()
