//! The cost of a call through a hotslot handle, beside the same call made
//! directly on wasmtime in the same run (same engine, same component).
//!
//! Run with `make bench`; ratios are reported in BENCHMARKS.md.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use hotslot::wasmtime::component::{Component, Instance, Linker, ResourceTable, Val};
use hotslot::wasmtime::{Engine, Store};
use hotslot::Registry;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

mod calculator {
    hotslot::wasmtime::component::bindgen!({ path: "../wit/calc", world: "calculator" });
    hotslot::bindings!(Calculator);
}
mod greeter {
    hotslot::wasmtime::component::bindgen!({ path: "../wit/greeter", world: "greeter" });
    hotslot::bindings!(Greeter);
}
use calculator::Calculator;
use greeter::Greeter;

fn plugin_path(stem: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../target/fixtures/{stem}.wasm"))
}

/// What a hand-rolled embedding keeps per store: WASI with nothing granted.
struct Raw {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Raw {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A store and instance made directly on wasmtime, as an embedder without
/// hotslot would, on the same engine (and so the same configuration).
fn direct_store(engine: &Engine) -> (Store<Raw>, Instance) {
    let mut linker: Linker<Raw> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    let component = Component::from_file(engine, plugin_path("calc")).unwrap();
    let state = Raw {
        wasi: WasiCtx::builder().build(),
        table: ResourceTable::new(),
    };
    let mut store = Store::new(engine, state);
    // The engine has epoch interruption on (hotslot's deadlines); a direct
    // embedder on it sets a deadline too, here once, far away.
    store.set_epoch_deadline(u64::MAX / 2);
    let instance = linker.instantiate(&mut store, &component).unwrap();
    (store, instance)
}

fn bench_calls(c: &mut Criterion) {
    let registry = Registry::new().unwrap();
    let engine = registry.engine().clone();
    let calc = registry.load_file(plugin_path("calc")).unwrap();
    registry
        .add_implementation("demo:calc/math@1.0.0", "calc", &calc)
        .unwrap();
    registry
        .add_implementation("demo:greeter/greet@1.0.0", "calc", &calc)
        .unwrap();
    let math = registry.first_implementation("demo:calc/math@1").unwrap();
    let greet = registry
        .first_implementation("demo:greeter/greet@1")
        .unwrap();

    let (mut store, instance) = direct_store(&engine);
    let direct_calc = Calculator::new(&mut store, &instance).unwrap();
    let direct_greet = Greeter::new(&mut store, &instance).unwrap();
    let add_index = instance
        .get_export_index(&mut store, None, "demo:calc/math@1.0.0")
        .and_then(|i| instance.get_export_index(&mut store, Some(&i), "add"))
        .unwrap();
    let add_func = instance.get_func(&mut store, add_index).unwrap();

    let mut group = c.benchmark_group("add");
    group.bench_function("typed/direct", |b| {
        b.iter(|| {
            direct_calc
                .demo_calc_math()
                .call_add(&mut store, black_box(1), black_box(2))
                .unwrap()
        })
    });
    group.bench_function("typed/handle", |b| {
        b.iter(|| {
            math.call_typed(|c: &Calculator, s| {
                c.demo_calc_math().call_add(s, black_box(1), black_box(2))
            })
            .unwrap()
        })
    });
    group.bench_function("typed/batch", |b| {
        math.batch(|calls| {
            b.iter(|| {
                calls
                    .call_typed(|c: &Calculator, s| {
                        c.demo_calc_math().call_add(s, black_box(1), black_box(2))
                    })
                    .unwrap()
            })
        })
        .unwrap()
    });
    group.bench_function("dynamic/direct", |b| {
        b.iter(|| {
            let mut results = [Val::Bool(false)];
            add_func
                .call(
                    &mut store,
                    &[Val::S32(black_box(1)), Val::S32(black_box(2))],
                    &mut results,
                )
                .unwrap();
            results
        })
    });
    group.bench_function("dynamic/handle", |b| {
        b.iter(|| {
            math.call("add", &[Val::S32(black_box(1)), Val::S32(black_box(2))])
                .unwrap()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("hello");
    group.bench_function("typed/direct", |b| {
        b.iter(|| {
            direct_greet
                .demo_greeter_greet()
                .call_hello(&mut store, black_box("sixteen bytes!!!"))
                .unwrap()
        })
    });
    group.bench_function("typed/handle", |b| {
        b.iter(|| {
            greet
                .call_typed(|g: &Greeter, s| {
                    g.demo_greeter_greet()
                        .call_hello(s, black_box("sixteen bytes!!!"))
                })
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_calls);
criterion_main!(benches);
