#!/bin/bash
# KAFKA_RELAY_BENCH_WRAPPER for an A/B of two relay builds in one run:
# odd starts run $RELAY_BEFORE, even starts $RELAY_AFTER (default
# /tmp/relay-before and /tmp/relay-after). The count is kept in
# ${AB_COUNT:-/tmp/ab.count}; remove it before a run.
count=${AB_COUNT:-/tmp/ab.count}
n=$(cat "$count" 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > "$count"
shift # the benchmark's own relay binary
if [ $((n % 2)) -eq 1 ]; then
  echo "AB: before ($n)" >&2
  exec "${RELAY_BEFORE:-/tmp/relay-before}" "$@"
fi
echo "AB: after ($n)" >&2
exec "${RELAY_AFTER:-/tmp/relay-after}" "$@"
