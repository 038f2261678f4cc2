"""A loopback carbon stand-in for the Graphite benchmark: takes one TCP connection, reads it to the
end as fast as it arrives (so no sender waits on the checking), then checks every plaintext line or
pickle frame, and prints how many datapoints it got with the sums of their values and timestamps,
so the sender's work can be compared exactly.

Usage: graphite_sink.py plaintext|pickle
Prints "READY <port>" once listening, then "OK <count> <sum of values> <sum of timestamps>".
"""

import io
import pickle
import socket
import struct
import sys


def main():
    protocol = sys.argv[1]
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    print("READY", server.getsockname()[1], flush=True)
    conn, _ = server.accept()
    chunks = []
    while True:
        chunk = conn.recv(1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    data = b"".join(chunks)
    stream = io.BytesIO(data)
    count, values, stamps = 0, 0.0, 0
    if protocol == "plaintext":
        for line in stream:
            path, value, stamp = line.split(b" ")
            if not path or not stamp.endswith(b"\n"):
                raise SystemExit("bad line: %r" % line)
            values += float(value)
            stamps += int(stamp)
            count += 1
    elif protocol == "pickle":
        while True:
            head = stream.read(4)
            if not head:
                break
            (length,) = struct.unpack("!L", head)
            frame = stream.read(length)
            if len(frame) != length:
                raise SystemExit("frame cut short")
            for path, (stamp, value) in pickle.loads(frame):
                if not isinstance(path, str) or not path or not isinstance(stamp, int):
                    raise SystemExit("bad datapoint: %r" % ((path, stamp, value),))
                values += float(value)
                stamps += stamp
                count += 1
    else:
        raise SystemExit("unknown protocol " + protocol)
    print("OK", count, repr(values), stamps, flush=True)


main()
