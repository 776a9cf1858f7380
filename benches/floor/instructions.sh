#!/bin/bash
# Instructions a broker executes per message of the latency pattern, counted
# by callgrind (deterministic, unlike time on a shared machine):
#
#   benches/floor/instructions.sh [BROKER_BIN] [N1] [N2]
#
# Runs the broker (default target/release/warren) under valgrind twice, with
# `acli` driving N1 (1000) and then N2 (3000) messages (publish, deliver,
# ack), and prints the difference per message for the tokio worker threads
# as a whole and for the parts of them named below. Start-up, shutdown and
# the store's own threads cancel out or are not counted. Needs valgrind and
# cc; takes a minute or two.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$(realpath "${1:-$root/target/release/warren}")
n1=${2:-1000}
n2=${3:-3000}
port=${PORT:-5811}
tmp=$(mktemp -d)
vpid=""
# On any exit, stop the broker this script started (if still running).
trap '[ -z "$vpid" ] || kill "$vpid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
cc -O2 -o "$tmp/acli" "$root/benches/floor/acli.c"

# run N: the callgrind profile of the broker serving N messages.
run() {
    local n=$1
    valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$n" "$bin" \
        --listen "127.0.0.1:$port" --data-dir "$tmp/data.$n" --log-level warn \
        >/dev/null 2>&1 &
    vpid=$!
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.2
    done
    WARM=0 timeout 300 "$tmp/acli" "$port" "$n" >/dev/null
    kill -INT "$vpid"
    wait "$vpid" || true
    vpid=""
}
run "$n1"
run "$n2"
python3 - "$tmp/cg.$n1" "$tmp/cg.$n2" "$n1" "$n2" <<'PY'
import re, subprocess, sys
a, b, n1, n2 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
parts = [
    ("tokio worker threads, all", r"multi_thread::worker::run \["),
    ("connection tasks", r"warren::connection::serve::\{\{closure\}\} \["),
    ("  frames handled (process_input)", r"Connection::process_input \["),
    ("  the read loop's select", r"PollFn<F> as core::future::future::Future>::poll \["),
    ("  writing a batch (Batch::finish)", r"outbox::Batch::finish \["),
    ("worker parking (epoll, timers)", r"worker::Context::park_internal \["),
]
def totals(path):
    out = subprocess.run(["callgrind_annotate", "--threshold=100", "--inclusive=yes", path],
                         capture_output=True, text=True, check=True).stdout
    found = {}
    for label, pat in parts:
        for line in out.splitlines():
            if re.search(pat, line):
                found[label] = int(line.split()[0].replace(",", ""))
                break
    return found
ta, tb = totals(a), totals(b)
print(f"instructions per message (publish + deliver + ack), {n2} - {n1} messages")
for label, _ in parts:
    if label in ta and label in tb:
        print(f"{label:36} {(tb[label] - ta[label]) / (n2 - n1):9,.0f}")
    else:
        print(f"{label:36} {'not in the profile':>9}")
PY
