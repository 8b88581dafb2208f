#!/usr/bin/env bash
# node-mysql2 1.0.0-rc.9's own tests (from its npm tarball: the newest release whose tarball
# still ships test/), run one file at a time as its runner (urun) does: a test file passes
# when `node FILE` exits 0. Each file gets a timeout so a hang is a FAIL, not a stuck suite.
# Settings come from test/common.js's environment: MYSQL_HOST, MYSQL_PORT, MYSQL_USER,
# MYSQL_PASSWORD, MYSQL_DATABASE, and MYSQL_USE_COMPRESSION (any non-empty value turns the
# client's `compress` on, so it is set only when COMPAT_COMPRESS=1).
# Each file's output is kept in OUT.d/ (named after the test id, / as _).
# The tarball lacks test/fixtures/data.csv (test-load-infile.js): a stand-in with the four
# rows the test asserts is written.
# Three files SET GLOBAL max_prepared_stmt_count (to 10 or 300) and never set it back, which
# on a shared server breaks other suites running at the time and makes them fail whenever
# other clients hold prepared statements: they are SKIP unless COMPAT_MYSQL2_GLOBALS=1, and
# then the value is restored after each of them.
set -euo pipefail
port=$1 out=$2
cache=${COMPAT_CACHE:-/tmp/myveil-compat/cache}
mkdir -p "$cache"
ver=1.0.0-rc.9
src=$cache/mysql2-$ver
if [ ! -f "$src/.installed-2" ]; then
  rm -rf "$src" "$cache/mysql2-$ver.tmp" && mkdir -p "$cache/mysql2-$ver.tmp"
  (
    cd "$cache/mysql2-$ver.tmp"
    tgz=$(npm pack --silent "mysql2@$ver")
    tar xzf "$tgz" --warning=no-unknown-keyword
    cd package
    # The tests need three of the dev dependencies (assert-diff, portfinder, utest); not
    # eslint & co.
    node -e '
      const fs = require("fs"); const p = JSON.parse(fs.readFileSync("package.json"));
      p.devDependencies = {"assert-diff": p.devDependencies["assert-diff"],
                           "portfinder": p.devDependencies["portfinder"],
                           "utest": p.devDependencies["utest"]};
      delete p.scripts; fs.writeFileSync("package.json", JSON.stringify(p, null, 2));'
    npm install --quiet --no-audit --no-fund --no-package-lock --ignore-scripts >/dev/null
  )
  mv "$cache/mysql2-$ver.tmp/package" "$src"
  rm -rf "$cache/mysql2-$ver.tmp"
  touch "$src/.installed-2"
fi

db=myveil_compat_mysql2_$port
sql() { mariadb -h127.0.0.1 -uroot -e "$1"; }
# test-change-user.js GRANTs (and so creates) these two accounts; drop them afterwards only
# when this run created them.
users_before=$(mariadb -h127.0.0.1 -uroot -N -e \
  "SELECT COUNT(*) FROM mysql.user WHERE user IN ('changeuser1','changeuser2')")
stmt_max=$(mariadb -h127.0.0.1 -uroot -N -e "SELECT @@GLOBAL.max_prepared_stmt_count")
cleanup() {
  sql "DROP DATABASE IF EXISTS $db" || true
  if [ "${COMPAT_MYSQL2_GLOBALS:-0}" = 1 ]; then
    sql "SET GLOBAL max_prepared_stmt_count=$stmt_max" || true
  fi
  if [ "$users_before" = 0 ]; then
    sql "DROP USER IF EXISTS 'changeuser1'@'localhost', 'changeuser2'@'localhost'" || true
  fi
}
trap cleanup EXIT
globals=(integration/connection/test-execute-and-unprepare.js
         integration/connection/test-prepare-and-close.js
         integration/connection/test-execute-null-bitmap.js)
sql "DROP DATABASE IF EXISTS $db; CREATE DATABASE $db DEFAULT CHARACTER SET utf8mb4"

export MYSQL_HOST=127.0.0.1 MYSQL_PORT=$port MYSQL_USER=root MYSQL_PASSWORD=${COMPAT_PASSWORD:-} MYSQL_DATABASE=$db
# test/common.js reads MYSQL_PASSWORD only when CI is set (and CI is read nowhere else).
export CI=1
unset MYSQL_USE_COMPRESSION FILTER DEBUG BENCHMARK_MARIA BENCHMARK_MYSQL1
if [ "${COMPAT_COMPRESS:-0}" = 1 ]; then export MYSQL_USE_COMPRESSION=1; fi

logs=$out.d
rm -rf "$logs" && mkdir -p "$logs"
: > "$out"
cd "$src"
mkdir -p test/fixtures
printf '1,Hello World\n2,second row\n3,third row\n4,fourth row\n' > test/fixtures/data.csv
while IFS= read -r f; do
  id=${f#test/}
  log=$logs/${id//\//_}.log
  global=0
  for g in "${globals[@]}"; do [ "$g" = "$id" ] && global=1; done
  if [ $global = 1 ] && [ "${COMPAT_MYSQL2_GLOBALS:-0}" != 1 ]; then
    echo "SKIP $id" >> "$out"
    continue
  fi
  rc=0
  timeout -k 5 60 node "$f" >"$log" 2>&1 || rc=$?
  if [ $global = 1 ]; then sql "SET GLOBAL max_prepared_stmt_count=$stmt_max"; fi
  if [ $rc = 0 ]; then
    echo "PASS $id" >> "$out"
  else
    echo "FAIL $id" >> "$out"
    echo "=== FAIL $id (exit $rc)"
    grep -v -e DeprecationWarning -e 'trace-deprecation' "$log" | tail -25
  fi
done < <(find test -name 'test-*.js' | LC_ALL=C sort)
echo "$(grep -c '^PASS ' "$out" || true) passed, $(grep -c '^FAIL ' "$out" || true) failed, $(grep -c '^SKIP ' "$out" || true) skipped"
