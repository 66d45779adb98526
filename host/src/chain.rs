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
use std::sync::Arc;
use std::time::Duration;

use crate::engine::{deadline_ticks, ticks_now};

#[derive(Default)]
struct Chain {
    /// Plugins inside a call, outermost first.
    entered: Vec<Arc<str>>,
    /// When the outermost call must be done, on the epoch tickers' clock
    /// ([`ticks_now`]).
    deadline: Option<u64>,
    /// Held until the outermost call returns, by key: the providers' lanes,
    /// pinned (boxed, since this module sits below the one that makes
    /// them).
    held: Vec<(usize, Box<dyn Any>)>,
}

thread_local! {
    static CHAIN: RefCell<Chain> = RefCell::default();
}

/// Marks `plugin` as inside a call until the guard drops. The first plugin
/// entered sets the chain's deadline to `timeout` from now.
pub(crate) fn enter(plugin: &Arc<str>, timeout: Duration) -> Entered {
    CHAIN.with_borrow_mut(|chain| {
        if chain.entered.is_empty() {
            chain.deadline = Some(ticks_now().saturating_add(deadline_ticks(timeout)));
        }
        chain.entered.push(plugin.clone());
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
        let outermost = CHAIN.with_borrow_mut(|chain| {
            chain.entered.pop();
            chain.entered.is_empty()
        });
        if !outermost {
            return;
        }
        // Let go one lane at a time, each outside the borrow (letting go may
        // run other code); the vector keeps its room for the next chain.
        while let Some(lane) = CHAIN.with_borrow_mut(|chain| {
            chain.deadline = None;
            chain.held.pop()
        }) {
            drop(lane);
        }
    }
}

/// The plugins inside a call on this thread, outermost first, if `plugin`
/// is among them (a cycle).
pub(crate) fn cycle_to(plugin: &str) -> Option<Vec<String>> {
    CHAIN.with_borrow(|chain| {
        chain
            .entered
            .iter()
            .any(|p| **p == *plugin)
            .then(|| chain.entered.iter().map(|p| p.to_string()).collect())
    })
}

/// How many epoch ticks the chain may still run, if a chain is running: at
/// least one, since the tickers' clock and an engine's epoch may be a tick
/// apart.
pub(crate) fn ticks_left() -> Option<u64> {
    CHAIN.with_borrow(|chain| chain.deadline.map(|d| d.saturating_sub(ticks_now()).max(1)))
}

/// Runs `f` on what the chain holds under `key`, made by `make` if it
/// holds nothing there yet. Outside a chain nothing is held: `f` gets a
/// fresh one, dropped after.
pub(crate) fn with_held<T: 'static, R>(
    key: usize,
    make: impl FnOnce() -> Result<T, crate::error::Error>,
    f: impl FnOnce(&mut T) -> R,
) -> Result<R, crate::error::Error> {
    let taken = CHAIN.with_borrow_mut(|chain| {
        if chain.entered.is_empty() {
            return None;
        }
        let at = chain.held.iter().position(|(k, _)| *k == key);
        Some(at.map(|at| chain.held.swap_remove(at).1))
    });
    let Some(held) = taken else {
        return Ok(f(&mut make()?));
    };
    let mut held = match held {
        Some(held) => held,
        None => Box::new(make()?),
    };
    // Taken out while `f` runs: `f` may reach this chain again (a nested
    // call), and the chain must not be borrowed then.
    let result = match held.downcast_mut::<T>() {
        Some(value) => f(value),
        None => unreachable!("only a `T` is held under its key"),
    };
    CHAIN.with_borrow_mut(|chain| chain.held.push((key, held)));
    Ok(result)
}
