#!/usr/bin/env bash
# compare.sh - the load test side by side, with everything it needs started on 127.0.0.1:
#
#   PostgreSQL 15 (a fresh cluster in a temp dir)  ........ direct
#     + pgbundle pooler (transaction mode, pool 20) ....... "postgres/pgbundle pooler"
#     + pgbouncer       (transaction mode, pool 20) ....... "postgres/pgbouncer" (if installed)
#   pgbundle server (a fresh data directory) .............. direct
#     + pgbundle pooler (transaction mode, pool 20) ....... "pgbundle server/pgbundle pooler"
#
# then runs `loadtest.py compare` (connect / SELECT 1 / disconnect) and, unless -W, the HTTP
# scenario against the example web app (app -> pooler -> PostgreSQL versus app -> PostgreSQL).
# Figures, the plot and the console output go to examples/loadtest/results/ (or -o DIR).
# Everything it starts is stopped (by PID) on exit, also on Ctrl-C.
#
# Usage: examples/loadtest/compare.sh [-d SECONDS] [-c CONCURRENCY] [-r ROUNDS] [-o DIR] [-W]
#   -d measured seconds per target (default 10), -c clients (default 20), -r interleaved rounds
#   (default 5: every target runs 5 slices of d/5 s in rotation, each after a 1 s warm-up, so
#   that other work on the machine falls on all targets alike)
# Needs: PostgreSQL 15 binaries ($PGBIN, default /usr/lib/postgresql/15/bin), pgbundle and the
# examples' extras installed (pip install -e '.[examples]'); pgbouncer optional. As root,
# PostgreSQL and pgbouncer run as the `postgres` user (they refuse to run as root).
set -euo pipefail

DURATION=10
CONCURRENCY=20
ROUNDS=5
WEBAPP=1
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=$HERE/results
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PGBOUNCER=${PGBOUNCER:-$(command -v pgbouncer || echo /usr/sbin/pgbouncer)}
PYTHON=${PYTHON:-python}

while getopts "d:c:r:o:Wh" o; do
  case $o in
    d) DURATION=$OPTARG ;;
    c) CONCURRENCY=$OPTARG ;;
    r) ROUNDS=$OPTARG ;;
    o) OUT=$OPTARG ;;
    W) WEBAPP=0 ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 2 ;;
  esac
done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }
free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
if [[ $(id -u) == 0 ]]; then as_pg() { runuser -u postgres -- "$@"; }; else as_pg() { "$@"; }; fi

WORK=$(mktemp -d /tmp/pgbundle-compare.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  set +e
  for ((i=${#PIDS[@]}-1; i>=0; i--)); do
    pid=${PIDS[i]}
    kill -TERM "$pid" 2>/dev/null && for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
  done
  [[ -s $WORK/bouncer.pid ]] && kill -TERM "$(<"$WORK/bouncer.pid")" 2>/dev/null
  [[ -f $WORK/pgdata/postmaster.pid ]] && as_pg "$PGBIN/pg_ctl" -D "$WORK/pgdata" -m fast -w stop >/dev/null 2>&1
  sleep 0.5
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd /tmp   # the postgres user must be able to stat its working directory
ulimit -n 20000 2>/dev/null || ulimit -n 4096 2>/dev/null || true

wait_ready() {   # $1=port $2=what
  for _ in $(seq 600); do
    "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$1" && psql -X -qAt -h 127.0.0.1 -p "$1" -U postgres -d postgres \
      -c 'select 1' >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "$2 on port $1 is not ready"
}

PG_PORT=$(free_port); BNC_PORT=$(free_port); POOL_PG_PORT=$(free_port)
SRV_PORT=$(free_port); POOL_SRV_PORT=$(free_port)

# ------------------------------------------------------------------ PostgreSQL 15
[[ -x $PGBIN/initdb ]] || die "PostgreSQL binaries not found in $PGBIN"
[[ $(id -u) == 0 ]] && chown postgres "$WORK"
log "initdb ($("$PGBIN/postgres" --version))"
as_pg "$PGBIN/initdb" -D "$WORK/pgdata" -U postgres -A trust -E UTF8 --locale=C >"$WORK/initdb.log" 2>&1 \
  || { cat "$WORK/initdb.log"; die initdb; }
cat >>"$WORK/pgdata/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$WORK'
max_connections = 200
log_min_messages = warning
EOF
as_pg "$PGBIN/pg_ctl" -D "$WORK/pgdata" -l "$WORK/postgres.log" -w -t 60 start >/dev/null \
  || { cat "$WORK/postgres.log"; die "postgres did not start"; }
log "PostgreSQL on 127.0.0.1:$PG_PORT"

# ------------------------------------------------------------------ pgbouncer (optional)
HAVE_BNC=0
if [[ -x $PGBOUNCER ]]; then
  echo '"postgres" ""' >"$WORK/userlist.txt"
  cat >"$WORK/bouncer.ini" <<EOF
[databases]
* = host=127.0.0.1 port=$PG_PORT

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BNC_PORT
unix_socket_dir =
auth_type = trust
auth_file = $WORK/userlist.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 1000
logfile = $WORK/bouncer.log
pidfile = $WORK/bouncer.pid
log_connections = 0
log_disconnections = 0
EOF
  [[ $(id -u) == 0 ]] && chown postgres "$WORK/userlist.txt" "$WORK/bouncer.ini"
  as_pg bash -c "ulimit -n 20000 2>/dev/null || ulimit -n 4096; exec '$PGBOUNCER' -d '$WORK/bouncer.ini'" \
    || die "pgbouncer did not start"
  wait_ready "$BNC_PORT" pgbouncer
  HAVE_BNC=1
  log "pgbouncer $("$PGBOUNCER" --version | head -1 | awk '{print $2}') on 127.0.0.1:$BNC_PORT (pid $(<"$WORK/bouncer.pid"))"
else
  log "pgbouncer not found ($PGBOUNCER): comparing without it"
fi

# ------------------------------------------------------------------ pgbundle
start_bg() {   # $1=log file, rest: command
  local lf=$1; shift
  "$@" >"$lf" 2>&1 &
  PIDS+=($!)
}
start_bg "$WORK/server.log" pgbundle server -D "$WORK/pgbdata" --port "$SRV_PORT" --listen-addresses 127.0.0.1
wait_ready "$SRV_PORT" "pgbundle server"
log "pgbundle server on 127.0.0.1:$SRV_PORT (pid ${PIDS[-1]})"
POOLER_ARGS=(--unix-socket-dir "" --pool-mode transaction --pool-size 20 --max-connections 1000 --auth-type trust)
start_bg "$WORK/pooler-pg.log" pgbundle pooler --upstream "postgresql://127.0.0.1:$PG_PORT" \
  --listen-addr 127.0.0.1 --listen-port "$POOL_PG_PORT" "${POOLER_ARGS[@]}"
wait_ready "$POOL_PG_PORT" "pgbundle pooler (PostgreSQL)"
start_bg "$WORK/pooler-srv.log" pgbundle pooler --upstream "postgresql://127.0.0.1:$SRV_PORT" \
  --listen-addr 127.0.0.1 --listen-port "$POOL_SRV_PORT" "${POOLER_ARGS[@]}"
wait_ready "$POOL_SRV_PORT" "pgbundle pooler (pgbundle server)"
log "pgbundle pooler on :$POOL_PG_PORT -> PostgreSQL, on :$POOL_SRV_PORT -> pgbundle server (transaction mode, pool 20)"

dsn() { echo "postgresql://postgres@127.0.0.1:$1/postgres"; }
BNC_ARGS=(); [[ $HAVE_BNC == 1 ]] && BNC_ARGS=(--pgbouncer "$(dsn "$BNC_PORT")")

{
  echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -r); $("$PGBIN/postgres" --version)"
  echo "# python examples/loadtest/loadtest.py compare -c $CONCURRENCY -d $DURATION --rounds $ROUNDS --warmup 1 (poolers: transaction mode, pool 20, auth_type trust)"
} >"$OUT/compare.txt"
log "load test: connect / SELECT 1 / disconnect, concurrency $CONCURRENCY, $DURATION s per target"
"$PYTHON" "$HERE/loadtest.py" compare \
  --postgres "$(dsn "$PG_PORT")" --postgres-pooled "$(dsn "$POOL_PG_PORT")" "${BNC_ARGS[@]}" \
  --server "$(dsn "$SRV_PORT")" --server-pooled "$(dsn "$POOL_SRV_PORT")" \
  --concurrency "$CONCURRENCY" --duration "$DURATION" --rounds "$ROUNDS" --warmup 1 --pause 1 \
  --plot "$OUT/compare.png" --json "$OUT/compare.json" | tee -a "$OUT/compare.txt"

if [[ $WEBAPP == 1 ]]; then
  APP_POOLED=$(free_port); APP_DIRECT=$(free_port)
  start_bg "$WORK/app-pooled.log" env DATABASE_URL="$(dsn "$POOL_PG_PORT")" \
    "$PYTHON" "$REPO/examples/webapp/app.py" --host 127.0.0.1 --port "$APP_POOLED"
  start_bg "$WORK/app-direct.log" env DATABASE_URL="$(dsn "$PG_PORT")" \
    "$PYTHON" "$REPO/examples/webapp/app.py" --host 127.0.0.1 --port "$APP_DIRECT"
  for p in "$APP_POOLED" "$APP_DIRECT"; do
    for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$p/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  done
  echo "# python examples/loadtest/loadtest.py http -c $CONCURRENCY -d $DURATION --rounds $ROUNDS --warmup 1 (the guestbook app, Werkzeug threaded server)" \
    >"$OUT/webapp.txt"
  log "load test: the web app over HTTP, concurrency $CONCURRENCY, $DURATION s per target"
  "$PYTHON" "$HERE/loadtest.py" http -t "guestbook/direct to PostgreSQL=http://127.0.0.1:$APP_DIRECT" \
    -t "guestbook/via pgbundle pooler=http://127.0.0.1:$APP_POOLED" \
    --concurrency "$CONCURRENCY" --duration "$DURATION" --rounds "$ROUNDS" --warmup 1 --pause 1 \
    --plot "$OUT/webapp.png" --json "$OUT/webapp.json" | tee -a "$OUT/webapp.txt"
fi
log "results in $OUT"
