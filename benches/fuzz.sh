#!/usr/bin/env bash
# Bounded fuzzing of Warren's wire decoders and connection state machine with
# AFL++ through cargo-afl, on the stable toolchain (fuzz/ is a crate of its
# own: the main build never compiles it).
#
# Usage: benches/fuzz.sh SECONDS [TARGET...]
#        benches/fuzz.sh --capture      regenerate the seed corpus
#   SECONDS  how long each target runs (one after another: one core each)
#   TARGET   frame method properties table connection (default: all)
#
# Prints one line per target: executions, their rate, paths found, crashes
# and hangs, and where AFL keeps them (fuzz/out/TARGET/default/crashes/).
# Exits 1 if any target found a crash. A crash reproduces without AFL:
#   (cd fuzz && cargo run --release --bin replay -- TARGET out/TARGET/default/crashes/id:...)
#
# Installs cargo-afl from crates.io (and builds its AFL++) when missing.
# The seed corpus (fuzz/corpus/TARGET/) holds what real clients sent: the
# pika interop suite and lapin integration tests, recorded through a proxy
# (fuzz/seeds/capture.py) by --capture.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
AFL_VERSION=0.18.2
ALL_TARGETS="frame method properties table connection"

ensure_afl() {
    if ! cargo afl --version >/dev/null 2>&1; then
        echo "==> fuzz: installing cargo-afl $AFL_VERSION"
        cargo install --locked cargo-afl --version "$AFL_VERSION"
    fi
    # Builds AFL++ once per toolchain; says so and fails when already built.
    cargo afl config --build >/dev/null 2>&1 || true
}

capture() {
    local dir port upstream proxy_pid warren_pid
    dir=$(mktemp -d /tmp/warren-fuzz-capture.XXXXXX)
    cargo build --bin warren
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    upstream=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    target/debug/warren --listen "127.0.0.1:$upstream" --management-listen 127.0.0.1:0 --data-dir "$dir/data" >"$dir/warren.log" 2>&1 &
    warren_pid=$!
    python3 fuzz/seeds/capture.py proxy "$port" "$upstream" "$dir/streams" &
    proxy_pid=$!
    trap 'kill $proxy_pid $warren_pid 2>/dev/null || true' EXIT
    sleep 1
    local url="amqp://guest:guest@127.0.0.1:$port/%2f"
    INTEROP_SUITES=pika AMQP_URL=$url interop/run.sh -q --deselect test_heartbeat.py || true
    WARREN_TEST_AMQP_URI=$url cargo test --test publish --test consume --test acks \
        --test confirms_tx --test dead_letter --test exchanges -q || true
    kill "$proxy_pid" "$warren_pid"
    wait "$proxy_pid" "$warren_pid" 2>/dev/null || true
    trap - EXIT
    rm -rf fuzz/corpus
    python3 fuzz/seeds/capture.py split "$dir/streams" fuzz/corpus 40
    rm -rf "$dir"
}

if [[ ${1:-} == --capture ]]; then
    capture
    exit 0
fi

SECONDS_PER_TARGET=${1:?usage: benches/fuzz.sh SECONDS [TARGET...]}
shift
TARGETS=${*:-$ALL_TARGETS}

ensure_afl
echo "==> fuzz: building the targets (cargo afl build --release)"
(cd fuzz && cargo afl build --release --features afl --bins)

export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1 AFL_QUIET=1
export AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SKIP_CRASHES=1
found=0
for target in $TARGETS; do
    out="$REPO/fuzz/out/$target"
    rm -rf "$out"
    mkdir -p "$out"
    timeout_ms=1000
    extra=()
    if [[ $target == connection ]]; then
        # An input is a whole connection to an in-process broker; the
        # target itself fails one the broker leaves unanswered for 10 s.
        timeout_ms=20000
        export WARREN_FUZZ_DIR="$out/brokers"
        # Inputs per forked child: each child starts its own broker.
        export AFL_FUZZER_LOOPCOUNT=10000
    fi
    echo "==> fuzz: $target for ${SECONDS_PER_TARGET}s"
    cargo afl fuzz -V "$SECONDS_PER_TARGET" -t "$timeout_ms" -m none "${extra[@]}" \
        -i "$REPO/fuzz/corpus/$target" -o "$out" -- "$REPO/fuzz/target/release/fuzz_$target" \
        >"$out/afl.log" 2>&1 || echo "==> fuzz: afl-fuzz exited $? (log: $out/afl.log)"
    rm -rf "$out/brokers"
    stats="$out/default/fuzzer_stats"
    if [[ ! -f $stats ]]; then
        echo "$target: no statistics (see $out/afl.log)"
        tail -5 "$out/afl.log"
        found=1
        continue
    fi
    get() { sed -n "s/^$1 *: *//p" "$stats"; }
    crashes=$(get saved_crashes)
    echo "$target: $(get execs_done) executions in $(get run_time)s ($(get execs_per_sec)/s)," \
        "$(get corpus_count) paths, $crashes crashes, $(get saved_hangs) hangs" \
        "(fuzz/out/$target/default/)"
    [[ ${crashes:-0} -gt 0 ]] && found=1
done
exit $found
