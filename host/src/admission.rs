//! Async calls' way to a plugin: a queue per plugin (and tokio runtime),
//! worked through by at most as many tasks on the runtime's blocking pool
//! as the plugin has instances.
//!
//! An async call must not run on a runtime worker (a plugin may spin until
//! its deadline), so it runs on the blocking pool. Sent there one task per
//! call, 1,000 calls to a plugin with two instances took hundreds of
//! threads (up to the pool's 512), nearly all only waiting for an
//! instance: the workers spent their time starting threads, a 10 ms timer
//! on them fired tens of milliseconds late, and the runtime's own blocking
//! work (files, DNS) waited behind plugin calls. Here a call waits in the
//! queue as a future, holding no thread, and each of the plugin's tasks
//! takes the next call as soon as it is done with one.
//!
//! A call still queued behind the plugin's running tasks when its patience
//! (the plugin's deadline) runs out is not made ([`NotRun::Busy`], as a
//! synchronous call waiting that long for an instance), and its caller
//! hears so then (within a tick of the engine's epoch clock, which sweeps
//! the queues: see [`sweep`]): it was once told only when the call ahead
//! ended, up to two deadlines later. So the queue needs no timer of the
//! caller's runtime, which may have none, nor one per call. A call that a
//! new task starts for is taken at once, and is not swept; should the
//! blocking pool start that task late, the task that gets to a call past
//! its patience does not make it either. A call whose caller stopped
//! waiting (its future dropped) is not made, and its closure, with its
//! arguments, is dropped at once. Once started, a call runs to its end.
//!
//! Each runtime has its own queue and tasks: a call runs on its caller's
//! runtime's blocking pool, and a runtime shutting down never waits for
//! another's calls. A caller on no tokio runtime (another executor, or a
//! plain `block_on` of its own) has its calls made on a runtime hotslot
//! starts for such callers ([`own_runtime`]): not on wasmtime-wasi's,
//! whose blocking pool every plugin's file I/O needs.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::{Handle as Runtime, Id as RuntimeId};
use tokio::sync::oneshot;

use crate::limits::MAX_INSTANCES;
use crate::sync::lock;

/// A queued call.
struct Queued {
    at: Instant,
    patience: Duration,
    /// Until a task or its caller takes it, whichever comes first: told
    /// whether to make the call (else it answers `Busy`).
    call: Mutex<Option<Job>>,
}

type Job = Box<dyn FnOnce(bool) + Send>;

/// One plugin's queues of async calls; see the module's documentation.
pub(crate) struct Admission {
    /// How many tasks may work a queue at once: the plugin's instances.
    most: AtomicUsize,
    /// One queue per runtime with calls queued or tasks working.
    queues: Mutex<Vec<Queue>>,
}

struct Queue {
    runtime: Runtime,
    calls: VecDeque<Arc<Queued>>,
    /// Tasks on the runtime's blocking pool working through `calls`.
    workers: usize,
    /// How many of them are making a call now (the rest are about to take
    /// one, or to stop).
    running: usize,
}

/// Why a call was not made, or made but not heard from.
#[derive(Debug)]
pub(crate) enum NotRun {
    /// It waited longer than its patience for a task: said by the sweep
    /// (see [`sweep`]), or by the task that got to it late.
    Busy,
    /// It ended without an answer: it panicked, or its runtime shut down
    /// before it started.
    Lost,
    /// Its caller is on no tokio runtime, and hotslot's own could not be
    /// started to make it on (why).
    NoRuntime(String),
}

impl Admission {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Admission {
            most: AtomicUsize::new(1),
            queues: Mutex::new(Vec::new()),
        })
    }

    /// Sets how many tasks may work a queue at once (the plugin's
    /// instances, from 1 to [`MAX_INSTANCES`]); more start at once where
    /// calls wait.
    pub(crate) fn set_instances(self: &Arc<Self>, instances: usize) {
        let most = instances.clamp(1, MAX_INSTANCES);
        if self.most.swap(most, Ordering::SeqCst) < most {
            let mut queues = lock(&self.queues);
            let workers: Vec<_> = queues.iter_mut().flat_map(|q| self.fill(q)).collect();
            drop(queues);
            start(workers);
        }
    }

    /// Makes `call` on the current runtime's blocking pool once one of the
    /// plugin's tasks gets to it, first come first served, and answers what
    /// it returned; answers [`NotRun::Busy`] once it has waited `patience`
    /// without a task getting to it. Off any tokio runtime, the call is
    /// made on hotslot's own (see the module's documentation).
    pub(crate) async fn run<R: Send + 'static>(
        self: &Arc<Self>,
        patience: Duration,
        call: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, NotRun> {
        let runtime = match Runtime::try_current() {
            Ok(runtime) => runtime,
            Err(_) => own_runtime().map_err(NotRun::NoRuntime)?,
        };
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |in_time| {
            let _ = answer.send(match in_time {
                true => Ok(call()),
                false => Err(NotRun::Busy),
            });
        });
        let queued = Arc::new(Queued {
            at: Instant::now(),
            patience,
            call: Mutex::new(Some(job)),
        });
        // Dropped while still queued (the caller stopped waiting), the
        // call is given up.
        let _give_up = GiveUp(queued.clone());
        if !self.push(runtime, queued) {
            // Queued behind the plugin's running tasks: the clock's sweep
            // answers `Busy` if none gets to it in time.
            waiting(self);
        }
        answered.await.unwrap_or(Err(NotRun::Lost))
    }

    /// Queues a call on `runtime`'s queue, starting a task for it if
    /// fewer than the plugin's instances work that queue; tells whether it
    /// did.
    fn push(self: &Arc<Self>, runtime: Runtime, call: Arc<Queued>) -> bool {
        let mut queues = lock(&self.queues);
        let at = match queues.iter().position(|q| q.runtime.id() == runtime.id()) {
            Some(at) => at,
            None => {
                queues.push(Queue {
                    runtime,
                    calls: VecDeque::new(),
                    workers: 0,
                    running: 0,
                });
                queues.len() - 1
            }
        };
        let queue = &mut queues[at];
        queue.calls.push_back(call);
        let workers = self.fill(queue);
        drop(queues);
        let started = !workers.is_empty();
        start(workers);
        started
    }

    /// Counts in the tasks `queue` needs: one for each call queued that no
    /// task is free to take, up to the plugin's instances; the caller starts
    /// them (see [`start`]) once it has let go of the queues. Tasks busy
    /// with a call do not count as free: counted, a plugin with three
    /// instances, one busy with a long call, left a call alone in its queue
    /// waiting for that one while two instances idled.
    fn fill(self: &Arc<Self>, queue: &mut Queue) -> Vec<(Runtime, Worker)> {
        let most = self.most.load(Ordering::SeqCst);
        let mut workers = Vec::new();
        while queue.workers < most && queue.workers - queue.running < queue.calls.len() {
            queue.workers += 1;
            let worker = Worker {
                admission: self.clone(),
                runtime: queue.runtime.id(),
                counted_out: false,
            };
            workers.push((queue.runtime.clone(), worker));
        }
        workers
    }

    /// The next call for a worker of `runtime`'s queue (which has just
    /// `finished` one, if it says so), and whether it came in time (within
    /// its patience), or `None` when it should stop (nothing queued, or
    /// more workers than the plugin's instances now). It is then counted
    /// out, under the same lock a call is queued under, so a call queued
    /// meanwhile always finds a worker or starts one.
    fn next(&self, runtime: RuntimeId, finished: bool) -> Option<(Job, bool)> {
        let mut queues = lock(&self.queues);
        let at = queues.iter().position(|q| q.runtime.id() == runtime)?;
        let queue = &mut queues[at];
        if finished {
            queue.running -= 1;
        }
        while queue.workers <= self.most.load(Ordering::SeqCst) {
            let Some(queued) = queue.calls.pop_front() else {
                break;
            };
            // Given up calls have nothing left to take.
            let job = lock(&queued.call).take();
            if let Some(job) = job {
                queue.running += 1;
                return Some((job, queued.at.elapsed() <= queued.patience));
            }
        }
        queue.workers -= 1;
        if queue.workers == 0 && queue.calls.is_empty() {
            queues.swap_remove(at);
        }
        None
    }

    /// Counts out a worker that never ran (its runtime is shutting down).
    /// The last one drops the calls left in its queue: their callers hear
    /// that they were lost rather than waiting out their patience.
    fn never_ran(&self, runtime: RuntimeId) {
        let mut queues = lock(&self.queues);
        let Some(at) = queues.iter().position(|q| q.runtime.id() == runtime) else {
            return;
        };
        queues[at].workers -= 1;
        if queues[at].workers > 0 {
            return;
        }
        let left = queues.swap_remove(at).calls;
        // Dropped with the queues let go: a call's closure may hold the
        // last reference to a plugin, whose instances go with it.
        drop(queues);
        for queued in left {
            drop(lock(&queued.call).take());
        }
    }
}

/// The admissions with calls queued behind their running tasks, for
/// [`sweep`]; `ANY_WAITING` is false when there are none, so that an idle
/// host's sweep is one load.
static WAITING: Mutex<Vec<std::sync::Weak<Admission>>> = Mutex::new(Vec::new());
static ANY_WAITING: AtomicBool = AtomicBool::new(false);

/// Puts `admission` on the list [`sweep`] looks at.
fn waiting(admission: &Arc<Admission>) {
    let mut waiting = lock(&WAITING);
    if !waiting
        .iter()
        .any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(admission)))
    {
        waiting.push(Arc::downgrade(admission));
    }
    ANY_WAITING.store(true, Ordering::SeqCst);
}

/// Answers `Busy` to every queued call that has waited past its patience,
/// and forgets the admissions with none left waiting. Called on every tick
/// of an engine's epoch clock (a few milliseconds).
pub(crate) fn sweep() {
    if !ANY_WAITING.load(Ordering::SeqCst) {
        return;
    }
    let now = Instant::now();
    let mut late = Vec::new();
    let mut waiting = lock(&WAITING);
    // Under the list's lock: a call queued after its admission was
    // looked at puts it back on the list after this, never before.
    waiting.retain(|admission| match admission.upgrade() {
        Some(admission) => admission.late_calls(now, &mut late),
        None => false,
    });
    ANY_WAITING.store(!waiting.is_empty(), Ordering::SeqCst);
    drop(waiting);
    // Answered with no lock held; each sends on its caller's channel.
    for job in late {
        job(false);
    }
}

impl Admission {
    /// Takes into `late` the queued calls past their patience at `now`;
    /// tells whether calls are left queued.
    fn late_calls(&self, now: Instant, late: &mut Vec<Job>) -> bool {
        let queues = lock(&self.queues);
        let mut left = false;
        for queued in queues.iter().flat_map(|q| q.calls.iter()) {
            let mut call = lock(&queued.call);
            if call.is_none() {
                continue;
            }
            match now.saturating_duration_since(queued.at) > queued.patience {
                // The entry stays: a task skips it, as one given up.
                true => late.extend(call.take()),
                false => left = true,
            }
        }
        left
    }
}

/// Starts workers counted in by [`Admission::fill`], each on its queue's
/// runtime's blocking pool. Called with the queues let go: a runtime that
/// is shutting down drops a task at once, on this thread, and its
/// `Worker`'s drop counts it out under the queues' lock.
/// The runtime whose blocking pool makes the async calls of callers on no
/// tokio runtime: one worker (the queue's tasks need none; its timers and
/// I/O, none), started at the first such call and never shut down.
fn own_runtime() -> Result<Runtime, String> {
    static OWN: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    if let Some(own) = OWN.get() {
        return Ok(own.handle().clone());
    }
    let started = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("hotslot-async")
        .build()
        .map_err(|e| format!("cannot start a runtime for them: {e}"))?;
    // Two callers may start one each; the one not kept is dropped here,
    // off any runtime, where that is allowed.
    Ok(OWN.get_or_init(|| started).handle().clone())
}

fn start(workers: Vec<(Runtime, Worker)>) {
    for (runtime, worker) in workers {
        drop(runtime.spawn_blocking(move || worker.work()));
    }
}

/// A task working through one runtime's queue of a plugin. Counted out by
/// `next` when it stops, or by its drop if it never ran.
struct Worker {
    admission: Arc<Admission>,
    runtime: RuntimeId,
    counted_out: bool,
}

impl Worker {
    fn work(mut self) {
        let mut finished = false;
        while let Some((job, in_time)) = self.admission.next(self.runtime, finished) {
            // A call that panics loses its answer (its caller hears so),
            // not the calls behind it.
            let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(in_time)));
            finished = true;
        }
        self.counted_out = true;
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if !self.counted_out {
            self.admission.never_ran(self.runtime);
        }
    }
}

/// Gives up its call, if still queued, when the caller's future goes.
struct GiveUp(Arc<Queued>);

impl Drop for GiveUp {
    fn drop(&mut self) {
        lock(&self.0.call).take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Without timers: the queue needs none.
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap()
    }

    fn admission(instances: usize) -> Arc<Admission> {
        let admission = Admission::new();
        admission.set_instances(instances);
        admission
    }

    /// Waits (at most ten seconds) until no queue is left: every worker
    /// has counted itself out.
    fn wait_until_idle(admission: &Admission) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !lock(&admission.queues).is_empty() {
            assert!(Instant::now() < deadline, "a worker never counted out");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Forty calls that each sleep a little while counting how many run at
    /// once: never more than the plugin's instances, and as many.
    #[test]
    fn as_many_calls_at_once_as_instances() {
        let runtime = runtime();
        for instances in [1, 3] {
            let admission = admission(instances);
            let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
            runtime.block_on(async {
                let calls: Vec<_> = (0..40)
                    .map(|_| {
                        let (admission, now, most) = (admission.clone(), now.clone(), most.clone());
                        tokio::spawn(async move {
                            admission
                                .run(Duration::from_secs(60), move || {
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
            });
            assert_eq!(most.load(Ordering::SeqCst), instances);
            wait_until_idle(&admission);
        }
    }

    /// A call on `runtime` holding one of its tasks until [`Held::end`].
    struct Held {
        release: std::sync::mpsc::Sender<()>,
        call: tokio::task::JoinHandle<Result<Result<(), std::sync::mpsc::RecvError>, NotRun>>,
    }

    /// Queues a call that holds its task, and waits until it has started.
    fn hold(runtime: &tokio::runtime::Runtime, admission: &Arc<Admission>) -> Held {
        let (release, held) = std::sync::mpsc::channel();
        let (started, has_started) = std::sync::mpsc::channel();
        let admission = admission.clone();
        let call = runtime.spawn(async move {
            let hold = move || {
                let _ = started.send(());
                held.recv()
            };
            admission.run(Duration::from_secs(60), hold).await
        });
        has_started.recv().unwrap();
        Held { release, call }
    }

    impl Held {
        /// Lets the call end, and checks that it ended well.
        fn end(self, runtime: &tokio::runtime::Runtime) {
            self.release.send(()).unwrap();
            runtime.block_on(self.call).unwrap().unwrap().unwrap();
        }
    }

    /// Queues `call` from a task on `runtime`; its answer comes on the
    /// channel returned.
    fn queue<R: Send + 'static>(
        runtime: &tokio::runtime::Runtime,
        admission: &Arc<Admission>,
        patience: Duration,
        call: impl FnOnce() -> R + Send + 'static,
    ) -> std::sync::mpsc::Receiver<Result<R, NotRun>> {
        let (answer, answered) = std::sync::mpsc::channel();
        let admission = admission.clone();
        runtime.spawn(async move {
            let _ = answer.send(admission.run(patience, call).await);
        });
        answered
    }

    /// Waits (at most ten seconds) until `admission`'s only queue holds
    /// `calls` calls.
    fn wait_until_queued(admission: &Admission, calls: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while lock(&admission.queues)[0].calls.len() < calls {
            assert!(Instant::now() < deadline, "the calls were never queued");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// A call queued behind one that holds the only instance for longer
    /// than its patience: answers `Busy` once its turn comes, and is never
    /// made.
    #[test]
    fn a_call_that_waited_past_its_patience_is_busy_and_never_made() {
        let runtime = runtime();
        let admission = admission(1);
        let held = hold(&runtime, &admission);
        let made = Arc::new(AtomicUsize::new(0));
        let patience = Duration::from_millis(20);
        let late = {
            let (admission, made) = (admission.clone(), made.clone());
            let count = move || made.fetch_add(1, Ordering::SeqCst);
            runtime.spawn(async move { admission.run(patience, count).await })
        };
        wait_until_queued(&admission, 1);
        // Its patience runs out while the first call holds the instance.
        std::thread::sleep(patience * 2);
        held.end(&runtime);
        let late = runtime.block_on(late).unwrap();
        assert!(matches!(late, Err(NotRun::Busy)), "{late:?}");
        assert_eq!(made.load(Ordering::SeqCst), 0);
        // A call in time afterwards is made.
        runtime.block_on(admission.run(patience, || ())).unwrap();
    }

    /// A call queued behind one that holds the only instance for longer
    /// than its patience: answers `Busy` at the first sweep after its
    /// patience runs out, while the call ahead still runs, on a runtime
    /// without timers. The test is the clock: it sweeps every 5 ms.
    #[test]
    fn a_call_out_of_patience_is_busy_without_waiting_for_the_call_ahead() {
        let runtime = runtime();
        let admission = admission(1);
        let held = hold(&runtime, &admission);
        let made = Arc::new(AtomicUsize::new(0));
        let patience = Duration::from_millis(50);
        let started = Instant::now();
        let count = {
            let made = made.clone();
            move || made.fetch_add(1, Ordering::SeqCst)
        };
        let answered = queue(&runtime, &admission, patience, count);
        let late = loop {
            sweep();
            match answered.recv_timeout(Duration::from_millis(5)) {
                Ok(answer) => break Ok(answer),
                Err(_) if started.elapsed() > Duration::from_secs(30) => break Err("no answer"),
                Err(_) => continue,
            }
        };
        let waited = started.elapsed();
        held.end(&runtime);
        assert!(matches!(late, Ok(Err(NotRun::Busy))), "{late:?}");
        assert!(waited >= patience, "Busy after {waited:?}");
        assert_eq!(made.load(Ordering::SeqCst), 0);
        wait_until_idle(&admission);
    }

    /// A call alone in the queue of a plugin with three instances, one
    /// held by a long call: it runs at once on another (it waited for the
    /// held one: busy tasks were counted as free).
    #[test]
    fn a_call_runs_at_once_while_instances_are_free() {
        let runtime = runtime();
        let admission = admission(3);
        let held = hold(&runtime, &admission);
        let answered = queue(&runtime, &admission, Duration::from_secs(60), || 7);
        let ran = answered.recv_timeout(Duration::from_secs(30));
        held.end(&runtime);
        assert!(matches!(ran, Ok(Ok(7))), "{ran:?}");
        wait_until_idle(&admission);
    }

    /// Calls queued behind a held instance when the plugin gets more
    /// instances: they start at once, without waiting for new calls.
    #[test]
    fn more_instances_start_the_calls_waiting() {
        let runtime = runtime();
        let admission = admission(1);
        let held = hold(&runtime, &admission);
        let waiting: Vec<_> = (0..3)
            .map(|i| {
                let admission = admission.clone();
                runtime
                    .spawn(async move { admission.run(Duration::from_secs(60), move || i).await })
            })
            .collect();
        wait_until_queued(&admission, 3);
        admission.set_instances(4);
        for (i, call) in waiting.into_iter().enumerate() {
            assert_eq!(runtime.block_on(call).unwrap().unwrap(), i);
        }
        held.end(&runtime);
        wait_until_idle(&admission);
    }

    /// A call that panics, queued behind another with a call behind it:
    /// its caller hears it was lost, and the call behind it is made.
    #[test]
    fn a_call_that_panics_is_lost_and_the_next_is_made() {
        let runtime = runtime();
        let admission = admission(1);
        let held = hold(&runtime, &admission);
        let queue = |call: fn() -> u32| {
            let admission = admission.clone();
            runtime.spawn(async move { admission.run(Duration::from_secs(10), call).await })
        };
        let panicking = queue(|| panic!("on purpose"));
        wait_until_queued(&admission, 1);
        let after = queue(|| 7);
        wait_until_queued(&admission, 2);
        held.end(&runtime);
        let lost = runtime.block_on(panicking).unwrap();
        assert!(matches!(lost, Err(NotRun::Lost)), "{lost:?}");
        assert_eq!(runtime.block_on(after).unwrap().unwrap(), 7);
    }

    /// Two runtimes calling a plugin with one instance: while a call from
    /// one holds its task, a call from the other runs at once, on its own
    /// runtime's pool; each runtime's queue goes when its calls end.
    #[test]
    fn each_runtime_has_its_own_queue() {
        let admission = admission(1);
        let (first, second) = (runtime(), runtime());
        let held = hold(&first, &admission);
        let ran_on = second
            .block_on(admission.run(Duration::from_secs(60), || Runtime::current().id()))
            .unwrap();
        assert_eq!(ran_on, second.handle().id());
        held.end(&first);
        wait_until_idle(&admission);
    }
}
