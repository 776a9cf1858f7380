#!/usr/bin/env bash
# A deep persistent queue purged, then filled again and deleted: time, the
# broker's RSS peak above its level before, disk use afterwards (Warren).
#
#   N=1000000 benches/run-purge.sh
#
# Environment: WARREN_BIN (target/release/warren), N (1000000), SIZE (1024),
#   WARREN_PORT (5793), WARREN_DIR (/tmp/perf-purge-warren),
#   OUT (benches/results/purge-<utc time>.jsonl), PERF (built if unset).
set -euo pipefail
cd "$(dirname "$0")/.."
WARREN_BIN=$(realpath "${WARREN_BIN:-target/release/warren}")
N=${N:-1000000}
SIZE=${SIZE:-1024}
WARREN_PORT=${WARREN_PORT:-5793}
WARREN_DIR=${WARREN_DIR:-/tmp/perf-purge-warren}
stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p benches/results
OUT=${OUT:-benches/results/purge-$stamp.jsonl}
LOG=${LOG:-${OUT%.jsonl}.log}
if [ -z "${PERF:-}" ]; then
    PERF=$(cargo bench --bench perf --no-run --message-format=json 2>/dev/null |
        sed -n 's/.*"executable":"\([^"]*\/perf-[^"\/]*\)".*/\1/p' | tail -1)
fi
[ -x "$PERF" ] || { echo "no perf binary (PERF=$PERF)" >&2; exit 1; }
URI="amqp://guest:guest@127.0.0.1:$WARREN_PORT/%2f"
rm -rf "$WARREN_DIR"
setsid "$WARREN_BIN" --listen "127.0.0.1:$WARREN_PORT" --data-dir "$WARREN_DIR" --log-level warn \
    >>"$LOG.warren" 2>&1 </dev/null &
PID=$!
cleanup() {
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 1 600); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PID" 2>/dev/null || true
    rm -rf "$WARREN_DIR"
}
trap cleanup EXIT
emit() { sed "s/^{/{\"id\":\"$1\",/" | tee -a "$OUT"; }
"$PERF" wait-ready --uri "$URI" --timeout 120 --label warren-boot 2>>"$LOG" >/dev/null
for op in purge delete-queue; do
    "$PERF" fill --uri "$URI" --broker-pid "$PID" --data-dir "$WARREN_DIR" --label warren \
        --count "$N" --size "$SIZE" --queue perf-purge 2>>"$LOG" | emit "purge-fill-$op"
    "$PERF" "$op" --uri "$URI" --broker-pid "$PID" --data-dir "$WARREN_DIR" --label warren \
        --queue perf-purge --settle 5 2>>"$LOG" | emit "purge-$op"
done
echo "results: $OUT (log: $LOG)" >&2
