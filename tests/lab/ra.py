#!/usr/bin/env python3
"""Router advertisements with a PREF64 option (RFC 8781), from a lab router.

    ra.py --interface lan0 [--prefix 2001:db8:64::/96 ...] [--lifetime 24]
          [--interval 3] [--router-lifetime 0]

Every INTERVAL seconds sends an RA to ff02::1 out of INTERFACE (from its
link-local address, hop limit 255, as RFC 4861 §6.1.2 wants): cur hop limit
0, flags 0, router lifetime 0 by default (the host adds no default route
from it: the lab routes statically), reachable and retrans timers 0 (all
"unspecified"), then one PREF64 option per --prefix (RFC 8781 §4: type 38,
length 2, Scaled Lifetime in units of 8 s << 3 | PLC, the prefix's highest
96 bits). LIFETIME is in seconds, rounded up to a multiple of 8; 0
withdraws the prefix. Debian's radvd 2.19 cannot send PREF64.

Prints "sent SECONDS" (time.monotonic()) after each RA, flushed, and exits
when its stdin closes (so it dies with the test process) or on SIGTERM.
The kernel fills in the ICMPv6 checksum of a raw ICMPv6 socket.
"""
import argparse
import ipaddress
import select
import socket
import struct
import sys
import time

# RFC 8781 §4: Prefix Length Code for each prefix length.
PLC = {96: 0, 64: 1, 56: 2, 48: 3, 40: 4, 32: 5}


def pref64_option(prefix, lifetime):
    net = ipaddress.IPv6Network(prefix, strict=True)
    if net.prefixlen not in PLC:
        raise SystemExit(f"{prefix}: PREF64 carries /32, /40, /48, /56, /64 or /96")
    scaled = (lifetime + 7) // 8
    if scaled > 0x1FFF:
        raise SystemExit(f"lifetime {lifetime} s exceeds 13 bits of 8 s units")
    field = (scaled << 3) | PLC[net.prefixlen]
    return struct.pack("!BBH", 38, 2, field) + net.network_address.packed[:12]


def router_advertisement(prefixes, lifetime, router_lifetime):
    # type, code, checksum (kernel), cur hop limit, flags, router lifetime,
    # reachable time, retrans timer.
    head = struct.pack("!BBHBBHII", 134, 0, 0, 0, 0, router_lifetime, 0, 0)
    return head + b"".join(pref64_option(p, lifetime) for p in prefixes)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--interface", required=True)
    parser.add_argument("--prefix", action="append")
    parser.add_argument("--lifetime", type=int, default=24)
    parser.add_argument("--interval", type=float, default=3.0)
    parser.add_argument("--router-lifetime", type=int, default=0)
    args = parser.parse_args()
    prefixes = args.prefix or ["2001:db8:64::/96"]
    packet = router_advertisement(prefixes, args.lifetime, args.router_lifetime)

    index = socket.if_nametoindex(args.interface)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    sock.setsockopt(
        socket.SOL_SOCKET, socket.SO_BINDTODEVICE, args.interface.encode()
    )
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
    # Receive nothing: this socket only sends (a raw ICMPv6 socket would
    # otherwise queue every ICMPv6 packet of the namespace).
    sock.setsockopt(socket.IPPROTO_ICMPV6, 1, b"\xff" * 32)  # ICMP6_FILTER: block all

    destination = ("ff02::1", 0, 0, index)
    while True:
        sock.sendto(packet, destination)
        print(f"sent {time.monotonic():.3f}", flush=True)
        deadline = time.monotonic() + args.interval
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([sys.stdin], [], [], left)
            if ready and not sys.stdin.buffer.read1(4096):
                return  # stdin closed: the test is gone


if __name__ == "__main__":
    try:
        main()
    except (KeyboardInterrupt, BrokenPipeError):
        pass
