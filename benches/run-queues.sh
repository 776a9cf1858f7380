#!/usr/bin/env bash
# Many empty durable queues: declare N, restart, delete them all; Warren and
# (with KINDS including rabbit) RabbitMQ 3.10 on a private node.
#
#   N=100000 benches/run-queues.sh
#
# For each kind: start a fresh broker, `perf declare-queues` (rate, disk,
# RSS after --settle), stop it cleanly, start it again through
# `perf wait-ready --exec … --queue perf-dq-<N-1> --expect 0` (time until
# the last queue is back), read the RSS of the idle restarted broker, then
# `perf delete-queues` (rate, disk and RSS afterwards).
#
# Environment: WARREN_BIN (target/release/warren), N (100000), KINDS
#   ("warren rabbit"), WARREN_PORT (5792), WARREN_DIR (/tmp/perf-queues-warren),
#   RMQB_NODE/RMQB_PORT/RMQB_DIST_PORT/RMQB_BASE for the private RabbitMQ node
#   (rmqqueues@localhost, 5682, 25682, /tmp/rmqqueues), CONCURRENCY (50),
#   OUT (benches/results/queues-<utc time>.jsonl), PERF (built if unset).
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n 65536 2>/dev/null || true
WARREN_BIN=$(realpath "${WARREN_BIN:-target/release/warren}")
N=${N:-100000}
KINDS=${KINDS:-warren rabbit}
CONCURRENCY=${CONCURRENCY:-50}
WARREN_PORT=${WARREN_PORT:-5792}
WARREN_DIR=${WARREN_DIR:-/tmp/perf-queues-warren}
export RMQB_NODE=${RMQB_NODE:-rmqqueues@localhost}
export RMQB_PORT=${RMQB_PORT:-5682}
export RMQB_DIST_PORT=${RMQB_DIST_PORT:-25682}
export RMQB_BASE=${RMQB_BASE:-/tmp/rmqqueues}
stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p benches/results
OUT=${OUT:-benches/results/queues-$stamp.jsonl}
LOG=${LOG:-${OUT%.jsonl}.log}
if [ -z "${PERF:-}" ]; then
    PERF=$(cargo bench --bench perf --no-run --message-format=json 2>/dev/null |
        sed -n 's/.*"executable":"\([^"]*\/perf-[^"\/]*\)".*/\1/p' | tail -1)
fi
[ -x "$PERF" ] || { echo "no perf binary (PERF=$PERF)" >&2; exit 1; }
W_URI="amqp://guest:guest@127.0.0.1:$WARREN_PORT/%2f"
R_URI="amqp://guest:guest@127.0.0.1:$RMQB_PORT/%2f"
W_CMD="$WARREN_BIN --listen 127.0.0.1:$WARREN_PORT --data-dir $WARREN_DIR --log-level warn"
R_CMD="$(pwd)/benches/rabbit-node.sh run"
PIDFILE=$(mktemp /tmp/perf-queues-pid.XXXXXX)
alive() { kill -0 "$1" 2>/dev/null && ! grep -q ') Z ' "/proc/$1/stat" 2>/dev/null; }
wait_exit() { local i=0; while alive "$1" && [ $i -lt $(($2 * 20)) ]; do sleep 0.05; i=$((i + 1)); done; ! alive "$1"; }
emit() { sed "s/^{/{\"id\":\"$1\",/" | tee -a "$OUT"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo null; }

CURRENT="" KIND=""
EPMD_BEFORE=$(benches/rabbit-node.sh epmd-pids)
stop_current() {
    [ -n "$CURRENT" ] || return 0
    if [ "$KIND" = rabbit ]; then benches/rabbit-node.sh stop >/dev/null 2>&1 || true; fi
    kill -TERM "$CURRENT" 2>/dev/null || true
    wait_exit "$CURRENT" 600 || kill -KILL "$CURRENT" 2>/dev/null || true
    CURRENT=""
}
cleanup() {
    stop_current
    rm -f "$PIDFILE"
    rm -rf "$WARREN_DIR"
    [ -n "$EPMD_BEFORE" ] || benches/rabbit-node.sh stop-epmd
}
trap cleanup EXIT

for kind in $KINDS; do
    echo "== $kind: $N durable queues" | tee -a "$LOG" >&2
    KIND=$kind
    if [ "$kind" = warren ]; then
        rm -rf "$WARREN_DIR"
        setsid $W_CMD >>"$LOG.warren" 2>&1 </dev/null &
        CURRENT=$! URI=$W_URI DATA=$WARREN_DIR CMD=$W_CMD BPID=$CURRENT
    else
        benches/rabbit-node.sh reset
        CURRENT=$(benches/rabbit-node.sh start)
        URI=$R_URI DATA=$RMQB_BASE/mnesia CMD=$R_CMD
        BPID=$(benches/rabbit-node.sh beam-pid "$CURRENT")
    fi
    "$PERF" wait-ready --uri "$URI" --timeout 120 --label "$kind-boot" 2>>"$LOG" >/dev/null
    "$PERF" declare-queues --uri "$URI" --broker-pid "$BPID" --data-dir "$DATA" --label "$kind" \
        --queues "$N" --concurrency "$CONCURRENCY" --settle 5 2>>"$LOG" | emit "queues-declare-$kind"
    stop_current
    rm -f "$PIDFILE"
    "$PERF" wait-ready --uri "$URI" --label "$kind" --exec "$CMD" --pid-file "$PIDFILE" \
        --broker-log "$LOG.$kind-restart" --queue "perf-dq-$((N - 1))" --expect 0 \
        --data-dir "$DATA" --timeout 900 2>>"$LOG" | emit "queues-restart-$kind"
    CURRENT=$(cat "$PIDFILE")
    BPID=$CURRENT
    [ "$kind" = rabbit ] && BPID=$(benches/rabbit-node.sh beam-pid "$CURRENT")
    sleep 5
    echo "{\"scenario\":\"queues-idle\",\"target\":\"$kind\",\"queues\":$N,\"rss_idle_after_restart_kb\":$(rss_kb "$BPID")}" |
        emit "queues-idle-$kind"
    "$PERF" delete-queues --uri "$URI" --broker-pid "$BPID" --data-dir "$DATA" --label "$kind" \
        --queues "$N" --concurrency "$CONCURRENCY" --settle 5 2>>"$LOG" | emit "queues-delete-$kind"
    stop_current
    [ "$kind" = warren ] && rm -rf "$WARREN_DIR"
    [ "$kind" = rabbit ] && benches/rabbit-node.sh reset
done
echo "results: $OUT (log: $LOG)" >&2
