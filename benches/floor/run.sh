#!/bin/bash
# The latency floor of the s6 pattern on this machine, without the perf tool:
# every millisecond one 256-byte message goes out on one loopback connection
# and comes back on another, then a small ack goes back (see RESULTS.md,
# "Where the latency goes").
#
#   benches/floor/run.sh [AMQP_PORT ...]
#
# Runs `cli` against `fwd` (plain TCP forwarding, no AMQP), then `acli` (the
# same with AMQP frames: basic.qos 1000, publish, deliver, ack on queue
# "floor-latency") against each broker already listening on 127.0.0.1 at the
# given ports with guest/guest. ROUNDS (3), COUNT (10000 per round),
# FLOOR_PORT (5801). Needs a C compiler (cc).
set -euo pipefail
cd "$(dirname "$0")"
ROUNDS=${ROUNDS:-3}
COUNT=${COUNT:-10000}
FLOOR_PORT=${FLOOR_PORT:-5801}
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
for p in fwd cli acli; do
    cc -O2 -o "$bin/$p" "$p.c"
done
for r in $(seq 1 "$ROUNDS"); do
    "$bin/fwd" "$FLOOR_PORT" &
    fwd_pid=$!
    sleep 0.2
    echo "round $r  C forwarder, no AMQP : $(timeout 60 "$bin/cli" "$FLOOR_PORT" "$COUNT")"
    kill "$fwd_pid" 2>/dev/null || true
    wait "$fwd_pid" 2>/dev/null || true
    for port in "$@"; do
        echo "round $r  AMQP broker on :$port : $(timeout 60 "$bin/acli" "$port" "$COUNT")"
    done
done
