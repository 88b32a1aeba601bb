"""Behind ``pgbundle pooler`` with the bundled pgbundle server: SHOW SERVERS and the server agree on
which backend serves which client (the backend knows the pooled client's address and
application_name; see server/INTERFACES.md for pg_stat_activity)."""

from __future__ import annotations

import signal

import psycopg

from tests.fix_pooler import PoolerProcess

from .test_admin import show


def test_backend_serving_a_client_knows_it(tmp_path):
    p = PoolerProcess(["--unix-socket-dir", "", "--pool-mode", "transaction", "--admin-users", "postgres"],
                      cwd=str(tmp_path))  # no upstream: the pooler runs the bundled server
    clients: list[psycopg.Connection] = []
    try:
        clients = [psycopg.connect(p.dsn(), autocommit=False, application_name=f"app{i}") for i in range(2)]
        with psycopg.connect(p.dsn(dbname="pgbouncer"), autocommit=True) as a:
            for i, c in enumerate(clients):
                pid, addr, app = c.execute("select pg_backend_pid(), current_setting('pgbundle.client_addr'), "
                                           "current_setting('application_name')").fetchone()
                host, port = _local(c)
                assert addr == f"{host}:{port}"  # the backend knows whom it serves
                assert app == f"app{i}"
                me = next(r for r in show(a, "CLIENTS") if r["port"] == port)
                srv = next(r for r in show(a, "SERVERS") if r["link"] == me["ptr"])
                assert srv["remote_pid"] == pid and srv["application_name"] == f"app{i}"
                row = c.execute("select pid, usename, client_addr, client_port, application_name "
                                "from pg_stat_activity where pid = %s", (pid,)).fetchone()
                # the same backend, seen by the server: it shows the pooled client, not the pooler
                assert (row[0], row[1], str(row[2]), row[3], row[4]) == (pid, "postgres", host, port, f"app{i}")
                # and from another session (the server's view of every backend agrees with SHOW SERVERS)
                with psycopg.connect(p.dsn(), autocommit=True) as viewer:
                    rows = viewer.execute("select pid, client_addr, client_port, application_name "
                                          "from pg_stat_activity where client_port = %s", (port,)).fetchall()
                assert [(r[0], str(r[1]), r[2], r[3]) for r in rows] == [(srv["remote_pid"], host, port, f"app{i}")]
            for c in clients:
                c.commit()
            # a later SET application_name shows on whichever backend serves the client next
            c = clients[0]
            c.execute("set application_name = 'renamed'")
            pid = c.execute("select pg_backend_pid()").fetchone()[0]
            host, port = _local(c)
            srv = next(r for r in show(a, "SERVERS") if r["remote_pid"] == pid)
            assert srv["application_name"] == "renamed"
            with psycopg.connect(p.dsn(), autocommit=True) as viewer:
                rows = viewer.execute("select pid, client_addr, client_port, application_name "
                                      "from pg_stat_activity where client_port = %s", (port,)).fetchall()
            assert [(r[0], str(r[1]), r[2], r[3]) for r in rows] == [(pid, host, port, "renamed")]
            c.commit()
    finally:
        for c in clients:
            c.close()
        p.signal(signal.SIGINT)
        p.proc.wait(60)
        p.close()


def _local(conn: psycopg.Connection) -> tuple[str, int]:
    import socket

    s = socket.socket(fileno=conn.pgconn.socket)
    try:
        return s.getsockname()[:2]
    finally:
        s.detach()
