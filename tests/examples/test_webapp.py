"""The example web app end to end: HTTP client -> Flask app (its own process, one database
connection per request) -> pgbundle pooler -> PostgreSQL 15 or pgbundle server -> back."""

from __future__ import annotations

import re
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from .helpers import fresh_database


def pool_stats(pooler, dbname: str) -> dict:
    with psycopg.connect(pooler.dsn(dbname="pgbouncer"), autocommit=True) as conn:
        cur = conn.execute("SHOW STATS", prepare=False)
        cols = [d.name for d in cur.description]
        for row in cur.fetchall():
            d = dict(zip(cols, row))
            if d["database"] == dbname:
                return d
    raise AssertionError(f"the pooler has no stats for database {dbname}")


@pytest.fixture(params=["postgres15", "pgbundle-server"])
def upstream(request, pg):
    """(upstream URL for the pooler, database name, direct DSN to that database)."""
    if request.param == "postgres15":
        db = "webapp_e2e"
        fresh_database(pg.dsn(), db)
        return f"postgresql://127.0.0.1:{pg.port}", db, pg.dsn(dbname=db)
    server = request.getfixturevalue("pgb_server")
    with psycopg.connect(server.dsn(), autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS guestbook")
    return f"postgresql://127.0.0.1:{server.port}", "postgres", server.dsn()


def test_guestbook_end_to_end(upstream, pooler_factory, webapp_factory):
    upstream_url, db, direct_dsn = upstream
    pooler = pooler_factory(["--upstream", upstream_url, "--unix-socket-dir", "", "--pool-mode", "transaction",
                             "--pool-size", "5", "--max-connections", "200", "--admin-users", "postgres"])
    app = webapp_factory(pooler.dsn(dbname=db))  # the app knows only the pooler's address

    status, health = app.json("GET", "/healthz")
    assert status == 200 and health["ok"] is True, (health, app.log())

    # JSON API: add, read back, list
    marker = uuid.uuid4().hex[:8]
    status, entry = app.json("POST", "/api/entries", json_body={"name": "Ada", "message": f"hello {marker}"})
    assert status == 201, (entry, app.log())
    assert entry["name"] == "Ada" and entry["message"] == f"hello {marker}" and entry["id"] > 0
    status, got = app.json("GET", f"/api/entries/{entry['id']}")
    assert status == 200 and got == entry
    status, listing = app.json("GET", "/api/entries?limit=10")
    assert status == 200 and listing["count"] == 1 and listing["entries"] == [entry]

    # the row is really in the server's table (read directly, not through the app or the pooler)
    with psycopg.connect(direct_dsn, autocommit=True) as c:
        assert c.execute("SELECT name, message FROM guestbook WHERE id = %s", (entry["id"],)).fetchone() \
            == ("Ada", f"hello {marker}")

    # the HTML form: POST, 303 redirect to the page, which shows both entries
    status, _, body = app.request("POST", "/entries", form={"name": "Grace", "message": "<b>escaped</b>"})
    html = body.decode()
    assert status == 200 and "<h1>Guestbook</h1>" in html
    assert f"hello {marker}" in html and "&lt;b&gt;escaped&lt;/b&gt;" in html and "<b>escaped</b>" not in html
    grace_id = int(re.search(r'id="entry-(\d+)"><strong>Grace</strong>', html).group(1))

    # many concurrent requests, each with a connection of its own
    def post(i: int) -> int:
        return app.json("POST", "/api/entries", json_body={"name": f"client {i}", "message": f"#{i}"})[0]

    with ThreadPoolExecutor(16) as ex:
        assert list(ex.map(post, range(60))) == [201] * 60
    status, listing = app.json("GET", "/api/entries?limit=1000")
    assert status == 200 and listing["count"] == 62
    assert {e["name"] for e in listing["entries"]} == {"Ada", "Grace"} | {f"client {i}" for i in range(60)}

    # delete: API and form
    assert app.request("DELETE", f"/api/entries/{entry['id']}")[0] == 204
    assert app.json("GET", f"/api/entries/{entry['id']}")[0] == 404
    assert app.json("DELETE", f"/api/entries/{entry['id']}")[0] == 404
    status, _, body = app.request("POST", f"/entries/{grace_id}/delete", form={})
    assert status == 200 and "Grace" not in body.decode()
    with psycopg.connect(direct_dsn, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM guestbook").fetchone() == (60,)

    # bad input is a 400 with a message, not a 500
    status, err = app.json("POST", "/api/entries", json_body={"name": "", "message": "x"})
    assert status == 400 and "required" in err["error"]
    assert app.json("POST", "/api/entries", json_body=["not", "an", "object"])[0] == 400
    assert app.json("GET", "/api/entries?limit=0")[0] == 400

    # every one of those requests went through the pooler, which kept to its pool of 5
    stats = pool_stats(pooler, db)
    assert stats["total_xact_count"] >= 70, stats
    with psycopg.connect(pooler.dsn(dbname="pgbouncer"), autocommit=True) as conn:
        cur = conn.execute("SHOW POOLS", prepare=False)
        cols = [d.name for d in cur.description]
        pools = [dict(zip(cols, r)) for r in cur.fetchall()]
    pool = next(p for p in pools if p["database"] == db)
    assert pool["sv_active"] + pool["sv_idle"] + pool["sv_used"] + pool["sv_login"] <= 5, pool
    assert app.proc.poll() is None, app.log()


def test_database_down_is_a_503(pooler_factory, webapp_factory):
    """A pooler whose upstream does not answer: the app says so (503 with a reason), it does not crash."""
    from tests.procs import free_port

    pooler = pooler_factory(["--upstream", f"postgresql://127.0.0.1:{free_port()}", "--unix-socket-dir", "",
                             "-s", "server_connect_timeout=1", "-s", "server_login_retry=1",
                             "-s", "query_wait_timeout=2"])
    app = webapp_factory(pooler.dsn())
    status, err = app.json("GET", "/api/entries")
    assert status == 503 and err["error"] == "database unavailable", err
    assert app.proc.poll() is None
