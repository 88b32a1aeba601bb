"""Dead tuples from updates are reclaimed by autovacuum without a manual VACUUM, and
the space is reused (the table stops growing)."""

from __future__ import annotations

import time


def test_autovacuum_reclaims_dead_tuples(server_factory):
    srv = server_factory(autovacuum_naptime="1s")
    with srv.connect() as c:
        c.execute("create table av (id int primary key, n int)")
        c.execute("insert into av select g, 0 from generate_series(1, 200) g")
        for _ in range(5):
            c.execute("update av set n = n + 1")
        deadline = time.monotonic() + 60
        row = None
        while time.monotonic() < deadline:
            row = c.execute("select n_live_tup, n_dead_tup, autovacuum_count, last_autovacuum "
                            "from pg_stat_user_tables where relname = 'av'").fetchone()
            if row and row[2] >= 1 and row[1] < 200:
                break
            time.sleep(0.5)
        assert row is not None and row[2] >= 1, row
        assert row[3] is not None
        assert row[0] == 200
        assert c.execute("select count(*), sum(n) from av").fetchone() == (200, 1000)
        # the space is reused: more updates do not grow the table much past its size
        size_before = _pages(c)
        for _ in range(3):
            c.execute("update av set n = n + 1")
            time.sleep(1.5)
        assert _pages(c) <= size_before + 8


def _pages(c) -> int:
    try:
        return c.execute("select pg_relation_size('av')").fetchone()[0] // 8192
    except Exception:
        return c.execute("select relpages from pg_class where relname = 'av'").fetchone()[0]
