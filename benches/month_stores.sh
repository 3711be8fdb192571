#!/usr/bin/env bash
# The month on every store, side by side in one run: examples/month.rs at
# the sizes given (default 100 1000 10000) on the memory store, a SQLite
# file, PostgreSQL and the MongoDB-wire test server, and PostgreSQL's own
# COPY of the same readings and clearing results through psql.
#
#   ./scripts/databases run -- benches/month_stores.sh [SIZES...]
#
# Set STORES to a subset of "memory sqlite postgres mongodb" (default: all
# but mongodb, which is slow on the test server above 1,000 prosumers; run
# it with STORES=mongodb SIZES... explicitly).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
sizes=("${@:-100 1000 10000}")
read -r -a sizes <<< "${sizes[*]}"
stores="${STORES:-memory sqlite postgres}"
cargo build --quiet --release --example month --features postgres,mongodb
month="$CARGO_TARGET_DIR/release/examples/month"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

for n in "${sizes[@]}"; do
  for store in $stores; do
    case "$store" in
      memory) url="memory:" ;;
      sqlite) url="sqlite:$work/month-$n.db" ;;
      postgres)
        psql "$MICROGRID_TEST_POSTGRES_URL" -qc "DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;" >/dev/null
        url="$MICROGRID_TEST_POSTGRES_URL" ;;
      mongodb) url="${MICROGRID_TEST_MONGODB_URL%/}/month_${n}_$$" ;;
    esac
    echo "== $store, $n prosumers"
    "$month" "$url" "$n" --json > "$work/$store-$n.json"
    cat "$work/$store-$n.json"
    if [ "$store" = postgres ]; then
      # The database's own bulk load of the same rows, through psql.
      for table in readings allocations; do
        psql "$MICROGRID_TEST_POSTGRES_URL" -qc "\\copy $table TO '$work/$table.csv' CSV" >/dev/null
        rows=$(wc -l < "$work/$table.csv")
        psql "$MICROGRID_TEST_POSTGRES_URL" -qc "CREATE TABLE copy_$table (LIKE $table INCLUDING ALL)" >/dev/null
        start=$(date +%s.%N)
        psql "$MICROGRID_TEST_POSTGRES_URL" -qc "\\copy copy_$table FROM '$work/$table.csv' CSV" >/dev/null
        end=$(date +%s.%N)
        echo "{\"psql_copy\": \"$table\", \"rows\": $rows, \"seconds\": $(echo "$end - $start" | bc)}"
        psql "$MICROGRID_TEST_POSTGRES_URL" -qc "DROP TABLE copy_$table" >/dev/null
        rm -f "$work/$table.csv"
      done
    fi
  done
done
