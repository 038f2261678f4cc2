#!/bin/sh
# Runs one action of packaging/openwrt/pipit/files/pipit.init (start, reload, json) on this machine, with
# stand-ins (stubs/) for the OpenWrt shell libraries it needs. Used by tests/packaging.rs.
#
#   UCI_CONFIG_DIR  directory holding the UCI config file "pipit"
#   PIPIT_BIN       the pipit binary (for "pipit check" and the command line)
#   RUN_DIR         where the JSON config is put (instead of /var/etc); the state directory is
#                   made under RUN_DIR/fsroot
#   PROCD_LOG       file receiving one line per procd call
#   LOGGER_LOG      file receiving what would go to the system log
#   PROCD_RUNNING   1 when the pipit instance is to be reported running
# shellcheck source-path=SCRIPTDIR
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/stubs/functions.sh"
. "$here/stubs/procd.sh"
# The init script reads jshn.sh and the key types under $IPKG_INSTROOT, as on a router where
# IPKG_INSTROOT is empty: a root holding the stand-in and the package's file.
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/share/libubox" "$root/usr/share/pipit"
ln -s "$here/stubs/jshn.sh" "$root/usr/share/libubox/jshn.sh"
ln -s "$here/../../packaging/openwrt/pipit/files/pipit.uci-types" "$root/usr/share/pipit/uci-types"
IPKG_INSTROOT=$root
# shellcheck source=../../packaging/openwrt/pipit/files/pipit.init
. "$here/../../packaging/openwrt/pipit/files/pipit.init"
# shellcheck disable=SC2034 # read by the init script's functions
PROG=$PIPIT_BIN
# shellcheck disable=SC2034
CONFIG=$RUN_DIR/pipit.json
# shellcheck disable=SC2034
STATE_ROOT=$RUN_DIR/fsroot
: "$UCI_CONFIG_DIR" "$PROCD_LOG" "$LOGGER_LOG"
set +eu
"$1"
