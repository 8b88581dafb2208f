#!/usr/bin/env bash
# PyMySQL 0.10.1's own tests (from its PyPI sdist), run with pytest.
set -euo pipefail
port=$1 out=$2
pw=${COMPAT_PASSWORD:-}
if [ "${COMPAT_COMPRESS:-0}" = 1 ]; then
  echo "NA PyMySQL has no protocol compression" > "$out"
  exit 0
fi
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${COMPAT_CACHE:-/tmp/myveil-compat/cache}
mkdir -p "$cache"
ver=0.10.1
src=$cache/PyMySQL-$ver
if [ ! -d "$src" ]; then
  (cd "$cache" && python3 -m pip download --quiet --no-deps --no-binary :all: "pymysql==$ver" -d . \
     && tar xzf "PyMySQL-$ver.tar.gz")
fi
python3 -c 'import pytest' 2>/dev/null || python3 -m pip install --quiet pytest
db1=myveil_compat_pymysql_1_$port db2=myveil_compat_pymysql_2_$port
sql() { mariadb -h127.0.0.1 -uroot -e "$1"; }
cleanup() { sql "DROP DATABASE IF EXISTS $db1; DROP DATABASE IF EXISTS $db2" || true; }
trap cleanup EXIT
cleanup
sql "CREATE DATABASE $db1 DEFAULT CHARACTER SET utf8mb4; CREATE DATABASE $db2 DEFAULT CHARACTER SET utf8mb4"
work=$(mktemp -d)
cp -r "$src/pymysql" "$work/"
cat > "$work/pymysql/tests/databases.json" <<JSON
[{"host": "127.0.0.1", "port": $port, "user": "root", "passwd": "$pw", "database": "$db1",
  "use_unicode": true, "local_infile": true},
 {"host": "127.0.0.1", "port": $port, "user": "root", "passwd": "$pw", "database": "$db2"}]
JSON
cd "$work"
python3 -m pytest -q -p no:cacheprovider --junitxml="$work/report.xml" pymysql/tests >/dev/null 2>&1 || true
python3 "$here/junit.py" "$work/report.xml" "$out"
rm -rf "$work"
