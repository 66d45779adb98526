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

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::{deadline_ticks, ticks_now};

#[derive(Default)]
struct Chain {
    /// Plugins inside a call, outermost first, by the name their program
    /// shares with its generations: a plugin is known by that name's
    /// address. Each stays alive while it is here (it is inside a call).
    entered: Vec<*const str>,
    /// When the outermost call must be done, on the epoch tickers' clock
    /// ([`ticks_now`]).
    deadline: Option<u64>,
    /// Held until the outermost call returns, in the order taken: the
    /// providers' lanes, pinned.
    held: Vec<Held>,
}

/// What a chain holds under a key until its outermost call returns: a
/// value, and what lets it go. (A provider's lane, pinned: this module sits
/// below the one that pins, so it keeps a number and a function, not the
/// lane.) Let go in the reverse order of taking, so what was taken later,
/// and reached through what was taken earlier, goes first.
#[derive(Clone, Copy)]
pub(crate) struct Held {
    /// What it is held under (see [`with_held`]).
    pub(crate) key: usize,
    pub(crate) value: usize,
    pub(crate) release: fn(key: usize, value: usize),
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
        chain.entered.push(Arc::as_ptr(plugin));
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
        // Let go one at a time, last taken first, each outside the borrow
        // (letting go may run other code); the vector keeps its room for the
        // next chain.
        while let Some(held) = CHAIN.with_borrow_mut(|chain| {
            chain.deadline = None;
            chain.held.pop()
        }) {
            (held.release)(held.key, held.value);
        }
    }
}

/// The plugins inside a call on this thread, outermost first, if `plugin`
/// (a name its program shares, see [`enter`]) is among them: a cycle.
pub(crate) fn cycle_to(plugin: &str) -> Option<Vec<String>> {
    CHAIN.with_borrow(|chain| {
        let here = chain
            .entered
            .iter()
            .any(|p| std::ptr::addr_eq(*p, plugin as *const str));
        // SAFETY: every name entered belongs to a plugin inside a call on
        // this thread, so it is alive.
        here.then(|| {
            chain
                .entered
                .iter()
                .map(|p| unsafe { &**p }.to_string())
                .collect()
        })
    })
}

/// `ticks`, or the epoch ticks the chain of calls on this thread has left
/// if fewer: an instance started inside a chain (a provider recovering
/// from a fault, say) runs its start-up code within the chain's deadline,
/// not a whole deadline of its own.
pub(crate) fn capped(ticks: u64) -> u64 {
    CHAIN.with_borrow(|chain| left(chain.deadline).map_or(ticks, |left| ticks.min(left)))
}

/// How many epoch ticks a chain with this deadline may still run: at least
/// one, since the tickers' clock and an engine's epoch may be a tick apart.
fn left(deadline: Option<u64>) -> Option<u64> {
    deadline.map(|d| d.saturating_sub(ticks_now()).max(1))
}

/// Runs `f` on the value the chain holds under `key`, taken with `take`
/// (which must hold it under `key`) if it holds nothing there yet, and with
/// the epoch ticks the chain has left (none outside a chain). Outside a
/// chain nothing is held: what `take` gives is let go after `f`.
pub(crate) fn with_held<R>(
    key: usize,
    take: impl FnOnce() -> Result<Held, crate::error::Failed>,
    f: impl FnOnce(usize, Option<u64>) -> R,
) -> Result<R, crate::error::Failed> {
    let found = CHAIN.with_borrow(|chain| {
        if chain.entered.is_empty() {
            return None;
        }
        let held = chain.held.iter().find(|h| h.key == key).copied();
        Some((held, left(chain.deadline)))
    });
    match found {
        None => {
            let held = ReleaseOnDrop(take()?);
            Ok(f(held.0.value, None))
        }
        Some((Some(held), left)) => Ok(f(held.value, left)),
        Some((None, left)) => {
            let held = take()?;
            debug_assert_eq!(held.key, key, "held under another key than looked up");
            // Kept before `f` runs: `f` may reach this chain again (a nested
            // call), and what it takes must go before this.
            CHAIN.with_borrow_mut(|chain| chain.held.push(held));
            Ok(f(held.value, left))
        }
    }
}

/// Lets go of what it holds when dropped, unwinding included.
struct ReleaseOnDrop(Held);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        (self.0.release)(self.0.key, self.0.value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_a_chain_start_up_gets_what_the_chain_has_left() {
        let whole = deadline_ticks(Duration::from_secs(3600));
        assert_eq!(capped(whole), whole, "outside a chain");
        let plugin: Arc<str> = "p".into();
        {
            let _entered = enter(&plugin, Duration::from_millis(100));
            let left = capped(whole);
            assert!(left <= deadline_ticks(Duration::from_millis(100)), "{left}");
            assert_eq!(capped(1), 1, "less than the chain has left");
        }
        assert_eq!(capped(whole), whole, "the chain is over");
    }
}
