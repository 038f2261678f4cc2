#!/usr/bin/env bash
# Memory and flash writes of pipit during a Graphite outage, in one run.
#
#   benches/outage.sh                      # a 300 s outage, figures extrapolated to an hour
#   DURATION=3600 benches/outage.sh        # a measured hour
#   SAMPLE=10 BOUNDS=60 benches/outage.sh  # sample period of the outage; seconds of each bounds run
#   PIPIT=path/to/pipit benches/outage.sh  # another build (a static one, say) instead
#
# 1. The outage at the default config: the embedded default sources (src/config_file/embedded.json)
#    with one graphite output to a dead 127.0.0.1 port (nothing listens) and `"spool": {}` (every
#    spool key at its default), for DURATION seconds. Every SAMPLE seconds: VmRSS and RssAnon
#    (/proc/PID/status), write_bytes (/proc/PID/io: everything pipit wrote to disk, the spool and
#    the counter cache), the size of the state directory, and the output's queue and spool from
#    `pipit ctl status`. fsync and fdatasync calls are counted with strace (--seccomp-bpf, so only
#    those calls stop the process), in all and on spool segments, when strace is installed. At the end the spool's segment files
#    are decoded: records (appends) and events. Per-hour figures are scaled from the window.
# 2. The bounds (skipped with BOUNDS=0): the same config plus an exec daemon printing 8,000
#    datapoints a second, for BOUNDS seconds each: target up (a sink that reads everything), target
#    down without a spool (the queue fills, then new events are dropped), target down with the
#    default spool (it reaches its 16 MiB bound, then the oldest segments are dropped). VmRSS is
#    sampled every 5 s; the report gives the time each bound was reached and the memory then.
#
# Every process started here is stopped by pid, and the temporary directory removed, on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-300}
SAMPLE=${SAMPLE:-10}
BOUNDS=${BOUNDS:-60}

if [ -z "${PIPIT:-}" ]; then
    cargo build --release --quiet
    PIPIT=target/release/pipit
fi

# shellcheck source=benches/work.sh disable=SC1091
source benches/work.sh

# config NAME PORT SPOOL FAST: the embedded default config with the state directory
# $WORK/NAME-state, the control socket $WORK/NAME.sock, one graphite output to 127.0.0.1:PORT (with
# the default spool when SPOOL is 1) and, when FAST is 1, an exec daemon printing 8,000 datapoints
# a second (400 every 50 ms, 400 paths).
config() {
    python3 - "$WORK/$1" "$2" "$3" "$4" <<'PY'
import json, sys
base, port, spool, fast = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4] == "1"
config = json.load(open("src/config_file/embedded.json"))
config["agent"] = {"state_dir": base + "-state"}
config["control"] = {"socket": base + ".sock"}
output = {"type": "graphite", "host": "127.0.0.1", "port": port}
if spool:
    output["spool"] = {}
config["outputs"] = [output]
if fast:
    generator = ("import sys, time\n"
                 "i = 0\n"
                 "while True:\n"
                 "    t = int(time.time())\n"
                 "    for _ in range(400):\n"
                 "        sys.stdout.write('bench.gen.p%d %d %d\\n' % (i % 400, i, t))\n"
                 "        i += 1\n"
                 "    sys.stdout.flush()\n"
                 "    time.sleep(0.05)\n")
    config["sources"].append({"type": "exec", "name": "gen", "mode": "daemon",
                              "format": "graphite", "interval": "50ms",
                              "command": ["python3", "-u", "-c", generator]})
print(json.dumps(config, indent=2))
PY
}

# start NAME [strace]: pipit with $WORK/NAME.json, its log in $WORK/NAME.log; with `strace`, run
# under strace counting fsync and fdatasync into $WORK/NAME.fsync. Sets PP to pipit's own pid.
start() {
    if [ "${2:-}" = strace ]; then
        RUST_LOG=warn strace -f -y --seccomp-bpf -e trace=fsync,fdatasync -o "$WORK/$1.fsync" \
            "$PIPIT" run -c "$WORK/$1.json" > /dev/null 2> "$WORK/$1.log" &
        local tracer=$!
        PIDS+=("$tracer")
        PP=""
        for _ in $(seq 100); do
            PP=$(cat /proc/"$tracer"/task/*/children 2>/dev/null | awk '{ print $1 }')
            [ -n "$PP" ] && [ "$(cat /proc/"$PP"/comm 2>/dev/null)" = pipit ] && break
            sleep 0.05
        done
        [ -n "$PP" ] || { echo "pipit did not start under strace" >&2; cat "$WORK/$1.log" >&2; exit 1; }
    else
        RUST_LOG=warn "$PIPIT" run -c "$WORK/$1.json" > /dev/null 2> "$WORK/$1.log" &
        PP=$!
    fi
    PIDS+=("$PP")
    for _ in $(seq 100); do [ -S "$WORK/$1.sock" ] && return; sleep 0.05; done
    echo "pipit ($1) did not open its control socket" >&2
    cat "$WORK/$1.log" >&2
    exit 1
}

# sample NAME PID SECONDS EVERY: a line of figures every EVERY seconds for SECONDS seconds, into
# $WORK/NAME.samples and on standard output.
sample() {
    python3 - "$PIPIT" "$WORK/$1" "$2" "$3" "$4" <<'PY' | tee "$WORK/$1.samples"
import json, os, subprocess, sys, time
pipit, base, pid, seconds, every = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])

def field(path, key):
    for line in open(path):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0

def tree_bytes(root):
    total = 0
    for d, _, files in os.walk(root):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(d, f))
            except OSError:
                pass
    return total

def fsyncs():
    """fsync and fdatasync calls so far: on spool segments, and in all."""
    try:
        calls = [l for l in open(base + ".fsync") if "sync(" in l and "resumed" not in l]
    except OSError:
        return -1, -1
    return sum(".seg>" in l for l in calls), len(calls)

print("t_s rss_kib anon_kib write_bytes state_bytes queue_depth dropped_queue_full "
      "spooled spool_depth spool_bytes dropped_spool_full fsyncs_spool fsyncs_all", flush=True)
start = float(open(f"/proc/{pid}/stat").read().split()[21]) / os.sysconf("SC_CLK_TCK")
uptime = lambda: float(open("/proc/uptime").read().split()[0])
t0 = time.monotonic()
k = 0
while True:
    status = json.loads(subprocess.run([pipit, "ctl", "status", "--json", "--socket", base + ".sock"],
                                       capture_output=True, text=True, check=True).stdout)
    out = status.get("result", status)["outputs"][0]
    row = [round(uptime() - start, 1), field(f"/proc/{pid}/status", "VmRSS"),
           field(f"/proc/{pid}/status", "RssAnon"), field(f"/proc/{pid}/io", "write_bytes"),
           tree_bytes(base + "-state"), out["queue_depth"], out["dropped_queue_full"],
           out["spooled"], out["spool_depth"], out["spool_bytes"], out["dropped_spool_full"], *fsyncs()]
    print(" ".join(map(str, row)), flush=True)
    k += 1
    if k * every > seconds:
        break
    time.sleep(max(0.0, t0 + k * every - time.monotonic()))
PY
}

# stop PID: SIGTERM and wait for the exit.
stop() {
    kill -TERM "$1"
    for _ in $(seq 200); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.05; done
    echo "pipit $1 did not stop" >&2
    exit 1
}

# segments DIR: records and events in the spool segment files under DIR (4-byte length, 4-byte
# CRC-32, JSON lines).
segments() {
    python3 - "$1" <<'PY'
import os, sys
records = events = size = 0
for d, _, files in os.walk(sys.argv[1]):
    for f in files:
        if f.endswith(".seg"):
            data = open(os.path.join(d, f), "rb").read()
            size += len(data)
            at = 0
            while at + 8 <= len(data):
                n = int.from_bytes(data[at:at + 4], "big")
                events += data[at + 8:at + 8 + n].count(b"\n")
                records += 1
                at += 8 + n
print(records, events, size)
PY
}

STRACE=""
command -v strace > /dev/null && STRACE=strace

echo "== outage at the default config: ${DURATION} s, a sample every ${SAMPLE} s"
config outage "$(free_port)" 1 0 > "$WORK/outage.json"
start outage "$STRACE"
OUTAGE=$PP
sample outage "$OUTAGE" "$DURATION" "$SAMPLE"
read -r records events seg_bytes < <(segments "$WORK/outage-state")
stop "$OUTAGE"
python3 - "$WORK/outage.samples" "$records" "$events" "$seg_bytes" <<'PY'
import sys
rows = [list(map(float, l.split())) for l in list(open(sys.argv[1]))[1:]]
records, events, seg_bytes = map(int, sys.argv[2:])
first, last = rows[0], rows[-1]
hours = last[0] / 3600
print(f"window {last[0]:.0f} s since pipit started; {len(rows)} samples")
print(f"VmRSS   first {first[1]:.0f} KiB, last {last[1]:.0f} KiB, max {max(r[1] for r in rows):.0f} KiB")
print(f"RssAnon first {first[2]:.0f} KiB, last {last[2]:.0f} KiB, max {max(r[2] for r in rows):.0f} KiB")
print(f"queue depth max {max(r[5] for r in rows):.0f}; dropped (queue full) {last[6]:.0f}; "
      f"dropped (spool full) {last[10]:.0f}")
print(f"write_bytes {last[3]:.0f} ({last[3] / hours / 2**20:.2f} MiB per hour); "
      f"state directory {last[4]:.0f} bytes; spool {last[9]:.0f} bytes")
print(f"spool segments: {records} records, {events} events, {seg_bytes} bytes; "
      f"{records / hours:.0f} appends and {seg_bytes / hours / 2**20:.2f} MiB per hour; "
      f"{seg_bytes / max(events, 1):.0f} bytes per event")
if last[12] >= 0:
    print(f"fsync + fdatasync calls: {last[12]:.0f} ({last[12] / hours:.1f} per hour), of which on "
          f"spool segments {last[11]:.0f} ({last[11] / hours:.1f} per hour)")
else:
    print("fsync + fdatasync calls: not counted (strace not installed)")
PY

if [ "$BOUNDS" -gt 0 ]; then
    for run in up down down-spool; do
        echo "== bounds: default config + 8,000 datapoints/s, target $run, ${BOUNDS} s"
        port=$(free_port)
        spool=0
        case $run in
            up)
                python3 benches/count_listener.py "$port" /dev/null &
                PIDS+=($!)
                for _ in $(seq 50); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
                ;;
            down-spool) spool=1 ;;
        esac
        config "$run" "$port" "$spool" 1 > "$WORK/$run.json"
        start "$run"
        pid=$PP
        sample "$run" "$pid" "$BOUNDS" 5 > /dev/null
        stop "$pid"
        python3 - "$WORK/$run.samples" <<'PY'
import sys
rows = [list(map(float, l.split())) for l in list(open(sys.argv[1]))[1:]]
def at(what, cond):
    hit = next((r for r in rows if cond(r)), None)
    return f"{what} at {hit[0]:.0f} s (VmRSS {hit[1]:.0f} KiB)" if hit else f"{what}: not reached"
print(f"VmRSS first {rows[0][1]:.0f} KiB (at {rows[0][0]:.0f} s), last {rows[-1][1]:.0f} KiB, "
      f"max {max(r[1] for r in rows):.0f} KiB; RssAnon last {rows[-1][2]:.0f} KiB; dropped "
      f"(queue full) {rows[-1][6]:.0f}, spooled {rows[-1][7]:.0f}, dropped (spool full) {rows[-1][10]:.0f}")
print("; ".join([at("queue full", lambda r: r[6] > 0), at("spool at its bound", lambda r: r[10] > 0)]))
PY
    done
fi
