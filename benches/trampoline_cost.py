#!/usr/bin/env python3
"""What starting a check through pipit's hidden `pipit-child` mode costs next to starting it
directly: N posix_spawn(3) + waitpid(2) of /bin/true each way, from this process, as pipit's
supervisor does. Prints, per start, the wall time and the CPU the child used (user + system, from
RUSAGE_CHILDREN); the spawning side's cost is the same either way (one posix_spawn).

    benches/trampoline_cost.py [PIPIT]    # PIPIT: target/release/pipit by default; N=1000
"""
import os
import resource
import sys
import time

N = int(os.environ.get("N", "1000"))
PIPIT = sys.argv[1] if len(sys.argv) > 1 else "target/release/pipit"


def per_start(path, argv):
    """Mean wall time and child CPU of N starts, in milliseconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    for _ in range(N):
        pid = os.posix_spawn(path, argv, os.environ)
        _, status = os.waitpid(pid, 0)
        if status != 0:
            sys.exit(f"{argv} ended with status {status}")
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall / N * 1e3, cpu / N * 1e3


for name, path, argv in [
    ("/bin/true directly", "/bin/true", ["true"]),
    ("through pipit-child", PIPIT, ["pipit-child", str(os.getpid()), "-", "/bin/true"]),
]:
    wall, cpu = per_start(path, argv)
    print(f"{name:22} {wall:6.3f} ms wall {cpu:6.3f} ms child CPU per start")
