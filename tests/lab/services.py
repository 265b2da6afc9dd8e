#!/usr/bin/env python3
"""The lab's "Internet" services, run inside the inet namespace.

    services.py TCP_ADDR... -- STUN_ADDR...

Every TCP_ADDR gets listeners on ports 80 and 443 that accept and close;
every STUN_ADDR gets a STUN Binding responder (RFC 8489) on UDP port 3478.
Each accepted connection and each STUN request is printed as
"tcp LOCAL PEER" / "stun LOCAL PEER"; "ready" is printed once every socket
is bound. Exits when stdin closes, so it dies with the test process even
when that is killed. Standard library only.
"""
import socket
import struct
import sys
import threading

COOKIE = 0x2112A442  # RFC 8489 section 5: the magic cookie


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def show(addr):
    return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"


def tcp(sock):
    local = show(sock.getsockname())
    while True:
        conn, peer = sock.accept()
        print(f"tcp {local} {show(peer)}", flush=True)
        conn.close()


def xor_mapped(peer, txid):
    # RFC 8489 section 14.2: port XOR the cookie's top 16 bits, address XOR
    # the cookie (IPv4) or the cookie followed by the transaction ID (IPv6).
    fam = family(peer[0])
    raw = socket.inet_pton(fam, peer[0])
    key = struct.pack("!I", COOKIE) + txid
    xaddr = bytes(a ^ k for a, k in zip(raw, key))
    value = struct.pack("!BBH", 0, 1 if fam == socket.AF_INET else 2, peer[1] ^ (COOKIE >> 16))
    return struct.pack("!HH", 0x0020, len(value + xaddr)) + value + xaddr


def stun(sock):
    local = show(sock.getsockname())
    while True:
        data, peer = sock.recvfrom(2048)
        if len(data) < 20:
            continue
        kind, _length, cookie = struct.unpack("!HHI", data[:8])
        if kind != 0x0001 or cookie != COOKIE:  # only Binding requests
            continue
        print(f"stun {local} {show(peer)}", flush=True)
        attr = xor_mapped(peer, data[8:20])
        sock.sendto(struct.pack("!HHI", 0x0101, len(attr), COOKIE) + data[8:20] + attr, peer)


def main(args):
    split = args.index("--")
    socks = []
    for addr in args[:split]:
        for port in (80, 443):
            s = socket.socket(family(addr), socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, port))
            s.listen(64)
            socks.append((tcp, s))
    for addr in args[split + 1 :]:
        s = socket.socket(family(addr), socket.SOCK_DGRAM)
        s.bind((addr, 3478))
        socks.append((stun, s))
    for serve, s in socks:
        threading.Thread(target=serve, args=(s,), daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()  # until the test closes the pipe, or dies


if __name__ == "__main__":
    main(sys.argv[1:])
