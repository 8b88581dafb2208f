#!/usr/bin/env bash
# Backup benchmark: `myveil backup create` / `myveil backup restore` against
# `mariadb-dump > file` / `mariadb < file` on one sysbench table of $ROWS rows (1 million by
# default). Reports wall seconds, MB/s (file bytes / seconds) and peak RSS from
# /usr/bin/time -v, checks that both restores match the source (CHECKSUM TABLE), and writes
# the table as markdown to $OUT.
#
#   cargo build --release && bash benches/backup.sh
#   ROWS=100000 bash benches/backup.sh        # smoke run
#   KEEP=1 bash benches/backup.sh             # keep the prepared source database
#
# Needs MariaDB on 127.0.0.1:3306 (root, empty password), sysbench, mariadb-dump and GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-1000000}
DB=${DB:-myveil_bench_backup}
BIN=${BIN:-target/release/myveil}
OUT=${OUT:-target/backup-bench.md}
MYSQL=(mariadb -h127.0.0.1 -P3306 -uroot)

[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
WORK=$(mktemp -d)
cleanup() {
  "${MYSQL[@]}" -e "DROP DATABASE IF EXISTS ${DB}_dump_r; DROP DATABASE IF EXISTS ${DB}_myveil_r" || true
  if [ "${KEEP:-0}" != 1 ]; then "${MYSQL[@]}" -e "DROP DATABASE IF EXISTS ${DB}" || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

have=$("${MYSQL[@]}" -N -e "SELECT COUNT(*) FROM ${DB}.sbtest1" 2>/dev/null || echo 0)
if [ "$have" != "$ROWS" ]; then
  echo "preparing ${DB}.sbtest1 with $ROWS rows (sysbench)" >&2
  "${MYSQL[@]}" -e "DROP DATABASE IF EXISTS ${DB}; CREATE DATABASE ${DB}"
  sysbench oltp_read_only --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port=3306 \
    --mysql-user=root --mysql-password= --mysql-db="$DB" --tables=1 --table-size="$ROWS" \
    prepare >/dev/null
fi

cat >"$WORK/myveil.toml" <<EOF
[backend]
address = "127.0.0.1:3306"
[backend.accounts.main]
user = "root"
[roles.app]
backend_account = "main"
[users]
file = "users.toml"
[backup]
databases = ["$DB"]
dir = "backups"
EOF
"$BIN" -c "$WORK/myveil.toml" keygen >/dev/null

# run NAME OUTPUT_FILE COMMAND... : times the command, appends "name seconds rss_kib bytes".
# OUTPUT_FILE may be a glob; it is expanded after the command ran.
RESULTS=()
run() {
  local name=$1 file=$2; shift 2
  /usr/bin/time -v -o "$WORK/time.txt" "$@" >/dev/null
  local wall rss secs bytes
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$WORK/time.txt")
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$WORK/time.txt")
  secs=$(awk -F: '{ if (NF == 3) print $1 * 3600 + $2 * 60 + $3; else print $1 * 60 + $2 }' <<<"$wall")
  # shellcheck disable=SC2086 # the glob is meant to expand here
  bytes=$(stat -c %s $file)
  RESULTS+=("$name $secs $rss $bytes")
  echo "$name: ${secs}s, peak RSS $((rss / 1024)) MiB, file $((bytes / 1048576)) MiB" >&2
}

run "mariadb-dump" "$WORK/dump.sql" \
  mariadb-dump -h127.0.0.1 -P3306 -uroot --single-transaction --routines --triggers \
  --result-file="$WORK/dump.sql" "$DB"
run "myveil-backup-create" "$WORK/backups/*.mvbk" "$BIN" -c "$WORK/myveil.toml" backup create
FILE=$(ls "$WORK"/backups/*.mvbk)
"${MYSQL[@]}" -e "CREATE DATABASE ${DB}_dump_r"
run "mariadb-restore" "$WORK/dump.sql" sh -c "mariadb -h127.0.0.1 -P3306 -uroot ${DB}_dump_r < '$WORK/dump.sql'"
run "myveil-backup-restore" "$FILE" "$BIN" -c "$WORK/myveil.toml" backup restore "$FILE" \
  --private-key "$WORK/keys/backup_rsa_private.pem" --into "${DB}_myveil_r"

sum() { "${MYSQL[@]}" -N -e "CHECKSUM TABLE $1.sbtest1" | awk '{print $2}'; }
src=$(sum "$DB"); d=$(sum "${DB}_dump_r"); m=$(sum "${DB}_myveil_r")
[ "$src" = "$d" ] && [ "$src" = "$m" ] || { echo "checksum mismatch: $src $d $m" >&2; exit 1; }
echo "restored tables match the source (CHECKSUM TABLE $src)" >&2

{
  echo "| step | seconds | MB/s (file) | peak RSS MiB | file MiB |"
  echo "|---|---|---|---|---|"
  for r in "${RESULTS[@]}"; do
    read -r name secs rss bytes <<<"$r"
    awk -v n="$name" -v s="$secs" -v r="$rss" -v b="$bytes" \
      'BEGIN { printf "| %s | %.2f | %.1f | %.1f | %.1f |\n", n, s, b / 1e6 / s, r / 1024, b / 1048576 }'
  done
  read -r _ dump_s _ _ <<<"${RESULTS[0]}"; read -r _ create_s _ _ <<<"${RESULTS[1]}"
  read -r _ load_s _ _ <<<"${RESULTS[2]}"; read -r _ restore_s _ _ <<<"${RESULTS[3]}"
  awk -v a="$create_s" -v b="$dump_s" -v c="$restore_s" -v d="$load_s" \
    'BEGIN { printf "\ncreate / mariadb-dump = %.2f×, restore / mariadb < file = %.2f×\n", a / b, c / d }'
} | tee "$OUT"
