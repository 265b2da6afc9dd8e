//! The DNS stub: wire format, cache, upstream forwarding and the listeners.

pub mod cache;
pub mod flight;
pub mod rewrite;
pub mod server;
pub mod upstream;
pub mod wire;

// The rewrite target's entry point reaches the verdict picker of
// `crate::fuzzing` by this name, until it moves there with the others.
use crate::fuzzing as fuzz;
