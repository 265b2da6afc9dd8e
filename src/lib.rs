//! getapr: a forwarding DNS stub that knows which address pairs really work.
//!
//! The module map (see `ARCHITECTURE.md` for the why):
//!
//! | module | owns | I/O |
//! |---|---|---|
//! | [`client`] | `getapr pairs` / `getapr status`: GET the sidecar, print tables | yes |
//! | [`config`] | raw TOML → validated [`config::Config`] | no |
//! | [`dns::wire`] | views over DNS wire bytes, in-place edits | no |
//! | [`dns::cache`] | O(1) LRU with TTL expiry | no |
//! | [`dns::flight`] | lookups in flight: merged identical queries, bounded fair slots | no |
//! | [`dns::rewrite`] | A/AAAA/SVCB answers ordered and filtered by the verdicts | no |
//! | [`dns::upstream`] | forwarding to upstream resolvers, retransmission, TCP fallback | yes |
//! | [`dns::server`] | UDP/TCP listeners, ACL, limits, serve-stale, failure cache | yes |
//! | [`notify`] | systemd readiness and watchdog (`sd_notify`) | yes |
//! | [`inventory`] | interfaces, addresses and classes, default gateways | yes, behind a trait |
//! | [`probe`] | the probe engine (pure), verdicts, STUN, NAT64, the driver that sends probes | engine no, driver yes |
//! | [`metrics`] | the Prometheus families of `/metrics` | no |
//! | [`policy`] | RFC 6724 source and destination selection + verdicts, family interleave | no |
//! | [`api`] | the HTTP sidecar: routes, Host/Origin guard, JSON | yes |
//! | `fuzzing` | the fuzz targets' entry points, one per target (hidden; no production module uses it) | no (in-memory pipes) |
//! | `slots` | connection caps of DNS over TCP and the sidecar: who gives way at the cap (stalled, then idle; never busy) | no |
//! | `sync` | `lock`: the crate's one way to lock a mutex (a poisoned lock is still taken) | no |
//! | `testutil` | the builders unit tests share: addresses, verdicts, DNS names and records (tests only) | no |
//! | [`daemon`] | wiring, signals, reload | yes |
#![forbid(unsafe_code)]

pub mod api;
pub mod client;
pub mod config;
pub mod daemon;
pub mod dns;
#[doc(hidden)]
pub mod fuzzing;
pub mod inventory;
pub mod metrics;
pub mod notify;
pub mod policy;
pub mod probe;
mod slots;
mod sync;
#[cfg(test)]
pub(crate) mod testutil;
