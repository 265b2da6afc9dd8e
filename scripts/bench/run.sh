#!/usr/bin/env bash
# One command for the peer benchmark on a fresh Debian machine:
#   bash scripts/bench/run.sh [peers.py options, e.g. --reps 5 --seconds 10]
# Installs dnsperf, Knot, dnsmasq, Unbound and SmartDNS (their services kept
# down: every server here is started by peers.py on loopback ports), builds
# getapr (and its static musl build when the target can be had), and prints
# the Markdown table of scripts/bench/peers.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/sbin:/sbin"

need=()
for pair in dnsperf:dnsperf knotd:knot dnsmasq:dnsmasq-base unbound:unbound smartdns:smartdns taskset:util-linux; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    # Their services stay down (see the script).
    bash .ci/apt-install.sh "${need[@]}"
fi

cargo build --release --quiet
args=()
if rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1 \
    && cargo build --profile router --quiet --target x86_64-unknown-linux-musl; then
    args+=(--getapr-static target/x86_64-unknown-linux-musl/router/getapr)
fi
exec python3 scripts/bench/peers.py "${args[@]}" "$@"
