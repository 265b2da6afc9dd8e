#!/usr/bin/env bash
# One command for the peer benchmark on a fresh Debian machine:
#   bash bench/run.sh [peers.py options, e.g. --reps 5 --seconds 10]
# Installs dnsperf, Knot, dnsmasq, Unbound and SmartDNS (their services kept
# down: every server here is started by peers.py on loopback ports), builds
# getapr (and its static musl build when the target can be had), and prints
# the Markdown table of bench/peers.py.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"

need=()
for pair in dnsperf:dnsperf knotd:knot dnsmasq:dnsmasq-base unbound:unbound smartdns:smartdns taskset:util-linux; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "bench: needs ${need[*]} (run as root to install them)" >&2
        exit 1
    fi
    apt-get update -qq
    # Debian starts the services it installs; none may run here (Unbound
    # would go for the Internet's root servers).
    made_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
    if command -v systemctl >/dev/null 2>&1; then
        for s in knot unbound dnsmasq smartdns; do
            systemctl disable --now "$s.service" >/dev/null 2>&1 || true
        done
    fi
fi

cargo build --release --quiet
args=()
if rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1 \
    && cargo build --release --quiet --target x86_64-unknown-linux-musl; then
    args+=(--getapr-static target/x86_64-unknown-linux-musl/release/getapr)
fi
exec python3 bench/peers.py "${args[@]}" "$@"
