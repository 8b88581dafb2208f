#!/usr/bin/env bash
# MySQL Connector/Python 26.10.0's own tests (unittests.py from its PyPI sdist) against an
# external server, pure-Python implementation only (the C extension needs MySQL's
# libmysqlclient, not MariaDB's). Sync and asyncio tests both run. Prints unittest's verbose
# output, so the log shows each failure's traceback. COMPAT_CPY_ARGS adds unittests.py options,
# e.g. "-T tests.test_bugs.Bug809033.test_lost_connection" for one test or "-t bugs" for a module.
# COMPAT_TEST_TIMEOUT: seconds per test (default 30; the slowest passing test takes 15).
set -euo pipefail
port=$1 out=$2
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${COMPAT_CACHE:-/tmp/myveil-compat/cache}
mkdir -p "$cache"
ver=26.10.0
src=$cache/mysql_connector_python-$ver
if [ ! -d "$src" ]; then
  (cd "$cache" && python3 -m pip download --quiet --no-deps --no-binary :all: \
     "mysql-connector-python==$ver" -d . && tar xzf "mysql_connector_python-$ver.tar.gz")
fi
# The tests' databases: myconnpy (the main one) and the few that single tests create.
db=myveil_compat_connector_python_$port
dbs=("$db" "${db}_cli_data" "${db}_cpy_data" "${db}_ex_data" "${db}_mygroup_data"
     "${db}_colors" "${db}_abc-abc|\$%")
sql() { mariadb -h127.0.0.1 -uroot -e "$1"; }
work=$(mktemp -d)
cleanup() {
  for d in "${dbs[@]}"; do sql "DROP DATABASE IF EXISTS \`$d\`" || true; done
  rm -rf "$work"
}
trap cleanup EXIT
for d in "${dbs[@]}"; do sql "DROP DATABASE IF EXISTS \`$d\`"; done
sql "CREATE DATABASE $db DEFAULT CHARACTER SET utf8mb4"

cp -r "$src/unittests.py" "$src/tests" "$src/lib" "$src/cpydist" "$work/"
cd "$work"
# Rename the databases (not the tables or users named myconnpy_*/myconnpy).
DB=$db perl -pi -e '
  next if /SHA2\(|data = \(1, "myconnpy"\)|\x27myconnpy\x27@|\["user"\] = "myconnpy"/;
  s/\bmyconnpy\b(?!_)/$ENV{DB}/g;
  s/"(cli_data|cpy_data|ex_data|mygroup_data|colors)"/"$ENV{DB}_$1"/g;
  s/ (database|databases) if exists (cli_data|cpy_data|ex_data|mygroup_data)"/ $1 if exists $ENV{DB}_$2"/gi;
  s/create database (cli_data|cpy_data|ex_data|mygroup_data)"/create database $ENV{DB}_$1"/gi;
  s/database = "abc-abc/database = "$ENV{DB}_abc-abc/;
' unittests.py $(grep -rlE 'myconnpy|_data"|"colors"|abc-abc' tests)
DB=$db perl -pi -e 's/^database=(cli_data|cpy_data|mygroup_data)$/database=$ENV{DB}_$1/' \
  tests/data/qa/option/*.cnf
if [ "${COMPAT_COMPRESS:-0}" = 1 ]; then
  sed -i 's/"connection_timeout": 60,/"connection_timeout": 60, "compress": True,/' unittests.py
fi
# unittests.py drops and re-creates the main database itself, then runs every test module.
python3 -u "$here/connector_python_runner.py" "$out" "${COMPAT_TEST_TIMEOUT:-30}" \
  --use-external-server --skip-install --host 127.0.0.1 --port "$port" \
  --user root --password "${COMPAT_PASSWORD:-}" --verbosity 2 ${COMPAT_CPY_ARGS:-} 2>&1 || true
[ -f "$out" ] || : > "$out"
echo "results: $(grep -c '^PASS ' "$out" || true) passed, $(grep -c '^FAIL ' "$out" || true) failed, $(grep -c '^SKIP ' "$out" || true) skipped"
