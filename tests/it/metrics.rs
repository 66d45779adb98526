//! Per-plugin metrics: what the registry counts, and `stats` in `watch`.

use hotslot::wasmtime::component::Val;
use hotslot::{Fault, Registry};

use crate::common::plugin;

#[test]
fn metrics_count_calls_faults_reloads_instances_and_state() {
    let registry = Registry::new().unwrap();
    let rogue = plugin(&registry, "rogue");
    registry.add_plugin("rogue", &rogue).unwrap();
    registry
        .add_plugin("counter", &plugin(&registry, "counter_state"))
        .unwrap();
    let handle = registry
        .implementation("demo:rogue/misbehave", "rogue")
        .unwrap();
    for _ in 0..40 {
        handle.call("ping", &[]).unwrap();
    }
    assert!(handle.call("trap", &[]).is_err());
    assert!(handle.call("recurse", &[Val::U64(u64::MAX)]).is_err());
    registry.add_plugin("rogue", &rogue).unwrap();
    let too_small = rogue.clone().with_grants(
        hotslot::Grants::from_toml(
            "[limits]\nmax-memory-mib = 0\n",
            std::path::Path::new("."),
            "m",
        )
        .unwrap(),
    );
    assert!(registry.add_plugin("rogue", &too_small).is_err());
    let counter = registry
        .implementation("demo:counter/counter", "counter")
        .unwrap();
    counter.call("increment", &[]).unwrap();

    let all = registry.metrics();
    let rogue = all.iter().find(|m| m.plugin == "rogue").unwrap();
    assert_eq!(rogue.calls, 42);
    let failed = |kind| rogue.failed.iter().find(|(f, _)| *f == kind).unwrap().1;
    assert_eq!((failed(Fault::Trap), failed(Fault::StackOverflow)), (1, 1));
    assert_eq!(rogue.failed_calls(), 2);
    assert_eq!((rogue.reloads, rogue.rejected_reloads), (1, 1));
    assert_eq!(rogue.instances, 1, "the reloaded generation's one instance");
    assert!(rogue.memory_bytes > 0);
    let p50 = rogue.latency_p50.expect("sampled calls");
    assert!(p50 <= rogue.latency_p99.unwrap() && p50 <= rogue.latency_max.unwrap());
    let counter = all.iter().find(|m| m.plugin == "counter").unwrap();
    assert_eq!(counter.calls, 1);
    assert!(counter.state_bytes >= 8 + "count".len() as u64);
}
