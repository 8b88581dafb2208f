#!/usr/bin/env bash
# Soak: an hour of mixed sysbench (oltp_read_write, text protocol) through myveil in
# multiplexed mode, with connect churn beside it (batches of clients that log in, query,
# idle and go, and a connect storm each time). Samples the proxy's RSS every 10 s into
# $OUT.csv and passes when RSS grew less than 5% from the end of the warm-up to the end.
# Not run in CI.
#
#   bash benches/soak.sh                          # 1 hour, 10 min warm-up
#   DURATION=600 WARMUP=120 bash benches/soak.sh  # a shorter one
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-3600}
WARMUP=${WARMUP:-600}
THREADS=${THREADS:-8}
OUT=${OUT:-target/soak}
PORT=3416
DB=myveil_bench_soak

command -v sysbench >/dev/null || { echo "benches/soak.sh needs sysbench" >&2; exit 1; }
cargo build --release --quiet --bin myveil --example many_clients
TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $DB" || true
  rm -rf "$TMP"
}
trap cleanup EXIT

mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB"
common=(--mysql-host=127.0.0.1 --mysql-db=$DB --tables=4 --table-size=10000)
sysbench oltp_read_write "${common[@]}" --mysql-port=3306 --mysql-user=root prepare >/dev/null

cat >"$TMP/myveil.toml" <<TOML
[listen]
address = "127.0.0.1:$PORT"
max_connections = 4096
[backend]
address = "127.0.0.1:3306"
mode = "multiplexed"
pool_max_idle = 50
wait_timeout_ms = 30000
[backend.accounts.main]
user = "root"
max_backend_connections = 50
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

sysbench oltp_read_write "${common[@]}" --mysql-port=$PORT --mysql-user=bench --mysql-password=bench-password-1 \
  --threads="$THREADS" --time="$DURATION" --report-interval=60 --db-ps-mode=disable run >"$TMP/sysbench.log" 2>&1 &
SYSBENCH_PID=$!
PIDS+=("$SYSBENCH_PID")
(
  while kill -0 "$SYSBENCH_PID" 2>/dev/null; do
    echo | target/release/examples/many_clients "127.0.0.1:$PORT" bench bench-password-1 500 100 20 >>"$TMP/churn.log" 2>&1 || true
  done
) &
PIDS+=($!)

mkdir -p "$(dirname "$OUT")"
echo "seconds,rss_kib" >"$OUT.csv"
start=$(date +%s)
while kill -0 "$SYSBENCH_PID" 2>/dev/null; do
  now=$(( $(date +%s) - start ))
  echo "$now,$(awk '/^VmRSS:/ {print $2}' "/proc/$MYVEIL_PID/status")" >>"$OUT.csv"
  sleep 10
done
wait "$SYSBENCH_PID" || { echo "sysbench failed"; tail -20 "$TMP/sysbench.log"; exit 1; }
grep -E "queries:|transactions:|ignored errors:" "$TMP/sysbench.log"
echo "churn batches: $(grep -c '^storm:' "$TMP/churn.log"), failures: $(grep -c 'failed: [^0]\|a client failed\|a storm login failed' "$TMP/churn.log" || true)"
python3 - "$OUT.csv" "$WARMUP" <<'PY'
import csv, sys
rows = [(int(r["seconds"]), int(r["rss_kib"])) for r in csv.DictReader(open(sys.argv[1]))]
warm = int(sys.argv[2])
after = [r for r in rows if r[0] >= warm]
if len(after) < 2:
    sys.exit("too short to judge: no samples after the warm-up")
base, end, peak = after[0][1], after[-1][1], max(r[1] for r in after)
growth = (end - base) / base * 100
print(f"RSS after warm-up {base} KiB, at the end {end} KiB, peak {peak} KiB: growth {growth:+.1f}%")
sys.exit(0 if growth < 5 else "RSS grew 5% or more after the warm-up")
PY
