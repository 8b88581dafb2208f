#!/usr/bin/env bash
# 10,000 clients through myveil in multiplexed mode over at most 100 backend connections
# (MariaDB keeps its max_connections), then a connect storm beside them. Prints how many
# clients got in and ran a query, the backend connections myveil held, the proxy's RSS per
# idle client, the storm's p50 / p99 connect times, and a live session's statement latency
# without the storm and during it.
#
#   bash benches/many_clients.sh                  # 10,000 clients, storm of 1,000/s for 10 s
#   CLIENTS=2000 RATE=500 SECONDS_=5 bash benches/many_clients.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${CLIENTS:-10000}
RATE=${RATE:-1000}
SECONDS_=${SECONDS_:-10}
BACKEND_MAX=${BACKEND_MAX:-100}
PORT=3415
USER_=myveil_bench_many
PASSWORD=bench-many-1

need=$((CLIENTS * 2 + 1000))
if [ "$(ulimit -n)" -lt "$need" ]; then
  ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi
echo "open files: $(ulimit -n)"

cargo build --release --quiet --bin myveil --example many_clients
TMP=$(mktemp -d)
PIDS=()
sql() { mariadb -h127.0.0.1 -P3306 -uroot "$@"; }
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sql -e "DROP USER IF EXISTS '$USER_'@'127.0.0.1'; DROP USER IF EXISTS '$USER_'@'localhost'" || true
  rm -rf "$TMP"
}
trap cleanup EXIT

# An account of its own, so the process list counts exactly myveil's connections.
sql -e "DROP USER IF EXISTS '$USER_'@'127.0.0.1'; CREATE USER '$USER_'@'127.0.0.1' IDENTIFIED BY '$PASSWORD'; GRANT SELECT ON test.* TO '$USER_'@'127.0.0.1'"
printf '%s' "$PASSWORD" >"$TMP/backend.password"
chmod 600 "$TMP/backend.password"
echo "backend max_connections: $(sql -N -e 'SELECT @@max_connections')"

cat >"$TMP/myveil.toml" <<TOML
[listen]
address = "127.0.0.1:$PORT"
max_connections = $((CLIENTS + 2000))
handshake_timeout_secs = 60
idle_timeout_secs = 3600
[backend]
address = "127.0.0.1:3306"
mode = "multiplexed"
pool_max_idle = $BACKEND_MAX
wait_queue = $((CLIENTS + 2000))
wait_timeout_ms = 30000
[backend.accounts.main]
user = "$USER_"
password_file = "backend.password"
max_backend_connections = $BACKEND_MAX
[roles.app]
backend_account = "main"
[users]
file = "users.toml"
[log]
level = "warn"
TOML
echo "bench-password-1" | target/release/myveil user add bench --role app --password-stdin -c "$TMP/myveil.toml" >/dev/null
target/release/myveil serve -c "$TMP/myveil.toml" 2>"$TMP/myveil.log" &
MYVEIL_PID=$!
PIDS+=("$MYVEIL_PID")
sleep 1
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
backend_connections() { sql -N -e "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '$USER_'"; }

# One client first, so the baseline has the proxy's start-up allocations.
mariadb -h127.0.0.1 -P$PORT -ubench -pbench-password-1 -e 'SELECT 1' >/dev/null
BEFORE=$(rss_kib "$MYVEIL_PID")

mkfifo "$TMP/go"
target/release/examples/many_clients "127.0.0.1:$PORT" bench bench-password-1 "$CLIENTS" "$RATE" "$SECONDS_" <"$TMP/go" >"$TMP/out" &
CLIENT_PID=$!
exec 3>"$TMP/go"
until grep -q '^idle:' "$TMP/out" 2>/dev/null; do
  kill -0 "$CLIENT_PID" 2>/dev/null || { cat "$TMP/out"; tail -20 "$TMP/myveil.log"; exit 1; }
  sleep 1
done
sleep 2
AFTER=$(rss_kib "$MYVEIL_PID")
HELD=$(backend_connections)
cat "$TMP/out"
echo "backend connections held by myveil: $HELD (limit $BACKEND_MAX)"
awk -v a="$AFTER" -v b="$BEFORE" -v n="$CLIENTS" 'BEGIN { printf "proxy RSS: %d KiB before, %d KiB with %d idle clients: %.1f KiB per idle client\n", b, a, n, (a - b) / n }'
echo go >&3
exec 3>&-
wait "$CLIENT_PID"
grep -E '^(live session|storm:)' "$TMP/out"
echo "backend connections after the storm: $(backend_connections)"
