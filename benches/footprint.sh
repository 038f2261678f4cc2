#!/usr/bin/env bash
# Footprint at run time: resident memory, threads and idle wake-ups of pipit beside collectd 5.12
# (Debian's collectd-core), and the bytes pipit writes to its state directory, all in one run.
#
#   benches/footprint.sh                      # 60 s window after a 10 s warm-up
#   DURATION=120 benches/footprint.sh
#   PIPIT=path/to/pipit benches/footprint.sh  # another build (a static one, say) instead
#
# Four agents run at once, each pipit with a state directory and control socket of its own:
#   collectd   the host sources (see side_by_side.sh) at Interval 1, write_graphite to a listener
#   router     pipit with the same sources at 1s and a graphite output to a listener of its own,
#              every other setting at its default
#   default    pipit with the embedded default config (state directory moved into the run's
#              temporary directory), writing to standard output into a file
#   cache      the default config again with agent.cache_interval 10s (its least) and a graphite output, so
#              that /proc/PID/io write_bytes counts nothing but the counter cache
# After the warm-up, VmRSS of each and its two parts, RssAnon (what the process allocated: heap,
# stacks, written data) and RssFile (the pages of its binary and libraries it has mapped), are read
# from /proc/PID/status every second, and their medians reported; threads are counted in
# /proc/PID/task; wake-ups are the timeslices run by all threads (third field of
# /proc/PID/task/*/schedstat) over the window, per second. The cache's bytes per hour at the default
# cache_interval (5 min) are the cache instance's write_bytes per second scaled from 10 s to 5 min,
# checked against the cache file's size times 12 writes an hour.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-60}
WARMUP=${WARMUP:-10}
CACHE_INTERVAL=10
# shellcheck source=benches/side_by_side.sh
source benches/side_by_side.sh

if [ -z "${PIPIT:-}" ]; then
    cargo build --release --quiet
    PIPIT=target/release/pipit
fi

# default_config NAME AGENT OUTPUTS: the embedded default config with the `agent` section AGENT
# plus the state directory $WORK/NAME-state, the control socket $WORK/NAME.sock, and OUTPUTS
# instead of its outputs unless empty.
default_config() {
    python3 - "$WORK/$1" "$2" "$3" <<'PY'
import json, sys
base, agent, outputs = sys.argv[1:]
config = json.load(open("src/config_file/embedded.json"))
config["agent"] = dict(json.loads(agent), state_dir=base + "-state")
config["control"] = {"socket": base + ".sock"}
if outputs:
    config["outputs"] = json.loads(outputs)
print(json.dumps(config, indent=2))
PY
}

# router_config NAME: the host sources at 1s to the last listener started.
router_config() {
    cat <<CONF
{
  "agent": {"hostname": "bench", "interval": "1s", "state_dir": "$WORK/$1-state"},
  "control": {"socket": "$WORK/$1.sock"},
  "sources": $PIPIT_SOURCES,
  "outputs": [{"type": "graphite", "host": "127.0.0.1", "port": $LISTENER_PORT}]
}
CONF
}

start_collectd
start_listener "$WORK/router.out"
router_config router > "$WORK/router.json"
start_pipit "$PIPIT" "$WORK/router.json" pipit-router
ROUTER=$PP

default_config default "{}" "" > "$WORK/default.json"
start_pipit "$PIPIT" "$WORK/default.json" pipit-default
DEFAULT=$PP

start_listener "$WORK/cache.out"
default_config cache "{\"cache_interval\": \"${CACHE_INTERVAL}s\"}" \
    "[{\"type\": \"graphite\", \"host\": \"127.0.0.1\", \"port\": $LISTENER_PORT}]" > "$WORK/cache.json"
start_pipit "$PIPIT" "$WORK/cache.json" pipit-cache
CACHE=$PP

# rss PID: `VmRSS,RssAnon,RssFile` in KiB.
rss() { awk '/^VmRSS:/ { v = $2 } /^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 } END { print v "," a "," f }' "/proc/$1/status"; }
wakeups() { cat /proc/"$1"/task/*/schedstat | awk '{ s += $3 } END { printf "%d\n", s }'; }
thread_count() { local tasks=(/proc/"$1"/task/*); echo "${#tasks[@]}"; }
written() { awk '/^write_bytes:/ { print $2 }' "/proc/$1/io"; }

AGENTS=("$CD" "$ROUTER" "$DEFAULT")
sleep "$WARMUP"
for pid in "${AGENTS[@]}" "$CACHE"; do
    kill -0 "$pid" 2>/dev/null || { echo "an agent exited early:" >&2; report_logs >&2; exit 1; }
done
for pid in "${AGENTS[@]}"; do wakeups "$pid" >> "$WORK/wakeups0"; done
per_thread "$ROUTER" 3 > "$WORK/router-threads0"
w0=$(written "$CACHE")
start=$(date +%s.%N)
for _ in $(seq "$DURATION"); do
    line=""
    for pid in "${AGENTS[@]}"; do line+="$(rss "$pid") "; done
    echo "$line" >> "$WORK/rss"
    sleep 1
done
end=$(date +%s.%N)
w1=$(written "$CACHE")
for pid in "${AGENTS[@]}"; do
    echo "$(wakeups "$pid") $(thread_count "$pid")" >> "$WORK/wakeups1"
done
per_thread "$ROUTER" 3 > "$WORK/router-threads1"
cache_file=$(find "$WORK/cache-state" -type f | head -1)
cache_size=$(stat -c %s "$cache_file")

python3 - "$start" "$end" "$WORK" "$w0" "$w1" "$CACHE_INTERVAL" "$cache_size" <<'PY'
import statistics, sys
start, end, work = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
w0, w1, cache_interval, cache_size = map(int, sys.argv[4:])
window = end - start
names = ["collectd 5.12", "pipit (router set)", "pipit (default config)"]
# One line a second, one `VmRSS,RssAnon,RssFile` per agent.
rss = [[list(map(int, agent.split(","))) for agent in l.split()] for l in open(f"{work}/rss")]
before = [int(l) for l in open(f"{work}/wakeups0")]
after = [list(map(int, l.split())) for l in open(f"{work}/wakeups1")]
print(f"window {window:.1f} s, {len(rss)} samples")
print(f"{'agent':<28} {'VmRSS median KiB':>17} {'max KiB':>8} {'anon KiB':>9} {'file KiB':>9} "
      f"{'threads':>8} {'wake-ups/s':>11}")
medians = []
for i, name in enumerate(names):
    column, anon, file = ([r[i][part] for r in rss] for part in range(3))
    medians.append((statistics.median(column), statistics.median(anon)))
    wake = (after[i][0] - before[i]) / window
    print(f"{name:<28} {medians[-1][0]:>17.0f} {max(column):>8} {medians[-1][1]:>9.0f} "
          f"{statistics.median(file):>9.0f} "
          f"{after[i][1]:>8} {wake:>11.1f}")
print(f"pipit (router set) / collectd VmRSS: {medians[1][0] / medians[0][0]:.3f} (median); "
      f"RssAnon: {medians[1][1] / medians[0][1]:.3f}")
per_hour = (w1 - w0) / window * 3600 * cache_interval / 300
print(f"counter cache: file {cache_size} bytes; write_bytes {w1 - w0} in {window:.0f} s at "
      f"cache_interval {cache_interval} s")
print(f"state directory at the default cache_interval (5 min): {per_hour / 1024:.1f} KiB per hour "
      f"(file size x 12: {cache_size * 12 / 1024:.1f} KiB)")
PY
echo "pipit (router set) wake-ups/s by thread:"
join "$WORK/router-threads0" "$WORK/router-threads1" | awk -v n="$DURATION" '{ printf "  %-16s %7.1f\n", $1, ($3 - $2) / n }'
report_logs
