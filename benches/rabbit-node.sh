#!/usr/bin/env bash
# A private RabbitMQ node for the benchmarks that need a fresh broker or have
# to stop and start one (backlog, connections, startup, recovery), so the
# shared node (rmqstd@localhost, port 5673) keeps running. Same version and
# configuration as the shared node, other ports and its own directories.
#
# Usage: benches/rabbit-node.sh run | start | stop | reset | beam-pid SCRIPT_PID
#                               | epmd-pids | stop-epmd
#   run       exec rabbitmq-server in the foreground (what `perf --exec` starts)
#   start     run it in the background (own process group), print the PID of
#             the start script (the broker is its beam.smp child)
#   stop      rabbitmqctl -n NODE stop (bounded: 120 s)
#   reset     delete its mnesia and log directories (stop it first)
#   beam-pid  the beam.smp PID under a start script's PID
#   epmd-pids the PIDs of Erlang's port mapper, which a node starts if none
#             runs and which outlives it
#   stop-epmd stop it (for a script that found none running when it began)
# Environment: RMQB_NODE (rmqbench@localhost), RMQB_PORT (5674),
#   RMQB_DIST_PORT (25674), RMQB_BASE (/tmp/rmqbench), RMQB_MGMT_PORT (unset:
#   no management listener; set: its port on 127.0.0.1, for a node whose
#   enabled plugins include rabbitmq_management), RMQB_PROM_PORT (the same
#   for rabbitmq_prometheus)
set -euo pipefail
NODE=${RMQB_NODE:-rmqbench@localhost}
PORT=${RMQB_PORT:-5674}
DIST=${RMQB_DIST_PORT:-25674}
BASE=${RMQB_BASE:-/tmp/rmqbench}

setup() {
    mkdir -p "$BASE/mnesia" "$BASE/log"
    printf 'listeners.tcp.default = 127.0.0.1:%s\nloopback_users.guest = true\n' "$PORT" \
        >"$BASE/rabbitmq.conf"
    if [[ -n ${RMQB_MGMT_PORT:-} ]]; then
        printf 'management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = %s\n' "$RMQB_MGMT_PORT" \
            >>"$BASE/rabbitmq.conf"
    fi
    if [[ -n ${RMQB_PROM_PORT:-} ]]; then
        printf 'prometheus.tcp.ip = 127.0.0.1\nprometheus.tcp.port = %s\n' "$RMQB_PROM_PORT" \
            >>"$BASE/rabbitmq.conf"
    fi
}

case "${1:-}" in
run)
    setup
    exec env RABBITMQ_NODE_PORT="$PORT" RABBITMQ_NODENAME="$NODE" \
        RABBITMQ_MNESIA_BASE="$BASE/mnesia" RABBITMQ_LOG_BASE="$BASE/log" \
        RABBITMQ_CONFIG_FILE="$BASE/rabbitmq" RABBITMQ_DIST_PORT="$DIST" \
        /usr/lib/rabbitmq/bin/rabbitmq-server
    ;;
start)
    setup
    setsid "$0" run >"$BASE/out.log" 2>&1 </dev/null &
    echo $!
    ;;
stop)
    # The lib script, not /usr/sbin/rabbitmqctl: that one switches to the
    # rabbitmq user, whose Erlang cookie differs from the one the node (run
    # as this user) has.
    timeout 120 /usr/lib/rabbitmq/bin/rabbitmqctl -n "$NODE" stop >/dev/null 2>&1 || true
    ;;
reset)
    rm -rf "$BASE/mnesia" "$BASE/log"
    ;;
beam-pid)
    pgrep -P "${2:?script pid}" beam.smp
    ;;
epmd-pids)
    pgrep -x epmd || true
    ;;
stop-epmd)
    for pid in $(pgrep -x epmd || true); do kill "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 50); do pgrep -x epmd >/dev/null || break; sleep 0.1; done
    ;;
*)
    sed -n '2,19p' "$0" >&2
    exit 2
    ;;
esac
