"""Prometheus /metrics and the log lines: parsed with prometheus-client's own parser,
compared with SHOW STATS / SHOW POOLS of the same pooler."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.procs import free_port

from .helpers import base_args, connect, pool_row
from .test_admin import admin_conn, stats_row, wait_for


def scrape(port: int) -> dict:
    """{metric family name: {(sample name, frozenset(labels)): value}}"""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out: dict = {}
    for fam in text_string_to_metric_families(text):
        d = out.setdefault(fam.name, {})
        for s in fam.samples:
            d[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(metrics: dict, family: str, sample: str | None = None, **labels) -> float:
    fam = metrics[family]
    want = set(labels.items())
    hits = [v for (name, lab), v in fam.items() if (sample is None or name == sample) and want <= set(lab)]
    assert hits, f"no sample {sample or family} {labels}"
    return sum(hits)


def test_metrics_parse_and_agree_with_show_stats(pg, pooler_factory):
    mport = free_port()
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "--pool-size", "2", "--admin-users", "postgres",
                                 "--metrics-listen", f"127.0.0.1:{mport}"))
    with connect(p) as c:
        for i in range(25):
            c.execute("select %s::int", (i,), prepare=False)
        with c.transaction():
            c.execute("select 1")
        for _ in range(2):
            with pytest.raises(psycopg.errors.DivisionByZero):
                c.execute("select 1/0")
        with pytest.raises(psycopg.errors.UndefinedTable):
            c.execute("select * from no_such_table_here")
    idle = connect(p)  # one idle client, for the state gauges
    idle.execute("select 1")
    m = scrape(mport)
    st = stats_row(p)
    lab = {"database": "postgres", "user": "postgres"}
    assert value(m, "pgbundle_transactions", "pgbundle_transactions_total", **lab) == st["total_xact_count"]
    assert value(m, "pgbundle_queries", "pgbundle_queries_total", **lab) == st["total_query_count"]
    assert value(m, "pgbundle_received_bytes", **lab) == st["total_received"]
    assert value(m, "pgbundle_sent_bytes", **lab) == st["total_sent"]
    assert value(m, "pgbundle_server_assignments", **lab) == st["total_server_assignment_count"]
    assert int(value(m, "pgbundle_query_time_seconds", **lab) * 1_000_000) == st["total_query_time"]
    assert int(value(m, "pgbundle_transaction_time_seconds", **lab) * 1_000_000) == st["total_xact_time"]
    assert int(value(m, "pgbundle_wait_time_seconds", **lab) * 1_000_000) == st["total_wait_time"]
    # histograms: the sum is the SHOW STATS total, +Inf counts every observation
    assert int(value(m, "pgbundle_query_duration_seconds", "pgbundle_query_duration_seconds_sum", **lab)
               * 1_000_000) == st["total_query_time"]
    xacts = value(m, "pgbundle_transaction_duration_seconds", "pgbundle_transaction_duration_seconds_count", **lab)
    assert xacts == st["total_xact_count"]
    assert value(m, "pgbundle_transaction_duration_seconds", "pgbundle_transaction_duration_seconds_bucket",
                 le="+Inf", **lab) == xacts
    assert value(m, "pgbundle_wait_duration_seconds", "pgbundle_wait_duration_seconds_count", **lab) \
        == st["total_server_assignment_count"]
    buckets = sorted(((float(dict(lab_)["le"]), v) for (name, lab_), v in m["pgbundle_query_duration_seconds"].items()
                      if name.endswith("_bucket")), key=lambda x: x[0])
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:]))  # cumulative
    # errors by SQLSTATE class: 22 (division by zero) twice, 42 (undefined table) once
    assert value(m, "pgbundle_errors", sqlstate_class="22", **lab) == 2
    assert value(m, "pgbundle_errors", sqlstate_class="42", **lab) == 1
    # client and server counts by state agree with SHOW POOLS
    row = pool_row(p)
    assert value(m, "pgbundle_pool_clients", state="idle", **lab) + \
        value(m, "pgbundle_pool_clients", state="active", **lab) == row["cl_active"] == 1
    assert value(m, "pgbundle_pool_clients", state="waiting", **lab) == row["cl_waiting"] == 0
    assert value(m, "pgbundle_pool_servers", state="idle", **lab) == row["sv_idle"]
    assert value(m, "pgbundle_pool_maxwait_seconds", **lab) == 0
    assert "process_cpu_seconds" in m and "pgbundle_info" in m  # process collector, info
    idle.close()
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(f"http://127.0.0.1:{mport}/nothing", timeout=10)
    assert ei.value.code == 404


def test_metrics_show_waiting_clients(pg, pooler_factory):
    mport = free_port()
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "--pool-size", "1", "--admin-users", "postgres",
                                 "--metrics-listen", f"127.0.0.1:{mport}"))
    holder = connect(p, autocommit=False)
    holder.execute("select 1")
    t = threading.Thread(target=lambda: connect(p).execute("select 1").connection.close())
    t.start()
    lab = {"database": "postgres", "user": "postgres"}
    wait_for(lambda: value(scrape(mport), "pgbundle_pool_clients", state="waiting", **lab) == 1, "a waiter")
    m = scrape(mport)
    assert value(m, "pgbundle_pool_maxwait_seconds", **lab) > 0
    assert value(m, "pgbundle_pool_servers", state="active", **lab) == 1
    holder.commit()
    t.join(20)
    holder.close()
    m = scrape(mport)
    assert value(m, "pgbundle_wait_duration_seconds", "pgbundle_wait_duration_seconds_sum", **lab) > 0


def test_metrics_listen_error_is_clear(pg, pooler_factory):
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "pgbundle.shared.cli", "pooler", *base_args(pg),
                            "--listen-port", str(free_port()), "--metrics-listen", f"127.0.0.1:{busy}"],
                           capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "cannot listen for metrics" in r.stderr


def test_log_lines_in_pgbouncer_phrases(pg, pooler_factory):
    p = pooler_factory(base_args(pg, "--pool-mode", "transaction", "--pool-size", "1", "--admin-users", "postgres",
                                 "-s", "stats_period=1", "-s", "query_wait_timeout=1"))
    holder = connect(p, autocommit=False)
    holder.execute("select 1")
    with connect(p) as c:
        with pytest.raises(psycopg.OperationalError):
            c.execute("select 1")  # waits for the only server: query_wait_timeout
    holder.rollback()
    holder.close()
    with admin_conn(p) as a:
        a.execute("RELOAD", prepare=False)
        a.execute("PAUSE", prepare=False)
        a.execute("RESUME", prepare=False)
    wait_for(lambda: "stats: " in p.log(), "a stats line")
    log = p.log()
    port = pg.port
    assert "LOG C-" in log and "postgres/postgres@127.0.0.1:" in log
    assert "login attempt: db=postgres user=postgres tls=no replication=no" in log
    assert "closing because: client close request (age=" in log
    assert f"postgres/postgres@127.0.0.1:{port} new connection to server (from 127.0.0.1:" in log
    assert "pooler error: query_wait_timeout" in log
    assert "RELOAD command issued" in log and "PAUSE command issued" in log and "RESUME command issued" in log
    line = next(x for x in log.splitlines() if " LOG stats: " in x)
    import re
    assert re.search(r"stats: \d+ xacts/s, \d+ queries/s, \d+ client parses/s, \d+ server parses/s, \d+ binds/s, "
                     r"in \d+ B/s, out \d+ B/s, xact \d+ us, query \d+ us, wait \d+ us$", line), line
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC \[\d+\] LOG ", line)


def test_json_logs_logfile_and_quiet_flags(pg, pooler_factory, tmp_path):
    logfile = tmp_path / "pgbundle.log"
    p = pooler_factory(base_args(pg, "--log-format", "json", "--logfile", str(logfile), "--admin-users", "postgres",
                                 "-s", "log_connections=1",
                                 "-s", "log_disconnections=0"))
    with connect(p) as c:
        c.execute("select 1")
    wait_for(lambda: logfile.exists() and "login_ok" in logfile.read_text(), "json lines in the logfile")
    events = [json.loads(x) for x in logfile.read_text().splitlines() if x.startswith("{")]
    attempt = next(e for e in events if e.get("event") == "login_attempt")
    assert attempt["level"] == "LOG" and attempt["database"] == "postgres" and attempt["user"] == "postgres"
    assert attempt["conn"].startswith("C-") and attempt["addr"] == "127.0.0.1" and attempt["port"] > 0
    assert attempt["msg"].startswith(attempt["conn"] + ": postgres/postgres@127.0.0.1:")
    assert any(e.get("event") == "new_server" and e.get("backend_pid") for e in events)
    assert not any(e.get("event") == "closing" and e["conn"].startswith("C-") for e in events)  # log_disconnections
    assert "login_ok" in p.log()  # stderr gets the same lines
    with admin_conn(p) as a:  # SET log_format takes effect live
        a.execute("SET log_format = text", prepare=False)
    wait_for(lambda: "logging reconfigured" in logfile.read_text(),
             "text lines again")
    with connect(p) as c:
        c.execute("select 1")
    wait_for(lambda: " LOG C-" in logfile.read_text(), "a text line")
