#!/usr/bin/env bash
# Writes packaging/hot-functions.txt: the functions a running pipit executes while it collects,
# which cc-hot-first places side by side when build-static.sh links. Run it again when the sources,
# the outputs or the run loop change much; a stale list costs resident memory, never correctness.
#
#   packaging/hot-functions.sh              # a 120 s window (it spans two of the minute's trims)
#   WINDOW=300 packaging/hot-functions.sh
#
# Needs valgrind (callgrind) and python3. pipit (the `small` build, static, with symbols) runs the
# embedded default config's sources and the router set's per-core cpu every second, to a Graphite
# listener on 127.0.0.1 and to standard output, under callgrind with instrumentation off. Once the
# listener has received its first datapoints, instrumentation is switched on for the window; every
# function callgrind saw run in it is listed, as its key (symbol-key.sed).
set -euo pipefail
cd "$(dirname "$0")/.."

WINDOW=${WINDOW:-120}
command -v callgrind_control >/dev/null || { echo "callgrind_control not found: apt-get install valgrind" >&2; exit 1; }
# shellcheck source=benches/work.sh
source benches/work.sh

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}/hot-functions
CARGO_PROFILE_RELEASE_STRIP=false packaging/build-static.sh -- --no-default-features --features small >/dev/null
bin=$(find "$CARGO_TARGET_DIR" -path '*/release/pipit' -type f | head -1)

port=$(free_port)
python3 benches/count_listener.py "$port" "$WORK/graphite.out" &
PIDS+=($!)
python3 - "$WORK" "$port" > "$WORK/pipit.json" <<'PY'
import json, sys
work, port = sys.argv[1], int(sys.argv[2])
config = json.load(open("src/config_file/embedded.json"))
for source in config["sources"]:
    if source["type"] == "cpu":
        source["per_core"] = True
config["agent"] = {"interval": "1s", "state_dir": work + "/state"}
config["control"] = {"socket": work + "/pipit.sock"}
config["outputs"] = [{"type": "graphite", "host": "127.0.0.1", "port": port},
                     {"type": "stdout", "format": "graphite"}]
print(json.dumps(config))
PY

valgrind --tool=callgrind --instr-atstart=no --demangle=no --callgrind-out-file="$WORK/callgrind.out" \
    "$bin" run -c "$WORK/pipit.json" > /dev/null 2> "$WORK/pipit.log" &
vg=$!
PIDS+=("$vg")
for _ in $(seq 600); do
    [ -s "$WORK/graphite.out" ] && break
    kill -0 "$vg" 2>/dev/null || { cat "$WORK/pipit.log" >&2; exit 1; }
    sleep 0.1
done
[ -s "$WORK/graphite.out" ] || { echo "no datapoint reached the listener within 60 s" >&2; exit 1; }

callgrind_control -i on "$vg" >/dev/null 2>&1
sleep "$WINDOW"
callgrind_control -d "$vg" >/dev/null 2>&1
dump=$(ls "$WORK"/callgrind.out.*)

{
    echo "# The functions pipit ran in a ${WINDOW} s window while collecting, as keys (symbol-key.sed)."
    echo "# Written by packaging/hot-functions.sh; read by packaging/cc-hot-first."
    # callgrind names a function once, at its first mention: "fn=(12) name" or "cfn=(12) name",
    # with "'2" and so on after the name for a recursive call's deeper levels.
    sed -n 's/^c\{0,1\}fn=([0-9]*) \(.*\)$/\1/p' "$dump" | grep -v '^0x' | sed "s/'[0-9]*$//" |
        sed -f packaging/symbol-key.sed | LC_ALL=C sort -u
} > packaging/hot-functions.txt
echo "packaging/hot-functions.txt: $(grep -vc '^#' packaging/hot-functions.txt) functions"
