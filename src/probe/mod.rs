//! The probe engine (pure) and its driver (sockets).
//!
//! | module | owns | I/O |
//! |---|---|---|
//! | [`stun`] | STUN Binding request and response codec (RFC 8489) | no |
//! | [`nat64`] | NAT64 prefix discovery and RFC 6052 address mapping | no |

pub mod nat64;
pub mod stun;
