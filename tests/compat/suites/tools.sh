#!/usr/bin/env bash
# Scenarios with MariaDB's own command-line tools: mariadb (CLI), mariadb-dump,
# mariadb-import, mariadb-admin, mariadb-slap, mariadb-check/-show. Each scenario is a test:
# PASS when it exits 0 and its output matches what it must print (the same directly and
# through myveil: outputs are compared by run.sh's pass sets).
set -uo pipefail
port=$1 out=$2
z=$([ "${COMPAT_COMPRESS:-0}" = 1 ] && echo --compress || true)
db=myveil_compat_tools_$port
db2=myveil_compat_tools_${port}_copy
work=$(mktemp -d)
conn=(-h127.0.0.1 -P"$port" -uroot ${COMPAT_PASSWORD:+-p"$COMPAT_PASSWORD"} $z)
sql() { mariadb "${conn[@]}" "$@"; }
root() { mariadb -h127.0.0.1 -uroot "$@"; }
cleanup() { root -e "DROP DATABASE IF EXISTS $db; DROP DATABASE IF EXISTS $db2" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cleanup; work=$(mktemp -d)
: > "$out"
check() { # name, then a command that must succeed
  local name=$1; shift
  if "$@" >"$work/$name.out" 2>&1; then echo "PASS tools::$name" >>"$out"; else
    echo "FAIL tools::$name" >>"$out"; echo "--- $name"; tail -5 "$work/$name.out"; fi
}
setup() {
  sql -e "CREATE DATABASE $db CHARACTER SET utf8mb4" &&
  sql "$db" <<'SQL'
CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(40), note TEXT, born DATE, v DECIMAL(10,2), b BLOB) ENGINE=InnoDB;
INSERT INTO t (name, note, born, v, b) VALUES ('ann', 'first\nline', '1990-01-02', 1.5, X'00FF10'), ('bo''b', NULL, NULL, -2, NULL), ('čaj', REPEAT('x', 3000), '2000-02-29', 0, X'');
CREATE VIEW tv AS SELECT id, name FROM t WHERE id > 1;
CREATE PROCEDURE p(IN x INT) SELECT x * 2 AS doubled;
CREATE FUNCTION f(x INT) RETURNS INT DETERMINISTIC RETURN x + 1;
CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET NEW.name = LOWER(NEW.name);
SQL
}
cli_batch() { [ "$(sql -N "$db" -e 'SELECT COUNT(*), SUM(v) FROM t')" = "$(printf '3\t-0.50')" ]; }
cli_multi() { sql -N "$db" -e "SELECT 1; CALL p(21); SELECT f(1); SELECT name FROM tv ORDER BY id" | tr '\n' ' ' | grep -q '^1 42 2 bo.b čaj $'; }
cli_xml() { sql --xml "$db" -e 'SELECT id, name FROM t ORDER BY id' | grep -q '<field name="name">ann</field>'; }
cli_warnings() { sql --show-warnings "$db" -e "SELECT CAST('12x' AS INT)" 2>&1 | grep -q 'Truncated incorrect'; }
dump_restore() {
  mariadb-dump "${conn[@]}" --routines --triggers --events "$db" >"$work/dump.sql" &&
  sql -e "CREATE DATABASE $db2 CHARACTER SET utf8mb4" && sql "$db2" <"$work/dump.sql" &&
  [ "$(sql -N "$db2" -e 'SELECT COUNT(*), SUM(LENGTH(note)), HEX(GROUP_CONCAT(b ORDER BY id)) FROM t')" = "$(sql -N "$db" -e 'SELECT COUNT(*), SUM(LENGTH(note)), HEX(GROUP_CONCAT(b ORDER BY id)) FROM t')" ] &&
  [ "$(sql -N "$db2" -e 'SELECT f(41)')" = 42 ] &&
  sql -e "DROP DATABASE $db2"
}
# Outputs go to files before they are searched: `grep -q` would stop reading early.
dump_single_transaction() {
  mariadb-dump "${conn[@]}" --single-transaction --master-data=0 --hex-blob --skip-extended-insert "$db" t >"$work/st.sql" &&
  grep -q "INSERT INTO \`t\` VALUES (1,'ann'" "$work/st.sql"
}
dump_formats() {
  mkdir -p "$work/tab" && chmod 777 "$work/tab" &&
  mariadb-dump "${conn[@]}" --no-data --compact "$db" t >"$work/nd.sql" && grep -q 'CREATE TABLE `t`' "$work/nd.sql" &&
  mariadb-dump "${conn[@]}" --xml "$db" t >"$work/x.xml" && grep -q '<row>' "$work/x.xml"
}
import_csv() {
  printf '10,zed,hello,2001-01-01,3.25,\n11,yan,world,2002-02-02,4.75,\n' >"$work/t.csv" &&
  mariadb-import "${conn[@]}" --local --fields-terminated-by=, --columns=id,name,note,born,v "$db" "$work/t.csv" &&
  [ "$(sql -N "$db" -e 'SELECT COUNT(*) FROM t WHERE id IN (10, 11)')" = 2 ]
}
admin_ping() { mariadb-admin "${conn[@]}" ping | grep -q 'alive'; }
admin_status() { mariadb-admin "${conn[@]}" status | grep -q 'Uptime'; }
admin_variables() { mariadb-admin "${conn[@]}" variables | grep -q 'max_allowed_packet'; }
admin_processlist() { mariadb-admin "${conn[@]}" processlist | grep -qi 'processlist'; }
admin_create_drop() { mariadb-admin "${conn[@]}" create "$db2" && mariadb-admin "${conn[@]}" -f drop "$db2" >/dev/null; }
slap() { mariadb-slap "${conn[@]}" --create-schema="$db" --query="SELECT COUNT(*) FROM t" --concurrency=4 --iterations=3 --number-of-queries=200 | grep -q 'Average number of seconds'; }
slap_autogen() { mariadb-slap "${conn[@]}" --create-schema="${db}_slap" --auto-generate-sql --concurrency=2 --iterations=1 --number-of-queries=100 | grep -q 'Average number of seconds'; root -e "DROP DATABASE IF EXISTS ${db}_slap"; }
check_tables() { mariadb-check "${conn[@]}" "$db" | grep -q 'OK'; }
show_tables() { mariadb-show "${conn[@]}" "$db" | grep -q '| t '; }
ctrl_c() {
  (exec mariadb "${conn[@]}" -e 'SELECT SLEEP(20)' >"$work/cc.out" 2>&1) & local pid=$!
  sleep 1; kill -INT $pid; local i=0
  while kill -0 $pid 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
  ! kill -0 $pid 2>/dev/null && grep -q '1317\|query killed' "$work/cc.out"
}
if check setup setup; then
  for s in cli_batch cli_multi cli_xml cli_warnings dump_restore dump_single_transaction dump_formats import_csv \
           admin_ping admin_status admin_variables admin_processlist admin_create_drop slap slap_autogen \
           check_tables show_tables ctrl_c; do
    check "$s" "$s"
  done
fi
