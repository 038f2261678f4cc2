#!/usr/bin/env bash
# Builds a stripped, static pipit binary and prints its size.
#
#   packaging/build-static.sh [TARGET] [-- extra cargo args, e.g. --no-default-features]
#
# With a musl target installed (x86_64-unknown-linux-musl, mips-unknown-linux-musl,
# armv7-unknown-linux-musleabihf, ...), that target is used: musl binaries are static by default.
# Without one, the host's gnu target is linked statically with crt-static. An explicit --target is
# always passed: without it RUSTFLAGS would also apply to proc-macro crates, which cannot be static.
set -euo pipefail
cd "$(dirname "$0")/.."

host=$(rustc -vV | sed -n 's/^host: //p')
target=${1:-}
if [ -n "$target" ] && [ "$target" != "--" ]; then
    shift
else
    musl=${host/-gnu/-musl}
    if rustup target list --installed 2>/dev/null | grep -qx "$musl"; then
        target=$musl
    else
        target=$host
    fi
fi
[ "${1:-}" = "--" ] && shift

RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --locked --target "$target" "$@"

bin="target/$target/release/pipit"
if file "$bin" 2>/dev/null | grep -q 'dynamically linked'; then
    echo "error: $bin is dynamically linked" >&2
    exit 1
fi
printf '%s %s bytes\n' "$bin" "$(stat -c %s "$bin")"
