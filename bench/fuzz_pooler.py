"""Fuzz a running pooler: garbage, mutated startups and messages, abrupt closes, concurrently.

    python bench/fuzz_pooler.py --port 6432 --count 100000 --concurrency 50 --seed 1

Each input is one connection: a startup packet (valid, mutated, truncated, SSLRequest,
CancelRequest or garbage), then a few frontend messages (valid, mutated or random bytes),
then either an abrupt close at a random byte or a read of whatever comes back for up to
``--read-timeout`` seconds.  Every ``--check-every`` inputs, and at the end, a normal client
(a real startup, ``SELECT 1``) must still be served, and the pooler's PID must be alive.

Prints progress, then: inputs sent, pooler exits (0 expected: the process is checked by PID),
connections the pooler had not closed within ``--read-timeout`` after the input (held), and
failed normal-client checks.  Exit status 1 when the pooler died or a normal client failed.
Bounded in count and in time (``--max-seconds``).
"""

from __future__ import annotations

import os
import random
import sys
import time

import click
import trio

from pgbundle.shared.protocol import encode, messages as m

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fuzz_sessions import alive  # noqa: E402  (the zombie-aware check, shared with the session fuzzer)

_FRONTEND = [
    lambda r: m.Query(_text(r)),
    lambda r: m.Parse(_text(r, 8), _text(r), ()),
    lambda r: m.Bind("", _text(r, 8), (), (r.randbytes(r.randrange(8)),), ()),
    lambda r: m.Describe(r.choice("SP"), ""),
    lambda r: m.Execute("", r.randrange(3)),
    lambda r: m.Sync(),
    lambda r: m.Flush(),
    lambda r: m.Terminate(),
    lambda r: m.PasswordMessage(_text(r).encode() + b"\0"),
    lambda r: m.CopyData(r.randbytes(r.randrange(64))),
    lambda r: m.CopyDone(),
    lambda r: m.CopyFail(_text(r)),
]
_SQL = ["SELECT 1", "BEGIN", "COMMIT", "ROLLBACK", "SELECT pg_sleep(0.01)", "COPY (SELECT 1) TO STDOUT",
        "COPY t FROM STDIN", "SET x = 1", "SELECT repeat('x', 100000)", "DISCARD ALL", "LISTEN c", ""]


def _text(r: random.Random, n: int = 40) -> str:
    if r.random() < 0.6:
        return r.choice(_SQL)
    return "".join(chr(r.randrange(1, 0x2FF)) for _ in range(r.randrange(n)))


def _mutate(r: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(r.randrange(1, 4)):
        op = r.randrange(4)
        if op == 0 and b:
            b[r.randrange(len(b))] = r.randrange(256)
        elif op == 1 and b:
            del b[r.randrange(len(b)):]  # truncate
        elif op == 2:
            b[r.randrange(len(b) + 1):0] = r.randbytes(r.randrange(1, 16))
        elif op == 3 and len(b) >= 4:
            i = r.randrange(len(b) - 3)  # a length field gone wrong
            b[i:i + 4] = r.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff", b"\x00\x00\x00\x03"])
    return bytes(b)


def make_input(r: random.Random, user: str, database: str) -> tuple[bytes, int | None]:
    """One connection's bytes, and where to cut the connection (None: send all, then read)."""
    kind = r.randrange(10)
    if kind == 0:
        start = r.randbytes(r.randrange(1, 300))
    elif kind == 1:
        start = encode(m.SSLRequest())
    elif kind == 2:
        start = encode(m.CancelRequest(r.randrange(1 << 31), r.randbytes(4)))
    else:
        params = {"user": user, "database": database}
        if r.random() < 0.2:
            params[_text(r, 10) or "x"] = _text(r, 10)
        start = encode(m.StartupMessage(3 << 16, params))
        if r.random() < 0.3:
            start = _mutate(r, start)
    body = b""
    for _ in range(r.randrange(6)):
        msg = encode(r.choice(_FRONTEND)(r))
        body += _mutate(r, msg) if r.random() < 0.3 else msg
    if r.random() < 0.1:
        body += r.randbytes(r.randrange(1, 200))
    data = start + body
    cut = r.randrange(len(data) + 1) if r.random() < 0.4 else None
    return data, cut


async def _one(port: int, data: bytes, cut: int | None, read_timeout: float, held: list[int]) -> None:
    try:
        s = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return
    async with s:
        try:
            await s.send_all(data if cut is None else data[:cut])
            if cut is not None:
                return  # abrupt close
            with trio.move_on_after(read_timeout) as scope:
                while await s.receive_some(65536):
                    pass
            if scope.cancelled_caught:
                held[0] += 1  # the pooler still holds it (it may be waiting for more input, legitimately)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass


async def normal_client(port: int, user: str, database: str) -> bool:
    """A real startup and ``SELECT 1`` get an answer."""
    from pgbundle.shared.protocol import FrameBuffer, decode_backend

    try:
        with trio.fail_after(30):
            s = await trio.open_tcp_stream("127.0.0.1", port)
            async with s:
                await s.send_all(encode(m.StartupMessage(3 << 16, {"user": user, "database": database})))
                fb = FrameBuffer()
                sent = False
                while True:
                    chunk = await s.receive_some(65536)
                    if not chunk:
                        return False
                    fb.receive_data(chunk)
                    while (f := fb.next_frame()) is not None:
                        msg = decode_backend(*f)
                        if isinstance(msg, m.ErrorResponse):
                            return False
                        if isinstance(msg, m.ReadyForQuery):
                            if sent:
                                return True
                            await s.send_all(encode(m.Query("SELECT 1")))
                            sent = True
    except (trio.TooSlowError, OSError, trio.BrokenResourceError):
        return False


async def campaign(port: int, pid: int, count: int, concurrency: int, seed: int, user: str, database: str,
                   read_timeout: float, check_every: int, max_seconds: float, quiet: bool = False) -> dict[str, int]:
    r = random.Random(seed)
    held = [0]
    res = {"inputs": 0, "pooler_exits": 0, "held": 0, "normal_failures": 0}
    limiter = trio.CapacityLimiter(concurrency)
    t0 = time.monotonic()

    async def run(data: bytes, cut: int | None) -> None:
        async with limiter:
            await _one(port, data, cut, read_timeout, held)

    done = 0
    while done < count and time.monotonic() - t0 < max_seconds:
        batch = min(check_every, count - done)
        async with trio.open_nursery() as n:
            for _ in range(batch):
                data, cut = make_input(r, user, database)
                n.start_soon(run, data, cut)
        done += batch
        if not alive(pid):
            res["pooler_exits"] += 1
            break
        if not await normal_client(port, user, database):
            res["normal_failures"] += 1
        if not quiet:
            print(f"{done}/{count} inputs, {time.monotonic() - t0:.0f}s, held {held[0]}, "
                  f"normal-client failures {res['normal_failures']}", flush=True)
    res["inputs"] = done
    res["held"] = held[0]
    if res["pooler_exits"] == 0 and not alive(pid):
        res["pooler_exits"] = 1
    return res


@click.command()
@click.option("--port", type=int, required=True)
@click.option("--pid", type=int, required=True, help="The pooler's PID (checked after every batch).")
@click.option("--count", type=int, default=100_000)
@click.option("--concurrency", type=int, default=50)
@click.option("--seed", type=int, default=1)
@click.option("--user", default="postgres")
@click.option("--database", default="postgres")
@click.option("--read-timeout", type=float, default=2.0)
@click.option("--check-every", type=int, default=1000)
@click.option("--max-seconds", type=float, default=3600.0)
def main(port: int, pid: int, count: int, concurrency: int, seed: int, user: str, database: str,
         read_timeout: float, check_every: int, max_seconds: float) -> None:
    res = trio.run(campaign, port, pid, count, concurrency, seed, user, database, read_timeout, check_every,
                   max_seconds)
    print(" ".join(f"{k}={v}" for k, v in res.items()))
    sys.exit(1 if res["pooler_exits"] or res["normal_failures"] else 0)


if __name__ == "__main__":
    main()
