#!/usr/bin/env python3
"""A Graphite plaintext sink for the benchmark: accepts TCP connections on 127.0.0.1 and appends
everything it receives to a file, so the script can count the metric lines that arrived."""
import socket
import sys
import threading

port, out_path = int(sys.argv[1]), sys.argv[2]
out = open(out_path, "ab", buffering=0)
lock = threading.Lock()


def serve(conn):
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            with lock:
                out.write(data)


server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen(8)
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
