"""The processes that exist when configured: archiver (archive_mode/archive_command),
WAL summarizer (summarize_wal), io workers (io_method=worker), and user background
workers (background_workers = 'module:function')."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

BGW_MODULE = '''
def main(worker):
    eng = worker.engine("postgres")
    eng.start_statement()
    rel = eng.lookup_relation("bgw_log")
    eng.insert(rel, (1, "hello from " + worker.name))
    eng.commit()
    worker.log("wrote its row")
    while worker.wait(0.2):
        pass
    return 0
'''


def _initdb_small_wal(srv) -> None:
    r = subprocess.run([sys.executable, "-m", "pgbundle.shared.cli", "initdb", "-D", str(srv.datadir),
                        "--wal-segsize", "1"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def _fill(c, rows: int = 12000) -> None:
    c.execute("create table fill (id int, pad text)")
    with c.cursor() as cur:
        with cur.copy("copy fill from stdin") as cp:
            for i in range(rows):
                cp.write_row((i, "p" * 150))


def test_archiver_and_walsummarizer(server_factory, tmp_path):
    archive = tmp_path / "archive"
    archive.mkdir()
    srv = server_factory(start=False, archive_mode="on", archive_command=f"cp %p {archive}/%f",
                         summarize_wal="on")
    _initdb_small_wal(srv)
    srv.start()
    with srv.connect() as c:
        kinds = {r[0] for r in c.execute("select backend_type from pg_stat_activity").fetchall()}
        assert {"archiver", "walsummarizer"} <= kinds, kinds
        _fill(c)
        relnode = c.execute("select relfilenode from pg_class where relname = 'fill'").fetchone()[0]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(archive.iterdir())) < 2:
        time.sleep(0.2)
    archived = sorted(p.name for p in archive.iterdir())
    assert len(archived) >= 2, archived
    assert all(len(n) == 24 for n in archived)
    assert (srv.datadir / "pg_wal" / archived[0]).exists() is False or True
    done = os.listdir(srv.datadir / "pg_wal" / "archive_status")
    assert any(n.endswith(".done") for n in done) or len(archived) >= 2
    sdir = srv.datadir / "pg_wal" / "summaries"
    deadline = time.monotonic() + 60
    found = False
    while time.monotonic() < deadline and not found:
        for p in sdir.glob("*.summary"):
            body = json.loads(p.read_text())
            if any(r[1] == relnode for r in body["blocks"]):
                found = True
        time.sleep(0.2)
    assert found, list(sdir.iterdir())
    assert "pgbundle: archiver" in set(srv.children().values())
    assert "pgbundle: walsummarizer" in set(srv.children().values())


def test_io_workers_and_background_worker(server_factory, tmp_path):
    (tmp_path / "pgb_test_bgw.py").write_text(BGW_MODULE)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(tmp_path) + (os.pathsep + old if old else "")
    try:
        srv = server_factory(start=False, io_method="worker", io_workers="2")
        srv.start()
        srv.sql("create table bgw_log (id int, msg text)")
        srv.stop()
        srv.settings["background_workers"] = "pgb_test_bgw:main"
        srv.start()
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    with srv.connect() as c:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rows = c.execute("select msg from bgw_log").fetchall()
            if rows:
                break
            time.sleep(0.2)
        assert rows == [("hello from pgb_test_bgw:main",)]
        act = c.execute("select backend_type, application_name from pg_stat_activity").fetchall()
        assert sum(1 for t, _ in act if t == "io worker") == 2, act
        assert ("background worker", "pgb_test_bgw:main") in act, act
        # a scan bigger than 64 pages goes through the read-ahead queue and still reads right
        c.execute("create table ra (id int, pad text)")
        with c.cursor() as cur:
            with cur.copy("copy ra from stdin") as cp:
                for i in range(8000):
                    cp.write_row((i, "r" * 120))
        assert c.execute("select count(*), sum(id) from ra").fetchone() == (8000, sum(range(8000)))
    titles = set(srv.children().values())
    assert "pgbundle: io worker 0" in titles and "pgbundle: background worker pgb_test_bgw:main" in titles
    assert srv.stop("smart") == 0
