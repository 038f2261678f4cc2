#!/usr/bin/python3
"""Places metric names with carbon-relay's own consistent-hashing router, as a reference.

Reads one JSON object on stdin:
  {"destinations": ["host:port[:instance]", ...], "replication": R, "diverse": bool, "metrics": [...]}
and prints one JSON array per metric on stdout: the destinations carbon picks, as
"host:port:instance" strings (instance empty when there is none), in order.
Run it with Debian's /usr/bin/python3, which has graphite-carbon's modules.
"""
import json
import sys

from carbon.routers import ConsistentHashingRouter
from carbon.util import parseDestinations


class Settings(dict):
    __getattr__ = dict.get


def main():
    request = json.load(sys.stdin)
    settings = Settings(
        REPLICATION_FACTOR=request["replication"],
        DIVERSE_REPLICAS=request["diverse"],
        ROUTER_HASH_TYPE="carbon_ch",
    )
    router = ConsistentHashingRouter(settings)
    for destination in parseDestinations(request["destinations"]):
        router.addDestination(destination)
    out = sys.stdout
    for metric in request["metrics"]:
        placed = ["%s:%d:%s" % (s, p, i or "") for (s, p, i) in router.getDestinations(metric)]
        out.write(json.dumps(placed) + "\n")


if __name__ == "__main__":
    main()
