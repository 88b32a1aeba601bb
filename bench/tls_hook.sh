#!/usr/bin/env bash
# tls_hook.sh - a compare.sh setup hook (-H) for the TLS benchmark of issue 2.2.
#
# Starts, in front of compare.sh's PostgreSQL ($PG_HOST:$PG_PORT, plain):
#   * pgbouncer with client_tls_sslmode=require (pool_mode=transaction, same pool as compare.sh's)
#       on $BNC_TLS_PORT (default 56450), pidfile /tmp/bench-tls/bnc_tls.pid
#   * pgbundle pooler with client_tls_sslmode=require on $PGB_TLS_PORT (56451), pid in /tmp/bench-pgb-tls.pid
#   * pgbundle pooler, plaintext, on $PGB_PORT (56452), pid in /tmp/bench-pgb.pid
# with a throwaway self-signed certificate in $WORKDIR.  Run compare.sh with PGSSLMODE=prefer so
# that pgbench uses TLS wherever it is offered (the TLS targets) and plain elsewhere:
#
#   PGSSLMODE=prefer BNC_SESSION_PORT=0 DURATION=15 ../shared/bench/compare.sh -c S,C \
#     -H "PGBUNDLE=/path/to/venv/bin/pgbundle bench/tls_hook.sh" \
#     -x bnc_tls=127.0.0.1:56450:/tmp/bench-tls/bnc_tls.pid -x pgb_tls=127.0.0.1:56451:/tmp/bench-pgb-tls.pid ...
#
# (the pidfile paths exist once the hook has run: this script prints them.)
set -euo pipefail
PGBUNDLE=${PGBUNDLE:-pgbundle}
BNC_TLS_PORT=${BNC_TLS_PORT:-56450}
PGB_TLS_PORT=${PGB_TLS_PORT:-56451}
PGB_PORT=${PGB_PORT:-56452}
D=/tmp/bench-tls
rm -rf "$D"; mkdir -p "$D"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
  -keyout "$D/server.key" -out "$D/server.crt" 2>/dev/null
chown -R postgres "$D"; chmod 600 "$D/server.key"
cat >"$D/bnc_tls.ini" <<INI
[databases]
* = host=$PG_HOST port=$PG_PORT
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BNC_TLS_PORT
unix_socket_dir =
auth_type = trust
auth_file = $D/users.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 1000
pidfile = $D/bnc_tls.pid
logfile = $D/bnc_tls.log
server_tls_sslmode = disable
client_tls_sslmode = require
client_tls_key_file = $D/server.key
client_tls_cert_file = $D/server.crt
INI
echo "\"$PG_USER\" \"\"" >"$D/users.txt"
chown -R postgres "$D"
runuser -u postgres -- bash -c "ulimit -n 20000 2>/dev/null || ulimit -n 4096; exec pgbouncer -d '$D/bnc_tls.ini'"
common=(--upstream "postgresql://$PG_USER@$PG_HOST:$PG_PORT" --unix-socket-dir "" --pool-mode transaction
        --pool-size 20 --max-connections 1000 -q -s server_tls_sslmode=disable)
"$PGBUNDLE" pooler "${common[@]}" -p "$PGB_TLS_PORT" -s client_tls_sslmode=require \
  -s "client_tls_key_file=$D/server.key" -s "client_tls_cert_file=$D/server.crt" >"$D/pgb_tls.log" 2>&1 &
echo $! >/tmp/bench-pgb-tls.pid
"$PGBUNDLE" pooler "${common[@]}" -p "$PGB_PORT" >"$D/pgb.log" 2>&1 &
echo $! >/tmp/bench-pgb.pid
sleep 3
echo "pidfiles: $D/bnc_tls.pid /tmp/bench-pgb-tls.pid /tmp/bench-pgb.pid"
