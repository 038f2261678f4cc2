#!/usr/bin/env bash
# Graphite throughput, pipit against aiographite 0.2.0, in one run (see graphite_throughput.rs).
# Installs aiographite for $PIPIT_BENCH_PYTHON (default python3) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PIPIT_BENCH_PYTHON:-python3}"
if ! "$PYTHON" -c 'import aiographite' 2>/dev/null; then
    "$PYTHON" -m pip install --quiet aiographite==0.2.0
fi
PIPIT_BENCH_PYTHON="$PYTHON" cargo bench --bench graphite_throughput
