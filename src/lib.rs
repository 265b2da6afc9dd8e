//! getapr: a forwarding DNS stub that knows which address pairs really work.
//!
//! This is the one module map; `ARCHITECTURE.md` has the data flow and the
//! rules the code keeps, `docs/interface.md` the public contract. "Pure"
//! means no clock, socket or file: `now` and bytes come in as arguments.
//!
//! | module | owns | I/O |
//! |---|---|---|
//! | [`config`] | the config file: `raw` (serde structs with spans) and its validation, `values` (one-value parsers), `types` (the validated [`config::Config`] the crate reads), `load` (file, embedded default), `addresses` (`allows`, `is_own`), `error` (`FILE:LINE:COL`) | reads the file |
//! | [`dns::wire`] | views over DNS wire bytes and in-place edits: `message`, `name`, `query` (a client's query, the [`Shape`](dns::wire::Shape) of its answer), `reply` (validated upstream bytes, rendering), `order` (A/AAAA and hint order), `svcb` (hints), `ede` (Extended DNS Errors) | pure |
//! | [`dns::cache`] | `lru` (O(1) LRU with TTL expiry and a stale window), `key` (name, type, class, DO, CD), `lifetime` (what may be cached, how long: RFC 2308) | pure |
//! | [`dns::dns64`] | DNS64 (RFC 6147): `active` (when), `need` (which answers, and the A or `in-addr.arpa` lookup they take), `synth` (AAAA from A under every NAT64 prefix, PTR through a CNAME; TTL §5.1.7), `reverse` (`ip6.arpa` under a prefix) | pure |
//! | [`dns::flight`] | lookups in flight: identical queries joined as bounded waiters, fair upstream slots (longest-queue drop) | pure |
//! | [`dns::rewrite`] | the verdicts applied to a reply: `judge` (an address: works, likely, unknown, cannot, and why), `filter` (removal re-encoded with hickory-proto: SOA, EDE 17), the decision and the order in `mod.rs` | pure |
//! | [`dns::upstream`] | the [`Pool`](dns::upstream::Pool): upstreams in order, failover, TCP on TC; `udp` (one try: fresh socket, RTO from the smoothed RTT), `addresses` (config and resolv.conf) | yes |
//! | [`dns::server`] | `listen` (UDP loop, TCP accept and framing, slots), `batch` (the UDP loop's datagrams in batches: recvmmsg, sendmmsg), `pipeline` (a query's path top to bottom: triage, cache, flight, upstreams, rewrite, render, serve-stale), `view` (the rewritten view cached beside a reply, the other family), `waiters`, `failures` (RFC 9520), `lookup` (the daemon's own queries), `learn` (answers to the probe engine) | yes |
//! | [`inventory`] | the host's interfaces, addresses and gateways: `class` (IANA special-purpose registries; the one notion of a global address), `netlink` and `procfs` (pure, total parsers), `ndopt` (router advertisement options from rtnetlink: PREF64, RFC 8781; pure parser, the group's socket), `system` (the real host), `watch` (publishes changes) | `system`, `watch`, `ndopt::RaSocket` |
//! | [`probe::verdicts`] | the immutable [`Verdicts`](probe::verdicts::Verdicts) snapshot readers load: sources, families, prefixes, destinations, flags, path MTU; `reach` (a destination by the paths whose source still works), `is_dead`, `is_internet`, `source` | pure |
//! | [`probe::engine`] | which sources, families, prefixes and destinations work: `config`, `addresses` (what is probed), `state` (hysteresis), `schedule` (rounds, learned tries), `confirm` (rounds started early: a bad round confirmed, a stuck connect, a gateway change, a path-MTU stall), `mtu` (large probes, proofs with small segments, the path-MTU rule), `results`, `publish`, `probe` ([`ProbeRequest`](probe::engine::ProbeRequest) / [`ProbeResult`](probe::engine::ProbeResult)) | pure |
//! | `probe::learned` | destinations seen in answers: LRU, tries, token bucket | pure |
//! | [`probe::known64`] | the NAT64 prefixes known, by source (router advertisements with lifetimes and bounds, config, RFC 7050) | pure |
//! | [`probe::stun`], [`probe::nat64`], [`probe::tls`] | STUN Binding codec (RFC 8489); RFC 6052 mapping and RFC 7050 discovery; the padded TLS ClientHello of the path-MTU probe (RFC 7685) | pure |
//! | [`probe::syn_sent`] | applications' connects stuck in SYN-SENT: a `NETLINK_SOCK_DIAG` dump, its pure, total parser | `dump` |
//! | [`probe::driver`] | sockets bound to one source (TCP handshake, STUN exchange) and the loop that feeds the engine (probe results, stuck connects) and publishes its verdicts | yes |
//! | [`policy`] | RFC 6724 with the verdicts: `table` (precedence, label, scope), `source` (§5), `destination` (§6 and the RTT rule), `pairs` (`/pairs`, RFC 8305 interleave) | pure |
//! | [`api`] | the HTTP sidecar: `guard` (Host/Origin), `query` (`/pairs` query string), `json`, `routes`; limits | yes |
//! | [`client`] | `getapr pairs` / `getapr status` / `getapr connect`: [`ApiUrl`](client::ApiUrl), `http` (a blocking GET, a total response parser), `render` (tables), [`connect`](client::connect) (the pairs, else the system resolver's addresses; `race`: RFC 8305 §5 over them, each socket bound to its source; `relay`: stdin/stdout) | yes |
//! | [`metrics`] | the Prometheus families, registered in `mod.rs`: `queries` (per-answer table), `limits`, `rewrites`, `upstreams`, `probes`, `verdicts` (gauges read at scrape time) | pure |
//! | `slots` | connection caps of DNS over TCP and the sidecar: `table` (pure: who gives way, stalled then idle, never busy), the guards in `mod.rs` | pure |
//! | `sync` | `lock`: the crate's one way to lock a mutex (a poisoned lock is still taken) | pure |
//! | [`notify`] | systemd's `sd_notify`: readiness, reload, watchdog | yes |
//! | [`daemon`] | wiring: `listeners` (binding), `probes` (engine, NAT64, STUN), `reload` (all or nothing), `signals`, `error`; run and drain in `mod.rs` | yes |
//! | `fuzzing` | the fuzz targets' entry points, one file per target, and the scene and verdict picker they share (hidden; only `fuzz/` and `tests/` use it) | in-memory |
//! | `testutil` | the builders unit tests share (`cfg(test)`): addresses and snapshots, verdicts, DNS names, records and cache keys | — |
//!
//! Unit tests sit beside their code: `tests.rs` (or `tests_*.rs`) in a
//! module's folder, or a `mod tests` at the end of a small file.
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
