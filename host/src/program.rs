//! Programs: a named plugin as it runs. There is one program per plugin
//! name, and it outlives every generation put in it. It holds the generation
//! serving now, which of its exports serves which slot (its *routes*), and
//! the *lanes* calls run on: one instance each, shared by every interface the
//! plugin exports, so what a call through one interface leaves in the
//! plugin's memory the next call through another sees.
//!
//! Publication is one atomic step. `published` (generation and routes
//! together) is swapped through an [`ArcSwapOption`] and `publications`
//! counts the swaps; every slot of the plugin moves at once, and a call sees
//! either the old generation with the old routes or the new with the new.
//! Each lane keeps, under the lock a call takes anyway (a store serves one
//! call at a time), the publication its calls run on and its instance. A call
//! that finds `publications` moved on catches its lane up first; a call
//! already running keeps its own, and the lane catches up (freeing the old
//! instance) as the call lets it go.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;

use crate::admission::Admission;
use crate::chain::Held;
use crate::error::{Error, Failed};
use crate::generation::{Generation, Resident};
use crate::lane_lock::{LaneGuard as MutexGuard, LaneLock};
use crate::limits::MAX_INSTANCES;
use crate::loader::ExportedInterface;
use crate::metrics::{LaneMetrics, Totals};
use crate::sandbox::PluginScope;
use crate::version::Line;

/// Identifies a slot within the registry.
pub(crate) type SlotId = u64;

/// What a program serves: a generation, and which of its exports serves
/// which slot. Replaced whole, never changed in place.
pub(crate) struct Published {
    pub(crate) generation: Arc<Generation>,
    pub(crate) routes: Vec<Route>,
}

/// One slot served by one export of a generation.
#[derive(Clone, Debug)]
pub(crate) struct Route {
    pub(crate) slot: SlotId,
    pub(crate) line: Line,
    pub(crate) export: usize,
}

impl Published {
    /// The export serving `slot`, if this publication serves it.
    #[inline]
    pub(crate) fn export_for(&self, slot: SlotId) -> Option<usize> {
        self.routes
            .iter()
            .find(|r| r.slot == slot)
            .map(|r| r.export)
    }
}

/// A named plugin as it runs; see the module's documentation.
pub(crate) struct Program {
    name: Arc<str>,
    /// Its place among the registry's programs: slots of a lower rank come
    /// first in lookups.
    rank: usize,
    published: ArcSwapOption<Published>,
    publications: AtomicU64,
    /// How many lanes the published generation may use.
    width: AtomicUsize,
    /// How long a call waits for a busy lane: the published deadline.
    wait_nanos: AtomicU64,
    /// Where a call waits when every lane in use is busy.
    next_turn: AtomicUsize,
    lanes: Box<[LaneCell]>,
    /// How many lanes (from the first) have ever been taken: the others
    /// hold nothing, and a publication need not look at them.
    touched: AtomicUsize,
    /// Held while a change to this program is prepared and published, so
    /// that changes happen one at a time and generation numbers only grow.
    pub(crate) changing: Mutex<()>,
    /// What every generation of the plugin shares.
    scope: PluginScope,
    /// Reloads taken and refused.
    reloads: AtomicU64,
    rejected: AtomicU64,
    /// Whether calls are counted (see [`Registry::without_metrics`](crate::Registry::without_metrics)).
    counting: bool,
    /// Async calls' queue (see [`Program::admission`]).
    admission: Arc<Admission>,
    /// Every version line the plugin has served, with the functions it
    /// served there last: what a later version must keep (see
    /// [`Program::served`]).
    served: Mutex<Vec<(Line, ExportedInterface)>>,
}

/// One lane, on a cache line of its own: two threads calling through two
/// lanes never write the same line.
#[repr(align(128))]
struct LaneCell {
    /// The token of the thread holding the lane, or 0: lets a thread see
    /// that it is waiting for itself.
    owner: AtomicU64,
    lane: LaneLock<Lane>,
    /// What calls on this lane counted; written only by its holder.
    metrics: LaneMetrics,
}

/// One instance's worth of a program: the publication its calls run on, and
/// its instance.
#[derive(Default)]
pub(crate) struct Lane {
    /// The value of `publications` this reflects.
    seen: u64,
    published: Option<Arc<Published>>,
    /// Its instance: none until the first call, and none after a call
    /// failed in it (an instance that trapped must not run again).
    resident: Resident,
}

/// A lane held by this thread. Letting it go catches the lane up with any
/// publication that came meanwhile, so an old instance is freed at once.
pub(crate) struct HeldLane<'a> {
    program: &'a Program,
    cell: &'a LaneCell,
    guard: MutexGuard<'a, Lane>,
}

/// Why no lane could be had.
pub(crate) enum NoLane {
    /// This thread holds every lane already.
    Reentered { instances: usize },
    /// Every lane stayed busy for the whole wait.
    Busy { waited: Duration },
}

impl Program {
    pub(crate) fn new(name: &str, rank: usize, scope: PluginScope, counting: bool) -> Self {
        Program {
            name: name.into(),
            rank,
            published: ArcSwapOption::empty(),
            publications: AtomicU64::new(0),
            width: AtomicUsize::new(1),
            wait_nanos: AtomicU64::new(0),
            next_turn: AtomicUsize::new(0),
            touched: AtomicUsize::new(1),
            lanes: (0..MAX_INSTANCES)
                .map(|_| LaneCell {
                    owner: AtomicU64::new(0),
                    lane: LaneLock::new(Lane::default()),
                    metrics: LaneMetrics::default(),
                })
                .collect(),
            changing: Mutex::new(()),
            scope,
            reloads: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            counting,
            admission: Admission::new(),
            served: Mutex::new(Vec::new()),
        }
    }

    /// Every version line the plugin has served, with the functions it
    /// served there last. A removal does not end it: handles held across a
    /// removal (the seed's reload is a remove and an add) still call those
    /// functions when the name is added again.
    pub(crate) fn served(&self) -> Vec<(Line, ExportedInterface)> {
        crate::sync::lock(&self.served).clone()
    }

    /// Forgets the lines served for which `forget` is true (see
    /// [`Registry::forget_contract`](crate::Registry::forget_contract));
    /// true if there was one.
    pub(crate) fn forget_served(&self, forget: impl Fn(&Line) -> bool) -> bool {
        let mut served = crate::sync::lock(&self.served);
        let before = served.len();
        served.retain(|(line, _)| !forget(line));
        served.len() != before
    }

    /// Notes that `exported` now serves `line`.
    pub(crate) fn note_served(&self, line: &Line, exported: ExportedInterface) {
        let mut served = crate::sync::lock(&self.served);
        match served.iter_mut().find(|(l, _)| l == line) {
            Some((_, old)) => *old = exported,
            None => served.push((line.clone(), exported)),
        }
    }

    /// Async calls' queue: they wait there, holding no thread, for the
    /// plugin's tasks on the blocking pool to make them.
    pub(crate) fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    /// What every generation of this plugin shares.
    pub(crate) fn scope(&self) -> &PluginScope {
        &self.scope
    }

    /// Frees the instances no call is using (they start again when a call
    /// needs one), and tells how many it freed.
    pub(crate) fn free_idle(&self) -> usize {
        let mut freed = 0;
        for cell in self.lanes.iter() {
            if let Some(mut lane) = cell.lane.try_lock() {
                freed += usize::from(lane.resident.live.take().is_some());
            }
        }
        if let Some(published) = self.current() {
            freed += usize::from(published.generation.drop_spare());
        }
        freed
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The name, as its generations share it: a plugin in a chain of calls
    /// is known by its address (see [`chain::cycle_to`](crate::chain::cycle_to)).
    pub(crate) fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    pub(crate) fn rank(&self) -> usize {
        self.rank
    }

    /// What the next call will run on.
    pub(crate) fn current(&self) -> Option<Arc<Published>> {
        self.published.load_full()
    }

    /// Runs `f` on the current publication, without touching an instance.
    pub(crate) fn peek<R>(&self, f: impl FnOnce(&Published) -> R) -> Option<R> {
        self.published.load().as_deref().map(f)
    }

    /// Publishes `next` (or empties the program) in one atomic step and
    /// returns what was there. Never waits for a call in flight.
    pub(crate) fn publish(&self, next: Option<Arc<Published>>) -> Option<Arc<Published>> {
        if let Some(next) = &next {
            let generation = &next.generation;
            self.width.store(generation.instances(), Ordering::Relaxed);
            self.admission.set_instances(generation.instances());
            let wait = generation.limits().timeout.as_nanos();
            self.wait_nanos
                .store(wait.try_into().unwrap_or(u64::MAX), Ordering::Relaxed);
        }
        let previous = self.published.swap(next);
        // SeqCst, with `touch` and the check a call makes after it: either
        // the publisher sees a lane newly taken, or its call sees this
        // publication (free on x86, where this is a locked add anyway).
        self.publications.fetch_add(1, Ordering::SeqCst);
        // Lanes with no call in flight let go of their old instance now
        // rather than at their next call. Only lanes ever taken can hold
        // one (a lane taken meanwhile catches up when its call ends), and
        // each lock costs: a plugin with one instance has one to look at,
        // not all sixteen.
        let touched = self.touched.load(Ordering::SeqCst).min(self.lanes.len());
        for cell in &self.lanes[..touched] {
            if let Some(mut lane) = cell.lane.try_lock() {
                if lane.published.is_some() {
                    self.catch_up(&mut lane);
                }
            }
        }
        previous
    }

    #[cold]
    fn catch_up(&self, lane: &mut Lane) {
        // Read the count before the pointer: a swap between the two is then
        // seen again by the next call, never missed.
        lane.seen = self.publications.load(Ordering::Acquire);
        let newest = self.published.load_full();
        let same_generation = match (&lane.published, &newest) {
            (Some(a), Some(b)) => Arc::ptr_eq(&a.generation, &b.generation),
            (None, None) => true,
            _ => false,
        };
        if !same_generation {
            lane.resident = Resident::default();
        }
        lane.published = newest;
    }

    /// A free lane among those in use; else waits for one that this thread
    /// does not hold, at most the published deadline.
    #[inline(always)]
    pub(crate) fn acquire(&self) -> Result<HeldLane<'_>, NoLane> {
        let (index, guard) = self.take_lane()?;
        let cell = &self.lanes[index];
        Ok(self.hold(cell, guard, thread_token()))
    }

    /// Pins a lane for a chain of calls: it stays locked, serving the
    /// generation it has now, until [`Program::unpin`]. What a chain holds
    /// for this program (see [`chain::with_held`](crate::chain::with_held)).
    pub(crate) fn pin(self: &Arc<Self>) -> Result<Held, NoLane> {
        let (index, guard) = self.take_lane()?;
        // Locked until `unpin` unlocks it; its contents are reached through
        // `Program::serve_pinned` meanwhile.
        let lane = MutexGuard::leak(guard);
        self.lanes[index]
            .owner
            .store(thread_token(), Ordering::Relaxed);
        if lane.seen != self.publications.load(Ordering::SeqCst) {
            self.catch_up(lane);
        }
        // The program stays alive until `unpin`, whatever happens to the
        // registry and the plugins meanwhile: the pin holds a reference.
        let key = Arc::into_raw(self.clone()) as usize;
        Ok(Held {
            key,
            value: index,
            release: Program::unpin,
        })
    }

    /// Runs `f` for `slot` on the generation of lane `index`, pinned by
    /// [`Program::pin`] on this thread; `missing()` if it does not serve the
    /// slot.
    pub(crate) fn serve_pinned<R>(
        &self,
        index: usize,
        slot: SlotId,
        f: impl FnOnce(&Generation, usize, &mut Resident) -> Result<R, Failed>,
        missing: impl FnOnce() -> Failed,
    ) -> Result<R, Failed> {
        let cell = &self.lanes[index];
        debug_assert!(cell.lane.is_locked());
        // SAFETY: the lane was locked by `pin` on this thread and stays so
        // until its chain ends (`unpin`), after every call made through it;
        // a chain runs on one thread, and a lane serves one call at a time.
        let lane = unsafe { &mut *cell.lane.data_ptr() };
        let metrics = self.counting.then_some(&cell.metrics);
        serve_on(lane, metrics, slot, f, missing)
    }

    /// Lets go of lane `index` of the program at `key`, pinned by
    /// [`Program::pin`]: the end of a chain. The lane catches up with any
    /// publication that came meanwhile, so an old instance is freed at once.
    fn unpin(key: usize, index: usize) {
        // SAFETY: `key` came from `Arc::into_raw` in `pin`, and each pin is
        // let go once: this takes back the reference the pin held.
        let program = unsafe { Arc::from_raw(key as *const Program) };
        let cell = &program.lanes[index];
        // SAFETY: pinned (locked and leaked) by `pin`, on this thread.
        let lane = unsafe { &mut *cell.lane.data_ptr() };
        if std::thread::panicking() {
            lane.resident.live = None;
        }
        if lane.seen != program.publications.load(Ordering::Acquire) {
            program.catch_up(lane);
        }
        cell.owner.store(0, Ordering::Relaxed);
        // SAFETY: locked by `pin`, whose guard was leaked; nothing else
        // unlocks it.
        unsafe { cell.lane.force_unlock() };
    }

    /// Takes a free lane, else waits on one this thread does not hold. The
    /// usual case, a plugin with one instance that is free, is a single
    /// attempt made where the call is (inlined into it).
    #[inline]
    fn take_lane(&self) -> Result<(usize, MutexGuard<'_, Lane>), NoLane> {
        if self.width.load(Ordering::Relaxed) <= 1 {
            if let Some(guard) = self.lanes[0].lane.try_lock() {
                return Ok((0, guard));
            }
        }
        self.take_any_lane()
    }

    /// [`Program::take_lane`] beyond its first attempt.
    #[inline(never)]
    fn take_any_lane(&self) -> Result<(usize, MutexGuard<'_, Lane>), NoLane> {
        let width = self
            .width
            .load(Ordering::Relaxed)
            .clamp(1, self.lanes.len());
        let me = thread_token();
        // Threads start at different lanes, so two callers of a plugin with
        // two instances do not both try the same one first.
        // (A division costs more than the rest of this loop: none for the
        // usual single lane, and none in it.)
        let start = if width == 1 { 0 } else { me as usize % width };
        for i in 0..width {
            let index = if start + i < width {
                start + i
            } else {
                start + i - width
            };
            if let Some(guard) = self.lanes[index].lane.try_lock() {
                self.touch(index);
                return Ok((index, guard));
            }
        }
        let turn = self.next_turn.fetch_add(1, Ordering::Relaxed);
        let index = (0..width)
            .map(|i| (turn + i) % width)
            .find(|&index| self.lanes[index].owner.load(Ordering::Relaxed) != me)
            .ok_or(NoLane::Reentered { instances: width })?;
        // Every lane is busy. Most calls hold a lane for well under a
        // microsecond, so look again a few times, backing off between
        // looks, before sleeping on it. Looking without backing off steals
        // the lock's cache line from its holder at every look, and two
        // threads on one instance made fewer calls than one (0.80-0.86x);
        // with the back-off they make as many (0.98x, BENCHMARKS.md).
        let lane = &self.lanes[index].lane;
        let mut pause = 32;
        while pause <= SPINS {
            for _ in 0..pause {
                std::hint::spin_loop();
            }
            if !lane.is_locked() {
                if let Some(guard) = lane.try_lock() {
                    self.touch(index);
                    return Ok((index, guard));
                }
            }
            pause *= 2;
        }
        let waited = Duration::from_nanos(self.wait_nanos.load(Ordering::Relaxed));
        match lane.try_lock_for(waited) {
            Some(guard) => {
                self.touch(index);
                Ok((index, guard))
            }
            None => Err(NoLane::Busy { waited }),
        }
    }

    /// Counts lane `index` among those ever taken.
    #[inline]
    fn touch(&self, index: usize) {
        if index >= self.touched.load(Ordering::Relaxed) {
            self.touched.fetch_max(index + 1, Ordering::SeqCst);
        }
    }

    #[inline]
    fn hold<'a>(
        &'a self,
        cell: &'a LaneCell,
        guard: MutexGuard<'a, Lane>,
        me: u64,
    ) -> HeldLane<'a> {
        cell.owner.store(me, Ordering::Relaxed);
        HeldLane {
            program: self,
            cell,
            guard,
        }
    }

    /// Runs `f` on the newest generation's export for `slot`, on a lane
    /// already held; `missing()` if nothing serves the slot now.
    #[inline]
    pub(crate) fn serve<R>(
        &self,
        held: &mut HeldLane<'_>,
        slot: SlotId,
        f: impl FnOnce(&Generation, usize, &mut Resident) -> Result<R, Failed>,
        missing: impl FnOnce() -> Failed,
    ) -> Result<R, Failed> {
        let lane = &mut *held.guard;
        if lane.seen != self.publications.load(Ordering::SeqCst) {
            self.catch_up(lane);
        }
        let metrics = self.counting.then_some(&held.cell.metrics);
        serve_on(lane, metrics, slot, f, missing)
    }

    /// What calls to `slot` counted, over every lane.
    pub(crate) fn totals(&self, slot: SlotId) -> Totals {
        let mut totals = Totals::default();
        for cell in self.lanes.iter() {
            cell.metrics.add_to(slot, &mut totals);
        }
        totals
    }

    /// Counts a reload taken, or refused.
    pub(crate) fn count_reload(&self, taken: bool) {
        let counter = if taken { &self.reloads } else { &self.rejected };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reloads taken and refused so far.
    pub(crate) fn reloads(&self) -> (u64, u64) {
        (
            self.reloads.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
        )
    }

    /// The in-memory state of the instance on a lane held (see
    /// [`Generation::snapshot`]), for migration to a new version.
    pub(crate) fn snapshot(&self, held: &mut HeldLane<'_>) -> Result<Option<Vec<u8>>, Error> {
        let lane = &mut *held.guard;
        if lane.seen != self.publications.load(Ordering::Acquire) {
            self.catch_up(lane);
        }
        match &lane.published {
            Some(published) => published.generation.snapshot(&mut lane.resident),
            None => Ok(None),
        }
    }
}

/// Runs `f` for `slot` on `lane` as it is, without catching up, counting
/// the call in `metrics`; `missing()` if the lane's publication does not
/// serve the slot.
#[inline]
fn serve_on<R>(
    lane: &mut Lane,
    metrics: Option<&LaneMetrics>,
    slot: SlotId,
    f: impl FnOnce(&Generation, usize, &mut Resident) -> Result<R, Failed>,
    missing: impl FnOnce() -> Failed,
) -> Result<R, Failed> {
    let Lane {
        published,
        resident,
        ..
    } = lane;
    let Some((published, export)) = published
        .as_ref()
        .and_then(|p| Some((p, p.export_for(slot)?)))
    else {
        return Err(missing());
    };
    let Some(metrics) = metrics else {
        return f(&published.generation, export, resident);
    };
    let counting = metrics.start(slot);
    // Taken apart and put together again rather than passed on whole: the
    // call below writes its answer field by field, and moving it whole
    // would read it back as one wide load that cannot be forwarded from
    // those stores (~5 ns per call in `perf`).
    match f(&published.generation, export, resident) {
        Ok(answer) => {
            metrics.end(counting, None);
            Ok(answer)
        }
        Err(error) => {
            metrics.end_failed(counting, &error);
            Err(error)
        }
    }
}

impl Drop for HeldLane<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        // A typed closure that panicked mid-call may have left the instance
        // half-way: it is discarded like a trapped one.
        if std::thread::panicking() {
            self.guard.resident.live = None;
        }
        let program = self.program;
        if self.guard.seen != program.publications.load(Ordering::Acquire) {
            program.catch_up(&mut self.guard);
        }
        // Cleared before the lock goes (the guard drops after this).
        self.cell.owner.store(0, Ordering::Relaxed);
    }
}

/// The longest pause (in spin-loop hints) between two looks at a busy
/// lane before the caller sleeps on it: about 8,000 hints in all, ~210 µs
/// here. Half that (~100 µs) left two threads on one instance at 0.95-0.97x
/// one thread's calls, twice that or this 0.97-0.99x, and four threads on
/// two cores lost nothing to the longer spin (BENCHMARKS.md).
const SPINS: usize = 1 << 12;

/// A number for this thread, never 0, cheap to read: a thread-local
/// initialized with a constant (no lazy-initialization check on each read),
/// given its number at the thread's first call.
#[inline]
fn thread_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static TOKEN: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    TOKEN.with(|token| match token.get() {
        0 => {
            let new = NEXT.fetch_add(1, Ordering::Relaxed);
            token.set(new);
            new
        }
        known => known,
    })
}

/// Every program of a registry, so that a full instance pool can be made
/// room in: instances no call is using are the cheapest to give back.
#[derive(Default)]
pub(crate) struct Programs {
    all: Mutex<Vec<Weak<Program>>>,
}

impl Programs {
    pub(crate) fn add(&self, program: &Arc<Program>) {
        crate::sync::lock(&self.all).push(Arc::downgrade(program));
    }

    /// Frees every idle instance; how many.
    pub(crate) fn free_idle(&self) -> usize {
        let programs: Vec<Arc<Program>> = crate::sync::lock(&self.all)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        programs.iter().map(|p| p.free_idle()).sum()
    }
}
