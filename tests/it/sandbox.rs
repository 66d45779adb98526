//! One test per fault a plugin can commit, with the rogue plugin. Each costs
//! the call it happens in, and the next call through the same handle works.

use std::time::{Duration, Instant};

use hotslot::wasmtime::component::Val;
use hotslot::{Error, Fault, Grants, Handle, Limits, Registry};

use crate::common::{rogue_with, ROGUE};

fn rogue(limits: Limits) -> (Registry, Handle) {
    rogue_with(limits, Grants::default())
}

fn fault(result: Result<Vec<Val>, Error>) -> (Fault, String) {
    match result {
        Err(e @ Error::Call { fault, .. }) => (fault, e.to_string()),
        other => panic!("expected a failed call, got {other:?}"),
    }
}

/// The handle still serves, from a fresh instance (its call count restarts).
fn serves_afresh(handle: &Handle) {
    assert_eq!(
        handle.call("ping", &[]).unwrap(),
        [Val::String("pong".into())]
    );
    assert_eq!(
        handle.call("count", &[]).unwrap(),
        [Val::U32(1)],
        "a fresh instance"
    );
}

fn text(s: &str) -> Val {
    Val::String(s.into())
}

#[test]
fn a_trap_fails_one_call_naming_plugin_function_and_cause() {
    let (_registry, handle) = rogue(Limits::default());
    assert_eq!(handle.call("count", &[]).unwrap(), [Val::U32(1)]);
    assert_eq!(handle.call("count", &[]).unwrap(), [Val::U32(2)]);
    let (kind, message) = fault(handle.call("trap", &[]));
    assert_eq!(kind, Fault::Trap);
    for part in [ROGUE, "`rogue`", "trap", "unreachable"] {
        assert!(message.contains(part), "{message}");
    }
    serves_afresh(&handle);
}

#[test]
fn an_endless_loop_is_stopped_within_twice_the_deadline() {
    let timeout = Duration::from_millis(300);
    let (_registry, handle) = rogue(Limits {
        timeout,
        ..Limits::default()
    });
    let started = Instant::now();
    let (kind, message) = fault(handle.call("spin", &[]));
    let took = started.elapsed();
    assert_eq!(kind, Fault::Timeout, "{message}");
    // The deadline is kept by a 5 ms epoch clock: on a loaded machine a late
    // ticker catches up at once, so only the upper bound is exact.
    assert!(
        took >= timeout / 2 && took < 2 * timeout,
        "stopped after {took:?}"
    );
    assert!(
        message.contains("spin") && message.contains("deadline"),
        "{message}"
    );
    serves_afresh(&handle);
}

#[test]
fn a_sleep_past_the_deadline_is_stopped_at_it() {
    // A sleep waits in the host (on a WASI clock), where the epoch that
    // stops a loop cannot reach.
    let timeout = Duration::from_millis(300);
    let (_registry, handle) = rogue(Limits {
        timeout,
        ..Limits::default()
    });
    // Sleeps within the deadline end as asked.
    let slept = handle.call("sleep", &[Val::U64(5), Val::U32(3)]).unwrap();
    assert_eq!(slept, [Val::U32(3)]);
    // Ten times the deadline (not an hour: were it not stopped, the test
    // should fail, not hang).
    let long = Val::U64(3_000);
    let started = Instant::now();
    let (kind, message) = fault(handle.call("sleep", &[long, Val::U32(1)]));
    let took = started.elapsed();
    assert_eq!(kind, Fault::Timeout, "{message}");
    assert!(took < 2 * timeout, "stopped after {took:?}");
    assert!(
        message.contains("sleep") && message.contains("deadline"),
        "{message}"
    );
    serves_afresh(&handle);
    // Short sleeps over and over: each wait is bounded by what is left.
    let started = Instant::now();
    let (kind, message) = fault(handle.call("sleep", &[Val::U64(50), Val::U32(1000)]));
    assert_eq!(kind, Fault::Timeout, "{message}");
    assert!(started.elapsed() < 2 * timeout, "{:?}", started.elapsed());
}

/// Calls `function` on a thread of its own and waits at most `patience`
/// for its answer: a wait the host does not bound fails the test rather
/// than hanging it.
fn answered_within(
    handle: &Handle,
    function: &'static str,
    args: Vec<Val>,
    patience: Duration,
) -> (Result<Vec<Val>, Error>, Duration) {
    let (sender, receiver) = std::sync::mpsc::channel();
    let handle = handle.clone();
    let started = Instant::now();
    std::thread::spawn(move || {
        let _ = sender.send(handle.call(function, &args));
    });
    match receiver.recv_timeout(patience) {
        Ok(answer) => (answer, started.elapsed()),
        Err(_) => panic!("{function} still waiting after {patience:?}"),
    }
}

#[test]
fn waits_in_the_host_end_at_the_deadline_with_no_grant_needed() {
    let timeout = Duration::from_millis(300);
    let (_registry, handle) = rogue(Limits {
        timeout,
        ..Limits::default()
    });
    // A clock through `wasi:io/poll.poll`, short and then ten times the
    // deadline.
    let (answer, _) = answered_within(&handle, "poll-sleep", vec![Val::U64(5)], 10 * timeout);
    assert_eq!(answer.unwrap(), []);
    let (answer, took) =
        answered_within(&handle, "poll-sleep", vec![Val::U64(3_000)], 10 * timeout);
    let (kind, message) = fault(answer);
    assert_eq!(kind, Fault::Timeout, "{message}");
    assert!(took < 2 * timeout, "stopped after {took:?}");
    // The body of an HTTP request never sent: nothing ever reads it, and a
    // blocking write into it waited for ever.
    let (answer, took) = answered_within(&handle, "stall-body", vec![Val::U32(100)], 10 * timeout);
    let (kind, message) = fault(answer);
    assert_eq!(kind, Fault::Timeout, "{message}");
    assert!(message.contains("stall-body"), "{message}");
    assert!(took < 2 * timeout, "stopped after {took:?}");
    serves_afresh(&handle);
}

#[test]
fn a_memory_bomb_hits_the_limit() {
    let (_registry, handle) = rogue(Limits {
        max_memory: 32 << 20,
        ..Limits::default()
    });
    assert_eq!(handle.call("hog", &[Val::U32(8)]).unwrap(), [Val::U32(8)]);
    let (kind, message) = fault(handle.call("hog", &[Val::U32(1024)]));
    assert_eq!(kind, Fault::Limit, "{message}");
    assert!(message.contains("memory limit"), "{message}");
    serves_afresh(&handle);
}

#[test]
fn endless_recursion_overflows_the_wasm_stack_not_the_host() {
    let (_registry, handle) = rogue(Limits::default());
    assert_eq!(
        handle.call("recurse", &[Val::U64(1000)]).unwrap(),
        [Val::U64(1000)]
    );
    let (kind, message) = fault(handle.call("recurse", &[Val::U64(u64::MAX)]));
    assert_eq!(kind, Fault::StackOverflow, "{message}");
    serves_afresh(&handle);
}

#[test]
fn an_output_flood_costs_nothing_but_its_own_call() {
    let (_registry, handle) = rogue(Limits::default());
    let flood = handle.call("flood", &[Val::U32(20_000), Val::U32(200)]);
    assert!(flood.is_ok(), "{flood:?}");
    assert_eq!(handle.call("ping", &[]).unwrap(), [text("pong")]);
}

#[test]
fn nothing_is_granted_by_default() {
    let (_registry, handle) = rogue(Limits::default());
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "host secret").unwrap();
    let path = secret.path().to_str().unwrap();
    match handle.call("read-file", &[text(path)]).unwrap().as_slice() {
        [Val::Result(Err(_))] => {}
        other => panic!("read a host file without a grant: {other:?}"),
    }
    assert_eq!(
        handle.call("env", &[text("HOME")]).unwrap(),
        [Val::Option(None)]
    );
    assert_eq!(
        handle.call("env", &[text("PATH")]).unwrap(),
        [Val::Option(None)]
    );
}

#[test]
fn granted_directories_and_environment_are_reachable_read_only_enforced() {
    let base = tempfile::tempdir().unwrap();
    std::fs::create_dir(base.path().join("ro")).unwrap();
    std::fs::create_dir(base.path().join("rw")).unwrap();
    std::fs::write(base.path().join("ro/greeting.txt"), "granted").unwrap();
    let grants = Grants::from_toml(
        r#"
        [env]
        MODE = "sandboxed"

        [[dir]]
        host = "ro"
        guest = "/ro"

        [[dir]]
        host = "rw"
        guest = "/rw"
        mode = "read-write"
        "#,
        base.path(),
        "rogue.toml",
    )
    .unwrap();
    let (_registry, handle) = rogue_with(Limits::default(), grants);

    let ok = |v: Option<Val>| Val::Result(Ok(v.map(Box::new)));
    assert_eq!(
        handle
            .call("read-file", &[text("/ro/greeting.txt")])
            .unwrap(),
        [ok(Some(text("granted")))]
    );
    match handle
        .call("write-file", &[text("/ro/new.txt"), text("x")])
        .unwrap()
        .as_slice()
    {
        [Val::Result(Err(_))] => {}
        other => panic!("wrote into a read-only grant: {other:?}"),
    }
    assert!(!base.path().join("ro/new.txt").exists());
    assert_eq!(
        handle
            .call("write-file", &[text("/rw/new.txt"), text("written")])
            .unwrap(),
        [ok(None)]
    );
    assert_eq!(
        std::fs::read_to_string(base.path().join("rw/new.txt")).unwrap(),
        "written"
    );
    // Outside the grants, still nothing.
    match handle
        .call("read-file", &[text("/etc/passwd")])
        .unwrap()
        .as_slice()
    {
        [Val::Result(Err(_))] => {}
        other => panic!("escaped the grants: {other:?}"),
    }
    assert_eq!(
        handle.call("env", &[text("MODE")]).unwrap(),
        [Val::Option(Some(Box::new(text("sandboxed"))))]
    );
}

#[test]
fn a_manifest_limit_overrides_the_default() {
    let grants = Grants::from_toml(
        "[limits]\ntimeout-ms = 100\n",
        std::path::Path::new("."),
        "m",
    )
    .unwrap();
    let (_registry, handle) = rogue_with(Limits::default(), grants);
    let started = Instant::now();
    let (kind, _) = fault(handle.call("spin", &[]));
    assert_eq!(kind, Fault::Timeout);
    assert!(
        // Far below the 5 s default: the manifest's 100 ms applied.
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

mod typed {
    hotslot::wasmtime::component::bindgen!({ path: "../wit/rogue", world: "rogue" });
    hotslot::bindings!(Rogue);
}

/// With two instances granted, a second call is served while the first is
/// still running (here: from inside it), by an instance of its own.
#[test]
fn two_instances_serve_two_calls_at_once() {
    let grants =
        Grants::from_toml("[limits]\ninstances = 2\n", std::path::Path::new("."), "m").unwrap();
    let (_registry, handle) = rogue_with(Limits::default(), grants);
    let (outer, inner) = handle
        .call_typed(|r: &typed::Rogue, store| {
            let outer = r.demo_rogue_misbehave().call_count(&mut *store)?;
            let inner = handle.call("count", &[]).expect("a second lane serves");
            Ok((outer, inner))
        })
        .unwrap();
    assert_eq!(outer, 1);
    assert_eq!(inner, [Val::U32(1)], "its own instance");
}

/// Start-up code is bounded like a call: a component whose start function
/// never returns is refused at its deadline, and nothing reaches the slot.
#[test]
fn an_endless_start_function_is_stopped_and_refused() {
    let timeout = Duration::from_millis(200);
    let engine = hotslot::engine::shared_engine().unwrap();
    let registry = Registry::with_engine(
        engine,
        Limits {
            timeout,
            ..Limits::default()
        },
    )
    .unwrap();
    let bytes = wat::parse_str(
        r#"(component
            (core module $m
                (func $forever (loop $again (br $again)))
                (start $forever)
                (func (export "v") (result i32) i32.const 1))
            (core instance $i (instantiate $m))
            (func $v (result u32) (canon lift (core func $i "v")))
            (instance $probe (export "version" (func $v)))
            (export "demo:probe/probe@1.0.0" (instance $probe))
        )"#,
    )
    .unwrap();
    let plugin = registry.load_bytes("looping-start.wasm", &bytes).unwrap();
    let handle = registry.get("demo:probe/probe@1").unwrap();
    let started = Instant::now();
    let err = registry
        .add_implementation("demo:probe/probe@1.0.0", "loop", &plugin)
        .unwrap_err();
    assert!(
        started.elapsed() < 2 * timeout,
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(err, Error::Instantiate { .. }), "{err:?}");
    assert!(
        err.to_string().contains("looping-start.wasm") && err.to_string().contains("interrupt"),
        "{err}"
    );
    assert!(!handle.is_available());
}

/// A FIFO in a granted directory: opening it to read waited for a writer
/// that never came, past the deadline, for ever, with the plugin's
/// instance. Now it is refused at once (an error the plugin reads, not the
/// deadline's fault), and a file beside it still opens.
#[test]
fn a_fifo_in_a_granted_directory_is_refused_not_waited_on() {
    let base = tempfile::tempdir().unwrap();
    std::fs::create_dir(base.path().join("io")).unwrap();
    std::fs::write(base.path().join("io/plain.txt"), "plain").unwrap();
    let fifo = base.path().join("io/fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let grants = Grants::from_toml(
        "[[dir]]\nhost = \"io\"\nguest = \"/io\"\n",
        base.path(),
        "rogue.toml",
    )
    .unwrap();
    let timeout = Duration::from_secs(2);
    let limits = Limits {
        timeout,
        ..Limits::default()
    };
    let (_registry, handle) = rogue_with(limits, grants);
    let (answer, _) = answered_within(&handle, "read-file", vec![text("/io/fifo")], 10 * timeout);
    match answer.unwrap().as_slice() {
        [Val::Result(Err(Some(why)))] => assert!(
            matches!(&**why, Val::String(why) if why.contains("Permission denied")),
            "{why:?}"
        ),
        other => panic!("a FIFO opened: {other:?}"),
    }
    let plain = handle.call("read-file", &[text("/io/plain.txt")]).unwrap();
    let read = Val::Result(Ok(Some(Box::new(text("plain")))));
    assert_eq!(plain, [read]);
}
