#!/usr/bin/env bash
# Runs Warren's whole test suite, checked against the reference first:
#
#   1. builds the crate, its examples and every test target;
#   2. the RabbitMQ pass: where RabbitMQ is installed (or can be: Debian's
#      `rabbitmq-server`, installed here with apt-get when running as root,
#      as on a fresh CI machine), starts a private node on its own ports and
#      directories, runs every Rust integration test against it
#      (WARREN_TEST_AMQP_URI) and the interop suites (AMQP_URL), and stops
#      it (and the epmd it started, if none ran before);
#   3. the Warren pass: unit, integration and doc tests against an
#      in-process Warren, then the interop suites against the `warren`
#      binary.
#
# Where RabbitMQ cannot be had, one line says so and the Warren pass runs
# alone (under CI=true the run then fails: CI always checks against
# RabbitMQ). Both passes run even when the first fails; the script fails if
# either did. WARREN_SKIP_RABBITMQ=1 skips the RabbitMQ pass (local runs).
# The private node: RMQ_TEST_PORT (default: the first free of 5690-5699),
# its distribution port is 20000 above it, name warren-test-<pid>@localhost,
# directories under a fresh temp dir.
set -euo pipefail
cd "$(dirname "$0")"

elapsed() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

echo "==> build"
# The README test runs examples/quickstart as a program: build the examples
# as executables first (--all-targets builds them in test mode only).
cargo build --examples
cargo test --all-targets --no-run
cargo build --bin warren

# --- the reference RabbitMQ node ---------------------------------------------
RMQ_SERVER=/usr/lib/rabbitmq/bin/rabbitmq-server
RMQ_BASE=""
RMQ_SCRIPT_PID=""
RMQ_BEAM_PID=""
RMQ_EPMD_BEFORE=""
RMQ_WHY=""
RMQ_MGMT_PORT=""
RMQ_PROM_PORT=""
RMQ_HTTP_URI=""

# Installs Debian packages when we are root with apt-get. The maintainer
# scripts of rabbitmq-server and prometheus would start the system's own
# services (RabbitMQ on 5672, Prometheus on 9090): a policy-rc.d that
# refuses every start keeps the install from starting anything.
APT_UPDATED=0
apt_install() {
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
        return 1
    fi
    echo "==> installing $* (apt-get)"
    local policy=/usr/sbin/policy-rc.d made_policy=0 ok=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
    fi
    if { [[ $APT_UPDATED -eq 1 ]] || timeout 600 apt-get update -qq >/dev/null; } &&
        DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq \
            --no-install-recommends "$@" >/dev/null; then
        ok=1
        APT_UPDATED=1
    fi
    [[ $made_policy -eq 1 ]] && rm -f "$policy"
    [[ $ok -eq 1 ]]
}

# Installs Debian's rabbitmq-server when it is missing and we are root.
rabbitmq_install() {
    [[ -x $RMQ_SERVER ]] && return 0
    if ! apt_install rabbitmq-server || [[ ! -x $RMQ_SERVER ]]; then
        RMQ_WHY="rabbitmq-server is not installed and could not be (apt-get, as root)"
        return 1
    fi
}

# The other programs the suites drive: a real Prometheus scrapes the
# metrics (tests/prometheus.rs) and Debian's Chromium runs the UI's browser
# test (interop/ui). Each suite says so and skips when its program is
# missing; CI installs them.
tools_install() {
    local want=()
    command -v prometheus >/dev/null || want+=(prometheus)
    [[ -x /usr/bin/chromium ]] || want+=(chromium)
    ((${#want[@]} == 0)) && return 0
    apt_install "${want[@]}" || echo "==> could not install ${want[*]}; the suites that need them skip"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# True when the port answers the AMQP protocol header with a method frame
# (connection.start): the broker has booted and takes clients. (Not
# `rabbitmqctl await_startup`: the CLI's own VM can take half a minute to
# start on a loaded machine.)
amqp_answers() {
    local first
    first=$(timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
        printf "AMQP\x00\x00\x09\x01" >&3
        head -c 1 <&3 | od -An -tu1' "$1" 2>/dev/null) || return 1
    [[ ${first// /} == 1 ]]
}

# The management listener answers an HTTP request (any status).
http_answers() {
    local status
    status=$(timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
        printf "GET /api/overview HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3
        head -c 12 <&3' "$1" 2>/dev/null) || return 1
    [[ $status == HTTP/1.* ]]
}

# The node's beam.smp: the start script's child (or the script itself, once
# it has exec'd the VM).
beam_pid() {
    if [[ $(ps -o comm= -p "$RMQ_SCRIPT_PID" 2>/dev/null) == beam.smp ]]; then
        echo "$RMQ_SCRIPT_PID"
    else
        pgrep -P "$RMQ_SCRIPT_PID" -x beam.smp || true
    fi
}

rabbitmq_start() {
    local port=${RMQ_TEST_PORT:-}
    if [[ -z $port ]]; then
        for p in $(seq 5690 5699); do
            if port_free "$p" && port_free $((p + 20000)) && port_free $((p + 10000)) &&
                port_free $((p + 10010)); then
                port=$p
                break
            fi
        done
    fi
    if [[ -z $port ]]; then
        RMQ_WHY="no free port for a private node in 5690-5699"
        return 1
    fi
    RMQ_PORT=$port
    RMQ_NODE="warren-test-$$@localhost"
    RMQ_BASE=$(mktemp -d /tmp/warren-test-rabbitmq.XXXXXX)
    RMQ_EPMD_BEFORE=$(pgrep -x epmd || true)
    # The management plugin: the tests that manage users, vhosts and
    # permissions do it through its HTTP API (WARREN_TEST_HTTP_URI).
    RMQ_MGMT_PORT=$((port + 10000))
    RMQ_PROM_PORT=$((port + 10010))
    echo '[rabbitmq_management,rabbitmq_prometheus].' >"$RMQ_BASE/enabled_plugins"
    # benches/rabbit-node.sh writes the config (loopback listeners only) and
    # runs the node in the foreground of its own session.
    RMQB_NODE=$RMQ_NODE RMQB_PORT=$port RMQB_DIST_PORT=$((port + 20000)) RMQB_BASE=$RMQ_BASE \
        RMQB_MGMT_PORT=$RMQ_MGMT_PORT RMQB_PROM_PORT=$RMQ_PROM_PORT \
        RABBITMQ_ENABLED_PLUGINS_FILE="$RMQ_BASE/enabled_plugins" \
        setsid benches/rabbit-node.sh run >"$RMQ_BASE/out.log" 2>&1 </dev/null &
    RMQ_SCRIPT_PID=$!
    local deadline=$((SECONDS + 180))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$RMQ_SCRIPT_PID" 2>/dev/null; then
            RMQ_WHY="the private RabbitMQ node exited while booting (the tail of its output is above)"
            tail -20 "$RMQ_BASE/out.log" >&2 || true
            return 1
        fi
        [[ -z $RMQ_BEAM_PID ]] && RMQ_BEAM_PID=$(beam_pid)
        if amqp_answers "$port" && http_answers "$RMQ_MGMT_PORT"; then
            RMQ_URI="amqp://guest:guest@127.0.0.1:$port/%2f"
            RMQ_HTTP_URI="http://guest:guest@127.0.0.1:$RMQ_MGMT_PORT"
            return 0
        fi
        sleep 1
    done
    RMQ_WHY="the private RabbitMQ node did not boot within 180 s (the tail of its output is above)"
    tail -20 "$RMQ_BASE/out.log" >&2 || true
    return 1
}

# Stops the node by PID (SIGTERM is RabbitMQ's orderly shutdown), then the
# epmd it started if none ran before.
rabbitmq_stop() {
    [[ -z $RMQ_SCRIPT_PID ]] && return 0
    local pid=${RMQ_BEAM_PID:-$(beam_pid)}
    [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 900); do
        kill -0 "$RMQ_SCRIPT_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$RMQ_SCRIPT_PID" 2>/dev/null; then
        kill -KILL -- "-$RMQ_SCRIPT_PID" 2>/dev/null || true
    fi
    wait "$RMQ_SCRIPT_PID" 2>/dev/null || true
    RMQ_SCRIPT_PID=""
    if [[ -z $RMQ_EPMD_BEFORE ]]; then
        for epmd in $(pgrep -x epmd || true); do kill "$epmd" 2>/dev/null || true; done
    fi
    [[ -n $RMQ_BASE ]] && rm -rf "$RMQ_BASE"
    RMQ_BASE=""
    return 0
}
trap rabbitmq_stop EXIT
trap 'exit 130' INT TERM

status=0
tools_install
if [[ -n ${WARREN_SKIP_RABBITMQ:-} ]]; then
    echo "==> RabbitMQ pass skipped (WARREN_SKIP_RABBITMQ is set)"
elif boot=$SECONDS && rabbitmq_install && rabbitmq_start; then
    start=$SECONDS
    echo "==> RabbitMQ pass: RabbitMQ $(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo '?')," \
        "node $RMQ_NODE at $RMQ_URI (booted in $(elapsed $((SECONDS - boot))))"
    rabbit_status=0
    WARREN_TEST_AMQP_URI=$RMQ_URI WARREN_TEST_HTTP_URI=$RMQ_HTTP_URI cargo test --no-fail-fast --test '*' ||
        rabbit_status=$?
    # The definitions suite moves definitions between this node and a
    # Warren it starts, both ways.
    AMQP_URL=$RMQ_URI RABBITMQ_AMQP_URL=$RMQ_URI RABBITMQ_HTTP_URL=$RMQ_HTTP_URI \
        ./interop/run.sh || rabbit_status=$?
    # The management API's own clients, checked against this node and then
    # against Warren: rabbitmqadmin as the node serves it, and Warren's
    # metric families against the node's rabbitmq_prometheus.
    echo "==> RabbitMQ pass: rabbitmqadmin against RabbitMQ, then against Warren"
    RABBITMQADMIN_URL="http://127.0.0.1:$RMQ_MGMT_PORT/cli/rabbitmqadmin" \
        ADMIN_HOST=127.0.0.1 ADMIN_PORT=$RMQ_MGMT_PORT ./interop/rabbitmqadmin/run.sh ||
        rabbit_status=$?
    RABBITMQADMIN_URL="http://127.0.0.1:$RMQ_MGMT_PORT/cli/rabbitmqadmin" \
        ./interop/rabbitmqadmin/run.sh || rabbit_status=$?
    WARREN_TEST_PROMETHEUS_URI="http://127.0.0.1:$RMQ_PROM_PORT" \
        cargo test --test prometheus || rabbit_status=$?
    rabbitmq_stop
    echo "==> RabbitMQ pass: $([[ $rabbit_status -eq 0 ]] && echo ok || echo FAILED) in $(elapsed $((SECONDS - start)))"
    [[ $rabbit_status -ne 0 ]] && status=$rabbit_status
else
    rabbitmq_stop
    echo "==> RabbitMQ pass skipped: no RabbitMQ to check against ($RMQ_WHY); running the Warren pass alone"
    # CI always checks against RabbitMQ: there, not having it fails the run
    # (after the Warren pass).
    [[ ${CI:-} == true ]] && status=1
fi

start=$SECONDS
echo "==> Warren pass: cargo test"
warren_status=0
cargo test --no-fail-fast --all-targets || warren_status=$?
cargo test --doc || warren_status=$?
echo "==> Warren pass: interop suites"
./interop/run.sh || warren_status=$?
echo "==> Warren pass: the management UI in Chromium"
if [[ -x ${CHROMIUM:-/usr/bin/chromium} ]]; then
    UI_TARGET=warren ./interop/ui/run.sh || warren_status=$?
else
    echo "==> Warren pass: no Chromium (apt-get install chromium); the UI test is skipped"
    [[ ${CI:-} == true ]] && warren_status=1
fi
echo "==> Warren pass: $([[ $warren_status -eq 0 ]] && echo ok || echo FAILED) in $(elapsed $((SECONDS - start)))"
[[ $warren_status -ne 0 ]] && status=$warren_status
exit $status
