//! The probe engine (pure) and its driver (sockets).
//!
//! | module | owns | I/O |
//! |---|---|---|
//! | [`engine`] | schedule, verdicts with hysteresis, RTT EWMA, flags | no |
//! | `learned` | the learned-destination table: LRU, tries, token bucket | no |
//! | [`verdicts`] | the immutable snapshot the engine publishes | no |
//! | [`stun`] | STUN Binding request and response codec (RFC 8489) | no |
//! | [`nat64`] | NAT64 prefix discovery and RFC 6052 address mapping | no |
//! | [`driver`] | TCP handshakes and UDP exchanges bound to a source | yes |

pub mod driver;
pub mod engine;
mod learned;
pub mod nat64;
pub mod stun;
pub mod verdicts;
