//! Per-plugin metrics, cheap enough to be always on: calls and failed calls
//! (by fault kind) and latency, counted per lane and per interface, read
//! without stopping anyone.
//!
//! Only the thread holding a lane writes that lane's counters, so each is a
//! plain load and store (no locked instruction) on a cache line no one else
//! writes: no contention between callers, and readers see whole values.
//! Latency is sampled per lane and interface, into a log-scale histogram
//! (two buckets per power of two): one call in [`SAMPLE`], and the first
//! call in each epoch tick (5 ms) besides, so a busy plugin pays for reading
//! the clock only now and then while a quiet one has every call timed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Fault};

/// One call in this many is timed (besides the first of each epoch tick).
pub const SAMPLE: u64 = 64;

/// Interfaces of one plugin counted apart per lane; more share the last.
const TRACKED: usize = 4;

/// Histogram buckets: two per power of two of nanoseconds, up to 2^40 ns.
const BUCKETS: usize = 82;

/// The fault kinds, in the order counters keep them.
pub(crate) const FAULTS: [Fault; 5] = [
    Fault::Trap,
    Fault::Timeout,
    Fault::StackOverflow,
    Fault::Limit,
    Fault::Host,
];

/// One lane's counters.
pub(crate) struct LaneMetrics {
    slots: [SlotCounters; TRACKED],
}

struct SlotCounters {
    /// The slot id + 1 these count for; 0 while unused.
    slot: AtomicU64,
    calls: AtomicU64,
    failed: [AtomicU64; 5],
    latency: [AtomicU64; BUCKETS],
    max_ns: AtomicU64,
    /// Sum of the sampled latencies.
    sum_ns: AtomicU64,
    /// The epoch tick of the last call timed.
    timed_tick: AtomicU64,
}

impl Default for LaneMetrics {
    fn default() -> Self {
        LaneMetrics {
            slots: std::array::from_fn(|_| SlotCounters {
                slot: AtomicU64::new(0),
                calls: AtomicU64::new(0),
                failed: Default::default(),
                latency: std::array::from_fn(|_| AtomicU64::new(0)),
                max_ns: AtomicU64::new(0),
                sum_ns: AtomicU64::new(0),
                timed_tick: AtomicU64::new(u64::MAX),
            }),
        }
    }
}

/// A call being counted: started with [`LaneMetrics::start`], ended with
/// [`LaneMetrics::end`].
pub(crate) struct Counting {
    index: usize,
    started: Option<Instant>,
}

impl LaneMetrics {
    /// Counts a call to `slot` beginning; times it if its turn has come.
    #[inline]
    pub(crate) fn start(&self, slot: u64) -> Counting {
        let index = self.index_of(slot);
        let counters = &self.slots[index];
        let calls = bump(&counters.calls, 1);
        // The tick clock is one load; the system clock costs ~25 ns here.
        let tick = crate::engine::ticks_now();
        let timed =
            calls.is_multiple_of(SAMPLE) || counters.timed_tick.load(Ordering::Relaxed) != tick;
        if timed {
            counters.timed_tick.store(tick, Ordering::Relaxed);
        }
        Counting {
            index,
            started: timed.then(Instant::now),
        }
    }

    /// Counts how the call ended.
    #[inline]
    pub(crate) fn end(&self, counting: Counting, failed: Option<&Error>) {
        let counters = &self.slots[counting.index];
        if let Some(started) = counting.started {
            let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            bump(&counters.latency[bucket(ns)], 1);
            if ns > counters.max_ns.load(Ordering::Relaxed) {
                counters.max_ns.store(ns, Ordering::Relaxed);
            }
            bump(&counters.sum_ns, ns);
        }
        if let Some(error) = failed {
            let fault = match error {
                Error::Call { fault, .. } => Some(*fault),
                Error::Import(import) => import.fault.or(Some(Fault::Host)),
                Error::Instantiate { .. } => Some(Fault::Host),
                _ => None,
            };
            if let Some(at) = fault.and_then(|f| FAULTS.iter().position(|k| *k == f)) {
                bump(&counters.failed[at], 1);
            }
        }
    }

    /// Counts how a call ended that failed. One refused before it reached
    /// the plugin (a function it lacks, arguments or bindings that do not
    /// fit) is not one of its calls.
    #[cold]
    pub(crate) fn end_failed(&self, counting: Counting, error: &Error) {
        if matches!(
            error,
            Error::NoSuchFunction { .. } | Error::BadArguments { .. } | Error::Bindings { .. }
        ) {
            bump(&self.slots[counting.index].calls, u64::MAX);
            return;
        }
        self.end(counting, Some(error));
    }

    /// The counters of `slot`, taking free ones the first time.
    #[inline]
    fn index_of(&self, slot: u64) -> usize {
        let tag = slot + 1;
        for (i, counters) in self.slots.iter().enumerate() {
            let seen = counters.slot.load(Ordering::Relaxed);
            if seen == tag {
                return i;
            }
            if seen == 0 {
                // Only the lane's holder writes: no one races for it.
                counters.slot.store(tag, Ordering::Relaxed);
                return i;
            }
        }
        TRACKED - 1
    }

    /// Adds this lane's counters of `slot` to `into`.
    pub(crate) fn add_to(&self, slot: u64, into: &mut Totals) {
        for counters in &self.slots {
            if counters.slot.load(Ordering::Relaxed) != slot + 1 {
                continue;
            }
            into.calls += counters.calls.load(Ordering::Relaxed);
            for (total, count) in into.failed.iter_mut().zip(&counters.failed) {
                *total += count.load(Ordering::Relaxed);
            }
            for (total, count) in into.latency.iter_mut().zip(&counters.latency) {
                *total += count.load(Ordering::Relaxed);
            }
            into.max_ns = into.max_ns.max(counters.max_ns.load(Ordering::Relaxed));
            into.sum_ns += counters.sum_ns.load(Ordering::Relaxed);
        }
    }
}

/// Counters of one interface of one plugin, summed over its lanes.
pub(crate) struct Totals {
    pub(crate) calls: u64,
    pub(crate) failed: [u64; 5],
    pub(crate) latency: [u64; BUCKETS],
    pub(crate) max_ns: u64,
    pub(crate) sum_ns: u64,
}

impl Default for Totals {
    fn default() -> Self {
        Totals {
            calls: 0,
            failed: [0; 5],
            latency: [0; BUCKETS],
            max_ns: 0,
            sum_ns: 0,
        }
    }
}

impl Totals {
    /// The latency under which a fraction `q` of the sampled calls fell
    /// (the upper edge of its bucket), if any were sampled.
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        let sampled: u64 = self.latency.iter().sum();
        if sampled == 0 {
            return None;
        }
        let wanted = ((sampled as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, count) in self.latency.iter().enumerate() {
            seen += count;
            if seen >= wanted {
                return Some(Duration::from_nanos(upper_edge(i).min(self.max_ns.max(1))));
            }
        }
        Some(Duration::from_nanos(self.max_ns))
    }

    /// The histogram as (upper edge, count) pairs of the buckets in use,
    /// from the first bucket with a count to the last.
    pub(crate) fn buckets(&self) -> Vec<(Duration, u64)> {
        let first = self.latency.iter().position(|c| *c > 0);
        let last = self.latency.iter().rposition(|c| *c > 0);
        match (first, last) {
            (Some(first), Some(last)) => (first..=last)
                .map(|i| (Duration::from_nanos(upper_edge(i)), self.latency[i]))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Adds `n` to a counter only the lane's holder writes, returning what it
/// held: a load and a store, cheaper than an atomic add, and exact with one
/// writer at a time (the lane's lock orders its holders).
#[inline]
fn bump(counter: &AtomicU64, n: u64) -> u64 {
    let was = counter.load(Ordering::Relaxed);
    counter.store(was.wrapping_add(n), Ordering::Relaxed);
    was
}

/// The bucket of `ns`: two per power of two.
fn bucket(ns: u64) -> usize {
    if ns < 2 {
        return 0;
    }
    let power = 63 - ns.leading_zeros() as usize;
    let half = ((ns >> (power - 1)) & 1) as usize;
    (power * 2 + half).min(BUCKETS - 1)
}

/// The largest value bucket `i` holds.
fn upper_edge(i: usize) -> u64 {
    let power = i / 2;
    let base = 1u64 << power.min(62);
    match i % 2 {
        0 => base + base / 2 - 1,
        _ => (base << 1) - 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_hold_what_their_edges_say() {
        for ns in [2u64, 3, 100, 1_000, 1_500, 123_456, 10_000_000] {
            let b = bucket(ns);
            assert!(ns <= upper_edge(b), "{ns} in {b}");
            assert!(b == 0 || ns > upper_edge(b - 1), "{ns} in {b}");
        }
    }

    #[test]
    fn quantiles_come_from_the_sampled_calls() {
        let lane = LaneMetrics::default();
        let mut totals = Totals::default();
        let ticks = crate::engine::ticks_now();
        for _ in 0..(SAMPLE * 100) {
            let counting = lane.start(7);
            lane.end(counting, None);
        }
        // An engine's ticker (another test's) may move the tick clock.
        let moved = crate::engine::ticks_now() - ticks;
        lane.add_to(7, &mut totals);
        assert_eq!(totals.calls, SAMPLE * 100);
        let timed = totals.latency.iter().sum::<u64>();
        assert!(
            (100..=101 + moved).contains(&timed),
            "one in SAMPLE timed, and the first of each tick: {timed} ({moved} ticks)"
        );
        assert!(totals.quantile(0.5).is_some());
    }

    #[test]
    fn the_first_call_of_each_tick_is_timed() {
        let lane = LaneMetrics::default();
        let mut totals = Totals::default();
        let ticks = crate::engine::ticks_now();
        for _ in 0..3 {
            // A call of another tick than the last timed one.
            lane.slots[0].timed_tick.store(u64::MAX, Ordering::Relaxed);
            let counting = lane.start(7);
            lane.end(counting, None);
            let counting = lane.start(7);
            lane.end(counting, None);
        }
        let moved = crate::engine::ticks_now() - ticks;
        lane.add_to(7, &mut totals);
        assert_eq!(totals.calls, 6);
        // Call 0 (one in SAMPLE) and the first after each tick change: 3,
        // and one more for each move of the real tick clock meanwhile.
        let timed = totals.latency.iter().sum::<u64>();
        assert!(
            (3..=3 + moved).contains(&timed),
            "{timed} timed, {moved} ticks"
        );
    }
}

/// What one implementation (an interface of a plugin) has done since the
/// host started, as [`Registry::metrics`](crate::Registry::metrics) reports it.
/// Latency is sampled: one call in 64 is timed, and the first of each 5 ms
/// epoch tick, per instance.
///
/// ```no_run
/// # fn main() -> Result<(), hotslot::Error> {
/// let registry = hotslot::Registry::new()?;
/// for m in registry.metrics() {
///     println!("{} {}: {} calls, p99 {:?}", m.interface, m.plugin, m.calls, m.latency_p99);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metrics {
    /// The interface, with the version the plugin exports.
    pub interface: crate::InterfaceName,
    /// The plugin's name.
    pub plugin: String,
    /// The generation serving now.
    pub generation: u64,
    /// Calls made to this interface of this plugin (not those refused
    /// before they reached it: a function it lacks, arguments that do not
    /// fit, typed bindings that do not fit).
    pub calls: u64,
    /// Calls that failed in the plugin, by fault kind (every kind listed).
    pub failed: Vec<(Fault, u64)>,
    /// Median latency of the sampled calls.
    pub latency_p50: Option<Duration>,
    /// 99th percentile latency of the sampled calls.
    pub latency_p99: Option<Duration>,
    /// The slowest sampled call. Calls are sampled (one in 64, and the
    /// first of each 5 ms), so a call stopped by its deadline may not show
    /// here: `failed` counts every one, by kind.
    pub latency_max: Option<Duration>,
    /// The sampled latencies: (upper edge, count) per bucket in use.
    pub latency_buckets: Vec<(Duration, u64)>,
    /// The sum of the sampled latencies.
    pub latency_sum: Duration,
    /// Reloads of the plugin taken.
    pub reloads: u64,
    /// Reloads (and loads) of the plugin refused.
    pub rejected_reloads: u64,
    /// The plugin's instances alive now.
    pub instances: u64,
    /// Bytes of linear memory its instances have now.
    pub memory_bytes: u64,
    /// Bytes of keys and values in its host-kept state.
    pub state_bytes: u64,
}

impl Metrics {
    /// Calls that failed in the plugin, of any kind.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// # let registry = hotslot::Registry::new()?;
    /// for m in registry.metrics().iter().filter(|m| m.calls > 0) {
    ///     let share = m.failed_calls() as f64 / m.calls as f64;
    ///     println!("`{}`: {:.1} % of calls failed", m.plugin, share * 100.0);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn failed_calls(&self) -> u64 {
        self.failed.iter().map(|(_, n)| n).sum()
    }
}
