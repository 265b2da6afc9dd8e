"""Loopback-only fixtures: a fake getapr sidecar and TCP destinations that
accept, refuse, or never answer.

On Linux every address of 127.0.0.0/8 is local, so 127.0.0.2 and 127.0.0.3
serve as two distinct sources; a listener's accept() shows which one a
connection was bound to.
"""

from __future__ import annotations

import gc
import ipaddress
import json
import os
import socket
import threading
import time
import unittest
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple
from unittest import mock
from urllib.parse import parse_qs, urlsplit

from getapr import _api

Answer = Tuple[int, Any]  # (status, JSON-able body or raw bytes)


class FakeSidecar:
    """``/pairs`` and ``/status`` on 127.0.0.1:0, answering what the test
    puts in :attr:`pairs` (host -> answer, or a callable of the query) and
    :attr:`status`; :attr:`requests` records (path, query, Host header)."""

    def __init__(self) -> None:
        self.pairs: Dict[str, Answer] = {}
        self.status: Answer = (404, {"error": "no status set"})
        self.requests: List[Tuple[str, Dict[str, str], Optional[str]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                fake.requests.append((url.path, query, self.headers.get("Host")))
                if url.path == "/pairs":
                    code, body = fake.pairs.get(query.get("host", ""), (404, {"error": "NXDOMAIN"}))
                elif url.path == "/status":
                    code, body = fake.status
                else:
                    code, body = 404, {"error": "no such path"}
                raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def pair(
    source: str, destination: str, port: int, scope_id: int = 0, rtt: Optional[float] = None
) -> dict:
    """One element of a ``/pairs`` answer, as the daemon writes it."""
    family = "ipv6" if ":" in destination else "ipv4"
    return {
        "family": family,
        "source": source,
        "destination": destination,
        "port": port,
        "interface": "lo",
        "scope_id": scope_id,
        "rtt_ms": rtt,
    }


def pairs_answer(host: str, port: int, pairs: List[dict]) -> Answer:
    return 200, {"host": host, "port": port, "pairs": pairs}


def closed_port(family: int = socket.AF_INET, host: str = "127.0.0.1") -> int:
    """A port nothing listens on: connecting to it is refused at once."""
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Listener:
    """A TCP listener on ``host``; :meth:`peer` accepts one connection and
    gives the address the connection came from."""

    def __init__(self, host: str = "127.0.0.1", family: int = socket.AF_INET) -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]

    def peer(self, timeout: float = 2.0) -> str:
        self.sock.settimeout(timeout)
        conn, addr = self.sock.accept()
        conn.close()
        return addr[0]

    def close(self) -> None:
        self.sock.close()


_silence_checked = False


class Silent:
    """A destination that never answers: a listener with backlog 0 whose
    accept queue two connections, never accepted, have filled. Linux then
    drops further SYNs, so a connect hangs, as to a dead path."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        for _ in range(2):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex((host, self.port))
            self.fillers.append(s)
        global _silence_checked
        if not _silence_checked:
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probe.settimeout(0.3)
            try:
                probe.connect((host, self.port))
            except socket.timeout:
                _silence_checked = True
            else:
                raise AssertionError("this kernel answers SYNs to a full accept queue")
            finally:
                probe.close()

    def close(self) -> None:
        for s in self.fillers:
            s.close()
        self.sock.close()


def check_silence() -> None:
    """Runs :class:`Silent`'s one-time check (a blocking 0.3 s wait) now,
    outside any event loop."""
    Silent().close()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class LeakCheck:
    """Fails the test if it leaves more descriptors open than it found, or
    if a socket was left for the garbage collector (ResourceWarning)."""

    def __init__(self, test: unittest.TestCase) -> None:
        self.test = test

    def __enter__(self) -> "LeakCheck":
        gc.collect()
        self.before = open_fds()
        self.catcher = warnings.catch_warnings(record=True)
        self.caught = self.catcher.__enter__()
        warnings.simplefilter("always", ResourceWarning)
        return self

    def __exit__(self, *exc: Any) -> None:
        gc.collect()
        self.catcher.__exit__(*exc)
        if exc[0] is not None:
            return
        leaked = [w for w in self.caught if issubclass(w.category, ResourceWarning)]
        self.test.assertEqual(leaked, [], "sockets left to the garbage collector")
        # The fake sidecar's thread may close its end of a request's
        # connection just after the client has read the answer.
        deadline = time.monotonic() + 1.0
        while open_fds() > self.before and time.monotonic() < deadline:
            time.sleep(0.01)
        self.test.assertEqual(open_fds(), self.before, "descriptors leaked")


class SidecarTest(unittest.TestCase):
    """A fake sidecar named by GETAPR_API, and the once-per-process warning
    re-armed, for each test."""

    def setUp(self) -> None:
        self.sidecar = FakeSidecar()
        self.addCleanup(self.sidecar.close)
        env = mock.patch.dict(os.environ, {"GETAPR_API": self.sidecar.url})
        env.start()
        self.addCleanup(env.stop)
        for patch in (mock.patch.object(_api, "_warned", False), no_dns()):
            patch.start()
            self.addCleanup(patch.stop)

    def use_dead_daemon(self) -> None:
        """GETAPR_API names a port where nothing listens."""
        os.environ["GETAPR_API"] = "http://127.0.0.1:%d" % closed_port()

    def closing(self, thing: Any) -> Any:
        self.addCleanup(thing.close)
        return thing


def resolving(name: str, *ports: int) -> Any:
    """A patch of socket.getaddrinfo that answers ``name`` with 127.0.0.1 at
    these ports (as ``/etc/hosts`` would), or without ports raises
    ``gaierror(EAI_NONAME)`` for it (as for a name nobody knows), and leaves
    every other host (the fake sidecar's) alone."""
    real = socket.getaddrinfo
    infos = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", p)) for p in ports]

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host != name:
            return real(host, *args, **kwargs)
        if not infos:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(infos)

    return mock.patch("socket.getaddrinfo", getaddrinfo)


def hosts_file_names() -> Dict[str, str]:
    """The names ``/etc/hosts`` maps to 127.0.0.1, other than localhost
    names (which getapr does not ask the daemon about): name -> address."""
    names: Dict[str, str] = {}
    try:
        with open("/etc/hosts") as f:
            lines = f.read().splitlines()
    except OSError:
        return names
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2 or fields[0] != "127.0.0.1":
            continue
        for name in fields[1:]:
            low = name.lower().rstrip(".")
            if low != "localhost" and not low.endswith(".localhost"):
                names.setdefault(name, fields[0])
    return names


def no_dns() -> Any:
    """A patch of socket.getaddrinfo that fails the test (AssertionError)
    when a name would be looked up in the DNS: tests keep to loopback.
    IP literals, localhost names and the names of ``/etc/hosts`` pass to
    the real getaddrinfo; a test answers others with :func:`resolving`."""
    real = socket.getaddrinfo
    local = {name.lower() for name in hosts_file_names()}

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if isinstance(name, str):
            low = name.lower().rstrip(".")
            try:
                ipaddress.ip_address(name.split("%", 1)[0])
            except ValueError:
                if not (low == "localhost" or low.endswith(".localhost") or low in local):
                    raise AssertionError("the test would look %r up in the DNS" % name)
        return real(host, *args, **kwargs)

    return mock.patch("socket.getaddrinfo", getaddrinfo)


class Attempts:
    """Watches the race's attempts where ``module`` (``getapr._race`` or
    ``getapr._aio``) opens their sockets: :attr:`starts` records when each
    attempt started (``time.monotonic()``) and to which port, and the
    attempt to each port of ``fail_after`` is made to fail that many seconds
    after it started.

    Loopback refuses at once or not at all, so a late failure is made by
    shutting the connecting socket down (to a :class:`Silent` destination,
    whose SYNs are dropped): Linux then ends the connect with ECONNRESET, as
    it would with a late refusal from the path. Use as a context manager."""

    def __init__(self, module: Any, fail_after: Optional[Dict[int, float]] = None) -> None:
        self.module = module
        self.fail_after = dict(fail_after or {})
        self.starts: List[Tuple[float, int]] = []
        self.timers: List[threading.Timer] = []

    def __enter__(self) -> "Attempts":
        real = self.module.open_socket

        def open_socket(pair: Any) -> socket.socket:
            port = pair.destination[1]
            self.starts.append((time.monotonic(), port))
            sock = real(pair)
            if port in self.fail_after:
                timer = threading.Timer(self.fail_after[port], _shut_down, (sock,))
                timer.daemon = True
                timer.start()
                self.timers.append(timer)
            return sock

        self.patch = mock.patch.object(self.module, "open_socket", open_socket)
        self.patch.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.patch.stop()
        for timer in self.timers:
            timer.cancel()
            timer.join()

    def offsets(self) -> List[float]:
        """When each attempt started, in seconds after the first."""
        return [t - self.starts[0][0] for t, _ in self.starts]


def _shut_down(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # the race is over and closed it


def timed(fn: Callable[[], Any]) -> Tuple[Any, float]:
    start = time.monotonic()
    result = fn()
    return result, time.monotonic() - start
