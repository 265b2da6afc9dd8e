#!/usr/bin/env python3
"""getapr against dnsmasq, Unbound and SmartDNS, side by side, and the floor.

Every server forwards to the same local Knot (a generated zone with a
wildcard, so each cache miss can use a name never asked before) and is
measured with dnsperf on loopback. The server under test is pinned to one
CPU, dnsperf and Knot to the other. Repetitions are interleaved (rep 1 of
every server, then rep 2, ...) so a noisy neighbour hurts all alike, and the
ratios are taken within each repetition before their median is reported.

Workloads:
  hit    1000 names asked again and again (after a warm-up pass)
  miss   names never asked before (wildcard), so every query goes upstream
  nocache  the hit names with the server's cache turned off

Figures: QPS; ratio to dnsmasq and to Unbound; CPU microseconds per answered
query (the server's own threads, from /proc/PID/task/*/schedstat); p50/p99
latency at a fixed 5000 QPS on hits (dnsperf -v, one line per query); lost
queries; VmRSS/VmHWM idle and with 100k cached answers; the binary's size;
time from process start to the first answer.

The floor (scripts/bench/floor.c, compiled here with `cc -O2`) answers every
query with one fixed A record, reading and writing in batches of 32 with
recvmmsg/sendmmsg on one blocking thread: no cache, no upstream. It is
measured like the servers, on hits and on misses (which it answers the same
way, without asking Knot), so its rows show what the kernel and the load
generator cost on this machine, the least any server's hit can cost. It has
no nocache row and no 100k-cached RSS.

Only loopback is used: no server here is given any address outside 127/8.

Usage: scripts/bench/peers.py [--reps N] [--seconds S] [--servers getapr,floor,dnsmasq,...]
       [--getapr PATH] [--json FILE]
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ZONE = "bench.example"
AUTH_PORT = 5300
PORTS = {"getapr": 5301, "dnsmasq": 5302, "unbound": 5303, "smartdns": 5304, "getapr-static": 5305,
         "getapr-w1": 5306, "getapr-w2": 5307, "floor": 5308}
SERVER_CPU = "0"
LOAD_CPU = "1"
HIT_NAMES = 1000
CACHED_FOR_RSS = 100_000
FIXED_QPS = 5000
# Servers without a cache: no nocache workload, no RSS with 100k cached.
NO_CACHE = {"floor"}


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def which(name):
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        sys.exit(f"bench: {name} is not installed (scripts/bench/run.sh installs it)")
    return path


# --- the authoritative upstream -------------------------------------------


def start_knot(work):
    zone = os.path.join(work, f"{ZONE}.zone")
    with open(zone, "w") as f:
        f.write(
            f"$ORIGIN {ZONE}.\n$TTL 3600\n"
            f"@ SOA ns hostmaster 1 3600 600 86400 300\n@ NS ns\nns A 127.0.0.1\n"
        )
        for i in range(HIT_NAMES):
            f.write(f"h{i} A 192.0.2.{i % 250 + 1}\nh{i} AAAA 2001:db8::{i:x}\n")
        # Every name under m.bench.test exists: the cache-miss workload.
        f.write("*.m A 192.0.2.200\n*.m AAAA 2001:db8::200\n")
    conf = os.path.join(work, "knot.conf")
    with open(conf, "w") as f:
        f.write(
            f'server:\n    rundir: "{work}"\n    listen: 127.0.0.1@{AUTH_PORT}\n'
            f"    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n"
            f'database:\n    storage: "{work}"\n'
            f'log:\n  - target: "{work}/knotd.log"\n    any: warning\n'
            f'template:\n  - id: default\n    storage: "{work}"\n'
            f"zone:\n  - domain: {ZONE}\n    file: {ZONE}.zone\n"
        )
    proc = subprocess.Popen(
        ["taskset", "-c", LOAD_CPU, which("knotd"), "-c", conf],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if first_answer(AUTH_PORT, f"h0.{ZONE}", 5.0) is None:
        proc.kill()
        sys.exit("bench: knotd did not answer within 5 s (see knotd.log)")
    return proc


# --- the servers under test -----------------------------------------------


def build_floor(work):
    """The no-logic responder, compiled from floor.c into `work`."""
    exe = os.path.join(work, "floor")
    subprocess.run([which("cc"), "-O2", "-o", exe, os.path.join(HERE, "floor.c")], check=True)
    return exe


def server_command(name, work, cache, getapr):
    port = PORTS[name]
    if name == "floor":
        exe = os.path.join(work, "floor")
        return [exe, str(port)], exe
    up = f"127.0.0.1:{AUTH_PORT}"
    size = 200_000 if cache else 0
    if name.startswith("getapr"):
        conf = os.path.join(work, f"{name}-{cache}.toml")
        workers = 2 if name == "getapr-w2" else 1
        with open(conf, "w") as f:
            f.write(
                f'[dns]\nlisten = ["127.0.0.1:{port}"]\nupstreams = ["{up}"]\n'
                f"cache_size = {size}\nworkers = {workers}\n"
                "[http]\nlisten = []\n"
                "[probe]\ntargets = []\nstun = []\ndestinations = false\n"
            )
        return [getapr, "serve", "-c", conf], getapr
    if name == "dnsmasq":
        exe = which("dnsmasq")
        return [
            exe, "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
            "--no-hosts", "--no-poll", f"--server=127.0.0.1#{AUTH_PORT}",
            "--listen-address=127.0.0.1", "--bind-interfaces", f"--port={port}",
            f"--cache-size={size}", "--user=root", "--log-facility=/dev/null",
            "--dns-forward-max=1000",
        ], exe
    if name == "unbound":
        exe = which("unbound")
        conf = os.path.join(work, f"unbound-{cache}.conf")
        ttl = "" if cache else "    cache-max-ttl: 0\n    cache-max-negative-ttl: 0\n"
        with open(conf, "w") as f:
            f.write(
                'server:\n    username: ""\n    chroot: ""\n'
                f'    directory: "{work}"\n    pidfile: ""\n    use-syslog: no\n'
                "    verbosity: 0\n    num-threads: 1\n"
                f"    interface: 127.0.0.1@{port}\n    do-ip6: no\n"
                "    access-control: 127.0.0.0/8 allow\n"
                "    do-not-query-localhost: no\n    qname-minimisation: no\n"
                "    prefetch: no\n    msg-cache-size: 64m\n    rrset-cache-size: 128m\n"
                "    outgoing-range: 1024\n    num-queries-per-thread: 1024\n"
                "    module-config: \"iterator\"\n" + ttl +
                "remote-control:\n    control-enable: no\n"
                f'forward-zone:\n    name: "."\n    forward-addr: 127.0.0.1@{AUTH_PORT}\n'
            )
        return [exe, "-d", "-c", conf], exe
    if name == "smartdns":
        exe = which("smartdns")
        conf = os.path.join(work, f"smartdns-{cache}.conf")
        with open(conf, "w") as f:
            # speed-check-mode none: SmartDNS would otherwise ping and connect
            # to every address it answers with, to pick the fastest.
            f.write(
                f"bind 127.0.0.1:{port}\nserver 127.0.0.1:{AUTH_PORT}\n"
                f"cache-size {size}\nspeed-check-mode none\n"
                "dualstack-ip-selection no\nprefetch-domain no\nserve-expired no\n"
                "log-level error\n"
                f"log-file {work}/smartdns.log\naudit-enable no\n"
            )
        return [exe, "-f", "-x", "-c", conf, "-p", "-"], exe
    raise ValueError(name)


class Server:
    def __init__(self, name, work, cache, getapr):
        self.name = name
        self.port = PORTS[name]
        cmd, self.exe = server_command(name, work, cache, getapr)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU] + cmd,
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(work, f"{name}-{cache}.log"), "w"),
        )
        # taskset execs the server: same PID.
        self.startup = first_answer(self.port, f"h0.{ZONE}", 5.0)
        if self.startup is None:
            self.stop()
            raise RuntimeError(f"{name} did not answer within 5 s (see {work}/{name}-{cache}.log)")

    def cpu_ns(self):
        total = 0
        task_dir = f"/proc/{self.proc.pid}/task"
        for tid in os.listdir(task_dir):
            try:
                with open(f"{task_dir}/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                pass
        return total

    def memory(self):
        fields = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    fields[key] = int(value.split()[0])  # kB
        return fields

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- queries ----------------------------------------------------------------


def query_packet(name, qtype=1):
    ident = os.getpid() & 0xFFFF
    header = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
    qname = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".") if label)
    return header + qname + b"\0" + struct.pack("!HH", qtype, 1)


def first_answer(port, name, within):
    """Seconds from now until `port` answers a query for `name`, else None."""
    start = time.monotonic()
    packet = query_packet(name)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.002)
        while time.monotonic() - start < within:
            try:
                s.sendto(packet, ("127.0.0.1", port))
                data = s.recv(4096)
                if data[:2] == packet[:2] and len(data) > 12:
                    return time.monotonic() - start
            except (socket.timeout, ConnectionRefusedError):
                time.sleep(0.0005)
    return None


def write_names(path, names):
    with open(path, "w") as f:
        for n in names:
            f.write(f"{n} A\n")


def dnsperf(port, datafile, seconds=None, once=False, qps=None, verbose=False, clients=4, outstanding=200):
    cmd = ["taskset", "-c", LOAD_CPU, which("dnsperf"), "-s", "127.0.0.1", "-p", str(port),
           "-d", datafile, "-c", str(clients), "-q", str(outstanding), "-t", "2"]
    if seconds:
        cmd += ["-l", str(seconds)]
    if once:
        cmd += ["-n", "1"]
    if qps:
        cmd += ["-Q", str(qps)]
    if verbose:
        cmd += ["-v"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return parse_dnsperf(out.stdout + out.stderr, verbose)


def parse_dnsperf(text, verbose):
    r = {"sent": 0, "completed": 0, "lost": 0, "qps": 0.0, "noerror": 0, "latencies": []}
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("Queries sent:"):
            r["sent"] = int(s.split()[2])
        elif s.startswith("Queries completed:"):
            r["completed"] = int(s.split()[2])
        elif s.startswith("Queries lost:"):
            r["lost"] = int(s.split()[2])
        elif s.startswith("Response codes:"):
            words = s.replace(",", " ").split()
            if "NOERROR" in words:
                r["noerror"] = int(words[words.index("NOERROR") + 1])
        elif s.startswith("Queries per second:"):
            r["qps"] = float(s.split()[3])
        elif verbose and s.startswith(">"):
            # "> NOERROR h1.bench.test A 0.000123"
            try:
                r["latencies"].append(float(s.split()[-1]))
            except ValueError:
                pass
    return r


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


# --- the run ------------------------------------------------------------------


def measure(name, workload, work, getapr, seconds, rep):
    cache = workload != "nocache"
    server = Server(name, work, cache, getapr)
    try:
        hits = os.path.join(work, "hits.txt")
        result = {"startup_ms": server.startup * 1000}
        result["idle"] = server.memory()
        if workload == "miss":
            data = os.path.join(work, f"miss-{name}-{rep}.txt")
            # More names than the fastest server answers in `seconds`.
            write_names(data, (f"r{rep}-{i}.{name}.m.{ZONE}" for i in range(seconds * 120_000)))
            once = True
        else:
            data = hits
            once = False
            if cache:
                dnsperf(server.port, hits, once=True)  # warm-up
        cpu0 = server.cpu_ns()
        r = dnsperf(server.port, data, seconds=seconds, once=once)
        cpu = server.cpu_ns() - cpu0
        if r["noerror"] < 0.99 * r["completed"]:
            raise RuntimeError(f"{name} {workload}: only {r['noerror']} of {r['completed']} answers were NOERROR")
        result.update(qps=r["qps"], completed=r["completed"], lost=r["lost"],
                      cpu_us=cpu / 1000 / max(r["completed"], 1), after=server.memory())
        if workload == "hit":
            fixed = dnsperf(server.port, hits, seconds=max(2, seconds // 2), qps=FIXED_QPS,
                            verbose=True, clients=1, outstanding=100)
            result["p50_ms"] = percentile(fixed["latencies"], 50) * 1000
            result["p99_ms"] = percentile(fixed["latencies"], 99) * 1000
            result["fixed_lost"] = fixed["lost"]
        return result
    finally:
        server.stop()


def fill(name, work, getapr):
    """RSS of a fresh server after exactly CACHED_FOR_RSS answers were cached."""
    server = Server(name, work, True, getapr)
    try:
        data = os.path.join(work, f"fill-{name}.txt")
        write_names(data, (f"fill-{i}.{name}.m.{ZONE}" for i in range(CACHED_FOR_RSS)))
        r = dnsperf(server.port, data, once=True, qps=20_000)
        if r["noerror"] < 0.99 * CACHED_FOR_RSS:
            raise RuntimeError(f"{name} fill: only {r['noerror']} NOERROR answers")
        return server.memory()
    finally:
        server.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--servers", default="getapr,floor,dnsmasq,unbound,smartdns")
    ap.add_argument("--workloads", default="hit,miss,nocache")
    ap.add_argument("--getapr", default=os.path.join(ROOT, "target", "release", "getapr"))
    ap.add_argument("--getapr-static", help="also measure this build (e.g. the static musl one) as getapr-static")
    ap.add_argument("--scaling", action="store_true",
                    help="getapr with 1 and with 2 worker threads (dns.workers), server and dnsperf on every CPU")
    ap.add_argument("--json", help="also write every figure to this file")
    args = ap.parse_args()
    servers = args.servers.split(",")
    if args.scaling:
        global SERVER_CPU, LOAD_CPU
        servers = ["getapr-w1", "getapr-w2"]
        SERVER_CPU = LOAD_CPU = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    if args.getapr_static:
        servers.insert(1, "getapr-static")
    workloads = args.workloads.split(",")
    if len(os.sched_getaffinity(0)) < 2:
        log("bench: fewer than 2 CPUs: server and load generator will share one")
        LOAD_CPU = SERVER_CPU
    work = tempfile.mkdtemp(prefix="getapr-bench-")
    write_names(os.path.join(work, "hits.txt"), (f"h{i}.{ZONE}" for i in range(HIT_NAMES)))
    if "floor" in servers:
        build_floor(work)
    knot = start_knot(work)
    # The floor has no cache to turn off: no nocache row.
    results = {w: {s: [] for s in servers if not (w == "nocache" and s in NO_CACHE)} for w in workloads}
    filled = {}
    try:
        for rep in range(1, args.reps + 1):
            for workload in workloads:
                for name in results[workload]:
                    log(f"rep {rep}: {workload} {name}")
                    exe = args.getapr_static if name == "getapr-static" else args.getapr
                    results[workload][name].append(measure(name, workload, work, exe, args.seconds, rep))
        filled = {}
        for name in [] if args.scaling else [s for s in servers if s not in NO_CACHE]:
            log(f"fill {CACHED_FOR_RSS} answers: {name}")
            exe = args.getapr_static if name == "getapr-static" else args.getapr
            filled[name] = fill(name, work, exe)
    finally:
        knot.send_signal(signal.SIGTERM)
        knot.wait(timeout=5)
    sizes = {}
    for name in servers:
        exe = args.getapr_static if name == "getapr-static" else (
            args.getapr if name.startswith("getapr") else
            os.path.join(work, "floor") if name == "floor" else which(name))
        sizes[name] = os.path.getsize(exe)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "filled": filled, "sizes": sizes}, f, indent=1)
    print(report(results, filled, sizes, servers, workloads, args))
    shutil.rmtree(work, ignore_errors=True)


def med(values):
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def ratio(results, name, peer, key):
    if peer not in results or name == peer:
        return "—"
    rs = [a[key] / b[key] for a, b in zip(results[name], results[peer]) if b[key]]
    return f"{med(rs):.2f}" if rs else "—"


def report(results, filled, sizes, servers, workloads, args):
    lines = []
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                         capture_output=True, text=True).stdout.strip()
    lines.append(f"Medians of {args.reps} interleaved repetitions of {args.seconds} s; "
                 f"{os.cpu_count()} CPUs ({cpu}); server on CPU {SERVER_CPU}, dnsperf and Knot on CPU {LOAD_CPU}.")
    lines.append("")
    lines.append("| workload | server | QPS | ×dnsmasq | ×Unbound | CPU µs/query | lost |")
    lines.append("|---|---|---:|---:|---:|---:|---:|")
    for w in workloads:
        for s in results[w]:
            rs = results[w][s]
            # The floor answers a miss as it answers a hit, without Knot.
            label = f"{s} (fixed reply, no upstream)" if s == "floor" and w == "miss" else s
            lines.append(
                f"| {w} | {label} | {med([r['qps'] for r in rs]):,.0f} | {ratio(results[w], s, 'dnsmasq', 'qps')} "
                f"| {ratio(results[w], s, 'unbound', 'qps')} | {med([r['cpu_us'] for r in rs]):.1f} "
                f"| {sum(r['lost'] for r in rs)} |"
            )
    if "getapr-w1" in servers and "getapr-w2" in servers:
        lines.append("")
        for w in workloads:
            lines.append(f"- {w}: 2 workers / 1 worker QPS = {ratio(results[w], 'getapr-w2', 'getapr-w1', 'qps')}")
    lines.append("")
    lines.append(f"| server | CPU/hit ×dnsmasq | CPU/hit ×floor | p50 / p99 ms at {FIXED_QPS} QPS (hits) "
                 f"| RSS idle (HWM) MiB | RSS after hits MiB "
                 f"| RSS with {CACHED_FOR_RSS // 1000}k cached (HWM) MiB | binary MiB | first answer ms |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    hits = results.get("hit", {})
    for s in servers:
        hit = hits.get(s, [])
        miss = results.get("miss", {}).get(s, [])
        idle = (hit or miss or [{}])[0].get("idle", {})
        cached = filled.get(s, {})
        startup = med([r["startup_ms"] for w in workloads for r in results[w].get(s, [])])
        mib = lambda kb: f"{kb / 1024:.1f}" if kb else "—"  # noqa: E731
        after = med([r["after"]["VmRSS"] for r in hit])
        lines.append(
            f"| {s} | {ratio(hits, s, 'dnsmasq', 'cpu_us') if hit else '—'} "
            f"| {ratio(hits, s, 'floor', 'cpu_us') if hit else '—'} "
            f"| {med([r['p50_ms'] for r in hit]):.3f} / {med([r['p99_ms'] for r in hit]):.3f} "
            f"| {mib(idle.get('VmRSS'))} ({mib(idle.get('VmHWM'))}) "
            f"| {mib(after if after == after else 0)} "
            f"| {mib(cached.get('VmRSS'))} ({mib(cached.get('VmHWM'))}) "
            f"| {sizes[s] / 1048576:.2f} | {startup:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
