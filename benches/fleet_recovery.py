"""Fleet recovery: many agents replaying their spools into one real carbon-cache after an outage.

Run by benches/fleet_recovery.sh (which builds pipit); see there for the settings. Each agent runs
in a network namespace of its own (a veth pair to the root namespace, where carbon-cache listens),
with an exec source printing RATE numbered datapoints a second and one graphite output with the
default spool. carbon-cache is stopped for OUTAGE seconds and started again. Reported: when each
agent's replay began after carbon's return, the time until every spool was empty and every
datapoint in whisper, the peak rate of datapoints confirmed per second across the fleet (what
carbon ingested), and datapoints lost.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import carbon_cache

PIPIT = os.path.abspath(sys.argv[1])
AGENTS = int(os.environ.get("AGENTS", "20"))
RATE = int(os.environ.get("RATE", "200"))
WARM = int(os.environ.get("WARM", "15"))
OUTAGE = int(os.environ.get("OUTAGE", "60"))
TAIL = int(os.environ.get("TAIL", "30"))
REPLAY_RATE = os.environ.get("REPLAY_RATE")
SECONDS = WARM + OUTAGE + TAIL
PID = os.getpid()
NET = "10.%d.%d" % (100 + PID % 100, (PID >> 7) % 256)
WORK = tempfile.mkdtemp(prefix="pipit-fleet-")
CARBON_ADDR = "%s.1" % NET
started = []  # (kind, name or Popen)


def sh(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def ns_name(i):
    return "pf%d_%d" % (PID % 100000, i)


def setup_agent_net(i):
    ns = ns_name(i)
    root_if, ns_if = ns + "r", ns + "n"
    sh("ip", "netns", "add", ns)
    started.append(("netns", ns))
    sh("ip", "link", "add", root_if, "type", "veth", "peer", "name", ns_if, "netns", ns)
    started.append(("link", root_if))
    # Agent i on 10.X.Y.(4i+6)/30 with the root end at 4i+5; the first pair also carries carbon's
    # address, 10.X.Y.1, which every namespace reaches through its own pair (the root namespace
    # takes any of its addresses on any interface).
    root, agent = "%s.%d" % (NET, 4 * i + 5), "%s.%d" % (NET, 4 * i + 6)
    sh("ip", "addr", "add", root + "/30", "dev", root_if)
    if i == 0:
        sh("ip", "addr", "add", CARBON_ADDR + "/32", "dev", root_if)
    sh("ip", "link", "set", root_if, "up")
    sh("ip", "-n", ns, "addr", "add", agent + "/30", "dev", ns_if)
    sh("ip", "-n", ns, "link", "set", ns_if, "up")
    sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", ns, "route", "add", "default", "via", root)
    return ns


def start_carbon(port):
    carbon = carbon_cache.start(WORK)
    started.append(("proc", carbon))
    if not carbon_cache.wait_port(CARBON_ADDR, port, 30):
        raise SystemExit("carbon-cache did not come up")
    return carbon


def agent_config(i, port, base):
    d = os.path.join(WORK, "a%d" % i)
    os.makedirs(d)
    gen = ("import sys, time\nt0 = time.time()\n"
           "for i in range({n}):\n"
           "    sys.stdout.write('fleet.p%d %d %d\\n' % (i % {r}, i, {b} + i // {r}))\n"
           "    if i % {f} == {f} - 1:\n"
           "        sys.stdout.flush()\n"
           "        d = t0 + (i + 1) / {r} - time.time()\n"
           "        if d > 0: time.sleep(d)\n"
           "sys.stdout.flush()\ntime.sleep(100000)\n").format(
               n=RATE * SECONDS, r=RATE, b=base, f=max(1, RATE // 10))
    output = {"type": "graphite", "name": "fleet", "host": CARBON_ADDR, "port": port,
              "include": ["fleet.*"], "spool": {"dir": os.path.join(d, "spool")}}
    if REPLAY_RATE is not None:
        output["replay_rate"] = int(REPLAY_RATE)
    config = {
        "agent": {"hostname": "a%d" % i, "state_dir": os.path.join(d, "state")},
        "control": {"enabled": False},
        "sources": [
            {"type": "exec", "name": "gen", "mode": "daemon", "format": "graphite",
             "interval": "50ms", "command": ["python3", "-u", "-c", gen]},
            {"type": "self", "interval": "1s"},
        ],
        "outputs": [output, {"type": "stdout", "format": "graphite",
                             "include": ["self.output.fleet.*"]}],
    }
    path = os.path.join(d, "pipit.json")
    json.dump(config, open(path, "w"))
    return path


def series(i, metric):
    """(timestamp, value) of a self metric printed by agent i, in order."""
    prefix = "a%d.self.output.fleet.%s " % (i, metric)
    out = []
    with open(os.path.join(WORK, "a%d.out" % i)) as f:
        for line in f:
            if line.startswith(prefix):
                _, v, t = line.split()
                out.append((int(t), float(v)))
    return out


def latest(i, metric):
    s = series(i, metric)
    return s[-1][1] if s else 0


def stored():
    """Distinct values in whisper per agent."""
    import whisper
    root = os.path.join(WORK, "storage", "whisper")
    seen = [set() for _ in range(AGENTS)]
    for i in range(AGENTS):
        d = os.path.join(root, "a%d" % i, "fleet")
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            (_, _, _), points = whisper.fetch(os.path.join(d, name), 0)
            seen[i].update(int(v) for v in points if v is not None)
    return seen


def main():
    for i in range(AGENTS):
        setup_agent_net(i)
    port = carbon_cache.write_config(WORK, CARBON_ADDR, "15m")
    carbon = start_carbon(port)
    base = int(time.time())
    agents = []
    for i in range(AGENTS):
        config = agent_config(i, port, base)
        out = open(os.path.join(WORK, "a%d.out" % i), "w")
        err = open(os.path.join(WORK, "a%d.err" % i), "w")
        p = subprocess.Popen(["ip", "netns", "exec", ns_name(i), PIPIT, "run", "-c", config],
                             stdout=out, stderr=err, env=dict(os.environ, RUST_LOG="warn"))
        started.append(("proc", p))
        agents.append(p)
    time.sleep(WARM)
    carbon_cache.stop(carbon, 10)
    down_at = time.time()
    time.sleep(OUTAGE)
    carbon = start_carbon(port)
    back_at = time.time()
    n = RATE * SECONDS
    # Drained: every agent has printed all its events in, and nothing queued, spooled or held.
    deadline = back_at + 600
    while time.time() < deadline:
        if all(latest(i, "events_in") >= n and latest(i, "queue_depth") == 0
               and latest(i, "spool_depth") == 0 and latest(i, "unconfirmed") == 0
               and latest(i, "events_out") >= n for i in range(AGENTS)):
            break
        time.sleep(0.5)
    drained_at = time.time()
    while time.time() < drained_at + 30:
        seen = stored()
        if all(len(s) >= n for s in seen):
            break
        time.sleep(1)
    stored_at = time.time()
    lost = sum(n - len(set(range(n)) & s) for s in seen)
    starts = []
    for i in range(AGENTS):
        replayed = [t for t, v in series(i, "replayed") if v > 0]
        if replayed:
            starts.append(replayed[0] - back_at)
    starts.sort()
    per_second = {}
    for i in range(AGENTS):
        prev = None
        for t, v in series(i, "events_out"):
            if prev is not None and t >= int(back_at):
                per_second[t] = per_second.get(t, 0) + v - prev
            prev = v
    spooled = sum(latest(i, "spooled") for i in range(AGENTS))
    failed = sum(latest(i, "failed") + latest(i, "dropped") + latest(i, "dropped_spool_full")
                 for i in range(AGENTS))
    print("fleet recovery: %d agents, %d datapoints/s each, carbon-cache down %.0f s, replay_rate %s"
          % (AGENTS, RATE, back_at - down_at, REPLAY_RATE if REPLAY_RATE is not None else "default"))
    print("  sent %d, stored %d, lost %d; spooled %d; failed or dropped %d"
          % (n * AGENTS, n * AGENTS - lost, lost, spooled, failed))
    if starts:
        print("  replay began after carbon's return: first %.0f s, median %.0f s, last %.0f s"
              " (self metrics, 1 s resolution), %d of %d agents replayed"
              % (starts[0], starts[len(starts) // 2], starts[-1], len(starts), AGENTS))
    print("  spools and queues empty, everything confirmed: %.1f s after carbon's return"
          % (drained_at - back_at))
    print("  everything in whisper: %.1f s after carbon's return" % (stored_at - back_at))
    if per_second:
        peak = max(per_second.values())
        print("  peak confirmed at carbon: %d datapoints/s (fleet, per second of self metrics)"
              % peak)
    return 0 if lost == 0 else 1


def cleanup():
    for kind, thing in reversed(started):
        try:
            if kind == "proc":
                carbon_cache.stop(thing, 10)
            elif kind == "link":
                subprocess.run(["ip", "link", "del", thing], stderr=subprocess.DEVNULL)
            elif kind == "netns":
                subprocess.run(["ip", "netns", "del", thing], stderr=subprocess.DEVNULL)
        except Exception as e:  # noqa: BLE001 - best effort, keep cleaning
            print("cleanup: %s" % e, file=sys.stderr)
    subprocess.run(["rm", "-rf", WORK])


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        code = main()
    finally:
        cleanup()
    sys.exit(code)
