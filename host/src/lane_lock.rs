//! The lock each call takes on its lane: a mutex whose uncontended release
//! is a plain store.
//!
//! A lane is let go right after a plugin call, whose stores (its stack, the
//! instance's state) are still on their way to memory. A release by a locked
//! instruction, as every general-purpose mutex makes it, waits for all of
//! them to land first: ~9 ns of a ~170 ns call here (BENCHMARKS.md). A plain
//! store is queued behind them instead, and the caller goes on at once.
//!
//! The price is a rare lost wake-up. A waiter marks the lock *parked* before
//! it sleeps; a holder that read the lock as unmarked just before that mark
//! then stores "free" over it, and wakes no one. So a waiter's sleep is
//! never longer than [`POLL_FIRST`] before it looks again, doubling (up to
//! [`POLL_MOST`]) only while each sleep runs its whole length: a lost
//! wake-up costs at most one such sleep, never a deadline. Any
//! holder that reads the mark (every release after it has landed) wakes a
//! waiter as `parking_lot` does, handing the lock over now and then so that
//! no waiter starves.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use parking_lot::lock_api::{GuardNoSend, RawMutex, RawMutexTimed};
use parking_lot_core::{ParkResult, SpinWait, UnparkResult, UnparkToken, DEFAULT_PARK_TOKEN};

/// A mutex over `T` released with a plain store; see the module's
/// documentation.
pub(crate) type LaneLock<T> = parking_lot::lock_api::Mutex<RawLaneLock, T>;

/// A held [`LaneLock`].
pub(crate) type LaneGuard<'a, T> = parking_lot::lock_api::MutexGuard<'a, RawLaneLock, T>;

const LOCKED: u8 = 0b01;
/// Someone may be asleep on the lock.
const PARKED: u8 = 0b10;

/// A release that wakes a waiter and hands it the lock, still locked.
const HANDED_OVER: UnparkToken = UnparkToken(1);
const WOKEN: UnparkToken = UnparkToken(0);

/// The first sleep of a waiter before it looks at the lock again.
const POLL_FIRST: Duration = Duration::from_micros(100);
/// The longest: a waiter on a plugin stuck until its deadline wakes ~100
/// times a second.
const POLL_MOST: Duration = Duration::from_millis(10);

/// The lock's state: [`LOCKED`] and [`PARKED`] bits.
pub(crate) struct RawLaneLock {
    state: AtomicU8,
    /// How many times a waiter went to sleep on this lock: what a test
    /// waits for before it lets go.
    #[cfg(test)]
    sleeps: std::sync::atomic::AtomicUsize,
}

// SAFETY: `try_lock` sets LOCKED only when it was clear (one compare and
// exchange), `lock_slow` likewise or receives the lock still set from its
// holder (`HANDED_OVER`), and only the holder clears it (`unlock`, or its
// release in `unlock_slow`): one holder at a time. Waiters write the state
// too, but only its PARKED bit.
unsafe impl RawMutex for RawLaneLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = RawLaneLock {
        state: AtomicU8::new(0),
        #[cfg(test)]
        sleeps: std::sync::atomic::AtomicUsize::new(0),
    };

    type GuardMarker = GuardNoSend;

    fn lock(&self) {
        if !self.try_lock() {
            self.lock_slow(None);
        }
    }

    #[inline]
    fn try_lock(&self) -> bool {
        let mut state = self.state.load(Ordering::Relaxed);
        while state & LOCKED == 0 {
            match self.state.compare_exchange_weak(
                state,
                state | LOCKED,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => state = now,
            }
        }
        false
    }

    #[inline]
    unsafe fn unlock(&self) {
        if self.state.load(Ordering::Relaxed) == LOCKED {
            // A waiter's PARKED set between the load and this store is lost
            // here; it finds the lock free when its sleep ends (see above).
            self.state.store(0, Ordering::Release);
            return;
        }
        self.unlock_slow();
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) & LOCKED != 0
    }
}

// SAFETY: as for `RawMutex`; a timed lock is `lock_slow` with a deadline.
unsafe impl RawMutexTimed for RawLaneLock {
    type Duration = Duration;
    type Instant = Instant;

    fn try_lock_for(&self, timeout: Duration) -> bool {
        self.try_lock() || self.lock_slow(Instant::now().checked_add(timeout))
    }

    fn try_lock_until(&self, deadline: Instant) -> bool {
        self.try_lock() || self.lock_slow(Some(deadline))
    }
}

impl RawLaneLock {
    /// Waits for the lock until `deadline` (forever for none): spins a
    /// little, then sleeps until woken or until its poll is up.
    #[cold]
    fn lock_slow(&self, deadline: Option<Instant>) -> bool {
        self.wait(deadline, POLL_FIRST)
    }

    /// [`RawLaneLock::lock_slow`], its first sleep `first_poll` long at
    /// most.
    fn wait(&self, deadline: Option<Instant>, first_poll: Duration) -> bool {
        let mut spin = SpinWait::new();
        let mut poll = first_poll;
        loop {
            if self.try_lock() {
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            let state = self.state.load(Ordering::Relaxed);
            if state & LOCKED == 0 {
                // Let go since `try_lock`: no mark on a free lock.
                continue;
            }
            if state & PARKED == 0 && spin.spin() {
                continue;
            }
            if state & PARKED == 0
                && self
                    .state
                    .compare_exchange_weak(
                        state,
                        state | PARKED,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    )
                    .is_err()
            {
                continue;
            }
            let wake_at = match Instant::now().checked_add(poll) {
                Some(at) => Some(deadline.map_or(at, |d| d.min(at))),
                None => deadline,
            };
            match self.park(wake_at) {
                ParkResult::Unparked(HANDED_OVER) => return true,
                // Slept a whole poll: the next one is longer.
                ParkResult::TimedOut => poll = (poll * 2).min(POLL_MOST),
                // Woken by a release, or the lock changed before it slept.
                ParkResult::Unparked(_) | ParkResult::Invalid => poll = first_poll,
            }
            spin.reset();
        }
    }

    /// Sleeps on this lock while it is locked and marked parked.
    fn park(&self, until: Option<Instant>) -> ParkResult {
        let key = self as *const Self as usize;
        let still_held = || self.state.load(Ordering::Relaxed) == LOCKED | PARKED;
        let timed_out = |_, was_last| {
            if was_last {
                self.state.fetch_and(!PARKED, Ordering::Relaxed);
            }
        };
        // Past this point the thread sleeps until woken or `until`.
        let asleep = || {
            #[cfg(test)]
            self.sleeps.fetch_add(1, Ordering::SeqCst);
        };
        // SAFETY: `key` is this lock's address, used by no other kind of
        // parking, and the callbacks neither panic nor park.
        unsafe {
            parking_lot_core::park(
                key,
                still_held,
                asleep,
                timed_out,
                DEFAULT_PARK_TOKEN,
                until,
            )
        }
    }

    /// A release with a waiter marked: wakes one, handing it the lock when
    /// `parking_lot_core` says it is time to be fair.
    #[cold]
    fn unlock_slow(&self) {
        let key = self as *const Self as usize;
        let release = |result: UnparkResult| {
            if result.unparked_threads != 0 && result.be_fair {
                if !result.have_more_threads {
                    self.state.store(LOCKED, Ordering::Relaxed);
                }
                return HANDED_OVER;
            }
            let left = if result.have_more_threads { PARKED } else { 0 };
            self.state.store(left, Ordering::Release);
            WOKEN
        };
        // SAFETY: as in `park`.
        unsafe {
            parking_lot_core::unpark_one(key, release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    /// The lock's state bits, for a test to wait on or to tamper with.
    fn state(lock: &LaneLock<()>) -> &AtomicU8 {
        // SAFETY: only read, or set as a racing holder would.
        unsafe { &lock.raw().state }
    }

    /// Waits (bounded) until a waiter sleeps on `lock`.
    fn until_parked(lock: &LaneLock<()>) {
        // SAFETY: only read.
        let sleeps = unsafe { &lock.raw().sleeps };
        let until = Instant::now() + Duration::from_secs(30);
        while sleeps.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < until, "the waiter never went to sleep");
            std::thread::yield_now();
        }
    }

    /// Runs `take` on `lock` in a thread of its own; the answer tells
    /// whether it got the lock and how long it waited.
    fn waiter(
        lock: &Arc<LaneLock<()>>,
        take: fn(&LaneLock<()>) -> bool,
    ) -> std::sync::mpsc::Receiver<(bool, Duration)> {
        let (answer, answered) = std::sync::mpsc::channel();
        let lock = lock.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let got = take(&lock);
            let _ = answer.send((got, started.elapsed()));
        });
        answered
    }

    /// The waiter's answer; a wait no release ends fails the test, bounded.
    fn answer_of(answered: std::sync::mpsc::Receiver<(bool, Duration)>) -> (bool, Duration) {
        answered
            .recv_timeout(Duration::from_secs(30))
            .expect("the waiter never answered")
    }

    #[test]
    fn threads_take_turns_without_losing_an_update() {
        let counter = Arc::new(LaneLock::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let counter = counter.clone();
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        let mut held = counter.lock();
                        // A read and a write apart: a second holder would
                        // lose updates.
                        let seen = *held;
                        std::hint::black_box(&mut held);
                        *held = seen + 1;
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("a thread panicked");
        }
        assert_eq!(*counter.lock(), 80_000);
    }

    #[test]
    fn waiters_by_every_path_never_hold_it_together() {
        let lock = Arc::new(LaneLock::new(()));
        let inside = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..2u64)
            .map(|_| {
                let (lock, inside) = (lock.clone(), inside.clone());
                std::thread::spawn(move || {
                    for i in 0..100_000u64 {
                        let held = match lock.try_lock() {
                            Some(held) => held,
                            None => lock
                                .try_lock_for(Duration::from_secs(30))
                                .expect("waited 30 s for a lock held for microseconds"),
                        };
                        assert!(!inside.swap(true, Ordering::SeqCst), "two holders");
                        // Now and then a long hold, so that the other
                        // thread goes to sleep and is woken (or handed the
                        // lock) by the release.
                        let hold = Duration::from_micros(if i % 500 == 0 { 300 } else { 0 });
                        let until = Instant::now() + hold;
                        while Instant::now() < until {
                            std::hint::spin_loop();
                        }
                        inside.store(false, Ordering::SeqCst);
                        drop(held);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("a thread panicked");
        }
    }

    #[test]
    fn a_waiter_is_woken_when_the_lock_is_let_go() {
        let lock = Arc::new(LaneLock::new(()));
        let held = lock.lock();
        let answered = waiter(&lock, |lock| {
            // Its polls a minute apart: only the release's wake-up can end
            // its wait in time.
            let deadline = Instant::now() + Duration::from_secs(60);
            // SAFETY: the lock it takes is let go just below.
            let raw = unsafe { lock.raw() };
            let got = raw.wait(Some(deadline), Duration::from_secs(60));
            if got {
                // SAFETY: taken by this thread just above.
                unsafe { raw.unlock() };
            }
            got
        });
        until_parked(&lock);
        drop(held);
        let (got, _) = answer_of(answered);
        assert!(got, "the waiter gave up");
    }

    /// Loses `lock`'s wake-up for the waiter `take` runs in, and tells
    /// how long the waiter then waited for the lock.
    fn lose_the_wake_up(take: fn(&LaneLock<()>) -> bool) -> Duration {
        let lock = Arc::new(LaneLock::new(()));
        let held = lock.lock();
        let answered = waiter(&lock, take);
        until_parked(&lock);
        // The race the plain-store release allows: the holder read the lock
        // unmarked, the waiter marked it and slept, the holder stored
        // "free" over the mark. No one wakes the waiter.
        state(&lock).store(LOCKED, Ordering::Relaxed);
        std::mem::forget(held);
        // SAFETY: held by this thread (its guard forgotten just above).
        unsafe { lock.force_unlock() };
        let (got, waited) = answer_of(answered);
        assert!(got, "the waiter gave up");
        waited
    }

    #[test]
    fn a_lost_wake_up_costs_one_poll_not_the_deadline() {
        let timed = lose_the_wake_up(|lock| {
            let got = lock.try_lock_for(Duration::from_secs(60));
            got.map(parking_lot::lock_api::MutexGuard::leak).is_some()
        });
        let untimed = lose_the_wake_up(|lock| {
            parking_lot::lock_api::MutexGuard::leak(lock.lock());
            true
        });
        // Bounded by the polls (10 ms at most each), not by the 60 s (or
        // the forever) they would wait for; generous for a loaded machine.
        for waited in [timed, untimed] {
            assert!(waited < Duration::from_secs(5), "waited {waited:?}");
        }
    }

    #[test]
    fn a_timed_wait_gives_up_at_its_deadline() {
        let lock = Arc::new(LaneLock::new(()));
        let _held = lock.lock();
        let answered = waiter(&lock, |lock| {
            let got = lock.try_lock_for(Duration::from_millis(30));
            got.map(parking_lot::lock_api::MutexGuard::leak).is_some()
        });
        let (got, waited) = answer_of(answered);
        assert!(!got, "took a lock held all along");
        assert!(
            waited >= Duration::from_millis(30),
            "gave up early: {waited:?}"
        );
        assert_eq!(state(&lock).load(Ordering::Relaxed) & PARKED, 0);
    }
}
