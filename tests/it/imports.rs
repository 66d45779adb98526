//! Plugins that use plugins: imports linked through the registry. The
//! banner plugin (Rust) imports `demo:greeter/greet`; small components in
//! WAT import and export `demo:cycle` and `demo:pair` interfaces.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hotslot::wasmtime::component::Val;
use hotslot::{Error, Fault, Grants, Handle, Limits, Registry, WatchEvent, Watcher};

use crate::common::{plugin, plugin_path, probe_component};

const BANNER: &str = "demo:banner/banner@1.0.0";
const DEADLINE: Duration = Duration::from_secs(20);

fn show(banner: &Handle, name: &str) -> Result<String, Error> {
    match banner.call("show", &[Val::String(name.into())])?.as_slice() {
        [Val::String(text)] => Ok(text.clone()),
        other => panic!("show answered {other:?}"),
    }
}

fn shown(banner: &Handle) -> u32 {
    match banner.call("shown", &[]).unwrap().as_slice() {
        [Val::U32(n)] => *n,
        other => panic!("shown answered {other:?}"),
    }
}

/// A component exporting `demo:cycle/EXPORTED@1.0.0` whose one function
/// (named like the interface) takes a depth: 0 answers 0, else it calls
/// `demo:cycle/IMPORTED`'s function with depth - 1 and adds one.
fn forwarding(exported: &str, imported: &str) -> Vec<u8> {
    forwarding_with(exported, imported, false)
}

/// Like [`forwarding`]; with `pad`, the imported function takes a `u64`
/// after the depth (7), a shape no typed forwarder takes: its calls cross
/// as dynamic values.
fn forwarding_with(exported: &str, imported: &str, pad: bool) -> Vec<u8> {
    let (wit_pad, core_pad, pad_arg) = match pad {
        true => (r#"(param "pad" u64)"#, "i64", "(i64.const 7)"),
        false => ("", "", ""),
    };
    wat::parse_str(format!(
        r#"(component
            (import "demo:cycle/{imported}@1.0.0" (instance $dep
                (export "{imported}" (func (param "depth" u32) {wit_pad} (result u32)))))
            (core func $lowered (canon lower (func $dep "{imported}")))
            (core module $m
                (import "dep" "f" (func $f (param i32 {core_pad}) (result i32)))
                (func (export "run") (param i32) (result i32)
                    (if (result i32) (i32.eqz (local.get 0))
                        (then (i32.const 0))
                        (else (i32.add
                            (call $f (i32.sub (local.get 0) (i32.const 1)) {pad_arg})
                            (i32.const 1))))))
            (core instance $dep_core (export "f" (func $lowered)))
            (core instance $i (instantiate $m (with "dep" (instance $dep_core))))
            (func $run (param "depth" u32) (result u32) (canon lift (core func $i "run")))
            (instance $out (export "{exported}" (func $run)))
            (export "demo:cycle/{exported}@1.0.0" (instance $out))
        )"#
    ))
    .unwrap()
}

/// `demo:cycle/pong` that answers its depth, but traps at 13 and never
/// returns at 7.
fn moody_pong() -> Vec<u8> {
    moody_pong_with(false)
}

/// Like [`moody_pong`]; with `pad`, its function takes a `u64` after the
/// depth (as [`forwarding_with`] calls it), and answers the depth plus it.
fn moody_pong_with(pad: bool) -> Vec<u8> {
    pong_trapping_at(pad, 13)
}

/// Like [`moody_pong_with`], trapping at `trap_at` instead of 13.
fn pong_trapping_at(pad: bool, trap_at: i32) -> Vec<u8> {
    let (wit_pad, core_pad, answer) = match pad {
        true => (
            r#"(param "pad" u64)"#,
            "i64",
            "(i32.add (local.get 0) (i32.wrap_i64 (local.get 1)))",
        ),
        false => ("", "", "(local.get 0)"),
    };
    wat::parse_str(format!(
        r#"(component
            (core module $m
                (func (export "run") (param i32 {core_pad}) (result i32)
                    (if (i32.eq (local.get 0) (i32.const {trap_at})) (then unreachable))
                    (if (i32.eq (local.get 0) (i32.const 7)) (then (loop $again (br $again))))
                    {answer}))
            (core instance $i (instantiate $m))
            (func $run (param "depth" u32) {wit_pad} (result u32) (canon lift (core func $i "run")))
            (instance $out (export "pong" (func $run)))
            (export "demo:cycle/pong@1.0.0" (instance $out))
        )"#,
    ))
    .unwrap()
}

fn depth(handle: &Handle, n: u32) -> Result<u32, Error> {
    match handle
        .call(handle.interface().unwrap().interface(), &[Val::U32(n)])?
        .as_slice()
    {
        [Val::U32(n)] => Ok(*n),
        other => panic!("{other:?}"),
    }
}

fn add(registry: &Registry, name: &str, bytes: &[u8]) {
    let plugin = registry.load_bytes(&format!("{name}.wasm"), bytes).unwrap();
    registry.add_plugin(name, &plugin).unwrap();
}

/// The banner answers from greeter_a, then, after only the greeter's file
/// is replaced, from greeter_b, and its own count runs on: it was not
/// started again.
#[test]
fn a_dependent_reaches_its_reloaded_provider_without_starting_again() {
    let dir = tempfile::tempdir().unwrap();
    fs::copy(plugin_path("banner"), dir.path().join("banner.wasm")).unwrap();
    fs::copy(plugin_path("greeter_a"), dir.path().join("greeter.wasm")).unwrap();
    let registry = Arc::new(Registry::new().unwrap());
    let mut watcher = Watcher::new(registry.clone(), dir.path());
    let events = watcher.subscribe();
    watcher.start().unwrap();
    let banner = registry.first_implementation(BANNER).unwrap();
    assert!(show(&banner, "you").unwrap().contains("a: hello, you"));
    assert!(show(&banner, "me").unwrap().contains("a: hello, me"));
    let generation = banner.generation();

    let tmp = dir.path().join(".greeter.tmp");
    fs::copy(plugin_path("greeter_b"), &tmp).unwrap();
    fs::rename(&tmp, dir.path().join("greeter.wasm")).unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .expect("no reload");
        if let WatchEvent::Reloaded { name, .. } = events.recv_timeout(left).unwrap() {
            assert_eq!(name, "greeter");
            break;
        }
    }
    assert!(show(&banner, "you").unwrap().contains("b: bonjour, you"));
    assert_eq!(shown(&banner), 3, "the banner's memory is intact");
    assert_eq!(banner.generation(), generation, "and it was not reloaded");
    let links = &registry
        .list()
        .into_iter()
        .find(|i| i.name == "banner")
        .unwrap()
        .imports;
    assert_eq!(links.len(), 1);
    assert_eq!(
        links[0].provider.as_ref().map(|(n, _)| n.as_str()),
        Some("greeter")
    );
}

/// A plugin whose memory starts with a page of data or more (chatty,
/// 6.7 KiB) runs on a twin of the registry's engine that maps its memory;
/// one with less (banner, greeter_a: 2.4 KiB) on the registry's own, which
/// copies it. Calls cross between the two both ways round, across a reload
/// that moves the provider from one engine to the other.
#[test]
fn plugins_on_the_two_memory_engines_call_each_other() {
    let registry = Registry::new().unwrap();
    let on_own_engine = |name: &str| {
        let plugin = registry.load_file(plugin_path(name)).unwrap();
        hotslot::wasmtime::Engine::same(plugin.component().engine(), registry.engine())
    };
    assert!(on_own_engine("banner"));
    assert!(on_own_engine("greeter_a"));
    assert!(!on_own_engine("chatty"), "chatty's data is mapped");

    let file = |stem: &str| fs::read(plugin_path(stem)).unwrap();
    add(&registry, "banner", &file("banner"));
    add(&registry, "greeter", &file("chatty"));
    let banner = registry.first_implementation(BANNER).unwrap();
    assert!(show(&banner, "you").unwrap().contains("chatty: hi, you"));
    add(&registry, "greeter", &file("greeter_a"));
    assert!(show(&banner, "me").unwrap().contains("a: hello, me"));
    add(&registry, "greeter", &file("chatty"));
    assert!(show(&banner, "us").unwrap().contains("chatty: hi, us"));
    assert_eq!(shown(&banner), 3, "the banner was not started again");
}

/// With no provider the banner loads and waits; it goes live when a
/// provider's file appears, and waits again when it goes.
#[test]
fn a_waiting_plugin_goes_live_when_its_provider_appears_and_waits_when_it_goes() {
    let dir = tempfile::tempdir().unwrap();
    fs::copy(plugin_path("banner"), dir.path().join("banner.wasm")).unwrap();
    let registry = Arc::new(Registry::new().unwrap());
    let mut watcher = Watcher::new(registry.clone(), dir.path());
    let events = watcher.subscribe();
    watcher.start().unwrap();
    let banner = registry.first_implementation(BANNER).unwrap();
    let waiting = |registry: &Registry| {
        let listed = registry.list();
        let banner = listed.iter().find(|i| i.name == "banner").unwrap();
        banner.imports[0].provider.is_none()
    };
    assert!(waiting(&registry));
    match show(&banner, "x") {
        Err(Error::Import(e)) if e.provider.is_none() => {
            assert_eq!(e.dependent, "banner");
            assert_eq!(e.import, "demo:greeter/greet@1.0.0");
            assert_eq!(e.function, "hello");
        }
        other => panic!("expected a missing import, got {other:?}"),
    }

    let wait_for = |want: &dyn Fn(&WatchEvent) -> bool| {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .expect("no event");
            if want(&events.recv_timeout(left).unwrap()) {
                return;
            }
        }
    };
    fs::copy(plugin_path("greeter_a"), dir.path().join("g.wasm")).unwrap();
    wait_for(&|e| matches!(e, WatchEvent::Loaded { name, .. } if name == "g"));
    assert!(!waiting(&registry));
    assert!(show(&banner, "x").unwrap().contains("a: hello, x"));

    fs::remove_file(dir.path().join("g.wasm")).unwrap();
    wait_for(&|e| matches!(e, WatchEvent::Removed { name, .. } if name == "g"));
    assert!(waiting(&registry));
    assert!(matches!(show(&banner, "x"), Err(Error::Import(e)) if e.provider.is_none()));
}

#[test]
fn a_provider_trap_fails_the_call_naming_both_and_the_next_call_works() {
    let registry = Registry::new().unwrap();
    add(&registry, "ping", &forwarding("ping", "pong"));
    add(&registry, "pong", &moody_pong());
    let ping = registry.implementation("demo:cycle/ping", "ping").unwrap();
    assert_eq!(depth(&ping, 3).unwrap(), 3, "ping adds one to pong(2)");
    match depth(&ping, 14) {
        Err(Error::Import(e)) => {
            assert_eq!(
                (e.dependent.as_str(), e.provider.as_deref()),
                ("ping", Some("pong"))
            );
            assert_eq!(e.fault, Some(Fault::Trap));
            assert!(e.to_string().contains("unreachable"), "{e}");
        }
        other => panic!("expected the provider's trap, got {other:?}"),
    }
    assert_eq!(depth(&ping, 3).unwrap(), 3);
}

/// An import of a shape no typed forwarder takes (a `u32` and a `u64`)
/// crosses as dynamic values, with the same answers and the same errors as
/// a typed one (`u32` alone).
#[test]
fn imports_of_any_shape_answer_and_fail_alike() {
    for pad in [false, true] {
        let registry = Registry::new().unwrap();
        add(&registry, "ping", &forwarding_with("ping", "pong", pad));
        add(&registry, "pong", &moody_pong_with(pad));
        let ping = registry.implementation("demo:cycle/ping", "ping").unwrap();
        let plus = if pad { 7 } else { 0 };
        assert_eq!(depth(&ping, 3).unwrap(), 3 + plus, "pad: {pad}");
        match depth(&ping, 14) {
            Err(Error::Import(e)) => {
                assert_eq!(e.provider.as_deref(), Some("pong"));
                assert_eq!(e.fault, Some(Fault::Trap), "pad: {pad}");
                assert!(e.to_string().contains("unreachable"), "{e}");
            }
            other => panic!("pad: {pad}: expected the provider's trap, got {other:?}"),
        }
        assert_eq!(depth(&ping, 5).unwrap(), 5 + plus, "pad: {pad}");
    }
}

/// A provider exporting its interface in two versions of other types, one
/// slot each on one generation. An unversioned import reaches the first;
/// once that implementation is removed, the same generation serves it
/// from the other export: the import is checked again (and refused), never
/// called with the types the first export had.
#[test]
fn an_import_moved_to_another_export_of_the_same_generation_is_checked_again() {
    let provider = wat::parse_str(
        r#"(component
            (core module $m
                (func (export "narrow") (param i32) (result i32) (local.get 0))
                (func (export "wide") (param i64) (result i64) (local.get 0)))
            (core instance $i (instantiate $m))
            (func $narrow (param "depth" u32) (result u32) (canon lift (core func $i "narrow")))
            (func $wide (param "depth" u64) (result u64) (canon lift (core func $i "wide")))
            (instance $one (export "pong" (func $narrow)))
            (instance $two (export "pong" (func $wide)))
            (export "demo:cycle/pong@1.0.0" (instance $one))
            (export "demo:cycle/pong@2.0.0" (instance $two))
        )"#,
    )
    .unwrap();
    let dependent = wat::parse_str(
        r#"(component
            (import "demo:cycle/pong" (instance $dep
                (export "pong" (func (param "depth" u32) (result u32)))))
            (core func $lowered (canon lower (func $dep "pong")))
            (core module $m
                (import "dep" "f" (func $f (param i32) (result i32)))
                (func (export "run") (param i32) (result i32) (call $f (local.get 0))))
            (core instance $dep_core (export "f" (func $lowered)))
            (core instance $i (instantiate $m (with "dep" (instance $dep_core))))
            (func $run (param "depth" u32) (result u32) (canon lift (core func $i "run")))
            (instance $out (export "ping" (func $run)))
            (export "demo:cycle/ping@1.0.0" (instance $out))
        )"#,
    )
    .unwrap();
    let registry = Registry::new().unwrap();
    add(&registry, "pong", &provider);
    add(&registry, "ping", &dependent);
    let ping = registry.implementation("demo:cycle/ping", "ping").unwrap();
    let pong = registry.first_implementation("demo:cycle/pong").unwrap();
    let generation = pong.generation();
    let first = pong.interface().unwrap().to_string();
    let reached = depth(&ping, 5);
    if first.ends_with("@1.0.0") {
        assert_eq!(reached.unwrap(), 5, "the u32 export serves first");
    } else {
        assert!(reached.is_err(), "the u64 export is refused");
    }
    registry
        .remove_implementation(first.as_str(), "pong")
        .unwrap();
    let after = registry.first_implementation("demo:cycle/pong").unwrap();
    assert_eq!(after.generation(), generation, "the same generation serves");
    assert_ne!(after.interface().unwrap().to_string(), first);
    match depth(&ping, 5) {
        Err(Error::Import(e)) if first.ends_with("@1.0.0") => {
            assert!(e.reason.contains("does not match"), "{e}");
        }
        Ok(n) if first.ends_with("@2.0.0") => assert_eq!(n, 5),
        other => panic!("after moving from {first}: {other:?}"),
    }
}

/// A provider with `[reload] canary` keeps the calls forwarded to it, typed
/// or dynamic, and a new version that traps on one of them is refused.
#[test]
fn a_providers_canary_replays_the_calls_forwarded_to_it() {
    let canary = Grants::from_toml("[reload]\ncanary = 5\n", Path::new("."), "m").unwrap();
    for (pad, call) in [
        (false, "demo:cycle/pong@1.0.0#pong(13)"),
        (true, "demo:cycle/pong@1.0.0#pong(13, 7)"),
    ] {
        let registry = Registry::new().unwrap();
        let pong = |trap_at: i32| {
            let bytes = pong_trapping_at(pad, trap_at);
            let plugin = registry.load_bytes("pong.wasm", &bytes).unwrap();
            plugin.with_grants(canary.clone())
        };
        add(&registry, "ping", &forwarding_with("ping", "pong", pad));
        registry.add_plugin("pong", &pong(-1)).unwrap();
        let ping = registry.implementation("demo:cycle/ping", "ping").unwrap();
        let plus = if pad { 7 } else { 0 };
        assert_eq!(depth(&ping, 14).unwrap(), 14 + plus);
        match registry.add_plugin("pong", &pong(13)).unwrap_err() {
            Error::Canary {
                call: replayed,
                fault,
                ..
            } => {
                assert_eq!(replayed, call);
                assert_eq!(fault, Fault::Trap);
            }
            other => panic!("pad: {pad}: expected the canary to refuse it, got {other:?}"),
        }
    }
}

#[test]
fn a_provider_past_its_deadline_fails_the_chain_within_the_top_level_deadline() {
    let timeout = Duration::from_millis(300);
    let registry = Registry::with_engine(
        hotslot::engine::shared_engine().unwrap(),
        Limits {
            timeout,
            ..Limits::default()
        },
    )
    .unwrap();
    add(&registry, "ping", &forwarding("ping", "pong"));
    add(&registry, "pong", &moody_pong());
    let ping = registry.implementation("demo:cycle/ping", "ping").unwrap();
    let started = Instant::now();
    match depth(&ping, 8) {
        Err(Error::Import(e)) => assert_eq!(e.fault, Some(Fault::Timeout)),
        other => panic!("expected the provider's deadline, got {other:?}"),
    }
    assert!(
        started.elapsed() < 2 * timeout,
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(depth(&ping, 2).unwrap(), 2);
}

/// A dependent with a shorter deadline than its provider: the provider's
/// call ends when the dependent's (the top-level call's) time is up, not
/// when its own longer deadline would.
#[test]
fn the_top_level_deadline_bounds_a_provider_with_a_longer_one() {
    let (outer, inner) = (Duration::from_millis(150), Duration::from_millis(1500));
    let registry = Registry::with_engine(
        hotslot::engine::shared_engine().unwrap(),
        Limits {
            timeout: inner,
            ..Limits::default()
        },
    )
    .unwrap();
    let shorter = format!("[limits]\ntimeout-ms = {}\n", outer.as_millis());
    let grants = Grants::from_toml(&shorter, std::path::Path::new("."), "ping.toml").unwrap();
    let ping = registry
        .load_bytes("ping.wasm", &forwarding("ping", "pong"))
        .unwrap()
        .with_grants(grants);
    registry.add_plugin("ping", &ping).unwrap();
    add(&registry, "pong", &moody_pong());
    let ping = registry.implementation("demo:cycle/ping", "ping").unwrap();
    let started = Instant::now();
    match depth(&ping, 8) {
        Err(Error::Import(e)) => assert_eq!(e.fault, Some(Fault::Timeout)),
        other => panic!("expected a deadline, got {other:?}"),
    }
    let took = started.elapsed();
    assert!(
        took < 3 * outer,
        "took {took:?}: the provider ran on its own deadline"
    );
}

#[test]
fn a_provider_of_other_types_is_never_called_and_both_signatures_are_shown() {
    let registry = Registry::new().unwrap();
    registry
        .add_plugin("banner", &plugin(&registry, "banner"))
        .unwrap();
    let wrong = crate::common::greeter_of_other_types();
    add(&registry, "greeter", &wrong);
    let banner = registry.implementation(BANNER, "banner").unwrap();
    let err = show(&banner, "x").unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::Import(_)), "{err:?}");
    assert!(
        message.contains("func(name: string) -> string"),
        "{message}"
    );
    assert!(message.contains("func(n: u32) -> u32"), "{message}");
    let listed = registry.list();
    let link = &listed.iter().find(|i| i.name == "banner").unwrap().imports[0];
    assert!(link.problem.is_some());

    // The right provider under the same name (its contract, the wrong
    // one's functions, forgotten first): the next call works.
    registry.remove_plugin("greeter").unwrap();
    assert!(registry.forget_contract("greeter"));
    registry
        .add_plugin("greeter", &plugin(&registry, "greeter_a"))
        .unwrap();
    assert!(show(&banner, "x").unwrap().contains("a: hello, x"));

    // And the wrong one again, after a good one was called: checked anew.
    registry.remove_plugin("greeter").unwrap();
    registry.forget_contract("greeter");
    add(&registry, "greeter", &wrong);
    let again = show(&banner, "x").unwrap_err().to_string();
    assert!(again.contains("func(n: u32) -> u32"), "{again}");
}

/// Of several providers, a dependent is linked to the first whose
/// functions have the types it expects, not to the first of any types; with
/// none fitting, to the first, whose calls fail showing both signatures.
#[test]
fn a_provider_that_fits_is_linked_before_an_earlier_one_that_does_not() {
    let registry = Registry::new().unwrap();
    let wrong = crate::common::greeter_of_other_types();
    add(&registry, "a_wrong", &wrong);
    registry
        .add_plugin("banner", &plugin(&registry, "banner"))
        .unwrap();
    let banner = registry.implementation(BANNER, "banner").unwrap();
    assert!(
        show(&banner, "x").is_err(),
        "only a provider of other types"
    );

    // One that fits comes after it: the dependent is linked to it.
    registry
        .add_plugin("z_right", &plugin(&registry, "greeter_a"))
        .unwrap();
    assert!(show(&banner, "x").unwrap().contains("a: hello, x"));
    let listed = registry.list();
    let link = &listed.iter().find(|i| i.name == "banner").unwrap().imports[0];
    assert_eq!(
        link.provider.as_ref().map(|(name, _)| name.as_str()),
        Some("z_right")
    );
    assert!(link.problem.is_none(), "{:?}", link.problem);

    // It goes: back to the one that does not fit, which is never called.
    registry.remove_plugin("z_right").unwrap();
    let err = show(&banner, "x").unwrap_err().to_string();
    assert!(err.contains("func(n: u32) -> u32"), "{err}");
}

#[test]
fn cycles_are_refused_at_once_even_with_spare_instances() {
    let registry = Registry::new().unwrap();
    add(&registry, "ping", &forwarding("ping", "pong"));
    add(&registry, "pong", &forwarding("pong", "ping"));
    let ping = registry.implementation("demo:cycle/ping", "ping").unwrap();
    let started = Instant::now();
    let err = depth(&ping, 5).unwrap_err();
    assert!(
        err.to_string().contains("a cycle: ping -> pong -> ping"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "no waiting");
    assert_eq!(depth(&ping, 0).unwrap(), 0, "the next call works");

    // A plugin calling itself through the registry, with two instances.
    let selfish = registry
        .load_bytes("selfish.wasm", &forwarding("echo", "echo"))
        .unwrap();
    let grants =
        hotslot::Grants::from_toml("[limits]\ninstances = 2\n", Path::new("."), "m").unwrap();
    registry
        .add_plugin("selfish", &selfish.with_grants(grants))
        .unwrap();
    let echo = registry
        .implementation("demo:cycle/echo", "selfish")
        .unwrap();
    let err = depth(&echo, 3).unwrap_err();
    assert!(
        err.to_string().contains("a cycle: selfish -> selfish"),
        "{err}"
    );
}

/// Plugins that import each other hold each other, and only the registry
/// can let go of them: removed, or when the registry is dropped with no
/// handle reaching them, their instances go back to the pool. On an engine
/// whose pool holds six instances, ten registries in a row (a ping/pong
/// pair each) never run out. A handle kept past its registry still
/// answers, through its import too.
#[test]
fn plugins_that_import_each_other_are_freed_with_their_registry() {
    let engine = crate::common::engine_with_pool(6);
    let pair = || {
        let registry = Registry::with_engine(engine.clone(), Limits::default()).unwrap();
        add(&registry, "ping", &forwarding("ping", "pong"));
        add(&registry, "pong", &forwarding("pong", "ping"));
        registry
    };
    for round in 0..10 {
        let registry = pair();
        let ping = registry.implementation("demo:cycle/ping", "ping").unwrap();
        assert_eq!(depth(&ping, 1).unwrap(), 1, "dropped, round {round}");
    }
    for round in 0..10 {
        let registry = pair();
        let ping = registry.implementation("demo:cycle/ping", "ping").unwrap();
        assert_eq!(depth(&ping, 1).unwrap(), 1, "removed, round {round}");
        registry.remove_plugin("ping").unwrap();
        registry.remove_plugin("pong").unwrap();
    }
    let registry = pair();
    let ping = registry.implementation("demo:cycle/ping", "ping").unwrap();
    drop(registry);
    assert_eq!(depth(&ping, 1).unwrap(), 1, "served past the registry");
}

/// A dependent that asks its provider twice per call, while the provider
/// is replaced 1,000 times: no call fails, and no call sees two versions.
#[test]
fn a_thousand_provider_reloads_under_two_callers_fail_nothing_and_mix_nothing() {
    let pair = wat::parse_str(
        r#"(component
            (import "demo:probe/probe@1.0.0" (instance $p (export "version" (func (result u32)))))
            (core func $v (canon lower (func $p "version")))
            (core module $m
                (import "p" "v" (func $v (result i32)))
                (func (export "both") (result i64)
                    (i64.or
                        (i64.shl (i64.extend_i32_u (call $v)) (i64.const 32))
                        (i64.extend_i32_u (call $v)))))
            (core instance $pc (export "v" (func $v)))
            (core instance $i (instantiate $m (with "p" (instance $pc))))
            (func $both (result u64) (canon lift (core func $i "both")))
            (instance $out (export "both" (func $both)))
            (export "demo:pair/pair@1.0.0" (instance $out))
        )"#,
    )
    .unwrap();
    let registry = Arc::new(Registry::new().unwrap());
    let versions = [
        registry
            .load_bytes("v1.wasm", &probe_component("1.0.0", 1))
            .unwrap(),
        registry
            .load_bytes("v2.wasm", &probe_component("1.0.0", 2))
            .unwrap(),
    ];
    registry.add_plugin("probe", &versions[0]).unwrap();
    add(&registry, "pair", &pair);
    let handle = registry.implementation("demo:pair/pair", "pair").unwrap();
    let reloading = Arc::new(AtomicBool::new(true));
    let (calls, mixed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let (handle, reloading) = (handle.clone(), reloading.clone());
            let (calls, mixed) = (calls.clone(), mixed.clone());
            std::thread::spawn(move || {
                while reloading.load(Ordering::SeqCst) {
                    let both = match handle
                        .call("both", &[])
                        .expect("no call may fail")
                        .as_slice()
                    {
                        [Val::U64(both)] => *both,
                        other => panic!("{other:?}"),
                    };
                    let (first, second) = (both >> 32, both & 0xffff_ffff);
                    assert!(first == 1 || first == 2, "{both:#x}");
                    if first != second {
                        mixed.fetch_add(1, Ordering::SeqCst);
                    }
                    calls.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for i in 0..1000 {
        registry
            .add_plugin("probe", &versions[(i + 1) % 2])
            .unwrap();
    }
    reloading.store(false, Ordering::SeqCst);
    callers.into_iter().for_each(|c| c.join().unwrap());
    assert_eq!(
        mixed.load(Ordering::SeqCst),
        0,
        "calls that saw two versions"
    );
    assert!(calls.load(Ordering::SeqCst) > 0);
}

#[test]
fn imports_that_pass_resources_are_refused_at_load_saying_so() {
    let with_resource = wat::parse_str(
        r#"(component
            (import "demo:res/things@1.0.0" (instance $t
                (export "thing" (type (sub resource)))))
        )"#,
    )
    .unwrap();
    let err = Registry::new()
        .unwrap()
        .load_bytes("res.wasm", &with_resource)
        .unwrap_err();
    assert!(matches!(err, Error::Link { .. }), "{err:?}");
    assert!(err.to_string().contains("resources cannot cross"), "{err}");
}
