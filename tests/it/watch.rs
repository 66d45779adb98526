//! The watcher, through real files in a temporary directory. Every wait is on
//! a watcher event or a poll with a deadline, never a bare sleep.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use hotslot::{Error, Registry, WatchEvent, Watcher};

use crate::common::{hello, plugin_path, GREET};

const DEADLINE: Duration = Duration::from_secs(20);

struct Setup {
    dir: tempfile::TempDir,
    registry: Arc<Registry>,
    watcher: Watcher,
    events: Receiver<WatchEvent>,
}

impl Setup {
    /// A watched temporary directory holding `files` (name, plugin stem).
    fn new(files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for (name, stem) in files {
            fs::copy(plugin_path(stem), dir.path().join(name)).unwrap();
        }
        let registry = Arc::new(Registry::new().unwrap());
        let mut watcher = Watcher::new(registry.clone(), dir.path());
        let events = watcher.subscribe();
        watcher.start().unwrap();
        Setup {
            dir,
            registry,
            watcher,
            events,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().canonicalize().unwrap().join(name)
    }

    /// Waits for the first event that `want` accepts; panics with what came
    /// instead once the deadline passes.
    fn wait_for(&self, what: &str, want: impl Fn(&WatchEvent) -> bool) -> WatchEvent {
        let deadline = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.events.recv_timeout(left) {
                Ok(event) if want(&event) => return event,
                Ok(event) => seen.push(event),
                Err(_) => break,
            }
        }
        panic!("no {what} within {DEADLINE:?}; saw {seen:#?}");
    }

    fn wait_loaded(&self, name: &str) -> WatchEvent {
        let file = self.path(name);
        self.wait_for(
            &format!("load of {name}"),
            |e| matches!(e, WatchEvent::Loaded { file: f, .. } if *f == file),
        )
    }

    fn wait_reloaded(&self, name: &str) -> WatchEvent {
        let file = self.path(name);
        self.wait_for(
            &format!("reload of {name}"),
            |e| matches!(e, WatchEvent::Reloaded { file: f, .. } if *f == file),
        )
    }

    fn wait_removed(&self, name: &str) {
        let file = self.path(name);
        self.wait_for(
            &format!("removal of {name}"),
            |e| matches!(e, WatchEvent::Removed { file: f, .. } if *f == file),
        );
    }

    fn wait_rejected(&self, name: &str) -> String {
        let file = self.path(name);
        match self.wait_for(
            &format!("rejection of {name}"),
            |e| matches!(e, WatchEvent::Rejected { file: f, .. } if *f == file),
        ) {
            WatchEvent::Rejected { reason, .. } => reason,
            _ => unreachable!(),
        }
    }

    /// Replaces `name` the way `cp` does: truncate, write, close.
    fn copy_plain(&self, stem: &str, name: &str) {
        fs::copy(plugin_path(stem), self.dir.path().join(name)).unwrap();
    }

    /// Replaces `name` atomically: write a temporary file, rename it over.
    fn copy_atomic(&self, stem: &str, name: &str) {
        let tmp = self.dir.path().join(format!(".{name}.partial"));
        fs::copy(plugin_path(stem), &tmp).unwrap();
        fs::rename(&tmp, self.dir.path().join(name)).unwrap();
    }

    fn write(&self, name: &str, bytes: &[u8]) {
        fs::write(self.dir.path().join(name), bytes).unwrap();
    }

    /// Writes `name` whole in one step (a temporary file renamed over it),
    /// so the watcher can never read it half-written.
    fn write_atomic(&self, name: &str, bytes: &[u8]) {
        let tmp = self.dir.path().join(format!(".{name}.partial"));
        fs::write(&tmp, bytes).unwrap();
        fs::rename(&tmp, self.dir.path().join(name)).unwrap();
    }
}

/// Adds a marker plugin and returns every event before its load: events are
/// handled in order, so anything earlier writes caused has been reported.
fn events_before_barrier(setup: &Setup, marker: &str) -> Vec<WatchEvent> {
    setup.copy_plain("greeter_b", marker);
    let file = setup.path(marker);
    let mut seen = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .expect("barrier timed out");
        let event = setup.events.recv_timeout(left).expect("barrier timed out");
        if matches!(&event, WatchEvent::Loaded { file: f, .. } if *f == file) {
            return seen;
        }
        seen.push(event);
    }
}

#[test]
fn loads_every_component_at_start_in_file_name_order() {
    let setup = Setup::new(&[
        ("b_second.wasm", "greeter_b"),
        ("a_first.wasm", "greeter_a"),
    ]);
    let names: Vec<String> = setup.registry.list().into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["a_first", "b_second"]);
    let first = setup.registry.first_implementation(GREET).unwrap();
    assert_eq!(hello(&first, "o").unwrap(), "a: hello, o");
    // They load in parallel: their events may come in either order.
    let mut loaded: Vec<PathBuf> = (0..2)
        .map(
            |_| match setup.wait_for("a load", |e| matches!(e, WatchEvent::Loaded { .. })) {
                WatchEvent::Loaded { file, .. } => file,
                _ => unreachable!(),
            },
        )
        .collect();
    loaded.sort();
    assert_eq!(
        loaded,
        [setup.path("a_first.wasm"), setup.path("b_second.wasm")]
    );
}

#[test]
fn a_component_exporting_two_interfaces_is_registered_for_both() {
    let setup = Setup::new(&[("calc.wasm", "calc")]);
    match setup.wait_loaded("calc.wasm") {
        WatchEvent::Loaded {
            interfaces, name, ..
        } => {
            assert_eq!(name, "calc");
            let names: Vec<String> = interfaces.iter().map(|(i, _)| i.to_string()).collect();
            assert_eq!(names, ["demo:calc/math@1.0.0", GREET]);
        }
        _ => unreachable!(),
    }
    assert!(setup
        .registry
        .first_implementation("demo:calc/math@1")
        .is_ok());
}

#[test]
fn create_then_plain_copy_over_then_atomic_rename_over() {
    let setup = Setup::new(&[]);
    let handle = setup.registry.get(GREET).unwrap();
    assert!(!handle.is_available());

    setup.copy_plain("greeter_a", "g.wasm");
    setup.wait_loaded("g.wasm");
    assert_eq!(hello(&handle, "1").unwrap(), "a: hello, 1");

    setup.copy_plain("greeter_b", "g.wasm");
    setup.wait_reloaded("g.wasm");
    assert_eq!(hello(&handle, "2").unwrap(), "b: bonjour, 2");

    setup.copy_atomic("greeter_a", "g.wasm");
    match setup.wait_reloaded("g.wasm") {
        WatchEvent::Reloaded { timings, .. } => {
            assert!(timings.cached, "a's bytes were compiled before")
        }
        _ => unreachable!(),
    }
    assert_eq!(hello(&handle, "3").unwrap(), "a: hello, 3");
}

/// A component linked into the directory is reloaded when the file it is
/// linked to changes: a symbolic link to a build's output elsewhere (the
/// output replaced by a rename, and the way cargo puts it in place: removed,
/// then hard-linked from `deps/`), and a hard link and a symbolic link to a
/// file here written in place under its own name.
#[test]
fn a_linked_component_follows_the_file_it_is_linked_to() {
    use std::os::unix::fs::symlink;
    let setup = Setup::new(&[]);
    let build = tempfile::tempdir().unwrap();
    let output = build.path().join("x.wasm");
    fs::copy(plugin_path("greeter_a"), &output).unwrap();
    symlink(&output, setup.dir.path().join("x.wasm")).unwrap();
    setup.wait_loaded("x.wasm");
    let x = setup.registry.implementation(GREET, "x").unwrap();
    assert_eq!(hello(&x, "1").unwrap(), "a: hello, 1");

    let tmp = build.path().join(".x.wasm.tmp");
    fs::copy(plugin_path("greeter_b"), &tmp).unwrap();
    fs::rename(&tmp, &output).unwrap();
    setup.wait_reloaded("x.wasm");
    assert_eq!(hello(&x, "2").unwrap(), "b: bonjour, 2");

    let deps = build.path().join("deps");
    fs::create_dir(&deps).unwrap();
    fs::copy(plugin_path("greeter_a"), deps.join("x.wasm")).unwrap();
    fs::remove_file(&output).unwrap();
    fs::hard_link(deps.join("x.wasm"), &output).unwrap();
    answers_within(&x, "a: hello, 3");

    setup.copy_plain("greeter_a", "g.wasm");
    setup.wait_loaded("g.wasm");
    fs::hard_link(
        setup.dir.path().join("g.wasm"),
        setup.dir.path().join("h.wasm"),
    )
    .unwrap();
    setup.wait_loaded("h.wasm");
    symlink("g.wasm", setup.dir.path().join("s.wasm")).unwrap();
    setup.wait_loaded("s.wasm");
    // Written in place, under one name: all three are that file.
    fs::write(
        setup.dir.path().join("g.wasm"),
        fs::read(plugin_path("greeter_b")).unwrap(),
    )
    .unwrap();
    for name in ["h", "s", "g"] {
        let handle = setup.registry.implementation(GREET, name).unwrap();
        answers_within(&handle, "b: bonjour, 3");
    }
}

/// `cargo clean` removes the directory a linked component points into;
/// the plugin keeps serving, and when a build makes the directory again and
/// writes the file there, the plugin reloads from it.
#[test]
fn a_link_into_a_directory_removed_and_made_again_follows_the_build() {
    use std::os::unix::fs::symlink;
    let setup = Setup::new(&[]);
    let build = tempfile::tempdir().unwrap();
    let release = build.path().join("release");
    fs::create_dir(&release).unwrap();
    fs::copy(plugin_path("greeter_a"), release.join("x.wasm")).unwrap();
    symlink(release.join("x.wasm"), setup.dir.path().join("x.wasm")).unwrap();
    setup.wait_loaded("x.wasm");
    let x = setup.registry.implementation(GREET, "x").unwrap();
    answers_within(&x, "a: hello, 3");

    fs::remove_dir_all(&release).unwrap();
    assert_eq!(hello(&x, "3").unwrap(), "a: hello, 3", "serving on");
    fs::create_dir(&release).unwrap();
    let partial = build.path().join("x.wasm.partial");
    fs::copy(plugin_path("greeter_b"), &partial).unwrap();
    fs::rename(&partial, release.join("x.wasm")).unwrap();
    answers_within(&x, "b: bonjour, 3");
}

/// Asks `handle` until it answers `answer` (to `hello("3")`), at most
/// [`DEADLINE`]: for changes whose events are not the point.
fn answers_within(handle: &hotslot::Handle, answer: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let got = hello(handle, "3");
        if got.as_deref().is_ok_and(|got| got == answer) {
            return;
        }
        assert!(Instant::now() < deadline, "still {got:?}, not {answer:?}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// The seed's sequence, through files: a handle taken before a delete and a
/// re-add reaches the new component.
#[test]
fn delete_then_re_add_under_the_same_name() {
    let setup = Setup::new(&[("impl_1.wasm", "greeter_a")]);
    let x = setup.registry.first_implementation(GREET).unwrap();
    assert_eq!(hello(&x, "w").unwrap(), "a: hello, w");

    fs::remove_file(setup.dir.path().join("impl_1.wasm")).unwrap();
    setup.wait_removed("impl_1.wasm");
    assert!(matches!(hello(&x, "w"), Err(Error::Unavailable { .. })));

    setup.copy_plain("greeter_b", "impl_1.wasm");
    setup.wait_loaded("impl_1.wasm");
    assert_eq!(hello(&x, "w").unwrap(), "b: bonjour, w");
}

#[test]
fn rename_removes_the_old_name_and_adds_the_new() {
    let setup = Setup::new(&[("old.wasm", "greeter_a")]);
    let old = setup.registry.first_implementation(GREET).unwrap();
    fs::rename(
        setup.dir.path().join("old.wasm"),
        setup.dir.path().join("new.wasm"),
    )
    .unwrap();
    // The two files load in parallel: their events may come in either order.
    let (old_file, new_file) = (setup.path("old.wasm"), setup.path("new.wasm"));
    let (mut removed, mut loaded) = (false, false);
    while !(removed && loaded) {
        match setup.wait_for("the rename's events", |e| {
            matches!(e, WatchEvent::Removed { file, .. } if *file == old_file)
                || matches!(e, WatchEvent::Loaded { file, .. } if *file == new_file)
        }) {
            WatchEvent::Removed { .. } => removed = true,
            _ => loaded = true,
        }
    }
    assert!(matches!(hello(&old, "w"), Err(Error::Unavailable { .. })));
    let names: Vec<String> = setup.registry.list().into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["new"]);
}

#[test]
fn bad_files_are_rejected_and_the_old_instance_keeps_serving() {
    let setup = Setup::new(&[("calc.wasm", "calc")]);
    let greet = setup.registry.first_implementation(GREET).unwrap();
    let good = fs::read(plugin_path("calc")).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated",
            good[..good.len() / 3].to_vec(),
            "not a usable component",
        ),
        (
            "garbage",
            b"\x7fELF not a component".to_vec(),
            "not a WebAssembly binary",
        ),
        (
            "core module",
            wat::parse_str("(module)").unwrap(),
            "core WebAssembly module",
        ),
        ("empty", Vec::new(), "empty"),
        (
            "lost export",
            fs::read(plugin_path("greeter_a")).unwrap(),
            "does not export demo:calc/math@1.0.0",
        ),
    ];
    for (what, bytes, expected) in cases {
        setup.write_atomic("calc.wasm", &bytes);
        let reason = setup.wait_rejected("calc.wasm");
        assert!(reason.contains(expected), "{what}: {reason}");
        assert!(
            reason.contains("calc.wasm"),
            "{what}: names the file: {reason}"
        );
        assert_eq!(
            hello(&greet, "ok").unwrap(),
            "calc: ok has 2 letters",
            "after {what}"
        );
    }
    // The good bytes back are what serves already: nothing to reload. The
    // next good change (here, to the manifest) is tried again, and taken.
    setup.write_atomic("calc.wasm", &good);
    setup.write_atomic("calc.toml", b"[env]\nX = \"1\"\n");
    setup.wait_reloaded("calc.wasm");
    assert_eq!(hello(&greet, "ok").unwrap(), "calc: ok has 2 letters");
    // Each refusal counted once, whether the watcher refused the file (the
    // first four) or the registry did (the lost export).
    let metrics = setup.registry.metrics();
    let calc = metrics.iter().find(|m| m.plugin == "calc").unwrap();
    assert_eq!((calc.reloads, calc.rejected_reloads), (1, 5));
}

/// What refused a file may be outside it: here a directory its manifest
/// grants, not there yet. The same bytes written again (or `touch`) are
/// tried again, and load once the directory is there.
#[test]
fn refused_bytes_written_again_are_tried_again() {
    let setup = Setup::new(&[]);
    setup.write_atomic("g.toml", b"[[dir]]\nhost = \"data\"\nguest = \"/data\"\n");
    setup.copy_atomic("greeter_a", "g.wasm");
    let reason = setup.wait_rejected("g.wasm");
    assert!(reason.contains("data"), "{reason}");
    fs::create_dir(setup.dir.path().join("data")).unwrap();
    setup.copy_atomic("greeter_a", "g.wasm");
    setup.wait_loaded("g.wasm");
    let handle = setup.registry.implementation(GREET, "g").unwrap();
    assert_eq!(hello(&handle, "x").unwrap(), "a: hello, x");
}

#[test]
fn unchanged_content_other_files_and_reads_reload_nothing() {
    let setup = Setup::new(&[("g.wasm", "greeter_a")]);
    setup.wait_loaded("g.wasm");
    let generation = setup.registry.list()[0].generation;

    setup.copy_atomic("greeter_a", "g.wasm"); // same bytes
    fs::read(setup.dir.path().join("g.wasm")).unwrap(); // a read
    setup.write("notes.txt", b"not a plugin");
    setup.write("g.wasm.bak", b"not a plugin either");
    fs::create_dir(setup.dir.path().join("sub")).unwrap();
    fs::copy(
        plugin_path("greeter_b"),
        setup.dir.path().join("sub/nested.wasm"),
    )
    .unwrap();

    let seen = events_before_barrier(&setup, "marker.wasm");
    assert!(seen.is_empty(), "expected nothing, saw {seen:#?}");
    let g = setup
        .registry
        .list()
        .into_iter()
        .find(|i| i.name == "g")
        .unwrap();
    assert_eq!(g.generation, generation);
}

/// Two threads call through one handle while the file is rewritten (plain,
/// non-atomic copies) 101 times, alternating two components; the last write
/// differs from what was loaded first, so a dead watcher cannot pass.
#[test]
fn storm_of_plain_rewrites_never_fails_a_call() {
    let setup = Setup::new(&[("g.wasm", "greeter_a")]);
    let handle = setup.registry.first_implementation(GREET).unwrap();
    let writing = Arc::new(AtomicBool::new(true));
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let (handle, writing) = (handle.clone(), writing.clone());
            thread::spawn(move || {
                let mut calls = 0u32;
                while writing.load(Ordering::Acquire) || calls < 10 {
                    let answer = hello(&handle, "s").expect("no call may fail");
                    assert!(
                        answer == "a: hello, s" || answer == "b: bonjour, s",
                        "{answer}"
                    );
                    calls += 1;
                }
                calls
            })
        })
        .collect();

    let stems = ["greeter_b", "greeter_a"];
    for i in 0..=100 {
        setup.copy_plain(stems[i % 2], "g.wasm");
    }
    writing.store(false, Ordering::Release);
    for caller in callers {
        assert!(caller.join().unwrap() >= 10);
    }
    // The last write (i = 100) was greeter_b: poll until it answers, bounded.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let answer = hello(&handle, "s").unwrap();
        if answer == "b: bonjour, s" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still answering {answer:?} after the storm"
        );
        let _ = setup.events.recv_timeout(Duration::from_millis(100));
    }
    let _ = &setup.watcher;
}

#[test]
fn a_manifest_change_reloads_and_a_bad_manifest_is_rejected() {
    use hotslot::wasmtime::component::Val;
    let setup = Setup::new(&[("rogue.wasm", "rogue")]);
    setup.wait_loaded("rogue.wasm");
    let handle = setup
        .registry
        .first_implementation("demo:rogue/misbehave")
        .unwrap();
    let mode = || {
        handle
            .call("env", &[Val::String("MODE".into())])
            .unwrap()
            .remove(0)
    };
    assert_eq!(mode(), Val::Option(None));

    setup.write_atomic("rogue.toml", b"[env]\nMODE = \"one\"\n");
    setup.wait_reloaded("rogue.wasm");
    assert_eq!(
        mode(),
        Val::Option(Some(Box::new(Val::String("one".into()))))
    );

    setup.write_atomic("rogue.toml", b"[env]\nMODE = \"two\"\n[limits\n");
    let reason = setup.wait_rejected("rogue.wasm");
    assert!(
        reason.contains("rogue.toml") && reason.contains("line 3"),
        "{reason}"
    );
    assert_eq!(
        mode(),
        Val::Option(Some(Box::new(Val::String("one".into())))),
        "old one stays"
    );
    let refused = setup.watcher.refused("rogue").expect("the refusal kept");
    assert!(refused.contains("line 3"), "{refused}");
    // The manifest that serves, back: nothing to load, and no refusal stands
    // (it stood until the next change of the file).
    setup.write_atomic("rogue.toml", b"[env]\nMODE = \"one\"\n");
    let deadline = Instant::now() + DEADLINE;
    while setup.watcher.refused("rogue").is_some() {
        assert!(Instant::now() < deadline, "the refusal stands");
        // Polled: content back as it serves makes no event.
        thread::sleep(Duration::from_millis(10));
    }

    fs::remove_file(setup.dir.path().join("rogue.toml")).unwrap();
    setup.wait_reloaded("rogue.wasm");
    assert_eq!(mode(), Val::Option(None));
}

/// A manifest written in two parts with a pause between them (a slow
/// writer) reloads the plugin once, with all of it; so does an editor's save
/// that moves the old manifest aside first.
#[test]
fn a_manifest_is_read_once_written_whole() {
    use hotslot::wasmtime::component::Val;
    use std::io::Write;
    let setup = Setup::new(&[("rogue.wasm", "rogue")]);
    setup.wait_loaded("rogue.wasm");
    let handle = setup
        .registry
        .first_implementation("demo:rogue/misbehave")
        .unwrap();
    let env = |key: &str| match handle
        .call("env", &[Val::String(key.into())])
        .unwrap()
        .remove(0)
    {
        Val::Option(Some(value)) => match *value {
            Val::String(text) => Some(text),
            other => panic!("{other:?}"),
        },
        _ => None,
    };
    let reloads_of_rogue = |events: Vec<WatchEvent>| {
        let file = setup.path("rogue.wasm");
        events
            .iter()
            .filter(|e| matches!(e, WatchEvent::Reloaded { file: f, .. } if *f == file))
            .count()
    };

    // The writer pauses for longer than a quiet period between its parts;
    // the first part alone is a valid manifest.
    let manifest = setup.dir.path().join("rogue.toml");
    let mut writer = fs::File::create(&manifest).unwrap();
    writer.write_all(b"[env]\nMODE = \"one\"\n").unwrap();
    writer.flush().unwrap();
    std::thread::sleep(Duration::from_millis(400));
    writer.write_all(b"OTHER = \"two\"\n").unwrap();
    drop(writer);
    setup.wait_reloaded("rogue.wasm");
    assert_eq!(env("OTHER").as_deref(), Some("two"));
    assert_eq!(
        reloads_of_rogue(events_before_barrier(&setup, "m1.wasm")),
        0
    );

    // An editor's save: the old one moved aside, the new one written, the
    // old one removed.
    let aside = setup.dir.path().join("rogue.toml~");
    fs::rename(&manifest, &aside).unwrap();
    fs::write(&manifest, b"[env]\nMODE = \"three\"\n").unwrap();
    fs::remove_file(&aside).unwrap();
    setup.wait_reloaded("rogue.wasm");
    assert_eq!(env("MODE").as_deref(), Some("three"));
    assert_eq!(
        reloads_of_rogue(events_before_barrier(&setup, "m2.wasm")),
        0
    );
}

/// The watched directory replaced at its path, by a move and by a removal
/// (`mv dir old && mkdir dir`, `rm -rf dir && mkdir dir`): the watcher
/// follows the path, not the directory that was there.
#[test]
fn a_directory_replaced_at_its_path_is_followed() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().canonicalize().unwrap().join("plugins");
    fs::create_dir(&dir).unwrap();
    fs::copy(plugin_path("greeter_a"), dir.join("g.wasm")).unwrap();
    let registry = Arc::new(Registry::new().unwrap());
    let mut watcher = Watcher::new(registry.clone(), &dir);
    let events = watcher.subscribe();
    watcher.start().unwrap();
    let g = registry.first_implementation(GREET).unwrap();
    assert_eq!(hello(&g, "w").unwrap(), "a: hello, w");
    let wait_for = |what: &str, want: &dyn Fn(&WatchEvent) -> bool| {
        let deadline = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match events.recv_timeout(left) {
                Ok(event) if want(&event) => return,
                Ok(event) => seen.push(event),
                Err(_) => break,
            }
        }
        panic!("no {what} within {DEADLINE:?}; saw {seen:#?}");
    };

    let file = dir.join("g.wasm");
    wait_for(
        "the first load of g",
        &|e| matches!(e, WatchEvent::Loaded { file: f, .. } if *f == file),
    );
    fs::rename(&dir, root.path().join("old")).unwrap();
    fs::create_dir(&dir).unwrap();
    fs::copy(plugin_path("greeter_b"), dir.join("g.wasm")).unwrap();
    // Loaded afresh if the new directory was looked at before the copy,
    // reloaded if after.
    wait_for("g from the new directory", &|e| match e {
        WatchEvent::Reloaded { file: f, .. } | WatchEvent::Loaded { file: f, .. } => *f == file,
        _ => false,
    });
    let g = registry.first_implementation(GREET).unwrap();
    assert_eq!(hello(&g, "w").unwrap(), "b: bonjour, w");

    fs::remove_dir_all(&dir).unwrap();
    wait_for(
        "removal of g",
        &|e| matches!(e, WatchEvent::Removed { file: f, .. } if *f == file),
    );
    fs::create_dir(&dir).unwrap();
    fs::copy(plugin_path("greeter_a"), dir.join("h.wasm")).unwrap();
    let h = dir.join("h.wasm");
    wait_for(
        "load of h in the directory made again",
        &|e| matches!(e, WatchEvent::Loaded { file: f, .. } if *f == h),
    );
    let now = registry.first_implementation(GREET).unwrap();
    assert_eq!(hello(&now, "w").unwrap(), "a: hello, w");

    // Its parent gone too, and made again: no event can say it is back.
    fs::remove_dir_all(root.path().join("plugins")).unwrap();
    wait_for(
        "removal of h",
        &|e| matches!(e, WatchEvent::Removed { file: f, .. } if *f == h),
    );
    fs::remove_dir_all(root.path()).unwrap();
    fs::create_dir_all(&dir).unwrap();
    fs::copy(plugin_path("greeter_b"), dir.join("h.wasm")).unwrap();
    wait_for(
        "load of h once the directory and its parent are back",
        &|e| matches!(e, WatchEvent::Loaded { file: f, .. } if *f == h),
    );
}

/// Dropping a watcher while it compiles an interpreter (seconds) does not
/// wait for the compile, the compile keeps no registry alive, and what it
/// makes is never added: once the drop returns, the watcher changes
/// nothing.
#[test]
fn a_watcher_dropped_mid_compile_returns_at_once_and_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    fs::copy(plugin_path("greeter_py"), dir.path().join("py.wasm")).unwrap();
    let registry = Arc::new(Registry::new().unwrap());
    let mut watcher = Watcher::new(registry.clone(), dir.path());
    let events = watcher.subscribe();
    watcher.start_in_background().unwrap();
    // Its exports known: the file is read and its compile under way.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (loading, version) = watcher.loading();
        let read = |l: &Vec<hotslot::Loading>| l.iter().any(|f| f.exports.is_some());
        if loading.as_ref().is_some_and(read) {
            break;
        }
        let left = deadline.checked_duration_since(Instant::now());
        watcher.wait_change(version, left.expect("py.wasm never began to load"));
    }
    drop(watcher);
    // The events' channel lasts as long as a loader does: the one
    // compiling still runs, and holds no registry.
    assert!(
        !matches!(events.try_recv(), Err(TryRecvError::Disconnected)),
        "the drop waited for the compile"
    );
    assert_eq!(
        Arc::strong_count(&registry),
        1,
        "a loader holds the registry"
    );
    // Once the compile is done and the loader gone: nothing came of it.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let left = deadline.checked_duration_since(Instant::now());
        match events.recv_timeout(left.expect("the compile never ended")) {
            Ok(event) => panic!("after the drop: {event:?}"),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
    assert!(
        registry.implementation(GREET, "py").is_err(),
        "added after the watcher was dropped"
    );
}
