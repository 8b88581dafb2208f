#!/usr/bin/env bash
# SQLAlchemy 2.0's and Alembic's own tests (from their PyPI sdists) on MariaDB through PyMySQL,
# run with pytest and SQLAlchemy's test plugin (--dburi). Only the tests that talk to the
# database (--backend-only, SQLAlchemy's __backend__ marker): the MySQL dialect tests, the
# dialect compliance suite (sqlalchemy.testing.suite), SQL types, queries, transactions and
# reflection; Alembic's MySQL tests and its own suite.
#
# The plugin wants a main database and two schemas (databases, on MySQL) it calls test_schema
# and test_schema_2; a one-line patch of the copies used here (sqlalchemy/testing/config.py)
# takes their names from MYVEIL_SQLA_TEST_SCHEMA(_2), so all three are
# myveil_compat_sqlalchemy_PORT*, created here and dropped at the end.
set -euo pipefail
port=$1 out=$2
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${COMPAT_CACHE:-/tmp/myveil-compat/cache}
mkdir -p "$cache"
out=$(realpath -m "$out")
sa_ver=2.0.44 al_ver=1.16.5
sa_tests=${SQLA_TESTS:-test/dialect/mysql test/dialect/test_suite.py test/sql/test_types.py
  test/sql/test_query.py test/engine/test_transaction.py test/engine/test_reflection.py}
al_tests=${ALEMBIC_TESTS:-tests/test_mysql.py tests/test_suite.py}

patch_config() {  # the schema names from the environment (default: upstream's)
  python3 - "$1/sqlalchemy/testing/config.py" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
old = '''        self.test_schema = "test_schema"
        self.test_schema_2 = "test_schema_2"
'''
new = '''        import os
        self.test_schema = os.environ.get("MYVEIL_SQLA_TEST_SCHEMA", "test_schema")
        self.test_schema_2 = os.environ.get("MYVEIL_SQLA_TEST_SCHEMA_2", "test_schema_2")
'''
if new not in s:
    assert old in s, "sqlalchemy/testing/config.py changed"
    open(p, "w").write(s.replace(old, new))
PY
}

sa=$cache/sqlalchemy-$sa_ver al=$cache/alembic-$al_ver
if [ ! -d "$sa" ]; then
  (cd "$cache" && python3 -m pip download --quiet --no-deps --no-binary :all: "sqlalchemy==$sa_ver" -d . \
     && tar xzf "sqlalchemy-$sa_ver.tar.gz")
fi
if [ ! -d "$al" ]; then
  (cd "$cache" && python3 -m pip download --quiet --no-deps --no-binary :all: "alembic==$al_ver" -d . \
     && tar xzf "alembic-$al_ver.tar.gz")
fi
patch_config "$sa/lib"
venv=$cache/venv-sqlalchemy-$sa_ver
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sqlalchemy, alembic, pymysql, pytest' 2>/dev/null; then
  python3 -m venv "$venv"
  # Pure Python (no C extensions to build); Alembic brings Mako.
  DISABLE_SQLALCHEMY_CEXT=1 "$venv/bin/pip" install --quiet "$sa" "$al" pymysql pytest
fi
patch_config "$("$venv/bin/python" -c 'import os, sqlalchemy; print(os.path.dirname(os.path.dirname(sqlalchemy.__file__)))')"

db=myveil_compat_sqlalchemy_$port
export MYVEIL_SQLA_TEST_SCHEMA=${db}_ts MYVEIL_SQLA_TEST_SCHEMA_2=${db}_ts2
dbs="$db $MYVEIL_SQLA_TEST_SCHEMA $MYVEIL_SQLA_TEST_SCHEMA_2"
sql() { mariadb -h127.0.0.1 -uroot -e "$1"; }
cleanup() {
  # Tables left behind by a failed test can reference each other across these databases.
  for d in $dbs; do sql "SET foreign_key_checks = 0; DROP DATABASE IF EXISTS $d" || true; done
  [ -z "${work:-}" ] || rm -rf "$work"
}
work=
trap cleanup EXIT
cleanup
for d in $dbs; do sql "CREATE DATABASE $d DEFAULT CHARACTER SET utf8mb4"; done
work=$(mktemp -d)
uri="mysql+pymysql://root${COMPAT_PASSWORD:+:$COMPAT_PASSWORD}@127.0.0.1:$port/$db?charset=utf8mb4"
pytest_run() {  # DIR REPORT TESTS...
  local dir=$1 report=$2
  shift 2
  # shellcheck disable=SC2068
  (cd "$dir" && "$venv/bin/python" -m pytest -p no:cacheprovider --maxfail=1000000 --tb=short \
     --dburi "$uri" --backend-only --junitxml="$report" $@) || true
}
cp -r "$sa" "$work/sqlalchemy"
cp -r "$al" "$work/alembic"
# shellcheck disable=SC2086
pytest_run "$work/sqlalchemy" "$work/sa.xml" $sa_tests
# shellcheck disable=SC2086
pytest_run "$work/alembic" "$work/al.xml" $al_tests
# The reports stay beside OUT (OUT.sqlalchemy.xml, OUT.alembic.xml) for the failures' details.
cp "$work/sa.xml" "$out.sqlalchemy.xml" 2>/dev/null || true
cp "$work/al.xml" "$out.alembic.xml" 2>/dev/null || true
python3 "$here/junit.py" "$work/sa.xml" "$work/sa.txt" || true
python3 "$here/junit.py" "$work/al.xml" "$work/al.txt" || true
# Test class names carry the backend and its version (..._mariadb+pymysql_10_11_19): drop them.
cat "$work/sa.txt" "$work/al.txt" 2>/dev/null \
  | sed -E 's/_(mysql|mariadb)\+pymysql(_[0-9]+)*::/::/' > "$out"
echo "$(grep -c '^PASS ' "$out" || true) passed, $(grep -c '^FAIL ' "$out" || true) failed, $(grep -c '^SKIP ' "$out" || true) skipped"
