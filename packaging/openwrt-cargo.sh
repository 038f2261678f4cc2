#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
# Builds pipit for this machine the way the OpenWrt packages feed builds it for a router: the same
# cargo command and environment as Build/Compile/Cargo in the feed's lang/rust/rust-package.mk and
# rust-values.mk, with the host as the target and what packaging/openwrt/pipit/Makefile changes
# (panic=unwind), so a difference between the feed's build and the tested one shows up here.
#
#   packaging/openwrt-cargo.sh SOURCE_DIR ROOT_DIR VARIANT
#
# SOURCE_DIR is an unpacked release tarball (packaging/release-tarball.sh) or a tree; the binary
# is installed as ROOT_DIR/bin/pipit; VARIANT is small or full (the package's RUST_PKG_FEATURES).
# As in the feed's default (RUST_PREFER_DYNAMIC=1), std is linked as a shared library: run the
# binary with LD_LIBRARY_PATH="$(rustc --print target-libdir)". CARGO_TARGET_DIR is honoured
# (cargo install builds in a temporary directory without it). TARGET_LINKER (default bfd) is the
# linker the feed names with -fuse-ld.
set -eu

[ $# -eq 3 ] || {
	echo "usage: $0 SOURCE_DIR ROOT_DIR small|full" >&2
	exit 2
}
source_dir=$1
root_dir=$2
case "$3" in
	small | full) features=$3 ;;
	*)
		echo "openwrt-cargo: unknown variant $3: small or full" >&2
		exit 2
		;;
esac
host=$(rustc -vV | sed -n 's/^host: //p')

# rust-values.mk's CARGO_PKG_CONFIG_VARS with RUST_PREFER_DYNAMIC=1 and CONFIG_DEBUG off, after
# the package Makefile turns panic=abort into unwind.
export CARGO_BUILD_TARGET="$host"
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
export CARGO_PROFILE_RELEASE_DEBUG=false
export CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=false
export CARGO_PROFILE_RELEASE_LTO=false
export CARGO_PROFILE_RELEASE_OPT_LEVEL=z
export CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true
export CARGO_PROFILE_RELEASE_PANIC=unwind
export CARGO_PROFILE_RELEASE_RPATH=false
export RUSTFLAGS="-Ctarget-feature=-crt-static -Cpanic=unwind -Clink-arg=-fuse-ld=${TARGET_LINKER:-bfd} -C prefer-dynamic"

# rust-package.mk's Build/Compile/Cargo, with the Makefile's RUST_PKG_FEATURES and its
# --no-default-features.
exec cargo install -v --profile release --features "$features" --root "$root_dir" \
	--path "$source_dir" --locked --no-default-features
