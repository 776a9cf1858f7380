#!/usr/bin/env bash
# Stream queues: Warren against RabbitMQ in the same run.
#
#   WARREN_BIN=target/release/warren benches/run-stream.sh
#
# 1. `perf stream` against a fresh Warren (started here) and the RabbitMQ node
#    at RABBIT_URI, one after the other: confirmed publish of 1 KB with 1 and
#    4 producers, fill a stream with COUNT × 100 B, replay it from `first`
#    with one consumer (all of it) and with 10 consumers (a window).
# 2. Start-up of Warren with that large stream in its data directory (time
#    to the first handshake), next to the start-up with an empty directory.
#
# Environment: WARREN_BIN (target/release/warren), RABBIT_URI
# (amqp://guest:guest@127.0.0.1:5673/%2f), RABBIT_PID (its beam.smp, for RSS),
# RABBIT_MGMT (http://127.0.0.1:15673, to delete the replay stream after),
# COUNT (10000000), WARMUP (2) and DURATION (10) s of the windows,
# PHASE_TIMEOUT (900 s), WARREN_PORT (5690), OUT (benches/results/stream-<time>.jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."

WARREN_BIN=$(realpath "${WARREN_BIN:-target/release/warren}")
RABBIT_URI=${RABBIT_URI:-amqp://guest:guest@127.0.0.1:5673/%2f}
COUNT=${COUNT:-10000000}
WARREN_PORT=${WARREN_PORT:-5690}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-benches/results/stream-$STAMP.jsonl}
LOG=${OUT%.jsonl}.log
W_DIR=$(mktemp -d /tmp/warren-stream-bench.XXXXXX)
W_URI="amqp://guest:guest@127.0.0.1:$WARREN_PORT/%2f"

PERF=$(cargo bench --bench perf --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="perf" and m.get("executable"):
        print(m["executable"])' | tail -1)

cleanup() {
    [[ -n ${W_PID:-} ]] && kill "$W_PID" 2>/dev/null && wait "$W_PID" 2>/dev/null
    rm -rf "$W_DIR"
}
trap cleanup EXIT

"$WARREN_BIN" --listen "127.0.0.1:$WARREN_PORT" --data-dir "$W_DIR" --log-level warn &
W_PID=$!
sleep 0.5
echo "== $(date -u +%FT%TZ) stream: warren $WARREN_BIN pid $W_PID, rabbitmq $RABBIT_URI pid ${RABBIT_PID:-?}" | tee -a "$LOG"
"$PERF" stream --uri "$W_URI" --broker-pid "$W_PID" --label warren \
    --compare "$RABBIT_URI" ${RABBIT_PID:+--compare-pid "$RABBIT_PID"} --compare-label rabbitmq \
    --rounds 1 --count "$COUNT" --queue perf-stream-replay \
    --warmup "${WARMUP:-2}" --duration "${DURATION:-10}" \
    --timeout "${PHASE_TIMEOUT:-900}" >>"$OUT" 2>>"$LOG"

# The replay stream stays in Warren's directory for the start-up below; the
# shared RabbitMQ node gets its queue back.
curl -s -o /dev/null -u guest:guest -X DELETE \
    "${RABBIT_MGMT:-http://127.0.0.1:15673}/api/queues/%2f/perf-stream-replay" || true
kill "$W_PID"; wait "$W_PID" 2>/dev/null || true; W_PID=
du -sb "$W_DIR" | tee -a "$LOG"

EMPTY=$(mktemp -d /tmp/warren-empty.XXXXXX)
for dir in "$W_DIR" "$EMPTY"; do
    "$PERF" startup --uri "$W_URI" --label "warren $(du -sh "$dir" | cut -f1)" \
        --exec "$WARREN_BIN --listen 127.0.0.1:$WARREN_PORT --data-dir $dir --log-level warn" \
        --rounds 3 --idle 1 >>"$OUT" 2>>"$LOG"
done
rm -rf "$EMPTY"
echo "results in $OUT"
