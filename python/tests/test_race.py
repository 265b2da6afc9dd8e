"""create_connection: the Happy Eyeballs race over the daemon's pairs, on
loopback (sources 127.0.0.2 and 127.0.0.3, destinations on 127.0.0.1)."""

from __future__ import annotations

import logging
import socket
import sys
import time
import unittest

import getapr
from getapr import _race

from .support import (
    Attempts,
    LeakCheck,
    Listener,
    SidecarTest,
    Silent,
    closed_port,
    hosts_file_names,
    pair,
    pairs_answer,
    resolving,
    timed,
)


class Race(SidecarTest):
    def serve(self, *pairs: dict) -> None:
        self.sidecar.pairs["race.test"] = pairs_answer("race.test", 443, list(pairs))

    def test_a_first_pair_that_never_answers_loses_to_the_second_after_250ms(self) -> None:
        silent = self.closing(Silent())
        good = self.closing(Listener())
        self.serve(
            pair("127.0.0.2", "127.0.0.1", silent.port), pair("127.0.0.3", "127.0.0.1", good.port)
        )
        with LeakCheck(self):
            sock, elapsed = timed(lambda: getapr.create_connection(("race.test", 443), timeout=5))
            sock.close()
        print("\n  never-answering first pair: second pair won after %.3f s" % elapsed)
        self.assertGreaterEqual(elapsed, 0.2)
        self.assertLess(elapsed, 1.0)
        self.assertEqual(good.peer(), "127.0.0.3")

    def test_a_refused_first_pair_falls_through_at_once(self) -> None:
        good = self.closing(Listener())
        self.serve(
            pair("127.0.0.2", "127.0.0.1", closed_port()), pair("127.0.0.3", "127.0.0.1", good.port)
        )
        with LeakCheck(self):
            sock, elapsed = timed(lambda: getapr.create_connection(("race.test", 443), timeout=5))
            sock.close()
        print("\n  refused first pair: second pair won after %.3f s" % elapsed)
        self.assertLess(elapsed, 0.2)
        self.assertEqual(good.peer(), "127.0.0.3")

    def test_a_failure_starts_the_next_attempt_at_once_while_earlier_ones_wait(self) -> None:
        # [never answers, fails 50 ms after it starts, connects]: starts at
        # 0, 250 and 300 ms. The first attempt still waits when the second
        # fails; the third does not wait for the 250 ms (500 ms) either.
        silent, failing = self.closing(Silent()), self.closing(Silent())
        good = self.closing(Listener())
        self.serve(
            pair("127.0.0.2", "127.0.0.1", silent.port),
            pair("127.0.0.3", "127.0.0.1", failing.port),
            pair("127.0.0.4", "127.0.0.1", good.port),
        )
        with LeakCheck(self), Attempts(_race, {failing.port: 0.05}) as attempts:
            sock, elapsed = timed(lambda: getapr.create_connection(("race.test", 443), timeout=5))
            sock.close()
        starts = attempts.offsets()
        print(
            "\n  [never, fails after 50 ms, connects]: attempts started at %s s, won after %.3f s"
            % (", ".join("%.3f" % t for t in starts), elapsed)
        )
        self.assertEqual(
            [port for _, port in attempts.starts], [silent.port, failing.port, good.port]
        )
        self.assertGreaterEqual(starts[1], 0.2)
        self.assertLess(starts[1], 0.4)
        # 50 ms after the second, not 250 ms.
        self.assertGreaterEqual(starts[2] - starts[1], 0.04)
        self.assertLess(starts[2] - starts[1], 0.2)
        self.assertLess(starts[2], 0.45)
        self.assertEqual(good.peer(), "127.0.0.4")

    def test_a_source_not_on_this_host_falls_through_at_once(self) -> None:
        # Binding 192.0.2.1 fails locally (EADDRNOTAVAIL): nothing is sent.
        good = self.closing(Listener())
        self.serve(
            pair("192.0.2.1", "127.0.0.1", good.port), pair("127.0.0.2", "127.0.0.1", good.port)
        )
        with LeakCheck(self):
            sock, elapsed = timed(lambda: getapr.create_connection(("race.test", 443), timeout=5))
            sock.close()
        self.assertLess(elapsed, 0.2)
        self.assertEqual(good.peer(), "127.0.0.2")

    def test_each_socket_is_bound_to_its_pairs_source(self) -> None:
        good = self.closing(Listener())
        for source in ["127.0.0.2", "127.0.0.3"]:
            with self.subTest(source):
                self.serve(pair(source, "127.0.0.1", good.port))
                with LeakCheck(self):
                    getapr.create_connection(("race.test", 443), timeout=5).close()
                self.assertEqual(good.peer(), source)

    def test_ipv6_source_is_bound_too(self) -> None:
        good = self.closing(Listener("::1", socket.AF_INET6))
        self.serve(pair("::1", "::1", good.port))
        with LeakCheck(self):
            sock = getapr.create_connection(("race.test", 443), timeout=5)
            self.assertEqual(sock.family, socket.AF_INET6)
            sock.close()
        self.assertEqual(good.peer(), "::1")

    def test_the_timeout_bounds_the_whole_race(self) -> None:
        a, b = self.closing(Silent()), self.closing(Silent())
        self.serve(pair("127.0.0.2", "127.0.0.1", a.port), pair("127.0.0.3", "127.0.0.1", b.port))
        with LeakCheck(self):
            start = time.monotonic()
            with self.assertRaises(socket.timeout) as caught:
                getapr.create_connection(("race.test", 443), timeout=0.6)
            elapsed = time.monotonic() - start
        print("\n  timeout=0.6 over two never-answering pairs: gave up after %.3f s" % elapsed)
        self.assertGreaterEqual(elapsed, 0.55)
        self.assertLess(elapsed, 1.5)
        message = str(caught.exception)
        self.assertIn("127.0.0.1:%d from 127.0.0.2: timed out" % a.port, message)
        self.assertIn("127.0.0.1:%d from 127.0.0.3: timed out" % b.port, message)

    def test_when_every_pair_fails_the_error_names_each(self) -> None:
        p1, p2 = closed_port(), closed_port()
        self.serve(pair("127.0.0.2", "127.0.0.1", p1), pair("127.0.0.3", "127.0.0.1", p2))
        with LeakCheck(self):
            with self.assertRaises(ConnectionRefusedError) as caught:
                getapr.create_connection(("race.test", 443), timeout=5)
        message = str(caught.exception)
        self.assertIn("race.test", message)
        self.assertIn("127.0.0.1:%d from 127.0.0.2: refused" % p1, message)
        self.assertIn("127.0.0.1:%d from 127.0.0.3: refused" % p2, message)

    @unittest.skipIf(sys.version_info < (3, 11), "ExceptionGroup is Python 3.11+")
    def test_all_errors_gives_an_exception_group(self) -> None:
        self.serve(
            pair("127.0.0.2", "127.0.0.1", closed_port()),
            pair("127.0.0.3", "127.0.0.1", closed_port()),
        )
        with self.assertRaises(ExceptionGroup) as caught:  # noqa: F821
            getapr.create_connection(("race.test", 443), timeout=5, all_errors=True)
        errors = caught.exception.exceptions
        self.assertEqual([type(e) for e in errors], [ConnectionRefusedError] * 2)
        self.assertIn("from 127.0.0.3", str(errors[1]))

    def test_the_socket_has_the_timeout_as_the_standard_librarys_has(self) -> None:
        good = self.closing(Listener())
        self.serve(pair("127.0.0.2", "127.0.0.1", good.port))
        for timeout, want in [(3.0, 3.0), (None, None)]:
            with self.subTest(timeout=timeout):
                sock = getapr.create_connection(("race.test", 443), timeout)
                self.assertEqual(sock.gettimeout(), want)
                sock.close()
        sock = getapr.create_connection(("race.test", 443))
        self.assertEqual(sock.gettimeout(), socket.getdefaulttimeout())
        sock.close()

    def test_a_404_for_a_name_the_system_resolver_does_not_know_raises_its_gaierror(
        self,
    ) -> None:
        with resolving("missing.test"), self.assertLogs("getapr", logging.DEBUG) as logs:
            with self.assertRaises(socket.gaierror) as caught:
                getapr.create_connection(("missing.test", 443), timeout=5)
        self.assertEqual(caught.exception.errno, socket.EAI_NONAME)
        self.assertEqual([r.levelno for r in logs.records], [logging.DEBUG])
        self.assertEqual(self.sidecar.requests[-1][1]["host"], "missing.test")

    def test_an_explicit_source_address_is_the_standard_librarys_business(self) -> None:
        good = self.closing(Listener())
        with LeakCheck(self):
            getapr.create_connection(("127.0.0.1", good.port), 5, ("127.0.0.3", 0)).close()
        self.assertEqual(good.peer(), "127.0.0.3")
        self.assertEqual(self.sidecar.requests, [])


class Fallback(SidecarTest):
    def resolve_to(self, name: str, *ports: int) -> None:
        patch = resolving(name, *ports)
        patch.start()
        self.addCleanup(patch.stop)

    def test_dead_daemon_connects_unbound_and_warns_once(self) -> None:
        good = self.closing(Listener())
        self.resolve_to("dead.test", good.port)
        self.use_dead_daemon()
        with LeakCheck(self), self.assertLogs("getapr", logging.DEBUG) as logs:
            for _ in range(3):
                getapr.create_connection(("dead.test", good.port), timeout=5).close()
                self.assertEqual(good.peer(), "127.0.0.1")
        self.assertEqual([r.levelno for r in logs.records].count(logging.WARNING), 1)

    def test_an_empty_list_tries_the_system_resolver_without_a_warning(self) -> None:
        good = self.closing(Listener())
        self.resolve_to("empty.test", good.port)
        self.sidecar.pairs["empty.test"] = pairs_answer("empty.test", good.port, [])
        with LeakCheck(self), self.assertLogs("getapr", logging.DEBUG) as logs:
            getapr.create_connection(("empty.test", good.port), timeout=5).close()
        self.assertEqual(good.peer(), "127.0.0.1")
        self.assertEqual([r.levelno for r in logs.records], [logging.INFO])
        self.assertEqual(len(self.sidecar.requests), 1)

    def test_a_404_for_a_name_the_system_resolver_knows_connects_without_a_warning(
        self,
    ) -> None:
        # "printer": in /etc/hosts (here: a patched getaddrinfo), not in the
        # DNS through which the daemon resolves; socket.create_connection
        # would connect, and so does getapr.
        good = self.closing(Listener())
        self.resolve_to("printer", good.port)
        with LeakCheck(self), self.assertLogs("getapr", logging.DEBUG) as logs:
            getapr.create_connection(("printer", good.port), timeout=5).close()
        self.assertEqual(good.peer(), "127.0.0.1")
        self.assertEqual([r.levelno for r in logs.records], [logging.DEBUG])
        self.assertEqual(self.sidecar.requests[-1][1]["host"], "printer")

    def test_a_name_of_etc_hosts_connects(self) -> None:
        # The real getaddrinfo and /etc/hosts; the fake sidecar answers 404.
        names = hosts_file_names()
        if not names:
            self.skipTest("/etc/hosts maps no name but localhost to 127.0.0.1")
        name = sorted(names)[0]
        good = self.closing(Listener())
        with LeakCheck(self), self.assertLogs("getapr", logging.DEBUG) as logs:
            getapr.create_connection((name, good.port), timeout=5).close()
        self.assertEqual(good.peer(), "127.0.0.1")
        self.assertEqual([r.levelno for r in logs.records], [logging.DEBUG])

    def test_a_loopback_literal_is_connected_from_the_loopback(self) -> None:
        # Were the daemon asked, it would pair 127.0.0.1 with a source of a
        # real interface, and the server would not see 127.0.0.1.
        good = self.closing(Listener())
        with LeakCheck(self):
            getapr.create_connection(("127.0.0.1", good.port), timeout=5).close()
        self.assertEqual(good.peer(), "127.0.0.1")
        self.assertEqual(self.sidecar.requests, [])

    def test_the_system_resolvers_addresses_are_raced_too(self) -> None:
        # With a dead first address the race moves on after 250 ms, as it
        # does over the daemon's pairs.
        silent = self.closing(Silent())
        good = self.closing(Listener())
        self.resolve_to("dead.test", silent.port, good.port)
        self.use_dead_daemon()
        with LeakCheck(self), self.assertLogs("getapr", logging.WARNING):
            sock, elapsed = timed(lambda: getapr.create_connection(("dead.test", 1), timeout=5))
            sock.close()
        print("\n  system resolver's addresses: second won after %.3f s" % elapsed)
        self.assertGreaterEqual(elapsed, 0.2)
        self.assertLess(elapsed, 1.0)
        self.assertEqual(good.peer(), "127.0.0.1")


if __name__ == "__main__":
    unittest.main()
