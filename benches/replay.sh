#!/usr/bin/env bash
# Spool replay into a real carbon-cache, in one run (benches/replay.py does the work): one agent
# spools SPOOLED datapoints while carbon-cache is down, then carbon-cache is started; reported are
# the time from carbon's start to the first datapoint at carbon, the replay rate, and datapoints
# lost (read back from whisper; must be 0).
#
#   benches/replay.sh                            # 500,000 spooled, 200/s live, replay unbounded
#   SPOOLED=100000 FILL=50000 LIVE=0 benches/replay.sh
#   REPLAY_RATE=10000 benches/replay.sh          # replay paced as by default
#   PIPIT=path/to/pipit benches/replay.sh        # another build instead
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PIPIT:-}" ]; then
    cargo build --release --quiet
    PIPIT=target/release/pipit
fi
# Debian's python3, which has whisper (python3-whisper) to read the stored datapoints back.
exec /usr/bin/python3 benches/replay.py "$PIPIT"
