"""get_addr_pairs and the aiohappyeyeballs helpers against a fake sidecar:
the prototype's shapes, the daemon's order, and the fallback."""

from __future__ import annotations

import logging
import os
import socket
import unittest
from unittest import mock

import getapr
from getapr import _api

from .support import SidecarTest, hosts_file_names, pair, pairs_answer, resolving


class Shapes(SidecarTest):
    def test_ipv4_pair_is_addr_port_with_source_port_0(self) -> None:
        self.sidecar.pairs["www.example.com"] = pairs_answer(
            "www.example.com", 443, [pair("192.168.1.2", "203.0.113.10", 443, rtt=12.5)]
        )
        got = getapr.get_addr_pairs("www.example.com", 443)
        self.assertEqual(got, [(socket.AF_INET, ("192.168.1.2", 0), ("203.0.113.10", 443))])

    def test_ipv6_pairs_are_4_tuples_with_scope_only_on_link_local(self) -> None:
        self.sidecar.pairs["h.example"] = pairs_answer(
            "h.example",
            80,
            [
                pair("2001:db8:1::2", "2001:db8:ffff::10", 80),
                pair("fe80::2", "fe80::1", 80, scope_id=3),
            ],
        )
        got = getapr.get_addr_pairs("h.example", 80)
        self.assertEqual(
            got,
            [
                (socket.AF_INET6, ("2001:db8:1::2", 0, 0, 0), ("2001:db8:ffff::10", 80, 0, 0)),
                (socket.AF_INET6, ("fe80::2", 0, 0, 3), ("fe80::1", 80, 0, 3)),
            ],
        )

    def test_the_daemons_order_is_kept(self) -> None:
        # Interleaved by the daemon (RFC 8305 §4) and with an IPv4 pair
        # first: nothing is re-sorted by family.
        wire = [
            pair("192.0.2.2", "198.51.100.1", 443),
            pair("2001:db8:1::2", "2001:db8::1", 443),
            pair("192.0.2.2", "198.51.100.2", 443),
            pair("2001:db8:2::2", "2001:db8::2", 443),
        ]
        self.sidecar.pairs["o.example"] = pairs_answer("o.example", 443, wire)
        got = getapr.get_addr_pairs("o.example", 443)
        self.assertEqual([d[0] for _, _, d in got], [w["destination"] for w in wire])
        self.assertEqual([s[0] for _, s, _ in got], [w["source"] for w in wire])

    def test_ip_literal_is_passed_as_host_with_the_port(self) -> None:
        self.sidecar.pairs["2001:db8::1"] = pairs_answer(
            "2001:db8::1", 8443, [pair("2001:db8:1::2", "2001:db8::1", 8443)]
        )
        got = getapr.get_addr_pairs("2001:db8::1", 8443)
        self.assertEqual(len(got), 1)
        path, query, host_header = self.sidecar.requests[-1]
        self.assertEqual((path, query), ("/pairs", {"host": "2001:db8::1", "port": "8443"}))
        # The sidecar's DNS-rebinding guard accepts a loopback literal.
        self.assertEqual(host_header, "127.0.0.1:%d" % self.sidecar.port)

    def test_a_service_name_port_is_sent_as_its_number(self) -> None:
        self.sidecar.pairs["s.example"] = pairs_answer(
            "s.example", 80, [pair("192.0.2.2", "192.0.2.80", 80)]
        )
        getapr.get_addr_pairs("s.example", "http")  # type: ignore[arg-type]
        self.assertEqual(self.sidecar.requests[-1][1]["port"], "80")

    def test_a_non_ascii_name_is_asked_as_its_a_label(self) -> None:
        self.sidecar.pairs["xn--bcher-kva.example"] = pairs_answer(
            "xn--bcher-kva.example", 443, [pair("192.0.2.2", "192.0.2.9", 443)]
        )
        self.assertEqual(len(getapr.get_addr_pairs("bücher.example", 443)), 1)

    def test_an_empty_list_gives_the_system_resolvers_addresses_without_a_warning(self) -> None:
        # The daemon knows no working pair, but it may just not know (its
        # probe targets unreachable from here): as the connect functions do.
        self.sidecar.pairs["none.example"] = pairs_answer("none.example", 443, [])
        with resolving("none.example", 443), self.assertLogs("getapr", logging.DEBUG) as logs:
            got = getapr.get_addr_pairs("none.example", 443)
        self.assertEqual(got, [(socket.AF_INET, ("0.0.0.0", 0), ("127.0.0.1", 443))])
        self.assertEqual([r.levelno for r in logs.records], [logging.INFO])

    def test_a_404_gives_the_system_resolvers_addresses_without_a_warning(self) -> None:
        # The daemon resolves through the DNS only; "printer" is known to
        # /etc/hosts (here: a patched getaddrinfo) and not to the DNS.
        self.sidecar.pairs["printer"] = (404, {"error": "printer: no such name (NXDOMAIN)"})
        with resolving("printer", 631), self.assertLogs("getapr", logging.DEBUG) as logs:
            got = getapr.get_addr_pairs("printer", 631)
            infos = getapr.connect_infos("printer", 631)
        self.assertEqual(got, [(socket.AF_INET, ("0.0.0.0", 0), ("127.0.0.1", 631))])
        tcp = (socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
        self.assertEqual(infos, ([(socket.AF_INET, *tcp, ("127.0.0.1", 631))], None))
        self.assertEqual([r.levelno for r in logs.records], [logging.DEBUG] * 2)
        self.assertIn("404", logs.records[0].getMessage())
        self.assertEqual([r[1]["host"] for r in self.sidecar.requests], ["printer"] * 2)

    def test_a_404_for_a_name_the_system_resolver_does_not_know_is_no_pair(self) -> None:
        # get_addr_pairs keeps the original module's contract (an empty list
        # when no pair is found); connect_infos raises what getaddrinfo does.
        self.sidecar.pairs["nx.example"] = (404, {"error": "nx.example: no such name (NXDOMAIN)"})
        with resolving("nx.example"), self.assertLogs("getapr", logging.DEBUG) as logs:
            self.assertEqual(getapr.get_addr_pairs("nx.example", 443), [])
            with self.assertRaises(socket.gaierror) as caught:
                getapr.connect_infos("nx.example", 443)
        self.assertEqual(caught.exception.errno, socket.EAI_NONAME)
        self.assertEqual({r.levelno for r in logs.records}, {logging.DEBUG})
        self.assertEqual(len(self.sidecar.requests), 2)

    def test_a_404_for_a_name_of_etc_hosts_gives_its_address(self) -> None:
        # The real getaddrinfo and the real /etc/hosts: a name the fake
        # sidecar does not know (404), as the daemon's DNS would not.
        names = hosts_file_names()
        if not names:
            self.skipTest("/etc/hosts maps no name but localhost to 127.0.0.1")
        name = sorted(names)[0]
        with self.assertLogs("getapr", logging.DEBUG) as logs:
            got = getapr.get_addr_pairs(name, 80)
        print("\n  /etc/hosts name %r, 404 from the sidecar: %s" % (name, got))
        self.assertIn((socket.AF_INET, ("0.0.0.0", 0), ("127.0.0.1", 80)), got)
        self.assertEqual([r.levelno for r in logs.records], [logging.DEBUG])
        self.assertEqual(self.sidecar.requests[-1][1]["host"], name)

    def test_api_variable_is_read_at_every_call(self) -> None:
        self.sidecar.pairs["a.example"] = pairs_answer(
            "a.example", 443, [pair("192.0.2.2", "192.0.2.1", 443)]
        )
        self.assertEqual(len(getapr.get_addr_pairs("a.example", 443)), 1)
        self.use_dead_daemon()
        with self.assertLogs("getapr", logging.WARNING):
            with mock.patch(
                "socket.getaddrinfo", side_effect=socket.gaierror(socket.EAI_NONAME, "x")
            ):
                self.assertEqual(getapr.get_addr_pairs("a.example", 443), [])
        self.assertEqual(len(self.sidecar.requests), 1)


class Fallback(SidecarTest):
    def test_dead_daemon_gives_the_system_resolvers_addresses_and_one_warning(self) -> None:
        self.use_dead_daemon()
        with self.assertLogs("getapr", logging.DEBUG) as logs:
            first = getapr.get_addr_pairs("192.0.2.1", 80)
            second = getapr.get_addr_pairs("2001:db8::1", 80)
            flags = getapr.status()
            infos = getapr.connect_infos("192.0.2.1", 80)
        self.assertEqual(first, [(socket.AF_INET, ("0.0.0.0", 0), ("192.0.2.1", 80))])
        self.assertEqual(second, [(socket.AF_INET6, ("::", 0, 0, 0), ("2001:db8::1", 80, 0, 0))])
        self.assertFalse(flags["GUA_ok"])
        self.assertEqual(
            infos,
            (
                [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("192.0.2.1", 80))],
                None,
            ),
        )
        warnings = [r for r in logs.records if r.levelno == logging.WARNING]
        self.assertEqual(len(warnings), 1, [r.getMessage() for r in warnings])
        self.assertIn("connection refused", warnings[0].getMessage())

    def test_answers_that_are_not_the_sidecars_fall_back(self) -> None:
        cases = {
            "html": (200, b"<html>a captive portal</html>"),
            "wrong json": (200, {"pairs": [{"family": "ipv5"}]}),
            "busy": (503, {"error": "too many /pairs requests at once"}),
            "upstreams": (502, {"error": "the upstream resolvers failed"}),
            "forbidden": (403, {"error": "Host must be localhost"}),
            # Some other web server: not the sidecar's JSON error.
            "html 404": (404, b"<html><h1>Not Found</h1></html>"),
            "text 400": (400, b"Bad Request"),
        }
        for what, answer in cases.items():
            with self.subTest(what):
                self.sidecar.pairs["192.0.2.1"] = answer
                with self.assertLogs("getapr", logging.DEBUG) as logs:
                    got = getapr.get_addr_pairs("192.0.2.1", 80)
                self.assertEqual(got, [(socket.AF_INET, ("0.0.0.0", 0), ("192.0.2.1", 80))])
                self.assertTrue(any("system resolver" in r.getMessage() for r in logs.records))
                self.assertEqual(logs.records[0].levelno, logging.WARNING)
                _api._warned = False

    def test_a_bad_api_variable_falls_back_naming_it(self) -> None:
        os.environ["GETAPR_API"] = "https://127.0.0.1"
        with self.assertLogs("getapr", logging.WARNING) as logs:
            got = getapr.get_addr_pairs("192.0.2.1", 80)
        self.assertEqual(len(got), 1)
        self.assertIn("GETAPR_API", logs.output[0])

    def test_400_asks_the_system_resolver_without_a_warning(self) -> None:
        self.sidecar.pairs["192.0.2.1"] = (400, {"error": "not a valid domain name"})
        with self.assertLogs("getapr", logging.DEBUG) as logs:
            got = getapr.get_addr_pairs("192.0.2.1", 80)
        self.assertEqual(len(got), 1)
        self.assertEqual([r for r in logs.records if r.levelno >= logging.WARNING], [])

    def test_loopback_is_not_asked(self) -> None:
        # Its source is the loopback itself, which the daemon does not list;
        # RFC 6761 §6.3: resolution APIs answer localhost names themselves.
        got = getapr.get_addr_pairs("localhost", 80)
        self.assertIn(("127.0.0.1", 80), [d for _, _, d in got])
        for literal in ["127.0.0.1", "127.0.0.9", "::1", "::ffff:127.0.0.1"]:
            with self.subTest(literal):
                got = getapr.get_addr_pairs(literal, 80)
                self.assertEqual([s for _, s, _ in got], [_unspecified(got[0][0])])
        self.assertEqual(self.sidecar.requests, [])


def _unspecified(family: int) -> tuple:
    return ("::", 0, 0, 0) if family == socket.AF_INET6 else ("0.0.0.0", 0)


class ApiAddress(unittest.TestCase):
    def test_accepts_what_getapr_api_accepts(self) -> None:
        good = {
            "http://127.0.0.1": ("127.0.0.1", 80),
            "http://127.0.0.1:8053/": ("127.0.0.1", 8053),
            "HTTP://localhost:81": ("localhost", 81),
            "http://[::1]:8080": ("::1", 8080),
            "127.0.0.1:9": ("127.0.0.1", 9),
            "[::1]:9": ("::1", 9),
        }
        for text, want in good.items():
            with self.subTest(text):
                self.assertEqual(tuple(_api.parse_api(text)), want)
        for bad in [
            "https://x",
            "127.0.0.1",
            "::1:80",
            "http://h/path",
            "http://h:0",
            "http://[::1",
            "http://:80",
        ]:
            with self.subTest(bad), self.assertRaises(ValueError):
                _api.parse_api(bad)


class Helpers(SidecarTest):
    def test_addr_infos_and_local_addr_infos_have_aiohappyeyeballs_shapes(self) -> None:
        # aiohappyeyeballs' AddrInfoType: (family, type, proto, canonname, sockaddr).
        self.sidecar.pairs["m.example"] = pairs_answer(
            "m.example",
            443,
            [
                pair("2001:db8:1::2", "2001:db8::1", 443),
                pair("192.0.2.2", "198.51.100.1", 443),
                pair("2001:db8:1::2", "2001:db8::2", 443),
                pair("fe80::2", "fe80::1", 443, scope_id=7),
            ],
        )
        infos, local = getapr.connect_infos("m.example", 443)
        tcp = (socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
        self.assertEqual(
            infos,
            [
                (socket.AF_INET6, *tcp, ("2001:db8::1", 443, 0, 0)),
                (socket.AF_INET, *tcp, ("198.51.100.1", 443)),
                (socket.AF_INET6, *tcp, ("2001:db8::2", 443, 0, 0)),
                (socket.AF_INET6, *tcp, ("fe80::1", 443, 0, 7)),
            ],
        )
        # Each source once, in pair order: aiohappyeyeballs binds the first
        # of a family that it can, so the best pair's source leads.
        self.assertEqual(
            local,
            [
                (socket.AF_INET6, *tcp, ("2001:db8:1::2", 0, 0, 0)),
                (socket.AF_INET, *tcp, ("192.0.2.2", 0)),
                (socket.AF_INET6, *tcp, ("fe80::2", 0, 0, 7)),
            ],
        )
        self.assertEqual(getapr.addr_infos("m.example", 443), infos)
        self.assertEqual(getapr.local_addr_infos("m.example", 443), local)
        for info in infos + local:
            self.assertEqual(len(info), 5)
            socket.socket(info[0], info[1], info[2]).close()  # takes them as they are


if __name__ == "__main__":
    unittest.main()
