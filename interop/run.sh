#!/usr/bin/env bash
# Interop suites: real client libraries against the warren binary.
#
#   interop/run.sh                 build target/debug/warren, start it on a free
#                                  loopback port per session, run the suites
#   AMQP_URL=amqp://... run.sh     run the same suites against that broker
#                                  instead (e.g. RabbitMQ, to check expectations)
#   interop/run.sh -k confirms     extra arguments go to pytest
#
# Installs pinned client libraries into interop/.venv on first run (and again
# whenever requirements.txt changes).
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
echo "==> interop: cargo build (debug)"
(cd "$REPO_ROOT" && cargo build --bin warren)
export WARREN_BIN="${WARREN_BIN:-$REPO_ROOT/target/debug/warren}"

# --- pika -------------------------------------------------------------------
if [[ -n "${AMQP_URL:-}" ]]; then
    echo "==> interop: pika suite against AMQP_URL=$AMQP_URL"
else
    echo "==> interop: pika suite against $WARREN_BIN"
fi
cd "$INTEROP_DIR/pika"
# Each test has its own timeout (pytest.ini); this bounds the whole run.
exec timeout --kill-after=15 600 "$VENV/bin/python" -m pytest "$@"
