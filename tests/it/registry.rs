//! The registry's contract: the seed's reload sequence, empty slots, order,
//! refusals, events and concurrent swaps.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use hotslot::{Error, Registry, RegistryEvent};

use crate::common::{hello, plugin, GREET};

/// The seed's exact sequence: a pointer taken before a remove + add reaches
/// the new implementation.
#[test]
fn seed_sequence_reaches_the_new_implementation() {
    let registry = Registry::new().unwrap();
    let impl_a = plugin(&registry, "greeter_a");
    let impl_b = plugin(&registry, "greeter_b");

    registry
        .add_implementation(GREET, "impl_1", &impl_a)
        .unwrap();
    let x = registry.first_implementation(GREET).unwrap();
    assert_eq!(hello(&x, "world").unwrap(), "a: hello, world");
    registry.remove_implementation(GREET, "impl_1").unwrap();
    registry
        .add_implementation(GREET, "impl_1", &impl_b)
        .unwrap();

    assert_eq!(hello(&x, "world").unwrap(), "b: bonjour, world");
}

#[test]
fn get_before_any_implementation_starts_working_when_one_is_added() {
    let registry = Registry::new().unwrap();
    let handle = registry.get("demo:greeter/greet@1.0").unwrap();
    assert!(!handle.is_available());
    match hello(&handle, "early") {
        Err(error @ Error::Unavailable { .. }) => {
            let Error::Unavailable { interface, .. } = &error else {
                unreachable!()
            };
            assert_eq!(interface, "demo:greeter/greet@1.0.0");
            // No plugin to name: none was ever selected.
            assert_eq!(
                error.to_string(),
                "demo:greeter/greet@1.0.0 is unavailable: no implementation of it is loaded"
            );
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }

    registry
        .add_implementation(GREET, "impl_1", &plugin(&registry, "greeter_a"))
        .unwrap();
    assert_eq!(hello(&handle, "late").unwrap(), "a: hello, late");
    assert_eq!(handle.name().as_deref(), Some("impl_1"));

    // It follows the registry: once impl_1 goes, the next serving one answers.
    registry
        .add_implementation(GREET, "impl_2", &plugin(&registry, "greeter_b"))
        .unwrap();
    registry.remove_implementation(GREET, "impl_1").unwrap();
    assert_eq!(hello(&handle, "x").unwrap(), "b: bonjour, x");
}

#[test]
fn a_get_handle_ignores_implementations_that_do_not_serve_it() {
    let registry = Registry::new().unwrap();
    let handle = registry.get("demo:greeter/greet@1.1").unwrap();
    registry
        .add_implementation(GREET, "old", &plugin(&registry, "greeter_a"))
        .unwrap();
    assert!(
        matches!(hello(&handle, "x"), Err(Error::Unavailable { .. })),
        "1.0.0 must not serve a request for 1.1"
    );
}

#[test]
fn calls_between_remove_and_add_fail_with_unavailable() {
    let registry = Registry::new().unwrap();
    registry
        .add_implementation(GREET, "impl_1", &plugin(&registry, "greeter_a"))
        .unwrap();
    let x = registry.first_implementation(GREET).unwrap();
    registry.remove_implementation(GREET, "impl_1").unwrap();

    match hello(&x, "world") {
        Err(Error::Unavailable { interface, name }) => {
            assert_eq!(interface, GREET);
            assert_eq!(name, "impl_1");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(x.generation().is_none());
    assert!(
        registry.first_implementation(GREET).is_err(),
        "an empty slot serves nothing"
    );

    registry
        .add_implementation(GREET, "impl_1", &plugin(&registry, "greeter_b"))
        .unwrap();
    assert_eq!(hello(&x, "world").unwrap(), "b: bonjour, world");
}

#[test]
fn removing_an_unknown_implementation_is_an_error() {
    let registry = Registry::new().unwrap();
    let err = registry.remove_implementation(GREET, "nobody").unwrap_err();
    assert!(matches!(err, Error::NoImplementation { .. }), "{err:?}");
    assert!(err.to_string().contains("nobody"), "{err}");
}

#[test]
fn implementations_come_in_registration_order() {
    let registry = Registry::new().unwrap();
    for (name, stem) in [
        ("one", "greeter_b"),
        ("two", "greeter_a"),
        ("three", "calc"),
    ] {
        registry
            .add_implementation(GREET, name, &plugin(&registry, stem))
            .unwrap();
    }
    let answers = |registry: &Registry| -> Vec<String> {
        registry
            .implementations(GREET)
            .unwrap()
            .iter()
            .map(|h| hello(h, "ann").unwrap())
            .collect()
    };
    assert_eq!(
        answers(&registry),
        [
            "b: bonjour, ann",
            "a: hello, ann",
            "calc: ann has 3 letters"
        ]
    );
    assert_eq!(
        hello(&registry.first_implementation(GREET).unwrap(), "ann").unwrap(),
        "b: bonjour, ann"
    );

    match registry.single_implementation(GREET) {
        Err(Error::NotSingle { count, .. }) => assert_eq!(count, 3),
        other => panic!("expected NotSingle, got {other:?}"),
    }

    // A reload keeps the slot, and so its place in the order.
    registry
        .add_implementation(GREET, "one", &plugin(&registry, "greeter_a"))
        .unwrap();
    assert_eq!(
        answers(&registry),
        ["a: hello, ann", "a: hello, ann", "calc: ann has 3 letters"]
    );
    let names: Vec<String> = registry.list().into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["one", "two", "three"]);
}

#[test]
fn single_implementation_when_there_is_exactly_one() {
    let registry = Registry::new().unwrap();
    assert!(matches!(
        registry.single_implementation(GREET),
        Err(Error::NotSingle { count: 0, .. })
    ));
    registry
        .add_implementation(GREET, "only", &plugin(&registry, "greeter_a"))
        .unwrap();
    let handle = registry
        .single_implementation("demo:greeter/greet")
        .unwrap();
    assert_eq!(hello(&handle, "z").unwrap(), "a: hello, z");
}

#[test]
fn a_component_exporting_several_interfaces_is_added_for_each() {
    let registry = Registry::new().unwrap();
    let calc = plugin(&registry, "calc");
    let exported: Vec<String> = calc
        .exports()
        .iter()
        .map(|e| e.name().to_string())
        .collect();
    assert_eq!(exported, ["demo:calc/math@1.0.0", GREET]);

    registry
        .add_implementation("demo:calc/math@1.0.0", "calc", &calc)
        .unwrap();
    registry.add_implementation(GREET, "calc", &calc).unwrap();
    let math = registry.first_implementation("demo:calc/math").unwrap();
    use hotslot::wasmtime::component::Val;
    assert_eq!(
        math.call("add", &[Val::S32(2), Val::S32(40)]).unwrap(),
        [Val::S32(42)]
    );
    assert_eq!(
        hello(&registry.first_implementation(GREET).unwrap(), "bo").unwrap(),
        "calc: bo has 2 letters"
    );
}

#[test]
fn refuses_a_component_that_does_not_export_the_interface() {
    let registry = Registry::new().unwrap();
    let greeter = plugin(&registry, "greeter_a");
    let err = registry
        .add_implementation("demo:text/filter@1.2.0", "f", &greeter)
        .unwrap_err();
    assert!(matches!(err, Error::NotExported { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("demo:text/filter@1.2.0"), "{message}");
    assert!(message.contains("greeter_a.wasm"), "{message}");
    assert!(
        message.contains(GREET),
        "names what it does export: {message}"
    );
}

#[test]
fn refuses_core_modules_garbage_empty_and_truncated_files() {
    let registry = Registry::new().unwrap();
    let component = std::fs::read(crate::common::plugin_path("greeter_a")).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "core.wasm",
            wat::parse_str("(module)").unwrap(),
            "core WebAssembly module",
        ),
        (
            "garbage.wasm",
            b"definitely not wasm at all".to_vec(),
            "not a WebAssembly binary",
        ),
        ("empty.wasm", Vec::new(), "empty"),
        (
            "truncated.wasm",
            component[..component.len() / 2].to_vec(),
            "",
        ),
    ];
    for (origin, bytes, expected) in cases {
        let err = registry.load_bytes(origin, &bytes).unwrap_err();
        assert!(
            matches!(err, Error::NotAComponent { .. }),
            "{origin}: {err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(origin), "names the file: {message}");
        assert!(message.contains(expected), "{origin}: {message}");
    }
}

#[test]
fn a_missing_file_is_an_io_error_naming_it() {
    let registry = Registry::new().unwrap();
    let err = registry
        .load_file("/nonexistent/dir/plugin.wasm")
        .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(
        err.to_string().contains("/nonexistent/dir/plugin.wasm"),
        "{err}"
    );
}

#[test]
fn subscribers_see_added_replaced_and_removed() {
    let registry = Registry::new().unwrap();
    let events = registry.subscribe();
    let a = plugin(&registry, "greeter_a");
    let g1 = registry.add_implementation(GREET, "impl_1", &a).unwrap();
    let g2 = registry.add_implementation(GREET, "impl_1", &a).unwrap();
    registry.remove_implementation(GREET, "impl_1").unwrap();
    let interface: hotslot::InterfaceName = GREET.parse().unwrap();
    let name = "impl_1".to_string();
    let seen: Vec<RegistryEvent> = events.try_iter().collect();
    assert_eq!(
        seen,
        [
            RegistryEvent::Added {
                interface: interface.clone(),
                name: name.clone(),
                generation: g1
            },
            RegistryEvent::Replaced {
                interface: interface.clone(),
                name: name.clone(),
                generation: g2,
                previous: g1
            },
            RegistryEvent::Removed {
                interface,
                name,
                generation: g2
            },
        ]
    );
    assert!(g2 > g1);
}

/// Two threads call through one handle while a third swaps impl_a and impl_b
/// 200 times, each time waiting (bounded) until a caller has been answered
/// by the new one: every call answers from a or b, none fails, and every
/// swap was seen.
#[test]
fn calls_through_one_handle_survive_200_swaps() {
    let registry = Arc::new(Registry::new().unwrap());
    let impls = [
        plugin(&registry, "greeter_a"),
        plugin(&registry, "greeter_b"),
    ];
    registry
        .add_implementation(GREET, "impl_1", &impls[0])
        .unwrap();
    let handle = registry.first_implementation(GREET).unwrap();
    let swapping = Arc::new(AtomicBool::new(true));
    // How many calls each of a and b answered, and who answered last.
    let answered = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let last = Arc::new(AtomicUsize::new(0));

    let callers: Vec<_> = (0..2)
        .map(|_| {
            let (handle, swapping) = (handle.clone(), swapping.clone());
            let (answered, last) = (answered.clone(), last.clone());
            thread::spawn(move || {
                while swapping.load(Ordering::SeqCst) {
                    let answer = hello(&handle, "w").expect("no call may fail during swaps");
                    let who = match answer.as_str() {
                        "a: hello, w" => 0,
                        "b: bonjour, w" => 1,
                        other => panic!("answer from neither a nor b: {other}"),
                    };
                    answered[who].fetch_add(1, Ordering::SeqCst);
                    last.store(who, Ordering::SeqCst);
                }
            })
        })
        .collect();

    for i in 0..200 {
        let next = (i + 1) % 2;
        registry
            .add_implementation(GREET, "impl_1", &impls[next])
            .unwrap();
        // Every call that starts from now on reaches `next`.
        let deadline = Instant::now() + Duration::from_secs(20);
        while last.load(Ordering::SeqCst) != next {
            assert!(
                Instant::now() < deadline,
                "swap {i} was never answered from"
            );
            thread::yield_now();
        }
    }
    swapping.store(false, Ordering::SeqCst);
    callers.into_iter().for_each(|c| c.join().unwrap());

    // 100 swaps to each, each seen at least once.
    assert!(answered[0].load(Ordering::SeqCst) >= 100);
    assert!(answered[1].load(Ordering::SeqCst) >= 100);
    // The last swap (i = 199) put impl_a behind the slot.
    assert_eq!(hello(&handle, "w").unwrap(), "a: hello, w");
}

#[test]
fn handles_and_the_registry_can_be_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    fn cloneable<T: Clone>() {}
    shared::<hotslot::Handle>();
    cloneable::<hotslot::Handle>();
    shared::<Registry>();
    shared::<hotslot::Plugin>();
}
