#!/usr/bin/env python3
"""How guessable getapr's upstream queries are: source ports and DNS IDs.

Starts a recording upstream on 127.0.0.1 (this script: it answers every
query with one fixed A record, 192.0.2.1, and records the source port and
ID of each), starts getapr forwarding to it (loopback only, probe targets
and STUN empty, cache on), sends N queries for names never asked before
(q<i>.entropy.example, so each one goes upstream) through getapr with 50 in
flight (dnsperf when it is installed, else a Python client), and prints for
source ports and for IDs: the queries seen, the distinct values, and their
collision entropy (Rényi entropy of order 2).

The collision entropy H2 = -log2 Σ p_v² is the log of one over the chance
that two independent draws are equal: log2 K for a uniform choice among K
values, less when some values come up more often. It is at least the
min-entropy H∞ = -log2 max p_v, which bounds a spoofer's best single guess,
and at most twice it; unlike the min-entropy or the Shannon entropy it can
be estimated without bias from a sample, from the pairs that collide:

    H2 = -log2( Σ_v c_v (c_v - 1) / (N (N - 1)) )

where c_v is how often value v was seen among N queries (Σ c_v(c_v-1) is
twice the number of equal pairs; it is an unbiased estimate of Σ p_v² N(N-1)).
The plug-in estimator -log2 Σ (c_v/N)² cannot say more than log2 N bits: when
all N values differ it gives -log2(N · 1/N²) = log2 N, about 11 bits for
N = 2,000, whatever the true entropy (14.8 bits for ports, 16 for IDs).
The pair estimator has no such cap; with no equal pair at all it only says
the entropy is above log2(N(N-1)/2), about 21 bits for N = 2,000, and is
printed as that bound. For a uniform choice over K values it expects
log2 K; its sampling spread is about 1/(ln 2 · sqrt(N(N-1)/2K)) bits (the
equal pairs are nearly Poisson), 0.17 bits for ports and 0.26 for IDs at
N = 2,000, so the script also prints how often a truly uniform source
would fall under the floor in a run of this size.

The values alone do not show predictability: a counter has no equal pairs
at all. So the same is printed for the differences between successive
queries' values (modulo the range; in the order they reached the upstream),
which a counter or a fixed stride turns into one value (0 bits) and a
small random walk into a few bits, while independent uniform choices give
as much as the values.

Exits 1 when the ports' collision entropy is under 14.5 bits or the IDs'
under 15.5 (issue 19's floor), or either's successive differences under
8 bits (what a random walk with steps within ±128 gives; a counter or a
stride gives 0); 2 when the run itself failed (fewer than 99 % of the
names answered or seen upstream).

Usage: scripts/bench/entropy.py --getapr PATH [--queries 2000] [--inflight 50]
       [--client auto|dnsperf|python]
"""

import argparse
import math
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

ZONE = "entropy.example"
PORT_FLOOR = 14.5
ID_FLOOR = 15.5
DIFF_FLOOR = 8.0


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def qname_end(msg, i):
    """Offset just past the uncompressed name starting at i, else None."""
    while i < len(msg):
        n = msg[i]
        if n == 0:
            return i + 1
        if n & 0xC0:
            return None
        i += 1 + n
    return None


def read_name(msg, i):
    labels = []
    while msg[i]:
        labels.append(msg[i + 1 : i + 1 + msg[i]].decode("ascii", "replace"))
        i += 1 + msg[i]
    return ".".join(labels).lower()


class Upstream:
    """A UDP server on 127.0.0.1 that answers every query with one A record
    and records (source port, ID, name) of each datagram it gets."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.seen = []  # (arrival index, source port, id, qname)
        self.sources = set()
        self.stopping = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stopping:
            try:
                msg, (host, port) = self.sock.recvfrom(4096)
            except OSError:
                return
            if len(msg) < 12 or msg[2] & 0x80 or struct.unpack("!H", msg[4:6])[0] != 1:
                continue
            end = qname_end(msg, 12)
            if end is None or end + 4 > len(msg):
                continue
            ident = struct.unpack("!H", msg[:2])[0]
            self.sources.add(host)
            self.seen.append((len(self.seen), port, ident, read_name(msg, 12)))
            question = msg[12 : end + 4]
            flags = 0x8000 | (msg[2] & 0x01) << 8 | 0x0400  # QR, RD echoed, AA
            reply = struct.pack("!HHHHHH", ident, flags, 1, 1, 0, 0) + question
            if struct.unpack("!H", msg[end : end + 2])[0] == 1:  # A
                reply += struct.pack("!HHHIH", 0xC00C, 1, 1, 300, 4) + bytes([192, 0, 2, 1])
            else:  # NOERROR, no data
                reply = reply[:6] + b"\0\0" + reply[8:]
            try:
                self.sock.sendto(reply, (host, port))
            except OSError:
                pass

    def stop(self):
        self.stopping = True
        self.sock.close()


def query(name, ident):
    header = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
    qname = b"".join(bytes([len(label)]) + label.encode() for label in name.split("."))
    return header + qname + b"\0" + struct.pack("!HH", 1, 1)


def ask_python(port, names, inflight, timeout=2.0, tries=3):
    """Sends every name to getapr with `inflight` outstanding; returns how
    many got NOERROR answers."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.settimeout(0.05)
    pending = {}  # id -> (name index, sent at, tries)
    nxt = 0
    answered = 0
    done = set()
    while nxt < len(names) or pending:
        while nxt < len(names) and len(pending) < inflight:
            ident = nxt & 0xFFFF
            s.sendto(query(names[nxt], ident), ("127.0.0.1", port))
            pending[ident] = (nxt, time.monotonic(), 1)
            nxt += 1
        try:
            data = s.recv(4096)
            ident = struct.unpack("!H", data[:2])[0]
            if ident in pending:
                i = pending.pop(ident)[0]
                if i not in done and data[3] & 0x0F == 0:
                    answered += 1
                done.add(i)
        except socket.timeout:
            pass
        now = time.monotonic()
        for ident, (i, at, n) in list(pending.items()):
            if now - at > timeout:
                if n >= tries:
                    del pending[ident]
                else:
                    s.sendto(query(names[i], ident), ("127.0.0.1", port))
                    pending[ident] = (i, now, n + 1)
    s.close()
    return answered


def ask_dnsperf(exe, port, names, inflight, work):
    data = os.path.join(work, "names.txt")
    with open(data, "w") as f:
        for n in names:
            f.write(f"{n} A\n")
    out = subprocess.run([exe, "-s", "127.0.0.1", "-p", str(port), "-d", data, "-n", "1",
                          "-c", "1", "-q", str(inflight), "-t", "5"],
                         capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        words = line.replace(",", " ").split()
        if words[:2] == ["Response", "codes:"] and "NOERROR" in words:
            return int(words[words.index("NOERROR") + 1])
    return 0


def start_getapr(exe, work, upstream_port):
    port = free_port()
    conf = os.path.join(work, "getapr.toml")
    with open(conf, "w") as f:
        # Loopback only: no HTTP, no probe targets, no STUN, no destinations.
        f.write(
            f'[dns]\nlisten = ["127.0.0.1:{port}"]\nupstreams = ["127.0.0.1:{upstream_port}"]\n'
            "cache_size = 100000\n"
            "[http]\nlisten = []\n"
            "[probe]\ntargets = []\nstun = []\ndestinations = false\n"
        )
    proc = subprocess.Popen([exe, "serve", "-c", conf], stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(work, "getapr.log"), "w"))
    probe = query(f"ready.{ZONE}", 0x4242)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.05)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                s.sendto(probe, ("127.0.0.1", port))
                if s.recv(4096)[:2] == probe[:2]:
                    return proc, port
            except (socket.timeout, ConnectionRefusedError):
                pass
    proc.kill()
    with open(os.path.join(work, "getapr.log")) as f:
        log(f.read()[-2000:])
    sys.exit("entropy: getapr did not answer within 10 s")


def collision_entropy(values):
    """(H2 in bits, or None when no two values are equal; equal pairs)."""
    counts = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    n = len(values)
    pairs = sum(c * (c - 1) for c in counts.values()) // 2
    if n < 2 or pairs == 0:
        return None, 0
    return -math.log2(pairs / (n * (n - 1) / 2)), pairs


def poisson_tail(mean, k):
    """P(X >= k) for X ~ Poisson(mean), summed in log space (exp(-mean)
    underflows for the means of large runs)."""
    if k <= 0:
        return 1.0
    if mean <= 0:
        return 0.0
    top = k + int(40 * math.sqrt(mean + 1)) + 50
    return min(1.0, sum(math.exp(i * math.log(mean) - mean - math.lgamma(i + 1)) for i in range(k, top)))


def line(label, values, modulo, offset, floor, diff_floor):
    """One row: the figures for `values` (in arrival order) drawn from
    `modulo` possible values starting at `offset`; whether they pass."""
    n = len(values)
    h2, pairs = collision_entropy(values)
    diffs = [(b - a) % modulo for a, b in zip(values, values[1:])]
    d2, _ = collision_entropy(diffs)
    expect = math.log2(modulo)
    m = n * (n - 1) / 2
    spread = 1 / (math.log(2) * math.sqrt(m / modulo)) if n > 1 else float("nan")
    # Below the floor means more than m / 2^floor equal pairs.
    false_alarm = poisson_tail(m / modulo, math.floor(m / 2 ** floor) + 1)
    bound = math.log2(m) if m else 0.0
    show = lambda h: f"> {bound:.1f}" if h is None else f"{h + 0.0:.2f}"  # noqa: E731
    ok = (h2 is None or h2 >= floor) and (d2 is None or d2 >= diff_floor) and n > 1
    out = (f"| {label} | {n} | {len(set(values))} | {pairs} | {show(h2)} | {show(d2)} "
           f"| {expect:.2f} ± {spread:.2f} (range {offset}–{offset + modulo - 1}) "
           f"| {floor} ({false_alarm * 100:.1f} %) | {'ok' if ok else 'BELOW'} |")
    return out, ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--getapr", required=True, help="the getapr binary to measure")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--inflight", type=int, default=50)
    ap.add_argument("--client", choices=["auto", "dnsperf", "python"], default="auto")
    args = ap.parse_args()
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = (int(x) for x in f.read().split())
    dnsperf = shutil.which("dnsperf") if args.client != "python" else None
    if args.client == "dnsperf" and not dnsperf:
        sys.exit("entropy: dnsperf is not installed")
    work = tempfile.mkdtemp(prefix="getapr-entropy-")
    upstream = Upstream()
    getapr = None
    try:
        getapr, port = start_getapr(os.path.abspath(args.getapr), work, upstream.port)
        before = len(upstream.seen)
        tag = f"{os.getpid():x}{int(time.time()) & 0xFFFF:x}"
        names = [f"q{i}-{tag}.{ZONE}" for i in range(args.queries)]
        started = time.monotonic()
        if dnsperf:
            answered = ask_dnsperf(dnsperf, port, names, args.inflight, work)
            client = f"dnsperf, {args.inflight} in flight"
        else:
            answered = ask_python(port, names, args.inflight)
            client = f"Python client, {args.inflight} in flight"
        took = time.monotonic() - started
        time.sleep(0.2)  # late retransmissions
    finally:
        if getapr is not None:
            getapr.terminate()
            try:
                getapr.wait(timeout=5)
            except subprocess.TimeoutExpired:
                getapr.kill()
        upstream.stop()
    wanted = set(names)
    # A retransmission (same port, ID and name) is the same query again.
    queries, repeats, other = {}, 0, 0
    for _, p, i, name in upstream.seen[before:]:
        if name not in wanted:
            other += 1
        elif (p, i, name) in queries:
            repeats += 1
        else:
            queries[(p, i, name)] = None
    ports = [p for p, _, _ in queries]
    ids = [i for _, i, _ in queries]
    per_name = len(queries) - len({n for _, _, n in queries})
    print(f"getapr {args.getapr}: {args.queries} names sent ({client}), {answered} answered NOERROR "
          f"in {took:.1f} s; the upstream got {len(queries)} queries for them "
          f"({per_name} names asked more than once with a new port or ID, {repeats} retransmissions "
          f"left out, {other} queries for other names left out); "
          f"ephemeral ports {low}–{high} (/proc/sys/net/ipv4/ip_local_port_range).")
    print()
    print("| | queries | distinct | equal pairs | collision entropy, bits | of successive differences "
          "| uniform would give | floor (a uniform source under it) | |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    port_line, port_ok = line("source ports", ports, high - low + 1, low, PORT_FLOOR, DIFF_FLOOR)
    id_line, id_ok = line("DNS IDs", ids, 1 << 16, 0, ID_FLOOR, DIFF_FLOOR)
    print(port_line)
    print(id_line)
    shutil.rmtree(work, ignore_errors=True)
    if len(queries) < 0.99 * args.queries or answered < 0.99 * args.queries:
        log(f"entropy: only {len(queries)} upstream queries and {answered} answers for {args.queries} names")
        sys.exit(2)
    if not (port_ok and id_ok):
        log(f"entropy: under the floor (ports ≥ {PORT_FLOOR} bits, IDs ≥ {ID_FLOOR} bits, "
            f"successive differences ≥ {DIFF_FLOOR} bits)")
        sys.exit(1)


if __name__ == "__main__":
    main()
