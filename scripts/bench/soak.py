#!/usr/bin/env python3
"""Soak run of getapr: dnsperf at a fixed rate for a chosen number
of minutes over a mix of cached and unique names, with the probe engine
running, all inside a throwaway network lab; every minute it prints the
share answered, the p99 latency and getapr's resident memory.

The lab is two network namespaces joined by a veth pair, named after this
process so that runs never collide, and deleted on exit whatever happens:

    soak-host-PID   getapr (127.0.0.1:5300), dnsperf; 198.51.100.2/24,
                    2001:db8:5::2/64, default routes via the inet side
    soak-inet-PID   knotd on 198.51.100.1 and 2001:db8:5::1 port 53, with a
                    wildcard zone: every name under soak.test exists

getapr forwards to that Knot and probes it (TCP to port 53 on both
families, and the answers' addresses, which are Knot's own), so the probe
engine runs its rounds throughout. Nothing leaves the lab.

Names: a hot set of 1,000 names asked over and over (cache hits), and
unique names never asked before (cache misses; each minute has its own),
half and half by default. With the default 10,000-entry cache the unique
names fill it within seconds; from then on every miss overwrites the least
recently used entry, so resident memory must level off: the last column
shows its growth over the previous minute.

    sudo bash scripts/bench/soak.sh --minutes 10 [--qps 10000] [--unique 0.5]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HOT = 1000
ZONE = "soak.test"


def sh(*cmd, check=True, **kw):
    return subprocess.run(cmd, check=check, **kw)


def which(name):
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        sys.exit(f"soak: {name} is not installed (scripts/bench/soak.sh installs it)")
    return path


class Lab:
    def __init__(self):
        tag = os.getpid()
        self.host, self.inet = f"soak-host-{tag}", f"soak-inet-{tag}"
        self.made = []

    def __enter__(self):
        for ns in (self.host, self.inet):
            sh("ip", "netns", "add", ns)
            self.made.append(ns)
            self.run(ns, "ip", "link", "set", "lo", "up")
        sh("ip", "link", "add", "soak0", "netns", self.host, "type", "veth",
           "peer", "name", "soak1", "netns", self.inet)
        for ns, dev, v4, v6 in ((self.host, "soak0", "198.51.100.2/24", "2001:db8:5::2/64"),
                                (self.inet, "soak1", "198.51.100.1/24", "2001:db8:5::1/64")):
            self.run(ns, "ip", "addr", "add", v4, "dev", dev)
            self.run(ns, "ip", "-6", "addr", "add", v6, "dev", dev, "nodad")
            self.run(ns, "ip", "link", "set", dev, "up")
        self.run(self.host, "ip", "route", "add", "default", "via", "198.51.100.1")
        self.run(self.host, "ip", "-6", "route", "add", "default", "via", "2001:db8:5::1")
        return self

    def __exit__(self, *exc):
        for ns in self.made:
            # Kills what still runs inside, then the namespace.
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
            for pid in pids.split():
                subprocess.run(["kill", "-9", pid], check=False)
            subprocess.run(["ip", "netns", "del", ns], check=False)

    def cmd(self, ns, *args):
        return ["ip", "netns", "exec", ns, *args]

    def run(self, ns, *args, **kw):
        return sh(*self.cmd(ns, *args), **kw)

    def spawn(self, ns, *args, **kw):
        return subprocess.Popen(self.cmd(ns, *args), **kw)


def start_knot(lab, work):
    with open(os.path.join(work, f"{ZONE}.zone"), "w") as f:
        f.write(f"$ORIGIN {ZONE}.\n$TTL 3600\n"
                "@ SOA ns hostmaster 1 3600 600 86400 300\n@ NS ns\nns A 198.51.100.1\n"
                "* A 198.51.100.1\n* AAAA 2001:db8:5::1\n")
    conf = os.path.join(work, "knot.conf")
    with open(conf, "w") as f:
        f.write(f'server:\n    rundir: "{work}"\n'
                "    listen: [ 198.51.100.1@53, 2001:db8:5::1@53 ]\n"
                "    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n"
                f'database:\n    storage: "{work}"\n'
                f'log:\n  - target: "{work}/knotd.log"\n    any: warning\n'
                f'template:\n  - id: default\n    storage: "{work}"\n'
                f"zone:\n  - domain: {ZONE}\n    file: {ZONE}.zone\n")
    return lab.spawn(lab.inet, which("knotd"), "-c", conf,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def answers(lab, server, port, name):
    """Whether `server` answers `name` A (from the host namespace) within 10 s."""
    deadline = time.time() + 10
    while time.time() < deadline:
        got = subprocess.run(lab.cmd(lab.host, which("kdig"), f"@{server}", "-p", str(port),
                                     "+short", "+timeout=1", "+retry=0", name, "A"),
                             capture_output=True, text=True).stdout.strip()
        if got == "198.51.100.1":
            return True
        time.sleep(0.2)
    return False


def start_getapr(lab, work, binary, cache_size):
    conf = os.path.join(work, "getapr.toml")
    with open(conf, "w") as f:
        f.write('[dns]\nlisten = ["127.0.0.1:5300"]\n'
                'upstreams = ["198.51.100.1", "[2001:db8:5::1]:53"]\n'
                f"cache_size = {cache_size}\n"
                '[http]\nlisten = ["127.0.0.1:8053"]\n'
                '[probe]\ninterval_ms = 5000\n'
                'targets = ["198.51.100.1:53", "[2001:db8:5::1]:53"]\nstun = []\n'
                "destinations = true\n")
    log = open(os.path.join(work, "getapr.log"), "w")
    proc = lab.spawn(lab.host, binary, "serve", "-c", conf, stdout=log, stderr=log)
    if not answers(lab, "127.0.0.1", 5300, f"up.{ZONE}"):
        sys.exit(f"soak: getapr did not answer within 10 s (see {work}/getapr.log)")
    return proc


def rss_kib(pid):
    """VmRSS of the getapr process (the child of `ip netns exec`)."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    for p in [*children, str(pid)]:
        try:
            with open(f"/proc/{p}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            if "getapr" in fields.get("Name", ""):
                return int(fields["VmRSS"].split()[0])
        except OSError:
            continue
    return None


def names_file(work, minute, count, unique):
    """`count` queries for one minute: hot names and this minute's unique ones."""
    path = os.path.join(work, f"names-{minute}.txt")
    with open(path, "w") as f:
        for i in range(count):
            # A deterministic interleaving: `unique` of every 100 are new.
            if (i % 100) < unique * 100:
                f.write(f"u{minute}-{i}.{ZONE} A\n")
            else:
                f.write(f"h{i % HOT}.{ZONE} A\n")
    return path


def dnsperf_minute(lab, datafile, qps, seconds):
    out = subprocess.run(
        lab.cmd(lab.host, which("dnsperf"), "-s", "127.0.0.1", "-p", "5300", "-d", datafile,
                "-l", str(seconds), "-Q", str(qps), "-c", "4", "-q", "500", "-t", "5", "-v"),
        capture_output=True, text=True)
    lat, sent, answered = [], 0, 0
    for line in out.stdout.splitlines():
        # -v: "> NOERROR name A 0.000123" per answer.
        if line.startswith("> "):
            parts = line.split()
            try:
                lat.append(float(parts[-1]))
            except ValueError:
                pass
        elif "Queries sent:" in line:
            sent = int(line.split()[2])
        elif "Queries completed:" in line:
            answered = int(line.split()[2])
    lat.sort()
    p99 = lat[min(len(lat) - 1, len(lat) * 99 // 100)] if lat else float("nan")
    return sent, answered, p99


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=int, default=10)
    ap.add_argument("--qps", type=int, default=10_000)
    ap.add_argument("--unique", type=float, default=0.5, help="share of never-asked names")
    ap.add_argument("--cache-size", type=int, default=10_000)
    ap.add_argument("--getapr", default="target/release/getapr")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("soak: needs root (network namespaces)")
    binary = os.path.abspath(args.getapr)
    work = tempfile.mkdtemp(prefix="getapr-soak-")
    os.chmod(work, 0o755)
    with Lab() as lab:
        knot = start_knot(lab, work)
        if not answers(lab, "198.51.100.1", 53, f"up.{ZONE}"):
            sys.exit(f"soak: knotd did not answer within 10 s (see {work}/knotd.log)")
        getapr = start_getapr(lab, work, binary, args.cache_size)
        print(f"soak: {args.minutes} min at {args.qps} QPS, {args.unique:.0%} unique names, "
              f"cache_size {args.cache_size}, probe engine on (lab {lab.host}/{lab.inet})")
        print("| minute | sent | answered | p99 ms | RSS MiB | RSS change MiB |")
        print("|---:|---:|---:|---:|---:|---:|")
        before = rss_kib(getapr.pid)
        print(f"| 0 | | | | {before / 1024:.1f} | |", flush=True)
        try:
            for minute in range(1, args.minutes + 1):
                data = names_file(work, minute, args.qps * 60, args.unique)
                sent, answered, p99 = dnsperf_minute(lab, data, args.qps, 60)
                rss = rss_kib(getapr.pid)
                if rss is None:
                    sys.exit("soak: getapr is gone (see getapr.log)")
                share = 100.0 * answered / sent if sent else 0.0
                print(f"| {minute} | {sent} | {share:.2f} % | {p99 * 1000:.2f} | "
                      f"{rss / 1024:.1f} | {(rss - before) / 1024:+.1f} |", flush=True)
                before = rss
                os.remove(data)
            status = subprocess.run(lab.cmd(lab.host, "curl", "-s", "http://127.0.0.1:8053/status"),
                                    capture_output=True, text=True).stdout
            print(f"\n/status at the end: {status[:400]}")
        finally:
            getapr.terminate()
            knot.terminate()
            getapr.wait(timeout=10)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
