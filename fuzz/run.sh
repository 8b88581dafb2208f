#!/usr/bin/env bash
# Runs one fuzz target for a while: `fuzz/run.sh TARGET [SECONDS]` (default 600).
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). The lexer and guard
# targets start from the statements in seeds.sql; findings land in fuzz/artifacts/TARGET.
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?target: lexer, guard, packets, relay, results or execute}
secs=${2:-600}
mkdir -p "corpus/$target"
if [[ $target == lexer || $target == guard ]]; then
    n=0
    while IFS= read -r line; do
        n=$((n + 1))
        # Three leading bytes choose the session state (mode, charset, role); zero is plain.
        printf '\0\0\0%s' "$line" >"corpus/$target/seed-$n"
    done <seeds.sql
fi
exec cargo +nightly fuzz run "$target" "corpus/$target" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -max_len=65536 -print_final_stats=1
