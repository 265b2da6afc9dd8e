"""open_connection: the race in asyncio, on loopback as in test_race."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import unittest
from unittest import mock

import getapr
from getapr import _aio, _api

from .support import (
    Attempts,
    FakeSidecar,
    LeakCheck,
    Listener,
    Silent,
    check_silence,
    closed_port,
    no_dns,
    pair,
    pairs_answer,
    resolving,
)


class OpenConnection(unittest.IsolatedAsyncioTestCase):
    def setUp(self) -> None:
        check_silence()
        self.sidecar = FakeSidecar()
        self.addCleanup(self.sidecar.close)
        for patch in (
            mock.patch.dict(os.environ, {"GETAPR_API": self.sidecar.url}),
            mock.patch.object(_api, "_warned", False),
            no_dns(),
        ):
            patch.start()
            self.addCleanup(patch.stop)

    def serve(self, *pairs: dict) -> None:
        self.sidecar.pairs["race.test"] = pairs_answer("race.test", 443, list(pairs))

    def closing(self, thing):  # type: ignore[no-untyped-def]
        self.addCleanup(thing.close)
        return thing

    async def connect(self, **kwargs) -> float:  # type: ignore[no-untyped-def]
        """Opens, closes, and gives how long opening took."""
        start = time.monotonic()
        reader, writer = await getapr.open_connection("race.test", 443, **kwargs)
        elapsed = time.monotonic() - start
        writer.close()
        await writer.wait_closed()
        return elapsed

    async def test_a_first_pair_that_never_answers_loses_to_the_second_after_250ms(self) -> None:
        silent = self.closing(Silent())
        good = self.closing(Listener())
        self.serve(
            pair("127.0.0.2", "127.0.0.1", silent.port), pair("127.0.0.3", "127.0.0.1", good.port)
        )
        with LeakCheck(self):
            elapsed = await self.connect()
        print("\n  asyncio, never-answering first pair: second won after %.3f s" % elapsed)
        self.assertGreaterEqual(elapsed, 0.2)
        self.assertLess(elapsed, 1.0)
        self.assertEqual(good.peer(), "127.0.0.3")

    async def test_a_refused_first_pair_falls_through_at_once(self) -> None:
        good = self.closing(Listener())
        self.serve(
            pair("127.0.0.2", "127.0.0.1", closed_port()), pair("127.0.0.3", "127.0.0.1", good.port)
        )
        with LeakCheck(self):
            elapsed = await self.connect()
        print("\n  asyncio, refused first pair: second won after %.3f s" % elapsed)
        self.assertLess(elapsed, 0.2)
        self.assertEqual(good.peer(), "127.0.0.3")

    async def test_a_failure_starts_the_next_attempt_at_once_while_earlier_ones_wait(
        self,
    ) -> None:
        # As in test_race: [never answers, fails after 50 ms, connects]
        # start at 0, 250 and 300 ms, not 0, 250 and 500.
        silent, failing = self.closing(Silent()), self.closing(Silent())
        good = self.closing(Listener())
        self.serve(
            pair("127.0.0.2", "127.0.0.1", silent.port),
            pair("127.0.0.3", "127.0.0.1", failing.port),
            pair("127.0.0.4", "127.0.0.1", good.port),
        )
        with LeakCheck(self), Attempts(_aio, {failing.port: 0.05}) as attempts:
            elapsed = await self.connect()
        starts = attempts.offsets()
        print(
            "\n  asyncio, [never, fails after 50 ms, connects]: attempts started at %s s, "
            "won after %.3f s" % (", ".join("%.3f" % t for t in starts), elapsed)
        )
        self.assertEqual(
            [port for _, port in attempts.starts], [silent.port, failing.port, good.port]
        )
        self.assertGreaterEqual(starts[1], 0.2)
        self.assertLess(starts[1], 0.4)
        self.assertGreaterEqual(starts[2] - starts[1], 0.04)
        self.assertLess(starts[2] - starts[1], 0.2)
        self.assertLess(starts[2], 0.45)
        self.assertEqual(good.peer(), "127.0.0.4")

    async def test_each_socket_is_bound_to_its_pairs_source(self) -> None:
        good = self.closing(Listener())
        for source in ["127.0.0.2", "127.0.0.3"]:
            with self.subTest(source):
                self.serve(pair(source, "127.0.0.1", good.port))
                with LeakCheck(self):
                    await self.connect()
                self.assertEqual(good.peer(), source)

    async def test_the_streams_carry_data(self) -> None:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = writer.get_extra_info("peername")[0]
            writer.write(peer.encode() + b" " + await reader.readline())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        self.addAsyncCleanup(server.wait_closed)
        self.addCleanup(server.close)
        self.serve(pair("127.0.0.3", "127.0.0.1", server.sockets[0].getsockname()[1]))
        reader, writer = await getapr.open_connection("race.test", 443)
        writer.write(b"hello\n")
        self.assertEqual(await reader.readline(), b"127.0.0.3 hello\n")
        writer.close()
        await writer.wait_closed()

    async def test_the_timeout_bounds_the_race(self) -> None:
        a, b = self.closing(Silent()), self.closing(Silent())
        self.serve(pair("127.0.0.2", "127.0.0.1", a.port), pair("127.0.0.3", "127.0.0.1", b.port))
        with LeakCheck(self):
            start = time.monotonic()
            with self.assertRaises(socket.timeout) as caught:
                await self.connect(timeout=0.6)
            elapsed = time.monotonic() - start
        print("\n  asyncio, timeout=0.6: gave up after %.3f s" % elapsed)
        self.assertGreaterEqual(elapsed, 0.55)
        self.assertLess(elapsed, 1.5)
        self.assertIn("from 127.0.0.3: timed out", str(caught.exception))

    async def test_cancelling_closes_every_attempt(self) -> None:
        a, b = self.closing(Silent()), self.closing(Silent())
        self.serve(pair("127.0.0.2", "127.0.0.1", a.port), pair("127.0.0.3", "127.0.0.1", b.port))
        with LeakCheck(self):
            with self.assertRaises(asyncio.TimeoutError):
                # Both attempts are running when wait_for cancels the race.
                await asyncio.wait_for(self.connect(), 0.4)

    async def test_when_every_pair_fails_the_error_names_each(self) -> None:
        p1, p2 = closed_port(), closed_port()
        self.serve(pair("127.0.0.2", "127.0.0.1", p1), pair("127.0.0.3", "127.0.0.1", p2))
        with LeakCheck(self):
            with self.assertRaises(ConnectionRefusedError) as caught:
                await self.connect()
        self.assertIn("127.0.0.1:%d from 127.0.0.2: refused" % p1, str(caught.exception))
        self.assertIn("127.0.0.1:%d from 127.0.0.3: refused" % p2, str(caught.exception))

    async def test_family_keeps_the_pairs_of_that_family(self) -> None:
        good4 = self.closing(Listener())
        good6 = self.closing(Listener("::1", socket.AF_INET6))
        self.serve(pair("127.0.0.2", "127.0.0.1", good4.port), pair("::1", "::1", good6.port))
        await self.connect(family=socket.AF_INET6)
        self.assertEqual(good6.peer(), "::1")

    async def test_ssl_gets_the_host_as_server_hostname(self) -> None:
        good = self.closing(Listener())
        self.serve(pair("127.0.0.2", "127.0.0.1", good.port))
        seen = {}

        async def fake_open_connection(**kwargs):  # type: ignore[no-untyped-def]
            seen.update(kwargs)
            kwargs["sock"].close()
            return None, None

        with mock.patch("asyncio.open_connection", fake_open_connection):
            await getapr.open_connection("race.test", 443, ssl=True)
            self.assertEqual(seen["server_hostname"], "race.test")
            self.assertIs(seen["ssl"], True)
            self.assertEqual(seen["sock"].family, socket.AF_INET)
            await getapr.open_connection("race.test", 443, ssl=True, server_hostname="other.test")
            self.assertEqual(seen["server_hostname"], "other.test")
            seen.clear()
            await getapr.open_connection("race.test", 443)
            self.assertNotIn("server_hostname", seen)

    async def test_local_addr_is_asyncios_business(self) -> None:
        good = self.closing(Listener())
        reader, writer = await getapr.open_connection(
            "127.0.0.1", good.port, local_addr=("127.0.0.3", 0)
        )
        writer.close()
        await writer.wait_closed()
        self.assertEqual(good.peer(), "127.0.0.3")
        self.assertEqual(self.sidecar.requests, [])

    async def test_a_404_for_a_name_the_system_resolver_knows_connects_without_a_warning(
        self,
    ) -> None:
        good = self.closing(Listener())
        with LeakCheck(self), resolving("printer", good.port):
            with self.assertLogs("getapr", logging.DEBUG) as logs:
                reader, writer = await getapr.open_connection("printer", good.port)
                writer.close()
                await writer.wait_closed()
        self.assertEqual(good.peer(), "127.0.0.1")
        self.assertEqual([r.levelno for r in logs.records], [logging.DEBUG])
        self.assertEqual(self.sidecar.requests[-1][1]["host"], "printer")

    async def test_a_404_for_a_name_nobody_knows_raises_the_system_resolvers_gaierror(
        self,
    ) -> None:
        with resolving("missing.test"), self.assertLogs("getapr", logging.DEBUG) as logs:
            with self.assertRaises(socket.gaierror) as caught:
                await getapr.open_connection("missing.test", 443)
        self.assertEqual(caught.exception.errno, socket.EAI_NONAME)
        self.assertEqual([r.levelno for r in logs.records], [logging.DEBUG])

    async def test_dead_daemon_connects_unbound_and_warns_once(self) -> None:
        good = self.closing(Listener())
        os.environ["GETAPR_API"] = "http://127.0.0.1:%d" % closed_port()
        with LeakCheck(self), resolving("dead.test", good.port):
            with self.assertLogs("getapr", logging.DEBUG) as logs:
                for _ in range(3):
                    reader, writer = await getapr.open_connection("dead.test", good.port)
                    writer.close()
                    await writer.wait_closed()
                    self.assertEqual(good.peer(), "127.0.0.1")
        self.assertEqual([r.levelno for r in logs.records].count(logging.WARNING), 1)


if __name__ == "__main__":
    unittest.main()
