#!/usr/bin/env bash
# Shared by the benchmark scripts: one temporary directory, $WORK, and the processes started in
# PIDS, all stopped by pid (and $WORK removed) when the calling script exits. Sourced from the
# repository root, not run.

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# free_port: a TCP port of 127.0.0.1 that nothing listens on (bind port 0, read it, close).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
