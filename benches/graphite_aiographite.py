"""The aiographite side of the Graphite benchmark: the same datapoints as the Rust side, sent in
batches with AIOGraphite.send_multiple. Prints the CPU time of the sending thread, in seconds,
read from /proc/thread-self/schedstat exactly as the Rust side reads it.

Usage: graphite_aiographite.py plaintext|pickle PORT COUNT BATCH
"""

import asyncio
import sys

import aiographite
from aiographite.protocol import PickleProtocol, PlaintextProtocol


def cpu_seconds():
    with open("/proc/thread-self/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def datapoint(i):
    # Keep in step with `datapoint` in graphite_throughput.rs.
    return ("bench.host%02d.metric%03d" % (i % 100, i % 1000), (i % 10000) * 0.25, 1700000000 + i // 1000)


async def send(protocol, port, count, batch):
    data = [datapoint(i) for i in range(count)]
    batches = [data[i:i + batch] for i in range(0, count, batch)]
    start = cpu_seconds()
    conn = await aiographite.connect("127.0.0.1", port, protocol)
    for b in batches:
        await conn.send_multiple(b)
    writer = conn._writer
    await conn.close()
    # aiographite's close does not wait for the buffered bytes; without this the last ones are lost.
    await writer.wait_closed()
    return cpu_seconds() - start


def main():
    name, port, count, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    protocol = {"plaintext": PlaintextProtocol(), "pickle": PickleProtocol()}[name]
    print("CPU", asyncio.run(send(protocol, port, count, batch)), flush=True)


main()
