//! Stable slots: the host-side place one implementation (an interface and a
//! name) lives at, which every handle to it reaches.
//!
//! A slot publishes its current generation through an [`ArcSwapOption`]: a
//! reload stores a new generation in one atomic step, so every call sees
//! either the old generation or the new one, never a mixture. A call keeps the
//! generation it started on until it returns; the old generation's store (and
//! its memory) is freed when the last such call ends.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};

use arc_swap::ArcSwapOption;

use crate::error::Error;
use crate::generation::{Generation, Live};
use crate::manifest::MAX_INSTANCES;
use crate::sync::lock;
use crate::version::{InterfaceName, Request};

/// The host-side place of one implementation: an interface (within one
/// version line) and a name. It outlives every generation put behind it.
///
/// Two views of the current generation, kept apart so the call path takes a
/// single uncontended lock:
/// - `published` is what the registry last put here, swapped atomically, with
///   `publications` counting the swaps;
/// - each *lane* holds, under the lock a call takes anyway (a store serves
///   one call at a time), the generation its calls run on and an instance of
///   it. A call that finds `publications` moved on catches its lane up first:
///   from then on it runs on the new generation. A call already running keeps
///   its own, and catches up (freeing the old instance) as it finishes.
///
/// A plugin may serve several calls at once, one per lane, up to the
/// instances its manifest grants.
pub(crate) struct Slot {
    name: String,
    /// The interface this slot last served, for messages once it is empty.
    interface: Mutex<InterfaceName>,
    published: ArcSwapOption<Generation>,
    publications: AtomicU64,
    /// How many lanes the published generation may use.
    width: AtomicUsize,
    /// Where a call waits when every lane in use is busy.
    next_lane: AtomicUsize,
    lanes: Box<[Mutex<Lane>]>,
}

/// One instance's worth of a slot: the generation calls run on, and its
/// instance.
#[derive(Default)]
pub(crate) struct Lane {
    /// The value of `publications` this reflects.
    seen: u64,
    generation: Option<Arc<Generation>>,
    /// `None` until the first call, and after a call failed in the instance:
    /// an instance that trapped must not run again.
    live: Option<Live>,
}

impl Slot {
    pub(crate) fn new(name: &str, interface: InterfaceName) -> Self {
        Slot {
            name: name.to_string(),
            interface: Mutex::new(interface),
            published: ArcSwapOption::empty(),
            publications: AtomicU64::new(0),
            width: AtomicUsize::new(1),
            next_lane: AtomicUsize::new(0),
            lanes: (0..MAX_INSTANCES).map(|_| Mutex::default()).collect(),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn interface(&self) -> InterfaceName {
        lock(&self.interface).clone()
    }

    /// The generation the next call will run on.
    pub(crate) fn current(&self) -> Option<Arc<Generation>> {
        self.published.load_full()
    }

    /// Publishes `generation` (or empties the slot) in one atomic step and
    /// returns what was there. Never waits for a call in flight.
    pub(crate) fn replace(&self, generation: Option<Arc<Generation>>) -> Option<Arc<Generation>> {
        if let Some(g) = &generation {
            *lock(&self.interface) = g.interface().clone();
            self.width.store(g.instances, Ordering::Relaxed);
        }
        let previous = self.published.swap(generation);
        self.publications.fetch_add(1, Ordering::AcqRel);
        // Lanes with no call in flight let go of their old instance now
        // rather than at their next call.
        for lane in self.lanes.iter() {
            if let Ok(mut lane) = lane.try_lock() {
                self.catch_up(&mut lane);
            }
        }
        previous
    }

    fn catch_up(&self, lane: &mut Lane) {
        // Read the count before the pointer: a swap between the two is then
        // seen again by the next call, never missed.
        lane.seen = self.publications.load(Ordering::Acquire);
        let newest = self.published.load_full();
        let same = match (&lane.generation, &newest) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same {
            lane.live = None;
            lane.generation = newest;
        }
    }

    /// A free lane among those in use, or else a turn to wait on one.
    pub(crate) fn acquire(&self) -> MutexGuard<'_, Lane> {
        let width = self
            .width
            .load(Ordering::Relaxed)
            .clamp(1, self.lanes.len());
        for lane in &self.lanes[..width] {
            match lane.try_lock() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(poisoned)) => return recover(lane, poisoned),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let turn = self.next_lane.fetch_add(1, Ordering::Relaxed) % width;
        let lane = &self.lanes[turn];
        lane.lock()
            .unwrap_or_else(|poisoned| recover(lane, poisoned))
    }

    /// Runs `f` on a lane's generation and instance, under the lane's lock.
    pub(crate) fn with<R>(
        &self,
        f: impl FnOnce(&Generation, &mut Option<Live>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let mut lane = self.acquire();
        let result = self.serve(&mut lane, f);
        self.settle(&mut lane);
        result
    }

    /// Runs `f` on the newest generation, on a lane already held.
    pub(crate) fn serve<R>(
        &self,
        lane: &mut Lane,
        f: impl FnOnce(&Generation, &mut Option<Live>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        if lane.seen != self.publications.load(Ordering::Acquire) {
            self.catch_up(lane);
        }
        let Lane {
            generation, live, ..
        } = lane;
        match generation {
            Some(generation) => f(generation, live),
            None => Err(Error::Unavailable {
                interface: self.interface().to_string(),
                name: self.name.clone(),
            }),
        }
    }

    /// Before a lane is let go: if a reload came while it was held, its old
    /// instance goes now.
    pub(crate) fn settle(&self, lane: &mut Lane) {
        if lane.seen != self.publications.load(Ordering::Acquire) {
            self.catch_up(lane);
        }
    }

    /// Runs `f` on the published generation, without touching an instance.
    pub(crate) fn peek<R>(&self, f: impl FnOnce(&Generation) -> R) -> Option<R> {
        self.published.load().as_deref().map(f)
    }
}

/// A typed closure panicked mid-call and poisoned its lane: the instance it
/// ran in is discarded like a trapped one.
fn recover<'a>(
    lane: &'a Mutex<Lane>,
    poisoned: PoisonError<MutexGuard<'a, Lane>>,
) -> MutexGuard<'a, Lane> {
    let mut guard = poisoned.into_inner();
    guard.live = None;
    lane.clear_poison();
    guard
}

/// What a [`Registry::get`](crate::Registry::get) handle points at: the slot
/// that currently serves its request, re-pointed by the registry.
pub(crate) struct Binding {
    request: Request,
    pub(crate) slot: ArcSwapOption<Slot>,
}

impl Binding {
    pub(crate) fn new(request: Request) -> Self {
        Binding {
            request,
            slot: ArcSwapOption::empty(),
        }
    }

    pub(crate) fn request(&self) -> &Request {
        &self.request
    }

    pub(crate) fn point_at(&self, slot: Option<Arc<Slot>>) {
        self.slot.store(slot);
    }
}
