#!/usr/bin/env bash
# mysql_async 0.37.1's own tests (the #[cfg(test)] modules in the crate source plus
# tests/generic.rs and tests/exports.rs, from the crates.io tarball), default features.
# They read the server from DATABASE_URL and turn on compression with COMPRESS=1.
#
# The first run builds the test binaries into $COMPAT_CACHE/target-mysql_async with -j 2
# (about 3 minutes on two busy cores); later runs only run them.
# The tests themselves create and drop users (test_user, __mats, parsec_test_user) and
# briefly set GLOBAL wait_timeout (restored by the test).
set -euo pipefail
port=$1 out=$2
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${COMPAT_CACHE:-/tmp/myveil-compat/cache}
mkdir -p "$cache"
out=$(realpath -m "$out")
ver=0.37.1
src=$cache/mysql_async-$ver
target=$cache/target-mysql_async
bins=$cache/mysql_async-$ver.bins
if [ ! -d "$src" ]; then
  curl -sSfL -o "$cache/mysql_async-$ver.crate" "https://static.crates.io/crates/mysql_async/mysql_async-$ver.crate"
  tar xzf "$cache/mysql_async-$ver.crate" -C "$cache"
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
db=myveil_compat_mysql_async_$port
sql() { mariadb -h127.0.0.1 -uroot -e "$1"; }
# should_change_user panics on MariaDB before it drops its user __mats: drop it here.
cleanup() { sql "DROP DATABASE IF EXISTS $db; DROP USER IF EXISTS '__mats'@'%'" || true; }
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
