#!/usr/bin/env bash
# Shared by the benchmarks that run pipit beside collectd 5.12 (Debian's collectd-core) in one run:
# host_sources.sh and footprint.sh. Sourced from the repository root, not run.
#
# Both agents collect the same host sources every second: cpu, load, memory, interface, df, disk,
# uptime, processes, conntrack and thermal (and with ROUTER_SET=1 tcpconns, swap and wireless too).
# collectd writes with write_graphite over TCP to a
# listener on 127.0.0.1. Everything lives in one temporary directory, $WORK; every process started
# here is in PIDS and is stopped, and $WORK removed, when the calling script exits.

COLLECTD=${COLLECTD:-/usr/sbin/collectd}
[ -x "$COLLECTD" ] || { echo "collectd not found: run tests/install-deps.sh (collectd-core)" >&2; exit 1; }

# shellcheck source=benches/work.sh
source benches/work.sh

# The sources of the comparison, as pipit's `sources` array (`cpu` per core, as collectd reports),
# and collectd's plugins of the same names. A script may set ROUTER_SET=1 before sourcing this file
# for all 13 router sources: these and `tcpconns` (all ports summed, as pipit does by default),
# `swap` and `wireless`.
# shellcheck disable=SC2034 # used by the scripts that source this file
PIPIT_SOURCES='[
    {"type": "cpu", "per_core": true}, {"type": "load"}, {"type": "memory"}, {"type": "interface"},
    {"type": "df"}, {"type": "disk"}, {"type": "uptime"}, {"type": "processes"},
    {"type": "conntrack"}, {"type": "thermal"}'
COLLECTD_PLUGINS=(cpu load memory interface df disk uptime processes conntrack thermal)
if [ "${ROUTER_SET:-0}" = 1 ]; then
    PIPIT_SOURCES+=', {"type": "tcpconns"}, {"type": "swap"}, {"type": "wireless"}'
    COLLECTD_PLUGINS+=(tcpconns swap wireless)
    COLLECTD_EXTRA='<Plugin tcpconns>
  ListeningPorts false
  AllPortsSummary true
</Plugin>'
fi
PIPIT_SOURCES+=']'

# start_listener FILE: a Graphite plaintext sink on a free port of 127.0.0.1 that appends what it
# receives to FILE; sets LISTENER_PORT once it accepts connections.
start_listener() {
    LISTENER_PORT=$(free_port)
    python3 benches/count_listener.py "$LISTENER_PORT" "$1" &
    PIDS+=($!)
    for _ in $(seq 50); do (echo > "/dev/tcp/127.0.0.1/$LISTENER_PORT") 2>/dev/null && return; sleep 0.1; done
    echo "the listener on port $LISTENER_PORT did not start" >&2
    exit 1
}

# start_collectd: collectd with the host sources at Interval 1, write_graphite to a new listener
# that appends to $WORK/collectd.out; sets CD to its pid.
start_collectd() {
    start_listener "$WORK/collectd.out"
    cat > "$WORK/collectd.conf" <<CONF
Hostname "bench"
FQDNLookup false
BaseDir "$WORK"
PIDFile "$WORK/collectd.pid"
TypesDB "/usr/share/collectd/types.db"
Interval 1
$(printf 'LoadPlugin %s\n' "${COLLECTD_PLUGINS[@]}")
${COLLECTD_EXTRA:-}
LoadPlugin write_graphite
<Plugin write_graphite>
  <Node "local">
    Host "127.0.0.1"
    Port "$LISTENER_PORT"
    Protocol "tcp"
  </Node>
</Plugin>
CONF
    "$COLLECTD" -f -C "$WORK/collectd.conf" > "$WORK/collectd.log" 2>&1 &
    CD=$!
    PIDS+=("$CD")
}

# start_pipit BINARY CONFIG [NAME]: pipit with the config file CONFIG, its standard output into
# $WORK/NAME.out and its log into $WORK/NAME.log (NAME defaults to pipit); sets PP to its pid.
start_pipit() {
    local name=${3:-pipit}
    RUST_LOG=warn "$1" run -c "$2" > "$WORK/$name.out" 2> "$WORK/$name.log" &
    PP=$!
    PIDS+=("$PP")
}

# per_thread PID FIELD: `name value` for each thread of PID, FIELD of its schedstat (1: nanoseconds
# on CPU, 3: timeslices run), sorted by name (pipit's threads are named).
per_thread() {
    for t in /proc/"$1"/task/*; do echo "$(tr ' ' '_' < "$t/comm") $(cut -d' ' -f"$2" "$t/schedstat")"; done | sort
}

# report_logs: the first lines of each pipit's log and collectd's errors, if any.
report_logs() {
    for log in "$WORK"/pipit*.log; do
        if [ -s "$log" ]; then echo "$(basename "$log"):"; head -5 "$log"; fi
    done
    grep -iE "error|fail" "$WORK/collectd.log" | head -5 || true
}
