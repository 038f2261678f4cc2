#!/usr/bin/env bash
# Many `exec` checks at once: N sources running /bin/true every 10 s under the default
# `max_checks` (4), run as each user of USERS in turn (as root: `nobody`, then pipit's own user).
# Counts, per 10 s round, the runs that happened and the runs skipped for want of a slot, and
# reads the supervisor thread's CPU per run and the agent's resident memory per source, over
# ROUNDS rounds after a first interval (when every source has run once), and the CPU the checks
# themselves used per run (the agent's reaped children, cutime + cstime). Beside them, in the same
# run: the floor of a start (benches/spawn_floor.c, compiled here: posix_spawn + waitpid of
# /bin/true from a small process, its own CPU per start), the floor of a supervised start (the
# same program starting /bin/true as pipit starts a check: pipes, a clone(2) sharing its memory
# until the exec, the child's own process group, switch to the check's user and death signal, a
# pidfd, the group killed, the leader reaped), and an
# agent with no source at all. Both floors are measured twice: back to back (every cache warm from
# the start before) and at the checks' own pace (N starts at N / 10 a second, in bursts on the same
# 100 ms grid pipit's `checks` thread takes due checks on, sleeping in between), which is the same
# work as the agent's: the wake-ups and colder caches of starts spread over time are in both.
#
#   benches/checks_at_scale.sh                 # N = 100, 300 and 1000, 3 rounds each
#   COUNTS="1000" ROUNDS=6 PIPIT=path/to/pipit benches/checks_at_scale.sh
#   USERS="''" benches/checks_at_scale.sh      # only as pipit's own user (`supervisor.user` "")
#
# Runs are the `exec.<name>.exit_code` lines on pipit's standard output whose timestamp falls in
# the window; skips the growth of the `exec.<name>.skipped` counters over it. The supervisor's CPU
# is the time on CPU of the thread named `supervisor` (/proc/PID/task/TID/schedstat), divided by
# the runs. Resident memory per source is (VmRSS of the agent with N sources - VmRSS of the agent
# with none) / N, both read at the end of the window, after the trim `agent.trim_delay` (15 s
# here) makes. Every process started here is stopped by pid, and the temporary directory removed,
# on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

COUNTS=${COUNTS:-100 300 1000}
ROUNDS=${ROUNDS:-3}
PIPIT=${PIPIT:-target/release/pipit}
FLOOR_STARTS=${FLOOR_STARTS:-2000}
if [ -z "${USERS+set}" ]; then
    if [ "$(id -u)" = 0 ]; then USERS="nobody ''"; else USERS="''"; fi
fi
DIR=$(mktemp -d)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    rm -rf "$DIR"
}
trap cleanup EXIT

cc -O2 -o "$DIR/spawn_floor" benches/spawn_floor.c

supervisor_ns() {
    local task
    for task in /proc/"$1"/task/*; do
        if [ "$(cat "$task/comm")" = supervisor ]; then
            cut -d' ' -f1 "$task/schedstat"
            return
        fi
    done
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# CPU time of the children the agent has reaped (cutime + cstime), in clock ticks.
children_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $14 + $15 }'; }

# config N USER: N exec sources, checks run as USER ('' for pipit's own).
config() {
    printf '{"agent": {"hostname": "h", "state_dir": "%s", "trim_delay": "15s"},\n' "$DIR"
    printf ' "control": {"enabled": false}, "supervisor": {"user": "%s"},\n' "$2"
    printf ' "sources": ['
    for i in $(seq 1 "$1"); do
        [ "$i" -gt 1 ] && printf ','
        printf '{"type": "exec", "name": "c%d", "interval": "10s", "command": ["/bin/true"]}' "$i"
    done
    printf '],\n "outputs": [{"type": "stdout"}]}\n'
}

floor() { "$DIR/spawn_floor" "$FLOOR_STARTS"; }
# supervised_floor USER: as pipit starts a check as USER ('' for pipit's own).
supervised_floor() {
    local as=-
    [ -n "$1" ] && as="$(id -u "$1"):$(id -g "$1")"
    "$DIR/spawn_floor" "$FLOOR_STARTS" "$as"
}
mean() { echo "$1 $2" | awk '{ print ($1 + $2) / 2 }'; }

floor_before=$(floor)
declare -A supervised_before
for user in $USERS; do
    user=${user//\'/}
    supervised_before[${user:-own}]=$(supervised_floor "$user")
done
# paced N USER: the floor at the pace of N checks every 10 s, bare ('-') or supervised as USER.
paced() {
    if [ "$2" = - ]; then
        "$DIR/spawn_floor" -r $(($1 / 10)) "$1"
    else
        local as=-
        [ -n "$2" ] && as="$(id -u "$2"):$(id -g "$2")"
        "$DIR/spawn_floor" -r $(($1 / 10)) "$1" "$as"
    fi
}
for n in $COUNTS; do
    printf '%s - %s\n' "$n" "$(paced "$n" -)" >>"$DIR/paced"
    for user in $USERS; do
        user=${user//\'/}
        printf '%s %s %s\n' "$n" "${user:-own}" "$(paced "$n" "$user")" >>"$DIR/paced"
    done
done
printf '%8s %10s %11s %14s %24s %15s %22s\n' sources "run as" "runs/round" "skipped/round" \
    "supervisor CPU per run" "RSS per source" "children's CPU per run"
for n in $COUNTS; do
    for user in $USERS; do
        user=${user//\'/}
        config "$n" "$user" >"$DIR/pipit.json"
        config 0 "$user" >"$DIR/empty.json"
        "$PIPIT" run -c "$DIR/pipit.json" >"$DIR/out" 2>"$DIR/log" &
        pid=$!
        "$PIPIT" run -c "$DIR/empty.json" >/dev/null 2>"$DIR/empty.log" &
        empty=$!
        PIDS=("$pid" "$empty")
        sleep 11
        t0=$(date +%s)
        before=$(supervisor_ns "$pid")
        children_before=$(children_ticks "$pid")
        sleep $((ROUNDS * 10))
        after=$(supervisor_ns "$pid")
        children_after=$(children_ticks "$pid")
        t1=$(date +%s)
        rss=$(rss_kib "$pid")
        rss_empty=$(rss_kib "$empty")
        kill "$pid" "$empty"; wait "$pid" || true; wait "$empty" || true
        PIDS=()
        awk -v t0="$t0" -v t1="$t1" -v rounds="$ROUNDS" -v n="$n" -v ns=$((after - before)) \
            -v user="${user:-own}" -v rss=$((rss - rss_empty)) -v hz="$(getconf CLK_TCK)" \
            -v children=$((children_after - children_before)) '
            $1 ~ /\.exit_code$/ && $3 >= t0 && $3 < t1 { runs++ }
            $1 ~ /\.skipped$/ {
                if ($3 < t0) start[$1] = $2
                if ($3 < t1) end[$1] = $2
            }
            END {
                for (k in end) skipped += end[k] - start[k]
                printf "%8d %10s %11.0f %14.0f %21.3f ms %11.1f KiB %19.3f ms\n", n, user,
                    runs / rounds, skipped / rounds, runs ? ns / 1e6 / runs : 0, rss / n,
                    runs ? children * 1000 / hz / runs : 0
            }' "$DIR/out" | tee -a "$DIR/table"
    done
done
floor_after=$(floor)
printf 'floor: posix_spawn + waitpid of /bin/true from a small process: %s ms (before) %s ms (after) of its CPU per start\n' \
    "$floor_before" "$floor_after"
supervised_mean=""
for user in $USERS; do
    user=${user//\'/}
    before=${supervised_before[${user:-own}]}
    after=$(supervised_floor "$user")
    printf 'supervised floor as %s: the same program starting it as pipit starts a check: %s ms (before) %s ms (after)\n' \
        "${user:-own}" "$before" "$after"
    supervised_mean="$supervised_mean ${user:-own}=$(mean "$before" "$after")"
done
awk '{ printf "floor at the pace of %d checks every 10 s, %s: %s ms per start\n", $1, $2 == "-" ? "bare" : "supervised as " $2, $3 }' "$DIR/paced"
awk -v floor="$(mean "$floor_before" "$floor_after")" -v supervised="$supervised_mean" '
    BEGIN { n = split(supervised, pairs, " "); for (i = 1; i <= n; i++) { split(pairs[i], kv, "="); sup[kv[1]] = kv[2] } }
    FNR == NR { paced[$1 " " $2] = $3; next }
    {
        printf "ratio supervisor CPU per run / floor, %d sources as %s: %.2f\n", $1, $2, $5 / floor
        printf "ratio supervisor CPU per run / supervised floor, %d sources as %s: %.2f\n", $1, $2, $5 / sup[$2]
        printf "ratio supervisor CPU per run / floor at the same pace, %d sources as %s: %.2f\n", $1, $2, $5 / paced[$1 " -"]
        printf "ratio supervisor CPU per run / supervised floor at the same pace, %d sources as %s: %.2f\n", $1, $2, $5 / paced[$1 " " $2]
    }
' "$DIR/paced" "$DIR/table"
