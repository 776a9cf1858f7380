#!/usr/bin/env bash
# Runs Warren's whole test suite: the Rust unit and integration tests, then
# the interop suites with real client libraries (installed into a local
# virtualenv on first run).
set -euo pipefail
cd "$(dirname "$0")"

echo "==> cargo test"
cargo test --all-targets

echo "==> interop suites"
./interop/run.sh
