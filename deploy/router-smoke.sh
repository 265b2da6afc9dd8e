#!/usr/bin/env bash
# Runs the router builds of getapr under qemu user emulation and gets a DNS
# answer through them; CI runs it for aarch64.
#
#   deploy/router-smoke.sh [TARGET...]
#
# Without arguments: aarch64-unknown-linux-musl (required), then
# armv7-unknown-linux-musleabihf and x86_64-unknown-linux-musl if their
# binaries were built. A named target is required. Build them first with
# deploy/build-router.sh; CARGO_TARGET_DIR is honoured (default: ./target).
#
# For each binary: `--version` and `check-config` must work, then `serve`
# with a loopback-only configuration (a fake upstream on 127.0.0.1 that
# answers every A query with 192.0.2.1, no HTTP, no probes: nothing leaves
# the machine) must answer an A query with 192.0.2.1 that it forwarded to
# that upstream, then a second one from its cache. Prints the time from
# process start (qemu's start included) to the first answer.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
target_dir=${CARGO_TARGET_DIR:-$PWD/target}

if [ $# -gt 0 ]; then
    targets=("$@")
    required=("$@")
else
    targets=(aarch64-unknown-linux-musl)
    required=(aarch64-unknown-linux-musl)
    for t in armv7-unknown-linux-musleabihf x86_64-unknown-linux-musl; do
        [ -x "$target_dir/$t/router/getapr" ] && targets+=("$t")
    done
fi

step() { printf '\n=== %s\n' "$*"; }

# The qemu user emulator for a target; empty for the host's own arch.
emulator_of() {
    case $1 in
    x86_64-*) [ "$(uname -m)" = x86_64 ] && echo "" || echo qemu-x86_64-static ;;
    aarch64-*) echo qemu-aarch64-static ;;
    armv7-*) echo qemu-arm-static ;;
    mipsel-*) echo qemu-mipsel-static ;;
    *)
        echo "unknown target $1" >&2
        return 1
        ;;
    esac
}

step "tools: qemu-user-static, python3, file"
need=()
command -v qemu-aarch64-static >/dev/null 2>&1 || need+=(qemu-user-static)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v file >/dev/null 2>&1 || need+=(file)
if [ ${#need[@]} -eq 0 ]; then
    echo "all there"
elif [ "$(id -u)" -eq 0 ]; then
    # binfmt registration is not needed: we call the emulator by name.
    bash .ci/apt-install.sh --no-recommends "${need[@]}"
else
    echo "missing ${need[*]}: install them (as root: apt-get install ${need[*]})" >&2
    exit 1
fi

work=$(mktemp -d)
pids=()
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# The fake upstream: answers every query for an A record with 192.0.2.1
# (RFC 5737 documentation address), anything else with NOERROR and no
# answer; counts the queries it saw in a file so the test can tell a
# forwarded answer from a cached one.
cat >"$work/upstream.py" <<'PY'
import os, socket, struct, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 0))
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(sock.getsockname()[1]))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
seen = 0
while True:
    q, peer = sock.recvfrom(4096)
    if len(q) < 12:
        continue
    qid, flags, qd = struct.unpack("!HHH", q[:6])
    end = 12
    while q[end] != 0:
        end += q[end] + 1
    qtype = struct.unpack("!H", q[end + 1 : end + 3])[0]
    question = q[12 : end + 5]
    answer = b""
    if qtype == 1:
        # Name: pointer to the question (offset 12); A IN, TTL 300.
        answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + bytes([192, 0, 2, 1])
    # QR, opcode 0, RD copied, RA; NOERROR.
    rflags = 0x8000 | (flags & 0x0100) | 0x0080
    head = struct.pack("!HHHHHH", qid, rflags, 1, 1 if answer else 0, 0, 0)
    # Counted before the reply goes out, so whoever gets the reply sees
    # the count; tmp + rename, so a reader never sees a half-written file.
    seen += 1
    with open(sys.argv[2] + ".tmp", "w") as f:
        f.write(str(seen))
    os.rename(sys.argv[2] + ".tmp", sys.argv[2])
    sock.sendto(head + question + answer, peer)
PY

# The driver: starts the daemon (the command after its arguments), asks
# for A smoke.example. until an answer comes, asks again, stops the daemon
# with SIGTERM and checks it exits 0. The first answer must be 192.0.2.1
# forwarded to the upstream (its count of queries went up), the second the
# same from the cache (the count stayed). Prints the time from the daemon's
# start to its first answer (qemu's start, config load, bind, the forward)
# and the round trip of each query.
cat >"$work/drive.py" <<'PY'
import os, signal, socket, struct, subprocess, sys, time
port, seen_file, pidfile, log, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]

def seen():
    try:
        with open(seen_file) as f:
            return int(f.read() or 0)
    except FileNotFoundError:
        return 0

def ask(sock, deadline):
    qid = int.from_bytes(os.urandom(2), "big")
    name = b"\x05smoke\x07example\x00"
    query = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + name + struct.pack("!HH", 1, 1)
    while time.monotonic() < deadline:
        sent = time.monotonic()
        try:
            sock.send(query)
            r = sock.recv(4096)
        except socket.timeout:
            continue
        except ConnectionRefusedError:
            # Not bound yet: loopback's port unreachable comes at once.
            time.sleep(0.002)
            continue
        now = time.monotonic()
        rid, flags, _, an = struct.unpack("!HHHH", r[:8])
        if rid != qid:
            continue
        off, addrs = 12 + len(name) + 4, []
        for _ in range(an):
            # A compressed name (a pointer) or a full one: skip either.
            while r[off] != 0 and r[off] & 0xC0 != 0xC0:
                off += r[off] + 1
            off += 2 if r[off] & 0xC0 == 0xC0 else 1
            rtype, _, _, rdlen = struct.unpack("!HHIH", r[off : off + 10])
            off += 10
            if rtype == 1 and rdlen == 4:
                addrs.append(".".join(str(b) for b in r[off : off + 4]))
            off += rdlen
        return flags & 0xF, addrs, now, (now - sent) * 1e3
    return None

def fail(why):
    print(f"FAILED: {why}")
    sys.exit(1)

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.connect(("127.0.0.1", port))
sock.settimeout(0.1)
before = seen()
start = time.monotonic()
with open(log, "w") as err:
    daemon = subprocess.Popen(cmd, stderr=err)
with open(pidfile, "w") as f:
    f.write(str(daemon.pid))
try:
    first = ask(sock, start + 20)
    if first is None:
        fail("no answer within 20 s")
    forwarded = seen() - before
    second = ask(sock, time.monotonic() + 5)
    cached = seen() - before - forwarded
finally:
    daemon.send_signal(signal.SIGTERM)
    try:
        code = daemon.wait(10)
    except subprocess.TimeoutExpired:
        daemon.kill()
        code = "none: killed after 10 s"
if first[:2] != (0, ["192.0.2.1"]) or forwarded != 1:
    fail(f"first answer rcode={first[0]} {first[1]}, upstream saw {forwarded} queries (want NOERROR 192.0.2.1, 1)")
if second is None or second[:2] != (0, ["192.0.2.1"]) or cached != 0:
    fail(f"second answer {second and second[:2]}, upstream saw {cached} more (want 192.0.2.1 from the cache)")
if code != 0:
    fail(f"exit status after SIGTERM {code}")
print(f"ok: 192.0.2.1, first answer {(first[2] - start) * 1e3:.0f} ms after start "
      f"(round trip {first[3]:.1f} ms, forwarded), second from the cache ({second[3]:.2f} ms), "
      f"exit 0 on SIGTERM")
PY

python3 "$work/upstream.py" "$work/upstream.port" "$work/upstream.seen" &
pids+=($!)
for _ in $(seq 50); do
    [ -s "$work/upstream.port" ] && break
    sleep 0.1
done
upstream_port=$(cat "$work/upstream.port")

# A port free for both UDP and TCP on 127.0.0.1 (getapr listens on both).
free_port() {
    python3 -c '
import socket
while True:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
    port = u.getsockname()[1]
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        t.bind(("127.0.0.1", port)); break
    except OSError:
        pass
print(port)'
}

declare -A result
fail=0
for t in "${targets[@]}"; do
    bin=$target_dir/$t/router/getapr
    if [ ! -x "$bin" ]; then
        echo "$bin missing: run deploy/build-router.sh $t" >&2
        exit 1
    fi
    emu=$(emulator_of "$t")
    if [ -n "$emu" ] && ! command -v "$emu" >/dev/null 2>&1; then
        if [[ " ${required[*]} " == *" $t "* ]]; then
            echo "$emu missing" >&2
            exit 1
        fi
        echo "SKIPPED $t: no $emu"
        result[$t]="skipped (no $emu)"
        continue
    fi
    run=("$bin")
    [ -n "$emu" ] && run=("$(command -v "$emu")" "$bin")
    step "$t: ${run[*]}"
    file -b "$bin"

    port=$(free_port)
    # Loopback only. Never the embedded default: its upstreams and probe
    # targets are public addresses.
    cat >"$work/$t.toml" <<TOML
[dns]
listen = ["127.0.0.1:$port"]
upstreams = ["127.0.0.1:$upstream_port"]
timeout_ms = 2000
[http]
listen = []
[probe]
targets = []
stun = []
destinations = false
TOML

    "${run[@]}" --version
    "${run[@]}" check-config "$work/$t.toml"

    line=$(GETAPR_LOG=info python3 "$work/drive.py" "$port" "$work/upstream.seen" \
        "$work/$t.pid" "$work/$t.log" "${run[@]}" serve -c "$work/$t.toml") || true
    [ -s "$work/$t.pid" ] && pids+=("$(cat "$work/$t.pid")")
    sed 's/^/  log: /' "$work/$t.log" | head -n 20
    echo "$line"
    result[$t]=$line
    [[ $line == ok:* ]] || fail=1
done

step "router smoke"
passed=0 failed=0 skipped=0
for t in "${targets[@]}"; do
    printf '%-32s %s\n' "$t" "${result[$t]}"
    case ${result[$t]} in
    ok:*) passed=$((passed + 1)) ;;
    skipped*) skipped=$((skipped + 1)) ;;
    *) failed=$((failed + 1)) ;;
    esac
done
echo "smoke: $passed passed, $failed failed, $skipped skipped"
exit $fail
