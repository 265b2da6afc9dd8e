"""The (source, destination) pairs to try for a host and port: the daemon's
when it gives a non-empty list, else the system resolver's (loopback, a 400
or 404, an empty list: silently; the daemon unusable: with the one warning).

Sockaddrs are the tuples ``socket.bind`` and ``socket.connect`` take:
``(address, port)`` for IPv4 and ``(address, port, flowinfo, scope_id)``
for IPv6, the scope id an interface index and non-zero only on a link-local
address (RFC 4007 §6: only non-global addresses need a zone).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from typing import List, NamedTuple, Optional, Tuple, Union

from . import _api

log = logging.getLogger("getapr")

#: ``(address, port)`` or ``(address, port, flowinfo, scope_id)``.
Sockaddr = Union[Tuple[str, int], Tuple[str, int, int, int]]


class Pair(NamedTuple):
    """One connection to try: bind ``source`` (unless None: the kernel then
    chooses, as without getapr), connect to ``destination``."""

    family: int
    source: Optional[Sockaddr]
    destination: Sockaddr


def daemon_pairs(host: str, port: int) -> Optional[List[Pair]]:
    """The daemon's pairs for ``host`` and ``port``, best first.

    None when the system resolver is to be asked instead: the daemon cannot
    help (the one warning is logged), or declines the question (400, or
    404: the DNS does not know the name, which ``/etc/hosts`` or a search
    domain may; logged at debug level), or ``host`` is not something to ask
    it about (loopback); ``[]`` when it knows no pair that works.
    """
    asked = _question(host)
    if asked is None:
        return None
    try:
        wire = _api.fetch_pairs(asked, port)
    except _api.Unavailable as e:
        _api.fall_back(e)
        return None
    except _api.Declined as e:
        log.debug("getapr: %s; asking the system resolver", e)
        return None
    return [_pair(p) for p in wire]


def system_pairs(host: Optional[str], port: Union[int, str, None]) -> List[Pair]:
    """The system resolver's destinations (``getaddrinfo``, in its order) for
    a TCP connection, without a source. Raises what ``getaddrinfo`` raises."""
    out: List[Pair] = []
    for family, _, _, _, sockaddr in socket.getaddrinfo(
        host, port, 0, socket.SOCK_STREAM, socket.IPPROTO_TCP
    ):
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        pair = Pair(family, None, tuple(sockaddr))  # type: ignore[arg-type]
        if pair not in out:
            out.append(pair)
    return out


def connect_pairs(host: Optional[str], port: Union[int, str, None]) -> List[Pair]:
    """What every function uses: the daemon's pairs when it answers with a
    non-empty list; else the system resolver's destinations, without a
    source. An empty list is logged at info level, not as a warning: the
    daemon may just not know (its probe targets may be unreachable from a
    network where the destination is not)."""
    number = port_number(port)
    if isinstance(host, str) and number is not None:
        pairs = daemon_pairs(host, number)
        if pairs:
            return pairs
        if pairs is not None:
            log.info(
                "getapr: the daemon knows no working pair for %s port %d; "
                "trying the system resolver's addresses",
                host,
                number,
            )
    return system_pairs(host, port)


def port_number(port: Union[int, str, bytes, None]) -> Optional[int]:
    """``port`` as a number from 1 to 65535, service names looked up as
    ``getaddrinfo`` does; None when there is no such number (the system
    resolver then says what is wrong with it)."""
    if isinstance(port, bytes):
        port = port.decode("ascii", "replace")
    if isinstance(port, str):
        if port.isdigit():
            port = int(port)
        else:
            try:
                port = socket.getservbyname(port, "tcp")
            except OSError:
                return None
    if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536:
        return port
    return None


def unspecified(family: int) -> Sockaddr:
    """The source sockaddr that binds nothing in particular: binding it lets
    the kernel choose the source, as an unbound socket does."""
    if family == socket.AF_INET6:
        return ("::", 0, 0, 0)
    return ("0.0.0.0", 0)


def _question(host: str) -> Optional[str]:
    """The host as the daemon takes it, or None when the daemon is not to be
    asked.

    Loopback is not asked about: its source is the loopback itself (RFC 6724
    §5 rule 2, appropriate scope), the one source the daemon does not list,
    and a server on 127.0.0.1 may trust only connections from there. That
    covers ``localhost`` names (RFC 6761 §6.3: resolution APIs answer them
    themselves; an upstream resolver may not know them) and loopback
    literals. A name that is not ASCII is sent as its A-label, as
    ``getaddrinfo`` does with Python's ``idna`` codec.
    """
    name = host.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost") or _is_loopback(host):
        return None
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return None


def _is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _pair(wire: _api.WirePair) -> Pair:
    if wire.family == socket.AF_INET:
        return Pair(socket.AF_INET, (wire.source, 0), (wire.destination, wire.port))
    return Pair(
        socket.AF_INET6,
        (wire.source, 0, 0, _scope(wire.source, wire.scope_id)),
        (wire.destination, wire.port, 0, _scope(wire.destination, wire.scope_id)),
    )


def _scope(address: str, scope_id: int) -> int:
    return scope_id if ipaddress.IPv6Address(address).is_link_local else 0
