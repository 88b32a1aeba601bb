"""Storage: a table several times larger than shared_buffers round-trips through the
buffer pool (eviction, background writer), indexes answer equality and range lookups,
and the checkpointer's statistics move."""

from __future__ import annotations

import time


def test_table_larger_than_shared_buffers(server_factory):
    srv = server_factory(shared_buffers="1MB", bgwriter_delay="10ms")  # 128 buffers
    with srv.connect() as c:
        c.execute("create table big (id int primary key, pad text)")
        pad = "x" * 200
        with c.cursor() as cur:
            with cur.copy("copy big from stdin") as cp:
                for i in range(30000):  # ~7 MB of heap: about 7 times shared_buffers
                    cp.write_row((i, f"{i}:{pad}"))
        pages = c.execute("select pg_relation_size('big')").fetchone()[0] // 8192 \
            if _has_relation_size(c) else None
        total, s = c.execute("select count(*), sum(id) from big").fetchone()
        assert total == 30000 and s == sum(range(30000))
        for i in (0, 777, 15000, 29999):
            assert c.execute("select pad from big where id = %s", (i,)).fetchone() == (f"{i}:{pad}",)
        rng = c.execute("select id from big where id >= 100 and id < 110 order by id").fetchall()
        assert [r[0] for r in rng] == list(range(100, 110))
        c.execute("update big set pad = 'short' where id % 10 = 0")
        assert c.execute("select count(*) from big where pad = 'short'").fetchone() == (3000,)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            stats = c.execute("select buffers_clean, buffers_alloc from pg_stat_bgwriter").fetchone()
            if stats[0] > 0:
                break
            c.execute("select count(*) from big")
            time.sleep(0.2)
        assert stats[1] > 128, stats  # pages were evicted and reloaded
        assert stats[0] > 0, stats  # the background writer wrote dirty buffers
        _ = pages
    srv.stop("fast")
    srv.start()
    with srv.connect() as c:
        assert c.execute("select count(*), sum(id) from big").fetchone() == (30000, sum(range(30000)))
        assert c.execute("select count(*) from big where pad = 'short'").fetchone() == (3000,)


def _has_relation_size(c) -> bool:
    try:
        c.execute("select pg_relation_size('big')")
        return True
    except Exception:
        return False


def test_checkpoint_command_and_stats(server):
    with server.connect() as c:
        before = c.execute("select num_requested from pg_stat_checkpointer").fetchone()[0]
        c.execute("create table ck (id int)")
        c.execute("insert into ck values (1)")
        c.execute("checkpoint")
        after = c.execute("select num_requested from pg_stat_checkpointer").fetchone()[0]
        assert after == before + 1
        c.execute("drop table ck")


def test_wal_volume_triggers_checkpoint(server_factory):
    import subprocess
    import sys

    srv = server_factory(start=False, max_wal_size="2MB")
    r = subprocess.run([sys.executable, "-m", "pgbundle.shared.cli", "initdb", "-D", str(srv.datadir),
                        "--wal-segsize", "1"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    srv.start()
    with srv.connect() as c:
        assert c.execute("show wal_segment_size").fetchone() == ("1MB",)
        before = c.execute("select num_requested from pg_stat_checkpointer").fetchone()[0]
        c.execute("create table walvol (id int, pad text)")
        with c.cursor() as cur:
            with cur.copy("copy walvol from stdin") as cp:
                for i in range(20000):  # ~4 MB of WAL
                    cp.write_row((i, "p" * 150))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            after = c.execute("select num_requested from pg_stat_checkpointer").fetchone()[0]
            if after > before:
                break
            time.sleep(0.2)
        assert after > before
    assert "checkpoint starting: wal" in srv.log()
    segs = [p for p in (srv.datadir / "pg_wal").iterdir() if len(p.name) == 24]
    assert len(segs) <= 6, segs  # old segments were removed by the checkpoints


def test_btree_concurrent_inserts_and_lock_free_readers(server):
    """Writers split pages while readers scan without an index lock: nothing is missed
    or repeated, and the index agrees with the heap afterwards."""
    import random
    import threading

    with server.connect() as c:
        c.execute("create table bt (id int, k int)")
        c.execute("create index bt_k on bt (k)")
    stop = threading.Event()
    problems: list[str] = []

    def writer(seed: int) -> None:
        rnd = random.Random(seed)
        with server.connect() as c:
            for i in range(1500):
                c.execute("insert into bt values (%s, %s)", (seed * 100000 + i, rnd.randrange(5000)))

    def reader() -> None:
        with server.connect() as c:
            while not stop.is_set():
                rows = c.execute("select id from bt where k >= 1000 and k < 2000").fetchall()
                ids = [r[0] for r in rows]
                if len(ids) != len(set(ids)):
                    problems.append("duplicate ids in an index range scan")

    ws = [threading.Thread(target=writer, args=(s,)) for s in range(3)]
    rs = [threading.Thread(target=reader) for _ in range(2)]
    for t in ws + rs:
        t.start()
    for t in ws:
        t.join(120)
    stop.set()
    for t in rs:
        t.join(30)
    assert not problems, problems[:3]
    with server.connect() as c:
        heap = dict(c.execute("select id, k from bt").fetchall())
        assert len(heap) == 4500
        for lo in range(0, 5000, 250):
            got = sorted(r[0] for r in c.execute("select id from bt where k >= %s and k < %s", (lo, lo + 250)))
            want = sorted(i for i, k in heap.items() if lo <= k < lo + 250)
            assert got == want, lo
        deadline = time.monotonic() + 10
        while True:  # the range scans did go through the index
            row = c.execute("select idx_scan from pg_stat_user_tables where relname = 'bt'").fetchone()
            if row and row[0]:
                break
            assert time.monotonic() < deadline, row
            time.sleep(0.2)
        c.execute("drop table bt")
