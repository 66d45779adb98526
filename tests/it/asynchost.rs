//! Async hosts: calls from a tokio runtime never hold up its workers, even
//! when half of them spin until their deadline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hotslot::wasmtime::component::Val;
use hotslot::{Error, Fault, Grants, Limits};

use crate::common::{plugin, rogue_with, stderr_of_test, ROGUE};

/// 1,000 concurrent calls on a runtime with two workers, half of them to a
/// plugin that spins until its deadline: all complete (the spinning ones
/// stopped by their deadline, or by their wait for an instance), and a timer
/// task on the same runtime keeps ticking throughout.
#[test]
fn a_thousand_async_calls_on_two_workers_complete_and_the_timer_keeps_ticking() {
    let timeout = Duration::from_millis(200);
    let grants =
        Grants::from_toml("[limits]\ninstances = 2\n", std::path::Path::new("."), "m").unwrap();
    let limits = Limits {
        timeout,
        ..Limits::default()
    };
    let (_registry, rogue) = rogue_with(limits, grants);
    // The greeter's 500 calls share one instance: they have all the
    // patience they need on a loaded machine.
    let (_greeters, greeter) = greeter_with(Duration::from_secs(60));

    let runtime = two_workers();
    let machine = Ticker::start();
    let (worst, answered, stopped) = runtime.block_on(async {
        let done = Arc::new(AtomicBool::new(false));
        let ticker = {
            let done = done.clone();
            tokio::spawn(async move {
                let tick = Duration::from_millis(10);
                let mut worst = Duration::ZERO;
                while !done.load(Ordering::SeqCst) {
                    let asked = Instant::now();
                    tokio::time::sleep(tick).await;
                    worst = worst.max(asked.elapsed().saturating_sub(tick));
                }
                worst
            })
        };
        let calls: Vec<_> = (0..1000)
            .map(|i| {
                let (rogue, greeter) = (rogue.clone(), greeter.clone());
                tokio::spawn(async move {
                    match i % 2 {
                        0 => rogue.call_async("spin", &[]).await,
                        _ => {
                            greeter
                                .call_async("hello", &[Val::String("x".into())])
                                .await
                        }
                    }
                })
            })
            .collect();
        let (mut answered, mut stopped) = (0, 0);
        for call in calls {
            match call.await.unwrap() {
                Ok(answer) => {
                    assert_eq!(answer, [Val::String("a: hello, x".into())]);
                    answered += 1;
                }
                Err(Error::Call { fault, .. }) => {
                    assert_eq!(fault, Fault::Timeout);
                    stopped += 1;
                }
                Err(Error::Busy { .. }) => stopped += 1,
                Err(other) => panic!("{other:?}"),
            }
        }
        done.store(true, Ordering::SeqCst);
        (ticker.await.unwrap(), answered, stopped)
    });
    let machine = machine.stop();
    assert_eq!((answered, stopped), (500, 500));
    println!("worst lateness of a 10 ms timer: {worst:?} (of a thread's own sleep: {machine:?})");
    // A worker held by a plugin call would hold the timer for a whole
    // spin (the deadline) or more; a loaded machine (the other tests, the
    // spinning plugins) can hold any thread for a while, so what a plain
    // thread's sleep suffered meanwhile is allowed on top.
    assert!(
        worst < timeout + machine,
        "the timer was held up for {worst:?} (a thread's own sleep: {machine:?})"
    );
}

/// A plain thread sleeping 10 ms again and again, measuring its worst
/// lateness: what the machine alone does to a sleeping thread.
struct Ticker {
    done: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Duration>,
}

impl Ticker {
    fn start() -> Ticker {
        let done = Arc::new(AtomicBool::new(false));
        let stop = done.clone();
        let thread = std::thread::spawn(move || {
            let tick = Duration::from_millis(10);
            let mut worst = Duration::ZERO;
            while !stop.load(Ordering::SeqCst) {
                let asked = Instant::now();
                std::thread::sleep(tick);
                worst = worst.max(asked.elapsed().saturating_sub(tick));
            }
            worst
        });
        Ticker { done, thread }
    }

    fn stop(self) -> Duration {
        self.done.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

/// An async call to a plugin removed says so (`Unavailable`) at once, as a
/// synchronous one does, even while a call still running holds its only
/// instance; it reaches the plugin again once it is back.
#[test]
fn an_async_call_to_a_removed_plugin_is_unavailable_until_it_is_back() {
    let (registry, greeter) = greeter_with(Duration::from_secs(60));
    let args = [Val::String("x".into())];
    let (held, release) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
    let holding = {
        let greeter = greeter.clone();
        std::thread::spawn(move || {
            greeter.batch(|_| {
                held.0.send(()).unwrap();
                release.1.recv().unwrap();
            })
        })
    };
    held.1.recv().unwrap();
    registry.remove_plugin("greeter").unwrap();
    let runtime = two_workers();
    // Waiting for the held instance would answer `Busy` after a minute.
    let gone = runtime.block_on(greeter.call_async("hello", &args));
    assert!(matches!(gone, Err(Error::Unavailable { .. })), "{gone:?}");
    release.0.send(()).unwrap();
    holding.join().unwrap().unwrap();
    let plugin = plugin(&registry, "greeter_a");
    registry.add_plugin("greeter", &plugin).unwrap();
    let back = runtime
        .block_on(greeter.call_async("hello", &args))
        .unwrap();
    assert_eq!(back, [Val::String("a: hello, x".into())]);
}

/// An async call queued behind a long call answers `Busy` when the
/// plugin's deadline has passed, while the call ahead still runs: it once
/// waited for that call to end. Here the call ahead (a four-second sleep)
/// started under a one-minute deadline, and a reload then lowered the
/// deadline (the queued call's patience) to 200 ms: `Busy` comes within
/// two seconds, half the sleep.
#[test]
fn a_queued_async_call_is_busy_at_its_deadline_not_when_the_call_ahead_ends() {
    let (registry, rogue) = rogue_with(Limits::default(), Grants::default());
    let patient = Grants::from_toml(
        "[limits]\ntimeout-ms = 60000\n",
        std::path::Path::new("."),
        "m",
    )
    .unwrap();
    let hasty = Grants::from_toml(
        "[limits]\ntimeout-ms = 200\n",
        std::path::Path::new("."),
        "m",
    )
    .unwrap();
    let bytes = plugin(&registry, "rogue");
    registry
        .add_implementation(ROGUE, "rogue", &bytes.clone().with_grants(patient))
        .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let ahead = {
        let rogue = rogue.clone();
        runtime.spawn(async move {
            rogue
                .call_async("sleep", &[Val::U64(4000), Val::U32(1)])
                .await
        })
    };
    // The sleep has the only instance once it is counted.
    let deadline = Instant::now() + Duration::from_secs(60);
    while calls_to(&registry, "rogue") == 0 {
        assert!(Instant::now() < deadline, "the first call never started");
        std::thread::yield_now();
    }
    registry
        .add_implementation(ROGUE, "rogue", &bytes.with_grants(hasty))
        .unwrap();
    let asked = Instant::now();
    let queued = runtime.block_on(rogue.call_async("ping", &[]));
    let waited = asked.elapsed();
    assert!(matches!(queued, Err(Error::Busy { .. })), "{queued:?}");
    assert!(
        waited < Duration::from_secs(2) && !ahead.is_finished(),
        "`Busy` came only when the call ahead ended, after {waited:?}"
    );
    let slept = runtime.block_on(ahead).unwrap().unwrap();
    assert_eq!(slept, [Val::U32(1)]);
}

/// Calls counted so far to the plugin `name`, over its interfaces.
fn calls_to(registry: &hotslot::Registry, name: &str) -> u64 {
    registry
        .metrics()
        .iter()
        .filter(|m| m.plugin == name)
        .map(|m| m.calls)
        .sum()
}

/// An async call from a runtime built without timers (a plain
/// `new_current_thread().build()`, as a host's test might): it answers;
/// only a plugin's own waits in the host need the runtime's clock.
#[test]
fn an_async_call_needs_no_timers() {
    let (_registry, greeter) = greeter_with(Duration::from_secs(60));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let args = [Val::String("x".into())];
    let answer = runtime.block_on(greeter.call_async("hello", &args));
    assert_eq!(answer.unwrap(), [Val::String("a: hello, x".into())]);
}

/// A plugin that prints, sleeps and polls a clock, called from runtimes
/// built without timers (async and synchronously on a current-thread one,
/// synchronously on a multi-threaded one's worker): each answers. The plugin's waits in the
/// host keep their own clock, whatever runtime the caller runs on.
#[test]
fn a_plugin_that_waits_answers_callers_on_runtimes_without_timers() {
    let (_registry, rogue) = rogue_with(Limits::default(), Grants::default());
    let current_thread = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let answers = current_thread.block_on(async {
        let printed = rogue
            .call_async("flood", &[Val::U32(2), Val::U32(10)])
            .await;
        let slept = rogue.call_async("sleep", &[Val::U64(5), Val::U32(2)]).await;
        let polled = rogue.call_async("poll-sleep", &[Val::U64(5)]).await;
        (printed, slept, polled)
    });
    assert_eq!(answers.0.unwrap(), []);
    assert_eq!(answers.1.unwrap(), [Val::U32(2)]);
    assert_eq!(answers.2.unwrap(), []);

    // Synchronous calls inside that runtime's `block_on` (a
    // `#[tokio::test]`'s body), whose one thread cannot be given up.
    let answers = current_thread.block_on(async {
        let printed = rogue.call("flood", &[Val::U32(2), Val::U32(10)]);
        let slept = rogue.call("sleep", &[Val::U64(5), Val::U32(2)]);
        (printed, slept, rogue.call("poll-sleep", &[Val::U64(5)]))
    });
    assert_eq!(answers.0.unwrap(), []);
    assert_eq!(answers.1.unwrap(), [Val::U32(2)]);
    assert_eq!(answers.2.unwrap(), []);

    let multi_thread = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let on_worker = multi_thread.block_on(async move {
        tokio::spawn(async move {
            let printed = rogue.call("flood", &[Val::U32(2), Val::U32(10)]);
            (printed, rogue.call("sleep", &[Val::U64(5), Val::U32(2)]))
        })
        .await
        .unwrap()
    });
    assert_eq!(on_worker.0.unwrap(), []);
    assert_eq!(on_worker.1.unwrap(), [Val::U32(2)]);
}

/// 40,000 prints in one synchronous call inside a current-thread runtime's
/// `block_on` end well within a 4 s deadline: a print is over at once and
/// needs no thread of its own (one each took ~190 µs here: 7.6 s).
#[test]
fn a_flood_of_prints_in_a_current_thread_block_on_ends_within_its_deadline() {
    let limits = Limits {
        timeout: Duration::from_secs(4),
        ..Limits::default()
    };
    let (_registry, rogue) = rogue_with(limits, Grants::default());
    let current_thread = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let args = [Val::U32(20_000), Val::U32(20)];
    let flood = current_thread.block_on(async { rogue.call("flood", &args) });
    assert_eq!(flood.unwrap(), []);
}

/// A plugin granted a directory reads a file (an open, a `stat`, a
/// stream) through a synchronous call made in a multi-threaded runtime's
/// task; and through `call_async` from a current-thread runtime. Made
/// synchronously inside that runtime's `block_on`, whose one thread cannot
/// be given up, the read fails, and the error says to use `call_async`.
#[test]
fn a_granted_plugin_reads_files_for_callers_in_async_code() {
    let (_base, _registry, rogue) = rogue_reading_a_note();
    let args = [Val::String("/data/note.txt".into())];
    let read = [Val::Result(Ok(Some(Box::new(Val::String("noted".into())))))];

    let (task, args_in_task) = (rogue.clone(), args.clone());
    let in_task = two_workers().block_on(async move {
        tokio::spawn(async move { task.call("read-file", &args_in_task) }).await
    });
    assert_eq!(in_task.unwrap().unwrap(), read);

    let current_thread = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let queued = current_thread.block_on(rogue.call_async("read-file", &args));
    assert_eq!(queued.unwrap(), read);
    let in_block_on = current_thread.block_on(async { rogue.call("read-file", &args) });
    let message = in_block_on.unwrap_err().to_string();
    assert!(
        message
            .contains("cannot wait there for the plugin's file or network I/O: use `call_async`"),
        "{message}"
    );
}

/// The reads refused, and the waits tokio would not let block in place,
/// in the tests above and below fail their call or move to another thread,
/// and nothing else: the panics tokio raises for them are caught, and not
/// printed as a crash would be.
#[test]
fn waits_refused_inside_async_code_print_no_panic() {
    for test in [
        "asynchost::a_granted_plugin_reads_files_for_callers_in_async_code",
        "asynchost::synchronous_calls_in_a_local_set_answer_or_say_what_to_use",
    ] {
        let stderr = stderr_of_test(test);
        assert!(!stderr.contains("panicked"), "{test}: {stderr}");
    }
}

/// Async calls awaited off tokio (an executor of the host's own, here a
/// plain `block_on` that parks its thread): they answer, a granted plugin
/// reads its file, and a spinning call is stopped by its deadline.
#[test]
fn async_calls_awaited_off_tokio_answer_and_keep_their_deadline() {
    let (_base, _registry, granted) = rogue_reading_a_note();
    let note = [Val::String("/data/note.txt".into())];
    let read = off_tokio(granted.call_async("read-file", &note));
    let noted = [Val::Result(Ok(Some(Box::new(Val::String("noted".into())))))];
    assert_eq!(read.unwrap(), noted);

    let (_greeters, greeter) = greeter_with(Duration::from_secs(60));
    let answer = off_tokio(greeter.call_async("hello", &[Val::String("x".into())]));
    assert_eq!(answer.unwrap(), [Val::String("a: hello, x".into())]);

    let limits = Limits {
        timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let (_rogues, rogue) = rogue_with(limits, Grants::default());
    match off_tokio(rogue.call_async("spin", &[])) {
        Err(Error::Call { fault, .. }) => assert_eq!(fault, Fault::Timeout),
        other => panic!("a spin off tokio answered {other:?}"),
    }
}

/// Off tokio too, an async call given up while it waits behind another
/// (its future dropped) is never made, though it would have been in time.
#[test]
fn an_async_call_given_up_off_tokio_is_never_made() {
    use std::future::Future;
    let (_registry, rogue) = rogue_with(Limits::default(), Grants::default());
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    // The sleep is queued first, and takes the plugin's one instance for
    // a second; a count is queued behind it, then given up.
    let sleep_args = [Val::U64(1000), Val::U32(1)];
    let mut sleep = std::pin::pin!(rogue.call_async("sleep", &sleep_args));
    assert!(sleep.as_mut().poll(&mut context).is_pending());
    {
        let mut count = std::pin::pin!(rogue.call_async("count", &[]));
        assert!(count.as_mut().poll(&mut context).is_pending());
    }
    assert_eq!(off_tokio(sleep).unwrap(), [Val::U32(1)]);
    // The same instance: the count given up never ran there.
    let counted = off_tokio(rogue.call_async("count", &[]));
    assert_eq!(counted.unwrap(), [Val::U32(1)]);
}

/// Runs `future` to its end on this thread, on no tokio runtime: what a
/// host with an executor of its own does.
fn off_tokio<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

/// Synchronous calls inside a `LocalSet` on a multi-threaded runtime, where
/// tokio refuses to block in place: a plugin's prints and sleeps answer,
/// and a granted plugin's file read fails the call (never the host),
/// saying to use `call_async`.
#[test]
fn synchronous_calls_in_a_local_set_answer_or_say_what_to_use() {
    let (_base, _registry, granted) = rogue_reading_a_note();
    let (_other, plain) = rogue_with(Limits::default(), Grants::default());
    let runtime = two_workers();
    let local = tokio::task::LocalSet::new();
    let (printed, slept, read) = local.block_on(&runtime, async {
        let printed = plain.call("flood", &[Val::U32(2), Val::U32(10)]);
        let slept = plain.call("sleep", &[Val::U64(5), Val::U32(2)]);
        let read = granted.call("read-file", &[Val::String("/data/note.txt".into())]);
        (printed, slept, read)
    });
    assert_eq!(printed.unwrap(), []);
    assert_eq!(slept.unwrap(), [Val::U32(2)]);
    let message = read.unwrap_err().to_string();
    assert!(message.contains("use `call_async`"), "{message}");
}

/// `rogue`, granted a directory holding `/data/note.txt` ("noted").
fn rogue_reading_a_note() -> (tempfile::TempDir, hotslot::Registry, hotslot::Handle) {
    let base = tempfile::tempdir().unwrap();
    std::fs::create_dir(base.path().join("data")).unwrap();
    std::fs::write(base.path().join("data/note.txt"), "noted").unwrap();
    let grants = Grants::from_toml(
        "[[dir]]\nhost = \"data\"\nguest = \"/data\"\n",
        base.path(),
        "rogue.toml",
    )
    .unwrap();
    let (registry, rogue) = rogue_with(Limits::default(), grants);
    (base, registry, rogue)
}

/// A registry whose calls have `timeout`, serving `greeter_a` as
/// "greeter", and a handle to it.
fn greeter_with(timeout: Duration) -> (hotslot::Registry, hotslot::Handle) {
    let limits = Limits {
        timeout,
        ..Limits::default()
    };
    let engine = hotslot::engine::shared_engine().unwrap();
    let registry = hotslot::Registry::with_engine(engine, limits).unwrap();
    let greeter = plugin(&registry, "greeter_a");
    registry.add_plugin("greeter", &greeter).unwrap();
    let handle = registry
        .implementation("demo:greeter/greet", "greeter")
        .unwrap();
    (registry, handle)
}

/// A synchronous call made on a worker of a multi-threaded tokio runtime
/// (what an async host does by mistake, or on purpose for a quick call):
/// a plugin that prints and sleeps there answers like anywhere else.
#[test]
fn a_synchronous_call_on_a_runtime_worker_answers() {
    let (_registry, rogue) = rogue_with(Limits::default(), Grants::default());
    let runtime = two_workers();
    let on_blocking_pool = rogue.clone();
    let answers = runtime.block_on(async {
        let on_worker = tokio::spawn(async move {
            let printed = rogue.call("flood", &[Val::U32(2), Val::U32(10)]);
            let slept = rogue.call("sleep", &[Val::U64(5), Val::U32(2)]);
            (printed, slept)
        })
        .await
        .unwrap();
        let args = [Val::U64(5), Val::U32(2)];
        (on_worker, on_blocking_pool.call_async("sleep", &args).await)
    });
    assert_eq!(answers.0 .0.unwrap(), []);
    assert_eq!(answers.0 .1.unwrap(), [Val::U32(2)]);
    assert_eq!(answers.1.unwrap(), [Val::U32(2)]);
}

/// An async call given up before the blocking pool got to it (its future
/// dropped, as by a request's timeout) is never made.
#[test]
fn an_async_call_given_up_before_it_started_is_never_made() {
    let (_registry, rogue) = rogue_with(Limits::default(), Grants::default());
    // One blocking thread: a second call waits for the first to end.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .enable_time()
        .build()
        .unwrap();
    let counted = runtime.block_on(async {
        // The sleep takes the one blocking thread first (said by a channel).
        let (started, has_started) = std::sync::mpsc::channel();
        let sleeping = {
            let rogue = rogue.clone();
            tokio::task::spawn_blocking(move || {
                let _ = started.send(());
                rogue.call("sleep", &[Val::U64(1000), Val::U32(1)])
            })
        };
        has_started.recv().unwrap();
        // The sleep holds the one blocking thread for a second; this call
        // is queued behind it and given up, well within its own deadline.
        let queued = rogue.call_async("count", &[]);
        let gave_up = tokio::time::timeout(Duration::from_millis(100), queued).await;
        assert!(gave_up.is_err(), "answered before the sleep ended");
        assert_eq!(sleeping.await.unwrap().unwrap(), [Val::U32(1)]);
        // Whatever was queued behind the sleep has run (or been dropped) by
        // the time this, queued after it, answers.
        rogue.call_async("count", &[]).await
    });
    // The same instance: the count given up never ran there.
    assert_eq!(counted.unwrap(), [Val::U32(1)]);
}

/// A multi-threaded tokio runtime with two workers and timers.
fn two_workers() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}
