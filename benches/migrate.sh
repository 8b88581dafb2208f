#!/usr/bin/env bash
# Online migration numbers: `migrate apply` on tables of ROWS (default "100000 1000000")
# plaintext rows (email with a blind index, ssn through a shadow column, a TEXT note through
# a shadow column) while an app and a reporting role work through myveil, with two runs
# killed with kill -9 and resumed. Per size it prints rows/s of the whole migration (kills
# and sweeps included), the apply process's peak RSS, and the load's throughput during the
# migration as a ratio to after it; then `keys rotate` + `keys reencrypt` of the same table,
# timed. Unthrottled (RATE=0) unless RATE is given.
# Needs the MariaDB of the README (127.0.0.1:3306, root).
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-"100000 1000000"}
RATE=${RATE:-0}
cargo build --release --quiet --test migrate
for n in $ROWS; do
  MYVEIL_MIGRATE_ROWS=$n MYVEIL_MIGRATE_RATE=$RATE cargo test --release --quiet --test migrate \
    apply_seals_a_live_table_under_load_and_resumes_after_kill -- --nocapture 2>&1 \
    | grep -E '^(MIGRATE|REENCRYPT|migrated|test result)'
done
