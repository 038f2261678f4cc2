#!/usr/bin/env bash
# What a runaway child costs pipit: CPU of `pipit run` while an `exec` daemon prints one endless
# line (`cat /dev/zero`), against the same agent with a daemon that prints nothing (`sleep`).
#
#   benches/endless_line.sh                  # 15 s each, target/release/pipit
#   SECONDS_EACH=60 PIPIT=path/to/pipit benches/endless_line.sh
#
# The agent's user + system time comes from /proc/PID/stat (fields 14 and 15), read 2 s after the
# start (the line has been cut by then) and again SECONDS_EACH later. Every process started here is
# stopped by pid, and the temporary directory removed, on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=${SECONDS_EACH:-15}
PIPIT=${PIPIT:-target/release/pipit}
TICK=$(getconf CLK_TCK)
DIR=$(mktemp -d)
PID=
cleanup() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$DIR"
}
trap cleanup EXIT

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

measure() {
    local name=$1 command=$2
    cat >"$DIR/pipit.json" <<JSON
{"agent": {"hostname": "h", "state_dir": "$DIR"}, "control": {"enabled": false},
 "supervisor": {"user": ""},
 "sources": [{"type": "exec", "name": "z", "mode": "daemon", "format": "value", "interval": "1s",
              "command": $command}],
 "outputs": [{"type": "stdout"}]}
JSON
    "$PIPIT" run -c "$DIR/pipit.json" >/dev/null 2>"$DIR/$name.log" &
    PID=$!
    sleep 2
    local before after
    before=$(cpu_ticks "$PID")
    sleep "$SECONDS_EACH"
    after=$(cpu_ticks "$PID")
    kill "$PID"; wait "$PID" || true
    PID=
    awk -v t=$((after - before)) -v hz="$TICK" -v s="$SECONDS_EACH" -v n="$name" \
        'BEGIN { printf "%-12s %6.3f s of CPU in %d s: %.2f %% of a core\n", n, t / hz, s, 100 * t / hz / s }'
    echo "             log lines about the cut: $(grep -c "over max_output" "$DIR/$name.log" || true)"
}

measure endless '["cat", "/dev/zero"]'
measure quiet '["sleep", "1000"]'
