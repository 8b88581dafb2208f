#!/usr/bin/env bash
# Runs upstream client test suites directly against MariaDB and through myveil, and prints,
# per suite, both pass counts and the tests that pass directly but not through myveil.
#
#   tests/compat/run.sh [--quick] [--compressed] [--multiplexed] [SUITE...]
#
# SUITE is a script under tests/compat/suites/ (default: all; --quick: the ones CI runs).
# Each suite script is called as `SUITE.sh PORT OUT` and writes one line per test to OUT:
# `PASS id`, `FAIL id` or `SKIP id` (or one line `NA reason` when the run does not apply,
# e.g. a compressed run of a client without compression). It fetches what it needs from the package registries
# into $COMPAT_CACHE, logs in as root with an empty password on 127.0.0.1:PORT (through
# myveil that is a backend user with the app role), creates only databases named
# myveil_compat_<suite>_* and drops them when done. With COMPAT_COMPRESS=1 it turns on the
# client's protocol compression where the client has it.
#
# With --multiplexed, myveil runs in multiplexed mode and the suites log in through it as a
# file user root with a password (COMPAT_PASSWORD; see proxy.sh), so their sessions share
# backend connections instead of each pinning one as a backend user.
#
# Exit status: 1 when any test passes directly but not through myveil.
set -euo pipefail
cd "$(dirname "$0")/../.."
quick=(pymysql tools)
suites=()
export COMPAT_COMPRESS=${COMPAT_COMPRESS:-0}
while [ $# -gt 0 ]; do
  case "$1" in
  --quick) suites+=("${quick[@]}") ;;
  --compressed) export COMPAT_COMPRESS=1 ;;
  --multiplexed) export COMPAT_MODE=multiplexed ;;
  *) suites+=("$1") ;;
  esac
  shift
done
if [ ${#suites[@]} -eq 0 ]; then
  for f in tests/compat/suites/*.sh; do suites+=("$(basename "$f" .sh)"); done
fi
export COMPAT_DIR=${COMPAT_DIR:-/tmp/myveil-compat}
export COMPAT_CACHE=${COMPAT_CACHE:-$COMPAT_DIR/cache}
mkdir -p "$COMPAT_CACHE" "$COMPAT_DIR/results"
port=${COMPAT_PORT:-3391}
export COMPAT_MODE=${COMPAT_MODE:-pinned}
# The password the suites give myveil (only in multiplexed mode: root is then a file user).
via_password=
if [ "$COMPAT_MODE" = multiplexed ]; then
  export COMPAT_PASSWORD=${COMPAT_PASSWORD:-compat-root-pw}
  via_password=$COMPAT_PASSWORD
fi

[ -n "${MYVEIL_BIN:-}" ] || cargo build --quiet --bin myveil
tests/compat/proxy.sh stop "$port" >/dev/null 2>&1 || true
tests/compat/proxy.sh start "$port" >/dev/null
trap 'tests/compat/proxy.sh stop "$port" >/dev/null 2>&1 || true' EXIT

status=0
variant=$([ "$COMPAT_COMPRESS" = 1 ] && echo " (compressed)" || true)
[ "$COMPAT_MODE" = multiplexed ] && variant="$variant (multiplexed)" 
printf '%-28s %8s %8s %8s\n' "suite$variant" direct myveil only-direct
for s in "${suites[@]}"; do
  script=tests/compat/suites/$s.sh
  [ -x "$script" ] || { echo "no suite $s" >&2; status=2; continue; }
  out=$COMPAT_DIR/results/$s$([ "$COMPAT_COMPRESS" = 1 ] && echo .z || true)$([ "$COMPAT_MODE" = multiplexed ] && echo .mux || true)
  COMPAT_PASSWORD= "$script" 3306 "$out.direct" >"$out.direct.log" 2>&1 || true
  if grep -q '^NA ' "$out.direct" 2>/dev/null; then
    printf '%-28s %8s %8s %8s   %s\n' "$s" n/a n/a - "$(sed -n 's/^NA //p' "$out.direct" | head -1)"
    continue
  fi
  COMPAT_PASSWORD=$via_password "$script" "$port" "$out.myveil" >"$out.myveil.log" 2>&1 || true
  direct=$(grep -c '^PASS ' "$out.direct" 2>/dev/null || true)
  via=$(grep -c '^PASS ' "$out.myveil" 2>/dev/null || true)
  only=$(comm -23 <(grep '^PASS ' "$out.direct" 2>/dev/null | sort -u) \
                  <(grep '^PASS ' "$out.myveil" 2>/dev/null | sort -u) || true)
  n_only=$(printf '%s' "$only" | grep -c . || true)
  printf '%-28s %8s %8s %8s\n' "$s" "${direct:-0}" "${via:-0}" "$n_only"
  if [ "${direct:-0}" = 0 ]; then
    echo "  (no test passed directly: see $out.direct.log)"
    status=1
  fi
  if [ "$n_only" != 0 ]; then
    printf '%s\n' "$only" | sed 's/^PASS /  fails only through myveil: /' | head -50
    status=1
  fi
done
exit $status
