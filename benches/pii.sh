#!/usr/bin/env bash
# PII benchmark: benches/pii.lua (point selects of encrypted columns, a blind-index search, a
# 100-row range, an UPDATE, a DELETE and INSERT of encrypted values) against a `users` table
# with email, ssn and phone encrypted by the policy, and against its plaintext twin. Targets,
# interleaved round by round so noise on this shared machine hits them alike:
#   direct     MariaDB, plaintext twin
#   forwarder  the plain TCP forwarder (the floor), plaintext twin
#   plain      myveil, plaintext twin (pass-through: nothing to protect)
#   pii        myveil, encrypted table
#   base-pii   BASELINE_BIN (an older build), encrypted table, when given
# Prints qps, p95 and proxy CPU µs per query with ratios (pii against plain), in text mode
# and with prepared statements; writes the table as markdown to $OUT.
#
#   bash benches/pii.sh                      # 3 rounds x 10 s, 4 threads, text and prepared
#   QUICK=1 bash benches/pii.sh              # smoke run
#   BASELINE_BIN=/path/to/old/myveil bash benches/pii.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${QUICK:-0}" = 1 ]; then
  : "${DURATION:=3}" "${ROUNDS:=1}" "${MODES:=text}"
fi
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-4}
ROWS=${ROWS:-10000}
MODES=${MODES:-"text prepared"}
OUT=${OUT:-target/pii-results.md}
PLAIN_DB=myveil_bench_pii_plain
PII_DB=myveil_bench_pii
MYVEIL_PORT=3411
FORWARDER_PORT=3412
BASE_PORT=3413
TARGETS="direct forwarder plain pii"
[ -n "${BASELINE_BIN:-}" ] && TARGETS="$TARGETS base-pii"

command -v sysbench >/dev/null || { echo "benches/pii.sh needs sysbench (apt-get install sysbench)" >&2; exit 1; }
cargo build --release --quiet --bin myveil --example tcp_forwarder
TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $PLAIN_DB; DROP DATABASE IF EXISTS $PII_DB" || true
  rm -rf "$TMP"
}
trap cleanup EXIT

mariadb -h127.0.0.1 -uroot -e "
  DROP DATABASE IF EXISTS $PLAIN_DB; CREATE DATABASE $PLAIN_DB;
  CREATE TABLE $PLAIN_DB.users (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL,
    email VARCHAR(100), ssn CHAR(11), phone VARCHAR(20), KEY (email));
  DROP DATABASE IF EXISTS $PII_DB; CREATE DATABASE $PII_DB;
  CREATE TABLE $PII_DB.users (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL,
    email VARBINARY(255), email_bidx BINARY(32), ssn VARBINARY(255), phone VARBINARY(255),
    KEY (email_bidx));"

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
[protection]
policy_dir = "policy"
keys_dir = "keys"
TOML
mkdir -p "$TMP/policy"
cat >"$TMP/policy/users.toml" <<TOML
[[column]]
database = "$PII_DB"
table = "users"
column = "email"
type = "varchar(100)"
blind_index = "email_bidx"
roles = { app = "plaintext" }

[[column]]
database = "$PII_DB"
table = "users"
column = "ssn"
type = "char(11)"
roles = { app = "plaintext" }

[[column]]
database = "$PII_DB"
table = "users"
column = "phone"
type = "varchar(20)"
roles = { app = "plaintext" }
TOML
target/release/myveil keygen -c "$TMP/myveil.toml" >/dev/null
echo "bench-password-1" | target/release/myveil user add bench --role app --password-stdin -c "$TMP/myveil.toml" >/dev/null

target/release/myveil serve -c "$TMP/myveil.toml" 2>"$TMP/myveil.log" &
MYVEIL_PID=$!
PIDS+=("$MYVEIL_PID")
BASE_PID=""
if [ -n "${BASELINE_BIN:-}" ]; then
  sed "s/127.0.0.1:$MYVEIL_PORT/127.0.0.1:$BASE_PORT/" "$TMP/myveil.toml" >"$TMP/base.toml"
  "$BASELINE_BIN" serve -c "$TMP/base.toml" 2>"$TMP/base.log" &
  BASE_PID=$!
  PIDS+=("$BASE_PID")
fi
target/release/examples/tcp_forwarder "127.0.0.1:$FORWARDER_PORT" 127.0.0.1:3306 2>"$TMP/forwarder.log" &
FORWARDER_PID=$!
PIDS+=("$FORWARDER_PID")
sleep 1

# The same rows in both tables; the encrypted one is filled through myveil, so every email,
# ssn and phone is sealed and every email has its blind index.
python3 -c 'import pymysql' 2>/dev/null || python3 -m pip install --quiet pymysql
fill() { # port user password db
  python3 - "$@" "$ROWS" <<'PY'
import random, sys, pymysql
port, user, password, db, rows = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
random.seed(7)
conn = pymysql.connect(host="127.0.0.1", port=port, user=user, password=password, database=db, autocommit=True)
cur = conn.cursor()
for start in range(1, rows + 1, 500):
    batch = [(i, f"user {i}", f"user{i:07d}@example.com",
              f"{random.randint(100, 999)}-{random.randint(10, 99)}-{random.randint(1000, 9999)}",
              f"+1-555-{random.randint(0, 9999999):07d}")
             for i in range(start, min(start + 500, rows + 1))]
    cur.executemany("INSERT INTO users (id, name, email, ssn, phone) VALUES (%s, %s, %s, %s, %s)", batch)
conn.close()
PY
}
fill 3306 root "" "$PLAIN_DB"
fill "$MYVEIL_PORT" bench bench-password-1 "$PII_DB"
# The database holds no plaintext of the encrypted table.
leaked=$(mariadb -h127.0.0.1 -uroot -N -e "SELECT COUNT(*) FROM $PII_DB.users WHERE email LIKE '%@example.com' OR ssn REGEXP '^[0-9]{3}-' OR phone LIKE '+1-555-%'")
[ "$leaked" = 0 ] || { echo "plaintext in $PII_DB.users: $leaked rows" >&2; exit 1; }

TICKS=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
RESULTS="$TMP/results.tsv"
: >"$RESULTS"
run_one() { # mode target
  local mode=$1 target=$2 port user=bench pass=bench-password-1 pid="" db=$PII_DB
  case $target in
    direct) port=3306; user=root; pass=""; db=$PLAIN_DB ;;
    forwarder) port=$FORWARDER_PORT; user=root; pass=""; pid=$FORWARDER_PID; db=$PLAIN_DB ;;
    plain) port=$MYVEIL_PORT; pid=$MYVEIL_PID; db=$PLAIN_DB ;;
    pii) port=$MYVEIL_PORT; pid=$MYVEIL_PID ;;
    base-pii) port=$BASE_PORT; pid=$BASE_PID ;;
  esac
  local ps=off
  [ "$mode" = prepared ] && ps=on
  local before=0 after=0 out
  [ -n "$pid" ] && before=$(cpu_ticks "$pid")
  if ! out=$(sysbench benches/pii.lua --mysql-host=127.0.0.1 --mysql-port="$port" --mysql-user="$user" \
      --mysql-password="$pass" --mysql-db="$db" --rows="$ROWS" --pii-ps="$ps" --threads="$THREADS" \
      --time="$DURATION" --report-interval=0 --percentile=95 run 2>&1); then
    echo "sysbench failed against $target ($mode):" >&2
    echo "$out" >&2
    echo "--- myveil log ---" >&2
    cat "$TMP/myveil.log" >&2
    exit 1
  fi
  [ -n "$pid" ] && after=$(cpu_ticks "$pid")
  local queries qps p95 cpu_us=0
  queries=$(awk '/^ *total:/ && !q {print $2; q=1}' <<<"$out")
  qps=$(awk '/queries:/ && /per sec/ {gsub(/\(/,"",$3); print $3; exit}' <<<"$out")
  p95=$(awk '/95th percentile:/ {print $3; exit}' <<<"$out")
  if [ -n "$pid" ] && [ "${queries:-0}" -gt 0 ]; then
    cpu_us=$(awk -v a="$after" -v b="$before" -v t="$TICKS" -v q="$queries" 'BEGIN {printf "%.1f", (a-b)/t*1e6/q}')
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$mode" "$target" "$qps" "$p95" "$cpu_us" >>"$RESULTS"
  printf '  %-9s %-9s %10s qps  p95 %7s ms  cpu %7s us/q\n' "$mode" "$target" "$qps" "$p95" "$cpu_us" >&2
}

for mode in $MODES; do
  for round in $(seq 1 "$ROUNDS"); do
    for target in $TARGETS; do
      run_one "$mode" "$target"
    done
  done
done

mkdir -p "$(dirname "$OUT")"
python3 - "$RESULTS" "$OUT" "$DURATION" "$ROUNDS" "$THREADS" "$TARGETS" <<'PY'
import sys, statistics, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    mode, target, qps, p95, cpu = line.rstrip("\n").split("\t")
    rows[(mode, target)].append((float(qps), float(p95), float(cpu)))
targets = sys.argv[6].split()
out = [f"PII workload (benches/pii.lua), medians of {sys.argv[4]} interleaved rounds x {sys.argv[3]} s, {sys.argv[5]} threads", "",
       "| mode | target | qps | p95 ms | proxy CPU µs/query | qps vs direct | qps vs plain | CPU vs plain |",
       "|---|---|---|---|---|---|---|---|"]
for mode in dict.fromkeys(m for m, _ in rows):
    m = {t: [statistics.median(x[i] for x in rows[(mode, t)]) for i in range(3)]
         for t in targets if rows.get((mode, t))}
    for t in targets:
        if t not in m:
            continue
        qps, p95, cpu = m[t]
        vs_direct = f"{qps / m['direct'][0]:.2f}" if t != "direct" and "direct" in m else ""
        pii = t in ("pii", "base-pii")
        vs_plain = f"{qps / m['plain'][0]:.2f}" if pii and "plain" in m else ""
        cpu_plain = f"{cpu / m['plain'][2]:.2f}" if pii and m.get("plain", [0, 0, 0])[2] else ""
        out.append(f"| {mode} | {t} | {qps:.0f} | {p95:.2f} | {f'{cpu:.1f}' if cpu else ''} | {vs_direct} | {vs_plain} | {cpu_plain} |")
text = "\n".join(out) + "\n"
open(sys.argv[2], "w").write(text)
print(text)
PY
