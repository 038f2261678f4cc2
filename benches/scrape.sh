#!/usr/bin/env bash
# CPU per scrape of pipit's /metrics (http_server) for 500 and 10,000 metrics, beside Debian's
# prometheus-node-exporter on the same host, scraped at the same rate in the same run.
#
#   benches/scrape.sh                         # 20 s of scrapes at 10 per second each
#   SECONDS_EACH=60 RATE=5 benches/scrape.sh
#   PIPIT=path/to/pipit benches/scrape.sh     # another build (needs the exec and http_server features)
#
# Three agents run at once: two pipits, each with an exec source printing 500 or 10,000 Graphite
# lines every 10 s (every name a family of its own, so each answer carries a HELP and TYPE line per
# metric: the heaviest case), and node-exporter with its default collectors. After a warm-up, each
# agent's CPU time (utime + stime from /proc/PID/stat) is read over an idle window and then over a
# window in which all three are scraped RATE times a second; the CPU per scrape is the difference
# divided by the scrapes. Series counts are those of the last answer.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=${SECONDS_EACH:-20}
RATE=${RATE:-10}
PIPIT=${PIPIT:-target/release/pipit}
EXPORTER=${EXPORTER:-/usr/bin/prometheus-node-exporter}
[ -x "$PIPIT" ] || cargo build --release --quiet
[ -x "$EXPORTER" ] || { echo "scrape: $EXPORTER missing (apt-get install prometheus-node-exporter)" >&2; exit 1; }

dir=$(mktemp -d /tmp/pipit-scrape.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_pipit() { # name metrics port
    cat >"$dir/$1.json" <<EOF
{"agent": {"hostname": "bench", "state_dir": "$dir/$1-state"},
 "control": {"enabled": false},
 "http_server": {"enabled": true, "binds": ["127.0.0.1:$3"]},
 "sources": [{"type": "exec", "name": "gen", "format": "graphite", "interval": "10s",
   "shell": true, "max_output": 1048576,
   "command": "awk -v n=$2 'BEGIN { for (i = 0; i < n; i++) print \"bench.m\" i, i }'"}],
 "outputs": [{"type": "stdout", "batch_timeout": "1h", "batch_size": 100000}]}
EOF
    RUST_LOG=warn "$PIPIT" run -c "$dir/$1.json" >/dev/null 2>"$dir/$1.log" &
    pids+=("$!")
}

cpu_ticks() { # pid: utime + stime in clock ticks
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

p500=$(free_port); p10k=$(free_port); pne=$(free_port)
start_pipit small 500 "$p500"
pid500=${pids[-1]}
start_pipit large 10000 "$p10k"
pid10k=${pids[-1]}
"$EXPORTER" --web.listen-address="127.0.0.1:$pne" >/dev/null 2>"$dir/node.log" &
pids+=("$!")
pidne=$!

# Warm-up: until both pipits list their metrics.
for _ in $(seq 100); do
    a=$(curl -s "http://127.0.0.1:$p500/metrics" | grep -c '^bench_m' || true)
    b=$(curl -s "http://127.0.0.1:$p10k/metrics" | grep -c '^bench_m' || true)
    [ "$a" -ge 500 ] && [ "$b" -ge 10000 ] && break
    sleep 0.2
done
if [ "$a" -lt 500 ] || [ "$b" -lt 10000 ]; then
    echo "scrape: the metrics did not appear (see $dir/*.log)" >&2
    exit 1
fi

hz=$(getconf CLK_TCK)
declare -A before after
for p in $pid500 $pid10k $pidne; do before[$p]=$(cpu_ticks "$p"); done
sleep "$SECONDS_EACH"
declare -A idle_ticks
for p in $pid500 $pid10k $pidne; do idle_ticks[$p]=$(( $(cpu_ticks "$p") - before[$p] )); done

scrapes=$((SECONDS_EACH * RATE))
for p in $pid500 $pid10k $pidne; do before[$p]=$(cpu_ticks "$p"); done
python3 - "$scrapes" "$RATE" "$p500" "$p10k" "$pne" "$dir" <<'EOF'
import sys, time, urllib.request
n, rate, ports, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:6], sys.argv[6]
start = time.monotonic()
for i in range(n):
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            body = r.read()
        if i == n - 1:
            open(f"{out}/last-{port}", "wb").write(body)
    delay = start + (i + 1) / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
EOF
for p in $pid500 $pid10k $pidne; do after[$p]=$(cpu_ticks "$p"); done

series() { grep -vc '^#' "$dir/last-$1"; }
bytes() { wc -c <"$dir/last-$1"; }
printf '%-34s %8s %9s %14s %14s\n' agent series bytes "idle CPU ms/s" "CPU ms/scrape"
row() { # label pid port
    local busy=$(( after[$2] - before[$2] - idle_ticks[$2] ))
    awk -v l="$1" -v s="$(series "$3")" -v b="$(bytes "$3")" -v i="${idle_ticks[$2]}" \
        -v busy="$busy" -v n="$scrapes" -v hz="$hz" -v secs="$SECONDS_EACH" \
        'BEGIN { printf "%-34s %8d %9d %14.2f %14.3f\n", l, s, b, i * 1000 / hz / secs, busy * 1000 / hz / n }'
}
row "pipit, 500 metrics" "$pid500" "$p500"
row "pipit, 10,000 metrics" "$pid10k" "$p10k"
row "prometheus-node-exporter" "$pidne" "$pne"
echo "($scrapes scrapes of each at $RATE/s; CPU from /proc/PID/stat at $hz ticks/s)"
