//! The DNS stub: wire format, cache, upstream forwarding and the listeners.

pub mod cache;
pub mod dns64;
pub mod flight;
pub mod rewrite;
pub mod server;
pub mod upstream;
pub mod wire;
