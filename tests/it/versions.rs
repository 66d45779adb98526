//! The version matrix, with probe components that export
//! `demo:probe/probe@VERSION` and answer a number that says which one served.

use hotslot::{Error, Registry, RegistryEvent};

use crate::common::{probe_answer, probe_component};

fn add_probe(registry: &Registry, version: &str, name: &str, answer: u32) {
    let plugin = registry
        .load_bytes(
            &format!("probe-{version}"),
            &probe_component(version, answer),
        )
        .unwrap();
    registry
        .add_implementation(format!("demo:probe/probe@{version}"), name, &plugin)
        .unwrap();
}

fn first(registry: &Registry, request: &str) -> Result<u32, Error> {
    probe_answer(&registry.first_implementation(request)?)
}

#[test]
fn one_two_serves_one_zero_but_not_one_three_or_two() {
    let registry = Registry::new().unwrap();
    add_probe(&registry, "1.2.0", "p", 120);

    assert_eq!(first(&registry, "demo:probe/probe@1.0.0").unwrap(), 120);
    assert_eq!(
        first(&registry, "demo:probe/probe@1.2.9").unwrap(),
        120,
        "patch ignored"
    );
    assert_eq!(first(&registry, "demo:probe/probe@1").unwrap(), 120);
    assert_eq!(
        first(&registry, "demo:probe/probe").unwrap(),
        120,
        "no version: any"
    );
    for unserved in [
        "demo:probe/probe@1.3.0",
        "demo:probe/probe@2.0.0",
        "demo:probe/probe@0.1.0",
    ] {
        assert!(
            matches!(
                first(&registry, unserved),
                Err(Error::NoImplementation { .. })
            ),
            "{unserved} must not be served by 1.2.0"
        );
    }
}

#[test]
fn adding_for_a_newer_minor_than_exported_is_refused() {
    let registry = Registry::new().unwrap();
    let plugin = registry
        .load_bytes("probe-1.2.0", &probe_component("1.2.0", 1))
        .unwrap();
    let err = registry
        .add_implementation("demo:probe/probe@1.3.0", "p", &plugin)
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::NotExported { .. }), "{err:?}");
    assert!(message.contains("demo:probe/probe@1.3.0"), "{message}");
    assert!(message.contains("demo:probe/probe@1.2.0"), "{message}");
    // An older request is served: the implementation registers as what it exports.
    registry
        .add_implementation("demo:probe/probe@1.0.0", "p", &plugin)
        .unwrap();
    assert_eq!(
        registry.list()[0].interface.to_string(),
        "demo:probe/probe@1.2.0"
    );
}

#[test]
fn zero_two_and_zero_three_are_distinct() {
    let registry = Registry::new().unwrap();
    add_probe(&registry, "0.2.1", "p", 21);
    add_probe(&registry, "0.3.0", "p", 30);

    assert_eq!(first(&registry, "demo:probe/probe@0.2.0").unwrap(), 21);
    assert_eq!(first(&registry, "demo:probe/probe@0.2.5").unwrap(), 21);
    assert_eq!(first(&registry, "demo:probe/probe@0.3").unwrap(), 30);
    assert!(first(&registry, "demo:probe/probe@0.1").is_err());
    // Same name, different lines: two slots, both listed.
    assert_eq!(registry.list().len(), 2);
}

#[test]
fn two_majors_live_side_by_side() {
    let registry = Registry::new().unwrap();
    add_probe(&registry, "1.2.0", "p", 120);
    add_probe(&registry, "2.0.0", "p", 200);

    assert_eq!(first(&registry, "demo:probe/probe@1").unwrap(), 120);
    assert_eq!(first(&registry, "demo:probe/probe@2").unwrap(), 200);
    assert_eq!(
        registry.implementations("demo:probe/probe").unwrap().len(),
        2
    );

    // Removing one major leaves the other serving.
    registry
        .remove_implementation("demo:probe/probe@2.0.0", "p")
        .unwrap();
    assert!(first(&registry, "demo:probe/probe@2").is_err());
    assert_eq!(first(&registry, "demo:probe/probe@1").unwrap(), 120);
}

#[test]
fn a_newer_minor_replaces_behind_the_same_slot() {
    let registry = Registry::new().unwrap();
    let events = registry.subscribe();
    add_probe(&registry, "1.2.0", "p", 120);
    let handle = registry
        .first_implementation("demo:probe/probe@1.0")
        .unwrap();
    add_probe(&registry, "1.4.0", "p", 140);

    assert_eq!(probe_answer(&handle).unwrap(), 140);
    assert_eq!(
        handle.interface().unwrap().to_string(),
        "demo:probe/probe@1.4.0"
    );
    assert!(matches!(
        events.try_iter().last(),
        Some(RegistryEvent::Replaced { .. })
    ));
    assert_eq!(registry.list().len(), 1);
}

#[test]
fn a_versioned_request_never_matches_an_unversioned_export() {
    let registry = Registry::new().unwrap();
    let bytes = wat::parse_str(
        r#"(component
            (core module $m (func (export "v") (result i32) i32.const 7))
            (core instance $i (instantiate $m))
            (func $v (result u32) (canon lift (core func $i "v")))
            (instance $probe (export "version" (func $v)))
            (export "demo:probe/probe" (instance $probe))
        )"#,
    )
    .unwrap();
    let plugin = registry.load_bytes("unversioned", &bytes).unwrap();
    registry
        .add_implementation("demo:probe/probe", "u", &plugin)
        .unwrap();
    assert_eq!(first(&registry, "demo:probe/probe").unwrap(), 7);
    assert!(first(&registry, "demo:probe/probe@1").is_err());
}

#[test]
fn malformed_interface_names_are_refused_with_the_text() {
    let registry = Registry::new().unwrap();
    let plugin = registry
        .load_bytes("probe", &probe_component("1.0.0", 1))
        .unwrap();
    for bad in [
        "probe",
        "demo:probe",
        "demo:probe/probe@one",
        "Demo Probe/x",
    ] {
        let err = registry.add_implementation(bad, "p", &plugin).unwrap_err();
        assert!(
            matches!(err, Error::BadInterfaceName { .. }),
            "{bad}: {err:?}"
        );
        assert!(err.to_string().contains(bad), "{err}");
    }
}
