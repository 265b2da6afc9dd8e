"""The getapr daemon's HTTP sidecar: where it is, and its /pairs and /status answers.

Every way the daemon can fail to help is one exception, :class:`Unavailable`,
so that callers fall back to the standard library (with the one warning) in
one place; a question the daemon declines to answer (400, 404) is
:class:`Declined`, which sends callers to the standard library silently.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import os
import socket
import threading
import urllib.parse
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

#: Where the sidecar listens when ``GETAPR_API`` is not set: the first
#: ``http.listen`` address of the daemon's default config.
DEFAULT_API = "http://127.0.0.1:80"

#: The environment variable that moves the API; read at every call, so a
#: program (or a test) may change it while it runs.
API_VARIABLE = "GETAPR_API"

#: The sidecar listens on this host: a connection that takes longer than
#: this is not going to succeed.
CONNECT_TIMEOUT = 1.0

#: ``/pairs`` may resolve the name before it answers, so the answer may take
#: as long as a DNS lookup with its retries.
ANSWER_TIMEOUT = 5.0

#: No sidecar answer comes near this; a longer one is not the sidecar.
MAX_ANSWER_BYTES = 1 << 20

log = logging.getLogger("getapr")


class Unavailable(Exception):
    """The daemon cannot help: unreachable, silent, at its limits, or not
    answering as getapr's sidecar does. The message says which."""


class Declined(Exception):
    """The daemon answered, with its JSON error, that it has no pairs for
    this question: 400, the host is malformed by its rules, or 404, the DNS
    does not know the name. The standard library is asked instead, without
    a warning: the daemon resolves through the DNS only, so a name that only
    ``/etc/hosts`` or a search domain of ``resolv.conf`` knows (``printer``)
    is a 404 to it and an address to ``getaddrinfo``; and when
    ``getaddrinfo`` fails too, it raises the error a program would have seen
    without getapr. :attr:`status` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ApiAddress(NamedTuple):
    """The sidecar's host (a name or an IP literal without brackets) and port."""

    host: str
    port: int

    def __str__(self) -> str:
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "http://%s:%d" % (host, self.port)


class WirePair(NamedTuple):
    """One element of ``/pairs``' ``pairs`` list, checked."""

    family: int
    source: str
    destination: str
    port: int
    scope_id: int
    interface: str
    rtt_ms: Optional[float]


def api_address() -> ApiAddress:
    """The sidecar's address from ``GETAPR_API``, else :data:`DEFAULT_API`.

    Takes what ``getapr --api`` takes: ``http://HOST[:PORT][/]`` (port 80 by
    default) or ``HOST:PORT``, an IPv6 host in brackets.

    Raises :class:`Unavailable` for any other value: a program must not
    break because its environment names the API badly.
    """
    value = os.environ.get(API_VARIABLE, "").strip() or DEFAULT_API
    try:
        return parse_api(value)
    except ValueError as e:
        raise Unavailable("%s=%r: %s" % (API_VARIABLE, value, e)) from None


def parse_api(value: str) -> ApiAddress:
    """Parses an API address as :func:`api_address` describes; ValueError if bad."""
    scheme, sep, rest = value.partition("://")
    if sep:
        if scheme.lower() != "http":
            raise ValueError("the scheme %r is not supported, only http" % scheme)
        authority = rest[:-1] if rest.endswith("/") else rest
        default_port: Optional[int] = 80
    else:
        authority, default_port = value, None
    if any(c in authority for c in "/?#@"):
        raise ValueError("a path, query or user name is not supported")
    port_text: Optional[str]
    if authority.startswith("["):
        host, bracket, after = authority[1:].partition("]")
        if not bracket:
            raise ValueError("a '[' without its ']'")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError("%r is not an IPv6 address" % host) from None
        if after and not after.startswith(":"):
            raise ValueError("expected ':PORT' after ']'")
        port_text = after[1:] if after else None
    else:
        if authority.count(":") > 1:
            raise ValueError("an IPv6 address needs brackets, as in [::1]:PORT")
        host, colon, port_text_ = authority.partition(":")
        port_text = port_text_ if colon else None
        if not host:
            raise ValueError("the host is missing")
    if port_text is None:
        if default_port is None:
            raise ValueError("HOST:PORT needs the port")
        port = default_port
    else:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError("the port is not a number from 1 to 65535")
        port = int(port_text)
    return ApiAddress(host, port)


def fetch_pairs(host: str, port: int) -> List[WirePair]:
    """``GET /pairs?host=HOST&port=PORT``: the pairs, best first, as the daemon
    ordered them (possibly empty: the daemon knows no pair that works).

    Raises :class:`Declined` for a 400 or a 404 with the sidecar's JSON
    error (``{"error": "..."}``), and :class:`Unavailable` for everything
    else that is not a good answer (including a 400 or 404 without that
    JSON: some other web server answered).
    """
    path = "/pairs?host=%s&port=%d" % (urllib.parse.quote(host, safe=""), port)
    api, status, body = _get(path)
    if status in (400, 404):
        error = _json_error(body)
        if error is not None:
            raise Declined(status, "%s answered %d for %s (%s)" % (api, status, host, error))
        raise Unavailable("%s answered /pairs with %d and not the sidecar's JSON" % (api, status))
    answer = _json_answer(api, path, status, body)
    try:
        return _check_pairs(answer)
    except (KeyError, TypeError, ValueError) as e:
        raise Unavailable(
            "%s answered /pairs with JSON that is not getapr's: %s" % (api, e)
        ) from None


#: The prototype's flags and their types in ``/status``; the answer must
#: have them to count as the sidecar's.
BOOLEAN_FLAGS = (
    "GUA_ok",
    "IPv4_ok",
    "LLA_ok",
    "NAT44",
    "NAT44_tried",
    "NPTv6",
    "NPTv6_tried",
    "RFC1918",
    "ULA_ok",
    "ULA_present",
)


def fetch_status() -> Dict[str, Any]:
    """``GET /status``: the daemon's JSON object, checked to carry the
    prototype's boolean flags. Raises :class:`Unavailable` otherwise."""
    api, status, body = _get("/status")
    answer = _json_answer(api, "/status", status, body)
    if not isinstance(answer, dict) or not all(
        isinstance(answer.get(flag), bool) for flag in BOOLEAN_FLAGS
    ):
        raise Unavailable("%s answered /status with JSON that is not getapr's" % (api,))
    return answer


# --- the one warning -------------------------------------------------------

_warned = False
_warned_lock = threading.Lock()


def fall_back(why: Unavailable) -> None:
    """Says, once per process, that the daemon did not help and the standard
    library is used instead; later occasions are logged at debug level, so
    that a program that runs without the daemon is not flooded."""
    global _warned
    with _warned_lock:
        first, _warned = not _warned, True
    if first:
        log.warning(
            "getapr: %s; using the system resolver and letting the kernel choose "
            "source addresses (said once)",
            why,
        )
    else:
        log.debug("getapr: %s; using the system resolver", why)


# --- HTTP ------------------------------------------------------------------


def _get(path: str) -> Tuple[ApiAddress, int, bytes]:
    """One GET to the sidecar: the address asked, the status and the body."""
    api = api_address()
    conn = http.client.HTTPConnection(api.host, api.port, timeout=CONNECT_TIMEOUT)
    try:
        try:
            conn.connect()
        except socket.timeout:
            raise Unavailable(
                "the daemon at %s does not answer (no connection within %g s)"
                % (api, CONNECT_TIMEOUT)
            ) from None
        except OSError as e:
            raise Unavailable("the daemon at %s does not answer (%s)" % (api, _reason(e))) from None
        assert conn.sock is not None  # connect() either set it or raised
        conn.sock.settimeout(ANSWER_TIMEOUT)
        try:
            # http.client sends Host: HOST[:PORT] from the API address, as the
            # sidecar's DNS-rebinding guard wants (localhost or a loopback
            # or listen address).
            conn.request(
                "GET", path, headers={"Accept": "application/json", "User-Agent": "getapr-python"}
            )
            response = conn.getresponse()
            body = response.read(MAX_ANSWER_BYTES + 1)
        except socket.timeout:
            raise Unavailable(
                "the daemon at %s accepted the connection but did not answer within %g s"
                % (api, ANSWER_TIMEOUT)
            ) from None
        except (OSError, http.client.HTTPException) as e:
            raise Unavailable(
                "%s did not answer as getapr's sidecar does (%s)" % (api, _reason(e))
            ) from None
        if len(body) > MAX_ANSWER_BYTES:
            raise Unavailable(
                "%s sent an answer over %d bytes: not getapr's" % (api, MAX_ANSWER_BYTES)
            )
        return api, response.status, body
    finally:
        conn.close()


def _json_answer(api: ApiAddress, path: str, status: int, body: bytes) -> Any:
    """The JSON of a 200 answer; :class:`Unavailable` for any other status
    (403: this client is outside ``http.allow``; 5xx: the daemon or its
    upstreams failed, or it is at its limits) and for a body that is not JSON."""
    where = path.split("?", 1)[0]
    if status != 200:
        raise Unavailable("%s answered %s with %d (%s)" % (api, where, status, _error_text(body)))
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise Unavailable("%s answered %s with something that is not JSON" % (api, where)) from None


def _check_pairs(answer: Any) -> List[WirePair]:
    """The ``pairs`` of a ``/pairs`` answer; KeyError, TypeError or
    ValueError if any part is not what the contract says."""
    if not isinstance(answer, dict) or not isinstance(answer["pairs"], list):
        raise TypeError("no pairs list")
    out = []
    for item in answer["pairs"]:
        family = {"ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}[item["family"]]
        version = 4 if family == socket.AF_INET else 6
        source = ipaddress.ip_address(item["source"])
        destination = ipaddress.ip_address(item["destination"])
        if source.version != version or destination.version != version:
            raise ValueError("%s pair with %s -> %s" % (item["family"], source, destination))
        port, scope_id, rtt = item["port"], item["scope_id"], item.get("rtt_ms")
        if not (_is_int(port) and 0 < port < 65536 and _is_int(scope_id) and scope_id >= 0):
            raise ValueError("bad port or scope_id in %r" % (item,))
        if rtt is not None and not isinstance(rtt, (int, float)):
            raise TypeError("rtt_ms %r" % (rtt,))
        out.append(
            WirePair(
                family,
                str(source),
                str(destination),
                port,
                scope_id,
                str(item.get("interface", "")),
                None if rtt is None else float(rtt),
            )
        )
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_error(body: bytes) -> Optional[str]:
    """The ``error`` of the sidecar's JSON error body, or None when the body
    is not one."""
    try:
        error = json.loads(body.decode("utf-8")).get("error")
    except (UnicodeDecodeError, ValueError, AttributeError):
        return None
    return error if isinstance(error, str) else None


def _error_text(body: bytes) -> str:
    """The ``error`` of a JSON error body, else the body cut short."""
    text = body.decode("utf-8", "replace").strip()
    try:
        error = json.loads(text).get("error")
        if isinstance(error, str):
            return error
    except (ValueError, AttributeError):
        pass
    if not text:
        return "no reason given"
    return text if len(text) <= 200 else text[:200] + "..."


def _reason(e: BaseException) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__
