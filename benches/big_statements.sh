#!/usr/bin/env bash
# Large statements on protected columns: how long myveil takes to decide, rewrite and relay
# them, and how much memory it needs, against the same statement on a plain table sent
# directly. Each statement is timed ROUNDS times in turn (direct plaintext table, then
# myveil on the protected twin) and medians are printed with the ratio, plus myveil's peak
# RSS (VmHWM) after each kind.
#
#   bash benches/big_statements.sh             # 10,000-row INSERT, 60,000-value IN, 5 MB value
#   ROWS=2000 IN_LIST=10000 bash benches/big_statements.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-10000}
IN_LIST=${IN_LIST:-60000}
ROUNDS=${ROUNDS:-5}
DB=myveil_bench_big
PORT=3409

cargo build --release --quiet --bin myveil
TMP=$(mktemp -d)
PID=""
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $DB" || true
  rm -rf "$TMP"
}
trap cleanup EXIT

mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB"
mariadb -h127.0.0.1 -uroot $DB -e "
  CREATE TABLE plain_users (id INT PRIMARY KEY, email VARCHAR(100), ssn VARCHAR(20), note MEDIUMTEXT, KEY (email));
  CREATE TABLE users (id INT PRIMARY KEY, email VARBINARY(255), email_bidx BINARY(32), ssn VARBINARY(120),
                      note MEDIUMBLOB, KEY (email_bidx));"

cat >"$TMP/myveil.toml" <<TOML
[listen]
address = "127.0.0.1:$PORT"
max_packet_bytes = 67108864
[backend]
address = "127.0.0.1:3306"
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
max_analyzed_bytes = 67108864
TOML
mkdir -p "$TMP/policy"
cat >"$TMP/policy/users.toml" <<TOML
[[column]]
database = "$DB"
table = "users"
column = "email"
type = "varchar(100)"
blind_index = "email_bidx"
roles = { app = "plaintext" }

[[column]]
database = "$DB"
table = "users"
column = "ssn"
type = "varchar(20)"
roles = { app = "plaintext" }

[[column]]
database = "$DB"
table = "users"
column = "note"
type = "text"
roles = { app = "plaintext" }
TOML
target/release/myveil keygen -c "$TMP/myveil.toml" >/dev/null
echo "bench-password-1" | target/release/myveil user add bench --role app --password-stdin -c "$TMP/myveil.toml" >/dev/null
target/release/myveil serve -c "$TMP/myveil.toml" 2>"$TMP/myveil.log" &
PID=$!
sleep 1

python3 -c 'import pymysql' 2>/dev/null || python3 -m pip install --quiet pymysql
python3 - "$PORT" "$DB" "$ROWS" "$IN_LIST" "$ROUNDS" "$PID" <<'PY'
import statistics, sys, time, pymysql
port, db, rows, in_list, rounds, pid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
direct = pymysql.connect(host="127.0.0.1", port=3306, user="root", database=db, autocommit=True, max_allowed_packet=64 << 20)
proxy = pymysql.connect(host="127.0.0.1", port=port, user="bench", password="bench-password-1", database=db, autocommit=True, max_allowed_packet=64 << 20)

def hwm():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(("VmHWM", "VmRSS")):
            yield line.split()[1]

def timed(conn, sql):
    cur = conn.cursor()
    t = time.perf_counter()
    cur.execute(sql)
    cur.fetchall()
    return time.perf_counter() - t

def insert(table, base):
    vals = ",".join(f"({base + i}, 'user{base + i}@example.com', '{base + i:03d}-45-6789', 'n')" for i in range(rows))
    return f"INSERT INTO {table} (id, email, ssn, note) VALUES {vals}"

kinds = {
    f"INSERT of {rows} rows (3 sealed, 1 blind index each)": lambda t, r: insert(t, (r + 1) * 1_000_000),
    f"SELECT … WHERE email IN ({in_list} values)": lambda t, r: f"SELECT id, ssn FROM {t} WHERE email IN (" + ",".join(f"'user{1_000_000 + i}@example.com'" for i in range(in_list)) + ")",
    "UPDATE of one 5 MB value": lambda t, r: f"UPDATE {t} SET note = '{'x' * (5 << 20)}' WHERE id = 1000001",
}
print(f"{'statement':<52} {'bytes':>10} {'direct ms':>10} {'myveil ms':>10} {'ratio':>6}  myveil VmHWM/VmRSS kB")
for name, make in kinds.items():
    d, p = [], []
    for r in range(rounds):
        d.append(timed(direct, make("plain_users", r)))
        p.append(timed(proxy, make("users", r)))
    size = len(make("users", 0))
    md, mp = statistics.median(d) * 1e3, statistics.median(p) * 1e3
    print(f"{name:<52} {size:>10} {md:>10.1f} {mp:>10.1f} {mp / md:>6.2f}  {'/'.join(hwm())}")
# Nothing reached the table as plaintext.
cur = direct.cursor()
cur.execute("SELECT COUNT(*) FROM users WHERE email LIKE 'user%' OR ssn LIKE '%-45-%' OR note = 'n'")
assert cur.fetchone()[0] == 0, "plaintext at rest"
cur.execute("SELECT COUNT(*) FROM users")
print(f"rows at rest: {cur.fetchone()[0]}, none readable as plaintext")
PY
