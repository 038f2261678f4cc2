"""Spool replay into a real carbon-cache: how soon it begins and how fast it goes.

Run by benches/replay.sh (which builds pipit); see there for the settings. One agent, one graphite
output (plaintext) with a spool, and carbon-cache down: an exec source prints SPOOLED numbered
datapoints (FILL a second), then LIVE a second until the replay is over. Once the spool holds
every datapoint, carbon-cache is started, with a counting relay in front of it (a thread of this
script that forwards every byte to carbon's line receiver as it comes and counts the lines): the
relay listens only once carbon's port is open, so the agent's first connection reaches carbon.

Reported, from the moment carbon-cache is started: when its port opened, when the first
datapoint reached carbon (through the relay) and when the agent counted its first replayed one;
the replay rate (the spool's datapoints over the time from the first replayed one to an empty
spool, from `pipit ctl status` every 0.1 s); the rate carbon received over the same time and its
peak second (live and replayed, counted at the relay); and at the end, with the generator stopped,
every datapoint read back from whisper: lost must be 0 and the agent's counters must agree.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import carbon_cache

PIPIT = os.path.abspath(sys.argv[1])
SPOOLED = int(os.environ.get("SPOOLED", "500000"))
FILL = int(os.environ.get("FILL", "40000"))
LIVE = int(os.environ.get("LIVE", "200"))
REPLAY_RATE = int(os.environ.get("REPLAY_RATE", "0"))
PATHS = 1000
WORK = tempfile.mkdtemp(prefix="pipit-replay-")
started = []  # Popen, stopped in reverse order


class Relay:
    """Forwards every connection to carbon's line receiver, counting lines as they pass."""

    def __init__(self, port, carbon_port):
        self.carbon_port = carbon_port
        self.lines = 0
        self.first = None
        self.lock = threading.Lock()
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", port))
        self.server.listen(16)
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            conn, _ = self.server.accept()
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        up = socket.create_connection(("127.0.0.1", self.carbon_port))
        with conn, up:
            while True:
                data = conn.recv(1 << 18)
                if not data:
                    return
                up.sendall(data)
                with self.lock:
                    if self.first is None:
                        self.first = time.time()
                    self.lines += data.count(b"\n")

    def count(self):
        with self.lock:
            return self.lines


def agent_config(port, base):
    stop_file = os.path.join(WORK, "stop")
    count_file = os.path.join(WORK, "count")
    # Datapoint i: path replay.p<i % PATHS>, value i, timestamp base + i // PATHS (every path once
    # a second, so whisper keeps each).
    gen = """import os, sys, time
out = sys.stdout
def line(i):
    return 'replay.p%d %d %d\\n' % (i % {paths}, i, {base} + i // {paths})
t0 = time.time()
# A tenth of a tick's worth at a time: the source takes at most 1,024 lines a tick (10 ms).
chunk = max(1, {fill} // 100)
for start in range(0, {spooled}, chunk):
    out.write(''.join(line(i) for i in range(start, min(start + chunk, {spooled}))))
    out.flush()
    d = t0 + (start + chunk) / {fill} - time.time()
    if d > 0:
        time.sleep(d)
i = {spooled}
t0 = time.time()
while not os.path.exists({stop!r}):
    n = max(1, {live} // 100)
    out.write(''.join(line(j) for j in range(i, i + n)))
    out.flush()
    i += n
    d = t0 + (i - {spooled}) / max({live}, 1) - time.time()
    if d > 0:
        time.sleep(d)
open({count!r} + '.tmp', 'w').write(str(i))
os.rename({count!r} + '.tmp', {count!r})
time.sleep(100000)
""".format(paths=PATHS, base=base, fill=FILL, spooled=SPOOLED, live=LIVE, stop=stop_file,
           count=count_file)
    output = {"type": "graphite", "name": "replay", "host": "127.0.0.1", "port": port,
              "include": ["replay.*"], "replay_rate": REPLAY_RATE,
              "spool": {"dir": os.path.join(WORK, "spool"), "max_bytes": 1 << 30}}
    config = {
        "agent": {"hostname": "r", "state_dir": os.path.join(WORK, "state")},
        "control": {"socket": os.path.join(WORK, "pipit.sock")},
        # The generator runs as this script's user, to see the stop file in WORK.
        "supervisor": {"user": ""},
        "sources": [{"type": "exec", "name": "gen", "mode": "daemon", "format": "graphite",
                     "interval": "10ms", "command": ["python3", "-u", "-c", gen]}],
        "outputs": [output],
    }
    path = os.path.join(WORK, "pipit.json")
    json.dump(config, open(path, "w"))
    return path


def status(whole=False):
    out = subprocess.run([PIPIT, "ctl", "status", "--json", "--socket",
                          os.path.join(WORK, "pipit.sock")],
                         capture_output=True, text=True, check=True).stdout
    s = json.loads(out)
    s = s.get("result", s)
    return s if whole else s["outputs"][0]


def stored(n):
    """How many of the values 0..n-1 whisper holds."""
    import whisper
    d = os.path.join(WORK, "storage", "whisper", "r", "replay")
    seen = set()
    if os.path.isdir(d):
        for name in os.listdir(d):
            _, points = whisper.fetch(os.path.join(d, name), 0)
            seen.update(int(v) for v in points if v is not None)
    return len(seen & set(range(n)))


def main():
    relay_port = carbon_cache.free_port()
    carbon_port = carbon_cache.write_config(WORK, "127.0.0.1", "3h")
    base = int(time.time()) - 3600
    config = agent_config(relay_port, base)
    err = open(os.path.join(WORK, "pipit.log"), "w")
    agent = subprocess.Popen([PIPIT, "run", "-c", config], stdout=subprocess.DEVNULL, stderr=err,
                             env=dict(os.environ, RUST_LOG="warn"))
    started.append(agent)
    sock = os.path.join(WORK, "pipit.sock")
    for _ in range(200):
        if os.path.exists(sock):
            break
        time.sleep(0.05)
    # Filled: every datapoint printed so far is in the spool (none queued, none lost).
    fill_start = time.time()
    while True:
        s = status()
        if s["spool_depth"] >= SPOOLED:
            break
        if time.time() > fill_start + 600:
            raise SystemExit("the spool did not fill: %s" % s)
        time.sleep(0.2)
    fill_s = time.time() - fill_start
    time.sleep(1)  # the breaker's probes settle into their backoff, as after a real outage
    spooled = status()["spool_depth"]
    t0 = time.time()
    started.append(carbon_cache.start(WORK))
    if not carbon_cache.wait_port("127.0.0.1", carbon_port, 60):
        raise SystemExit("carbon-cache did not come up")
    carbon_up = time.time() - t0
    relay = Relay(relay_port, carbon_port)
    samples = []  # (time, replayed, spool_depth, lines at carbon)
    first_replayed = None
    deadline = t0 + 600
    while time.time() < deadline:
        s = status()
        now = time.time()
        samples.append((now, s["replayed"], s["spool_depth"], relay.count()))
        if first_replayed is None and s["replayed"] > 0:
            first_replayed = now
        if s["spool_depth"] == 0 and relay.count() >= spooled:
            break
        time.sleep(0.1)
    # Carbon has got as many datapoints as were spooled (the live ones among them are few).
    done = samples[-1][0]
    open(os.path.join(WORK, "stop"), "w").close()
    count_file = os.path.join(WORK, "count")
    while not os.path.exists(count_file):
        time.sleep(0.05)
    total = int(open(count_file).read())
    # Everything delivered and confirmed, then read back from whisper.
    deadline = time.time() + 60
    while time.time() < deadline:
        s = status()
        if (s["events_in"] >= total and s["queue_depth"] == 0 and s["spool_depth"] == 0
                and s["unconfirmed"] == 0 and s["events_out"] >= total):
            break
        time.sleep(0.2)
    got = 0
    end = time.time() + 60
    while time.time() < end:
        got = stored(total)
        if got == total:
            break
        time.sleep(1)
    lost = total - got
    source_dropped = status(whole=True)["sources"][0]["dropped"]
    # Rates at carbon between its first datapoint and the poll that saw it had as many as were
    # spooled; the agent's own count moves ahead of carbon's by what its socket buffers hold.
    window = [x for x in samples if relay.first is not None and x[0] >= relay.first]
    replay_s = max(done - relay.first, 1e-9) if relay.first else float("nan")
    replayed = samples[-1][1]
    at_carbon = samples[-1][3]
    peak = 0
    for a in window:
        later = [b for b in window if b[0] >= a[0] + 1.0]
        if later:
            b = later[0]
            peak = max(peak, (b[3] - a[3]) / (b[0] - a[0]))
    bad = {k: v for k, v in s.items()
           if (k.startswith("dropped") or k in ("failed", "spool_corrupt")) and v}
    print("spool replay: %d datapoints spooled (filled in %.1f s), live %d/s, replay_rate %s"
          % (spooled, fill_s, LIVE, REPLAY_RATE if REPLAY_RATE else "unbounded"))
    print("  carbon-cache's port open %.2f s after its start" % carbon_up)
    if relay.first is not None:
        print("  first datapoint at carbon %.2f s after carbon's start" % (relay.first - t0))
    if first_replayed is not None:
        print("  first replayed datapoint counted by the agent %.2f s after carbon's start"
              " (0.1 s polls)" % (first_replayed - t0))
        print("  replay: carbon got %d datapoints (%d replayed, the rest live) in %.2f s from the"
              " first: %.0f datapoints/s; peak second %.0f/s" % (
                  at_carbon, replayed, replay_s, at_carbon / replay_s, peak))
    print("  end: %d printed, %d taken by the source (dropped there %d), %d in whisper, lost %d;"
          " events_out %d; dropped or failed in the output %s"
          % (total, s["events_in"], source_dropped, got, lost, s["events_out"], bad or "none"))
    print("RESULT replay_rate_dps=%.0f first_s=%.2f lost=%d"
          % (at_carbon / replay_s if relay.first else 0,
             (relay.first - t0) if relay.first is not None else -1, lost))
    return 0 if lost == 0 and not bad else 1


def cleanup():
    for p in reversed(started):
        carbon_cache.stop(p, 15)
    subprocess.run(["rm", "-rf", WORK])


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        code = main()
    finally:
        cleanup()
    sys.exit(code)
