"""A guestbook on Flask that opens one database connection per HTTP request.

Connecting on every request is what many web apps do (CGI-style handlers, serverless
functions, frameworks without a pool, many worker processes).  Against PostgreSQL
directly every request then forks a backend; through ``pgbundle pooler`` the connect is
cheap and the server keeps a small, fixed set of backends.

Configuration: ``DATABASE_URL`` (libpq URL or ``key=value`` string), by default the
pooler's own address, ``postgresql://postgres@127.0.0.1:6432/postgres``.

Run (from the repository root)::

    DATABASE_URL=postgresql://postgres@127.0.0.1:6432/postgres \\
        python examples/webapp/app.py --host 127.0.0.1 --port 8000
    # or: flask --app examples/webapp/app.py run --port 8000

Routes: ``/`` (HTML page with a form), ``POST /entries``, ``POST /entries/<id>/delete``,
and a JSON API: ``GET|POST /api/entries``, ``GET|DELETE /api/entries/<id>``, ``GET /healthz``.
"""

from __future__ import annotations

import argparse
import os
import threading
from typing import Any

import psycopg
from flask import Flask, abort, g, jsonify, redirect, render_template_string, request, url_for
from psycopg.rows import dict_row

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:6432/postgres"
MAX_NAME, MAX_MESSAGE = 100, 2000

SCHEMA = """
CREATE TABLE IF NOT EXISTS guestbook (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL,
    message    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>pgbundle guestbook</title>
  <style>
    body { font-family: system-ui, sans-serif; max-width: 42rem; margin: 2rem auto; padding: 0 1rem; }
    li { margin: .6rem 0; } .meta { color: #666; font-size: .85em; }
    form.inline { display: inline; } input, textarea { width: 100%; margin: .2rem 0; }
  </style>
</head>
<body>
  <h1>Guestbook</h1>
  <p class="meta">{{ count }} entries &middot; served by {{ server_version }}</p>
  {% if error %}<p style="color: #b00">{{ error }}</p>{% endif %}
  <form method="post" action="{{ url_for('add_entry_form') }}">
    <input name="name" placeholder="Your name" maxlength="{{ max_name }}" required>
    <textarea name="message" placeholder="Say something" maxlength="{{ max_message }}" required></textarea>
    <button type="submit">Sign the guestbook</button>
  </form>
  <ul>
  {% for e in entries %}
    <li id="entry-{{ e.id }}"><strong>{{ e.name }}</strong>: {{ e.message }}
      <span class="meta">{{ e.created_at.strftime('%Y-%m-%d %H:%M:%S') }}</span>
      <form class="inline" method="post" action="{{ url_for('delete_entry_form', entry_id=e.id) }}">
        <button type="submit">delete</button>
      </form>
    </li>
  {% else %}
    <li>No entries yet.</li>
  {% endfor %}
  </ul>
</body>
</html>
"""


class Guestbook:
    """The data access: every method runs on the request's own connection."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def list(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            cur.execute("SELECT id, name, message, created_at FROM guestbook ORDER BY id DESC LIMIT %s",
                        (limit,))
            return cur.fetchall()

    def count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM guestbook").fetchone()[0]

    def get(self, entry_id: int) -> dict[str, Any] | None:
        with self.conn.cursor(row_factory=dict_row) as cur:
            cur.execute("SELECT id, name, message, created_at FROM guestbook WHERE id = %s", (entry_id,))
            return cur.fetchone()

    def add(self, name: str, message: str) -> dict[str, Any]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            cur.execute("INSERT INTO guestbook (name, message) VALUES (%s, %s) "
                        "RETURNING id, name, message, created_at", (name, message))
            return cur.fetchone()

    def delete(self, entry_id: int) -> bool:
        return self.conn.execute("DELETE FROM guestbook WHERE id = %s", (entry_id,)).rowcount > 0


def _validate(name: Any, message: Any) -> tuple[str, str]:
    name = name.strip() if isinstance(name, str) else ""
    message = message.strip() if isinstance(message, str) else ""
    if not name or not message:
        abort(400, description="name and message are required")
    if len(name) > MAX_NAME or len(message) > MAX_MESSAGE:
        abort(400, description=f"name is at most {MAX_NAME} and message at most {MAX_MESSAGE} characters")
    return name, message


def _as_json(entry: dict[str, Any]) -> dict[str, Any]:
    return {**entry, "created_at": entry["created_at"].isoformat()}


def create_app(database_url: str | None = None) -> Flask:
    app = Flask(__name__)
    app.config["DATABASE_URL"] = database_url or os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    app.config["CONNECT_TIMEOUT"] = int(os.environ.get("DATABASE_CONNECT_TIMEOUT", "10"))
    schema_ready = threading.Event()
    schema_lock = threading.Lock()

    def ensure_schema(conn: psycopg.Connection) -> None:
        """Create the table on first use (once per process; safe against other processes)."""
        if schema_ready.is_set():
            return
        with schema_lock:
            if schema_ready.is_set():
                return
            try:
                with conn.transaction():
                    conn.execute(SCHEMA)
            except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable,
                    psycopg.errors.DuplicateObject):
                pass  # another process created it at the same moment
            schema_ready.set()

    def db() -> psycopg.Connection:
        """This request's connection: opened on first use, closed when the request ends."""
        if "db" not in g:
            conn = psycopg.connect(app.config["DATABASE_URL"], autocommit=True,
                                   connect_timeout=app.config["CONNECT_TIMEOUT"],
                                   application_name="pgbundle-guestbook")
            g.db = conn
            ensure_schema(conn)
        return g.db

    def book() -> Guestbook:
        return Guestbook(db())

    @app.teardown_appcontext
    def close_db(_exc: BaseException | None) -> None:
        conn = g.pop("db", None)
        if conn is not None:
            conn.close()

    @app.errorhandler(psycopg.OperationalError)
    def database_unavailable(exc: psycopg.OperationalError):
        app.logger.warning("database unavailable: %s", exc)
        return jsonify(error="database unavailable", detail=str(exc).strip()), 503

    @app.errorhandler(400)
    @app.errorhandler(404)
    def client_error(exc):
        return jsonify(error=exc.description), exc.code

    # -- HTML
    @app.get("/")
    def index():
        gb = book()
        return render_template_string(
            PAGE, entries=gb.list(), count=gb.count(), max_name=MAX_NAME, max_message=MAX_MESSAGE,
            server_version=db().execute("SELECT version()").fetchone()[0].split(",")[0], error=None)

    @app.post("/entries")
    def add_entry_form():
        name, message = _validate(request.form.get("name"), request.form.get("message"))
        entry = book().add(name, message)
        return redirect(url_for("index") + f"#entry-{entry['id']}", code=303)

    @app.post("/entries/<int:entry_id>/delete")
    def delete_entry_form(entry_id: int):
        book().delete(entry_id)
        return redirect(url_for("index"), code=303)

    # -- JSON API
    @app.get("/api/entries")
    def api_list():
        limit = request.args.get("limit", default=50, type=int)
        if not 1 <= limit <= 1000:
            abort(400, description="limit must be between 1 and 1000")
        gb = book()
        return jsonify(entries=[_as_json(e) for e in gb.list(limit)], count=gb.count())

    @app.post("/api/entries")
    def api_add():
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            abort(400, description="expected a JSON object with name and message")
        name, message = _validate(body.get("name"), body.get("message"))
        return jsonify(_as_json(book().add(name, message))), 201

    @app.get("/api/entries/<int:entry_id>")
    def api_get(entry_id: int):
        entry = book().get(entry_id)
        if entry is None:
            abort(404, description=f"no entry {entry_id}")
        return jsonify(_as_json(entry))

    @app.delete("/api/entries/<int:entry_id>")
    def api_delete(entry_id: int):
        if not book().delete(entry_id):
            abort(404, description=f"no entry {entry_id}")
        return "", 204

    @app.get("/healthz")
    def healthz():
        version = db().execute("SHOW server_version").fetchone()[0]
        return jsonify(ok=True, server_version=version)

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Guestbook web app: one database connection per request.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    parser.add_argument("--database-url", default=None,
                        help=f"overrides $DATABASE_URL (default {DEFAULT_DATABASE_URL})")
    args = parser.parse_args(argv)
    app = create_app(args.database_url)
    # Werkzeug's threaded server: one thread per request, each with its own connection.
    app.run(host=args.host, port=args.port, threaded=True, debug=False, use_reloader=False)


if __name__ == "__main__":
    main()
