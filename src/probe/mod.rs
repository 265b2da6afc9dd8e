//! The probe engine (pure) and its driver (sockets).

pub mod driver;
pub mod engine;
pub mod known64;
mod learned;
pub mod nat64;
pub mod stun;
pub mod syn_sent;
pub mod tls;
pub mod verdicts;
