#!/usr/bin/env bash
# Starts myveil for the compatibility suites and prints its port; stops it with `stop`.
#
#   tests/compat/proxy.sh start [PORT]   → prints the port once myveil accepts connections
#   tests/compat/proxy.sh stop [PORT]
#
# The configuration is the shipped example's, with the example policy active on its own
# database (myveil_compat_demo_PORT, created with examples/schema.sql) and backend users on:
# every MariaDB account logs in with its own password and gets the app role, so suites
# use their usual credentials (root, empty password) and create users of their own.
# Compression is offered. Everything lives under $COMPAT_DIR (default /tmp/myveil-compat).
#
# With COMPAT_MODE=multiplexed the backend is in multiplexed mode (ADR 0009), and root is a
# user of the users file (role app, password $COMPAT_PASSWORD, default compat-root-pw) whose
# sessions share the pool's backend connections. Backend users stay pinned, so this is what
# makes the suites' own sessions move between backend connections; the accounts a suite
# creates for itself still log in as backend users.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
dir=${COMPAT_DIR:-/tmp/myveil-compat}
mkdir -p "$dir"
# The binary: MYVEIL_BIN, or the debug build (`cargo build` makes it; run.sh does).
bin=${MYVEIL_BIN:-target/debug/myveil}

port=${2:-3391}
demo=myveil_compat_demo_$port
case "${1:-start}" in
stop)
  if [ -f "$dir/myveil.pid" ]; then
    kill "$(cat "$dir/myveil.pid")" 2>/dev/null || true
    rm -f "$dir/myveil.pid"
  fi
  mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $demo" 2>/dev/null || true
  exit 0
  ;;
start) ;;
*) echo "usage: $0 start [PORT] | stop" >&2; exit 2 ;;
esac

rm -rf "$dir/conf" && mkdir -p "$dir/conf/policy"
sed "s/myveil_demo/$demo/g" examples/policy/demo.toml > "$dir/conf/policy/demo.toml"
cp examples/users.toml "$dir/conf/users.toml"
sed -e "s|^address = \"127.0.0.1:3307\"|address = \"127.0.0.1:$port\"|" \
    -e 's|^policy_dir = .*|policy_dir = "policy"|' \
    -e "s|^keys_dir = .*|keys_dir = \"$dir/keys\"|" \
    -e 's|^file = "users.toml"|file = "users.toml"|' \
    -e 's|^bcrypt_cost = .*|bcrypt_cost = 4|' \
    -e 's|^pool_max_idle = .*|pool_max_idle = 8|' \
    examples/myveil.toml > "$dir/conf/myveil.toml"
# No admin port here (the suites do not need it).
python3 - "$dir/conf/myveil.toml" <<'PY'
import re, sys
p = sys.argv[1]
s = open(p).read()
s = re.sub(r'(?ms)^\[admin\].*?(?=^\[(?!admin)|\Z)', '', s)
s += '\n[backend_users]\n[[backend_users.map]]\nuser = "*"\nrole = "app"\n'
open(p, 'w').write(s)
PY
if [ "${COMPAT_MODE:-pinned}" = multiplexed ]; then
  sed -i 's|^mode = "pinned"|mode = "multiplexed"|' "$dir/conf/myveil.toml"
  grep -q '^mode = "multiplexed"' "$dir/conf/myveil.toml" || { echo "no backend mode to set" >&2; exit 1; }
  printf '%s\n' "${COMPAT_PASSWORD:-compat-root-pw}" |
    "$root/$bin" user add root --role app --password-stdin --config "$dir/conf/myveil.toml" >/dev/null
  login=(-uroot -p"${COMPAT_PASSWORD:-compat-root-pw}")
else
  login=(-uroot)
fi
sed "s/myveil_demo/$demo/g" examples/schema.sql | mariadb -h127.0.0.1 -uroot

"$root/$bin" serve --config "$dir/conf/myveil.toml" >"$dir/myveil.log" 2>&1 &
echo $! > "$dir/myveil.pid"
for _ in $(seq 1 100); do
  if mariadb -h127.0.0.1 -P"$port" "${login[@]}" -e 'SELECT 1' >/dev/null 2>&1; then
    echo "$port"
    exit 0
  fi
  sleep 0.1
done
echo "myveil did not start; see $dir/myveil.log" >&2
tail -20 "$dir/myveil.log" >&2
exit 1
