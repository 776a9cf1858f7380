#!/usr/bin/env bash
# rabbitmqadmin, the Python CLI RabbitMQ's management plugin serves at
# /cli/rabbitmqadmin, unchanged, against a management API: lists, declares,
# publishes, gets, binds, deletes and exports, checking each answer.
#
#   interop/rabbitmqadmin/run.sh
#       build and start Warren (target/debug/warren, or WARREN_BIN) on free
#       loopback ports with a fresh data directory, run against it, stop it
#   ADMIN_HOST=127.0.0.1 ADMIN_PORT=15673 interop/rabbitmqadmin/run.sh
#       run against that management API instead (RabbitMQ, to compare)
#   RABBITMQADMIN_URL   where to fetch rabbitmqadmin from (default: the
#       reference RabbitMQ's, http://127.0.0.1:15673/cli/rabbitmqadmin);
#       the run is skipped (exit 0) when it cannot be fetched
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO_ROOT="$(cd "$HERE/../.." && pwd)"
work="$(mktemp -d)"
warren_pid=""
cleanup() {
    if [[ -n "$warren_pid" ]]; then
        kill "$warren_pid" 2>/dev/null || true
        wait "$warren_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

admin_url="${RABBITMQADMIN_URL:-http://127.0.0.1:15673/cli/rabbitmqadmin}"
if ! curl -sf "$admin_url" -o "$work/rabbitmqadmin"; then
    echo "==> rabbitmqadmin: cannot fetch $admin_url; skipped"
    exit 0
fi

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

if [[ -z "${ADMIN_PORT:-}" ]]; then
    warren_bin="${WARREN_BIN:-$REPO_ROOT/target/debug/warren}"
    if [[ -z "${WARREN_BIN:-}" ]]; then
        (cd "$REPO_ROOT" && cargo build --quiet --bin warren)
    fi
    ADMIN_HOST=127.0.0.1
    ADMIN_PORT="$(free_port)"
    "$warren_bin" --listen "127.0.0.1:$(free_port)" --management-listen "127.0.0.1:$ADMIN_PORT" \
        --data-dir "$work/data" --log-level warn >"$work/warren.log" 2>&1 &
    warren_pid=$!
    for _ in $(seq 1 100); do
        curl -sf -u guest:guest "http://127.0.0.1:$ADMIN_PORT/api/health/checks/alarms" >/dev/null && break
        sleep 0.1
    done
fi
ADMIN_HOST="${ADMIN_HOST:-127.0.0.1}"
echo "==> rabbitmqadmin against http://$ADMIN_HOST:$ADMIN_PORT/"

admin() {
    python3 "$work/rabbitmqadmin" -H "$ADMIN_HOST" -P "$ADMIN_PORT" -u guest -p guest "$@"
}

failures=0
# check "what" "expected substring" command...
check() {
    local what="$1" expected="$2"
    shift 2
    local out
    if out="$(admin "$@" 2>&1)" && [[ "$out" == *"$expected"* ]]; then
        echo "ok   $what"
    else
        echo "FAIL $what: rabbitmqadmin $*"
        echo "$out" | sed 's/^/     /'
        failures=$((failures + 1))
    fi
}

q="radmin-$$-q"
x="radmin-$$-x"
check "declare queue" "queue declared" declare queue name="$q" durable=false
check "list queues" "$q" list queues name messages
check "publish to the default exchange" "Message published" publish routing_key="$q" payload=hello
check "get (requeue)" "hello" get queue="$q" ackmode=ack_requeue_true
check "get (ack)" "hello" get queue="$q" ackmode=ack_requeue_false
check "declare exchange" "exchange declared" declare exchange name="$x" type=fanout durable=false
check "declare binding" "binding declared" declare binding source="$x" destination="$q"
check "list bindings" "$x" list bindings source destination
check "publish to a fanout exchange" "Message published" publish exchange="$x" routing_key=any payload=fanned
check "get through the binding" "fanned" get queue="$q" ackmode=ack_requeue_false
check "unroutable publish" "published but NOT routed" publish exchange=amq.direct routing_key="nowhere-$$" payload=lost
check "list exchanges" "$x" list exchanges name type
check "list vhosts" "/" list vhosts name
check "list users" "guest" list users
check "list permissions" "guest" list permissions
check "list connections" "" list connections
check "list channels" "" list channels
check "list consumers" "" list consumers
check "list nodes" "" list nodes
check "show overview" "" show overview
check "purge queue" "queue purged" purge queue name="$q"
check "export definitions" "Exported definitions" export "$work/definitions.json"
check "delete exchange" "exchange deleted" delete exchange name="$x"
check "delete queue" "queue deleted" delete queue name="$q"

if [[ "$failures" -gt 0 ]]; then
    echo "==> rabbitmqadmin: $failures failed"
    exit 1
fi
echo "==> rabbitmqadmin: all passed"
