#!/usr/bin/env bash
# The one command that passes every pipit test on a fresh Debian machine: installs what the tests
# need (the real backends the outputs are tested against), then runs the whole suite, the TLS
# tests, which need the `tls` feature, the injected panics, which need `fault-injection`, and the
# unit tests of the small variant (which check that what it leaves out is refused by name).
set -euo pipefail
cd "$(dirname "$0")/.."
tests/install-deps.sh
cargo test --locked --no-fail-fast --all-targets
cargo test --locked --features tls --test riemann_tls
cargo test --locked --features tls --test http_server_tls
cargo test --locked --features tls --test mqtt_tls
# Panics injected at named points (the fault-injection feature, never in a package): no thread of
# the agent dies silently.
cargo test --locked --features fault-injection --test faults
cargo test --locked --no-default-features --features small --lib
# The fuzz targets (fuzz/, their own workspace) must keep compiling; fuzzing itself is
# fuzz/run.sh, with nightly (FUZZING.md).
cargo check --locked --manifest-path fuzz/Cargo.toml --bins
