#!/usr/bin/env bash
# mysqlclient 2.3.1's own tests (the C extension MySQLdb, from its PyPI sdist), run with
# pytest. The extension is built against libmariadb and installed, with pytest and
# SQLAlchemy (test_sqlalchemy.py is skipped without it), into a venv under $COMPAT_CACHE.
# The tests read their connection settings from the option file that $TESTDB names (group
# [MySQLdb-tests]); the sdist ships none, so one is written here, with `compress = 1` in it when
# COMPAT_COMPRESS=1 (libmariadb reads it from the file; a bare `compress` line is ignored).
set -euo pipefail
port=$1 out=$2
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${COMPAT_CACHE:-/tmp/myveil-compat/cache}
mkdir -p "$cache"
ver=2.3.1
src=$cache/mysqlclient-$ver
venv=$cache/mysqlclient-$ver-venv
if ! pkg-config --exists libmariadb 2>/dev/null && ! pkg-config --exists mysqlclient 2>/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get install -y -q pkg-config libmariadb-dev >/dev/null 2>&1 ||
      { apt-get update -q >/dev/null && apt-get install -y -q pkg-config libmariadb-dev >/dev/null; })
  fi
fi
if [ ! -d "$src" ]; then
  (cd "$cache" && python3 -m pip download --quiet --no-deps --no-binary :all: "mysqlclient==$ver" -d . \
     && tar xzf "mysqlclient-$ver.tar.gz")
fi
if [ ! -f "$venv/.installed" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --no-cache-dir "$src" pytest "sqlalchemy>=2.0"
  touch "$venv/.installed"
fi

db=myveil_compat_mysqlclient_$port
sql() { mariadb -h127.0.0.1 -uroot -e "$1"; }
cleanup() { sql "DROP DATABASE IF EXISTS $db" || true; }
trap cleanup EXIT
cleanup
sql "CREATE DATABASE $db DEFAULT CHARACTER SET utf8mb4"
work=$(mktemp -d)
cp -r "$src/tests" "$work/"
{
  echo "[MySQLdb-tests]"
  echo "host = 127.0.0.1"
  echo "port = $port"
  echo "user = root"
  echo "password = ${COMPAT_PASSWORD:-}"
  echo "database = $db"
  echo "default-character-set = utf8mb4"
  if [ "${COMPAT_COMPRESS:-0}" = 1 ]; then echo "compress = 1"; fi
} > "$work/tests/compat.cnf"
export TESTDB=compat.cnf
cd "$work/tests"
"$venv/bin/python" -m pytest -q -p no:cacheprovider --tb=short -rfE --junitxml="$work/report.xml" . || true
python3 "$here/junit.py" "$work/report.xml" "$out"
rm -rf "$work"
