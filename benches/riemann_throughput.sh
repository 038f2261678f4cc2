#!/usr/bin/env bash
# Riemann client throughput, pipit against PyPI's riemann-client, side by side in one run.
# Needs riemann-client for $PIPIT_TEST_PYTHON (default python3): see tests/install-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench riemann_throughput "$@"
