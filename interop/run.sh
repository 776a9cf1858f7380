#!/usr/bin/env bash
# Interop suites: real client libraries against the warren binary.
#
#   interop/run.sh                 build target/debug/warren, start it on a free
#                                  loopback port per session, run the suites
#   AMQP_URL=amqp://... run.sh     run the same suites against that broker
#                                  instead (e.g. RabbitMQ, to check expectations)
#   interop/run.sh -k confirms     extra arguments go to pytest (every suite)
#   INTEROP_SUITES=celery run.sh   run only some suites (default: pika celery
#                                  amqpstorm aiormq aio_pika node definitions)
#   RABBITMQ_HTTP_URL=http://guest:guest@host:15672 RABBITMQ_AMQP_URL=amqp://...
#                                  the RabbitMQ the definitions suite exchanges
#                                  definitions with (skipped without them)
#
# Installs pinned client libraries into interop/.venv on first run (and again
# whenever requirements.txt changes), and the node suite's (amqplib) into
# interop/node/node_modules with `npm ci` (again whenever package-lock.json
# changes).
set -euo pipefail

INTEROP_DIR="$(cd "$(dirname "$0")" && pwd)"
REPO_ROOT="$(dirname "$INTEROP_DIR")"
VENV="$INTEROP_DIR/.venv"
REQUIREMENTS="$INTEROP_DIR/requirements.txt"
PYTHON="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# --- virtualenv with the pinned requirements -------------------------------
stamp="$VENV/.requirements.sha256"
want="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    echo "==> interop: creating virtualenv $VENV"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
fi
if [[ ! -f "$stamp" ]] || [[ "$(cat "$stamp")" != "$want" ]]; then
    echo "==> interop: installing $(basename "$REQUIREMENTS")"
    "$VENV/bin/python" -m pip install --quiet --no-input -r "$REQUIREMENTS"
    echo "$want" > "$stamp"
fi

# --- the broker binary ------------------------------------------------------
# Debug build: `cargo test` (run just before by run-tests.sh) has already
# built it, so this is normally a no-op.
# Not needed when the suites run against AMQP_URL or a WARREN_BIN given.
if [[ -z "${AMQP_URL:-}" && -z "${WARREN_BIN:-}" ]]; then
    echo "==> interop: cargo build (debug)"
    (cd "$REPO_ROOT" && cargo build --bin warren)
fi
export WARREN_BIN="${WARREN_BIN:-${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug/warren}"

# --- node modules (amqplib) ---------------------------------------------------
NODE_DIR="$INTEROP_DIR/node"
node_modules() {
    local stamp="$NODE_DIR/node_modules/.package-lock.sha256" want
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        echo "==> interop: node suite needs node and npm (not found)" >&2
        return 1
    fi
    want="$(sha256sum "$NODE_DIR/package-lock.json" | cut -d' ' -f1)"
    if [[ ! -f "$stamp" ]] || [[ "$(cat "$stamp")" != "$want" ]]; then
        echo "==> interop: npm ci (interop/node)"
        (cd "$NODE_DIR" && timeout 300 npm ci --no-audit --no-fund --loglevel=error) || return 1
        echo "$want" > "$stamp"
    fi
}

# --- suites -----------------------------------------------------------------
# INTEROP_SUITES selects the suites (default: all of them, in this order).
# Each suite is its own test session with its own broker (or AMQP_URL): the
# Python ones under pytest, node under node's test runner (interop/node/run.mjs).
# Extra arguments go to every pytest suite; a suite in which they select
# no test (pytest exit 5) does not count as a failure unless none ran. They
# mean nothing to the node suite, which then does not run.
SUITES="${INTEROP_SUITES:-pika celery amqpstorm aiormq aio_pika node definitions}"
# Every broker a suite starts serves its management API and metrics on
# ephemeral loopback ports, so suites and parallel runs never contend for
# 15672 and 15692.
export WARREN_MANAGEMENT_LISTEN=${WARREN_MANAGEMENT_LISTEN:-127.0.0.1:0}
export WARREN_PROMETHEUS_LISTEN=${WARREN_PROMETHEUS_LISTEN:-127.0.0.1:0}
# Seconds, per suite (each takes well under half of its bound).
declare -A BOUND=([pika]=300 [celery]=240 [amqpstorm]=120 [aiormq]=120 [aio_pika]=180 [node]=180 [definitions]=120)
status=0
ran_any=0
for suite in $SUITES; do
    if [[ -n "${AMQP_URL:-}" ]]; then
        echo "==> interop: $suite suite against AMQP_URL=$AMQP_URL"
    else
        echo "==> interop: $suite suite against $WARREN_BIN"
    fi
    rc=0
    if [[ $suite == node ]]; then
        if [[ $# -gt 0 ]]; then
            rc=5
        elif node_modules; then
            (cd "$NODE_DIR" && timeout --kill-after=15 "${BOUND[node]}" node run.mjs) || rc=$?
        else
            rc=1
        fi
    else
        (cd "$INTEROP_DIR/$suite" && \
            timeout --kill-after=15 "${BOUND[$suite]:-300}" "$VENV/bin/python" -m pytest "$@") || rc=$?
    fi
    case $rc in
        0) ran_any=1 ;;
        5) echo "==> interop: $suite: no test selected" ;;
        *) ran_any=1; status=$rc; echo "==> interop: $suite suite FAILED (exit $rc)" ;;
    esac
done
if [[ $status -eq 0 && $ran_any -eq 0 ]]; then
    exit 5
fi
exit $status
