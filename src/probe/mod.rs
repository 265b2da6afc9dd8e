//! The probe engine (pure) and its driver (sockets).
pub mod driver;
