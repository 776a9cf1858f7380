#!/usr/bin/env bash
# Browser test of the management UI (interop/ui/ui.test.mjs): Debian's
# chromium, driven by playwright-core, against a management server.
#
#   UI_BASE_URL=http://127.0.0.1:15672/ interop/ui/run.sh
#       test the UI that server serves at / (Warren's management port)
#   UI_UPSTREAM=http://127.0.0.1:15673 interop/ui/run.sh
#       start interop/ui/devserver.py on a free loopback port, serving the UI
#       from src/http/ui/ and forwarding /api/ to that management API (e.g.
#       RabbitMQ's), and test through it; this is the default, with
#       UI_UPSTREAM=http://127.0.0.1:15673 (the reference RabbitMQ)
#   UI_TARGET=warren interop/ui/run.sh
#       build and start Warren (target/debug/warren, or WARREN_BIN) on free
#       loopback ports with a fresh data directory, test the UI it serves on
#       its management port, its AMQP port for the connection test, and stop it
#   UI_USER / UI_PASSWORD   credentials (default guest / guest)
#   UI_AMQP_URL   the same broker's AMQP URL, for the connection test (skipped
#                 without it; defaults to the reference RabbitMQ's when
#                 UI_UPSTREAM is left at its default)
#
# Needs /usr/bin/chromium (apt-get install chromium chromium-driver) or
# CHROMIUM=path. Installs playwright-core with `npm ci` from the committed
# lock file on first run (again whenever it changes). Screenshots go to
# target/ui-screenshots/. The whole run is bounded at 4 minutes.
set -euo pipefail

UI_TEST_DIR="$(cd "$(dirname "$0")" && pwd)"
REPO_ROOT="$(cd "$UI_TEST_DIR/../.." && pwd)"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
export CHROMIUM

if [[ ! -x "$CHROMIUM" ]]; then
    echo "==> ui: $CHROMIUM not found (apt-get install chromium chromium-driver)" >&2
    exit 1
fi

stamp="$UI_TEST_DIR/node_modules/.package-lock.sha256"
want="$(sha256sum "$UI_TEST_DIR/package-lock.json" | cut -d' ' -f1)"
if [[ ! -f "$stamp" ]] || [[ "$(cat "$stamp")" != "$want" ]]; then
    echo "==> ui: npm ci (interop/ui)"
    (cd "$UI_TEST_DIR" && timeout 300 npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" > "$stamp"
fi

devserver_pid=""
warren_pid=""
warren_dir=""
stop_devserver() {
    if [[ -n "$devserver_pid" ]]; then
        kill "$devserver_pid" 2>/dev/null || true
        wait "$devserver_pid" 2>/dev/null || true
    fi
    if [[ -n "$warren_pid" ]]; then
        kill "$warren_pid" 2>/dev/null || true
        wait "$warren_pid" 2>/dev/null || true
    fi
    if [[ -n "$warren_dir" ]]; then
        rm -rf "$warren_dir"
    fi
}
trap stop_devserver EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

if [[ "${UI_TARGET:-}" == "warren" ]]; then
    warren_bin="${WARREN_BIN:-$REPO_ROOT/target/debug/warren}"
    if [[ -z "${WARREN_BIN:-}" ]]; then
        (cd "$REPO_ROOT" && cargo build --quiet --bin warren)
    fi
    amqp_port="$(free_port)"
    http_port="$(free_port)"
    warren_dir="$(mktemp -d)"
    "$warren_bin" --listen "127.0.0.1:$amqp_port" --management-listen "127.0.0.1:$http_port" \
        --data-dir "$warren_dir/data" --log-level warn >"$warren_dir/warren.log" 2>&1 &
    warren_pid=$!
    for _ in $(seq 1 100); do
        curl -sf -u guest:guest "http://127.0.0.1:$http_port/api/health/checks/alarms" >/dev/null && break
        sleep 0.1
    done
    export UI_BASE_URL="http://127.0.0.1:$http_port/"
    export UI_AMQP_URL="amqp://guest:guest@127.0.0.1:$amqp_port/%2f"
    echo "==> ui: Warren on $UI_BASE_URL (AMQP port $amqp_port)"
fi

if [[ -z "${UI_BASE_URL:-}" ]]; then
    if [[ -z "${UI_UPSTREAM:-}" ]]; then
        export UI_AMQP_URL="${UI_AMQP_URL:-amqp://guest:guest@127.0.0.1:5673/%2f}"
    fi
    upstream="${UI_UPSTREAM:-http://127.0.0.1:15673}"
    log="$(mktemp)"
    python3 "$UI_TEST_DIR/devserver.py" --upstream "$upstream" --port 0 --quiet >"$log" 2>&1 &
    devserver_pid=$!
    for _ in $(seq 1 50); do
        url="$(sed -n 's#^devserver: \(http://[^ ]*\) .*#\1#p' "$log")"
        [[ -n "$url" ]] && break
        sleep 0.1
    done
    if [[ -z "${url:-}" ]]; then
        echo "==> ui: devserver did not start:" >&2
        cat "$log" >&2
        exit 1
    fi
    rm -f "$log"
    export UI_BASE_URL="$url"
    echo "==> ui: devserver $UI_BASE_URL -> $upstream"
fi

echo "==> ui: testing $UI_BASE_URL (screenshots in target/ui-screenshots/)"
mkdir -p "$REPO_ROOT/target/ui-screenshots"
cd "$UI_TEST_DIR"
timeout --kill-after=15 240 node --test --test-concurrency=1 --test-timeout=120000 ui.test.mjs
