//! One plugin, one set of instances: the interfaces a component exports
//! share its memory, move together on a reload, and a reload takes every
//! slot or none. Re-entering a plugin's only instance fails at once.

use std::time::{Duration, Instant};

use hotslot::wasmtime::component::Val;
use hotslot::{Error, Fault, Grants, Handle, Registry};

use crate::common::{plugin, plugin_path};

const COUNTER: &str = "demo:tally/counter@1.0.0";
const ADMIN: &str = "demo:tally/admin@1.0.0";

mod tally {
    hotslot::bindgen!(Tally, { path: "../wit/tally", world: "tally" });
}

fn add(counter: &Handle, n: u32) -> Result<u64, Error> {
    match counter.call("add", &[Val::U32(n)])?.as_slice() {
        [Val::U64(total)] => Ok(*total),
        other => panic!("add answered {other:?}"),
    }
}

fn total(admin: &Handle) -> Result<u64, Error> {
    match admin.call("total", &[])?.as_slice() {
        [Val::U64(total)] => Ok(*total),
        other => panic!("total answered {other:?}"),
    }
}

/// A registry serving tally under its name, and a handle to each interface.
fn tally() -> (Registry, Handle, Handle) {
    let registry = Registry::new().unwrap();
    let added = registry
        .add_plugin("tally", &plugin(&registry, "tally"))
        .unwrap();
    let names: Vec<String> = added.interfaces.iter().map(|i| i.to_string()).collect();
    assert_eq!(names, [COUNTER, ADMIN]);
    assert_eq!(added.previous, None);
    let counter = registry.implementation(COUNTER, "tally").unwrap();
    let admin = registry.implementation(ADMIN, "tally").unwrap();
    (registry, counter, admin)
}

#[test]
fn two_interfaces_of_one_plugin_share_its_memory() {
    let (_registry, counter, admin) = tally();
    assert_eq!(add(&counter, 5).unwrap(), 5);
    assert_eq!(total(&admin).unwrap(), 5, "admin sees what counter did");
    assert_eq!(add(&counter, 2).unwrap(), 7);
    assert_eq!(total(&admin).unwrap(), 7);
    assert_eq!(counter.generation(), admin.generation());
}

#[test]
fn a_reload_moves_both_interfaces_to_one_new_instance() {
    let (registry, counter, admin) = tally();
    add(&counter, 3).unwrap();
    let before = counter.generation().unwrap();
    let events = registry.subscribe();
    let again = registry
        .add_plugin("tally", &plugin(&registry, "tally"))
        .unwrap();
    assert_eq!(again.previous, Some(before));
    assert!(again.generation > before);
    assert_eq!(counter.generation(), Some(again.generation));
    assert_eq!(admin.generation(), Some(again.generation));
    assert_eq!(total(&admin).unwrap(), 0, "a new instance");
    assert_eq!(add(&counter, 4).unwrap(), 4);
    assert_eq!(total(&admin).unwrap(), 4, "one new instance, shared");
    let replaced: Vec<_> = events.try_iter().collect();
    assert_eq!(replaced.len(), 2, "one event per interface: {replaced:?}");
}

#[test]
fn a_fault_through_one_interface_replaces_the_instance_for_both() {
    let (_registry, counter, admin) = tally();
    add(&counter, 9).unwrap();
    match admin.call("crash", &[]) {
        Err(Error::Call { fault, .. }) => assert_eq!(fault, Fault::Trap),
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_eq!(
        add(&counter, 1).unwrap(),
        1,
        "counter runs on the fresh instance"
    );
    assert_eq!(total(&admin).unwrap(), 1);
}

#[test]
fn adding_the_same_plugin_for_a_second_interface_joins_its_instance() {
    let registry = Registry::new().unwrap();
    let tally = plugin(&registry, "tally");
    let first = registry.add_implementation(COUNTER, "t", &tally).unwrap();
    let counter = registry.first_implementation(COUNTER).unwrap();
    add(&counter, 6).unwrap();
    let second = registry.add_implementation(ADMIN, "t", &tally).unwrap();
    assert_eq!(first, second, "no new generation");
    let admin = registry.first_implementation(ADMIN).unwrap();
    assert_eq!(
        total(&admin).unwrap(),
        6,
        "the running instance serves both"
    );

    // Removing one interface leaves the other on the same instance.
    registry.remove_implementation(ADMIN, "t").unwrap();
    assert!(matches!(total(&admin), Err(Error::Unavailable { .. })));
    assert_eq!(add(&counter, 1).unwrap(), 7);
}

/// A reload whose instance cannot start (here: the new version's memory
/// limit is below what its instance needs at start) leaves both interfaces
/// on the old version, its memory intact.
#[test]
fn a_reload_that_cannot_start_leaves_both_interfaces_on_the_old_version() {
    let (registry, counter, admin) = tally();
    add(&counter, 8).unwrap();
    let generation = counter.generation();
    let starved = Grants::from_toml(
        "[limits]\nmax-memory-mib = 0\n",
        std::path::Path::new("."),
        "tally.toml",
    )
    .unwrap();
    let broken = plugin(&registry, "tally").with_grants(starved);
    let err = registry.add_plugin("tally", &broken).unwrap_err();
    assert!(matches!(err, Error::Instantiate { .. }), "{err:?}");
    assert!(err.to_string().contains("tally"), "{err}");
    assert_eq!(
        (counter.generation(), admin.generation()),
        (generation, generation)
    );
    assert_eq!(total(&admin).unwrap(), 8, "the old instance, memory intact");
    assert_eq!(add(&counter, 1).unwrap(), 9);
}

/// A new version that changes a function within the version line is
/// refused, showing both signatures, and the old version answers on.
#[test]
fn a_reload_that_breaks_the_contract_is_refused_with_both_signatures() {
    let registry = Registry::new().unwrap();
    registry
        .add_implementation(COUNTER, "t", &plugin(&registry, "tally"))
        .unwrap();
    let counter = registry.implementation(COUNTER, "t").unwrap();
    add(&counter, 1).unwrap();
    let generation = counter.generation();
    let changed = wat::parse_str(
        r#"(component
            (core module $m (func (export "add") (param i64) (result i64) local.get 0))
            (core instance $i (instantiate $m))
            (func $add (param "n" u64) (result u64) (canon lift (core func $i "add")))
            (instance $counter (export "add" (func $add)))
            (export "demo:tally/counter@1.0.0" (instance $counter))
        )"#,
    )
    .unwrap();
    let changed = registry.load_bytes("changed.wasm", &changed).unwrap();
    let err = registry
        .add_implementation(COUNTER, "t", &changed)
        .unwrap_err();
    match &err {
        Error::Contract { differences, .. } => {
            assert_eq!(differences.len(), 1);
            assert_eq!(differences[0].function, "add");
            assert_eq!(differences[0].old, "func(n: u32) -> u64");
            assert_eq!(differences[0].new.as_deref(), Some("func(n: u64) -> u64"));
        }
        other => panic!("expected a contract refusal, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("changed.wasm") && message.contains("bump the major version"),
        "{message}"
    );
    assert_eq!(counter.generation(), generation, "the old version serves");
    assert_eq!(add(&counter, 1).unwrap(), 2);
}

/// A counter whose `add` takes a `u64`: `tally`'s with its contract broken.
fn tally_counter_of_u64() -> Vec<u8> {
    wat::parse_str(
        r#"(component
            (core module $m (func (export "add") (param i64) (result i64) local.get 0))
            (core instance $i (instantiate $m))
            (func $add (param "n" u64) (result u64) (canon lift (core func $i "add")))
            (instance $counter (export "add" (func $add)))
            (export "demo:tally/counter@1.0.0" (instance $counter))
        )"#,
    )
    .unwrap()
}

/// A version of `tally` whose counter is as before and whose admin
/// interface is not: `total` answers a `u32`, `crash` and `version` gone.
fn tally_admin_changed() -> Vec<u8> {
    wat::parse_str(
        r#"(component
            (core module $m
                (func (export "add") (param i32) (result i64) i64.const 1)
                (func (export "total") (result i32) i32.const 1))
            (core instance $i (instantiate $m))
            (func $add (param "n" u32) (result u64) (canon lift (core func $i "add")))
            (func $total (result u32) (canon lift (core func $i "total")))
            (instance $counter (export "add" (func $add)))
            (instance $admin (export "total" (func $total)))
            (export "demo:tally/counter@1.0.0" (instance $counter))
            (export "demo:tally/admin@1.0.0" (instance $admin))
        )"#,
    )
    .unwrap()
}

/// An interface joined to the running instance (`add_implementation` of
/// the plugin already serving another of its interfaces) is checked as a
/// new version is: against what the name serves there now, or served
/// before that interface was removed.
#[test]
fn an_interface_joined_is_held_to_its_contract() {
    let registry = Registry::new().unwrap();
    let good = plugin(&registry, "tally");
    let changed = registry
        .load_bytes("changed.wasm", &tally_admin_changed())
        .unwrap();
    // Joined, then a new version breaking the joined interface.
    registry.add_implementation(COUNTER, "a", &good).unwrap();
    registry.add_implementation(ADMIN, "a", &good).unwrap();
    let err = registry.add_plugin("a", &changed).unwrap_err();
    assert!(matches!(err, Error::Contract { .. }), "{err:?}");

    // Removed, the new version taken for the other interface, then joined
    // again for the removed one.
    registry.add_plugin("b", &good).unwrap();
    registry.remove_implementation(ADMIN, "b").unwrap();
    registry.add_implementation(COUNTER, "b", &changed).unwrap();
    let err = registry
        .add_implementation(ADMIN, "b", &changed)
        .unwrap_err();
    assert!(matches!(err, Error::Contract { .. }), "{err:?}");
    assert!(registry
        .implementation(ADMIN, "b")
        .is_ok_and(|h| !h.is_available()));
    // What it serves now stays its contract, forgotten or not.
    assert!(registry.forget_contract("b"));
    registry.add_implementation(ADMIN, "b", &changed).unwrap();
    assert!(!registry.forget_contract("b"));
    let err = registry.add_plugin("b", &good).unwrap_err();
    assert!(matches!(err, Error::Contract { .. }), "{err:?}");
}

/// A removal does not end a name's contract: handles held across it (the
/// seed's reload is a remove and an add) still call what it served. A
/// version that breaks it is refused after a removal too, and the version
/// that keeps it is taken (it was the other way round: the broken one
/// taken, and then the fix refused against it).
#[test]
fn a_removal_does_not_end_the_contract() {
    let registry = Registry::new().unwrap();
    let good = plugin(&registry, "tally");
    let changed = registry
        .load_bytes("changed.wasm", &tally_counter_of_u64())
        .unwrap();
    registry.add_implementation(COUNTER, "t", &good).unwrap();
    let counter = registry.implementation(COUNTER, "t").unwrap();
    add(&counter, 1).unwrap();

    // The whole plugin removed, then the broken version added.
    registry.remove_plugin("t").unwrap();
    let err = registry.add_plugin("t", &changed).unwrap_err();
    assert!(matches!(err, Error::Contract { .. }), "{err:?}");
    assert!(err.to_string().contains("changed.wasm"), "{err}");
    registry.add_plugin("t", &good).unwrap();
    assert_eq!(
        add(&counter, 5).unwrap(),
        5,
        "a fresh instance, through the old handle"
    );

    // The seed's sequence: the implementation removed, then added again
    // in the broken version.
    registry.add_implementation(COUNTER, "u", &good).unwrap();
    let u = registry.implementation(COUNTER, "u").unwrap();
    registry.remove_implementation(COUNTER, "u").unwrap();
    let err = registry
        .add_implementation(COUNTER, "u", &changed)
        .unwrap_err();
    assert!(matches!(err, Error::Contract { .. }), "{err:?}");
    assert!(matches!(add(&u, 1), Err(Error::Unavailable { .. })));
    registry.add_implementation(COUNTER, "u", &good).unwrap();
    assert_eq!(add(&u, 1).unwrap(), 1);

    // Forgotten on purpose, the contract is the next version's.
    registry.remove_implementation(COUNTER, "u").unwrap();
    assert!(registry.forget_contract("u"));
    registry.add_implementation(COUNTER, "u", &changed).unwrap();
    let err = registry
        .add_implementation(COUNTER, "u", &good)
        .unwrap_err();
    assert!(matches!(err, Error::Contract { .. }), "{err:?}");
    assert!(err.to_string().contains("forget_contract"), "{err}");
    assert!(!registry.forget_contract("nobody"));
}

#[test]
fn a_reload_that_drops_an_interface_changes_nothing() {
    let (registry, counter, admin) = tally();
    add(&counter, 2).unwrap();
    let generation = counter.generation();
    let only_counter = wat::parse_str(
        r#"(component
            (core module $m (func (export "add") (param i32) (result i64) i64.const 100))
            (core instance $i (instantiate $m))
            (func $add (param "n" u32) (result u64) (canon lift (core func $i "add")))
            (instance $counter (export "add" (func $add)))
            (export "demo:tally/counter@1.0.0" (instance $counter))
        )"#,
    )
    .unwrap();
    let smaller = registry.load_bytes("smaller.wasm", &only_counter).unwrap();
    let err = registry.add_plugin("tally", &smaller).unwrap_err();
    assert!(matches!(err, Error::WouldDrop { .. }), "{err:?}");
    assert!(err.to_string().contains(ADMIN), "{err}");
    let err = registry
        .add_implementation(COUNTER, "tally", &smaller)
        .unwrap_err();
    assert!(matches!(err, Error::WouldDrop { .. }), "{err:?}");
    assert_eq!(counter.generation(), generation);
    assert_eq!(add(&counter, 1).unwrap(), 3, "still the old instance");
    assert_eq!(total(&admin).unwrap(), 3);
}

#[test]
fn a_handle_by_interface_and_name_reaches_a_plugin_that_is_not_first() {
    let registry = Registry::new().unwrap();
    registry.add_file(plugin_path("greeter_a")).unwrap();
    registry.add_file(plugin_path("greeter_b")).unwrap();
    let b = registry
        .implementation("demo:greeter/greet@1", "greeter_b")
        .unwrap();
    assert_eq!(crate::common::hello(&b, "x").unwrap(), "b: bonjour, x");
    let err = registry
        .implementation("demo:greeter/greet@1", "nobody")
        .unwrap_err();
    assert!(err.to_string().contains("nobody"), "{err}");
}

#[test]
fn re_entering_the_only_instance_fails_at_once() {
    let (_registry, counter, admin) = tally();
    let started = Instant::now();
    let inner = counter
        .call_typed(|t: &tally::Tally, store| {
            t.demo_tally_counter().call_add(&mut *store, 1)?;
            // Through the other interface: the same, only, instance.
            Ok(admin.call("total", &[]))
        })
        .unwrap();
    match inner {
        Err(Error::Reentered {
            name, instances, ..
        }) => {
            assert_eq!((name.as_str(), instances), ("tally", 1))
        }
        other => panic!("expected Reentered, got {other:?}"),
    }
    let in_batch = counter
        .batch(|calls| {
            calls.call("add", &[Val::U32(1)])?;
            counter.call("add", &[Val::U32(1)])
        })
        .unwrap();
    assert!(
        matches!(in_batch, Err(Error::Reentered { .. })),
        "{in_batch:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "no waiting");
    assert_eq!(total(&admin).unwrap(), 2, "both outer calls ran");
}

#[test]
fn a_failed_typed_call_names_the_function() {
    let (_registry, _counter, admin) = tally();
    let err = admin
        .call_typed(|t: &tally::Tally, store| t.demo_tally_admin().call_crash(store))
        .unwrap_err();
    match &err {
        Error::Call {
            function, fault, ..
        } => {
            assert_eq!((function.as_str(), *fault), ("crash", Fault::Trap))
        }
        other => panic!("expected a failed call, got {other:?}"),
    }
}

#[test]
fn a_plugin_loaded_from_a_file_gets_its_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tally.wasm");
    std::fs::copy(plugin_path("tally"), &file).unwrap();
    std::fs::write(
        dir.path().join("tally.toml"),
        "[env]\nTALLY_VERSION = \"v7\"\n",
    )
    .unwrap();
    let registry = Registry::new().unwrap();
    let plugin = registry.load_file(&file).unwrap();
    assert_eq!(
        plugin.grants(),
        &Grants {
            env: vec![("TALLY_VERSION".into(), "v7".into())],
            ..Grants::default()
        }
    );
    let added = registry.add_file(&file).unwrap();
    assert_eq!(added.name, "tally");
    let admin = registry.implementation(ADMIN, "tally").unwrap();
    assert_eq!(
        admin.call("version", &[]).unwrap(),
        [Val::String("v7".into())]
    );
}

/// Two threads reload one plugin over and over while a third watches its
/// handles: the generation they report never goes back, and both
/// interfaces always report the same one.
#[test]
fn generations_only_grow_under_concurrent_reloads() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let (registry, counter, admin) = tally();
    let registry = Arc::new(registry);
    let tally = plugin(&registry, "tally");
    let reloading = Arc::new(AtomicBool::new(true));
    let watcher = {
        let reloading = reloading.clone();
        std::thread::spawn(move || {
            let mut highest = 0;
            let mut seen = 0;
            while reloading.load(Ordering::SeqCst) {
                let now = counter.generation().unwrap();
                assert!(
                    now >= highest,
                    "generation went back from {highest} to {now}"
                );
                highest = now;
                seen += 1;
            }
            (highest, seen)
        })
    };
    let reloaders: Vec<_> = (0..2)
        .map(|_| {
            let (registry, tally) = (registry.clone(), tally.clone());
            std::thread::spawn(move || {
                for _ in 0..50 {
                    registry.add_plugin("tally", &tally).unwrap();
                }
            })
        })
        .collect();
    reloaders.into_iter().for_each(|r| r.join().unwrap());
    reloading.store(false, Ordering::SeqCst);
    let (highest, seen) = watcher.join().unwrap();
    assert!(seen > 0);
    let last = admin.generation().unwrap();
    assert!(last >= highest);
    let listed: Vec<u64> = registry.list().iter().map(|i| i.generation).collect();
    assert_eq!(listed, [last, last], "both interfaces on the last reload");
}

/// A plugin whose fresh instances cannot start (here: its granted directory
/// is gone) does not pay for an instantiation on every call: after a failed
/// attempt, calls fail at once, saying so, until the pause is over.
#[test]
fn failed_recoveries_back_off() {
    use hotslot::Limits;
    let base = tempfile::tempdir().unwrap();
    let data = base.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let grants = Grants::from_toml(
        "[[dir]]\nhost = \"data\"\nguest = \"/data\"\n",
        base.path(),
        "rogue.toml",
    )
    .unwrap();
    let registry =
        Registry::with_engine(hotslot::engine::shared_engine().unwrap(), Limits::default())
            .unwrap();
    let rogue = plugin(&registry, "rogue").with_grants(grants);
    registry.add_plugin("rogue", &rogue).unwrap();
    let handle = registry
        .implementation("demo:rogue/misbehave", "rogue")
        .unwrap();
    let ping = || handle.call("ping", &[]);
    assert!(ping().is_ok());

    std::fs::remove_dir(&data).unwrap();
    assert!(matches!(handle.call("trap", &[]), Err(Error::Call { .. })));
    let first = ping().unwrap_err();
    assert!(matches!(first, Error::Instantiate { .. }), "{first:?}");
    assert!(first.to_string().contains("data"), "{first}");

    // The directory is back, so an attempt would now succeed: the call
    // fails anyway, at once, because the host is not trying yet.
    std::fs::create_dir(&data).unwrap();
    let second = ping().unwrap_err();
    assert!(second.to_string().contains("not tried again"), "{second}");

    // After the pause, the next call recovers.
    let deadline = Instant::now() + Duration::from_secs(20);
    while ping().is_err() {
        assert!(Instant::now() < deadline, "never recovered");
        std::thread::yield_now();
    }
}

/// `demo:calc/math@1.0.0` whose `add` answers `a + b`, and traps when `a`
/// is `trap_on`.
fn math_trapping_on(trap_on: i32) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(component
            (core module $m (func (export "add") (param i32 i32) (result i32)
                (if (i32.eq (local.get 0) (i32.const {trap_on})) (then unreachable))
                (i32.add (local.get 0) (local.get 1))))
            (core instance $i (instantiate $m))
            (func $add (param "a" s32) (param "b" s32) (result s32) (canon lift (core func $i "add")))
            (instance $math (export "add" (func $add)))
            (export "demo:calc/math@1.0.0" (instance $math))
        )"#
    ))
    .unwrap()
}

/// With `[reload] canary = 5`, a new version replays the last calls on an
/// instance of its own first: one that traps on an argument seen in recent
/// traffic is refused, naming the call and the fault, and the old version
/// serves on; one that does not is taken.
#[test]
fn a_canary_catches_a_new_version_that_traps_on_recent_traffic() {
    let registry = Registry::new().unwrap();
    let canary =
        Grants::from_toml("[reload]\ncanary = 5\n", std::path::Path::new("."), "m").unwrap();
    let load = |name: &str, trap_on: i32| {
        registry
            .load_bytes(name, &math_trapping_on(trap_on))
            .unwrap()
            .with_grants(canary.clone())
    };
    registry.add_plugin("math", &load("v1.wasm", -1)).unwrap();
    let math = registry.implementation("demo:calc/math", "math").unwrap();
    for a in [1, 13, 2] {
        assert_eq!(
            math.call("add", &[Val::S32(a), Val::S32(1)]).unwrap(),
            [Val::S32(a + 1)]
        );
    }
    let generation = math.generation();
    let err = registry
        .add_plugin("math", &load("v2.wasm", 13))
        .unwrap_err();
    match &err {
        Error::Canary { call, fault, .. } => {
            assert_eq!(call, "demo:calc/math@1.0.0#add(13, 1)");
            assert_eq!(*fault, Fault::Trap);
        }
        other => panic!("expected the canary to refuse it, got {other:?}"),
    }
    assert!(err.to_string().contains("v2.wasm"), "{err}");
    assert_eq!(math.generation(), generation, "the old version serves");
    assert_eq!(
        math.call("add", &[Val::S32(13), Val::S32(1)]).unwrap(),
        [Val::S32(14)]
    );
    // A version that traps only on what recent traffic never held is taken.
    registry.add_plugin("math", &load("v3.wasm", 99)).unwrap();
    assert_ne!(math.generation(), generation);
    // A call that faulted on the serving version is not kept: a next
    // version faulting on it too is no regression (it was refused, and
    // would have been until the call aged out).
    assert!(math.call("add", &[Val::S32(99), Val::S32(1)]).is_err());
    registry.add_plugin("math", &load("v4.wasm", 99)).unwrap();
    // The new version's manifest says whether there is a canary: without
    // one (a manifest removed), recent traffic is not replayed.
    let bare = registry
        .load_bytes("v5.wasm", &math_trapping_on(13))
        .unwrap();
    registry.add_plugin("math", &bare).unwrap();
    // And the calls kept before it are dropped: the next canary does not
    // replay what the version serving (without one) never answered.
    registry.add_plugin("math", &load("v6.wasm", 13)).unwrap();
}

/// A canary keeps the last calls of each interface: a busy interface does
/// not push a quiet one's calls out of the replay.
#[test]
fn a_canary_keeps_the_last_calls_of_each_interface() {
    let with_probe = |trap_on: i32| {
        wat::parse_str(format!(
            r#"(component
                (core module $m
                    (func (export "add") (param i32 i32) (result i32)
                        (if (i32.eq (local.get 0) (i32.const {trap_on})) (then unreachable))
                        (i32.add (local.get 0) (local.get 1)))
                    (func (export "v") (result i32) i32.const 1))
                (core instance $i (instantiate $m))
                (func $add (param "a" s32) (param "b" s32) (result s32) (canon lift (core func $i "add")))
                (func $v (result u32) (canon lift (core func $i "v")))
                (instance $math (export "add" (func $add)))
                (instance $probe (export "version" (func $v)))
                (export "demo:calc/math@1.0.0" (instance $math))
                (export "demo:probe/probe@1.0.0" (instance $probe))
            )"#
        ))
        .unwrap()
    };
    let registry = Registry::new().unwrap();
    let canary =
        Grants::from_toml("[reload]\ncanary = 2\n", std::path::Path::new("."), "m").unwrap();
    let load = |name: &str, trap_on: i32| {
        registry
            .load_bytes(name, &with_probe(trap_on))
            .unwrap()
            .with_grants(canary.clone())
    };
    registry.add_plugin("both", &load("v1.wasm", -1)).unwrap();
    let math = registry.implementation("demo:calc/math", "both").unwrap();
    let probe = registry.implementation("demo:probe/probe", "both").unwrap();
    math.call("add", &[Val::S32(13), Val::S32(1)]).unwrap();
    for _ in 0..5 {
        crate::common::probe_answer(&probe).unwrap();
    }
    let err = registry
        .add_plugin("both", &load("v2.wasm", 13))
        .unwrap_err();
    match &err {
        Error::Canary { call, .. } => assert_eq!(call, "demo:calc/math@1.0.0#add(13, 1)"),
        other => panic!("expected the canary to refuse it, got {other:?}"),
    }
}

/// A canary's whole replay is bounded (four call deadlines, 1 s here),
/// however many calls it keeps: sixty recent calls of 50 ms each would take
/// 3 s to replay, during which the reload (and the plugin's removal) waited.
#[test]
fn a_canarys_replay_is_bounded_by_its_deadlines() {
    use hotslot::Limits;
    let limits = Limits {
        timeout: Duration::from_millis(250),
        ..Limits::default()
    };
    let registry =
        Registry::with_engine(hotslot::engine::shared_engine().unwrap(), limits).unwrap();
    let canary =
        Grants::from_toml("[reload]\ncanary = 60\n", std::path::Path::new("."), "m").unwrap();
    let rogue = registry
        .load_file(plugin_path("rogue"))
        .unwrap()
        .with_grants(canary);
    registry.add_plugin("r", &rogue).unwrap();
    let r = registry
        .implementation("demo:rogue/misbehave", "r")
        .unwrap();
    for _ in 0..60 {
        assert_eq!(
            r.call("sleep", &[Val::U64(50), Val::U32(1)]).unwrap(),
            [Val::U32(1)]
        );
    }
    let started = Instant::now();
    registry.add_plugin("r", &rogue.clone()).unwrap();
    let took = started.elapsed();
    // Well short of the 3 s the sixty sleeps take at the least.
    assert!(took < Duration::from_secs(2), "the reload took {took:?}");
}

#[test]
fn a_world_exporting_bare_functions_is_told_to_put_them_in_an_interface() {
    let registry = Registry::new().unwrap();
    let bare = wat::parse_str(
        r#"(component
            (core module $m (func (export "add") (param i32 i32) (result i32) local.get 0))
            (core instance $i (instantiate $m))
            (func $add (param "a" s32) (param "b" s32) (result s32)
                (canon lift (core func $i "add")))
            (export "add" (func $add))
        )"#,
    )
    .unwrap();
    let plugin = registry.load_bytes("bare.wasm", &bare).unwrap();
    let err = registry.add_plugin("bare", &plugin).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::NotExported { .. }), "{err:?}");
    assert!(
        message.contains("bare.wasm does not export any interface")
            && message.contains("function `add` of its world itself"),
        "{message}"
    );
}
