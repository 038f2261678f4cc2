#!/usr/bin/env bash
# Fleet recovery after an outage, in one run: AGENTS pipit agents, each in a network namespace of
# its own (a veth pair to the root namespace), sending to one real carbon-cache that is stopped for
# OUTAGE seconds and started again (benches/fleet_recovery.py does the work). Runs as root.
#
#   benches/fleet_recovery.sh                        # 20 agents, 200 datapoints/s each, 60 s down
#   AGENTS=10 RATE=50 OUTAGE=30 benches/fleet_recovery.sh
#   REPLAY_RATE=0 benches/fleet_recovery.sh          # spool replay unbounded, to compare
#   PIPIT=path/to/pipit benches/fleet_recovery.sh    # another build instead
#
# Each agent: an exec source printing RATE numbered datapoints a second for WARM + OUTAGE + TAIL
# seconds (15 + 60 + 30 by default), one graphite output with the default spool, the `self`
# source printing its counters every second. Reported: when each agent's replay began after
# carbon's return, the time until every queue and spool was empty and everything confirmed and in
# whisper, the peak rate confirmed at carbon across the fleet, and datapoints lost (must be 0).
# Namespaces, interfaces, processes and the temporary directory are removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PIPIT:-}" ]; then
    cargo build --release --quiet
    PIPIT=target/release/pipit
fi
# Debian's python3, which has whisper (python3-whisper) to read the stored datapoints back.
exec /usr/bin/python3 benches/fleet_recovery.py "$PIPIT"
