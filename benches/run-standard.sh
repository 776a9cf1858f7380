#!/usr/bin/env bash
# The standard performance set: Warren against RabbitMQ, same machine.
#
# Usage:
#   benches/run-standard.sh WARREN_URI WARREN_PID RABBIT_URI RABBIT_PID
# e.g.
#   benches/run-standard.sh amqp://guest:guest@127.0.0.1:5699/%2f 12345 \
#                           amqp://guest:guest@127.0.0.1:5673/%2f 5854
#
# Each scenario runs with --compare: Warren (A) and RabbitMQ (B) alternately,
# ROUNDS rounds each, WARMUP s warm-up then DURATION s measured. Every run
# prints one JSON line; each scenario ends with a line of medians and A:B
# ratios. All JSON lines are appended to OUT, progress goes to LOG.
#
# Environment: DURATION (10), WARMUP (2), ROUNDS (3), PAUSE (2),
#   OUT (benches/results/standard-<utc time>.jsonl), LOG (same name, .log),
#   ONLY (space-separated scenario ids to run, e.g. "s1 s2").
#
# The standard set (ids in brackets; [-] = not implemented in the tool yet):
#  [s1] 1 -> 1 queue, 16 B, transient, manual ack, prefetch 1000, multi-ack 100
#  [s2] 1 -> 1 queue, 16 B, transient, auto-ack
#  [s3] 4 producers, 4 consumers, 4 queues, 256 B, manual ack (prefetch 1000, multi-ack 100)
#  [s4] fanout to 10 queues, 10 consumers, 256 B, manual ack (prefetch 1000, multi-ack 100)
#  [s5] persistent 1 KB, durable queue, confirms <= 1000 outstanding, manual ack
#       (prefetch 1000, multi-ack 100)
#  [s6] latency at a fixed 1000 msg/s, 256 B, manual ack each message: p50/p99/p99.9/max
#  [-]  1M x 1 KB persistent backlog: peak RSS and drain rate
#  [-]  1000 connections x 2 channels x 1 queue: broker RSS
#  [-]  start-up time to first handshake, idle RSS
#
# Notes: brokers are not restarted between scenarios, so RSS figures carry
# what earlier scenarios left behind (compare broker_rss_kb at the start of
# the log). Flat-out scenarios can leave a backlog on a broker without
# publisher flow control; the tool deletes its queues after every run.
set -euo pipefail

if [ $# -ne 4 ]; then
    sed -n '2,33p' "$0" >&2
    exit 2
fi
WARREN_URI=$1
WARREN_PID=$2
RABBIT_URI=$3
RABBIT_PID=$4
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-3}
PAUSE=${PAUSE:-2}
ONLY=${ONLY:-}

cd "$(dirname "$0")/.."
stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p benches/results
OUT=${OUT:-benches/results/standard-$stamp.jsonl}
LOG=${LOG:-${OUT%.jsonl}.log}

cargo bench --bench perf --no-run >/dev/null 2>&1 || cargo bench --bench perf --no-run

run() {
    local id=$1
    shift
    if [ -n "$ONLY" ] && [[ " $ONLY " != *" $id "* ]]; then
        return 0
    fi
    echo "== [$id] $*" | tee -a "$LOG" >&2
    cargo bench -q --bench perf -- "$@" \
        --uri "$WARREN_URI" --broker-pid "$WARREN_PID" --label warren \
        --compare "$RABBIT_URI" --compare-pid "$RABBIT_PID" --compare-label rabbitmq \
        --rounds "$ROUNDS" --duration "$DURATION" --warmup "$WARMUP" --pause "$PAUSE" \
        2>>"$LOG" | sed "s/^{/{\"id\":\"$id\",/" | tee -a "$OUT"
}

MANUAL=(--prefetch 1000 --multi-ack 100)
run s1 throughput --size 16 "${MANUAL[@]}"
run s2 throughput --size 16 --auto-ack
run s3 throughput --producers 4 --consumers 4 --queues 4 --size 256 "${MANUAL[@]}"
run s4 throughput --exchange-type fanout --queues 10 --consumers 10 --size 256 "${MANUAL[@]}"
run s5 throughput --persistent --size 1024 --confirm 1000 "${MANUAL[@]}"
run s6 latency --rate 1000 --size 256 --prefetch 1000 --multi-ack 1
echo "results: $OUT (log: $LOG)" >&2
