#!/usr/bin/env bash
# Django 5.1's own test suite (from its PyPI sdist) on the MySQL backend (mysqlclient), for a
# representative set of apps, run with tests/runtests.py and two processes.
#
# Django makes test databases from the TEST NAMEs below and clones them (with mysqldump and
# the mysql client, on the same host and port) for each process: all are named
# myveil_compat_django_PORT_*, and every database with that prefix is dropped at the end.
# One result line per test comes from a result class that records each test's outcome (a
# test with a failing subtest is FAIL; an expected failure is PASS; an error in setUpClass is
# one FAIL line named after the class, its tests get no line).
set -euo pipefail
port=$1 out=$2
cache=${COMPAT_CACHE:-/tmp/myveil-compat/cache}
mkdir -p "$cache"
out=$(realpath -m "$out")
ver=5.1.15
apps=${DJANGO_APPS:-basic queries transactions model_fields backends migrations introspection
  schema aggregation expressions lookup select_for_update bulk_create db_functions
  expressions_window expressions_case annotations aggregation_regress timezones
  transaction_hooks multiple_database raw_query inspectdb constraints indexes
  prefetch_related update delete get_or_create datetimes model_inheritance many_to_many
  custom_lookups fixtures queryset_pickle datatypes defer select_related ordering test_utils}
src=$cache/django-$ver
if [ ! -d "$src" ]; then
  (cd "$cache" && python3 -m pip download --quiet --no-deps --no-binary :all: "django==$ver" -d . \
     && tar xzf "django-$ver.tar.gz")
fi
venv=$cache/venv-django-$ver
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import django, MySQLdb, tblib' 2>/dev/null; then
  # mysqlclient builds against the MariaDB client library.
  if ! pkg-config --exists libmariadb 2>/dev/null && ! pkg-config --exists mysqlclient 2>/dev/null; then
    apt-get install -y -qq pkg-config libmariadb-dev python3-dev >/dev/null
  fi
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "$src" "mysqlclient>=1.4.3" tblib Pillow
fi

prefix=myveil_compat_django_$port
sql() { mariadb -h127.0.0.1 -uroot -N -e "$1"; }
cleanup() {
  for db in $(sql "SHOW DATABASES LIKE '${prefix}\\_%'" || true); do
    sql "SET foreign_key_checks = 0; DROP DATABASE IF EXISTS \`$db\`" || true
  done
  [ -z "${work:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
work=
cleanup
work=$(mktemp -d)
# Some test modules (inspectdb) query the server at import, before the test databases exist,
# on the configured NAMEs: give them empty databases.
sql "CREATE DATABASE ${prefix}_default_main; CREATE DATABASE ${prefix}_other_main"
cp -r "$src/tests" "$work/tests"
cat > "$work/tests/myveil_settings.py" <<PY
PREFIX = "$prefix"


def _db(alias):
    return {
        "ENGINE": "django.db.backends.mysql",
        "HOST": "127.0.0.1",
        "PORT": "$port",
        "USER": "root",
        "PASSWORD": "${COMPAT_PASSWORD:-}",
        "NAME": "%s_%s_main" % (PREFIX, alias),
        "OPTIONS": {"charset": "utf8mb4"},
        "TEST": {
            "NAME": "%s_%s" % (PREFIX, alias),
            "CHARSET": "utf8mb4",
            "COLLATION": "utf8mb4_general_ci",
        },
    }

DATABASES = {"default": _db("default"), "other": _db("other")}
SECRET_KEY = "django_tests_secret_key"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = False
TEST_RUNNER = "myveil_runner.Runner"
PY
cat > "$work/tests/myveil_runner.py" <<'PY'
import os
import unittest

from django.test.runner import DiscoverRunner

OUT = os.environ["MYVEIL_DJANGO_OUT"]
_results = {}  # test id -> PASS / FAIL / SKIP, in the order first seen


def _set(test, status):
    tid = test.id()
    if _results.get(tid) == "FAIL":
        return
    _results[tid] = status


class Result(unittest.TextTestResult):
    def addSuccess(self, test):
        super().addSuccess(test)
        _set(test, "PASS")

    def addError(self, test, err):
        super().addError(test, err)
        _set(test, "FAIL")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        _set(test, "FAIL")

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        _set(test, "SKIP")

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        _set(test, "PASS")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        _set(test, "FAIL")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            _set(test, "FAIL")


class Runner(DiscoverRunner):
    def get_resultclass(self):
        return Result

    def run_suite(self, suite, **kwargs):
        try:
            return super().run_suite(suite, **kwargs)
        finally:
            with open(OUT, "w") as f:
                for tid, status in _results.items():
                    f.write(f"{status} {tid}\n")
PY
: > "$out"
cd "$work/tests"
# shellcheck disable=SC2086
MYVEIL_DJANGO_OUT=$out PYTHONPATH=. "$venv/bin/python" runtests.py \
  --settings=myveil_settings --parallel "${DJANGO_PARALLEL:-2}" --noinput -v 2 $apps || true
echo "$(grep -c '^PASS ' "$out" || true) passed, $(grep -c '^FAIL ' "$out" || true) failed, $(grep -c '^SKIP ' "$out" || true) skipped"
