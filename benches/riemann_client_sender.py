#!/usr/bin/env python3
"""The peer side of benches/riemann_throughput.rs: PyPI's riemann-client sends the same datapoints
as pipit's client, in batches through a QueuedClient over TCP, and reports its own CPU time.

Prints "cpu_ns=<N> events=<M>". CPU time is read from /proc/self/schedstat, as the Rust sender
reads it, so both are measured the same way.
"""

import argparse
import time

from riemann_client.client import QueuedClient
from riemann_client.transport import TCPTransport


def cpu_ns():
    with open("/proc/self/schedstat") as f:
        return int(f.read().split()[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--events", type=int, required=True)
    ap.add_argument("--batch", type=int, required=True)
    args = ap.parse_args()

    start = cpu_ns()
    sent = 0
    with QueuedClient(TCPTransport("127.0.0.1", args.port, timeout=30)) as client:
        while sent < args.events:
            now = int(time.time())
            for i in range(sent, min(sent + args.batch, args.events)):
                value = i * 0.5
                client.event(service="bench.metric.%d" % (i % 100), host="bench-host",
                             metric_d=value, metric_f=value, time=now, ttl=60.0,
                             tags=["bench"], attributes={"dc": "lab"})
            sent = min(sent + args.batch, args.events)
            client.flush()
    print("cpu_ns=%d events=%d" % (cpu_ns() - start, sent), flush=True)


if __name__ == "__main__":
    main()
