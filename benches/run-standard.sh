#!/usr/bin/env bash
# The standard performance set: Warren against RabbitMQ 3.10, same machine,
# same run, alternating rounds. One command:
#
#   WARREN_BIN=target/release/warren benches/run-standard.sh
#
# (build Warren first: `cargo build --release`; the perf tool is built here
# with `cargo bench --bench perf --no-run`). Every run prints one JSON line
# (with "id" set to the row below); each compared scenario ends with a line
# of medians and Warren:RabbitMQ ratios. All lines go to OUT, progress to
# LOG; `benches/summarize.py OUT` prints the table with targets.
#
# Brokers:
#  - Warren: started by this script from WARREN_BIN on 127.0.0.1:WARREN_PORT
#    with a fresh data directory (default settings, --sync true). s1-s6 share
#    one process; s7 and s8 each get a fresh one; s9 and rec start their own.
#  - RabbitMQ: s1-s6 use the long-running shared node at RABBIT_URI
#    (RABBIT_PID found from its port if unset; if nothing listens there, a
#    node rmqstd@localhost is started on that port and stopped at the end). s7 and s8 use a fresh
#    private node started here (benches/rabbit-node.sh: rmqbench@localhost,
#    port 5674, same version and configuration) so both brokers start those
#    memory measurements from a clean process; s9 and rec start it
#    themselves. The shared node is never stopped.
#
# The set (ids):
#  [s1] 1 -> 1 queue, 16 B, transient, manual ack, prefetch 1000, multi-ack 100
#  [s2] 1 -> 1 queue, 16 B, transient, auto-ack
#  [s3] 4 producers, 4 consumers, 4 queues, 256 B, manual ack (prefetch 1000, multi-ack 100)
#  [s4] fanout to 10 queues, 10 consumers, 256 B, manual ack (prefetch 1000, multi-ack 100)
#  [s5] persistent 1 KB, durable queue, confirms <= 1000 outstanding, manual ack
#       (prefetch 1000, multi-ack 100)
#  [s6] latency at a fixed 1000 msg/s, 256 B, manual ack each message: p50/p99/p99.9/max
#  [s6-floor] the same against `perf null-broker --echo` (the client's own floor)
#  [s7] backlog: 1M x 1 KB persistent into a durable queue (confirms <= 1000),
#       no consumer; then drain (prefetch 1000, multi-ack 100). Rates, peak RSS.
#  [s8] 1000 connections x 2 channels x 1 exclusive queue + 1 consumer: broker RSS
#  [s9] start-up to first handshake, idle RSS 5 s later (s9-first: empty data
#       directory, first boot; s9: restarts)
#  [rec] recovery of a 1M x 1 KB persistent backlog (benches/run-recovery.sh)
#
# Environment: WARREN_BIN (target/release/warren), WARREN_COMMIT (found from
#   the binary's checkout), WARREN_PORT (5790),
#   RABBIT_URI (amqp://guest:guest@127.0.0.1:5673/%2f), RABBIT_PID (auto),
#   RMQB_PORT (5674), DURATION (10), WARMUP (2), ROUNDS (3), PAUSE (2),
#   BACKLOG_N (1000000), BACKLOG_ROUNDS (3), CONN_N (1000), REC_N (1000000),
#   REC_ROUNDS (3), ONLY (ids to run, e.g. "s1 s7 rec"), PERF (a built perf
#   binary, to skip the cargo build),
#   OUT (benches/results/standard-<utc time>.jsonl), LOG (same name, .log).
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n 65536 2>/dev/null || true

WARREN_BIN=$(realpath "${WARREN_BIN:-target/release/warren}")
WARREN_PORT=${WARREN_PORT:-5790}
RABBIT_URI=${RABBIT_URI:-amqp://guest:guest@127.0.0.1:5673/%2f}
RMQB_PORT=${RMQB_PORT:-5674}
RMQB_BASE=${RMQB_BASE:-/tmp/rmqbench}
export RMQB_PORT RMQB_BASE
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-3}
PAUSE=${PAUSE:-2}
BACKLOG_N=${BACKLOG_N:-1000000}
BACKLOG_ROUNDS=${BACKLOG_ROUNDS:-3}
CONN_N=${CONN_N:-1000}
REC_N=${REC_N:-1000000}
REC_ROUNDS=${REC_ROUNDS:-3}
ONLY=${ONLY:-}
stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p benches/results
OUT=${OUT:-benches/results/standard-$stamp.jsonl}
LOG=${LOG:-${OUT%.jsonl}.log}

[ -x "$WARREN_BIN" ] || { echo "no Warren binary at $WARREN_BIN" >&2; exit 2; }
# The commit of the checkout the binary was built in (…/target/release/warren).
WARREN_COMMIT=${WARREN_COMMIT:-$(git -C "$(dirname "$WARREN_BIN")/../.." describe --always --dirty 2>/dev/null || echo '?')}
rport=${RABBIT_URI##*:}
rport=${rport%%/*}
listener_pid() { ss -Hltnp "sport = :$1" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1; }
RABBIT_PID=${RABBIT_PID:-$(listener_pid "$rport")}
R1SPID=""

if [ -z "${PERF:-}" ]; then
    cargo bench --bench perf --no-run >/dev/null 2>&1 || cargo bench --bench perf --no-run
    PERF=$(cargo bench --bench perf --no-run --message-format=json 2>/dev/null |
        sed -n 's/.*"executable":"\([^"]*\/perf-[^"\/]*\)".*/\1/p' | tail -1)
    # Building a bench target rebuilds the warren binary with the test
    # dependencies' features unified in and copies it over
    # target/release/warren; put the plain release build back, the one
    # `cargo build --release` gives a user.
    if [ "$WARREN_BIN" = "$(realpath target/release/warren)" ]; then
        cargo build --release --bin warren >/dev/null 2>&1 || cargo build --release --bin warren
    fi
fi
[ -x "$PERF" ] || { echo "cannot find the perf binary" >&2; exit 1; }

W_URI="amqp://guest:guest@127.0.0.1:$WARREN_PORT/%2f"
W_DIR=/tmp/perf-warren-data
W_CMD="$WARREN_BIN --listen 127.0.0.1:$WARREN_PORT --management-listen 127.0.0.1:0 --data-dir $W_DIR --log-level warn"
R2_URI="amqp://guest:guest@127.0.0.1:$RMQB_PORT/%2f"
R2_DIR="$RMQB_BASE/mnesia"
R2_CMD="$(pwd)/benches/rabbit-node.sh run"

{
    echo "== $(date -u +%FT%TZ) run-standard: warren $WARREN_BIN ($("$WARREN_BIN" --version 2>/dev/null || true))"
    echo "== warren commit $WARREN_COMMIT; rabbitmq $RABBIT_URI pid $RABBIT_PID"
    echo "== $(nproc) cores, $(free -m | awk '/Mem:/{print $2}') MB; load $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee -a "$LOG" >&2

# A process is gone once it is a zombie with no thread left: after kill -9
# the main thread can be a zombie while other threads still tear down (and
# still hold its files, e.g. a data directory lock).
alive() {
    local s n
    s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    [[ $s != *") Z "* ]] && return 0
    n=$(ls "/proc/$1/task" 2>/dev/null | wc -l)
    [ "$n" -gt 1 ]
}
wait_exit() { # pid seconds
    local i=0
    while alive "$1" && [ $i -lt $(($2 * 20)) ]; do sleep 0.05; i=$((i + 1)); done
    ! alive "$1"
}
stop_pid() { # pid seconds: SIGTERM, then SIGKILL to its process group
    alive "$1" || return 0
    kill -TERM "$1" 2>/dev/null || true
    wait_exit "$1" "$2" && return 0
    echo "pid $1 ignored SIGTERM for $2 s: SIGKILL" | tee -a "$LOG" >&2
    kill -KILL -- "-$1" 2>/dev/null || kill -KILL "$1" 2>/dev/null || true
    wait_exit "$1" 10 || true
}

WPID=""
R2SPID=""
R2PID=""
start_warren() {
    rm -rf "$W_DIR"
    setsid $W_CMD >>"$LOG.warren" 2>&1 </dev/null &
    WPID=$!
    "$PERF" wait-ready --uri "$W_URI" --timeout 60 --label warren-boot 2>>"$LOG" >/dev/null
    echo "== warren pid $WPID" | tee -a "$LOG" >&2
}
stop_warren() {
    [ -n "$WPID" ] && stop_pid "$WPID" 60
    WPID=""
    rm -rf "$W_DIR"
}
start_rabbit2() {
    benches/rabbit-node.sh reset
    R2SPID=$(benches/rabbit-node.sh start)
    "$PERF" wait-ready --uri "$R2_URI" --timeout 120 --label rabbitmq-boot 2>>"$LOG" >/dev/null
    R2PID=$(benches/rabbit-node.sh beam-pid "$R2SPID")
    echo "== private rabbitmq: script pid $R2SPID, beam.smp pid $R2PID" | tee -a "$LOG" >&2
}
stop_rabbit2() {
    if [ -n "$R2SPID" ] && alive "$R2SPID"; then
        benches/rabbit-node.sh stop
        wait_exit "$R2SPID" 60 || stop_pid "$R2SPID" 30
    fi
    R2SPID=""
    R2PID=""
}
# A RabbitMQ node starts Erlang's port mapper, which outlives it: stopped at
# the end if none ran before.
EPMD_BEFORE=$(benches/rabbit-node.sh epmd-pids)
cleanup() {
    stop_warren
    stop_rabbit2
    if [ -n "$R1SPID" ]; then
        RMQB_NODE=rmqstd@localhost benches/rabbit-node.sh stop
        wait_exit "$R1SPID" 60 || stop_pid "$R1SPID" 30
    fi
    [ -n "$EPMD_BEFORE" ] || benches/rabbit-node.sh stop-epmd
}
trap cleanup EXIT
# With no RabbitMQ on RABBIT_URI's port, start a node there for s1-s6 (same
# script as the private node; stopped again at the end).
if [ -z "$RABBIT_PID" ]; then
    echo "nothing listens on port $rport: starting rmqstd@localhost there" >&2
    R1SPID=$(RMQB_NODE=rmqstd@localhost RMQB_PORT=$rport RMQB_DIST_PORT=25673 \
        RMQB_BASE=/tmp/rmqstd benches/rabbit-node.sh start)
    for _ in $(seq 1 240); do
        RABBIT_PID=$(listener_pid "$rport")
        [ -n "$RABBIT_PID" ] && break
        sleep 0.5
    done
    [ -n "$RABBIT_PID" ] || { echo "RabbitMQ did not start on port $rport" >&2; exit 2; }
fi

want() { [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]; }
# [s6-floor] the s6 latency run against `perf null-broker --echo`, a server
# that does nothing but hand each publish to the consumer's socket: what the
# client, loopback and the wake-ups cost without any broker work.
latency_floor() {
    local port=5699 npid
    "$PERF" null-broker --echo --listen "127.0.0.1:$port" --lifetime 600 2>>"$LOG" >/dev/null &
    npid=$!
    "$PERF" wait-ready --uri "amqp://guest:guest@127.0.0.1:$port/%2f" --timeout 10 \
        --label null-boot 2>>"$LOG" >/dev/null || true
    echo "== [s6-floor] null broker pid $npid" | tee -a "$LOG" >&2
    "$PERF" latency "${WIN[@]}" --uri "amqp://guest:guest@127.0.0.1:$port/%2f" \
        --broker-pid "$npid" --label null --rate 1000 --size 256 --prefetch 1000 \
        --multi-ack 1 2>>"$LOG" | tag s6-floor || true
    stop_pid "$npid" 10
}
tag() { sed "s/^{/{\"id\":\"$1\",/" | tee -a "$OUT"; }
# run ID WURI WPID RURI RPID scenario-args…: Warren (A) vs RabbitMQ (B).
run() {
    local id=$1 wuri=$2 wpid=$3 ruri=$4 rpid=$5
    shift 5
    echo "== [$id] $*" | tee -a "$LOG" >&2
    "$PERF" "$@" --uri "$wuri" --broker-pid "$wpid" --label warren \
        --compare "$ruri" --compare-pid "$rpid" --compare-label rabbitmq \
        --pause "$PAUSE" 2>>"$LOG" | tag "$id" || true
}

MANUAL=(--prefetch 1000 --multi-ack 100)
WIN=(--rounds "$ROUNDS" --duration "$DURATION" --warmup "$WARMUP")
if want s1 || want s2 || want s3 || want s4 || want s5 || want s6; then
    start_warren
    R=("$RABBIT_URI" "$RABBIT_PID")
    want s1 && run s1 "$W_URI" "$WPID" "${R[@]}" throughput "${WIN[@]}" --size 16 "${MANUAL[@]}"
    want s2 && run s2 "$W_URI" "$WPID" "${R[@]}" throughput "${WIN[@]}" --size 16 --auto-ack
    want s3 && run s3 "$W_URI" "$WPID" "${R[@]}" throughput "${WIN[@]}" --producers 4 --consumers 4 \
        --queues 4 --size 256 "${MANUAL[@]}"
    want s4 && run s4 "$W_URI" "$WPID" "${R[@]}" throughput "${WIN[@]}" --exchange-type fanout \
        --queues 10 --consumers 10 --size 256 "${MANUAL[@]}"
    want s5 && run s5 "$W_URI" "$WPID" "${R[@]}" throughput "${WIN[@]}" --persistent --size 1024 \
        --confirm 1000 "${MANUAL[@]}"
    want s6 && run s6 "$W_URI" "$WPID" "${R[@]}" latency "${WIN[@]}" --rate 1000 --size 256 \
        --prefetch 1000 --multi-ack 1
    want s6 && latency_floor
    stop_warren
fi
if want s7; then
    start_warren
    start_rabbit2
    run s7 "$W_URI" "$WPID" "$R2_URI" "$R2PID" backlog --rounds "$BACKLOG_ROUNDS" \
        --count "$BACKLOG_N" --size 1024 --confirm 1000 --prefetch 1000 --multi-ack 100 \
        --data-dir "$W_DIR" --compare-data-dir "$R2_DIR"
    stop_warren
    stop_rabbit2
fi
if want s8; then
    start_warren
    start_rabbit2
    run s8 "$W_URI" "$WPID" "$R2_URI" "$R2PID" connections --rounds "$ROUNDS" \
        --connections "$CONN_N" --channels 2 --hold 10 --settle 5
    stop_warren
    stop_rabbit2
fi
if want s9; then
    rm -rf "$W_DIR"
    benches/rabbit-node.sh reset
    # First boot (empty data directories), then restarts.
    for id in s9-first s9; do
        rounds=$ROUNDS
        [ $id = s9-first ] && rounds=1
        echo "== [$id] startup" | tee -a "$LOG" >&2
        "$PERF" startup --uri "$W_URI" --label warren --exec "$W_CMD" \
            --compare "$R2_URI" --compare-label rabbitmq --compare-exec "$R2_CMD" \
            --rounds "$rounds" --idle 5 --timeout 120 --pause "$PAUSE" \
            2>>"$LOG" | tag "$id" || true
    done
    rm -rf "$W_DIR"
    benches/rabbit-node.sh reset
fi
if want rec; then
    echo "== [rec] benches/run-recovery.sh N=$REC_N ROUNDS=$REC_ROUNDS" | tee -a "$LOG" >&2
    PERF=$PERF WARREN_BIN=$WARREN_BIN N=$REC_N ROUNDS=$REC_ROUNDS OUT=$OUT LOG=$LOG \
        benches/run-recovery.sh || echo "run-recovery.sh failed" | tee -a "$LOG" >&2
fi
echo "results: $OUT (log: $LOG)" >&2
