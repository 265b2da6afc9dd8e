#!/usr/bin/env bash
# Installs Debian packages without starting any service they ship:
#   .ci/apt-install.sh [--no-recommends] PACKAGE...
# Debian starts the services it installs (knot, unbound, dnsmasq,
# smartdns...), in the root namespace, where Unbound would go for the
# Internet's root servers. A policy-rc.d that exits 101 (invoke-rc.d and
# deb-systemd-invoke honour it) keeps every one down during the install,
# and systemctl disables them for the next boot. Needs root; used by
# .ci/run, scripts/bench/run.sh and deploy/*.sh.
set -euo pipefail
opts=()
if [ "${1:-}" = --no-recommends ]; then
    opts+=(--no-install-recommends)
    shift
fi
[ $# -gt 0 ] || exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "missing $*: install them (as root: apt-get install $*)" >&2
    exit 1
fi
apt-get update -qq
made_policy=
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    made_policy=1
fi
# shellcheck disable=SC2317 # run by the EXIT trap
remove_policy() { if [ -n "$made_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi; }
trap remove_policy EXIT
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${opts[@]}" "$@" >/dev/null
if command -v systemctl >/dev/null 2>&1; then
    for pkg in "$@"; do
        systemctl disable --now "$pkg.service" >/dev/null 2>&1 || true
    done
fi
echo "installed $*"
