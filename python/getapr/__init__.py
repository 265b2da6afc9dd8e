"""getapr - Get Address Pairs, from the getapr daemon.

The getapr daemon probes which of this host's source addresses reach the
Internet and which destinations answer, and ranks (source, destination)
pairs by RFC 6724 with what it found. This module asks it, over its HTTP
sidecar (``GETAPR_API``, default ``http://127.0.0.1:80``), and connects the
way RFC 8305 (Happy Eyeballs) describes, binding each socket to its pair's
source so the kernel cannot pick one that does not work:

- :func:`create_connection` and :func:`open_connection` (asyncio): drop-in
  replacements for ``socket.create_connection`` and
  ``asyncio.open_connection``;
- :func:`get_addr_pairs`, :func:`status` and :func:`init_getapr`: the
  original getapr module's API, same names, same shapes;
- :func:`connect_infos`, :func:`addr_infos` and :func:`local_addr_infos`:
  what ``aiohappyeyeballs.start_connection`` takes, for code that uses it.

Every function uses the daemon's pairs when it answers with a non-empty
list; otherwise it does what the standard library does (``getaddrinfo``,
an unbound connect), and ``getaddrinfo``'s :class:`socket.gaierror` is what
a name nobody knows raises. Silently for loopback hosts (not asked about),
a 400 or 404 answer (the daemon resolves through the DNS only: a name of
``/etc/hosts`` or a search domain is a 404 to it) and an empty list (it may
just not know); with one warning per process, of the ``getapr`` logger,
when the daemon cannot be reached, answers 403 or 5xx, or answers with
something that is not its JSON: a program never breaks because the daemon
is down.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from typing import Any, Dict, List, Optional, Tuple, Union

from . import _aio, _api, _race
from ._pairs import (
    Pair,
    Sockaddr,
    connect_pairs,
    unspecified,
)

__version__ = "0.1.0"

__all__ = [
    "get_addr_pairs",
    "status",
    "init_getapr",
    "create_connection",
    "open_connection",
    "connect_infos",
    "addr_infos",
    "local_addr_infos",
    "CONNECTION_ATTEMPT_DELAY",
]

log = logging.getLogger("getapr")

#: RFC 8305 §5's recommended delay between connection attempts, in seconds.
CONNECTION_ATTEMPT_DELAY = _race.CONNECTION_ATTEMPT_DELAY

#: A getaddrinfo-style 5-tuple: ``(family, type, proto, canonname, sockaddr)``.
AddrInfo = Tuple[int, int, int, str, Sockaddr]

# The original module's flags, as data, for programs that read them. They
# hold what the last status() call returned (the original's defaults until
# then); status() itself asks the daemon and is the live view.
GUA_ok: bool = False
IPv4_ok: bool = False
LLA_ok: bool = False
NAT44: bool = False
NAT44_tried: bool = False
NPTv6: bool = False
NPTv6_tried: bool = False
RFC1918: bool = False
ULA_ok: bool = False
ULA_present: bool = False
def_gateway4: Optional[str] = None
def_gateway6: Optional[str] = None

_DEFAULT_STATUS: Dict[str, Any] = {flag: False for flag in _api.BOOLEAN_FLAGS}
_DEFAULT_STATUS.update(def_gateway4=None, def_gateway6=None)


def get_addr_pairs(
    target: str, port: int, printing: bool = False
) -> List[Tuple[int, Sockaddr, Sockaddr]]:
    """Source and destination address pairs for ``target``, best first.

    ``target`` is a domain name or an IPv4 or IPv6 address string (an IP
    literal is not looked up in the DNS). Returns a list of ``(AF, SA, DA)``
    3-tuples: ``AF`` is ``socket.AF_INET`` or ``socket.AF_INET6``; ``SA``
    (port 0) and ``DA`` (``port``) can be passed to ``socket.bind()`` and
    ``socket.connect()``: ``(address, port)`` for IPv4,
    ``(address, port, flowinfo, scope_id)`` for IPv6, the scope id the
    interface index of a link-local address. Try the pairs in order (or
    call :func:`create_connection`, which races them)::

        for AF, SA, DA in get_addr_pairs("www.example.com", 80):
            sock = socket.socket(AF, socket.SOCK_STREAM)
            sock.bind(SA)
            sock.connect(DA)

    The daemon's pairs are given when it answers with a non-empty list.
    Otherwise the system resolver's addresses are returned in its order,
    each with the unspecified source (``0.0.0.0`` or ``::``, port 0):
    binding it lets the kernel choose, as without getapr. Silently for
    loopback (``localhost``, ``127.0.0.0/8``, ``::1``: not asked about, its
    source is the loopback), a 400 or 404 answer (the daemon resolves
    through the DNS only; ``/etc/hosts`` or a search domain may know the
    name) and an empty list (the daemon knows no working pair, but it may
    just not know); with the one warning when the daemon cannot help.
    Empty only when nothing can work, as in the original module: a name
    that neither the daemon nor the system resolver knows gives ``[]``
    (the connect functions raise the resolver's :class:`socket.gaierror`).

    ``printing`` prints the pairs, for debugging.
    """
    try:
        found = connect_pairs(target, port)
    except socket.gaierror as error:
        log.debug("no address for %s: %s", target, error)
        found = []
    pairs = [
        Pair(p.family, unspecified(p.family) if p.source is None else p.source, p.destination)
        for p in found
    ]
    out = [(p.family, p.source, p.destination) for p in pairs]
    if printing:
        print("getapr: %d pair(s) for %s port %s" % (len(out), target, port))
        for family, source, destination in out:
            print("  %s  %s -> %s" % (_family_name(family), source, destination))
    return out  # type: ignore[return-value]


def status() -> Dict[str, Any]:
    """The daemon's connectivity flags, with the original module's names.

    ``GUA_ok``, ``ULA_ok``, ``LLA_ok``, ``IPv4_ok``: a source of that class
    works; ``NAT44``, ``NPTv6`` (with ``*_tried``: the detection ran);
    ``RFC1918``, ``ULA_present``; ``def_gateway4``, ``def_gateway6`` (address
    strings, a link-local one with ``%interface``, or None). The daemon's
    other keys (``sources``, ``nat64_prefixes``, ``path_mtu``, ...) are
    passed through.

    When the daemon cannot be reached, returns the original module's
    defaults (every flag False, both gateways None) and logs the warning.
    Also sets the module's attributes of the same names (``getapr.NPTv6``
    ...) to what it returns.
    """
    result = dict(_DEFAULT_STATUS)
    try:
        result.update(_api.fetch_status())
    except _api.Unavailable as e:
        _api.fall_back(e)
    module = sys.modules[__name__]
    for name in _DEFAULT_STATUS:
        setattr(module, name, result[name])
    return result


def init_getapr(printing: bool = False) -> None:
    """Accepted for the original module's users; the daemon already probes,
    so there is nothing to start. Asks the daemon once (as :func:`status`),
    so that a missing daemon is reported now rather than at the first
    connection; ``printing`` prints the flags."""
    flags = status()
    if printing:
        print("getapr: %s" % ", ".join("%s=%s" % (k, flags[k]) for k in _DEFAULT_STATUS))


def create_connection(
    address: Tuple[Any, Any],
    timeout: Optional[float] = socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore[attr-defined]
    source_address: Optional[Tuple[Any, ...]] = None,
    *,
    all_errors: bool = False,
) -> socket.socket:
    """Connects to ``address`` (``(host, port)``) and returns the socket, as
    ``socket.create_connection`` does, over the pairs the daemon ranks.

    Happy Eyeballs (RFC 8305 §5): the pairs are tried in order, the next
    attempt 250 ms after the last one started or at once when any attempt
    fails (even while earlier ones still wait); each socket is bound to its
    pair's source before it connects; the first to connect wins and the
    others are closed at once.

    ``timeout`` bounds the whole race, and the returned socket gets it with
    ``settimeout`` as the standard library's does (the default: the global
    default timeout; None: no timeout, blocking). When no pair connects,
    raises ``socket.timeout`` if the time was up, else an OSError of the
    first pair's kind (e.g. ConnectionRefusedError), the message naming each
    pair tried and why; with ``all_errors`` on Python 3.11+, an
    ExceptionGroup of every attempt's error.

    With a ``source_address`` the caller has chosen the source:
    ``socket.create_connection`` is called as it is. When the daemon gives
    no pairs, the system resolver's addresses are raced the same way,
    without binding a source: silently for loopback (not asked about), a
    400 or 404 (it resolves through the DNS only, and ``/etc/hosts`` or a
    search domain may know the name) and an empty list; with the one
    warning when the daemon cannot help. A name that neither knows raises
    the system resolver's :class:`socket.gaierror`.
    """
    if source_address is not None:
        extra = {"all_errors": all_errors} if sys.version_info >= (3, 11) else {}
        return socket.create_connection(address, timeout, source_address, **extra)
    host, port = address
    limit = socket.getdefaulttimeout() if timeout is socket._GLOBAL_DEFAULT_TIMEOUT else timeout  # type: ignore[attr-defined]
    pairs = connect_pairs(host, port)
    if not pairs:
        raise OSError("getaddrinfo returns an empty list")
    try:
        sock = _race.race(pairs, limit)
    except _race.RaceLost as lost:
        raise lost.to_raise("connect to %s port %s" % (host, port), all_errors) from None
    sock.settimeout(limit)
    return sock


async def open_connection(
    host: Optional[str] = None,
    port: Union[int, str, None] = None,
    *,
    timeout: Optional[float] = None,
    **kwargs: Any,
) -> Tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``asyncio.open_connection`` over the pairs the daemon ranks: the race
    of :func:`create_connection` in asyncio, then the streams of the winning
    socket.

    ``kwargs`` go to ``asyncio.open_connection`` (``ssl``, ``limit``,
    ``ssl_handshake_timeout`` ...); with ``ssl`` and no ``server_hostname``,
    ``host`` is the name checked, as asyncio does. ``family`` keeps the pairs
    of that family; ``happy_eyeballs_delay`` changes the 250 ms delay;
    ``interleave`` is ignored (the daemon interleaved the families);
    ``all_errors`` is as in :func:`create_connection`. ``timeout`` (seconds)
    bounds the race, as ``asyncio.wait_for`` would, and raises
    ``socket.timeout`` (``TimeoutError``) with the pairs tried.

    With ``sock`` or ``local_addr``, or without a host, the caller has
    chosen: ``asyncio.open_connection`` is called as it is. When the daemon
    gives no pairs (as in :func:`create_connection`: loopback, 400, 404, an
    empty list silently, the rest with the one warning), the system
    resolver's addresses are raced without binding a source; a name that
    neither knows raises the system resolver's :class:`socket.gaierror`.
    """
    if host is None or kwargs.get("sock") is not None or kwargs.get("local_addr") is not None:
        return await asyncio.open_connection(host, port, **kwargs)
    family = kwargs.pop("family", 0)
    kwargs.pop("proto", None)
    kwargs.pop("flags", None)
    kwargs.pop("interleave", None)
    delay = kwargs.pop("happy_eyeballs_delay", None)
    all_errors = kwargs.pop("all_errors", False)
    loop = asyncio.get_running_loop()
    # The daemon's answer and getaddrinfo block: in a thread, as asyncio's
    # own getaddrinfo runs.
    pairs = await loop.run_in_executor(None, connect_pairs, host, port)
    if family:
        pairs = [p for p in pairs if p.family == family]
    if not pairs:
        raise OSError("no address of the requested family for %s" % host)
    try:
        sock = await _aio.race(pairs, timeout, CONNECTION_ATTEMPT_DELAY if delay is None else delay)
    except _race.RaceLost as lost:
        raise lost.to_raise("connect to %s port %s" % (host, port), all_errors) from None
    if kwargs.get("ssl") and kwargs.get("server_hostname") is None:
        kwargs["server_hostname"] = host
    try:
        return await asyncio.open_connection(sock=sock, **kwargs)
    except BaseException:
        # asyncio closes the socket with its transport when the transport
        # was made (e.g. a failed TLS handshake), in a callback already
        # scheduled; closing after it also covers a failure before that.
        loop.call_soon(sock.close)
        raise


def connect_infos(
    host: str, port: Union[int, str]
) -> Tuple[List[AddrInfo], Optional[List[AddrInfo]]]:
    """``(addr_infos, local_addr_infos)`` from one answer of the daemon, for
    ``aiohappyeyeballs.start_connection``::

        infos, local = await asyncio.to_thread(getapr.connect_infos, host, port)
        sock = await aiohappyeyeballs.start_connection(
            infos, local_addr_infos=local, happy_eyeballs_delay=0.25, interleave=0)

    ``addr_infos``: getaddrinfo-style 5-tuples
    ``(family, SOCK_STREAM, IPPROTO_TCP, '', sockaddr)`` of the destinations
    in the daemon's order (``interleave=0`` keeps it: the daemon has already
    interleaved the families). ``local_addr_infos``: the sources, each once,
    in the same order; None when the system resolver's destinations are
    given (the daemon gave no pairs: see :func:`get_addr_pairs`), and
    nothing is to be bound. A name neither knows raises
    :class:`socket.gaierror`.

    Limit: aiohappyeyeballs (like asyncio's ``local_addr``) binds every
    socket of a family to the first local address of that family it can
    bind, whatever the destination; a pair's own source is used only when
    the daemon returns one source per family. :func:`open_connection` binds
    each pair's source. Blocking (an HTTP request and maybe a DNS lookup):
    from async code, call it in a thread as above.
    """
    pairs = connect_pairs(host, port)
    infos = [_addr_info(p.family, p.destination) for p in pairs]
    if any(p.source is None for p in pairs):
        return infos, None
    local: List[AddrInfo] = []
    for p in pairs:
        info = _addr_info(p.family, p.source)  # type: ignore[arg-type]
        if info not in local:
            local.append(info)
    return infos, local


def addr_infos(host: str, port: Union[int, str]) -> List[AddrInfo]:
    """The destinations of :func:`connect_infos` alone."""
    return connect_infos(host, port)[0]


def local_addr_infos(host: str, port: Union[int, str]) -> Optional[List[AddrInfo]]:
    """The sources of :func:`connect_infos` alone (a second request to the
    daemon: call :func:`connect_infos` to have both from one answer)."""
    return connect_infos(host, port)[1]


def _addr_info(family: int, sockaddr: Sockaddr) -> AddrInfo:
    return (family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr)


def _family_name(family: int) -> str:
    return "IPv6" if family == socket.AF_INET6 else "IPv4"
