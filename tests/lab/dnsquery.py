#!/usr/bin/env python3
"""Sends DNS queries (built by the test) from inside a lab namespace.

    dnsquery.py SERVER PORT TIMEOUT_S HEX_QUERY...

Each query is sent in turn over UDP from a fresh socket; a truncated reply
(TC=1) is asked again over TCP. One line per query, in order:
"MICROSECONDS HEX_REPLY" (the time from sending to the whole reply, TCP
retry included) or "timeout". Replies with another ID are ignored. Standard
library only; the exit status is 0 whatever the outcome, 2 for a usage
error.
"""
import socket
import struct
import sys
import time


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def udp(server, query, timeout):
    with socket.socket(family(server[0]), socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect(server)
        sock.send(query)
        while True:
            reply = sock.recv(65535)
            if reply[:2] == query[:2]:
                return reply


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise socket.timeout("connection closed")
        data += chunk
    return data


def tcp(server, query, timeout):
    with socket.create_connection(server, timeout=timeout) as sock:
        sock.sendall(struct.pack("!H", len(query)) + query)
        (length,) = struct.unpack("!H", recv_exact(sock, 2))
        return recv_exact(sock, length)


def main(args):
    if len(args) < 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    server = (args[0], int(args[1]))
    timeout = float(args[2])
    for hex_query in args[3:]:
        query = bytes.fromhex(hex_query)
        start = time.perf_counter()
        try:
            reply = udp(server, query, timeout)
            if len(reply) > 2 and reply[2] & 0x02:  # TC
                reply = tcp(server, query, timeout)
        except (socket.timeout, OSError):
            print("timeout", flush=True)
            continue
        took = (time.perf_counter() - start) * 1e6
        print(f"{took:.0f} {reply.hex()}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
