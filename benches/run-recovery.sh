#!/usr/bin/env bash
# Recovery time of a persistent backlog, Warren and RabbitMQ 3.10.
#
#   benches/run-recovery.sh
#
# For each round and mode: start a fresh broker, fill the durable queue
# `perf-recovery` with N persistent SIZE-byte messages (`perf fill`, confirms
# <= 1000 outstanding), stop the broker, then start it again through
# `perf wait-ready --exec … --expect N`, which times from just before the
# fork to (a) the first AMQP handshake and (b) a passive queue.declare that
# reports all N messages. Modes:
#   warren-clean  SIGTERM, wait for exit          warren-kill  kill -9
#   rabbit-clean  rabbitmqctl stop                rabbit-kill  kill -9 of beam.smp
# RabbitMQ is a private node (benches/rabbit-node.sh: rmqbench@localhost,
# port 5674), never the shared one on 5673. Nothing else may use the ports.
#
# Environment: WARREN_BIN (target/release/warren), N (1000000), SIZE (1024),
#   ROUNDS (3), MODES ("warren-clean rabbit-clean warren-kill rabbit-kill"),
#   WARREN_PORT (5791), WARREN_DIR (/tmp/perf-recovery-warren),
#   OUT (benches/results/recovery-<utc time>.jsonl), LOG (same name, .log),
#   PERF (the perf binary; built with cargo if unset).
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n 65536 2>/dev/null || true
WARREN_BIN=$(realpath "${WARREN_BIN:-target/release/warren}")
N=${N:-1000000}
SIZE=${SIZE:-1024}
ROUNDS=${ROUNDS:-3}
MODES=${MODES:-warren-clean rabbit-clean warren-kill rabbit-kill}
WARREN_PORT=${WARREN_PORT:-5791}
WARREN_DIR=${WARREN_DIR:-/tmp/perf-recovery-warren}
RMQB_PORT=${RMQB_PORT:-5674}
RMQB_BASE=${RMQB_BASE:-/tmp/rmqbench}
export RMQB_PORT RMQB_BASE
stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p benches/results
OUT=${OUT:-benches/results/recovery-$stamp.jsonl}
LOG=${LOG:-${OUT%.jsonl}.log}
if [ -z "${PERF:-}" ]; then
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
[ -x "$PERF" ] || { echo "no perf binary (PERF=$PERF)" >&2; exit 1; }
W_URI="amqp://guest:guest@127.0.0.1:$WARREN_PORT/%2f"
R_URI="amqp://guest:guest@127.0.0.1:$RMQB_PORT/%2f"
W_CMD="$WARREN_BIN --listen 127.0.0.1:$WARREN_PORT --management-listen 127.0.0.1:0 --data-dir $WARREN_DIR --log-level warn"
R_CMD="$(pwd)/benches/rabbit-node.sh run"
R_DATA="$RMQB_BASE/mnesia"
PIDFILE=$(mktemp /tmp/perf-recovery-pid.XXXXXX)

now_ms() { echo $(($(date +%s%N) / 1000000)); }
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
# Stop a broker we started by PID: SIGTERM, then SIGKILL to its group.
hard_stop() { # pid seconds
    alive "$1" || return 0
    kill -TERM "$1" 2>/dev/null || true
    wait_exit "$1" "$2" && return 0
    echo "pid $1 ignored SIGTERM for $2 s: SIGKILL to its group" | tee -a "$LOG" >&2
    kill -KILL -- "-$1" 2>/dev/null || kill -KILL "$1" 2>/dev/null || true
    wait_exit "$1" 10 || true
}
emit() { # id round extra-json : prefix stdin JSON lines with id, round, extra
    sed "s/^{/{\"id\":\"$1\",\"rec_round\":$2,$3/" | tee -a "$OUT"
}

CURRENT=""
# A RabbitMQ node starts Erlang's port mapper, which outlives it: stopped at
# the end if none ran before.
EPMD_BEFORE=$(benches/rabbit-node.sh epmd-pids)
cleanup() {
    if [ -n "$CURRENT" ] && alive "$CURRENT"; then
        case "$CURRENT_KIND" in
        rabbit) benches/rabbit-node.sh stop; hard_stop "$CURRENT" 60 ;;
        *) hard_stop "$CURRENT" 60 ;;
        esac
    fi
    rm -f "$PIDFILE"
    [ -n "$EPMD_BEFORE" ] || benches/rabbit-node.sh stop-epmd
}
trap cleanup EXIT

start_fresh() { # kind
    CURRENT_KIND=$1
    if [ "$1" = warren ]; then
        rm -rf "$WARREN_DIR"
        setsid $W_CMD >>"$LOG.warren" 2>&1 </dev/null &
        CURRENT=$!
        URI=$W_URI DATA=$WARREN_DIR
    else
        benches/rabbit-node.sh reset
        CURRENT=$(benches/rabbit-node.sh start)
        URI=$R_URI DATA=$R_DATA
    fi
    "$PERF" wait-ready --uri "$URI" --timeout 120 --label "$1-boot" 2>>"$LOG" >/dev/null
}

for round in $(seq 1 "$ROUNDS"); do
    for mode in $MODES; do
        kind=${mode%%-*}
        how=${mode#*-}
        echo "== round $round $mode (N=$N, $SIZE B)" | tee -a "$LOG" >&2
        start_fresh "$kind"
        pid=$CURRENT
        bpid=$pid
        [ "$kind" = rabbit ] && bpid=$(benches/rabbit-node.sh beam-pid "$pid")
        "$PERF" fill --uri "$URI" --broker-pid "$bpid" --label "$kind" --data-dir "$DATA" \
            --count "$N" --size "$SIZE" --confirm 1000 --queue perf-recovery 2>>"$LOG" |
            emit "rec-fill-$kind" "$round" "\"mode\":\"$mode\","
        t=$(now_ms)
        case "$mode" in
        warren-clean) kill -TERM "$pid"; wait_exit "$pid" 300 ;;
        warren-kill) kill -KILL "$pid"; wait_exit "$pid" 30 ;;
        rabbit-clean) benches/rabbit-node.sh stop; wait_exit "$pid" 300 ;;
        rabbit-kill) kill -KILL "$bpid"; wait_exit "$pid" 60 ;;
        esac || { echo "broker pid $pid did not exit" | tee -a "$LOG" >&2; hard_stop "$pid" 30; }
        stop_ms=$(($(now_ms) - t))
        CURRENT=""
        if [ "$kind" = warren ]; then cmd=$W_CMD; else cmd=$R_CMD; fi
        rm -f "$PIDFILE"
        set +e
        "$PERF" wait-ready --uri "$URI" --label "$kind" --exec "$cmd" --pid-file "$PIDFILE" \
            --broker-log "$LOG.$kind-restart" --queue perf-recovery --expect "$N" \
            --data-dir "$DATA" --timeout 900 --settle 30 2>>"$LOG" |
            emit "rec-$mode" "$round" "\"mode\":\"$mode\",\"stop\":\"$how\",\"stop_ms\":$stop_ms,"
        set -e
        CURRENT=$(cat "$PIDFILE" 2>/dev/null || true)
        CURRENT_KIND=$kind
        if [ -n "$CURRENT" ]; then
            if [ "$kind" = rabbit ]; then benches/rabbit-node.sh stop; fi
            hard_stop "$CURRENT" 120
        fi
        CURRENT=""
        [ "$kind" = warren ] && rm -rf "$WARREN_DIR"
        [ "$kind" = rabbit ] && benches/rabbit-node.sh reset
        sleep 2
    done
done
echo "results: $OUT (log: $LOG)" >&2
