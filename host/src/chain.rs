//! The chain of plugin calls running on this thread: which plugins (those
//! with imports from the registry) are inside a call, the deadline of the
//! outermost call, and what the chain holds until it ends.
//!
//! Kept per thread, because a chain is a stack of nested calls on one thread:
//! plugin A's call reaches plugin B through an import, B's reaches C...
//! - A plugin already in the chain cannot be called again through an import:
//!   that is a cycle, refused at once, however many instances it has.
//! - The outermost call's deadline bounds every call in the chain.
//! - What the chain holds (the providers' lanes, pinned so that one chain
//!   sees one generation of each provider) is let go when the outermost call
//!   returns.

use std::any::Any;
use std::cell::RefCell;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Chain {
    /// Plugins inside a call, outermost first.
    entered: Vec<String>,
    /// When the outermost call must be done.
    deadline: Option<Instant>,
    /// Held until the outermost call returns, by key.
    held: Vec<(usize, Box<dyn Any>)>,
}

thread_local! {
    static CHAIN: RefCell<Chain> = RefCell::default();
}

/// Marks `plugin` as inside a call until the guard drops. The first plugin
/// entered sets the chain's deadline to `timeout` from now.
pub(crate) fn enter(plugin: &str, timeout: Duration) -> Entered {
    CHAIN.with_borrow_mut(|chain| {
        if chain.entered.is_empty() {
            chain.deadline = Instant::now().checked_add(timeout);
        }
        chain.entered.push(plugin.to_string());
    });
    Entered { _private: () }
}

/// A plugin's place in the chain; leaving the outermost lets go of all the
/// chain held.
pub(crate) struct Entered {
    _private: (),
}

impl Drop for Entered {
    fn drop(&mut self) {
        let released = CHAIN.with_borrow_mut(|chain| {
            chain.entered.pop();
            if chain.entered.is_empty() {
                chain.deadline = None;
                std::mem::take(&mut chain.held)
            } else {
                Vec::new()
            }
        });
        // Dropped outside the borrow: letting go may run other code.
        drop(released);
    }
}

/// The plugins inside a call on this thread, outermost first, if `plugin`
/// is among them (a cycle).
pub(crate) fn cycle_to(plugin: &str) -> Option<Vec<String>> {
    CHAIN.with_borrow(|chain| {
        chain
            .entered
            .iter()
            .any(|p| p == plugin)
            .then(|| chain.entered.clone())
    })
}

/// How long the chain may still run, if a chain is running.
pub(crate) fn time_left() -> Option<Duration> {
    CHAIN.with_borrow(|chain| {
        chain
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    })
}

/// Runs `f` on what the chain holds under `key`, made by `make` if it holds
/// nothing there yet. Outside a chain nothing is held: `f` gets a fresh one,
/// dropped after.
pub(crate) fn with_held<T: 'static, R>(
    key: usize,
    make: impl FnOnce() -> Result<T, crate::error::Error>,
    f: impl FnOnce(&mut T) -> R,
) -> Result<R, crate::error::Error> {
    let in_chain = CHAIN.with_borrow(|chain| !chain.entered.is_empty());
    if !in_chain {
        return Ok(f(&mut make()?));
    }
    let mut held = CHAIN.with_borrow_mut(|chain| {
        let at = chain.held.iter().position(|(k, _)| *k == key)?;
        Some(chain.held.swap_remove(at).1)
    });
    if held.is_none() {
        held = Some(Box::new(make()?));
    }
    let mut held = held.expect("just made");
    let result = f(held.downcast_mut::<T>().expect("held under its own key"));
    CHAIN.with_borrow_mut(|chain| chain.held.push((key, held)));
    Ok(result)
}
