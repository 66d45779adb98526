//! Locks whose data stays consistent even if a holder panicked: every update
//! under them is a single assignment or push, so a poisoned lock is taken as
//! it is rather than spreading the panic to every later caller.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, ignoring poisoning.
pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
