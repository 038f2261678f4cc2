#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
# Makes the source tarball of a pipit release from a git revision, byte for byte the same on every
# run, and prints "<tarball> <sha256> <version> <revision>".
#
#   packaging/release-tarball.sh [--update-makefile] [REVISION] [OUT_DIR]
#
# REVISION defaults to HEAD, OUT_DIR to target/dist. The tarball is pipit-<version>.tar.gz, holding
# pipit-<version>/ with every tracked file of REVISION but those marked export-ignore in
# .gitattributes (the OpenWrt feed directory); <version> is Cargo.toml's at REVISION. The bytes
# depend only on the revision: git archive stamps every entry with the commit's time, owner root,
# modes 0644/0755, in a fixed order; gzip -n leaves out its name and time stamp.
#
# --update-makefile writes the revision, version and hash into packaging/openwrt/pipit/Makefile.
set -eu
cd "$(dirname "$0")/.."

die() {
	echo "release-tarball: $*" >&2
	exit 1
}

update=
if [ "${1:-}" = --update-makefile ]; then
	update=1
	shift
fi
revision=$(git rev-parse --verify --quiet "${1:-HEAD}^{commit}") ||
	die "no commit named ${1:-HEAD} in this repository"
out=${2:-target/dist}

version=$(git show "$revision:Cargo.toml" | sed -n 's/^version = "\(.*\)"$/\1/p' | head -n 1)
[ -n "$version" ] || die "no package version in Cargo.toml at $revision"

mkdir -p "$out"
tarball=$out/pipit-$version.tar.gz
git -c tar.umask=0022 -c core.autocrlf=false archive --format=tar --prefix="pipit-$version/" "$revision" |
	gzip -9 -n >"$tarball.tmp"
mv -f "$tarball.tmp" "$tarball"
hash=$(sha256sum "$tarball" | cut -d ' ' -f 1)

if [ -n "$update" ]; then
	makefile=packaging/openwrt/pipit/Makefile
	sed -i \
		-e "s/^PKG_VERSION:=.*/PKG_VERSION:=$version/" \
		-e "s/^PKG_HASH:=.*/PKG_HASH:=$hash/" \
		-e "s/^# Source: revision .*/# Source: revision $revision/" \
		"$makefile"
fi
echo "$tarball $hash $version $revision"
