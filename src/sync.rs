//! How the crate locks a `std::sync::Mutex`: a poisoned lock is still taken.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, taking the guard even when a thread panicked while holding it.
///
/// Only for data that stays whole if its holder panics: the crate's tables
/// (reply cache, flights, failure cache, connection slots, an upstream's
/// RTT, the receive buffers) change in steps that leave them consistent at
/// every point a panic could come from. Refusing the lock instead would
/// turn one panicked task into a daemon that answers nothing. Release
/// builds abort on panic (`panic = "abort"`), so poisoning happens only in
/// tests and debug builds.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
