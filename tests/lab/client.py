#!/usr/bin/env python3
"""The lab's test client, run inside a namespace with `ip netns exec`.

    client.py connect ADDR PORT [SOURCE] TIMEOUT_S
        prints "connected", "refused", "timeout" or "error MESSAGE"
    client.py stun ADDR PORT [SOURCE] TIMEOUT_S
        prints the XOR-MAPPED-ADDRESS as "mapped IP PORT", or "timeout"

SOURCE ("-" for none) is the local address to bind first. Standard library
only; the exit status is 0 whatever the outcome, 2 for a usage error.
"""
import os
import socket
import struct
import sys

COOKIE = 0x2112A442  # RFC 8489 section 5


def open_socket(kind, addr, source, timeout):
    sock = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, kind)
    sock.settimeout(timeout)
    if source != "-":
        sock.bind((source, 0))
    return sock


def connect(sock, addr, port):
    try:
        sock.connect((addr, port))
        return "connected"
    except ConnectionRefusedError:
        return "refused"
    except socket.timeout:
        return "timeout"
    except OSError as error:
        return f"error {error}"


def stun(sock, addr, port):
    txid = os.urandom(12)
    sock.sendto(struct.pack("!HHI", 0x0001, 0, COOKIE) + txid, (addr, port))
    try:
        while True:
            data = sock.recv(2048)
            if data[:2] == b"\x01\x01" and data[8:20] == txid:
                break
    except socket.timeout:
        return "timeout"
    pos = 20
    while pos + 4 <= len(data):
        kind, length = struct.unpack("!HH", data[pos : pos + 4])
        value = data[pos + 4 : pos + 4 + length]
        if kind == 0x0020:  # XOR-MAPPED-ADDRESS, RFC 8489 section 14.2
            fam = socket.AF_INET if value[1] == 1 else socket.AF_INET6
            key = struct.pack("!I", COOKIE) + txid
            raw = bytes(a ^ k for a, k in zip(value[4:], key))
            port = struct.unpack("!H", value[2:4])[0] ^ (COOKIE >> 16)
            return f"mapped {socket.inet_ntop(fam, raw)} {port}"
        pos += 4 + (length + 3) // 4 * 4
    return "error no XOR-MAPPED-ADDRESS"


def main(args):
    if len(args) != 5 or args[0] not in ("connect", "stun"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    what, addr, port, source, timeout = args
    kind = socket.SOCK_STREAM if what == "connect" else socket.SOCK_DGRAM
    try:
        sock = open_socket(kind, addr, source, float(timeout))
        result = (connect if what == "connect" else stun)(sock, addr, int(port))
    except OSError as error:  # e.g. a SOURCE that is not a local address
        result = f"error {error}"
    print(result, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
