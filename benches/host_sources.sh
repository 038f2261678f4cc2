#!/usr/bin/env bash
# CPU per collection of the full host source set: pipit against collectd 5.12 (Debian's
# collectd-core), side by side in one run, both collecting every second.
#
#   benches/host_sources.sh            # 60 s measurement
#   DURATION=300 benches/host_sources.sh
#
# collectd runs cpu, load, memory, interface, df, disk, uptime, processes, conntrack and thermal
# with write_graphite to a listener on 127.0.0.1; pipit runs the same sources with the stdout
# output in Graphite format into a file. After a warm-up, the CPU time of each process (all its
# threads) is read at the start and the end of the window: utime+stime from /proc/PID/stat (in
# clock ticks) and, more precisely, the sum of /proc/PID/task/*/schedstat (nanoseconds on CPU).
# Metric lines are counted in what each delivered during the same window.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-60}
WARMUP=${WARMUP:-5}
# shellcheck source=benches/side_by_side.sh
source benches/side_by_side.sh

cargo build --release --quiet
PIPIT=target/release/pipit

cat > "$WORK/pipit.json" <<CONF
{
  "agent": {"hostname": "bench", "interval": "1s", "state_dir": "$WORK/state"},
  "sources": $PIPIT_SOURCES,
  "outputs": [{"type": "stdout", "format": "graphite"}]
}
CONF

start_collectd
start_pipit "$PIPIT" "$WORK/pipit.json"

ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
nanos() { cat /proc/"$1"/task/*/schedstat | awk '{ s += $1 } END { printf "%d\n", s }'; }
lines() { wc -l < "$1"; }

sleep "$WARMUP"
c_t0=$(ticks $CD); c_n0=$(nanos $CD); c_l0=$(lines "$WORK/collectd.out")
p_t0=$(ticks $PP); p_n0=$(nanos $PP); p_l0=$(lines "$WORK/pipit.out")
per_thread $PP 1 > "$WORK/threads0"
start=$(date +%s.%N)
sleep "$DURATION"
c_t1=$(ticks $CD); c_n1=$(nanos $CD); c_l1=$(lines "$WORK/collectd.out")
p_t1=$(ticks $PP); p_n1=$(nanos $PP); p_l1=$(lines "$WORK/pipit.out")
per_thread $PP 1 > "$WORK/threads1"
end=$(date +%s.%N)

HZ=$(getconf CLK_TCK)
python3 - "$start" "$end" "$HZ" "$c_t0" "$c_t1" "$c_n0" "$c_n1" "$c_l0" "$c_l1" "$p_t0" "$p_t1" "$p_n0" "$p_n1" "$p_l0" "$p_l1" <<'PY'
import sys
start, end, hz = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
c_t0, c_t1, c_n0, c_n1, c_l0, c_l1, p_t0, p_t1, p_n0, p_n1, p_l0, p_l1 = map(int, sys.argv[4:])
window = end - start
intervals = window  # both collect once a second
def row(name, t0, t1, n0, n1, l0, l1):
    ticks_ms = (t1 - t0) * 1000 / hz / intervals
    sched_ms = (n1 - n0) / 1e6 / intervals
    return name, ticks_ms, sched_ms, (l1 - l0) / intervals
c = row("collectd 5.12", c_t0, c_t1, c_n0, c_n1, c_l0, c_l1)
p = row("pipit", p_t0, p_t1, p_n0, p_n1, p_l0, p_l1)
print(f"window {window:.1f} s, {intervals:.0f} collections each")
print(f"{'agent':<14} {'CPU ms/collection (schedstat)':>30} {'(utime+stime)':>14} {'metrics/interval':>17}")
for name, ticks_ms, sched_ms, per in (c, p):
    print(f"{name:<14} {sched_ms:>30.3f} {ticks_ms:>14.2f} {per:>17.1f}")
print(f"pipit / collectd CPU: {p[2] / c[2]:.3f} (schedstat), {p[1] / c[1] if c[1] else float('nan'):.3f} (utime+stime)")
print(f"pipit / collectd metrics: {p[3] / c[3]:.2f}")
PY
echo "pipit by thread (ms per collection):"
join "$WORK/threads0" "$WORK/threads1" | awk -v n="$DURATION" '{ printf "  %-16s %7.3f\n", $1, ($3 - $2) / 1e6 / n }'
procs=(/proc/[0-9]*)
echo "processes on this box: ${#procs[@]}"
report_logs
