#!/usr/bin/env bash
# MQTT output throughput, pipit against a paho-mqtt publisher, side by side in one run.
# Needs mosquitto and python3-paho-mqtt: see tests/install-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench mqtt_throughput "$@"
