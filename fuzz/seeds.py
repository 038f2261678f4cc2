#!/usr/bin/env python3
"""Writes seed inputs for every fuzz target into OUT/<target>/, from the repository's own test
fixtures, docs and a few inline examples. Usage: seeds.py OUT"""

import glob
import json
import os
import re
import struct
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
OUT = sys.argv[1]


def seed(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


# Config: the embedded default, the UCI fixture and every JSON block of the docs.
seed("config", "embedded", read(os.path.join(REPO, "src/config/embedded.json")))
for path in glob.glob(os.path.join(REPO, "tests/fixtures/**/*.json"), recursive=True):
    seed("config", os.path.basename(path), read(path))
for path in sorted(glob.glob(os.path.join(REPO, "docs/*.md"))) + [os.path.join(REPO, "README.md")]:
    text = open(path, encoding="utf-8").read()
    for i, block in enumerate(re.findall(r"```json\n(.*?)```", text, re.S)):
        seed("config", f"{os.path.basename(path)}-{i}", block)

events = [
    {"service": "cpu.user", "host": "gw1", "metric": 12.5, "time": 1700000000.25, "kind": "gauge"},
    {"service": "disk", "host": "h", "state": "critical", "description": "full", "metric": 3,
     "ttl": 20, "tags": ["a", "b"], "attributes": {"k": "v"}, "time": 1, "kind": "metric"},
]
for i, e in enumerate(events):
    seed("event_json", f"event{i}", json.dumps(e))

seed("check_nagios", "ok", "DISK OK - free space: / 3326 MB (56%) | /=2643MB;5948;5958;0;5968\n")
seed("check_nagios", "multi", "PING OK | rta=0.5ms;100;500 pl=0%;20;60\nlong text\nmore | 'a b'=1c;;;;\n")
seed("check_graphite", "lines", "load.1 0.5 1700000000\nmem.free 1234\n# comment\n")
seed("check_json", "lines", "\n".join(json.dumps(e) for e in events) + "\n")
seed("check_value", "int", "42\n")
seed("check_value", "float", "-1.5e3")


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


# Netlink: answers captured from a real kernel (tests/fixtures/netlink).
for path in glob.glob(os.path.join(REPO, "tests/fixtures/netlink/*.bin")):
    seed("netlink_sock_diag", os.path.basename(path), read(path))

seed("mqtt_packet", "connack_pubacks_pingresp", b"\x20\x02\x01\x00\x40\x02\x00\x01\x40\x02\xff\xff\xd0\x00")
seed("mqtt_packet", "oversized", b"\x40\xff\xff\xff\x7f")
seed("mqtt_packet", "suback_publish_qos0_qos1", b"\x90\x04\x00\x01\x01\x80"
     + b"\x30\x0a\x00\x03a/b21.5\x00" + b"\x3b\x0e\x00\x03a/b\x00\x07" + b"{\"v\":1}")
seed("riemann_ack", "ok", varint(2 << 3) + varint(1))
seed("riemann_ack", "error", varint(3 << 3 | 2) + varint(7) + b"refused" + varint(2 << 3) + b"\x00")


def dns_reply(qtype, rcode, records):
    """A reply to pipit's query for host.example, preceded by the target's selector byte."""
    question = b"\x04host\x07example\x00" + struct.pack(">HH", qtype, 1)
    header = struct.pack(">HHHHHH", 0x1234, 0x8180 | rcode, 1, len(records), 0, 0)
    answers = b"".join(b"\xc0\x0c" + struct.pack(">HHIH", t, 1, 300, len(d)) + d for t, d in records)
    selector = (2 if qtype == 1 else 3).to_bytes(1, "big")
    return selector + header + question + answers


cname = b"\x05other\x07example\x00"
seed("dns_reply", "a", dns_reply(1, 0, [(5, cname), (1, bytes([192, 0, 2, 1])), (1, bytes([192, 0, 2, 2]))]))
seed("dns_reply", "aaaa", dns_reply(28, 0, [(28, bytes(15) + b"\x01")]))
seed("dns_reply", "nxdomain", dns_reply(1, 3, []))


def icmp_sum(data):
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_reply(kind, seq):
    """An echo reply to the ping source, of type `kind` (0: IPv4, 129: IPv6), 56 bytes of data."""
    message = struct.pack(">BBHHH", kind, 0, 0, 0xBEEF, seq) + bytes(range(56))
    if kind == 0:
        message = message[:2] + struct.pack(">H", icmp_sum(message)) + message[4:]
    return message


reply4 = echo_reply(0, 7)
ip4 = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(reply4), 0, 0x4000, 64, 1, 0,
                  bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2]))
seed("icmp_echo", "raw_v4", b"\x00" + ip4 + reply4)
seed("icmp_echo", "raw_v4_fixed_sum", b"\x80" + ip4 + reply4)
seed("icmp_echo", "datagram_v4", b"\x01" + reply4)
seed("icmp_echo", "v6", b"\x02" + echo_reply(129, 7))

for i, line in enumerate([
    '{"call":"get_metrics","selector":"^load\\\\.1$"}',
    '{"call":"get_metrics","prefix":"edge.","limit":2,"metadata":false}',
    '{"call":"status"}', '{"call":"reload"}', '{"call":"stop"}',
]):
    seed("control_request", f"req{i}", line + "\n")

seed("cache_file", "v1", json.dumps({"version": 1, "sources": {
    "cpu": {"cpu.user": [123, 1700000000000], "cpu.system": [18446744073709551615, 1]}}}))


def record(batch):
    payload = "".join(json.dumps(e) + "\n" for e in batch).encode()
    return struct.pack(">II", len(payload), zlib.crc32(payload)) + payload


segment = record(events) + record(events[:1])
seed("spool_segment", "good", b"\x00" + segment)
seed("spool_segment", "fixed", b"\x01" + segment)
seed("spool_segment", "cursor", b"\x07" + struct.pack(">H", len(record(events))) + segment)
seed("spool_segment", "torn", b"\x00" + segment[:-5])

# /proc and /sys sources: each target's files, from each fixture tree, joined by NUL (the first
# collection), then the same files of the tree's "-next" sibling where it has one (the second).
for path in sorted(glob.glob(os.path.join(HERE, "fuzz_targets/proc_*.rs"))):
    target = os.path.basename(path)[:-3]
    files = re.findall(r'^\s+"([a-z].*?)",$', open(path).read(), re.M)
    for tree in sorted(glob.glob(os.path.join(REPO, "tests/fixtures/*/"))):
        tree = tree.rstrip("/")
        parts = [os.path.join(tree, f) for f in files]
        if not any(os.path.isfile(p) for p in parts):
            continue
        data = b"\0".join(read(p) if os.path.isfile(p) else b"" for p in parts)
        if os.path.isdir(tree + "-next"):
            nexts = [os.path.join(tree + "-next", f) for f in files]
            data += b"\0" + b"\0".join(read(p) if os.path.isfile(p) else read(c) if os.path.isfile(c) else b""
                                       for p, c in zip(nexts, parts))
        seed(target, os.path.basename(tree), data)
    # Some files are in no fixture tree; a small example each keeps every target seeded.
    if not os.path.isdir(os.path.join(OUT, target)):
        seed(target, "empty", b"")

examples = {
    "proc_wireless": "Inter-| sta-|   Quality        |   Discarded packets               | Missed | WE\n"
                     " face | tus | link level noise |  nwid  crypt   frag  retry   misc | beacon | 22\n"
                     " wlan0: 0000   54.  -56.  -256        0      0      0      0      0        0\n",
    "proc_conntrack": "1234\n\x0065536\n",
    "proc_thermal": "45000\n\x00cpu-thermal\n\x0051000\n\x00gpu\n\x00coretemp\n\x0047000\n\x00Core 0\n",
    "proc_df": "/dev/root / ext4 rw,relatime 0 0\ntmpfs /tmp tmpfs rw 0 0\n",
}
for target, data in examples.items():
    seed(target, "example", data)

seed("tail_lines", "log", b"\x07" + b"Nov 22 kernel: eth0 up\r\nNov 22 dnsmasq: query\n" + b"x" * 20000 + b"\nend")
seed("pattern", "glob", "interface.*.rx_?\0interface.eth0.rx_b")
seed("pattern", "body", "*\"up\"*\0{\"status\": \"up\"}")

seed("graphite_name", "sections", "interface\0eth0.100\0rx bytes\0xn--x\0ünï\0100%")
seed("graphite_naming", "event", "gw1.example.net\0interface.eth0.rx_bytes\0edge.site\0role\0router\0host\0x")

# dhcp_leases: dnsmasq's lease file, NUL, odhcpd's state file, from the OpenWrt fixture tree.
openwrt_tmp = os.path.join(REPO, "tests/fixtures/openwrt/tmp")
seed("dhcp_leases", "openwrt",
     read(os.path.join(openwrt_tmp, "dhcp.leases")) + b"\0" + read(os.path.join(openwrt_tmp, "hosts/odhcpd")))
seed("netlink_qdisc", "htb", read(os.path.join(REPO, "tests/fixtures/netlink/qdisc.bin")))
for dump in ["objects", "rules"]:
    seed("netlink_nftables", dump, read(os.path.join(REPO, f"tests/fixtures/netlink/nftables_{dump}.bin")))
for name in ["interfaces", "stations-5", "stations-7", "survey-6"]:
    seed("netlink_nl80211", name, read(os.path.join(REPO, "tests/fixtures/netlink/nl80211-%s.bin" % name)))
seed("netlink_wireguard", "wg0", read(os.path.join(REPO, "tests/fixtures/netlink/wireguard-wg0.bin")))
# openvpn_status: a status file of each version (and a client's) beside another, from the OpenWrt
# fixture tree.
openvpn_run = os.path.join(REPO, "tests/fixtures/openwrt/var/run")
openvpn = ["home", "office", "lab", "uplink"]
for i, name in enumerate(openvpn):
    other = openvpn[(i + 1) % len(openvpn)]
    seed("openvpn_status", name, read(os.path.join(openvpn_run, "openvpn.%s.status" % name)) + b"\0"
         + read(os.path.join(openvpn_run, "openvpn.%s.status" % other)))
