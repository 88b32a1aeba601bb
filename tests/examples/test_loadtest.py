"""The load test, run as documented for a few seconds: side by side against PostgreSQL 15 and
pgbundle server, each direct and through pgbundle pooler, then over HTTP against the web app.
Checks that every target was served without errors and that the plot is a real PNG.
Figures are printed, never asserted (tests do not assert timings)."""

from __future__ import annotations

import json

from PIL import Image

from .helpers import fresh_database, run_loadtest


def pooler_args(upstream_port: int) -> list[str]:
    return ["--upstream", f"postgresql://127.0.0.1:{upstream_port}", "--unix-socket-dir", "",
            "--pool-mode", "transaction", "--pool-size", "10", "--max-connections", "200"]


def check_png(path, min_size=(800, 300)) -> None:
    assert path.is_file() and path.stat().st_size > 10_000, path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        im.verify()  # checksums of every chunk
    with Image.open(path) as im:
        im.load()  # and it decodes
        assert im.format == "PNG" and im.size[0] >= min_size[0] and im.size[1] >= min_size[1], im.size


def check_results(json_path, labels: list[str], scenario: str) -> list[dict]:
    data = json.loads(json_path.read_text())
    results = data["results"]
    assert [r["label"] for r in results] == labels
    for r in results:
        assert r["scenario"] == scenario
        assert r["errors"] == 0, r
        assert r["ok"] > 0 and r["per_second"] > 0, r
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] <= r["max_ms"], r
        assert not r["stopped_by_max_requests"]
    return results


def test_compare_direct_and_pooled(pg, pgb_server, pooler_factory, tmp_path):
    pg_pooler = pooler_factory(pooler_args(pg.port))
    srv_pooler = pooler_factory(pooler_args(pgb_server.port))
    plot, figures = tmp_path / "compare.png", tmp_path / "compare.json"
    r = run_loadtest("compare", "--postgres", pg.dsn(), "--postgres-pooled", pg_pooler.dsn(),
                     "--server", pgb_server.dsn(), "--server-pooled", srv_pooler.dsn(),
                     "--concurrency", "8", "--duration", "2", "--rounds", "2", "--warmup", "0.3", "--pause", "0.2",
                     "--plot", str(plot), "--json", str(figures))
    print(r.stdout)
    # the report: one row per target with the percentiles, and where the files went
    for label in ("postgres/direct", "postgres/pgbundle pooler", "pgbundle server/direct",
                  "pgbundle server/pgbundle pooler"):
        assert label in r.stdout
    assert "p50 ms" in r.stdout and "p95 ms" in r.stdout and "p99 ms" in r.stdout
    assert f"plot written to {plot}" in r.stdout.replace("\n", "")
    # the progress bar went to stderr
    assert "ok" in r.stderr and "100%" in r.stderr
    check_results(figures, ["postgres/direct", "postgres/pgbundle pooler", "pgbundle server/direct",
                            "pgbundle server/pgbundle pooler"], "pg")
    check_png(plot)


def test_http_scenario_against_the_web_app(pg, pooler_factory, webapp_factory, tmp_path):
    db = "webapp_load"
    fresh_database(pg.dsn(), db)
    pooler = pooler_factory(pooler_args(pg.port))
    app = webapp_factory(pooler.dsn(dbname=db))
    plot, figures = tmp_path / "http.png", tmp_path / "http.json"
    r = run_loadtest("http", "-t", f"guestbook/via pooler={app.url}", "--concurrency", "8", "--duration", "2",
                     "--warmup", "0.3", "--write-ratio", "0.3", "--plot", str(plot), "--json", str(figures))
    print(r.stdout)
    check_results(figures, ["guestbook/via pooler"], "http")
    check_png(plot)
    # the writes really happened (about 30% of the requests; at least one for sure)
    import psycopg

    with psycopg.connect(pg.dsn(dbname=db)) as c:
        n = c.execute("SELECT count(*) FROM guestbook WHERE name LIKE 'loadtest-%'").fetchone()[0]
    assert n > 0
    assert app.proc.poll() is None, app.log()


def test_bounded_and_failing_target(tmp_path):
    """A target that refuses every connection: the run still ends on time, reports the errors
    and exits non-zero because nothing succeeded."""
    import subprocess
    import sys

    from tests.procs import free_port

    from .helpers import LOADTEST

    r = subprocess.run([sys.executable, str(LOADTEST), "pg", "-t", f"nobody=postgresql://127.0.0.1:{free_port()}/x",
                        "--duration", "0.5", "--warmup", "0", "--concurrency", "4", "--timeout", "2"],
                       check=False, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r
    assert "nobody" in r.stdout and "OperationalError" in r.stdout and "refused" in r.stdout
