#!/usr/bin/env python3
"""Minimal Riemann server used by the integration tests.

Decoding uses the riemann-client package's own generated protobuf module
(riemann_client.riemann_pb2), not a schema maintained here.

Wire protocol (TCP): every message is a 4-byte big-endian length followed by
a protobuf `Msg`; the server answers every Msg with a length-prefixed Msg.
UDP (--udp, same port number): one datagram = one Msg, no prefix, no reply.
TLS (--tls-cert, --tls-key): the TCP protocol inside TLS; with --tls-ca, clients
must show a certificate signed by that CA, as Riemann's own TLS server asks.

Modes:
  ok      answer Msg(ok=true)
  fail    answer Msg(ok=false, error="test failure")
  silent  keep reading, never answer
  close   close the connection after reading one message, without answering

--out FILE: one JSON line (compact, sorted keys) per received event, written
and flushed BEFORE the answer is sent, so once a client has its answer the
event is already in the file.

Prints "READY <port>" on stdout once listening; serves until killed.
"""

import argparse
import json
import socket
import socketserver
import ssl
import struct
import sys
import threading

from riemann_client import riemann_pb2 as pb

# riemann-client 7.0.0's schema has no `time_micros` (field 10 of Event in
# Riemann's riemann.proto: `optional int64 time_micros = 10;`). The protobuf
# runtime keeps it as an unknown field; it is decoded from there below and
# reported as "time_micros" (null / has=false when not sent).
TIME_MICROS_FIELD = 10
HAS_TIME_MICROS_IN_SCHEMA = "time_micros" in pb.Event.DESCRIPTOR.fields_by_name

OPTIONAL_FIELDS = ("time", "state", "service", "host", "description", "ttl",
                   "metric_sint64", "metric_d", "metric_f")
MAX_MSG = 64 * 1024 * 1024

_out_lock = threading.Lock()
_out_file = None
_counter_lock = threading.Lock()
_counters = {"conn": 0, "msg": 0}


def _next(name):
    with _counter_lock:
        _counters[name] += 1
        return _counters[name]


def log(*args):
    print("riemann_peer:", *args, file=sys.stderr, flush=True)


def _signed64(v):
    return v - (1 << 64) if v >= (1 << 63) else v


def decode_event(ev):
    rec = {}
    has = {}
    for name in OPTIONAL_FIELDS:
        present = ev.HasField(name)
        has[name] = present
        rec[name] = getattr(ev, name) if present else None
    rec["tags"] = list(ev.tags)
    rec["attributes"] = {a.key: (a.value if a.HasField("value") else None)
                         for a in ev.attributes}
    unknown = []
    if HAS_TIME_MICROS_IN_SCHEMA:
        has["time_micros"] = ev.HasField("time_micros")
        rec["time_micros"] = ev.time_micros if has["time_micros"] else None
    else:
        rec["time_micros"] = None
        has["time_micros"] = False
    for f in ev.UnknownFields():
        if (not HAS_TIME_MICROS_IN_SCHEMA and f.field_number == TIME_MICROS_FIELD
                and f.wire_type == 0):
            rec["time_micros"] = _signed64(f.data)
            has["time_micros"] = True
        else:
            unknown.append(f.field_number)
    rec["has"] = has
    rec["unknown_fields"] = unknown
    return rec


def record(lines):
    if _out_file is None or not lines:
        return
    with _out_lock:
        _out_file.write("".join(lines))
        _out_file.flush()


def handle_payload(data, transport, conn_id):
    """Decode one Msg, record its events. Returns an error string or None."""
    msg_id = _next("msg")
    msg = pb.Msg()
    try:
        msg.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError and friends
        err = "invalid message: %s" % exc
        log(err)
        record([json.dumps({"decode_error": err, "raw_hex": data.hex(),
                            "transport": transport, "conn": conn_id,
                            "msg": msg_id}, sort_keys=True,
                           separators=(",", ":")) + "\n"])
        return err
    lines = []
    for ev in msg.events:
        rec = decode_event(ev)
        rec["transport"] = transport
        rec["conn"] = conn_id
        rec["msg"] = msg_id
        lines.append(json.dumps(rec, sort_keys=True, separators=(",", ":")) + "\n")
    record(lines)
    return None


def read_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


class TcpHandler(socketserver.BaseRequestHandler):
    def handle(self):
        mode = self.server.mode
        sock = self.request
        conn_id = _next("conn")
        try:
            if isinstance(sock, ssl.SSLSocket):
                sock.do_handshake()
            while True:
                header = read_exact(sock, 4)
                if header is None:
                    return
                (length,) = struct.unpack(">I", header)
                if length > MAX_MSG:
                    log("message length %d too large, closing" % length)
                    return
                data = read_exact(sock, length) if length else b""
                if data is None:
                    return
                err = handle_payload(data, "tcp", conn_id)
                if mode == "silent":
                    continue
                if mode == "close":
                    return
                reply = pb.Msg()
                if mode == "ok" and err is None:
                    reply.ok = True
                else:
                    reply.ok = False
                    reply.error = err if err is not None else "test failure"
                body = reply.SerializeToString()
                sock.sendall(struct.pack(">I", len(body)) + body)
        except (ConnectionError, OSError) as exc:
            if isinstance(exc, ssl.SSLError):
                log("TLS: %s" % exc)
            return


class TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    ssl_context = None

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.ssl_context is not None:
            # The handshake runs on the connection's own thread (TcpHandler).
            sock = self.ssl_context.wrap_socket(sock, server_side=True,
                                                do_handshake_on_connect=False)
        return sock, addr


class UdpHandler(socketserver.BaseRequestHandler):
    def handle(self):
        data, _sock = self.request
        handle_payload(data, "udp", 0)


class UdpServer(socketserver.UDPServer):
    allow_reuse_address = True
    max_packet_size = 65536


def main():
    global _out_file
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--mode", choices=("ok", "fail", "silent", "close"), default="ok")
    ap.add_argument("--out", default=None)
    ap.add_argument("--udp", action="store_true")
    ap.add_argument("--tls-cert", default=None)
    ap.add_argument("--tls-key", default=None)
    ap.add_argument("--tls-ca", default=None)
    args = ap.parse_args()

    ssl_context = None
    if args.tls_cert:
        ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ssl_context.load_cert_chain(args.tls_cert, args.tls_key)
        if args.tls_ca:
            ssl_context.verify_mode = ssl.CERT_REQUIRED
            ssl_context.load_verify_locations(args.tls_ca)

    if args.out:
        _out_file = open(args.out, "a", encoding="utf-8")

    tcp = udp = None
    attempts = 20 if args.port == 0 else 1
    for attempt in range(attempts):
        tcp = TcpServer((args.host, args.port), TcpHandler)
        tcp.mode = args.mode
        tcp.ssl_context = ssl_context
        port = tcp.server_address[1]
        if not args.udp:
            break
        try:
            udp = UdpServer((args.host, port), UdpHandler)
            break
        except OSError as exc:
            tcp.server_close()
            tcp = None
            if attempt == attempts - 1:
                log("cannot bind UDP port %d: %s" % (port, exc))
                sys.exit(1)

    if udp is not None:
        threading.Thread(target=udp.serve_forever, daemon=True).start()
    print("READY %d" % port, flush=True)
    try:
        tcp.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
