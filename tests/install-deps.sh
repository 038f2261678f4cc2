#!/usr/bin/env bash
# Installs the real backend servers used by the integration tests
# (tests/common/peers.rs) on a Debian machine. Idempotent: re-running
# when everything is present only performs quick checks.
#
#   apt:  graphite-carbon carbon-c-relay python3-whisper influxdb collectd-core victoria-metrics,
#         iproute2 (the network namespaces of tests/wan.rs and tests/router_sources.rs),
#         mosquitto mosquitto-clients python3-paho-mqtt (the MQTT broker of tests/mqtt_peer.rs,
#         tests/mqtt_tls.rs and tests/mqtt_source.rs, mosquitto_pub and the independent subscriber),
#         prometheus (its server and promtool, for tests/http_server.rs),
#         chromium (the headless browser that loads the status page in tests/status_page.rs),
#         dnsmasq-base (the DNS server of tests/dns.rs and the DHCP server of
#         tests/router_sources.rs; no service comes with it), busybox (its udhcpc DHCP client),
#         nftables (nft, which makes the tables of tests/router_sources.rs and reads their
#         counters back, and injects the loss tests/ping.rs measures; its service is not enabled)
#         and, for tests/packaging.rs, systemd (systemd-analyze, systemd-sysusers), shellcheck and
#         make (the OpenWrt Makefile's variables, evaluated by GNU make)
#   pip:  riemann-client (pulls protobuf>=3.2,<4) and python-snappy (the Python remote-write sender
#         of benches/remote_write_throughput.rs) into the python3 on PATH (or $PIPIT_TEST_PYTHON)
#
# The Debian packages ship system services (carbon-cache, carbon-c-relay, influxdb, collectd,
# victoria-metrics, mosquitto, prometheus) that would listen on 2003/2004/8086/25826/8428/1883/9090. The tests start their own
# private instances on free ports, so the system services are kept from
# starting (policy-rc.d during the install) and are disabled / stopped
# afterwards.
set -euo pipefail

APT_PKGS=(graphite-carbon carbon-c-relay python3-whisper influxdb collectd-core victoria-metrics iproute2
          dnsmasq-base busybox shellcheck systemd make mosquitto mosquitto-clients python3-paho-mqtt
          prometheus nftables chromium)
SERVICES=(carbon-cache carbon-c-relay influxdb collectd victoria-metrics mosquitto prometheus)
PYTHON="${PIPIT_TEST_PYTHON:-python3}"
POLICY=/usr/sbin/policy-rc.d

step() { echo "[install-deps] $*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "[install-deps] need root (or sudo) to run: $*" >&2
        exit 1
    fi
}

is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# ---------------------------------------------------------------- apt ----
missing=()
for p in "${APT_PKGS[@]}"; do
    is_installed "$p" || missing+=("$p")
done

policy_backup=""
policy_created=0
restore_policy() {
    if [ "$policy_created" -eq 1 ]; then
        if [ -n "$policy_backup" ]; then
            as_root mv -f "$policy_backup" "$POLICY"
            step "restored the previous $POLICY"
        else
            as_root rm -f "$POLICY"
            step "removed temporary $POLICY"
        fi
    fi
}
trap restore_policy EXIT

if [ "${#missing[@]}" -eq 0 ]; then
    step "apt: all present (${APT_PKGS[*]}), skipping"
else
    step "apt: missing ${missing[*]}"
    # Keep maintainer scripts from starting services during the install.
    if [ -e "$POLICY" ]; then
        policy_backup="$(mktemp /tmp/policy-rc.d.XXXXXX)"
        as_root cp -p "$POLICY" "$policy_backup"
    fi
    printf '#!/bin/sh\n# temporary: do not start services during install\nexit 101\n' \
        | as_root tee "$POLICY" >/dev/null
    as_root chmod 0755 "$POLICY"
    policy_created=1
    step "apt: installed temporary $POLICY (exit 101)"

    step "apt: apt-get update"
    as_root apt-get update -qq
    step "apt: installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    restore_policy
    policy_created=0
    step "apt: done"
fi

# ---------------------------------------------- keep services stopped ----
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    for s in "${SERVICES[@]}"; do
        if systemctl list-unit-files "$s.service" >/dev/null 2>&1 &&
           systemctl cat "$s.service" >/dev/null 2>&1; then
            if systemctl is-enabled --quiet "$s.service" 2>/dev/null ||
               systemctl is-active --quiet "$s.service" 2>/dev/null; then
                as_root systemctl disable --now "$s.service" >/dev/null 2>&1 || true
                step "service $s: disabled and stopped (systemd)"
            else
                step "service $s: not enabled, not running (systemd)"
            fi
        fi
    done
else
    # No systemd: sysv scripts. Their "status" is unreliable (carbon-cache's
    # returns 0 when disabled in /etc/default), so look at listening sockets.
    for s in "${SERVICES[@]}"; do
        [ -x "/etc/init.d/$s" ] || continue
        if compgen -G "/etc/rc[2-5].d/S*$s" >/dev/null; then
            # Turn boot-time start links into stop links; harmless without init.
            as_root update-rc.d "$s" disable >/dev/null 2>&1 || true
            step "service $s: boot start disabled (sysv)"
        else
            step "service $s: boot start already disabled (sysv)"
        fi
    done
fi

# Port owners: carbon-cache 2003/2004 (tcp), influxdb 8086/8088 (tcp),
# collectd 25826 (udp).
port_listening() { # proto port
    local hex
    hex=$(printf ':%04X ' "$2")
    if [ "$1" = tcp ]; then
        # state 0A = LISTEN
        cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk -v h="$hex" \
            'NR>1 && index($2 " ", h) && $4 == "0A" {f=1} END {exit !f}'
    else
        cat /proc/net/udp /proc/net/udp6 2>/dev/null | awk -v h="$hex" \
            'NR>1 && index($2 " ", h) {f=1} END {exit !f}'
    fi
}
for spec in carbon-cache:tcp:2003 carbon-cache:tcp:2004 carbon-c-relay:tcp:2003 influxdb:tcp:8086 influxdb:tcp:8088 \
            collectd:udp:25826 victoria-metrics:tcp:8428 mosquitto:tcp:1883; do
    IFS=: read -r s proto port <<<"$spec"
    if port_listening "$proto" "$port"; then
        step "port $proto/$port is taken; stopping service $s"
        if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
            as_root systemctl stop "$s.service" >/dev/null 2>&1 || true
        elif [ -x "/etc/init.d/$s" ]; then
            as_root "/etc/init.d/$s" stop >/dev/null 2>&1 || true
        fi
        if port_listening "$proto" "$port"; then
            step "WARNING: port $proto/$port still taken (tests use free ports, so this is not fatal)"
        fi
    else
        step "port $proto/$port: free"
    fi
done

# ---------------------------------------------------------------- pip ----
if "$PYTHON" -c 'import riemann_client.riemann_pb2' >/dev/null 2>&1; then
    step "pip: riemann-client importable by $PYTHON, skipping"
else
    step "pip: installing riemann-client (+ protobuf<4) into $PYTHON"
    # riemann-client 7.0.0 declares protobuf>=3.2.0,<4.0.0 (pip picks 3.20.3).
    "$PYTHON" -m pip install -q 'riemann-client' 'protobuf>=3.2.0,<4.0.0'
    "$PYTHON" -c 'import riemann_client.riemann_pb2' ||
        { echo "[install-deps] riemann_client.riemann_pb2 still not importable" >&2; exit 1; }
    step "pip: done"
fi
if "$PYTHON" -c 'import snappy, google.protobuf' >/dev/null 2>&1; then
    step "pip: python-snappy importable by $PYTHON, skipping"
else
    step "pip: installing python-snappy into $PYTHON"
    "$PYTHON" -m pip install -q 'python-snappy'
    "$PYTHON" -c 'import snappy, google.protobuf' ||
        { echo "[install-deps] snappy and google.protobuf still not importable" >&2; exit 1; }
    step "pip: done"
fi

# ------------------------------------------------------------ checks ----
command -v carbon-cache >/dev/null 2>&1 || { echo "[install-deps] carbon-cache not on PATH" >&2; exit 1; }
command -v carbon-c-relay >/dev/null 2>&1 || { echo "[install-deps] carbon-c-relay not on PATH" >&2; exit 1; }
command -v influxd >/dev/null 2>&1 || { echo "[install-deps] influxd not on PATH" >&2; exit 1; }
command -v victoria-metrics >/dev/null 2>&1 || { echo "[install-deps] victoria-metrics not on PATH" >&2; exit 1; }
[ -x /usr/sbin/dnsmasq ] || { echo "[install-deps] /usr/sbin/dnsmasq missing" >&2; exit 1; }
command -v nft >/dev/null 2>&1 || { echo "[install-deps] nft not on PATH" >&2; exit 1; }
for tool in shellcheck systemd-analyze systemd-sysusers; do
    command -v "$tool" >/dev/null 2>&1 || { echo "[install-deps] $tool not on PATH" >&2; exit 1; }
done
for tool in /usr/sbin/mosquitto mosquitto_passwd /usr/bin/chromium; do
    command -v "$tool" >/dev/null 2>&1 || { echo "[install-deps] $tool not on PATH" >&2; exit 1; }
done
/usr/bin/python3 -c 'import paho.mqtt.client' ||
    { echo "[install-deps] /usr/bin/python3 cannot import paho.mqtt.client" >&2; exit 1; }
/usr/bin/python3 -c 'import whisper, carbon.hashing' ||
    { echo "[install-deps] /usr/bin/python3 cannot import whisper / carbon.hashing" >&2; exit 1; }
step "check: carbon-cache=$(command -v carbon-cache) influxd=$(command -v influxd) whisper+carbon.hashing importable"
step "all dependencies present"
