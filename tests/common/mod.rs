//! The integration-test harness: in-process upstreams, a client, a
//! field-by-field comparison and a way to start getapr on `127.0.0.1:0`.
//!
//! | module | what |
//! |---|---|
//! | [`bin`] | the `getapr` binary as a child process, its config and signals |
//! | [`auth`] | [`AuthUpstream`]: hickory-server with the `example.test.` zone |
//! | [`fake`] | [`FakeUpstream`]: a scriptable UDP+TCP server (spoofing, silence, delays) |
//! | [`flood`] | the binary under load: RSS from `/proc`, clients on 127.0.0.x, paced floods, the flood table |
//! | [`client`] | UDP/TCP exchanges with timeouts, query builders |
//! | [`compare`] | [`compare()`]: what a client gets via getapr vs directly |
//! | [`daemon`] | [`start_getapr`] and the config text it runs with |
//! | [`http`] | the daemon with its HTTP sidecar; raw HTTP/1.1 requests and responses |
//! | [`lab`] | the network-namespace lab (root) |
//! | [`labdns`] | Knot, Unbound (DNS64) and getapr in the lab; DNS clients there |
//! | [`delay`] | a userspace delay box for one family in a lab router (no netem needed) |
//!
//! Everything binds `127.0.0.1` only; nothing needs root or the network.

// Every file under `tests/` is its own crate and uses only part of the
// harness; without this, each would warn about the parts it does not use.
#![allow(dead_code, unused_imports)]

/// The getapr flags as docs/interface.md spells them: the tests' own copy, so a
/// rename in the code is caught rather than followed.
pub const CONTRACT_FLAGS: [&str; 10] = [
    "GUA_ok",
    "ULA_ok",
    "LLA_ok",
    "IPv4_ok",
    "NAT44",
    "NAT44_tried",
    "NPTv6",
    "NPTv6_tried",
    "RFC1918",
    "ULA_present",
];

pub mod auth;
pub mod bin;
pub mod client;
pub mod compare;
pub mod daemon;
pub mod delay;
pub mod fake;
pub mod flood;
pub mod http;
pub mod lab;
pub mod labdns;

pub use auth::AuthUpstream;
pub use client::{
    QueryBuilder, TcpClient, query, question_bytes, tcp_exchange, udp_exchange, udp_silence,
};
pub use compare::compare;
pub use daemon::{config_toml, spawn_getapr, start_getapr};
pub use fake::{Action, FakeUpstream, Transport};
