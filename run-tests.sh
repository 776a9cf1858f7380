#!/usr/bin/env bash
# Runs Warren's whole test suite: the Rust unit and integration tests, then
# the interop suites with real client libraries (installed into a local
# virtualenv on first run).
set -euo pipefail
cd "$(dirname "$0")"

echo "==> cargo test"
# The README test runs examples/quickstart as a program: build the examples
# as executables first (--all-targets builds them in test mode only).
cargo build --examples
cargo test --all-targets
cargo test --doc

echo "==> interop suites"
./interop/run.sh
