//! State across reloads: the host-kept store (`hotslot:plugin/state`),
//! start reasons (`lifecycle`), in-memory migration (`migrate`), and state
//! persisted across restarts, with the two counter plugins.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use hotslot::wasmtime::component::Val;
use hotslot::{Error, Handle, Registry};

use crate::common::plugin_path;

const COUNTER: &str = "demo:counter/counter@1.0.0";
const DEADLINE: Duration = Duration::from_secs(30);

fn u64_of(result: Result<Vec<Val>, Error>) -> u64 {
    match result.unwrap().as_slice() {
        [Val::U64(n)] => *n,
        other => panic!("expected a u64, got {other:?}"),
    }
}

fn starts(handle: &Handle) -> Vec<String> {
    match handle.call("starts", &[]).unwrap().as_slice() {
        [Val::List(items)] => items
            .iter()
            .map(|v| match v {
                Val::String(s) => s.clone(),
                other => panic!("{other:?}"),
            })
            .collect(),
        other => panic!("{other:?}"),
    }
}

/// Writes `name` in `dir` whole, in one step.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.partial"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

/// A running `hotslot watch`.
struct Session {
    child: Child,
    stdin: ChildStdin,
    answers: Receiver<String>,
}

impl Session {
    fn start(dir: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hotslot"))
            .arg("watch")
            .arg(dir)
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, answers) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take().unwrap();
        Session {
            child,
            stdin,
            answers,
        }
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn next(&self) -> String {
        self.answers.recv_timeout(DEADLINE).expect("an answer")
    }

    fn ask(&mut self, line: &str) -> String {
        self.send(line);
        self.next()
    }

    /// `list` (or `state NAME`) up to its `end`.
    fn lines(&mut self, request: &str) -> Vec<String> {
        self.send(request);
        let mut lines = Vec::new();
        loop {
            match self.next() {
                end if end == "end" => return lines,
                line => lines.push(line),
            }
        }
    }

    /// The generation `list` shows for the plugin `name`.
    fn generation(&mut self, name: &str) -> Option<u64> {
        self.lines("list").iter().find_map(|line| {
            let mut words = line.split(' ');
            let (_, plugin, generation) = (words.next()?, words.next()?, words.next()?);
            (plugin == name).then(|| generation.parse().ok()).flatten()
        })
    }

    /// Waits (bounded) until `name` serves with a generation other than
    /// `before`.
    fn wait_reload(&mut self, name: &str, before: Option<u64>) -> u64 {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(now) = self.generation(name).filter(|g| Some(*g) != before) {
                return now;
            }
            assert!(Instant::now() < deadline, "{name} never reloaded");
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The count kept in `state` survives ten reloads, a trap, and the file's
/// removal and return, all through `watch`.
#[test]
fn a_stored_count_survives_reloads_traps_and_the_file_coming_back() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(plugin_path("counter_state"), dir.path().join("c.wasm")).unwrap();
    let mut s = Session::start(dir.path(), &[]);
    let mut expected = 0;
    let mut generation = None;
    for round in 0..10 {
        assert_eq!(
            s.ask("demo:counter/counter#increment()"),
            (expected + 1).to_string()
        );
        expected += 1;
        write_atomic(
            dir.path(),
            "c.toml",
            format!("[env]\nROUND = \"{round}\"\n").as_bytes(),
        );
        generation = Some(s.wait_reload("c", generation));
    }
    assert_eq!(s.ask("demo:counter/counter#get()"), expected.to_string());

    assert!(s.ask("demo:counter/counter#crash()").starts_with("error: "));
    assert_eq!(
        s.ask("demo:counter/counter#get()"),
        expected.to_string(),
        "after a trap"
    );

    std::fs::remove_file(dir.path().join("c.wasm")).unwrap();
    let deadline = Instant::now() + DEADLINE;
    while s.generation("c").is_some() {
        assert!(Instant::now() < deadline, "never removed");
    }
    std::fs::copy(plugin_path("counter_state"), dir.path().join(".c.tmp")).unwrap();
    std::fs::rename(dir.path().join(".c.tmp"), dir.path().join("c.wasm")).unwrap();
    s.wait_reload("c", None);
    assert_eq!(
        s.ask("demo:counter/counter#get()"),
        expected.to_string(),
        "after the file came back"
    );

    let state = s.lines("state c");
    assert!(state.contains(&"\"count\" 8".to_string()), "{state:?}");
    assert!(
        state.iter().any(|l| l.starts_with("\"starts\" ")),
        "{state:?}"
    );
    assert_eq!(
        s.ask("state nobody"),
        "error: no plugin named `nobody` is loaded"
    );
}

#[test]
fn on_start_hears_fresh_then_reload_then_recover() {
    let registry = Registry::new().unwrap();
    let counter = registry.load_file(plugin_path("counter_state")).unwrap();
    registry.add_plugin("c", &counter).unwrap();
    let handle = registry.implementation(COUNTER, "c").unwrap();
    assert_eq!(starts(&handle), ["fresh"]);
    registry.add_plugin("c", &counter).unwrap();
    assert_eq!(starts(&handle), ["fresh", "reload"]);
    assert!(matches!(handle.call("crash", &[]), Err(Error::Call { .. })));
    assert_eq!(starts(&handle), ["fresh", "reload", "recover"]);

    // Dropping the state makes the next start fresh again.
    let state = registry.state("c").unwrap();
    assert_eq!(state.keys(), ["starts"]);
    state.clear().unwrap();
    registry.add_plugin("c", &counter).unwrap();
    assert_eq!(starts(&handle), ["fresh"]);
    assert!(registry.state("nobody").is_none());
}

/// All or nothing: a version refused as it starts (its `on-start` changed
/// the state, then refused) leaves the state as it found it, for the
/// version that serves on; a first load refused leaves the next one
/// `fresh`.
#[test]
fn a_version_refused_at_start_up_changes_no_state() {
    let grants = |reason: &str| {
        hotslot::Grants::from_toml(
            &format!("[env]\nCOUNTER_WRITE_THEN_REFUSE = \"{reason}\"\n"),
            Path::new("."),
            "c.toml",
        )
        .unwrap()
    };
    let registry = Registry::new().unwrap();
    let counter = registry.load_file(plugin_path("counter_state")).unwrap();

    // A first load refused: nothing kept, and the next start is fresh.
    let err = registry
        .add_plugin("c", &counter.clone().with_grants(grants("fresh")))
        .unwrap_err();
    assert!(
        err.to_string().contains("wrote, then refused (fresh)"),
        "{err}"
    );
    assert!(registry.state("c").is_none_or(|s| s.keys().is_empty()));
    registry.add_plugin("c", &counter).unwrap();
    let handle = registry.implementation(COUNTER, "c").unwrap();
    assert_eq!(starts(&handle), ["fresh"]);
    assert_eq!(u64_of(handle.call("increment", &[])), 1);

    // A reload refused: the serving version's state untouched.
    let err = registry
        .add_plugin("c", &counter.clone().with_grants(grants("reload")))
        .unwrap_err();
    assert!(
        err.to_string().contains("wrote, then refused (reload)"),
        "{err}"
    );
    let state = registry.state("c").unwrap();
    assert_eq!(state.keys(), ["count", "starts"]);
    assert_eq!(starts(&handle), ["fresh"]);
    assert_eq!(u64_of(handle.call("increment", &[])), 2);

    // A reload taken: what its start-up wrote is kept (in the store, not
    // only as its own instance sees it).
    registry.add_plugin("c", &counter).unwrap();
    assert_eq!(
        state.get("starts").as_deref(),
        Some(&b"fresh\nreload\n"[..])
    );
    assert_eq!(starts(&handle), ["fresh", "reload"]);
    assert_eq!(u64_of(handle.call("increment", &[])), 3);
}

#[test]
fn the_quota_refuses_a_set_past_it_and_plugins_cannot_read_each_others_state() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["a", "b"] {
        std::fs::copy(
            plugin_path("counter_state"),
            dir.path().join(format!("{name}.wasm")),
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("a.toml"), "[limits]\nmax-state-kib = 1\n").unwrap();
    let registry = Registry::new().unwrap();
    registry.add_file(dir.path().join("a.wasm")).unwrap();
    registry.add_file(dir.path().join("b.wasm")).unwrap();
    let a = registry.implementation(COUNTER, "a").unwrap();
    let b = registry.implementation(COUNTER, "b").unwrap();
    assert_eq!(u64_of(a.call("increment", &[])), 1);
    assert_eq!(u64_of(a.call("increment", &[])), 2);
    assert_eq!(u64_of(b.call("get", &[])), 0, "b sees none of a's state");

    match a.call("pad", &[Val::U32(2000)]).unwrap().as_slice() {
        [Val::Result(Err(Some(message)))] => match &**message {
            Val::String(text) => assert!(text.contains("quota"), "{text}"),
            other => panic!("{other:?}"),
        },
        other => panic!("a set past the quota answered {other:?}"),
    }
    assert_eq!(
        registry.state("a").unwrap().get("pad"),
        None,
        "nothing stored"
    );
    assert_eq!(u64_of(a.call("get", &[])), 2);
    assert!(
        b.call("pad", &[Val::U32(2000)]).is_ok(),
        "b's quota is its own"
    );
}

#[test]
fn a_migrated_in_memory_count_survives_a_reload_and_a_refused_restore_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(plugin_path("counter_memory"), dir.path().join("m.wasm")).unwrap();
    let registry = Registry::new().unwrap();
    registry.add_file(dir.path().join("m.wasm")).unwrap();
    let handle = registry.implementation(COUNTER, "m").unwrap();
    for n in 1..=3 {
        assert_eq!(u64_of(handle.call("increment", &[])), n);
    }
    let before = handle.generation();

    std::fs::write(
        dir.path().join("m.toml"),
        "[env]\nCOUNTER_FAIL_RESTORE = \"1\"\n",
    )
    .unwrap();
    let err = registry.add_file(dir.path().join("m.wasm")).unwrap_err();
    assert!(err.to_string().contains("restore refused"), "{err}");
    assert_eq!(handle.generation(), before, "the old version serves");
    assert_eq!(u64_of(handle.call("get", &[])), 3, "its memory intact");

    std::fs::remove_file(dir.path().join("m.toml")).unwrap();
    registry.add_file(dir.path().join("m.wasm")).unwrap();
    assert_ne!(handle.generation(), before);
    assert_eq!(u64_of(handle.call("get", &[])), 3, "migrated");
    assert_eq!(starts(&handle), ["fresh", "reload"]);
    assert_eq!(u64_of(handle.call("increment", &[])), 4);
}

/// A version whose `snapshot` traps has lost its memory with its instance:
/// the next version takes over all the same, without a `restore` (it was
/// refused, and so was every version after it, the fix included).
#[test]
fn a_trapping_snapshot_does_not_refuse_the_next_version() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(plugin_path("counter_memory"), dir.path().join("m.wasm")).unwrap();
    let manifest = dir.path().join("m.toml");
    std::fs::write(&manifest, "[env]\nCOUNTER_TRAP_SNAPSHOT = \"1\"\n").unwrap();
    let registry = Registry::new().unwrap();
    registry.add_file(dir.path().join("m.wasm")).unwrap();
    let handle = registry.implementation(COUNTER, "m").unwrap();
    assert_eq!(u64_of(handle.call("increment", &[])), 1);
    let before = handle.generation();

    std::fs::remove_file(&manifest).unwrap();
    registry.add_file(dir.path().join("m.wasm")).unwrap();
    assert_ne!(handle.generation(), before, "the new version serves");
    assert_eq!(
        u64_of(handle.call("get", &[])),
        0,
        "nothing was handed over"
    );
    assert_eq!(starts(&handle), ["reload"]);
    // It hands its own memory on as usual.
    assert_eq!(u64_of(handle.call("increment", &[])), 1);
    registry.add_file(dir.path().join("m.wasm")).unwrap();
    assert_eq!(u64_of(handle.call("get", &[])), 1, "migrated");
}

#[test]
fn a_plugin_that_migrates_runs_one_instance() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(plugin_path("counter_memory"), dir.path().join("m.wasm")).unwrap();
    std::fs::write(dir.path().join("m.toml"), "[limits]\ninstances = 2\n").unwrap();
    let err = Registry::new()
        .unwrap()
        .add_file(dir.path().join("m.wasm"))
        .unwrap_err();
    assert!(err.to_string().contains("one instance"), "{err}");
}

/// A plugin that refuses to start as a recovery: after its trap, calls
/// fail with its reason, then at once without another attempt (backoff).
#[test]
fn a_refused_recovery_fails_the_call_with_the_plugins_reason_and_backs_off() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(plugin_path("counter_state"), dir.path().join("c.wasm")).unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        "[env]\nCOUNTER_REFUSE = \"recover\"\n",
    )
    .unwrap();
    let registry = Registry::new().unwrap();
    registry.add_file(dir.path().join("c.wasm")).unwrap();
    let handle = registry.implementation(COUNTER, "c").unwrap();
    assert_eq!(u64_of(handle.call("increment", &[])), 1);
    assert!(matches!(handle.call("crash", &[]), Err(Error::Call { .. })));
    let first = handle.call("get", &[]).unwrap_err();
    assert!(matches!(first, Error::Instantiate { .. }), "{first:?}");
    assert!(
        first.to_string().contains("refusing to start (recover)"),
        "{first}"
    );
    let second = handle.call("get", &[]).unwrap_err();
    assert!(second.to_string().contains("not tried again"), "{second}");

    // A reload refused by on-start leaves the old version serving.
    std::fs::write(
        dir.path().join("c.toml"),
        "[env]\nCOUNTER_REFUSE = \"reload\"\n",
    )
    .unwrap();
    let err = registry.add_file(dir.path().join("c.wasm")).unwrap_err();
    assert!(
        err.to_string().contains("refusing to start (reload)"),
        "{err}"
    );
    assert!(err.to_string().contains("`c`"), "names the plugin: {err}");
    // Named by what it serves, not by the hotslot:plugin interfaces the
    // host calls on it.
    match &err {
        Error::Instantiate { interface, .. } => assert_eq!(interface, COUNTER),
        other => panic!("expected Instantiate, got {other:?}"),
    }
}

#[test]
fn persisted_state_comes_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = tempfile::tempdir().unwrap();
    std::fs::copy(plugin_path("counter_state"), dir.path().join("p.wasm")).unwrap();
    std::fs::write(dir.path().join("p.toml"), "[state]\npersist = true\n").unwrap();
    for round in 1..=3 {
        let registry = Registry::new().unwrap().with_state_dir(state_dir.path());
        registry.add_file(dir.path().join("p.wasm")).unwrap();
        let handle = registry.implementation(COUNTER, "p").unwrap();
        assert_eq!(u64_of(handle.call("increment", &[])), round);
    }
    // Without a state directory, persisting is refused by name.
    let err = Registry::new()
        .unwrap()
        .add_file(dir.path().join("p.wasm"))
        .unwrap_err();
    assert!(err.to_string().contains("state directory"), "{err}");
    match &err {
        Error::Manifest { file, .. } => assert!(file.ends_with("p.toml"), "{file}"),
        other => panic!("expected the manifest named, got {other:?}"),
    }
}

/// A real `hotslot watch` killed with SIGKILL while it counts: after a
/// restart the count is every increment answered, or one more (the one in
/// flight when it died).
#[test]
fn persisted_state_survives_sigkill_mid_stream() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(plugin_path("counter_state"), dir.path().join("p.wasm")).unwrap();
    std::fs::write(dir.path().join("p.toml"), "[state]\npersist = true\n").unwrap();
    let mut s = Session::start(dir.path(), &[]);
    // A stream of increments, more than will be answered before the kill.
    let burst = "demo:counter/counter#increment()\n".repeat(400);
    s.stdin.write_all(burst.as_bytes()).unwrap();
    let mut answered = 0;
    while answered < 100 {
        assert_eq!(s.next(), (answered + 1).to_string());
        answered += 1;
    }
    s.child.kill().unwrap(); // SIGKILL
    let _ = s.child.wait();
    while s.answers.try_recv().is_ok() {
        answered += 1; // answers already written before it died
    }

    let mut again = Session::start(dir.path(), &[]);
    let count: u64 = again.ask("demo:counter/counter#get()").parse().unwrap();
    assert!(
        count == answered || count == answered + 1,
        "{answered} answered, {count} kept"
    );
    assert!(dir.path().join(".hotslot-state/state.redb").exists());
}

/// A reload of a plugin that migrates its memory needs its one instance: a
/// batch of calls holding it past the deadline refuses the reload for the
/// moment, and the watcher tries again once it is free.
#[test]
fn a_reload_refused_while_the_only_instance_is_busy_is_tried_again() {
    use hotslot::{Limits, WatchEvent, Watcher};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().canonicalize().unwrap().join("m.wasm");
    let code = std::fs::read(plugin_path("counter_memory")).unwrap();
    std::fs::write(&file, &code).unwrap();
    let limits = Limits {
        timeout: std::time::Duration::from_millis(300),
        ..Limits::default()
    };
    let engine = hotslot::engine::shared_engine().unwrap();
    let registry = std::sync::Arc::new(Registry::with_engine(engine, limits).unwrap());
    let mut watcher = Watcher::new(registry.clone(), dir.path());
    let events = watcher.subscribe();
    watcher.start().unwrap();
    let handle = registry.implementation(COUNTER, "m").unwrap();
    assert_eq!(u64_of(handle.call("increment", &[])), 1);
    let before = handle.generation();
    let wait_for = |what: &str, want: &dyn Fn(&WatchEvent) -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match events.recv_timeout(left) {
                Ok(event) if want(&event) => return event,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no {what} within 30 s");
    };

    handle
        .batch(|_| {
            let tmp = dir.path().join(".m.partial");
            std::fs::write(&tmp, crate::common::with_build_id(&code, "2")).unwrap();
            std::fs::rename(&tmp, &file).unwrap();
            let refused = wait_for(
                "a refusal while busy",
                &|e| matches!(e, WatchEvent::Rejected { file: f, .. } if *f == file),
            );
            assert!(
                format!("{refused:?}").contains("trying again"),
                "{refused:?}"
            );
            // Held on through the looks the file's own events cause (each
            // refused too), so that only a try made later can reload it.
            let until = std::time::Instant::now() + std::time::Duration::from_millis(1500);
            while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
                if let Ok(WatchEvent::Reloaded { .. }) = events.recv_timeout(left) {
                    panic!("reloaded while its only instance was held");
                }
            }
        })
        .unwrap();
    wait_for(
        "the reload once free",
        &|e| matches!(e, WatchEvent::Reloaded { file: f, .. } if *f == file),
    );
    assert_ne!(handle.generation(), before);
    assert_eq!(u64_of(handle.call("get", &[])), 1, "migrated");
    // Busy is not this content refused: no refusal counted.
    let metrics = registry.metrics();
    let m = metrics.iter().find(|m| m.plugin == "m").unwrap();
    assert_eq!((m.reloads, m.rejected_reloads), (1, 0));
}
