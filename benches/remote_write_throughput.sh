#!/usr/bin/env bash
# Prometheus remote-write throughput, pipit against a Python client (protobuf + python-snappy),
# side by side in one run against one VictoriaMetrics. Needs victoria-metrics and python-snappy:
# see tests/install-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench remote_write_throughput "$@"
