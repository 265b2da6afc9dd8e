#!/usr/bin/env bash
# getapr against dnsmasq, both forwarding to the same local authoritative
# server (knot), all on loopback. Prints a Markdown table.
#   bench/vs-dnsmasq.sh [seconds per run, default 10] [repetitions, default 2]
# Installs knot, dnsmasq and dnsperf from Debian when missing. The server
# under test is pinned to CPU 0, dnsperf to CPU 1.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
reps=${2:-2}
need() { command -v "$1" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need knotd knot; need dnsmasq dnsmasq; need dnsperf dnsperf
cargo build --release --quiet
bin=target/release/getapr

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

auth=127.0.0.1; auth_port=5399
cat >"$work/bench.test.zone" <<ZONE
\$ORIGIN bench.test.
\$TTL 3600
@    SOA ns admin 1 7200 3600 1209600 300
@    NS  ns
ns   A   127.0.0.1
*    A   192.0.2.1
*    A   192.0.2.2
*    AAAA 2001:db8::1
ZONE
cat >"$work/knot.conf" <<CONF
server:
    rundir: "$work"
    listen: $auth@$auth_port
    udp-workers: 1
    tcp-workers: 1
database:
    storage: "$work"
zone:
  - domain: bench.test
    file: "$work/bench.test.zone"
CONF
knotd -c "$work/knot.conf" >"$work/knot.log" 2>&1 & pids+=($!)

cat >"$work/getapr.toml" <<TOML
[dns]
listen = ["127.0.0.1:5301"]
upstreams = ["$auth:$auth_port"]
cache_size = 100000
[http]
listen = []
[probe]
targets = []
stun = []
destinations = false
TOML
taskset -c 0 "$bin" serve -c "$work/getapr.toml" 2>"$work/getapr.log" & pids+=($!); getapr_pid=$!
taskset -c 0 dnsmasq -k --no-resolv --no-hosts --port=5302 --listen-address=127.0.0.1 --bind-interfaces \
    --server=$auth#$auth_port --cache-size=10000 --dns-forward-max=1000 2>"$work/dnsmasq.log" & pids+=($!); dnsmasq_pid=$!
sleep 1

for i in $(seq 1 200); do echo "h$i.bench.test A"; done >"$work/hits.txt"
# Unique names: a fresh prefix per run, so nothing is cached yet.
misses() { for i in $(seq 1 400000); do echo "m$1-$i.bench.test A"; done; }

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

run() { # name pid port file
    local before after out qps done
    before=$(cpu_ticks "$2")
    out=$(taskset -c 1 dnsperf -s 127.0.0.1 -p "$3" -d "$4" -l "$secs" -c 8 -q 500 2>&1)
    after=$(cpu_ticks "$2")
    qps=$(awk '/Queries per second/ {print $4}' <<<"$out")
    done=$(awk '/Queries completed/ {print $3}' <<<"$out")
    lost=$(awk '/Queries lost/ {print $3}' <<<"$out")
    cpu_us=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$done" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
    echo "| $1 | $5 | $qps | $cpu_us | $lost |"
}

echo "| server | workload | QPS | CPU µs/query | lost |"
echo "|---|---|---|---|---|"
for r in $(seq 1 "$reps"); do
    run getapr "$getapr_pid" 5301 "$work/hits.txt" "cache hit"
    run dnsmasq "$dnsmasq_pid" 5302 "$work/hits.txt" "cache hit"
    misses "g$r" >"$work/miss-g.txt"; misses "d$r" >"$work/miss-d.txt"
    run getapr "$getapr_pid" 5301 "$work/miss-g.txt" "cache miss"
    run dnsmasq "$dnsmasq_pid" 5302 "$work/miss-d.txt" "cache miss"
done
echo
echo "machine: $(nproc) CPUs, $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ //'); ${secs}s per run"
