//! Async calls' way to a plugin: a queue per plugin, worked through by at
//! most as many tasks on tokio's blocking pool as the plugin has instances.
//!
//! An async call must not run on a runtime worker (a plugin may spin until
//! its deadline), so it runs on the blocking pool. Sent there one task per
//! call, 1,000 calls to a plugin with two instances took 512 threads (the
//! pool's limit), nearly all only waiting for an instance: the workers
//! spent their time starting threads, a 10 ms timer on them fired up to
//! 200 ms late on a loaded machine, and the runtime's own blocking work
//! (files, DNS) waited behind plugin calls. Here a call waits in the queue
//! as a future, holding no thread, and each of the plugin's tasks takes the
//! next call as soon as it is done with one, without a hand-over through
//! the runtime between two calls.
//!
//! A call still waiting when the plugin's deadline has passed is not made
//! ([`NotRun::Busy`], as a synchronous call waiting that long for an
//! instance), nor is one whose caller stopped waiting (its future dropped).
//! Once started, a call runs to its end.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::limits::MAX_INSTANCES;
use crate::sync::lock;

/// A call in the queue; it does nothing once given up.
type Job = Box<dyn FnOnce() + Send>;

/// Where a queued call stands: one of these, changed once.
const QUEUED: u8 = 0;
const STARTED: u8 = 1;
const GIVEN_UP: u8 = 2;

/// One plugin's queue of async calls; see the module's documentation.
pub(crate) struct Admission {
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    calls: VecDeque<Job>,
    /// Tasks on the blocking pool working through `calls`.
    workers: usize,
    /// How many may: the plugin's instances when the last call came.
    most: usize,
}

/// Why a call was not made, or made but not heard from.
#[derive(Debug)]
pub(crate) enum NotRun {
    /// It waited its whole patience without starting.
    Busy,
    /// Its task ended without an answer (it panicked, or the runtime shut
    /// down), for the reason said.
    Lost(&'static str),
}

impl Admission {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Admission {
            queue: Mutex::new(Queue::default()),
        })
    }

    /// Makes `call` on the blocking pool once one of the plugin's
    /// `instances` tasks gets to it, first come first served, and answers
    /// what it returned. A call not started within `patience` is not made.
    /// Needs a tokio runtime; a wait in the queue needs its timers.
    pub(crate) async fn run<R: Send + 'static>(
        self: &Arc<Self>,
        instances: usize,
        patience: Duration,
        call: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, NotRun> {
        let stage = Arc::new(AtomicU8::new(QUEUED));
        let (answer, answered) = oneshot::channel();
        let job: Job = {
            let stage = stage.clone();
            Box::new(move || {
                if start(&stage) {
                    let _ = answer.send(call());
                }
            })
        };
        // Dropped while still queued (the caller stopped waiting), the
        // call is given up: its job does nothing when its turn comes.
        let _give_up = GiveUp(stage.clone());
        self.push(job, instances);
        let mut answered = answered;
        match tokio::time::timeout(patience, &mut answered).await {
            Ok(answer) => answer.map_err(|_| NotRun::Lost("it ended without an answer")),
            Err(_) if give_up(&stage) => Err(NotRun::Busy),
            // Started just in time: it runs to its end.
            Err(_) => answered
                .await
                .map_err(|_| NotRun::Lost("it ended without an answer")),
        }
    }

    /// Queues `job`, and starts another task on the pool if fewer than
    /// `instances` work the queue.
    fn push(self: &Arc<Self>, job: Job, instances: usize) {
        let mut queue = lock(&self.queue);
        queue.calls.push_back(job);
        queue.most = instances.clamp(1, MAX_INSTANCES);
        if queue.workers >= queue.most {
            return;
        }
        queue.workers += 1;
        drop(queue);
        let worker = Worker {
            admission: self.clone(),
            counted_out: false,
        };
        // A task the runtime drops unstarted (it is shutting down) counts
        // itself out through `Worker`'s drop; its calls time out as Busy.
        drop(tokio::task::spawn_blocking(move || worker.work()));
    }

    /// The next call for a worker, or `None` when it should stop (nothing
    /// queued, or more workers than the plugin's instances now): it is then
    /// counted out, under the same lock a call is queued under, so a call
    /// queued meanwhile always finds a worker or starts one.
    fn next(&self) -> Option<Job> {
        let mut queue = lock(&self.queue);
        if queue.workers <= queue.most {
            if let Some(job) = queue.calls.pop_front() {
                return Some(job);
            }
        }
        queue.workers -= 1;
        None
    }
}

/// A task working through a plugin's queue. Counted out by `next` when it
/// stops, or by its drop if it never ran.
struct Worker {
    admission: Arc<Admission>,
    counted_out: bool,
}

impl Worker {
    fn work(mut self) {
        while let Some(job) = self.admission.next() {
            // A call that panics loses its answer (its caller hears so),
            // not the calls behind it.
            let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
        }
        self.counted_out = true;
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if !self.counted_out {
            lock(&self.admission.queue).workers -= 1;
        }
    }
}

/// Marks a queued call started; false if it was given up.
fn start(stage: &AtomicU8) -> bool {
    stage
        .compare_exchange(QUEUED, STARTED, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}

/// Gives up a call still queued; false if it has started.
fn give_up(stage: &AtomicU8) -> bool {
    stage
        .compare_exchange(QUEUED, GIVEN_UP, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}

/// Gives up its call, if still queued, when the caller's future goes.
struct GiveUp(Arc<AtomicU8>);

impl Drop for GiveUp {
    fn drop(&mut self) {
        give_up(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .unwrap()
    }

    /// Calls that each wait for a gate while counting how many wait at
    /// once: never more than the plugin's instances.
    #[test]
    fn never_more_calls_at_once_than_instances() {
        runtime().block_on(async {
            for instances in [1, 3] {
                let admission = Admission::new();
                let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
                let calls: Vec<_> = (0..40)
                    .map(|_| {
                        let (admission, now, most) = (admission.clone(), now.clone(), most.clone());
                        tokio::spawn(async move {
                            let patience = Duration::from_secs(60);
                            admission
                                .run(instances, patience, move || {
                                    let at_once = now.fetch_add(1, Ordering::SeqCst) + 1;
                                    most.fetch_max(at_once, Ordering::SeqCst);
                                    std::thread::sleep(Duration::from_millis(2));
                                    now.fetch_sub(1, Ordering::SeqCst);
                                })
                                .await
                        })
                    })
                    .collect();
                for call in calls {
                    call.await.unwrap().unwrap();
                }
                assert_eq!(most.load(Ordering::SeqCst), instances);
                assert_eq!(lock(&admission.queue).workers, 0);
            }
        });
    }

    #[test]
    fn a_call_that_never_started_within_its_patience_is_busy_and_never_made() {
        runtime().block_on(async {
            let admission = Admission::new();
            let (release, held) = std::sync::mpsc::channel::<()>();
            let (started, has_started) = oneshot::channel();
            let holding = {
                let admission = admission.clone();
                tokio::spawn(async move {
                    let hold = move || {
                        let _ = started.send(());
                        held.recv()
                    };
                    admission.run(1, Duration::from_secs(60), hold).await
                })
            };
            has_started.await.unwrap();
            let made = Arc::new(AtomicUsize::new(0));
            let counted = made.clone();
            let late = admission
                .run(1, Duration::from_millis(20), move || {
                    counted.fetch_add(1, Ordering::SeqCst)
                })
                .await;
            assert!(matches!(late, Err(NotRun::Busy)), "{late:?}");
            release.send(()).unwrap();
            holding.await.unwrap().unwrap().unwrap();
            // The worker has gone past the given-up call by now.
            admission
                .run(1, Duration::from_secs(60), || ())
                .await
                .unwrap();
            assert_eq!(made.load(Ordering::SeqCst), 0);
        });
    }

    /// A call that panics, queued behind another with a call behind it:
    /// its caller hears it was lost, and the call behind it is made.
    #[test]
    fn a_call_that_panics_is_lost_and_the_next_is_made() {
        runtime().block_on(async {
            let admission = Admission::new();
            let patience = Duration::from_secs(10);
            let (release, held) = std::sync::mpsc::channel::<()>();
            let (started, has_started) = oneshot::channel();
            let queue = |call: Box<dyn FnOnce() -> u32 + Send>| {
                let admission = admission.clone();
                tokio::spawn(async move { admission.run(1, patience, call).await })
            };
            let first = queue(Box::new(move || {
                let _ = started.send(());
                held.recv().map_or(0, |()| 1)
            }));
            has_started.await.unwrap();
            let panicking = queue(Box::new(|| panic!("on purpose")));
            let after = queue(Box::new(|| 7));
            // Both queued behind the first before it ends.
            while lock(&admission.queue).calls.len() < 2 {
                tokio::task::yield_now().await;
            }
            release.send(()).unwrap();
            assert_eq!(first.await.unwrap().unwrap(), 1);
            let lost = panicking.await.unwrap();
            assert!(matches!(lost, Err(NotRun::Lost(_))), "{lost:?}");
            assert_eq!(after.await.unwrap().unwrap(), 7);
        });
    }
}
