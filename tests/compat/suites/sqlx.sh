#!/usr/bin/env bash
# sqlx 0.8.6's MySQL tests (tests/mysql/*.rs from the crates.io tarball: the test targets
# mysql, mysql-types, mysql-describe, mysql-derives, mysql-macros, mysql-error,
# mysql-test-attr, mysql-migrate, mysql-rustsec), runtime-tokio, no TLS. sqlx has no
# protocol compression, so the compressed variant is NA.
#
# The tarball lacks sqlx's unpublished helper crate `sqlx-test`; tests/compat/sqlx_test is
# a stand-in with the same interface, copied into the unpacked crate. The tarball's
# rust-toolchain.toml (it pins 1.78) is removed so the installed toolchain builds it.
# The query! macros check their SQL against a database at compile time: the build uses
# myveil_compat_sqlx_build (tables of tests/mysql/setup.sql), dropped after the build.
# The first run builds into $COMPAT_CACHE/target-sqlx with -j 2 (about 3 minutes on two
# busy cores); later runs only run the binaries.
#
# At run time the tests use myveil_compat_sqlx_PORT (setup.sql's tables), the user
# 'no_password'@'%' that setup.sql creates (made here when missing, dropped again if made
# here), and #[sqlx::test] creates a database `_sqlx_test_<hash of the test path>` per
# test, listed in myveil_compat_sqlx_PORT._sqlx_test_databases; those listed ones are
# dropped at the end. Their names do not depend on the port, so runs of this suite take a
# lock and never overlap.
set -euo pipefail
port=$1 out=$2
if [ "${COMPAT_COMPRESS:-0}" = 1 ]; then
  echo "NA sqlx 0.8 has no protocol compression" > "$out"
  exit 0
fi
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${COMPAT_CACHE:-/tmp/myveil-compat/cache}
mkdir -p "$cache"
out=$(realpath -m "$out")
ver=0.8.6
src=$cache/sqlx-$ver
target=$cache/target-sqlx
bins=$cache/sqlx-$ver.bins
features=any,mysql,macros,migrate,json,bigdecimal,rust_decimal,time,chrono,uuid,runtime-tokio
tests=(mysql mysql-types mysql-describe mysql-derives mysql-macros mysql-error mysql-test-attr
       mysql-migrate mysql-rustsec)
sql() { mariadb -h127.0.0.1 -uroot "$@"; }
schema() { sed '/^-- Create a user/,$d' "$src/tests/mysql/setup.sql"; }

if [ ! -d "$src" ]; then
  curl -sSfL -o "$cache/sqlx-$ver.crate" "https://static.crates.io/crates/sqlx/sqlx-$ver.crate"
  tar xzf "$cache/sqlx-$ver.crate" -C "$cache"
fi
if [ ! -d "$src/sqlx-test" ]; then
  rm -f "$src/rust-toolchain.toml"
  mkdir -p "$src/sqlx-test"
  cp -r "$here/sqlx_test/src" "$src/sqlx-test/"
  cp "$here/sqlx_test/Cargo.toml.in" "$src/sqlx-test/Cargo.toml"
  printf '\n[dev-dependencies.sqlx-test]\npath = "sqlx-test"\n\n[workspace]\n' >> "$src/Cargo.toml"
fi
if [ ! -s "$bins" ]; then
  bdb=myveil_compat_sqlx_build
  args=()
  for t in "${tests[@]}"; do args+=(--test "$t"); done
  # One build at a time (other suites share the two cores).
  exec 9>"$cache/cargo.lock"
  flock 9
  sql -e "DROP DATABASE IF EXISTS $bdb; CREATE DATABASE $bdb DEFAULT CHARACTER SET utf8mb4"
  schema | sql "$bdb"
  set +e
  (cd "$src" && DATABASE_URL="mysql://root@127.0.0.1:3306/$bdb" CARGO_TARGET_DIR="$target" \
     cargo test --no-run -j 2 --no-default-features --features "$features" "${args[@]}" \
       --message-format=json) \
    | python3 -c 'import json,sys
for l in sys.stdin:
    try: m = json.loads(l)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["target"]["name"], m["executable"])
    elif m.get("reason") == "compiler-message" and m["message"].get("level") == "error":
        sys.stderr.write(m["message"].get("rendered") or "")' > "$bins.tmp"
  rc=${PIPESTATUS[0]}
  set -e
  sql -e "DROP DATABASE IF EXISTS $bdb"
  flock -u 9
  [ "$rc" = 0 ] || { echo "sqlx build failed" >&2; exit 1; }
  mv "$bins.tmp" "$bins"
fi

[ -z "${COMPAT_BUILD_ONLY:-}" ] || exit 0  # COMPAT_BUILD_ONLY=1: build, run nothing
# Runs of this suite (direct and through myveil) never overlap: see above.
exec 8>"$cache/sqlx-run.lock"
flock 8
db=myveil_compat_sqlx_$port
made_user=
# it_can_handle_split_packets sets GLOBAL max_allowed_packet to 1 GiB and leaves it: the
# server's value is put back at the end.
packet=$(sql -N -e "SELECT @@GLOBAL.max_allowed_packet")
cleanup() {
  sql -e "SET GLOBAL max_allowed_packet = $packet" || true
  local names
  names=$(sql -N -e "SELECT db_name FROM $db._sqlx_test_databases WHERE db_name LIKE '\\_sqlx\\_test\\_%'" 2>/dev/null || true)
  for n in $names; do sql -e "DROP DATABASE IF EXISTS \`$n\`" || true; done
  sql -e "DROP DATABASE IF EXISTS $db" || true
  if [ -n "$made_user" ]; then sql -e "DROP USER IF EXISTS 'no_password'@'%'" || true
  else sql -e "REVOKE SELECT ON $db.* FROM 'no_password'@'%'" 2>/dev/null || true; fi
}
trap cleanup EXIT
sql -e "DROP DATABASE IF EXISTS $db; CREATE DATABASE $db DEFAULT CHARACTER SET utf8mb4"
schema | sql "$db"
if [ -z "$(sql -N -e "SELECT 1 FROM mysql.user WHERE user='no_password' AND host='%'")" ]; then
  sql -e "CREATE USER 'no_password'@'%'"
  made_user=1
fi
sql -e "GRANT SELECT ON $db.* TO 'no_password'@'%'"

export DATABASE_URL="mysql://root${COMPAT_PASSWORD:+:$COMPAT_PASSWORD}@127.0.0.1:$port/$db"
: > "$out"
cd "$src"
while read -r name exe; do
  echo "== $name ($exe)"
  # rustsec_2024_0363 sends a query of more than 4 GiB (which the client builds in memory);
  # against MariaDB 10.11 it fails after ~2 minutes with a connection reset. SKIP.
  python3 "$here/libtest.py" "$out" "$name" "${COMPAT_TEST_TIMEOUT:-900}" "$exe" --test-threads=2 \
    --skip rustsec_2024_0363
done < "$bins"
