"""Happy Eyeballs (RFC 8305 §5) over a list of pairs, with blocking calls
replaced by non-blocking sockets and a selector.

The pairs are tried in the order given (the daemon already interleaved the
families, RFC 8305 §4). The next attempt starts a Connection Attempt Delay
after the last one started, or at once when an attempt fails, even while
earlier ones still wait (as asyncio's staggered race kicks off the next
coroutine when one fails): a failure frees its place in the race. The first
socket to connect wins and every other is closed at once. Each socket is bound to its pair's
source before it connects, so the kernel cannot pick a source that does not
work.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

from ._pairs import Pair, Sockaddr

#: RFC 8305 §5: "A simple implementation can have a fixed delay for how long
#: to wait before starting the next connection attempt. [...] the
#: recommended value for a default delay is 250 milliseconds."
CONNECTION_ATTEMPT_DELAY = 0.25

# Linux: with a source address bound, let connect() pick the port, so the
# port need only be unique per destination; bind() alone would take one of
# the ephemeral ports for every destination at once. Not in the socket
# module before Python 3.12.
_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

Failure = Tuple[Pair, OSError]


def wait_or_lose(
    now: float,
    deadline: Optional[float],
    running: List[Pair],
    more: bool,
    next_start: float,
    failures: List[Failure],
) -> Optional[float]:
    """How long a race may wait for its `running` attempts at `now`: until
    the next attempt is due (when there are `more`) or the deadline, `None`
    for as long as it takes. Raises :class:`RaceLost` when nothing runs, or
    when the deadline has passed (the running attempts then count as timed
    out). The one rule of :func:`race` and :func:`getapr._aio.race`."""
    if not running:
        raise RaceLost(failures, timed_out=False)
    if deadline is not None and now >= deadline:
        failures.extend((p, socket.timeout(errno.ETIMEDOUT, "timed out")) for p in running)
        raise RaceLost(failures, timed_out=True)
    waits = []
    if more:
        waits.append(next_start - now)
    if deadline is not None:
        waits.append(deadline - now)
    return max(0.0, min(waits)) if waits else None


def race(
    pairs: Sequence[Pair], timeout: Optional[float], delay: float = CONNECTION_ATTEMPT_DELAY
) -> socket.socket:
    """The first socket of ``pairs`` to connect, non-blocking.

    ``timeout`` bounds the whole race (None: no bound). When every attempt
    failed, raises :class:`RaceLost` (an OSError) naming each pair tried and
    why; when the time is up first, its :attr:`RaceLost.timed_out` is set.
    Every other socket is closed on every path.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    order = {id(p): i for i, p in enumerate(pairs)}
    running: Dict[socket.socket, Pair] = {}
    failures: List[Failure] = []
    winner: Optional[socket.socket] = None
    started = 0
    next_start = time.monotonic()
    # Failures not yet answered by a start: each lets the next attempt
    # start at once.
    owed = 0
    with selectors.DefaultSelector() as selector:
        try:
            while True:
                now = time.monotonic()
                while started < len(pairs) and (not running or owed or now >= next_start):
                    owed = max(0, owed - 1)
                    pair = pairs[started]
                    started += 1
                    try:
                        sock, done = _start(pair)
                    except OSError as e:
                        failures.append((pair, e))
                        owed += 1
                        continue
                    if done:
                        winner = sock
                        return sock
                    running[sock] = pair
                    selector.register(sock, selectors.EVENT_WRITE)
                    next_start = now + delay
                wait = wait_or_lose(
                    now, deadline, list(running.values()), started < len(pairs), next_start, failures
                )
                ready = selector.select(wait)
                connected = []
                for key, _ in ready:
                    sock = key.fileobj  # type: ignore[assignment]
                    assert isinstance(sock, socket.socket)
                    error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if error == 0:
                        connected.append(sock)
                        continue
                    selector.unregister(sock)
                    pair = running.pop(sock)
                    sock.close()
                    failures.append((pair, OSError(error, os.strerror(error))))
                    owed += 1
                if connected:
                    # Several at once: the better pair wins.
                    winner = min(connected, key=lambda s: order[id(running[s])])
                    selector.unregister(winner)
                    return winner
        finally:
            for sock in running:
                if sock is not winner:
                    sock.close()


class RaceLost(OSError):
    """No pair connected. ``failures`` lists each pair tried with its error,
    ``timed_out`` says whether the deadline ended the race."""

    def __init__(self, failures: List[Failure], timed_out: bool) -> None:
        first = failures[0][1] if failures else None
        code = errno.ETIMEDOUT if timed_out else (first.errno if first else None)
        super().__init__(code, "; ".join(describe(p, e) for p, e in failures) or "no address")
        self.failures = failures
        self.timed_out = timed_out

    def to_raise(self, what: str, all_errors: bool) -> BaseException:
        """What a connect function raises, as its standard-library model
        would: ``socket.timeout`` when the time was up, else an OSError of the
        first (the best) pair's kind; ``all_errors`` on Python 3.11+: an
        ExceptionGroup of every attempt's error. Each message names the pairs
        tried and why they failed."""
        if all_errors and sys.version_info >= (3, 11) and self.failures:
            errors = [_named(p, e) for p, e in self.failures]
            return ExceptionGroup("create_connection failed", errors)  # noqa: F821 (3.11+)
        text = "%s: %s" % (what, self.strerror)
        if self.timed_out:
            error: OSError = socket.timeout(text)
        elif self.failures and self.failures[0][1].errno is not None:
            # OSError(errno, text) is the errno's subclass, e.g.
            # ConnectionRefusedError, as from socket.connect.
            error = OSError(self.failures[0][1].errno, text)
        else:
            error = OSError(text)
        return error


def describe(pair: Pair, error: BaseException) -> str:
    """``DEST from SOURCE: reason``, e.g. ``[2001:db8::1]:443 from
    2001:db8:1::2: unreachable``."""
    where = _endpoint(pair.destination, with_port=True)
    if pair.source is not None:
        where += " from " + _endpoint(pair.source, with_port=False)
    return "%s: %s" % (where, reason(error))


def reason(error: BaseException) -> str:
    """A short reason: refused, timed out, unreachable, or the system's words."""
    code = getattr(error, "errno", None)
    if isinstance(error, socket.timeout) or code == errno.ETIMEDOUT:
        return "timed out"
    short = {
        errno.ECONNREFUSED: "refused",
        errno.ENETUNREACH: "unreachable",
        errno.EHOSTUNREACH: "unreachable",
        errno.EADDRNOTAVAIL: "source address not on this host",
        errno.ECONNRESET: "reset",
    }
    if code in short:
        return short[code]
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return text[:1].lower() + text[1:]


def _named(pair: Pair, error: OSError) -> OSError:
    text = describe(pair, error)
    if isinstance(error, socket.timeout):
        return socket.timeout(text)
    return OSError(error.errno, text) if error.errno is not None else OSError(text)


def _endpoint(sockaddr: Sockaddr, with_port: bool) -> str:
    address = str(sockaddr[0])
    if len(sockaddr) >= 4 and sockaddr[3]:
        address = "%s%%%d" % (address, sockaddr[3])
    if not with_port:
        return address
    if ":" in address:
        return "[%s]:%d" % (address, sockaddr[1])
    return "%s:%d" % (address, sockaddr[1])


def open_socket(pair: Pair) -> socket.socket:
    """A non-blocking TCP socket of the pair's family, bound to its source
    (if it has one); closed again if binding fails."""
    sock = socket.socket(pair.family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setblocking(False)
        if pair.source is not None:
            if sys.platform.startswith("linux"):
                try:
                    sock.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
                except OSError:
                    pass  # an old kernel: bind() takes the port, which also works
            sock.bind(pair.source)
    except BaseException:
        sock.close()
        raise
    return sock


def _start(pair: Pair) -> Tuple[socket.socket, bool]:
    """A socket for ``pair`` with its connect started, and whether it has
    already connected. Raises the OSError of a connect that failed at once
    (e.g. unreachable, or a source no longer on this host)."""
    sock = open_socket(pair)
    try:
        code = sock.connect_ex(pair.destination)
    except BaseException:
        sock.close()
        raise
    if code in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EINTR):
        return sock, False
    if code == 0:
        return sock, True
    sock.close()
    raise OSError(code, os.strerror(code))
