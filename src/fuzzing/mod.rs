//! The fuzz targets' entry points, one per target in `fuzz/fuzz_targets/`
//! (`fuzz/fuzz_targets/NAME.rs` calls `getapr::fuzzing::NAME`), and what
//! they share. `tests/fuzz_corpus.rs` replays every corpus through them, so
//! `cargo test` runs the seeds without cargo-fuzz or a nightly toolchain.
//! Only the targets and tests use this module; no production code does.
//!
//! The targets that run the server's own paths over arbitrary bytes
//! (`query`, `reply_cache`, `tcp_framing`) check what a client relies
//! on, not only that nothing panics: every answer parses, is a reply with
//! the query's ID, fits the size the client can take, and carries no TTL
//! above the upstream's. Nothing here reaches the network: the daemon's
//! state has an upstream pool of no servers, so a cache miss fails at once
//! with SERVFAIL, and a TCP connection runs over an in-memory pipe. The
//! first bytes of each input set the scene (documented per function); the
//! rest is what the outside sends.

mod api;
mod config;
mod ndopt;
mod query;
mod reply_cache;
mod rewrite;
mod scene;
mod stun;
mod tcp_framing;
mod verdicts;
mod wire;

pub use api::api;
pub use config::config;
pub use ndopt::ndopt;
pub use query::query;
pub use reply_cache::reply_cache;
pub use rewrite::rewrite;
pub use stun::stun;
pub use tcp_framing::tcp_framing;
pub use verdicts::verdicts;
pub use wire::wire;
