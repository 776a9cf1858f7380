#!/usr/bin/env bash
set -euo pipefail
echo "interop: nothing yet"
