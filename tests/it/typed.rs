//! Typed calls through wasmtime's `bindgen!` output, on the same handles as
//! dynamic calls, and what a call in flight sees during a reload.

use hotslot::{Error, Registry};

use crate::common::{hello, plugin, GREET};

mod greeter {
    hotslot::wasmtime::component::bindgen!({ path: "../wit/greeter", world: "greeter" });
    hotslot::bindings!(Greeter);
}
mod calculator {
    hotslot::wasmtime::component::bindgen!({ path: "../wit/calc", world: "calculator" });
    hotslot::bindings!(Calculator);
}

use calculator::Calculator;
use greeter::Greeter;

/// A registry serving greeter_a as `impl_1`, a handle to it, and greeter_b
/// loaded, ready to replace it.
fn greeter_a_then_b() -> (Registry, hotslot::Handle, hotslot::Plugin) {
    let registry = Registry::new().unwrap();
    let impl_b = plugin(&registry, "greeter_b");
    registry
        .add_implementation(GREET, "impl_1", &plugin(&registry, "greeter_a"))
        .unwrap();
    let x = registry.first_implementation(GREET).unwrap();
    (registry, x, impl_b)
}

fn typed_hello(handle: &hotslot::Handle, name: &str) -> Result<String, Error> {
    handle.call_typed(|g: &Greeter, store| g.demo_greeter_greet().call_hello(store, name))
}

#[test]
fn typed_and_dynamic_calls_share_a_handle_across_reloads() {
    let registry = Registry::new().unwrap();
    registry
        .add_implementation(GREET, "impl_1", &plugin(&registry, "greeter_a"))
        .unwrap();
    let x = registry.first_implementation(GREET).unwrap();
    assert_eq!(typed_hello(&x, "t").unwrap(), "a: hello, t");
    assert_eq!(hello(&x, "d").unwrap(), "a: hello, d");

    registry
        .add_implementation(GREET, "impl_1", &plugin(&registry, "greeter_b"))
        .unwrap();
    assert_eq!(typed_hello(&x, "t").unwrap(), "b: bonjour, t");

    registry.remove_implementation(GREET, "impl_1").unwrap();
    assert!(matches!(
        typed_hello(&x, "t"),
        Err(Error::Unavailable { .. })
    ));
}

#[test]
fn typed_bindings_for_the_wrong_world_are_refused_by_name() {
    let registry = Registry::new().unwrap();
    registry
        .add_implementation(GREET, "impl_1", &plugin(&registry, "greeter_a"))
        .unwrap();
    let x = registry.first_implementation(GREET).unwrap();
    let err = x
        .call_typed(|c: &Calculator, store| c.demo_calc_math().call_add(store, 1, 2))
        .unwrap_err();
    assert!(matches!(err, Error::Bindings { .. }), "{err:?}");
    assert!(err.to_string().contains("Calculator"), "{err}");
    // The instance is untouched by the refusal.
    assert_eq!(typed_hello(&x, "t").unwrap(), "a: hello, t");
}

#[test]
fn typed_add_on_a_multi_export_component() {
    let registry = Registry::new().unwrap();
    let calc = plugin(&registry, "calc");
    registry
        .add_implementation("demo:calc/math@1.0.0", "calc", &calc)
        .unwrap();
    let math = registry.get("demo:calc/math@1").unwrap();
    let sum = math
        .call_typed(|c: &Calculator, store| c.demo_calc_math().call_add(store, 40, 2))
        .unwrap();
    assert_eq!(sum, 42);
}

/// A call in flight finishes on the generation it started on, even when a
/// reload lands in the middle of it; the next call reaches the new one.
#[test]
fn a_call_in_flight_finishes_on_its_own_generation() {
    let (registry, x, impl_b) = greeter_a_then_b();
    let old = x.generation().unwrap();

    let (before, after) = x
        .call_typed(|g: &Greeter, store| {
            let before = g.demo_greeter_greet().call_hello(&mut *store, "1")?;
            // The reload lands while this call still holds the old instance.
            registry
                .add_implementation(GREET, "impl_1", &impl_b)
                .unwrap();
            let after = g.demo_greeter_greet().call_hello(&mut *store, "2")?;
            Ok((before, after))
        })
        .unwrap();
    assert_eq!(before, "a: hello, 1");
    assert_eq!(
        after, "a: hello, 2",
        "the call in flight stays on its generation"
    );
    assert_eq!(hello(&x, "3").unwrap(), "b: bonjour, 3");
    assert!(x.generation().unwrap() > old);
}

/// A batch holds one instance for many calls, yet each call goes to the
/// newest generation: a reload between two calls is picked up by the second.
#[test]
fn a_batch_picks_up_a_reload_between_its_calls() {
    let (registry, x, impl_b) = greeter_a_then_b();
    let (first, second, dynamic) = x
        .batch(|calls| {
            let hello = |g: &Greeter, s: &mut hotslot::wasmtime::Store<hotslot::PluginState>| {
                g.demo_greeter_greet().call_hello(s, "n")
            };
            let first = calls.call_typed(hello)?;
            registry
                .add_implementation(GREET, "impl_1", &impl_b)
                .unwrap();
            let second = calls.call_typed(hello)?;
            let dynamic = calls.call(
                "hello",
                &[hotslot::wasmtime::component::Val::String("d".into())],
            )?;
            Ok::<_, Error>((first, second, dynamic))
        })
        .unwrap()
        .unwrap();
    assert_eq!(first, "a: hello, n");
    assert_eq!(second, "b: bonjour, n");
    assert_eq!(
        dynamic,
        [hotslot::wasmtime::component::Val::String(
            "b: bonjour, d".into()
        )]
    );

    registry.remove_implementation(GREET, "impl_1").unwrap();
    let inside = x.batch(|calls| calls.call("hello", &[])).unwrap();
    assert!(matches!(inside, Err(Error::Unavailable { .. })));
}

/// A failed typed call names the function even when the guest kept no name
/// section (`strip = true`): by the name its core module exports the
/// function under. Two functions, so the name cannot come from there being
/// only one.
#[test]
fn a_failed_typed_call_names_the_function_without_a_name_section() {
    let stripped = wat::parse_str(
        r#"(component
          (core module $m
            (func (export "demo:calc/math@1.0.0#add") (param i32 i32) (result i32) unreachable)
            (func (export "demo:calc/math@1.0.0#sub") (param i32 i32) (result i32) local.get 0))
          (core instance $i (instantiate $m))
          (func $add (param "a" s32) (param "b" s32) (result s32)
            (canon lift (core func $i "demo:calc/math@1.0.0#add")))
          (func $sub (param "a" s32) (param "b" s32) (result s32)
            (canon lift (core func $i "demo:calc/math@1.0.0#sub")))
          (instance $math (export "add" (func $add)) (export "sub" (func $sub)))
          (export "demo:calc/math@1.0.0" (instance $math)))"#,
    )
    .unwrap();
    let registry = Registry::new().unwrap();
    let plugin = registry.load_bytes("stripped.wasm", &stripped).unwrap();
    registry.add_plugin("stripped", &plugin).unwrap();
    let handle = registry
        .implementation("demo:calc/math", "stripped")
        .unwrap();
    let failed = handle
        .call_typed(|c: &Calculator, store| c.demo_calc_math().call_add(store, 1, 2))
        .unwrap_err();
    match failed {
        Error::Call { function, .. } => assert_eq!(function, "add"),
        other => panic!("{other:?}"),
    }
}
