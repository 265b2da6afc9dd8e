//! The probe engine (pure) and its driver (sockets).
//!
//! | module | owns | I/O |
//! |---|---|---|
//! | [`stun`] | STUN Binding request and response codec (RFC 8489) | no |

pub mod stun;
