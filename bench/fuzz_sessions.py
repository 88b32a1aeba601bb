"""Fuzz a running pooler (pgbundle or pgbouncer) over TCP, bounded in count and time.

Every input is one TCP connection to the pooler carrying bytes from a seeded mutator:

* ``garbage``: random bytes;
* ``startup``: a valid StartupMessage with bytes flipped, inserted, deleted or cut;
* ``stream``: a valid startup, then a valid message stream (simple and extended query, COPY,
  pipelined Syncs, Terminate) with one mutation somewhere in it;
* ``truncated``: a valid stream cut at a random byte, then closed;
* ``oversized``: a message whose length field claims far more than is sent (or than is allowed);
* ``abrupt``: a real session (login, query) closed -- politely or with a TCP RST -- after a random
  protocol step: before auth, after auth, mid-query, mid-COPY, while queued.

Each connection reads the pooler's reply for at most ``--read-window`` seconds, then is closed by
us (RST half the time).  At the end the script prints: inputs sent, pooler exits (``--pid``:
must be 0), clients the pooler still holds ``--close-within`` seconds after the last input (from
the admin console's SHOW CLIENTS), and whether a normal client still works.  Exit code 1 when the
pooler died, a client was stranded or the normal client failed.

    python bench/fuzz_sessions.py --port 6432 --pid $(cat pooler.pid) --count 100000 --concurrency 64
"""

from __future__ import annotations

import os
import random
import socket
import struct
import sys
import time

import click
import psycopg
import trio

from pgbundle.shared.protocol import PROTOCOL_3_0, encode, messages as m

KINDS = ("garbage", "startup", "stream", "truncated", "oversized", "abrupt")


def startup(user: str, db: str, rnd: random.Random) -> bytes:
    params = {"user": user, "database": db}
    if rnd.random() < 0.5:
        params["application_name"] = "fuzz%d" % rnd.randrange(1000)
    return encode(m.StartupMessage(PROTOCOL_3_0, params))


def session_messages(rnd: random.Random) -> list[bytes]:
    """A valid message stream after the startup (no Terminate)."""
    out: list[bytes] = []
    for _ in range(rnd.randrange(1, 5)):
        k = rnd.randrange(6)
        if k == 0:
            out.append(encode(m.Query(rnd.choice(["select 1", "select pg_sleep(0.05)", "begin", "commit",
                                                  "select repeat('x', 100000)", "set search_path=public",
                                                  "select 1; select 2", "syntax error here"]))))
        elif k == 1:
            out += [encode(m.Parse("", "select $1::int", (23,))), encode(m.Bind("", "", (), (b"7",), ())),
                    encode(m.Describe("P", "")), encode(m.Execute("", 0)), encode(m.Sync())]
        elif k == 2:
            out += [encode(m.Parse("s%d" % rnd.randrange(5), "select 2", ())), encode(m.Flush())]
        elif k == 3:
            out += [encode(m.Query("copy (select generate_series(1, 1000)) to stdout"))]
        elif k == 4:
            out += [encode(m.Query("create temp table if not exists t(x int); copy t from stdin")),
                    b"d" + struct.pack("!I", 4 + 6) + b"1\n2\n3\n", b"c\0\0\0\4"]
        else:
            out += [encode(m.Sync()), encode(m.Sync())]
    if rnd.random() < 0.3:
        out.append(encode(m.Terminate()))
    return out


def mutate(data: bytes, rnd: random.Random, n: int = 1) -> bytes:
    b = bytearray(data)
    for _ in range(n):
        if not b:
            b += rnd.randbytes(rnd.randrange(1, 16))
            continue
        i = rnd.randrange(len(b))
        op = rnd.randrange(5)
        if op == 0:
            b[i] = rnd.randrange(256)
        elif op == 1:
            b[i:i] = rnd.randbytes(rnd.randrange(1, 9))
        elif op == 2:
            del b[i:i + rnd.randrange(1, 9)]
        elif op == 3:
            del b[i:]
        else:  # a length field set to something interesting
            j = max(0, min(i, len(b) - 4))
            b[j:j + 4] = struct.pack("!I", rnd.choice([0, 3, 4, 5, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 24, 8]))
    return bytes(b)


def make_input(kind: str, rnd: random.Random, user: str, db: str) -> tuple[bytes, int]:
    """(bytes to send, abrupt step): step > 0 means a real session closed after that step."""
    su = startup(user, db, rnd)
    if kind == "garbage":
        return rnd.randbytes(rnd.randrange(0, 2048)), 0
    if kind == "startup":
        return mutate(su, rnd, rnd.randrange(1, 4)), 0
    stream = b"".join(session_messages(rnd))
    if kind == "stream":
        return su + mutate(stream, rnd, rnd.randrange(1, 3)), 0
    if kind == "truncated":
        whole = su + stream
        return whole[:rnd.randrange(1, len(whole))], 0
    if kind == "oversized":
        t = rnd.choice([b"Q", b"P", b"d", b"p", b"B"])
        head = su if rnd.random() < 0.8 else b""
        if not head:
            return struct.pack("!I", rnd.choice([0x7FFFFFFF, 1 << 30, 10 << 20])) + rnd.randbytes(64), 0
        return head + t + struct.pack("!I", rnd.choice([0x7FFFFFFF, 1 << 30, 10 << 20, 300 << 20])) + \
            rnd.randbytes(rnd.randrange(0, 4096)), 0
    return su + stream, rnd.randrange(1, 6)


async def one(host: str, port: int, data: bytes, step: int, rnd: random.Random, window: float) -> None:
    s = trio.socket.socket()
    try:
        with trio.move_on_after(5):
            await s.connect((host, port))
        if step:
            await abrupt(s, data, step, rnd, window)
        else:
            with trio.move_on_after(window):
                await send_all(s, data)
                while await s.recv(65536):
                    pass
    except OSError:
        pass
    finally:
        if rnd.random() < 0.5:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
            except OSError:
                pass  # already closed (a cancelled connect)
        s.close()


async def send_all(s: trio.socket.SocketType, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[await s.send(view):]


async def abrupt(s: trio.socket.SocketType, data: bytes, step: int, rnd: random.Random, window: float) -> None:
    """A real session, closed after ``step``: 1 startup sent, 2 auth answered, 3 a query half sent,
    4 a query sent (reply unread), 5 inside COPY FROM STDIN."""
    su_len = struct.unpack("!I", data[:4])[0]
    if step == 1:
        await send_all(s, data[:su_len])
        return
    await send_all(s, data[:su_len])
    with trio.move_on_after(window * 4):
        buf = b""
        while b"Z\0\0\0\5" not in buf:  # ReadyForQuery after the login
            chunk = await s.recv(65536)
            if not chunk:
                return
            buf += chunk
    if step == 2:
        return
    q = encode(m.Query(rnd.choice(["select pg_sleep(0.2)", "select repeat('x', 1000000)",
                                   "select generate_series(1, 100000)"])))
    if step == 3:
        await send_all(s, q[:rnd.randrange(1, len(q))])
    elif step == 4:
        await send_all(s, q)
    else:
        await send_all(s, encode(m.Query("create temp table if not exists t(x int); copy t from stdin")))
        await send_all(s, b"d" + struct.pack("!I", 4 + 4) + b"1\n2\n")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


def held_clients(host: str, port: int, admin_user: str, verbose: bool = False) -> int:
    """Clients the pooler holds, but the admin connection asking."""
    with psycopg.connect(host=host, port=port, user=admin_user, dbname="pgbouncer", autocommit=True,
                         connect_timeout=10) as c:
        cur = c.execute("SHOW CLIENTS", prepare=False)
        cols = [d.name for d in cur.description]
        rows = [dict(zip(cols, r)) for r in cur.fetchall()]
        held = [r for r in rows if r.get("database") != "pgbouncer"]
        if held and verbose:
            for r in held:
                print("held:", {k: r.get(k) for k in ("state", "addr", "port", "connect_time", "request_time",
                                                       "wait", "wait_us", "link", "application_name")}, flush=True)
        return len(held)


@click.command()
@click.option("--host", default="127.0.0.1")
@click.option("--port", type=int, required=True)
@click.option("--pid", type=int, default=0, help="the pooler's pid, to count exits (0: not checked)")
@click.option("--count", type=int, default=100_000, show_default=True, help="inputs to send")
@click.option("--concurrency", type=int, default=64, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--duration", type=float, default=1800, show_default=True, help="stop sending after this many s")
@click.option("--read-window", type=float, default=0.3, show_default=True, help="s to read each reply")
@click.option("--close-within", type=float, default=30, show_default=True,
              help="s after the last input by which the pooler must have closed every fuzz client")
@click.option("--user", default="postgres")
@click.option("--dbname", default="postgres")
@click.option("--admin-user", default="postgres")
def main(host: str, port: int, pid: int, count: int, concurrency: int, seed: int, duration: float,
         read_window: float, close_within: float, user: str, dbname: str, admin_user: str) -> None:
    """Throw COUNT fuzzed inputs at the pooler on HOST:PORT and report what it survived."""
    sent = {k: 0 for k in KINDS}
    exits = 0
    start = time.monotonic()

    async def run() -> None:
        nonlocal exits
        next_i = 0
        last_print = start

        async def worker(w: int) -> None:
            nonlocal next_i, last_print, exits
            while next_i < count and time.monotonic() - start < duration and not exits:
                i = next_i
                next_i += 1
                rnd = random.Random(seed * 1_000_003 + i)  # input i is the same on every run
                kind = KINDS[rnd.randrange(len(KINDS))]
                data, step = make_input(kind, rnd, user, dbname)
                await one(host, port, data, step, rnd, read_window)
                sent[kind] += 1
                now = time.monotonic()
                if now - last_print >= 10:
                    last_print = now
                    if pid and not alive(pid):
                        exits += 1
                    print(f"[{now - start:6.0f} s] {sum(sent.values())} inputs, pooler "
                          f"{'alive' if not exits else 'EXITED'}", flush=True)

        async with trio.open_nursery() as n:
            for w in range(concurrency):
                n.start_soon(worker, w)

    trio.run(run)
    total = sum(sent.values())
    elapsed = time.monotonic() - start
    if pid and not alive(pid):
        exits = 1
    stranded = -1
    if not exits:
        deadline = time.monotonic() + close_within
        while True:
            over = time.monotonic() > deadline
            stranded = held_clients(host, port, admin_user, verbose=over)
            if stranded == 0 or over:
                break
            time.sleep(0.5)
    works = False
    if not exits:
        try:
            with psycopg.connect(host=host, port=port, user=user, dbname=dbname, connect_timeout=10) as c:
                works = c.execute("select 41 + 1").fetchone() == (42,)
        except psycopg.Error as exc:
            print(f"normal client failed: {exc}", file=sys.stderr)
    print(f"inputs sent: {total} in {elapsed:.0f} s ({', '.join(f'{k} {v}' for k, v in sent.items())})")
    print(f"seed: {seed}, concurrency: {concurrency}")
    print(f"pooler exits: {exits}")
    print(f"clients not closed within {close_within:g} s: {stranded if stranded >= 0 else 'n/a'}")
    print(f"normal client works: {'yes' if works else 'no'}")
    sys.exit(0 if not exits and stranded == 0 and works else 1)


if __name__ == "__main__":
    main()
