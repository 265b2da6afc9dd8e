#!/usr/bin/env bash
# The soak run on a fresh Debian machine, as root:
#   sudo bash scripts/bench/soak.sh [--minutes 10] [--qps 10000] [--unique 0.5]
# Installs dnsperf, Knot and kdig (their services kept down), builds getapr
# in release mode and runs scripts/bench/soak.py: dnsperf for N minutes against
# getapr in a throwaway two-namespace lab, one table row per minute with
# the share answered, p99 latency and getapr's RSS.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/sbin:/sbin"
need=()
for pair in dnsperf:dnsperf knotd:knot kdig:knot-dnsutils curl:curl ip:iproute2 pgrep:procps; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    bash .ci/apt-install.sh "${need[@]}"
fi
cargo build --release --quiet
exec python3 scripts/bench/soak.py "$@"
