#!/usr/bin/env bash
# Builds a stripped, static pipit binary and prints its path and size.
#
#   packaging/build-static.sh [TARGET] [-- extra cargo args, e.g. --no-default-features]
#
# TARGET defaults to the host's musl target (x86_64-unknown-linux-musl on x86_64) when that Rust
# target is installed, else to the host's own (gnu) target. Any other installed target can be named:
# mips-unknown-linux-musl, armv7-unknown-linux-musleabihf, aarch64-unknown-linux-musl, ... (a cross
# target also needs a linker: set CARGO_TARGET_<TARGET>_LINKER, see docs/packaging.md).
#
# Every build is linked with -C target-feature=+crt-static (musl targets are static by default; the
# gnu target needs it) and always with an explicit --target: without one, RUSTFLAGS would also reach
# the proc-macro crates, which are shared libraries and cannot be linked statically.
#
# The last line of output is "<path> <size> bytes". CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
    echo "build-static: $*" >&2
    exit 1
}

host=$(rustc -vV | sed -n 's/^host: //p')
[ -n "$host" ] || die "cannot read the host target from rustc -vV"

installed_targets() {
    if command -v rustup >/dev/null 2>&1; then
        rustup target list --installed 2>/dev/null
    else
        echo "$host"
    fi
}

target=""
if [ $# -gt 0 ] && [ "$1" != "--" ]; then
    case "$1" in
        -*) die "unknown option $1; usage: $0 [TARGET] [-- cargo args]" ;;
    esac
    target=$1
    shift
fi
if [ $# -gt 0 ]; then
    [ "$1" = "--" ] || die "unexpected argument $1; cargo arguments go after --"
    shift
fi

if [ -z "$target" ]; then
    musl=${host/-gnu/-musl}
    if installed_targets | grep -qx "$musl"; then
        target=$musl
    else
        target=$host
    fi
elif ! installed_targets | grep -qx "$target"; then
    die "the Rust target $target is not installed (rustup target add $target)"
fi

linker_var="CARGO_TARGET_$(echo "$target" | tr 'a-z-' 'A-Z_')_LINKER"
if [ "${target%%-*}" != "${host%%-*}" ] && [ -z "${!linker_var:-}" ]; then
    echo "build-static: note: cross-building for $target; if linking fails, set $linker_var" >&2
fi

# Relative relocations packed as DT_RELR (-z pack-relative-relocs): about 70 KB less than one
# 24-byte RELA entry per pointer, ASLR kept. Only where it is known to work: the host's own gnu
# target with glibc 2.36 or later, whose static start-up code applies DT_RELR.
relr=""
if [ "$target" = "$host" ] && [ "${target%-gnu}" != "$target" ]; then
    glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | sed -n 's/^glibc //p')
    if [ -n "$glibc" ] && printf '2.36\n%s\n' "$glibc" | sort -V -C; then
        relr=" -C link-arg=-Wl,-z,pack-relative-relocs"
    fi
fi

# The functions pipit runs while collecting placed side by side (cc-hot-first, with rustc's bundled
# lld), so that a running agent keeps few pages of its code resident (BENCHMARKS.md, "Resident
# memory"). Only for the host's own target linked by the default driver; a cross target's linker
# is its own.
hot=""
bin="${CARGO_TARGET_DIR:-target}/$target/release/pipit"
if [ "$target" = "$host" ] && [ -z "${!linker_var:-}" ]; then
    hot=" -C linker=$PWD/packaging/cc-hot-first"
    # cargo does not know the list: a list newer than the binary needs a new link.
    if [ -f "$bin" ] && [ packaging/hot-functions.txt -nt "$bin" ]; then
        touch src/main.rs
    fi
fi

report="$bin.hot-first"
[ "${report#/}" != "$report" ] || report="$PWD/$report"
PIPIT_HOT_FIRST_REPORT="$report" RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static$relr$hot" \
    cargo build --release --locked --target "$target" "$@"

[ -f "$bin" ] || die "$bin was not built"

# A static binary has no program interpreter (PT_INTERP); static-pie ones are ET_DYN yet have none.
if command -v readelf >/dev/null 2>&1; then
    if readelf -lW "$bin" | grep -q 'program interpreter'; then
        die "$bin is dynamically linked (it requests a program interpreter)"
    fi
elif command -v file >/dev/null 2>&1; then
    if file -b "$bin" | grep -q 'dynamically linked'; then
        die "$bin is dynamically linked"
    fi
else
    echo "build-static: note: neither readelf nor file found; not checking that $bin is static" >&2
fi
# A binary for this machine must start: relocations applied wrongly would crash it at once.
if [ "$target" = "$host" ]; then
    "$bin" --version >/dev/null || die "$bin does not run"
fi
# cc-hot-first reports the names it placed first beside the binary (newer than it, if from this link).
if [ -f "$bin.hot-first" ] && ! [ "$bin" -nt "$bin.hot-first" ]; then
    echo "build-static: $(wc -l < "$bin.hot-first") functions placed first (packaging/hot-functions.txt)" >&2
elif [ -n "$hot" ]; then
    echo "build-static: note: the hot functions were not placed first (cc-hot-first fell back to a plain link)" >&2
fi
printf '%s %s bytes\n' "$bin" "$(stat -c %s "$bin")"
