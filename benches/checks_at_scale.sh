#!/usr/bin/env bash
# Many `exec` checks at once: N sources running /bin/true every 10 s under the default
# `max_checks` (4), as the user pipit runs them as (root: `nobody`). Counts, per 10 s round, the
# runs that happened and the runs skipped for want of a slot, and the supervisor thread's CPU per
# run, over ROUNDS rounds after a first interval (when every source has run once).
#
#   benches/checks_at_scale.sh                 # N = 100, 300 and 1000, 3 rounds each
#   COUNTS="1000" ROUNDS=6 PIPIT=path/to/pipit benches/checks_at_scale.sh
#   CHECK_USER="" benches/checks_at_scale.sh   # checks run as pipit's own user (`supervisor.user`)
#
# Runs are the `exec.<name>.exit_code` lines on pipit's standard output whose timestamp falls in
# the window; skips the growth of the `exec.<name>.skipped` counters over it. The supervisor's CPU
# is the user + system time of the thread named `supervisor` (/proc/PID/task/TID/stat). Every
# process started here is stopped by pid, and the temporary directory removed, on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

COUNTS=${COUNTS:-100 300 1000}
ROUNDS=${ROUNDS:-3}
PIPIT=${PIPIT:-target/release/pipit}
TICK=$(getconf CLK_TCK)
DIR=$(mktemp -d)
PID=
cleanup() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$DIR"
}
trap cleanup EXIT

supervisor_ticks() {
    local task
    for task in /proc/"$1"/task/*; do
        if [ "$(cat "$task/comm")" = supervisor ]; then
            awk '{ print $14 + $15 }' "$task/stat"
            return
        fi
    done
}

printf '%8s %16s %18s %26s\n' sources "runs per round" "skipped per round" "supervisor CPU per run"
for n in $COUNTS; do
    {
        printf '{"agent": {"hostname": "h", "state_dir": "%s"}, "control": {"enabled": false},\n' "$DIR"
        if [ -n "${CHECK_USER+set}" ]; then
            printf ' "supervisor": {"user": "%s"},\n' "$CHECK_USER"
        fi
        printf ' "sources": ['
        for i in $(seq 1 "$n"); do
            [ "$i" -gt 1 ] && printf ','
            printf '{"type": "exec", "name": "c%d", "interval": "10s", "command": ["/bin/true"]}' "$i"
        done
        printf '],\n "outputs": [{"type": "stdout"}]}\n'
    } >"$DIR/pipit.json"
    "$PIPIT" run -c "$DIR/pipit.json" >"$DIR/out" 2>"$DIR/log" &
    PID=$!
    sleep 11
    t0=$(date +%s)
    before=$(supervisor_ticks "$PID")
    sleep $((ROUNDS * 10))
    after=$(supervisor_ticks "$PID")
    t1=$(date +%s)
    kill "$PID"; wait "$PID" || true
    PID=
    awk -v t0="$t0" -v t1="$t1" -v rounds="$ROUNDS" -v n="$n" -v cpu=$((after - before)) -v hz="$TICK" '
        $1 ~ /\.exit_code$/ && $3 >= t0 && $3 < t1 { runs++ }
        $1 ~ /\.skipped$/ {
            if ($3 < t0) start[$1] = $2
            if ($3 < t1) end[$1] = $2
        }
        END {
            for (k in end) skipped += end[k] - start[k]
            printf "%8d %16.0f %18.0f %23.2f ms\n", n, runs / rounds, skipped / rounds,
                runs ? 1000 * cpu / hz / runs : 0
        }' "$DIR/out"
done
