#!/bin/bash
# KAFKA_RELAY_BENCH_WRAPPER that gives every other relay run a WAL with
# 16 spare segments of 64 MiB (the default wal.max_bytes' worth), written
# and synced before the relay starts, so its appends write over pages the
# kernel holds already. Odd starts run as usual. The count is kept in
# ${SPARES_COUNT:-/tmp/spares.count}; remove it before a run.
count=${SPARES_COUNT:-/tmp/spares.count}
n=$(cat "$count" 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > "$count"
relay="$1"
shift
config="${*: -1}"
if [ $((n % 2)) -eq 0 ]; then
  dir=$(sed -n 's/^dir = "\(.*\)"$/\1/p' "$config")
  mkdir -p "$dir/segments"
  for i in $(seq 1 16); do
    dd if=/dev/zero of="$dir/segments/$(printf %020d "$i").spare" bs=1M count=64 status=none
  done
  sync
  echo "SPARES: with spares ($n)" >&2
else
  echo "SPARES: without ($n)" >&2
fi
exec "$relay" "$@"
