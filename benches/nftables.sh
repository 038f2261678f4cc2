#!/usr/bin/env bash
# CPU per collection of the nftables source, beside what a script would do without it: run
# `nft -j list ruleset` (counters and rules, as JSON) once a second. collectd has no equivalent on
# nftables (its iptables plugin reads the legacy iptables tables, which fw4 does not use), so the
# peer is `nft` itself, the tool such a script would call.
#
#   benches/nftables.sh                     # 60 rules and 10 named counters, 60 s measurement
#   RULES=200 COUNTERS=50 DURATION=120 benches/nftables.sh
#
# Both run in a network namespace of their own holding a table shaped like fw4's: RULES rules that
# count and carry a comment, spread over four chains, and COUNTERS named counters. pipit runs the
# nftables source alone at 1s with the stdout output in Graphite format into a file; the script
# runs `nft -j list ruleset > /dev/null; sleep 1` in a loop. After a warm-up, pipit's CPU time is
# the sum of /proc/PID/task/*/schedstat (nanoseconds on CPU) and, as a cross-check, utime+stime;
# the script's is its shell's utime+stime plus that of the nft processes it waited for
# (cutime+cstime of /proc/PID/stat, in clock ticks). Needs root (a namespace) and nft.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-60}
WARMUP=${WARMUP:-3}
RULES=${RULES:-60}
COUNTERS=${COUNTERS:-10}
# shellcheck source=benches/work.sh
source benches/work.sh

cargo build --release --quiet
PIPIT=target/release/pipit
NS="pipit-bench-nft-$$"
ip netns add "$NS"
trap 'cleanup; ip netns del "$NS" 2>/dev/null || true' EXIT

{
    echo "table inet fw4 {"
    for c in $(seq "$COUNTERS"); do echo "counter c$c { }"; done
    for chain in input_wan forward_wan input_lan forward_lan; do
        echo "chain $chain {"
        for r in $(seq $((RULES / 4))); do
            echo "meta l4proto udp udp dport $((1000 + r)) counter accept comment \"!fw4: $chain-rule-$r\""
        done
        echo "}"
    done
    echo "}"
} > "$WORK/ruleset.nft"
ip netns exec "$NS" nft -f "$WORK/ruleset.nft"

cat > "$WORK/pipit.json" <<CONF
{
  "agent": {"hostname": "bench", "interval": "1s", "state_dir": "$WORK/state"},
  "sources": [{"type": "nftables", "max_counters": 100000}],
  "outputs": [{"type": "stdout", "format": "graphite"}]
}
CONF
RUST_LOG=warn ip netns exec "$NS" "$PIPIT" run -c "$WORK/pipit.json" \
    > "$WORK/pipit.out" 2> "$WORK/pipit.log" &
PP=$!
PIDS+=("$PP")
ip netns exec "$NS" sh -c 'while :; do nft -j list ruleset > /dev/null; sleep 1; done' &
NF=$!
PIDS+=("$NF")
sleep "$WARMUP"

# utime+stime (and, with 4 fields, cutime+cstime of the children waited for) in clock ticks.
ticks() { awk -v n="$2" '{ sub(/.*\) /, ""); s = 0; for (i = 12; i < 12 + n; i++) s += $i; print s }' "/proc/$1/stat"; }
nanos() { cat /proc/"$1"/task/*/schedstat | awk '{ s += $1 } END { printf "%d\n", s }'; }

p_t0=$(ticks $PP 2); p_n0=$(nanos $PP); p_l0=$(wc -l < "$WORK/pipit.out")
n_t0=$(ticks $NF 4)
start=$(date +%s.%N)
sleep "$DURATION"
p_t1=$(ticks $PP 2); p_n1=$(nanos $PP); p_l1=$(wc -l < "$WORK/pipit.out")
n_t1=$(ticks $NF 4)
end=$(date +%s.%N)

python3 - "$start" "$end" "$(getconf CLK_TCK)" "$p_t0" "$p_t1" "$p_n0" "$p_n1" "$p_l0" "$p_l1" "$n_t0" "$n_t1" <<'PY'
import sys
start, end, hz = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
p_t0, p_t1, p_n0, p_n1, p_l0, p_l1, n_t0, n_t1 = map(int, sys.argv[4:])
window = end - start
# pipit collects once a second; the script's loop a little less often (nft's own time adds to
# its second of sleep), so both are divided by the seconds of the window, as collections at most.
print(f"window {window:.1f} s")
print(f"{'agent':<26} {'CPU ms/collection (schedstat)':>30} {'(utime+stime)':>14} {'metrics/interval':>17}")
print(f"{'pipit nftables':<26} {(p_n1 - p_n0) / 1e6 / window:>30.3f} {(p_t1 - p_t0) * 1000 / hz / window:>14.2f} {(p_l1 - p_l0) / window:>17.1f}")
print(f"{'nft -j list ruleset':<26} {'':>30} {(n_t1 - n_t0) * 1000 / hz / window:>14.2f}")
print(f"pipit / nft CPU: {(p_t1 - p_t0) / (n_t1 - n_t0) if n_t1 > n_t0 else float('nan'):.3f} (utime+stime)")
PY
echo "rules: $RULES, named counters: $COUNTERS"
if [ -s "$WORK/pipit.log" ]; then echo "pipit.log:"; head -5 "$WORK/pipit.log"; fi
