"""Sends what benches/remote_write_throughput.rs sends, as a Python client would: WriteRequests built
with protobuf's own Python library (the message types of Prometheus's prompb, declared here rather
than generated), compressed with python-snappy, POSTed with http.client over one kept-alive
connection. Usage: remote_write_python_sender.py PORT EVENTS BATCH

Datapoint i: series bench_m<i mod 100>, labels host=r1, site=lab, tags=edge, sender=python, value
i/2, time BASE_MS + i milliseconds (BASE_MS from the environment). Every answer must be 204. Prints
the CPU seconds spent building, compressing and sending (the datapoints themselves are made
before the clock starts, as pipit's events are)."""

import http.client
import os
import sys
import time

import snappy
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto


def write_request_class():
    proto = descriptor_pb2.FileDescriptorProto(
        name="bench_prompb.proto", package="prometheus", syntax="proto3"
    )

    def message(name, fields):
        m = proto.message_type.add(name=name)
        for field_name, number, kind, type_name, repeated in fields:
            f = m.field.add(
                name=field_name,
                number=number,
                type=kind,
                label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL,
            )
            if type_name:
                f.type_name = type_name

    message("Label", [("name", 1, F.TYPE_STRING, None, False), ("value", 2, F.TYPE_STRING, None, False)])
    message("Sample", [("value", 1, F.TYPE_DOUBLE, None, False), ("timestamp", 2, F.TYPE_INT64, None, False)])
    message(
        "TimeSeries",
        [
            ("labels", 1, F.TYPE_MESSAGE, ".prometheus.Label", True),
            ("samples", 2, F.TYPE_MESSAGE, ".prometheus.Sample", True),
        ],
    )
    message("WriteRequest", [("timeseries", 1, F.TYPE_MESSAGE, ".prometheus.TimeSeries", True)])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.MessageFactory(pool).GetPrototype(
        pool.FindMessageTypeByName("prometheus.WriteRequest")
    )


def main():
    port, events, batch = (int(a) for a in sys.argv[1:4])
    base_ms = int(os.environ["BASE_MS"])
    WriteRequest = write_request_class()
    points = [
        ("bench_m%d" % (i % 100), "r1", "lab", "edge", i / 2, base_ms + i) for i in range(events)
    ]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {
        "Content-Type": "application/x-protobuf",
        "Content-Encoding": "snappy",
        "X-Prometheus-Remote-Write-Version": "0.1.0",
    }
    start = time.process_time()
    for first in range(0, events, batch):
        request = WriteRequest()
        for name, host, site, tags, value, ms in points[first : first + batch]:
            ts = request.timeseries.add()
            # Sorted by name, as the specification requires.
            for label_name, label_value in (
                ("__name__", name),
                ("host", host),
                ("sender", "python"),
                ("site", site),
                ("tags", tags),
            ):
                label = ts.labels.add()
                label.name = label_name
                label.value = label_value
            sample = ts.samples.add()
            sample.value = value
            sample.timestamp = ms
        conn.request("POST", "/api/v1/write", snappy.compress(request.SerializeToString()), headers)
        answer = conn.getresponse()
        body = answer.read()
        if answer.status != 204:
            sys.exit("HTTP %d: %r" % (answer.status, body[:200]))
    print(time.process_time() - start)


main()
