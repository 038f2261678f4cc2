"""A private carbon-cache for the benches that deliver into one (replay.py, fleet_recovery.py):
its config written into a work directory, started in the foreground, waited for, stopped."""

import os
import signal
import socket
import subprocess
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def write_config(work, host, retention):
    """carbon.conf and the storage rules under `work`, listening on `host`, keeping 1 s points
    for `retention` (such as "3h"); returns the line receiver's port."""
    storage = os.path.join(work, "storage")
    os.makedirs(os.path.join(storage, "whisper"), exist_ok=True)
    ports = [free_port() for _ in range(3)]
    conf = """[cache]
STORAGE_DIR = {s}
LOCAL_DATA_DIR = {s}/whisper
WHITELISTS_DIR = {s}/lists
LOG_DIR = {s}/log
PID_DIR = {s}
USER =
MAX_CACHE_SIZE = inf
MAX_UPDATES_PER_SECOND = 100000
MAX_CREATES_PER_MINUTE = inf
ENABLE_TAGS = False
LINE_RECEIVER_INTERFACE = {h}
LINE_RECEIVER_PORT = {p[0]}
ENABLE_UDP_LISTENER = False
PICKLE_RECEIVER_INTERFACE = {h}
PICKLE_RECEIVER_PORT = {p[1]}
CACHE_QUERY_INTERFACE = {h}
CACHE_QUERY_PORT = {p[2]}
CARBON_METRIC_INTERVAL = 0
LOG_LISTENER_CONN_SUCCESS = False
LOG_UPDATES = False
LOG_CREATES = False
""".format(s=storage, h=host, p=ports)
    with open(os.path.join(work, "carbon.conf"), "w") as f:
        f.write(conf)
    with open(os.path.join(work, "storage-schemas.conf"), "w") as f:
        f.write("[default]\npattern = .*\nretentions = 1s:%s\n" % retention)
    with open(os.path.join(work, "storage-aggregation.conf"), "w") as f:
        f.write("[default]\npattern = .*\nxFilesFactor = 0\naggregationMethod = average\n")
    return ports[0]


def start(work):
    """carbon-cache in the foreground with the config of `work`, logging to carbon.log there."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    for k in ("GRAPHITE_ROOT", "GRAPHITE_CONF_DIR", "GRAPHITE_STORAGE_DIR"):
        env.pop(k, None)
    pidfile = os.path.join(work, "carbon.pid")
    if os.path.exists(pidfile):
        os.remove(pidfile)
    log = open(os.path.join(work, "carbon.log"), "a")
    return subprocess.Popen(["carbon-cache", "--config=" + os.path.join(work, "carbon.conf"),
                             "--pidfile=" + pidfile, "--nodaemon", "start"],
                            cwd=work, env=env, stdout=log, stderr=log)


def wait_port(host, port, deadline):
    """True once `host:port` takes a connection, False after `deadline` seconds."""
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection((host, port), timeout=0.25).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


def stop(p, grace):
    """SIGTERM, then SIGKILL after `grace` seconds."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
