#!/usr/bin/env bash
# The smallest a static glibc build of a Rust agent can be here: a program that does the least any
# agent does (starts a thread, reads a /proc file, formats a float, connects over TCP to a numeric
# address, prints), built and linked as build-static.sh builds pipit (release profile of
# Cargo.toml: opt-level "z", LTO, one codegen unit, stripped; +crt-static, DT_RELR). Prints its
# size in bytes: the part of any budget that pipit's own code cannot use.
#
#   benches/size_floor.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/work.sh
source benches/work.sh

host=$(rustc -vV | sed -n 's/^host: //p')
mkdir -p "$WORK/floor/src"
cat > "$WORK/floor/Cargo.toml" <<'TOML'
[package]
name = "floor"
version = "0.1.0"
edition = "2021"

[profile.release]
opt-level = "z"
lto = true
codegen-units = 1
strip = true
TOML
cat > "$WORK/floor/src/main.rs" <<'RUST'
use std::io::Write;
use std::net::{SocketAddr, TcpStream};

fn main() {
    let reader = std::thread::spawn(|| std::fs::read_to_string("/proc/loadavg").unwrap_or_default());
    let text = reader.join().unwrap_or_default();
    if let Ok(mut stream) = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], 2003))) {
        let _ = writeln!(stream, "floor {} 1", text.len() as f64 / 3.0);
    }
    println!("{text}");
}
RUST
RUSTFLAGS="-C target-feature=+crt-static -C link-arg=-Wl,-z,pack-relative-relocs" \
    cargo build --quiet --release --manifest-path "$WORK/floor/Cargo.toml" --target "$host" \
    --target-dir "$WORK/target"
stat -c '%s bytes' "$WORK/target/$host/release/floor"
