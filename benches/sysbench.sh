#!/usr/bin/env bash
# Relay benchmark: sysbench point-select, read-only and read-write at several thread counts,
# interleaving four targets in one run — MariaDB directly, a plain TCP forwarder (the floor),
# myveil, and myveil with the client on the compressed protocol (myveil-z) — so noise on
# this shared machine hits all of them alike. Prints throughput, p95
# latency and proxy CPU µs per query (from /proc/PID/stat) with ratios; writes the same table
# as markdown to $OUT.
#
#   bash benches/sysbench.sh                 # full run (~15 min)
#   QUICK=1 bash benches/sysbench.sh         # smoke run
#   PROTECTED=1 bash benches/sysbench.sh     # protected vs unprotected columns, both via myveil
#   MULTIPLEXED=1 bash benches/sysbench.sh   # myveil pinned against myveil multiplexed
#                                            # (a second instance, [backend] mode =
#                                            # "multiplexed", 100 backend connections), at 1,
#                                            # 4, 16 and 64 threads; qps vs myveil = mux/pinned
#   BASELINE_BIN=/path/to/old/myveil bash benches/sysbench.sh
#                                            # an older build as one more target (base)
#   PROTECTED=1 BASELINE_BIN=/path/to/old/myveil bash benches/sysbench.sh
#                                            # …and the protected run through an older build,
#                                            # interleaved (qps vs base-protected is new/old)
#
# PROTECTED=1 compares the same sysbench workload through myveil on two databases: one with
# plain sbtest tables and one whose `c` (with a blind index) and `pad` columns are encrypted
# by the policy. ORDER BY c and DISTINCT c ranges are off in both (myveil refuses ordering
# by an encrypted column), and statements go as text (--db-ps-mode=disable; see below).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${PROTECTED:-0}" = 1 ]; then
  # sysbench prepares every statement it might use at start, including ORDER BY c, which
  # myveil refuses at prepare time: the protected comparison runs in the text protocol.
  : "${WORKLOADS:=oltp_point_select oltp_read_only oltp_read_write}" "${THREADS:=4}" "${PS_MODE:=disable}"
  TARGETS="unprotected protected"
  [ -n "${BASELINE_BIN:-}" ] && TARGETS="base-protected unprotected protected"
  EXTRA=(--order-ranges=0 --distinct-ranges=0)
elif [ "${MULTIPLEXED:-0}" = 1 ]; then
  : "${THREADS:=1 4 16 64}"
  TARGETS="direct forwarder myveil multiplexed"
  EXTRA=()
else
  TARGETS="direct forwarder myveil myveil-z"
  # BASELINE_BIN: an older build beside this one, interleaved (qps vs forwarder for both).
  [ -n "${BASELINE_BIN:-}" ] && TARGETS="direct forwarder base myveil myveil-z"
  EXTRA=()
fi

if [ "${QUICK:-0}" = 1 ]; then
  : "${DURATION:=3}" "${ROUNDS:=1}" "${THREADS:=4}" "${WORKLOADS:=oltp_read_only}"
fi
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-"1 4 16"}
WORKLOADS=${WORKLOADS:-"oltp_point_select oltp_read_only oltp_read_write"}
TABLES=${TABLES:-4}
TABLE_SIZE=${TABLE_SIZE:-10000}
PS_MODE=${PS_MODE:-auto}
OUT=${OUT:-target/sysbench-results.md}
DB=myveil_bench
PDB=myveil_bench_p
MYVEIL_PORT=3407
FORWARDER_PORT=3408
BASE_PORT=3410
BASE_PID=""
MUX_PORT=3414
MUX_PID=""

cargo build --release --quiet --bin myveil --example tcp_forwarder
TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

mariadb -h127.0.0.1 -uroot -e "CREATE DATABASE IF NOT EXISTS $DB"
common=(--mysql-host=127.0.0.1 --mysql-db=$DB --tables="$TABLES" --table-size="$TABLE_SIZE")
sysbench oltp_read_write "${common[@]}" --mysql-port=3306 --mysql-user=root cleanup >/dev/null 2>&1 || true
sysbench oltp_read_write "${common[@]}" --mysql-port=3306 --mysql-user=root prepare >/dev/null
if [ "${PROTECTED:-0}" = 1 ]; then
  mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $PDB; CREATE DATABASE $PDB"
  # Empty sbtest tables, then wide enough for envelopes, with a blind index for c.
  sysbench oltp_read_write --mysql-host=127.0.0.1 --mysql-port=3306 --mysql-user=root --mysql-db=$PDB \
    --tables="$TABLES" --table-size=0 prepare >/dev/null
  for t in $(seq 1 "$TABLES"); do
    mariadb -h127.0.0.1 -uroot $PDB -e "ALTER TABLE sbtest$t MODIFY c VARBINARY(255) NOT NULL, MODIFY pad VARBINARY(200) NOT NULL, ADD c_bidx BINARY(32)"
  done
fi

cat >"$TMP/myveil.toml" <<TOML
[listen]
address = "127.0.0.1:$MYVEIL_PORT"
max_connections = 1024
[backend]
address = "127.0.0.1:3306"
pool_max_idle = 64
[backend.accounts.main]
user = "root"
[roles.app]
backend_account = "main"
[users]
file = "users.toml"
bcrypt_cost = 10
[log]
level = "warn"
TOML
if [ "${PROTECTED:-0}" = 1 ]; then
  mkdir -p "$TMP/policy"
  cat >"$TMP/policy/sbtest.toml" <<TOML
$(for t in $(seq 1 "$TABLES"); do cat <<COL
[[column]]
database = "$PDB"
table = "sbtest$t"
column = "c"
type = "char(120)"
blind_index = "c_bidx"
roles = { app = "plaintext" }

[[column]]
database = "$PDB"
table = "sbtest$t"
column = "pad"
type = "char(60)"
roles = { app = "plaintext" }

COL
done)
TOML
  printf '[protection]\npolicy_dir = "policy"\nkeys_dir = "keys"\n' >>"$TMP/myveil.toml"
  target/release/myveil keygen -c "$TMP/myveil.toml" >/dev/null
fi
if [ "${MULTIPLEXED:-0}" = 1 ]; then
  # Idle backend connections of one target would keep the next from MariaDB's 151 at 64
  # threads: they expire after a second here (run_one waits for that at 32 threads and up).
  sed -i 's/^pool_max_idle = 64$/pool_max_idle = 64\npool_idle_timeout_secs = 1/' "$TMP/myveil.toml"
fi
echo "bench-password-1" | target/release/myveil user add bench --role app --password-stdin -c "$TMP/myveil.toml" >/dev/null

target/release/myveil serve -c "$TMP/myveil.toml" 2>"$TMP/myveil.log" &
MYVEIL_PID=$!
PIDS+=("$MYVEIL_PID")
if [ -n "${BASELINE_BIN:-}" ]; then
  # The same configuration, keys and users, on another port.
  sed "s/127.0.0.1:$MYVEIL_PORT/127.0.0.1:$BASE_PORT/" "$TMP/myveil.toml" >"$TMP/base.toml"
  "$BASELINE_BIN" serve -c "$TMP/base.toml" 2>"$TMP/base.log" &
  BASE_PID=$!
  PIDS+=("$BASE_PID")
fi
if [ "${MULTIPLEXED:-0}" = 1 ]; then
  # The same configuration, multiplexed, on another port.
  sed -e "s/127.0.0.1:$MYVEIL_PORT/127.0.0.1:$MUX_PORT/" \
      -e 's/^address = "127.0.0.1:3306"$/address = "127.0.0.1:3306"\nmode = "multiplexed"/' \
      -e 's/^user = "root"$/user = "root"\nmax_backend_connections = 100/' \
      -e 's/^pool_max_idle = 64$/pool_max_idle = 100/' \
      "$TMP/myveil.toml" >"$TMP/mux.toml"
  target/release/myveil serve -c "$TMP/mux.toml" 2>"$TMP/mux.log" &
  MUX_PID=$!
  PIDS+=("$MUX_PID")
fi
target/release/examples/tcp_forwarder "127.0.0.1:$FORWARDER_PORT" 127.0.0.1:3306 2>"$TMP/forwarder.log" &
FORWARDER_PID=$!
PIDS+=("$FORWARDER_PID")
sleep 1

if [ "${PROTECTED:-0}" = 1 ]; then
  # Fill the protected tables through myveil, so every c and pad is sealed.
  python3 -c 'import pymysql' 2>/dev/null || python3 -m pip install --quiet pymysql
  python3 - "$MYVEIL_PORT" "$PDB" "$TABLES" "$TABLE_SIZE" <<'PY'
import random, sys, pymysql
port, db, tables, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
conn = pymysql.connect(host="127.0.0.1", port=port, user="bench", password="bench-password-1", database=db, autocommit=True)
cur = conn.cursor()
groups = lambda n: "-".join("".join(random.choice("0123456789") for _ in range(11)) for _ in range(n))
for t in range(1, tables + 1):
    for start in range(1, size + 1, 500):
        rows = [(i, random.randint(1, size), groups(10), groups(5)) for i in range(start, min(start + 500, size + 1))]
        cur.executemany(f"INSERT INTO sbtest{t} (id, k, c, pad) VALUES (%s, %s, %s, %s)", rows)
conn.close()
PY
fi

TICKS=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

RESULTS="$TMP/results.tsv"
: >"$RESULTS"
run_one() { # workload threads target
  local workload=$1 threads=$2 target=$3 port user pass pid="" db=$DB z=()
  case $target in
    myveil-z) port=$MYVEIL_PORT; user=bench; pass=bench-password-1; pid=$MYVEIL_PID; z=(--mysql-compression=on) ;;
    direct) port=3306; user=root; pass="" ;;
    forwarder) port=$FORWARDER_PORT; user=root; pass=""; pid=$FORWARDER_PID ;;
    myveil | unprotected) port=$MYVEIL_PORT; user=bench; pass=bench-password-1; pid=$MYVEIL_PID ;;
    protected) port=$MYVEIL_PORT; user=bench; pass=bench-password-1; pid=$MYVEIL_PID; db=$PDB ;;
    base) port=$BASE_PORT; user=bench; pass=bench-password-1; pid=$BASE_PID ;;
    multiplexed) port=$MUX_PORT; user=bench; pass=bench-password-1; pid=$MUX_PID ;;
    base-protected) port=$BASE_PORT; user=bench; pass=bench-password-1; pid=$BASE_PID; db=$PDB ;;
  esac
  local before=0 after=0
  [ "${MULTIPLEXED:-0}" = 1 ] && [ "$threads" -ge 32 ] && sleep 6
  [ -n "$pid" ] && before=$(cpu_ticks "$pid")
  local out
  if ! out=$(sysbench "$workload" "${common[@]}" --mysql-db="$db" "${EXTRA[@]}" "${z[@]}" --mysql-port="$port" --mysql-user="$user" --mysql-password="$pass" \
      --threads="$threads" --time="$DURATION" --report-interval=0 --percentile=95 --db-ps-mode="$PS_MODE" run 2>&1); then
    echo "sysbench failed against $target:" >&2
    echo "$out" >&2
    echo "--- myveil log ---" >&2
    cat "$TMP/myveil.log" >&2
    exit 1
  fi
  [ -n "$pid" ] && after=$(cpu_ticks "$pid")
  local queries qps tps p95
  queries=$(awk '/^ *total:/ && !q {print $2; q=1}' <<<"$out")
  qps=$(awk '/queries:/ && /per sec/ {gsub(/\(/,"",$3); print $3; exit}' <<<"$out")
  tps=$(awk '/transactions:/ {gsub(/\(/,"",$3); print $3; exit}' <<<"$out")
  p95=$(awk '/95th percentile:/ {print $3; exit}' <<<"$out")
  local cpu_us=0
  if [ -n "$pid" ] && [ "${queries:-0}" -gt 0 ]; then
    cpu_us=$(awk -v a="$after" -v b="$before" -v t="$TICKS" -v q="$queries" 'BEGIN {printf "%.1f", (a-b)/t*1e6/q}')
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$workload" "$threads" "$target" "$qps" "$tps" "$p95" "$cpu_us" >>"$RESULTS"
  printf '  %-18s %3s threads %-9s %10s qps %9s tps  p95 %7s ms  cpu %7s us/q\n' "$workload" "$threads" "$target" "$qps" "$tps" "$p95" "$cpu_us" >&2
}

for workload in $WORKLOADS; do
  for threads in $THREADS; do
    for round in $(seq 1 "$ROUNDS"); do
      for target in $TARGETS; do
        run_one "$workload" "$threads" "$target"
      done
    done
  done
done

sysbench oltp_read_write "${common[@]}" --mysql-port=3306 --mysql-user=root cleanup >/dev/null 2>&1 || true
[ "${PROTECTED:-0}" = 1 ] && mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $PDB"

mkdir -p "$(dirname "$OUT")"
python3 - "$RESULTS" "$OUT" "$PS_MODE" "$DURATION" "$ROUNDS" "$TARGETS" <<'PY'
import sys, statistics, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    w, t, target, qps, tps, p95, cpu = line.rstrip("\n").split("\t")
    rows[(w, int(t), target)].append((float(qps), float(tps), float(p95), float(cpu)))
med = lambda xs: statistics.median(xs)
targets = sys.argv[6].split()
base = targets[0]
floor = "forwarder" if "forwarder" in targets else targets[-2]
# Targets after the floor are the proxy's: they are compared with the floor.
proxies = targets[targets.index(floor) + 1:]
out = [f"sysbench medians of {sys.argv[5]} rounds x {sys.argv[4]} s, --db-ps-mode={sys.argv[3]}", "",
       f"| workload | threads | target | qps | tps | p95 ms | proxy CPU µs/query | qps vs {base} | qps vs {floor if floor != base else '-'} | CPU vs {floor} |",
       "|---|---|---|---|---|---|---|---|---|---|"]
keys = sorted({(w, t) for (w, t, _) in rows}, key=lambda k: (k[0], k[1]))
for w, t in keys:
    m = {}
    for target in targets:
        r = rows.get((w, t, target))
        if r:
            m[target] = [med([x[i] for x in r]) for i in range(4)]
    for target in targets:
        if target not in m:
            continue
        qps, tps, p95, cpu = m[target]
        vs_base = f"{qps / m[base][0]:.2f}" if target != base and m.get(base) else ""
        vs_floor = f"{qps / m[floor][0]:.2f}" if target in proxies and floor != base and m.get(floor) else ""
        cpu_floor = f"{cpu / m[floor][3]:.2f}" if target in proxies and m.get(floor) and m[floor][3] else ""
        cpu_s = f"{cpu:.1f}" if cpu else ""
        out.append(f"| {w} | {t} | {target} | {qps:.0f} | {tps:.0f} | {p95:.2f} | {cpu_s} | {vs_base} | {vs_floor} | {cpu_floor} |")
if "multiplexed" in targets and "myveil" in targets:
    out += ["", "| workload | threads | multiplexed qps vs pinned | CPU vs pinned |", "|---|---|---|---|"]
    for w, t in keys:
        a, b = rows.get((w, t, "multiplexed")), rows.get((w, t, "myveil"))
        if a and b:
            mq, pq = med([x[0] for x in a]), med([x[0] for x in b])
            mc, pc = med([x[3] for x in a]), med([x[3] for x in b])
            out.append(f"| {w} | {t} | **{mq / pq:.2f}** | {mc / pc:.2f} |")
text = "\n".join(out) + "\n"
open(sys.argv[2], "w").write(text)
print(text)
PY
