"""The admin console: pgbouncer's commands, columns and counter semantics, access rules.

Real pooler processes in front of the shared PostgreSQL 15; psql, psycopg and
asyncpg as clients.  Nothing here asserts a timing: waits are "until a
condition holds" with a generous bound.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import asyncpg
import psycopg
import pytest

from .helpers import base_args, connect, pool_row, psql

# pgbouncer 1.25's columns, in order (src/admin.c, src/stats.c, doc/usage.md).
SOCKET = ["type", "user", "database", "replication", "state", "addr", "port", "local_addr", "local_port",
          "connect_time", "request_time", "wait", "wait_us", "close_needed", "ptr", "link", "remote_pid", "tls",
          "application_name", "prepared_statements", "id"]
STAT = ["server_assignment_count", "xact_count", "query_count"]
COLUMNS = {
    "POOLS": ["database", "user", "cl_active", "cl_waiting", "cl_active_cancel_req", "cl_waiting_cancel_req",
              "sv_active", "sv_active_cancel", "sv_being_canceled", "sv_idle", "sv_used", "sv_tested", "sv_login",
              "maxwait", "maxwait_us", "pool_mode", "load_balance_hosts"],
    "CLIENTS": SOCKET,
    "SERVERS": SOCKET,
    "SOCKETS": SOCKET + ["recv_pos", "pkt_pos", "pkt_remain", "send_pos", "send_remain", "pkt_avail", "send_avail"],
    "ACTIVE_SOCKETS": SOCKET + ["recv_pos", "pkt_pos", "pkt_remain", "send_pos", "send_remain", "pkt_avail",
                                "send_avail"],
    "STATS": ["database"] + [f"total_{c}" for c in STAT + ["received", "sent", "xact_time", "query_time",
                                                            "wait_time", "client_parse_count",
                                                            "server_parse_count", "bind_count",
                                                            "client_connect_count"]]
             + [f"avg_{c}" for c in STAT + ["recv", "sent", "xact_time", "query_time", "wait_time",
                                           "client_parse_count", "server_parse_count", "bind_count",
                                           "client_connect_count"]],
    "STATS_TOTALS": ["database"] + STAT + ["bytes_received", "bytes_sent", "xact_time", "query_time", "wait_time",
                                           "client_parse_count", "server_parse_count", "bind_count",
                                           "client_connect_count"],
    "STATS_AVERAGES": ["database"] + STAT + ["bytes_received", "bytes_sent", "xact_time", "query_time",
                                             "wait_time", "avg_client_parse_count", "avg_server_parse_count",
                                             "avg_bind_count", "client_connect_count"],
    "TOTALS": ["name", "value"],
    "DATABASES": ["name", "host", "port", "database", "force_user", "pool_size", "min_pool_size",
                  "reserve_pool", "server_lifetime", "pool_mode", "load_balance_hosts", "max_connections",
                  "current_connections", "max_client_connections", "current_client_connections", "paused",
                  "disabled"],
    "USERS": ["name", "pool_size", "reserve_pool_size", "pool_mode", "max_user_connections", "current_connections",
              "max_user_client_connections", "current_client_connections"],
    "LISTS": ["list", "items"],
    "PEERS": ["peer_id", "host", "port", "pool_size"],
    "PEER_POOLS": ["peer_id", "cl_active_cancel_req", "cl_waiting_cancel_req", "sv_active_cancel", "sv_login"],
    "FDS": ["fd", "task", "user", "database", "addr", "port", "cancel", "link", "client_encoding", "std_strings",
            "datestyle", "timezone", "password"],
    "CONFIG": ["key", "value", "default", "changeable"],
    "MEM": ["name", "size", "used", "free", "memtotal"],
    "STATE": ["key", "value"],
    "VERSION": ["version"],
    "DNS_HOSTS": ["hostname", "ttl", "addrs"],
    "DNS_ZONES": ["zonename", "serial", "count"],
}


def wait_for(cond, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def admin_conn(p, user: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(p.dsn(dbname="pgbouncer", user=user), autocommit=True, connect_timeout=10)


def show(conn: psycopg.Connection, what: str) -> list[dict]:
    cur = conn.execute(f"SHOW {what}", prepare=False)
    cols = [d.name for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def stats_row(p, db: str = "postgres") -> dict:
    with admin_conn(p) as a:
        return next(r for r in show(a, "STATS") if r["database"] == db)


def ensure_role(pg, name: str) -> None:
    pg.sql(f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') "
           f"THEN CREATE ROLE {name} LOGIN; END IF; END $$")


@pytest.fixture
def txp(pg, pooler_factory):
    return pooler_factory(base_args(pg, "--pool-mode", "transaction", "--pool-size", "2", "--admin-users",
                                    "postgres", "-s", "stats_period=600"))


def test_every_show_command_has_pgbouncer_columns(txp):
    with connect(txp) as c:  # a pool, a server and a client to show
        c.execute("select 1")
        notices = []
        with admin_conn(txp) as a:
            a.add_notice_handler(lambda d: notices.append((d.message_primary, d.message_detail)))
            for what, cols in COLUMNS.items():
                cur = a.execute(f"SHOW {what}", prepare=False)
                assert [d.name for d in cur.description] == cols, what
                rows = cur.fetchall()
                assert all(len(r) == len(cols) for r in rows), what
            a.execute("SHOW HELP", prepare=False)
            assert notices and notices[-1][0] == "Console usage"
            assert "SHOW HELP|CONFIG|DATABASES" in notices[-1][1]
            assert "WAIT_CLOSE [<db>]" in notices[-1][1]
            pools = {(r["database"], r["user"]): r for r in show(a, "POOLS")}
            assert pools[("postgres", "postgres")]["pool_mode"] == "transaction"
            assert pools[("postgres", "postgres")]["cl_active"] == 1
            assert pools[("pgbouncer", "pgbouncer")]["cl_active"] == 1
            clients = show(a, "CLIENTS")
            assert {r["database"] for r in clients} == {"postgres", "pgbouncer"}
            servers = show(a, "SERVERS")
            assert servers and all(r["type"] == "S" and r["remote_pid"] > 0 for r in servers)
            dbs = {r["name"]: r for r in show(a, "DATABASES")}
            assert dbs["postgres"]["pool_size"] == 2 and dbs["pgbouncer"]["pool_mode"] == "statement"
            state = {r["key"]: r["value"] for r in show(a, "STATE")}
            assert state == {"active": "yes", "paused": "no", "suspended": "no"}
            config = {r["key"]: r for r in show(a, "CONFIG")}
            assert config["default_pool_size"]["value"] == "2" and config["default_pool_size"]["default"] == "20"
            assert config["listen_port"]["changeable"] == "no" and config["pool_mode"]["changeable"] == "yes"
            assert show(a, "VERSION")[0]["version"].startswith("PgBouncer ")
            lists = {r["list"]: r["items"] for r in show(a, "LISTS")}
            assert lists["used_clients"] == 2 and lists["used_servers"] >= 1
            with pytest.raises(psycopg.errors.ProtocolViolation):
                a.execute("SHOW NO_SUCH_THING", prepare=False)
            with pytest.raises(psycopg.errors.ProtocolViolation):
                a.execute("FROBNICATE", prepare=False)
            # pgbouncer answers these session settings itself
            assert a.execute("SHOW client_encoding", prepare=False).fetchone() == ("UTF-8",)


def test_counters_move_exactly_as_traffic_runs(txp):
    with connect(txp) as c:
        c.execute("select 1")
        before = stats_row(txp)
        for i in range(7):
            c.execute("select %s::int", (i,), prepare=False)
        with c.transaction():  # BEGIN, two statements, COMMIT: one transaction, four queries
            c.execute("select 1")
            c.execute("select 2")
        with pytest.raises(psycopg.errors.DivisionByZero):
            c.execute("select 1/0")
        after = stats_row(txp)
    psql(txp.port, "select 1; select 2")  # one Query message: one query, one transaction
    last = stats_row(txp)
    assert after["total_xact_count"] - before["total_xact_count"] == 9
    assert after["total_query_count"] - before["total_query_count"] == 12
    assert last["total_xact_count"] - after["total_xact_count"] == 1
    assert last["total_query_count"] - after["total_query_count"] == 1
    assert after["total_received"] > before["total_received"] and after["total_sent"] > before["total_sent"]
    assert after["total_query_time"] > before["total_query_time"]
    assert after["total_xact_time"] >= after["total_query_time"] - before["total_query_time"]
    # No stats_period has passed: the averages window is everything since start, so pgbouncer's
    # avg_query_time = total_query_time / total_query_count holds exactly (integer microseconds).
    assert last["avg_query_time"] == last["total_query_time"] // last["total_query_count"]
    assert last["avg_xact_time"] == last["total_xact_time"] // last["total_xact_count"]
    assert last["avg_wait_time"] == last["total_wait_time"] // last["total_server_assignment_count"]
    with admin_conn(txp) as a:
        totals = {r["name"]: r["value"] for r in show(a, "TOTALS")}
        sub = next(r for r in show(a, "STATS_TOTALS") if r["database"] == "postgres")
    assert totals["total_xact_count"] >= last["total_xact_count"]
    assert sub["xact_count"] == last["total_xact_count"] and sub["bytes_received"] == last["total_received"]


def test_wait_time_counts_a_waiting_client(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "--pool-size", "1", "--admin-users", "postgres",
                                 "-s", "stats_period=600"))
    holder = connect(p, autocommit=False)
    holder.execute("select 1")  # holds the only server
    done = threading.Event()

    def waiter():
        with connect(p) as c:
            c.execute("select 1")
        done.set()

    t = threading.Thread(target=waiter)
    t.start()
    wait_for(lambda: pool_row(p)["cl_waiting"] == 1, "a waiting client")
    row = pool_row(p)
    assert row["maxwait"] * 1_000_000 + row["maxwait_us"] > 0
    holder.commit()
    t.join(20)
    assert done.is_set()
    holder.close()
    st = stats_row(p)
    assert st["total_wait_time"] > 0
    assert st["avg_wait_time"] == st["total_wait_time"] // st["total_server_assignment_count"]


def test_pause_waits_for_servers_then_new_queries_wait_until_resume(txp):
    a = admin_conn(txp)
    c = connect(txp, autocommit=False)
    c.execute("select 1")  # in a transaction: PAUSE must wait for it
    paused = threading.Event()

    def pause():
        with admin_conn(txp) as b:
            b.execute("PAUSE", prepare=False)
        paused.set()

    t = threading.Thread(target=pause)
    t.start()
    wait_for(lambda: {r["key"]: r["value"] for r in show(a, "STATE")}["paused"] == "yes", "pause mode")
    assert not paused.wait(0.3)  # the transaction still holds its server
    c.commit()
    t.join(20)
    assert paused.is_set()
    wait_for(lambda: pool_row(txp)["sv_idle"] == 0, "servers closed in pause mode")
    result = []

    def query():
        result.append(c.execute("select 42").fetchone()[0])
        c.commit()

    q = threading.Thread(target=query)
    q.start()
    wait_for(lambda: pool_row(txp)["cl_waiting"] == 1, "the query waits while paused")
    assert not result
    assert next(r for r in show(a, "DATABASES") if r["name"] == "postgres")["paused"] == 0  # global pause
    with pytest.raises(psycopg.errors.ProtocolViolation):
        a.execute("PAUSE", prepare=False)  # already paused
    a.execute("RESUME", prepare=False)
    q.join(20)
    assert result == [42]
    with pytest.raises(psycopg.errors.ProtocolViolation):
        a.execute("RESUME", prepare=False)  # not paused any more
    # PAUSE of one database
    a.execute("PAUSE postgres", prepare=False)
    assert next(r for r in show(a, "DATABASES") if r["name"] == "postgres")["paused"] == 1
    a.execute("RESUME postgres", prepare=False)
    assert c.execute("select 1").fetchone() == (1,)
    c.close()
    a.close()


def test_suspend_holds_queries_until_resume(txp):
    with admin_conn(txp) as a, connect(txp) as c:
        c.execute("select 1")
        a.execute("SUSPEND", prepare=False)
        assert {r["key"]: r["value"] for r in show(a, "STATE")}["suspended"] == "yes"
        result = []
        q = threading.Thread(target=lambda: result.append(c.execute("select 7").fetchone()[0]))
        q.start()
        wait_for(lambda: pool_row(txp)["cl_waiting"] == 1, "the query waits while suspended")
        a.execute("RESUME", prepare=False)
        q.join(20)
        assert result == [7]


def test_kill_client_ends_exactly_that_client(txp):
    conns = [connect(txp) for _ in range(3)]
    for i, c in enumerate(conns):
        c.execute(f"set application_name = 'victim{i}'")
    with admin_conn(txp) as a:
        ids = {r["application_name"]: r["id"] for r in show(a, "CLIENTS") if r["database"] == "postgres"}
        assert set(ids) == {"victim0", "victim1", "victim2"}
        a.execute(f"KILL_CLIENT {ids['victim1']}", prepare=False)
        wait_for(lambda: {r["id"] for r in show(a, "CLIENTS")}.isdisjoint({ids["victim1"]}), "client gone")
        with pytest.raises(psycopg.errors.ProtocolViolation):
            a.execute("KILL_CLIENT nonsense", prepare=False)
        with pytest.raises(psycopg.errors.ProtocolViolation):
            a.execute("KILL_CLIENT 99999999", prepare=False)
    with pytest.raises(psycopg.OperationalError):
        conns[1].execute("select 1")
    assert conns[0].execute("select 1").fetchone() == (1,)
    assert conns[2].execute("select 2").fetchone() == (2,)
    for c in conns:
        c.close()
    assert "admin forced disconnect" in txp.log()


def test_reload_picks_up_a_changed_pool_size(pg, pooler_factory, tmp_path):
    ini = tmp_path / "pgbouncer.ini"

    def write(size: int) -> None:
        ini.write_text(f"[databases]\n* = host=127.0.0.1 port={pg.port}\n[pgbouncer]\npool_mode = transaction\n"
                       f"default_pool_size = {size}\nadmin_users = postgres\nquery_wait_timeout = 30\n")

    write(1)
    p = pooler_factory(["--config", str(ini), "--unix-socket-dir", ""])
    holders = [connect(p, autocommit=False) for _ in range(3)]
    holders[0].execute("select 1")
    write(3)
    with admin_conn(p) as a:
        assert next(r for r in show(a, "DATABASES") if r["name"] == "postgres")["pool_size"] == 1
        a.execute("RELOAD", prepare=False)
        assert next(r for r in show(a, "DATABASES") if r["name"] == "postgres")["pool_size"] == 3
        assert {r["key"]: r["value"] for r in show(a, "CONFIG")}["default_pool_size"] == "3"
    for h in holders[1:]:  # three transactions at once: three servers now
        h.execute("select 1")
    assert pool_row(p)["sv_active"] == 3
    for h in holders:
        h.rollback()
        h.close()
    assert "RELOAD command issued" in p.log()


def test_shutdown_wait_for_clients_lets_a_running_transaction_finish(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "--admin-users", "postgres"))
    c = connect(p, autocommit=False)
    c.execute("select 1")
    with admin_conn(p) as a:
        a.execute("SHUTDOWN WAIT_FOR_CLIENTS", prepare=False)
    wait_for(lambda: _refused(p.port), "no new connections")
    assert p.alive()
    assert c.execute("select 2").fetchone() == (2,)
    c.commit()
    assert c.execute("select 3").fetchone() == (3,)  # still a client: still served
    c.commit()
    c.close()
    p.proc.wait(20)
    assert "SHUTDOWN WAIT_FOR_CLIENTS command issued" in p.log()


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


def test_access_admin_stats_and_others(pg, pooler_factory):
    for role in ("stats_u", "plain_u"):
        ensure_role(pg, role)
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "--admin-users", "postgres",
                                 "--stats-users", "stats_u"))
    with pytest.raises(psycopg.OperationalError) as ei:
        admin_conn(p, user="plain_u")
    assert "admin console access denied" in str(ei.value)
    with admin_conn(p, user="stats_u") as s:
        assert show(s, "POOLS") is not None and show(s, "STATS") is not None
        for cmd in ("PAUSE", "RESUME", "RELOAD", "KILL postgres", "SHUTDOWN", "SET default_pool_size = 3",
                    "SHOW FDS", "DISABLE postgres", "RECONNECT"):
            with pytest.raises(psycopg.errors.ProtocolViolation, match="admin access needed"):
                s.execute(cmd, prepare=False)
        assert {r["key"]: r["value"] for r in show(s, "STATE")}["paused"] == "no"
    r = psql(p.port, "SHOW USERS", user="plain_u", db="pgbouncer", check=False)
    assert r.returncode != 0 and "access denied" in r.stderr


def test_disable_enable_kill_reconnect_wait_close(txp):
    keep = connect(txp)
    keep.execute("select 1")
    with admin_conn(txp) as a:
        a.execute("DISABLE postgres", prepare=False)
        assert next(r for r in show(a, "DATABASES") if r["name"] == "postgres")["disabled"] == 1
        with pytest.raises(psycopg.OperationalError, match="does not allow connections"):
            connect(txp)
        assert keep.execute("select 2").fetchone() == (2,)  # existing clients go on
        a.execute("ENABLE postgres", prepare=False)
        with connect(txp) as c:
            assert c.execute("select 3").fetchone() == (3,)
        with pytest.raises(psycopg.errors.ProtocolViolation):
            a.execute("DISABLE pgbouncer", prepare=False)
        before = {r["id"] for r in show(a, "SERVERS")}
        a.execute("RECONNECT postgres", prepare=False)
        a.execute("WAIT_CLOSE postgres", prepare=False)
        assert not any(r["close_needed"] for r in show(a, "SERVERS"))
        keep.execute("select 4")
        assert {r["id"] for r in show(a, "SERVERS")}.isdisjoint(before)
        a.execute("KILL postgres", prepare=False)
        wait_for(lambda: not [r for r in show(a, "CLIENTS") if r["database"] == "postgres"], "clients killed")
        with pytest.raises(psycopg.OperationalError):
            keep.execute("select 5")
        assert next(r for r in show(a, "DATABASES") if r["name"] == "postgres")["paused"] == 1
        a.execute("RESUME postgres", prepare=False)
    keep.close()
    with connect(txp) as c:
        assert c.execute("select 6").fetchone() == (6,)


def test_set_changes_settings_live(txp):
    with admin_conn(txp) as a:
        cur = a.execute("SET default_pool_size = 4", prepare=False)
        assert cur.statusmessage == "SET default_pool_size=4"
        assert {r["key"]: r["value"] for r in show(a, "CONFIG")}["default_pool_size"] == "4"
        a.execute("SET server_check_query = 'select 2'", prepare=False)
        assert {r["key"]: r["value"] for r in show(a, "CONFIG")}["server_check_query"] == "select 2"
        a.execute("SET log_connections to 0", prepare=False)
        with pytest.raises(psycopg.Error, match="cannot be changed while running"):
            a.execute("SET listen_port = 1", prepare=False)
        with pytest.raises(psycopg.Error, match="SET failed"):
            a.execute("SET no_such_setting = 1", prepare=False)
        a.execute("SET client_encoding = 'UTF8'", prepare=False)  # answered, ignored, as pgbouncer does
    with connect(txp) as c:
        c.execute("select 1")
    assert pool_row(txp)["pool_mode"] == "transaction"


def test_extended_protocol_psycopg_and_asyncpg(txp):
    with connect(txp) as c:
        c.execute("select 1")
    with admin_conn(txp) as a:  # psycopg: server-side prepared statements, extended protocol
        for _ in range(3):
            rows = a.execute("SHOW POOLS", prepare=True).fetchall()
            assert any(r[0] == "postgres" for r in rows)
        assert a.execute("SHOW STATE", prepare=True).fetchall()[0] == ("active", "yes")

    async def main():
        conn = await asyncpg.connect(host="127.0.0.1", port=txp.port, user="postgres", database="pgbouncer")
        try:
            pools = await conn.fetch("SHOW POOLS")  # named prepared statement, binary int8 results
            row = next(r for r in pools if r["database"] == "postgres")
            assert row["pool_mode"] == "transaction" and isinstance(row["cl_active"], int)
            stats = await conn.fetch("SHOW STATS")
            assert next(r for r in stats if r["database"] == "postgres")["total_xact_count"] >= 1
            assert (await conn.fetchval("SHOW VERSION")).startswith("PgBouncer")
            await conn.execute("RECONNECT")  # a command without rows
            with pytest.raises(asyncpg.PostgresError):
                await conn.fetch("SHOW NOTHING_LIKE_THIS")
            assert (await conn.fetch("SHOW STATE"))[0]["value"] == "yes"  # usable after the error
        finally:
            await conn.close()

    asyncio.run(main())
