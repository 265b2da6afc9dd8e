"""status() and init_getapr() against a fake sidecar."""

from __future__ import annotations

import io
import logging
import unittest
from contextlib import redirect_stdout
from unittest import mock

import getapr

from .support import SidecarTest

# docs/interface.md's example of GET /status.
STATUS = {
    "GUA_ok": True,
    "ULA_ok": False,
    "LLA_ok": True,
    "IPv4_ok": True,
    "NAT44": True,
    "NAT44_tried": True,
    "NPTv6": False,
    "NPTv6_tried": False,
    "RFC1918": True,
    "ULA_present": False,
    "def_gateway4": "192.168.1.1",
    "def_gateway6": "fe80::1%eth0",
    "nat64_prefixes": [],
    "sources": [
        {
            "address": "2001:db8:1::2",
            "interface": "eth0",
            "class": "gua",
            "state": "ok",
            "rtt_ms": 11.2,
        }
    ],
    "path_mtu": {"ipv4": "ok", "ipv6": "ok"},
}

FLAGS = [
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
    "def_gateway4",
    "def_gateway6",
]


class Status(SidecarTest):
    def setUp(self) -> None:
        super().setUp()
        # status() sets the module's flags: put them back afterwards.
        saved = {name: getattr(getapr, name) for name in FLAGS}
        self.addCleanup(lambda: [setattr(getapr, k, v) for k, v in saved.items()])

    def test_flags_keep_the_prototypes_names_and_other_keys_pass_through(self) -> None:
        self.sidecar.status = (200, STATUS)
        got = getapr.status()
        self.assertEqual(got, STATUS)
        self.assertEqual(self.sidecar.requests[-1][0], "/status")

    def test_module_attributes_follow_the_last_status_call(self) -> None:
        self.sidecar.status = (200, STATUS)
        getapr.status()
        self.assertIs(getapr.GUA_ok, True)
        self.assertIs(getapr.NPTv6, False)
        self.assertEqual(getapr.def_gateway6, "fe80::1%eth0")

    def test_dead_daemon_gives_the_prototypes_defaults_and_a_warning(self) -> None:
        self.sidecar.status = (200, STATUS)
        getapr.status()
        self.use_dead_daemon()
        with self.assertLogs("getapr", logging.WARNING) as logs:
            got = getapr.status()
        self.assertEqual(
            got, {**{f: False for f in FLAGS}, "def_gateway4": None, "def_gateway6": None}
        )
        self.assertIs(getapr.GUA_ok, False)
        self.assertIsNone(getapr.def_gateway4)
        self.assertEqual(len(logs.records), 1)

    def test_json_without_the_flags_is_not_the_sidecar(self) -> None:
        self.sidecar.status = (200, {"status": "ok", "GUA_ok": "yes"})
        with self.assertLogs("getapr", logging.WARNING):
            got = getapr.status()
        self.assertIs(got["GUA_ok"], False)
        self.assertNotIn("status", got)

    def test_init_getapr_is_accepted_and_only_asks_the_status(self) -> None:
        self.sidecar.status = (200, STATUS)
        out = io.StringIO()
        with redirect_stdout(out):
            self.assertIsNone(getapr.init_getapr(printing=True))
            self.assertIsNone(getapr.init_getapr())
        self.assertIn("GUA_ok=True", out.getvalue())
        self.assertEqual([r[0] for r in self.sidecar.requests], ["/status", "/status"])

    def test_init_getapr_reports_a_dead_daemon_once(self) -> None:
        self.use_dead_daemon()
        with self.assertLogs("getapr", logging.DEBUG) as logs:
            getapr.init_getapr()
            getapr.init_getapr()
            with mock.patch("builtins.print"):
                getapr.get_addr_pairs("127.0.0.1", 80, printing=True)
        self.assertEqual([r.levelno for r in logs.records].count(logging.WARNING), 1)


if __name__ == "__main__":
    unittest.main()
