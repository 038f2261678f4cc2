#!/usr/bin/env bash
# CPU per collection of the router's host sources: pipit against collectd 5.12 (Debian's
# collectd-core) with the same plugins, and against the floor, side by side in one run, all three
# collecting every second.
#
#   benches/host_sources.sh                 # all 13 router sources, 60 s measurement
#   DURATION=300 benches/host_sources.sh
#   ROUTER_SET=0 benches/host_sources.sh    # the 10 generic ones (no tcpconns, swap, wireless)
#   PING=1 benches/host_sources.sh          # only ping, beside collectd's ping plugin
#   QDISC=1 benches/host_sources.sh         # only qdisc, beside collectd's netlink plugin
#   ROUTER_TABLE=4096 benches/host_sources.sh  # all three in a network namespace of a router's size
#   PIPIT_BIN=/tmp/pipit-before benches/host_sources.sh  # that binary instead of this tree's build
#   BEFORE=/tmp/pipit-before benches/host_sources.sh     # also that binary, beside, in the same window
#
# collectd runs cpu, load, memory, interface, df, disk, uptime, processes, conntrack, thermal,
# tcpconns, swap and wireless with write_graphite to a listener on 127.0.0.1; pipit runs the same
# sources with the stdout output in Graphite format into a file. The floor is benches/floor.c,
# built here: it does only the system calls pipit makes to collect (which files it reads, which
# directories it lists, which file systems it asks statfs, whether it dumps sockets over netlink),
# with no parsing or output; that list is taken from pipit itself under strace after the warm-up.
# Then the CPU time of each process (all its threads) is read at the start and the end of the
# window: utime+stime from /proc/PID/stat (in clock ticks) and, more precisely, the sum of
# /proc/PID/task/*/schedstat (nanoseconds on CPU). Metric lines are counted in what each agent
# delivered during the same window. With BEFORE=BINARY a second pipit, that binary with the same
# config, runs beside the others and is measured in the same window ("pipit before"): a change's
# effect read without the minutes between two runs, in which this shared VM's load moves the
# figures more than most changes do. Needs gcc and strace. The nftables source is not here: collectd has no
# working equivalent on nftables; benches/nftables.sh measures it beside `nft`.
#
# With PING=1 both agents run only ping, to the same hosts (PING_HOSTS, default 127.0.0.1 and ::1:
# loopback only) with the same number of requests per host per second (PING_COUNT, default 10),
# each waiting 90 ms at most: collectd's ping plugin (liboping; Debian's liboping0) with
# `Interval 1/PING_COUNT`, pipit's ping source with `count` PING_COUNT in a 1 s interval. Both use
# raw sockets (run as root). The floor then has nothing to do and is left out of the ratios.
#
# With QDISC=1 both agents run only the queue disciplines' counters of every interface over
# rtnetlink: pipit's qdisc source, collectd's netlink plugin with `QDisc "All"` (which also asks
# the kernel for the links, one dump, and for each interface's qdiscs, one request each). The
# floor is left out as with PING=1.
#
# With ROUTER_TABLE=N all three processes run in one network namespace the script makes, whose TCP
# established table has N buckets (Linux 6.1 and later size a new namespace's table from
# net.ipv4.tcp_child_ehash_entries; without it the namespace shares the host's, sized from its
# RAM: 262,144 buckets at 24 GiB, a few thousand on a router with 128 MiB). The namespace has lo,
# a veth pair (veth0 10.99.0.1, veth1 10.99.0.2) and a listener on veth0 with four connections
# to it, for interface and tcpconns to count. The sysctl is restored as soon as the namespace is
# made, and the namespace (with anything left in it) removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUTER_TABLE=${ROUTER_TABLE:-}
if [ -n "$ROUTER_TABLE" ] && [ -z "${BENCH_NETNS:-}" ]; then
    ns=pipit-bench-$$
    ehash=$(sysctl -n net.ipv4.tcp_child_ehash_entries)
    # shellcheck disable=SC2317 # called by the EXIT trap
    leave_netns() {
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
        sysctl -qw net.ipv4.tcp_child_ehash_entries="$ehash"
    }
    trap leave_netns EXIT
    sysctl -qw net.ipv4.tcp_child_ehash_entries="$ROUTER_TABLE"
    ip netns add "$ns"
    sysctl -qw net.ipv4.tcp_child_ehash_entries="$ehash"
    ip -n "$ns" link set lo up
    ip -n "$ns" link add veth0 type veth peer name veth1
    ip -n "$ns" addr add 10.99.0.1/24 dev veth0
    ip -n "$ns" addr add 10.99.0.2/24 dev veth1
    ip -n "$ns" link set veth0 up
    ip -n "$ns" link set veth1 up
    buckets=$(ip netns exec "$ns" cat /proc/sys/net/ipv4/tcp_ehash_entries)
    [ "$buckets" = "$ROUTER_TABLE" ] ||
        { echo "the namespace's TCP table has $buckets buckets, not $ROUTER_TABLE (Linux < 6.1?)" >&2; exit 1; }
    echo "network namespace $ns: a TCP established table of $buckets buckets"
    BENCH_NETNS=$ns ip netns exec "$ns" "$0"
    exit
fi

DURATION=${DURATION:-60}
WARMUP=${WARMUP:-5}
ROUTER_SET=${ROUTER_SET:-1}
# shellcheck source=benches/side_by_side.sh
source benches/side_by_side.sh
PING=${PING:-0}
QDISC=${QDISC:-0}
# One source alone, without the floor: ping or qdisc.
ALONE=$([ "$PING" = 1 ] || [ "$QDISC" = 1 ] && echo 1 || echo 0)
if [ "$QDISC" = 1 ]; then
    PIPIT_SOURCES='[{"type": "qdisc"}]'
    COLLECTD_PLUGINS=(netlink)
    COLLECTD_EXTRA='<Plugin netlink>
  QDisc "All"
</Plugin>'
fi
if [ "$PING" = 1 ]; then
    PING_HOSTS=${PING_HOSTS:-127.0.0.1 ::1}
    PING_COUNT=${PING_COUNT:-10}
    read -ra hosts <<<"$PING_HOSTS"
    PIPIT_SOURCES="[{\"type\": \"ping\", \"hosts\": [$(printf '"%s", ' "${hosts[@]}" | sed 's/, $//')],
        \"count\": $PING_COUNT, \"reply_timeout\": \"90ms\"}]"
    COLLECTD_PLUGINS=(ping)
    COLLECTD_EXTRA="<Plugin ping>
$(printf '  Host "%s"\n' "${hosts[@]}")
  Interval $(python3 -c "print(1 / $PING_COUNT)")
  Timeout 0.09
</Plugin>"
fi

if [ -n "${BENCH_NETNS:-}" ]; then
    python3 -c 'import socket, time
l = socket.create_server(("10.99.0.1", 0))
conns = [socket.create_connection(l.getsockname()) for _ in range(4)]
accepted = [l.accept() for _ in conns]
time.sleep(1e6)' &
    PIDS+=($!)
fi

if [ -n "${PIPIT_BIN:-}" ]; then
    PIPIT=$PIPIT_BIN
else
    cargo build --release --quiet
    PIPIT=target/release/pipit
fi
gcc -O2 -o "$WORK/floor" benches/floor.c

cat > "$WORK/pipit.json" <<CONF
{
  "agent": {"hostname": "bench", "interval": "1s", "state_dir": "$WORK/state"},
  "sources": $PIPIT_SOURCES,
  "outputs": [{"type": "stdout", "format": "graphite"}]
}
CONF

start_collectd
BEFORE=${BEFORE:-}
if [ -n "$BEFORE" ]; then
    sed "s#$WORK/state#$WORK/state-before#" "$WORK/pipit.json" > "$WORK/pipit-before.json"
    start_pipit "$BEFORE" "$WORK/pipit-before.json" pipit-before
    PB=$PP
fi
start_pipit "$PIPIT" "$WORK/pipit.json"

# The floor's plan: what pipit's threads did in 3 s of collecting, each step once, in order. A
# file read with pread but not opened in those 3 s is one pipit keeps open ("kept"); a process's
# file read with pread, one it keeps open while the process lives ("kpids").
sleep "$WARMUP"
timeout 3 strace -f -qq -y -p "$PP" -e trace=openat,statfs,sendto,pread64 -o "$WORK/trace" || true
python3 - "$WORK/trace" "$WORK" "$PP" > "$WORK/plan" <<'PY'
import re, sys
steps, opened, work, own = [], set(), sys.argv[2], f"/proc/{sys.argv[3]}/"
for line in open(sys.argv[1]):
    if "TCPDIAG_GETSOCK" in line or "nlmsg_type=0x12" in line:
        step = "sockdiag"
    elif m := re.search(r'openat\(AT_FDCWD(?:<[^>]*>)?, "([^"]+)", ([A-Z_|]+)', line):
        path, flags = m.groups()
        if path.startswith(work) or "O_WRONLY" in flags or "O_RDWR" in flags:
            continue
        opened.add(path)
        if re.fullmatch(r"/proc/\d+/(\w+)", path):
            step = "pids " + path.rsplit("/", 1)[1]
        elif "O_DIRECTORY" in flags:
            if path == "/proc":
                continue
            step = "dir " + path
        else:
            step = "file " + path
    elif m := re.search(r'pread64\(\d+<([^>]+)>', line):
        path = m.group(1)
        if path.startswith(own):
            # /proc/self/mounts, named by pipit's own pid once open.
            path = "/proc/self/" + path[len(own):]
        if re.fullmatch(r"/proc/\d+/(\w+)", path):
            step = "kpids " + path.rsplit("/", 1)[1]
        elif path in opened:
            continue
        else:
            step = "kept " + path
    elif m := re.search(r'statfs\("([^"]+)"', line):
        step = "statfs " + m.group(1)
    else:
        continue
    if step not in steps:
        steps.append(step)
# A process's file read with pread is kept, even if a new process's was opened in the window; and
# pipit's own (/proc/self/stat) is one of them, read as every process's.
steps = [s for s in steps if not (s.startswith("pids ") and "k" + s in steps)
         and not (s.startswith("kept /proc/self/") and "kpids " + s[16:] in steps)]
print("\n".join(steps))
PY
"$WORK/floor" "$WORK/plan" $((DURATION + 10)) &
FL=$!
PIDS+=("$FL")
sleep 2

ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
nanos() { cat /proc/"$1"/task/*/schedstat | awk '{ s += $1 } END { printf "%d\n", s }'; }
lines() { wc -l < "$1"; }

c_t0=$(ticks $CD); c_n0=$(nanos $CD); c_l0=$(lines "$WORK/collectd.out")
p_t0=$(ticks $PP); p_n0=$(nanos $PP); p_l0=$(lines "$WORK/pipit.out")
f_t0=$(ticks $FL); f_n0=$(nanos $FL)
b_t0=0; b_n0=0; b_l0=0; b_t1=0; b_n1=0; b_l1=0
if [ -n "$BEFORE" ]; then b_t0=$(ticks "$PB"); b_n0=$(nanos "$PB"); b_l0=$(lines "$WORK/pipit-before.out"); fi
per_thread $PP 1 > "$WORK/threads0"
per_thread $CD 1 > "$WORK/cthreads0"
start=$(date +%s.%N)
sleep "$DURATION"
c_t1=$(ticks $CD); c_n1=$(nanos $CD); c_l1=$(lines "$WORK/collectd.out")
p_t1=$(ticks $PP); p_n1=$(nanos $PP); p_l1=$(lines "$WORK/pipit.out")
f_t1=$(ticks $FL); f_n1=$(nanos $FL)
if [ -n "$BEFORE" ]; then b_t1=$(ticks "$PB"); b_n1=$(nanos "$PB"); b_l1=$(lines "$WORK/pipit-before.out"); fi
per_thread $PP 1 > "$WORK/threads1"
per_thread $CD 1 > "$WORK/cthreads1"
end=$(date +%s.%N)

HZ=$(getconf CLK_TCK)
python3 - "$ALONE" "$start" "$end" "$HZ" "$c_t0" "$c_t1" "$c_n0" "$c_n1" "$c_l0" "$c_l1" "$p_t0" "$p_t1" "$p_n0" "$p_n1" "$p_l0" "$p_l1" "$f_t0" "$f_t1" "$f_n0" "$f_n1" \
    "$b_t0" "$b_t1" "$b_n0" "$b_n1" "$b_l0" "$b_l1" <<'PY'
import sys
alone = sys.argv[1] == "1"
start, end, hz = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
(c_t0, c_t1, c_n0, c_n1, c_l0, c_l1, p_t0, p_t1, p_n0, p_n1, p_l0, p_l1, f_t0, f_t1, f_n0, f_n1,
 b_t0, b_t1, b_n0, b_n1, b_l0, b_l1) = map(int, sys.argv[5:])
before = b_n1 > 0
window = end - start
intervals = window  # all three collect once a second
def row(name, t0, t1, n0, n1, l0=0, l1=0):
    ticks_ms = (t1 - t0) * 1000 / hz / intervals
    sched_ms = (n1 - n0) / 1e6 / intervals
    return name, ticks_ms, sched_ms, (l1 - l0) / intervals
c = row("collectd 5.12", c_t0, c_t1, c_n0, c_n1, c_l0, c_l1)
p = row("pipit", p_t0, p_t1, p_n0, p_n1, p_l0, p_l1)
f = row("floor", f_t0, f_t1, f_n0, f_n1)
b = row("pipit before", b_t0, b_t1, b_n0, b_n1, b_l0, b_l1)
print(f"window {window:.1f} s, {intervals:.0f} collections each")
print(f"{'agent':<14} {'CPU ms/collection (schedstat)':>30} {'(utime+stime)':>14} {'metrics/interval':>17}")
rows = [c, p] if alone else [c, p, f]
if before:
    rows.append(b)
for name, ticks_ms, sched_ms, per in rows:
    print(f"{name:<14} {sched_ms:>30.3f} {ticks_ms:>14.2f} {per:>17.1f}")
print(f"pipit / collectd CPU: {p[2] / c[2]:.3f} (schedstat), {p[1] / c[1] if c[1] else float('nan'):.3f} (utime+stime)")
if not alone:
    print(f"pipit / floor CPU: {p[2] / f[2]:.3f} (schedstat)")
print(f"pipit / collectd metrics: {p[3] / c[3]:.2f}")
if before:
    print(f"pipit before / collectd CPU: {b[2] / c[2]:.3f} (schedstat)")
    if not alone:
        print(f"pipit before / floor CPU: {b[2] / f[2]:.3f} (schedstat)")
    print(f"pipit / pipit before CPU: {p[2] / b[2]:.3f} (schedstat)")
PY
if [ "$ALONE" != 1 ]; then
    echo "the floor's plan (what pipit does each collection):"
    sed 's/^/  /' "$WORK/plan"
fi
echo "pipit by thread (ms per collection):"
join "$WORK/threads0" "$WORK/threads1" | awk -v n="$DURATION" '{ printf "  %-16s %7.3f\n", $1, ($3 - $2) / 1e6 / n }'
if [ "$ALONE" = 1 ]; then
    echo "collectd by thread (ms per collection):"
    join "$WORK/cthreads0" "$WORK/cthreads1" | awk -v n="$DURATION" '{ printf "  %-16s %7.3f\n", $1, ($3 - $2) / 1e6 / n }'
fi
procs=(/proc/[0-9]*)
echo "processes on this box: ${#procs[@]}"
report_logs
