#!/usr/bin/env bash
# The sync `mysql` crate 28.0.4's own tests (#[cfg(test)] modules in the crate source, from
# the crates.io tarball), default features. They read the server from DATABASE_URL (which
# must name a database) and turn on compression with COMPRESS=1.
#
# The first run builds the test binary into $COMPAT_CACHE/target-mysql_crate with -j 2
# (about 2 minutes on two busy cores); later runs only run it.
#
# Two edits to the unpacked tests keep them to what this harness allows on a shared server:
# every test connection's init command `SET GLOBAL sql_mode = 'TRADITIONAL'` becomes
# `SET SESSION ...` (same effect for the test's own connections, other clients of the server
# keep their sql_mode; should_connect, which checks that init ran, reads @@SESSION), and
# the databases the tests create (`A`, `t_select_db`) get names of this suite, from
# MYVEIL_COMPAT_DB_A / MYVEIL_COMPAT_DB_SEL.
# Runs without the unix socket (see DATABASE_URL below), so should_connect_via_socket_*
# fail both directly and through myveil.
# The tests themselves create and drop users (__mats, parsec_test_user, server key users).
set -euo pipefail
port=$1 out=$2
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${COMPAT_CACHE:-/tmp/myveil-compat/cache}
mkdir -p "$cache"
out=$(realpath -m "$out")
ver=28.0.4
src=$cache/mysql-$ver
target=$cache/target-mysql_crate
bins=$cache/mysql-$ver.p2.bins  # .p2: built with the edits below
if [ ! -d "$src" ]; then
  curl -sSfL -o "$cache/mysql-$ver.crate" "https://static.crates.io/crates/mysql/mysql-$ver.crate"
  tar xzf "$cache/mysql-$ver.crate" -C "$cache"
fi
if ! grep -q MYVEIL_COMPAT_DB_A "$src/src/conn/pool/mod.rs"; then
  sed -i "s/SET GLOBAL sql_mode = 'TRADITIONAL'/SET SESSION sql_mode = 'TRADITIONAL'/" "$src/src/lib.rs"
  perl -0pi -e '
    s/(fn multiple_pools_should_work\(\) \{\n)/$1            let a = std::env::var("MYVEIL_COMPAT_DB_A").unwrap_or_else(|_| "A".into());\n/;
    s/\.exec_drop\("([^"]*)\bA\b([^"]*)", \(\)\)/.exec_drop(format!("$1\{a\}$2"), ())/g;
    s/\.db_name\(Some\("A"\)\)/.db_name(Some(a.as_str()))/;
  ' "$src/src/conn/pool/mod.rs"
  perl -0pi -e 's/const DB_NAME: &str = "t_select_db";/let db_name_sel = std::env::var("MYVEIL_COMPAT_DB_SEL").unwrap_or_else(|_| "t_select_db".into());\n            #[allow(non_snake_case)]\n            let DB_NAME: &str = &db_name_sel;/' "$src/src/conn/mod.rs"
  grep -q 'SET SESSION sql_mode' "$src/src/lib.rs" && grep -q 'MYVEIL_COMPAT_DB_SEL' "$src/src/conn/mod.rs" \
    && [ "$(grep -c '{a}' "$src/src/conn/pool/mod.rs")" = 6 ] || { echo "patching the mysql tests failed" >&2; exit 1; }
fi
# The tarball lacks tests/fixtures/; the one test that embeds a file from it needs only
# some RSA public key that is not the server's (and returns early on MariaDB anyway).
if [ ! -s "$src/tests/fixtures/server-public-key.pem" ]; then
  mkdir -p "$src/tests/fixtures"
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 2>/dev/null | openssl pkey -pubout \
    > "$src/tests/fixtures/server-public-key.pem"
fi
if grep -q 'SELECT @@GLOBAL.sql_mode' "$src/src/conn/mod.rs"; then
  sed -i 's/SELECT @@GLOBAL.sql_mode/SELECT @@SESSION.sql_mode/' "$src/src/conn/mod.rs"
fi
if [ ! -s "$bins" ]; then
  # One build at a time (other suites share the two cores).
  (cd "$src" && flock "$cache/cargo.lock" env CARGO_TARGET_DIR="$target" \
     cargo test --no-run -j 2 --message-format=json) \
    | python3 -c 'import json,sys
for l in sys.stdin:
    try: m = json.loads(l)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["target"]["name"] if m["target"]["kind"] != ["lib"] else "lib", m["executable"])' > "$bins.tmp"
  mv "$bins.tmp" "$bins"
fi

[ -z "${COMPAT_BUILD_ONLY:-}" ] || exit 0  # COMPAT_BUILD_ONLY=1: build, run nothing
# The tests of mysql_async and of mysql create and drop the same users (__mats, ...):
# runs of either never overlap.
exec 8>/tmp/myveil-compat-mysql-users.lock
flock 8
db=myveil_compat_mysql_crate_$port
export MYVEIL_COMPAT_DB_A=${db}_a MYVEIL_COMPAT_DB_SEL=${db}_sel
sql() { mariadb -h127.0.0.1 -uroot -e "$1"; }
cleanup() {
  sql "DROP DATABASE IF EXISTS $db; DROP DATABASE IF EXISTS $MYVEIL_COMPAT_DB_A;
       DROP DATABASE IF EXISTS $MYVEIL_COMPAT_DB_SEL" || true
  # should_change_user panics on MariaDB before it drops its user __mats.
  sql "DROP USER IF EXISTS '__mats'@'%'" || true
}
trap cleanup EXIT
cleanup
sql "CREATE DATABASE $db DEFAULT CHARACTER SET utf8mb4"

# prefer_socket=false: by default the client asks for @@socket after connecting over TCP to
# 127.0.0.1 and reconnects through that unix socket. Through myveil, @@socket is the
# backend's socket, so the tests would silently talk to MariaDB itself, not to myveil.
export DATABASE_URL="mysql://root${COMPAT_PASSWORD:+:$COMPAT_PASSWORD}@127.0.0.1:$port/$db?prefer_socket=false"
export COMPRESS=$([ "${COMPAT_COMPRESS:-0}" = 1 ] && echo 1 || echo 0)
: > "$out"
cd "$src"
while read -r name exe; do
  echo "== $name ($exe)"
  python3 "$here/libtest.py" "$out" "$name" "${COMPAT_TEST_TIMEOUT:-900}" "$exe" --test-threads=2
done < "$bins"
