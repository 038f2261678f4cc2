#!/usr/bin/env bash
# Runs every side-by-side benchmark briefly and prints each figure three times: as measured now,
# as its target, and as BENCHMARKS.md records it ("Figures at a glance", the one table this script
# reads). A figure that moved more than TOLERANCE (a fraction, default 0.25) from the recorded one
# is flagged DRIFT; one that misses its target is flagged MISSED. Run it before changing a figure
# in BENCHMARKS.md; re-run the figure's own command (its section names it) for the full-length
# number to record.
#
#   benches/all.sh                 # every figure
#   benches/all.sh riemann mqtt    # only these benchmarks
#   TOLERANCE=0.1 benches/all.sh
#
# The runs are short (a minute or two each after the release builds), so their figures are
# noisier than the recorded ones; the ratios are what to compare, as both sides of each run see
# the same machine. A benchmark whose peer is not installed (tests/install-deps.sh) is reported as
# skipped, never as a figure. Exits 1 when a figure drifted or missed its target.
# shellcheck disable=SC2317 # the run_* functions are called by name, below
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

TOLERANCE=${TOLERANCE:-0.25}
LOG=$(mktemp -d)
trap 'rm -rf "$LOG"' EXIT

# recorded ID / target ID: the columns of the figure's row in BENCHMARKS.md's table.
column() {
    awk -F'|' -v id="\`$1\`" -v col="$2" '
        /^## Figures at a glance/ { on = 1; next }
        on && /^## / { exit }
        on { f = $2; gsub(/ /, "", f); if (f == id) { v = $col; gsub(/^ +| +$/, "", v); print v; exit } }
    ' BENCHMARKS.md
}

# The last number on the output's line that matches the pattern.
number_after() {
    grep -E "$1" | tail -1 | grep -oE '[0-9]+(\.[0-9]+)?' | tail -1
}

status=0
report() { # ID MEASURED
    local id=$1 now=$2 recorded target flags=""
    recorded=$(column "$id" 3)
    target=$(column "$id" 4)
    if [ -z "$recorded" ]; then
        printf '%-26s %10s   no row in BENCHMARKS.md: add one\n' "$id" "$now"
        status=1
        return
    fi
    flags=$(python3 - "$now" "$recorded" "$target" "$TOLERANCE" <<'PY'
import sys
now, recorded, target, tolerance = sys.argv[1:]
now, recorded, tolerance = float(now), float(recorded), float(tolerance)
flags = []
if recorded and abs(now / recorded - 1) > tolerance:
    flags.append(f"DRIFT {now / recorded - 1:+.0%}")
if target.startswith(">="):
    if now < float(target[2:]):
        flags.append("MISSED")
elif target.startswith("<="):
    if now > float(target[2:]):
        flags.append("MISSED")
print(" ".join(flags))
PY
)
    [ -n "$flags" ] && status=1
    printf '%-26s %10s %10s %10s   %s\n' "$id" "$now" "$target" "$recorded" "$flags"
}

skipped() { printf '%-26s %10s   skipped: %s\n' "$1" "-" "$2"; }

has_python() { python3 -c "import $1" 2>/dev/null; }

run_riemann() {
    has_python riemann_client || { skipped riemann_ratio "python3 riemann-client missing"; return; }
    PIPIT_BENCH_EVENTS=50000 cargo bench --quiet --bench riemann_throughput >"$LOG/riemann" 2>&1 ||
        { skipped riemann_ratio "the bench failed (output below)"; tail -5 "$LOG/riemann"; return; }
    report riemann_ratio "$(number_after 'ratio pipit' <"$LOG/riemann")"
}

run_graphite() {
    has_python aiographite || { skipped graphite_plaintext_ratio "python3 aiographite missing"; return; }
    PIPIT_BENCH_COUNT=200000 PIPIT_BENCH_RUNS=2 cargo bench --quiet --bench graphite_throughput \
        >"$LOG/graphite" 2>&1 ||
        { skipped graphite_plaintext_ratio "the bench failed (output below)"; tail -5 "$LOG/graphite"; return; }
    report graphite_plaintext_ratio "$(number_after '^plaintext +[0-9]' <"$LOG/graphite")"
    report graphite_pickle_ratio "$(number_after '^pickle +[0-9]' <"$LOG/graphite")"
}

run_mqtt() {
    /usr/bin/python3 -c 'import paho.mqtt' 2>/dev/null || { skipped mqtt_qos0_ratio "python3 paho-mqtt missing"; return; }
    [ -x /usr/sbin/mosquitto ] || { skipped mqtt_qos0_ratio "mosquitto missing"; return; }
    PIPIT_BENCH_EVENTS=20000 cargo bench --quiet --bench mqtt_throughput >"$LOG/mqtt" 2>&1 ||
        { skipped mqtt_qos0_ratio "the bench failed (output below)"; tail -5 "$LOG/mqtt"; return; }
    report mqtt_qos0_ratio "$(number_after 'QoS 0' <"$LOG/mqtt")"
    report mqtt_qos1_ratio "$(number_after 'QoS 1' <"$LOG/mqtt")"
}

run_host_sources() {
    [ -x /usr/sbin/collectd ] || { skipped host_sources_cpu_ratio "collectd missing"; return; }
    DURATION=30 benches/host_sources.sh >"$LOG/host" 2>&1 ||
        { skipped host_sources_cpu_ratio "the bench failed (output below)"; tail -5 "$LOG/host"; return; }
    report host_sources_cpu_ratio "$(grep 'pipit / collectd CPU' "$LOG/host" | grep -oE '[0-9]+\.[0-9]+' | head -1)"
    report host_sources_metrics_ratio "$(number_after 'pipit / collectd metrics' <"$LOG/host")"
}

run_scrape() {
    [ -x /usr/bin/prometheus-node-exporter ] || { skipped scrape_cpu_ratio "prometheus-node-exporter missing"; return; }
    { cargo build --release --quiet && SECONDS_EACH=5 benches/scrape.sh; } >"$LOG/scrape" 2>&1 ||
        { skipped scrape_cpu_ratio "the bench failed (output below)"; tail -5 "$LOG/scrape"; return; }
    local pipit exporter
    pipit=$(number_after '^pipit, 500 metrics' <"$LOG/scrape")
    exporter=$(number_after '^prometheus-node-exporter' <"$LOG/scrape")
    report scrape_cpu_ratio "$(python3 -c "print(f'{$pipit / $exporter:.3f}')")"
}

run_catalogue() {
    cargo bench --quiet --bench catalogue_memory >"$LOG/catalogue" 2>&1 ||
        { skipped catalogue_memory_ratio "the bench failed (output below)"; tail -5 "$LOG/catalogue"; return; }
    report catalogue_memory_ratio "$(number_after 'ratio catalogue' <"$LOG/catalogue")"
    report catalogue_real_bytes_per_metric "$(number_after 'real sources bytes per metric' <"$LOG/catalogue")"
    report catalogue_answer_peak_ratio "$(number_after 'real sources peak / steady' <"$LOG/catalogue")"
}

run_checks() {
    [ "$(id -u)" = 0 ] || { skipped checks_skipped_nobody "needs root, to run checks as nobody"; return; }
    { cargo build --release --quiet && COUNTS=1000 ROUNDS=1 USERS=nobody benches/checks_at_scale.sh; } \
        >"$LOG/checks" 2>&1 ||
        { skipped checks_skipped_nobody "the bench failed (output below)"; tail -5 "$LOG/checks"; return; }
    report checks_skipped_nobody "$(awk '$1 == 1000 && $2 == "nobody" { print $4 }' "$LOG/checks")"
    report checks_cpu_per_floor "$(number_after 'ratio supervisor CPU per run / floor, 1000 sources as nobody' <"$LOG/checks")"
    report checks_cpu_per_supervised_floor "$(number_after 'ratio supervisor CPU per run / supervised floor, 1000 sources as nobody' <"$LOG/checks")"
    report checks_cpu_per_paced_floor "$(number_after 'ratio supervisor CPU per run / floor at the same pace, 1000 sources as nobody' <"$LOG/checks")"
    report exec_source_rss_kib "$(awk '$1 == 1000 && $2 == "nobody" { print $7 }' "$LOG/checks")"
}

run_replay() {
    [ -x /usr/bin/carbon-cache ] || { skipped replay_dps "carbon-cache missing"; return; }
    /usr/bin/python3 -c 'import whisper' 2>/dev/null || { skipped replay_dps "python3-whisper missing"; return; }
    benches/replay.sh >"$LOG/replay" 2>&1 ||
        { skipped replay_dps "the bench failed (output below)"; tail -5 "$LOG/replay"; return; }
    report replay_dps "$(grep -oE 'replay_rate_dps=[0-9]+' "$LOG/replay" | grep -oE '[0-9]+')"
}

BENCHES=(riemann graphite mqtt host_sources scrape catalogue checks replay)
[ $# -gt 0 ] && BENCHES=("$@")
printf '%-26s %10s %10s %10s\n' figure now target recorded
for bench in "${BENCHES[@]}"; do
    declare -F "run_$bench" >/dev/null || { echo "all.sh: no benchmark $bench; one of: ${BENCHES[*]}" >&2; exit 2; }
    "run_$bench"
done
echo "(tolerance ${TOLERANCE}; load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
exit "$status"
