#!/usr/bin/env python3
"""Watches the ND user options the kernel passes up (RTM_NEWNDUSEROPT on
rtnetlink group RTNLGRP_ND_USEROPT), as `ip monitor nduseropt` would (this
host's iproute2 lacks it). For the lab test to check its RA sender.

    nduseropt.py SECONDS

Prints, for each PREF64 option (type 38) in each message until SECONDS have
passed or one message with PREF64 was printed:
"pref64 IFINDEX ROUTER PREFIX/LEN LIFETIME" (the RA's source address from
NDUSEROPT_SRCADDR, the lifetime in seconds), and "other IFINDEX TYPE" for
any other option. Prints "ready" once subscribed. Exits 0 either way.
"""
import ipaddress
import select
import socket
import struct
import sys
import time

RTNLGRP_ND_USEROPT = 20
RTM_NEWNDUSEROPT = 68
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NDUSEROPT_SRCADDR = 1
LENGTHS = {0: 96, 1: 64, 2: 56, 3: 48, 4: 40, 5: 32}


def options(data):
    while len(data) >= 8:
        kind, units = data[0], data[1]
        if units == 0 or units * 8 > len(data):
            return
        yield kind, data[: units * 8]
        data = data[units * 8 :]


def attributes(data):
    while len(data) >= 4:
        length, kind = struct.unpack_from("=HH", data)
        if length < 4 or length > len(data):
            return
        yield kind, data[4:length]
        data = data[(length + 3) & ~3 :]


def message(body):
    if len(body) < 16:
        return []
    _family, opts_len, ifindex, _icmp_type, _icmp_code = struct.unpack_from(
        "=BxHiBB", body
    )
    opts = body[16 : 16 + opts_len]
    router = "-"
    for kind, value in attributes(body[16 + ((opts_len + 3) & ~3) :]):
        if kind == NDUSEROPT_SRCADDR and len(value) == 16:
            router = str(ipaddress.IPv6Address(value))
    lines = []
    for kind, option in options(opts):
        if kind == 38 and len(option) == 16:
            field = struct.unpack_from("!H", option, 2)[0]
            plc = field & 7
            length = LENGTHS.get(plc)
            prefix = ipaddress.IPv6Address(option[4:16] + bytes(4))
            lines.append(
                f"pref64 {ifindex} {router} {prefix}/{length or f'plc{plc}'} {(field >> 3) * 8}"
            )
        else:
            lines.append(f"other {ifindex} {kind}")
    return lines


def main(seconds):
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    sock.bind((0, 0))
    sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, RTNLGRP_ND_USEROPT)
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            return
        data = sock.recv(65536)
        found = False
        while len(data) >= 16:
            length, kind = struct.unpack_from("=IH", data)
            if length < 16 or length > len(data):
                break
            if kind == RTM_NEWNDUSEROPT:
                for line in message(data[16:length]):
                    print(line, flush=True)
                    found = found or line.startswith("pref64 ")
            data = data[(length + 3) & ~3 :]
        if found:
            return


if __name__ == "__main__":
    main(float(sys.argv[1]))
