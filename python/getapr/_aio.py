"""The race of :mod:`getapr._race` in asyncio: one task per attempt, each
connecting a non-blocking socket bound to its pair's source with
``loop.sock_connect``; the losers are cancelled and their sockets closed."""

from __future__ import annotations

import asyncio
import socket
from typing import Dict, List, Optional, Sequence

from ._pairs import Pair
from ._race import CONNECTION_ATTEMPT_DELAY, Failure, RaceLost, open_socket, wait_or_lose


async def race(
    pairs: Sequence[Pair], timeout: Optional[float], delay: float = CONNECTION_ATTEMPT_DELAY
) -> socket.socket:
    """The first socket of ``pairs`` to connect, non-blocking; as
    :func:`getapr._race.race`, raising :class:`RaceLost` when none does.
    Cancelling the caller cancels every attempt and closes its socket."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    order = {id(p): i for i, p in enumerate(pairs)}
    running: Dict["asyncio.Task[socket.socket]", Pair] = {}
    failures: List[Failure] = []
    winner: Optional[socket.socket] = None
    started = 0
    next_start = loop.time()
    # Failures not yet answered by a start, as in _race.race: each lets the
    # next attempt start at once.
    owed = 0
    try:
        while True:
            now = loop.time()
            while started < len(pairs) and (not running or owed or now >= next_start):
                owed = max(0, owed - 1)
                pair = pairs[started]
                started += 1
                running[loop.create_task(_attempt(loop, pair))] = pair
                next_start = now + delay
            wait = wait_or_lose(
                now, deadline, list(running.values()), started < len(pairs), next_start, failures
            )
            done, _ = await asyncio.wait(
                set(running),
                timeout=wait,
                return_when=asyncio.FIRST_COMPLETED,
            )
            # Several at once: the better pair wins, the others are closed.
            for task in sorted(done, key=lambda t: order[id(running[t])]):
                pair = running.pop(task)
                error = task.exception()
                if error is None:
                    if winner is None:
                        winner = task.result()
                    else:
                        task.result().close()
                elif isinstance(error, OSError):
                    failures.append((pair, error))
                    owed += 1
                else:
                    # uvloop may raise RuntimeError for a failed connect.
                    failures.append((pair, OSError(str(error))))
                    owed += 1
            if winner is not None:
                return winner
    finally:
        await _stop(running)


async def _attempt(loop: asyncio.AbstractEventLoop, pair: Pair) -> socket.socket:
    """One attempt: its socket connected, or closed before the error (or
    the cancellation) goes on."""
    sock = open_socket(pair)
    try:
        await loop.sock_connect(sock, pair.destination)
    except BaseException:
        _forget(loop, sock)
        sock.close()
        raise
    return sock


def _forget(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    """Takes the socket out of the loop's selector before it is closed, so
    that its descriptor number, reused by the next socket, is not watched on
    its behalf; ``sock_connect`` removes it only in a callback that may not
    have run yet."""
    try:
        loop.remove_writer(sock.fileno())
    except (NotImplementedError, ValueError, RuntimeError, OSError):
        pass  # a loop without add_writer (Windows' proactor) never watched it


async def _stop(running: Dict["asyncio.Task[socket.socket]", Pair]) -> None:
    """Cancels the attempts still running and waits until each closed its
    socket; one that connected in the meantime is closed here."""
    if not running:
        return
    tasks = list(running)
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, socket.socket):
            result.close()
