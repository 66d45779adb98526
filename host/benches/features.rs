//! What the features beyond a plain call cost, each beside its baseline in
//! the same run: host-kept state from a guest, a reload that migrates a
//! 1 MiB snapshot, a call forwarded through the registry to another plugin
//! against the same two components wired by hand on wasmtime, and the big
//! Python and JavaScript components (first compile, cached reload, memory
//! per instance).
//!
//! Timings interleave the two sides over many short rounds (the machine's
//! noise moves a single run by 10 %) and report the median of the per-round
//! figures with the 10th and 90th percentiles. `make bench`.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hotslot::wasmtime::component::{
    Component, ComponentExportIndex, Instance, InstancePre, Linker, ResourceTable, TypedFunc, Val,
};
use hotslot::wasmtime::{Engine, Store};
use hotslot::{Handle, Registry};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

fn fixture(stem: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../target/fixtures/{stem}.wasm"))
}

fn bytes(stem: &str) -> Vec<u8> {
    std::fs::read(fixture(stem)).expect("run `make fixtures` first")
}

/// Median, 10th and 90th percentile.
fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.1), at(0.9))
}

/// The spread of the per-round ratios `top[i] / bottom[i]`.
fn ratio_spread(top: &[f64], bottom: &[f64]) -> (f64, f64, f64) {
    spread(top.iter().zip(bottom).map(|(t, b)| t / b).collect())
}

/// Nanoseconds per call of `f`, over `iters` calls.
fn per_call(iters: u32, f: &mut dyn FnMut()) -> f64 {
    let started = Instant::now();
    for _ in 0..iters {
        f();
    }
    started.elapsed().as_nanos() as f64 / f64::from(iters)
}

/// Runs each side for `iters` calls per round, alternating which goes
/// first, over `rounds` rounds; returns per-side medians and the per-round
/// ratio (side / first side) spreads.
fn interleave(rounds: usize, iters: u32, sides: &mut [(&str, &mut dyn FnMut())]) {
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); sides.len()];
    for round in 0..rounds {
        let order: Vec<usize> = match round % 2 {
            0 => (0..sides.len()).collect(),
            _ => (0..sides.len()).rev().collect(),
        };
        for i in order {
            times[i].push(per_call(iters, sides[i].1));
        }
    }
    let base = &times[0];
    for (i, (name, _)) in sides.iter().enumerate() {
        let (median, p10, p90) = spread(times[i].clone());
        let (r, r10, r90) = ratio_spread(&times[i], base);
        println!(
            "  {name:<44} {median:>10.1} ns  [{p10:.1} .. {p90:.1}]   ratio {r:.3} [{r10:.3} .. {r90:.3}]"
        );
    }
}

mod calc {
    hotslot::bindgen!(Calculator, { path: "../wit/calc", world: "calculator" });
}

/// A typed `add` through a handle, with metrics counted and without, beside
/// the same call made directly on wasmtime.
fn metrics_cost(engine: &Engine) {
    let with = Registry::with_engine(engine.clone(), hotslot::Limits::default()).unwrap();
    let without = Registry::with_engine(engine.clone(), hotslot::Limits::default())
        .unwrap()
        .without_metrics();
    let mut handles = Vec::new();
    for registry in [&with, &without] {
        let plugin = registry.load_bytes("calc.wasm", &bytes("calc")).unwrap();
        registry.add_plugin("calc", &plugin).unwrap();
        handles.push(registry.implementation("demo:calc/math", "calc").unwrap());
    }
    let mut linker: Linker<Raw> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    let component = Component::new(engine, bytes("calc")).unwrap();
    let mut store = raw_store(engine);
    let instance = linker.instantiate(&mut store, &component).unwrap();
    let direct = calc::Calculator::new(&mut store, &instance).unwrap();
    let typed = |h: &Handle| {
        black_box(
            h.call_typed(|c: &calc::Calculator, s| c.demo_calc_math().call_add(s, 40, 2))
                .unwrap(),
        );
    };
    println!("metrics: a typed add (41 rounds x 20000 calls):");
    interleave(
        41,
        20_000,
        &mut [
            ("direct wasmtime", &mut || {
                black_box(direct.demo_calc_math().call_add(&mut store, 40, 2).unwrap());
            }),
            ("handle, metrics off", &mut || typed(&handles[1])),
            ("handle, metrics on (as shipped)", &mut || {
                typed(&handles[0])
            }),
        ],
    );
}

fn call(handle: &Handle, function: &str, args: &[Val]) {
    black_box(handle.call(function, args).unwrap());
}

fn state_costs(registry: &Registry) {
    let plugin = registry.load_bytes("bench.wasm", &bytes("bench")).unwrap();
    registry.add_plugin("bench", &plugin).unwrap();
    let h = registry
        .implementation("demo:bench/state-costs", "bench")
        .unwrap();
    println!("state from a guest (one host call each; 41 rounds x 2000 calls):");
    for size in [16u32, 64 * 1024] {
        let iters = if size > 1024 { 200 } else { 2000 };
        call(&h, "put", &[Val::U32(size)]);
        interleave(
            41,
            iters,
            &mut [
                ("call doing nothing", &mut || call(&h, "noop", &[])),
                (&format!("state.set of {size} bytes"), &mut || {
                    call(&h, "put", &[Val::U32(size)])
                }),
                (&format!("state.get of {size} bytes"), &mut || {
                    call(&h, "fetch", &[])
                }),
            ],
        );
    }
}

fn migration(registry: &Registry) {
    let memory = registry
        .load_bytes("counter_memory.wasm", &bytes("counter_memory"))
        .unwrap();
    let stored = registry
        .load_bytes("counter_state.wasm", &bytes("counter_state"))
        .unwrap();
    registry.add_plugin("m", &memory).unwrap();
    registry.add_plugin("s", &stored).unwrap();
    let m = registry
        .implementation("demo:counter/counter", "m")
        .unwrap();
    call(&m, "pad", &[Val::U32(1 << 20)]);
    println!("a reload (new instance, swap), 21 rounds x 20 reloads:");
    interleave(
        21,
        20,
        &mut [
            ("reload, nothing to migrate", &mut || {
                registry.add_plugin("s", &stored).unwrap();
            }),
            ("reload migrating a 1 MiB snapshot", &mut || {
                registry.add_plugin("m", &memory).unwrap();
                // The new instance holds what the old one had.
                black_box(m.call("get", &[]).unwrap());
            }),
        ],
    );
}

/// What a hand-rolled embedding keeps per store.
struct Raw {
    wasi: WasiCtx,
    table: ResourceTable,
    http: wasmtime_wasi_http::WasiHttpCtx,
}

impl wasmtime_wasi_http::WasiHttpView for Raw {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: wasmtime_wasi_http::default_hooks(),
        }
    }
}

impl WasiView for Raw {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn raw_store(engine: &Engine) -> Store<Raw> {
    let mut store = Store::new(
        engine,
        Raw {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
        },
    );
    store.set_epoch_deadline(u64::MAX / 2);
    store
}

fn forwarding(registry: &Registry) {
    let engine = registry.engine().clone();
    registry
        .add_plugin(
            "greeter_a",
            &registry.load_bytes("a.wasm", &bytes("greeter_a")).unwrap(),
        )
        .unwrap();
    registry
        .add_plugin(
            "banner",
            &registry
                .load_bytes("banner.wasm", &bytes("banner"))
                .unwrap(),
        )
        .unwrap();
    let through = registry
        .implementation("demo:banner/banner", "banner")
        .unwrap();

    // The same two components wired by hand: the banner's import is a host
    // function calling the greeter's typed export in its own store.
    let mut linker: Linker<Raw> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    let greeter = Component::new(&engine, bytes("greeter_a")).unwrap();
    let mut greeter_store = raw_store(&engine);
    let greeter_instance = linker.instantiate(&mut greeter_store, &greeter).unwrap();
    let greet = greeter_instance
        .get_export_index(&mut greeter_store, None, "demo:greeter/greet@1.0.0")
        .unwrap();
    let hello_index = greeter_instance
        .get_export_index(&mut greeter_store, Some(&greet), "hello")
        .unwrap();
    let hello: TypedFunc<(String,), (String,)> = greeter_instance
        .get_typed_func(&mut greeter_store, hello_index)
        .unwrap();
    let provider = Arc::new(Mutex::new((greeter_store, hello)));
    let mut wired = linker.clone();
    wired
        .instance("demo:greeter/greet@1.0.0")
        .unwrap()
        .func_wrap("hello", move |_store, (name,): (String,)| {
            let mut guard = provider.lock().unwrap();
            let (store, hello) = &mut *guard;
            let (answer,) = hello.call(&mut *store, (name,))?;
            Ok((answer,))
        })
        .unwrap();
    let banner = Component::new(&engine, bytes("banner")).unwrap();
    // And wired with dynamic values on both sides of the import, as a host
    // that knows the types only at run time must.
    let mut greeter_store = raw_store(&engine);
    let greeter_instance = linker.instantiate(&mut greeter_store, &greeter).unwrap();
    let hello_dynamic = greeter_instance
        .get_func(&mut greeter_store, hello_index)
        .unwrap();
    let provider = Mutex::new(greeter_store);
    let mut wired_dynamic = linker.clone();
    wired_dynamic
        .instance("demo:greeter/greet@1.0.0")
        .unwrap()
        .func_new("hello", move |_store, _ty, params, results| {
            let mut store = provider.lock().unwrap();
            hello_dynamic.call(&mut *store, params, results)
        })
        .unwrap();
    let mut dynamic_store = raw_store(&engine);
    let dynamic_instance = wired_dynamic
        .instantiate(&mut dynamic_store, &banner)
        .unwrap();
    let show_both = show_index_of(&dynamic_instance, &mut dynamic_store);
    let dynamic_show_both = dynamic_instance
        .get_func(&mut dynamic_store, show_both)
        .unwrap();
    let dynamic_store = std::cell::RefCell::new(dynamic_store);

    let mut store = raw_store(&engine);
    let instance = wired.instantiate(&mut store, &banner).unwrap();
    let store = std::cell::RefCell::new(store);
    let mut store_ref = store.borrow_mut();
    let store_mut = &mut *store_ref;
    let iface = instance
        .get_export_index(&mut *store_mut, None, "demo:banner/banner@1.0.0")
        .unwrap();
    let show_index = instance
        .get_export_index(&mut *store_mut, Some(&iface), "show")
        .unwrap();
    let show: TypedFunc<(&str,), (String,)> = instance
        .get_typed_func(&mut *store_mut, show_index)
        .unwrap();
    let dynamic_show = instance.get_func(&mut *store_mut, show_index).unwrap();
    drop(store_ref);

    let args = [Val::String("you".into())];
    // For perf: one side alone for six seconds, then a count of its calls.
    if let Some(side) = std::env::var_os("PROFILE_FORWARDING") {
        let until = Instant::now() + std::time::Duration::from_secs(6);
        let mut calls = 0u64;
        while Instant::now() < until {
            for _ in 0..1000 {
                if side == "wired" {
                    let mut results = [Val::Bool(false)];
                    let mut store = dynamic_store.borrow_mut();
                    dynamic_show_both
                        .call(&mut *store, &args, &mut results)
                        .unwrap();
                    black_box(results);
                } else {
                    let mut results = [Val::Bool(false)];
                    through.call_into("show", &args, &mut results).unwrap();
                    black_box(results);
                }
            }
            calls += 1000;
        }
        eprintln!("{calls} calls");
        return;
    }
    println!("a call forwarded to another plugin (41 rounds x 2000 calls):");
    interleave(
        41,
        2000,
        &mut [
            ("wired by hand, dynamic (wasmtime)", &mut || {
                let mut results = [Val::Bool(false)];
                let mut store = store.borrow_mut();
                dynamic_show.call(&mut *store, &args, &mut results).unwrap();
                black_box(results);
            }),
            ("wired by hand, typed (wasmtime)", &mut || {
                black_box(show.call(&mut *store.borrow_mut(), ("you",)).unwrap());
            }),
            (
                "wired by hand, dynamic on both sides of the import",
                &mut || {
                    let mut results = [Val::Bool(false)];
                    let mut store = dynamic_store.borrow_mut();
                    dynamic_show_both
                        .call(&mut *store, &args, &mut results)
                        .unwrap();
                    black_box(results);
                },
            ),
            // As the wired rows do: answers into slots of the caller's.
            (
                "through the registry (hotslot), Handle::call_into",
                &mut || {
                    let mut results = [Val::Bool(false)];
                    through.call_into("show", &args, &mut results).unwrap();
                    black_box(results);
                },
            ),
            ("through the registry (hotslot), Handle::call", &mut || {
                call(&through, "show", &args)
            }),
        ],
    );
}

fn show_index_of(instance: &Instance, store: &mut Store<Raw>) -> ComponentExportIndex {
    let iface = instance
        .get_export_index(&mut *store, None, "demo:banner/banner@1.0.0")
        .unwrap();
    instance
        .get_export_index(&mut *store, Some(&iface), "show")
        .unwrap()
}

/// `code` with a custom section appended: the same program in bytes never
/// seen before, so that no cache serves them.
fn fresh(code: &[u8], n: u64) -> Vec<u8> {
    fn leb(out: &mut Vec<u8>, mut value: u64) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"hotslot-bench";
    let mut section = Vec::new();
    leb(&mut section, name.len() as u64);
    section.extend_from_slice(name);
    section.extend_from_slice(&n.to_le_bytes());
    let mut out = code.to_vec();
    out.push(0);
    leb(&mut out, section.len() as u64);
    out.extend_from_slice(&section);
    out
}

/// Cranelift against Winch: new bytes to the first answer, and the calls
/// after.
fn compilers() {
    use hotslot::engine::{build, Compiler, EngineOptions};
    // Cranelift, Winch, and Cranelift reusing the functions it compiled
    // before (new bytes here differ only in a custom section, as an
    // interpreter plugin whose script changed differs only in its data).
    let options = [
        (Compiler::Cranelift, false),
        (Compiler::Winch, false),
        (Compiler::Cranelift, true),
    ];
    let engines = options.map(|(compiler, reuse_functions)| {
        build(&EngineOptions {
            compiler,
            reuse_functions,
            ..EngineOptions::default()
        })
        .unwrap()
    });
    let registries = engines
        .each_ref()
        .map(|engine| Registry::with_engine(engine.clone(), hotslot::Limits::default()).unwrap());
    let mut serial = 0;
    // For perf: `PROFILE_COMPILE=cranelift|winch|reuse` compiles calc (or
    // the fixture `PROFILE_STEM` names) with new bytes for six seconds on
    // that side's engine, then counts them.
    if let Some(side) = std::env::var_os("PROFILE_COMPILE") {
        let engine = &engines[match side.to_str() {
            Some("winch") => 1,
            Some("reuse") => 2,
            _ => 0,
        }];
        let code = bytes(&std::env::var("PROFILE_STEM").unwrap_or("calc".into()));
        let until = Instant::now() + std::time::Duration::from_secs(6);
        while Instant::now() < until {
            serial += 1;
            black_box(Component::new(engine, fresh(&code, serial)).unwrap());
        }
        eprintln!("{serial} compiles");
        return;
    }
    for (stem, interface, function, rounds) in [
        ("calc", "demo:calc/math", "add", 21),
        // A debug build (`make bench` makes it): what an author reloads
        // while developing a Rust plugin.
        ("calc_debug", "demo:calc/math", "add", 11),
        ("greeter_py", "demo:greeter/greet", "hello", 5),
    ] {
        let code = bytes(stem);
        let mut times = [Vec::new(), Vec::new(), Vec::new()];
        let mut raw = [Vec::new(), Vec::new(), Vec::new()];
        for round in 0..rounds {
            for turn in 0..3 {
                let side = (round + turn) % 3;
                serial += 1;
                let started = Instant::now();
                black_box(Component::new(&engines[side], fresh(&code, serial)).unwrap());
                raw[side].push(started.elapsed().as_secs_f64() * 1e3);
                let registry = &registries[side];
                serial += 1;
                let started = Instant::now();
                let plugin = registry.load_bytes(stem, &fresh(&code, serial)).unwrap();
                registry.add_plugin(stem, &plugin).unwrap();
                let handle = registry.implementation(interface, stem).unwrap();
                let args = match function {
                    "add" => vec![Val::S32(1), Val::S32(2)],
                    _ => vec![Val::String("x".into())],
                };
                call(&handle, function, &args);
                times[side].push(started.elapsed().as_secs_f64() * 1e3);
            }
        }
        let (c, c10, c90) = spread(times[0].clone());
        let (w, w10, w90) = spread(times[1].clone());
        let (u, u10, u90) = spread(times[2].clone());
        let (r, r10, r90) = ratio_spread(&times[0], &times[1]);
        let (q, q10, q90) = ratio_spread(&times[0], &times[2]);
        println!(
            "  {stem:<11} {:>6.1} MB new bytes to first answer: cranelift {c:.1} ms [{c10:.1} .. {c90:.1}], \
             winch {w:.1} ms [{w10:.1} .. {w90:.1}], cranelift reusing functions {u:.1} ms [{u10:.1} .. {u90:.1}]; \
             winch sooner by {r:.2}x [{r10:.2} .. {r90:.2}], reuse sooner by {q:.2}x [{q10:.2} .. {q90:.2}]",
            code.len() as f64 / 1e6
        );
        let cold = raw[2][0];
        let [c, w, u] = raw.map(|times| spread(times).0);
        println!(
            "  {stem:<11} wasmtime's Component::new alone: cranelift {c:.1} ms, winch {w:.1} ms ({:.2}x), \
             cranelift reusing functions {u:.1} ms ({:.2}x)",
            c / w,
            c / u
        );
        // The reusing engine's first compile found nothing kept: what
        // keeping costs a compile that cannot reuse.
        println!(
            "  {stem:<11} first compile on the reusing engine (nothing kept yet): {cold:.1} ms"
        );
    }
    let handles = registries
        .each_ref()
        .map(|r| r.implementation("demo:calc/math", "calc").unwrap());
    let typed = |h: &Handle| {
        black_box(
            h.call_typed(|c: &calc::Calculator, s| c.demo_calc_math().call_add(s, 40, 2))
                .unwrap(),
        );
    };
    println!("  typed add through a handle (41 rounds x 20000 calls):");
    interleave(
        41,
        20_000,
        &mut [
            ("compiled by cranelift", &mut || typed(&handles[0])),
            ("compiled by winch", &mut || typed(&handles[1])),
        ],
    );
    let greeters = registries.each_ref().map(|r| {
        r.implementation("demo:greeter/greet", "greeter_py")
            .unwrap()
    });
    let args = [Val::String("you".into())];
    println!("  Python hello, dynamic (21 rounds x 200 calls):");
    interleave(
        21,
        200,
        &mut [
            ("compiled by cranelift", &mut || {
                call(&greeters[0], "hello", &args)
            }),
            ("compiled by winch", &mut || {
                call(&greeters[1], "hello", &args)
            }),
        ],
    );
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn big_guests() {
    println!("big components (a fresh engine each, no disk cache):");
    for stem in ["greeter_py", "greeter_js"] {
        let registry = Registry::with_engine(
            hotslot::engine::new_engine().unwrap(),
            hotslot::Limits::default(),
        )
        .unwrap();
        let code = bytes(stem);
        let started = Instant::now();
        let plugin = registry.load_bytes(stem, &code).unwrap();
        let compile = started.elapsed();
        registry.add_plugin(stem, &plugin).unwrap();
        let handle = registry.implementation("demo:greeter/greet", stem).unwrap();
        call(&handle, "hello", &[Val::String("x".into())]);
        // A cached reload: bytes seen before, into the slot, first answer.
        let mut reloads = Vec::new();
        for _ in 0..11 {
            let started = Instant::now();
            let again = registry.load_bytes(stem, &code).unwrap();
            registry.add_plugin(stem, &again).unwrap();
            call(&handle, "hello", &[Val::String("x".into())]);
            reloads.push(started.elapsed().as_secs_f64() * 1e3);
        }
        let (reload, low, high) = spread(reloads);
        // Memory per instance: ten more names, one instance each.
        let before = rss_kib();
        for i in 0..10 {
            let name = format!("{stem}{i}");
            registry.add_plugin(&name, &plugin).unwrap();
        }
        let per_instance = (rss_kib().saturating_sub(before)) as f64 / 10.0 / 1024.0;
        println!(
            "  {stem:<12} {:>6.1} MB  first compile {:>7.0} ms   cached reload to first answer \
             {reload:.1} ms [{low:.1} .. {high:.1}]   {per_instance:.1} MiB resident per instance",
            code.len() as f64 / 1e6,
            compile.as_secs_f64() * 1e3,
        );
    }
}

/// calc as a hand-rolled embedding has it: an `InstancePre` with WASI,
/// and where its `add` is.
fn raw_calc(engine: &Engine) -> (InstancePre<Raw>, ComponentExportIndex) {
    let mut linker: Linker<Raw> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    let component = Component::new(engine, bytes("calc")).unwrap();
    let pre = linker.instantiate_pre(&component).unwrap();
    let (_, math) = component.get_export(None, "demo:calc/math@1.0.0").unwrap();
    let add = component.get_export_index(Some(&math), "add").unwrap();
    (pre, add)
}

/// A swap: `add_plugin` of an already compiled plugin (a new instance made
/// and started, then published behind every handle) and the first call
/// after it, beside what a hand-rolled embedding does for the same: a fresh
/// store, an instance from its `InstancePre`, the old one dropped, a call.
/// Each swap timed alone, for the median and the tail.
fn swaps(registry: &Registry) {
    let engine = registry.engine();
    let plugin = registry.load_bytes("calc.wasm", &bytes("calc")).unwrap();
    registry.add_plugin("swap", &plugin).unwrap();
    let handle = registry.implementation("demo:calc/math", "swap").unwrap();
    let (pre, add) = raw_calc(engine);
    let mut current = None;
    let mut raw = || {
        let mut store = raw_store(engine);
        let instance = pre.instantiate(&mut store).unwrap();
        let f: TypedFunc<(i32, i32), (i32,)> = instance.get_typed_func(&mut store, add).unwrap();
        black_box(f.call(&mut store, (40, 2)).unwrap());
        current = Some(store);
    };
    let ours = || {
        registry.add_plugin("swap", &plugin).unwrap();
        black_box(handle.call("add", &[Val::S32(40), Val::S32(2)]).unwrap());
    };
    // For perf: `PROFILE_SWAPS=hotslot|wasmtime` swaps on one side for
    // eight seconds, then counts the swaps.
    if let Some(side) = std::env::var_os("PROFILE_SWAPS") {
        let until = Instant::now() + std::time::Duration::from_secs(8);
        let mut swaps = 0u64;
        while Instant::now() < until {
            match side == "wasmtime" {
                true => raw(),
                false => ours(),
            }
            swaps += 1;
        }
        eprintln!("{swaps} swaps");
        return;
    }
    let mut times = [Vec::new(), Vec::new()];
    let mut medians = [Vec::new(), Vec::new()];
    for round in 0..41 {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            let mut round_times = Vec::with_capacity(200);
            for _ in 0..200 {
                let started = Instant::now();
                if side == 0 {
                    raw()
                } else {
                    ours()
                }
                round_times.push(started.elapsed().as_secs_f64() * 1e6);
            }
            medians[side].push(spread(round_times.clone()).0);
            times[side].extend(round_times);
        }
    }
    let (r, r10, r90) = ratio_spread(&medians[1], &medians[0]);
    for (side, name) in [
        (0, "wasmtime: store + instantiate_pre + call"),
        (1, "hotslot: add_plugin + call"),
    ] {
        let mut all = times[side].clone();
        all.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| all[((all.len() - 1) as f64 * q).round() as usize];
        println!(
            "  {name:<42} median {:.1} us, p90 {:.1} us, p99 {:.1} us",
            at(0.5),
            at(0.9),
            at(0.99)
        );
    }
    println!("  hotslot / wasmtime, per-round medians: {r:.2}x [{r10:.2} .. {r90:.2}]");
}

/// A plugin that prints: `flood(1000, 50)` (1,000 lines each to stdout
/// and stderr) through a handle, its output going to the log, beside the
/// same call made directly on wasmtime with wasmtime-wasi's own stdio
/// (discarded); and through the handle inside a current-thread runtime's
/// `block_on`, as a `#[tokio::test]` makes it (where wasmtime-wasi's own
/// stdio cannot wait at all).
fn prints(registry: &Registry) {
    let engine = registry.engine().clone();
    let plugin = registry.load_bytes("rogue.wasm", &bytes("rogue")).unwrap();
    registry.add_plugin("rogue", &plugin).unwrap();
    let handle = registry
        .implementation("demo:rogue/misbehave", "rogue")
        .unwrap();
    let mut linker: Linker<Raw> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker).unwrap();
    let component = Component::new(&engine, bytes("rogue")).unwrap();
    let mut store = raw_store(&engine);
    let instance = linker.instantiate(&mut store, &component).unwrap();
    let index = instance
        .get_export_index(&mut store, None, "demo:rogue/misbehave@0.1.0")
        .unwrap();
    let index = instance
        .get_export_index(&mut store, Some(&index), "flood")
        .unwrap();
    let flood = instance
        .get_typed_func::<(u32, u32), ()>(&mut store, index)
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let args = [Val::U32(1000), Val::U32(50)];
    println!("prints: flood(1000, 50), 2,000 writes a call (21 rounds x 5 calls):");
    interleave(
        21,
        5,
        &mut [
            ("direct wasmtime, its own stdio (discarded)", &mut || {
                flood.call(&mut store, (1000, 50)).unwrap();
            }),
            ("handle, to the log", &mut || call(&handle, "flood", &args)),
            ("handle, in a current-thread block_on", &mut || {
                runtime.block_on(async { call(&handle, "flood", &args) })
            }),
        ],
    );
}

/// A call through a handle beside the same call made directly on wasmtime,
/// one thread; then calls per second from one thread and from two, on
/// wasmtime (a store per thread) and through hotslot (one plugin with one
/// instance, and with two).
fn calls(registry: &Registry) {
    let engine = registry.engine();
    let plugin = registry.load_bytes("calc.wasm", &bytes("calc")).unwrap();
    registry.add_plugin("calc1", &plugin).unwrap();
    let two = plugin.clone().with_grants(hotslot::Grants {
        instances: Some(2),
        ..hotslot::Grants::default()
    });
    registry.add_plugin("calc2", &two).unwrap();
    let handle = registry.implementation("demo:calc/math", "calc1").unwrap();
    let by_get = registry.get("demo:calc/math@1").unwrap();
    let (pre, add) = raw_calc(engine);
    let mut store = raw_store(engine);
    let instance = pre.instantiate(&mut store).unwrap();
    let direct = calc::Calculator::new(&mut store, &instance).unwrap();
    let dynamic = instance.get_func(&mut store, add).unwrap();
    let store = std::cell::RefCell::new(store);
    let typed = |h: &Handle| {
        black_box(
            h.call_typed(|c: &calc::Calculator, s| c.demo_calc_math().call_add(s, 40, 2))
                .unwrap(),
        );
    };
    // Each measured call, written once: for the interleaved rounds and for
    // `PROFILE_CALLS=direct|typed|dynamic|into|direct-dynamic|batch` (a
    // perf or callgrind target).
    let direct_add = |n: usize| {
        let mut store = store.borrow_mut();
        for _ in 0..n {
            black_box(
                direct
                    .demo_calc_math()
                    .call_add(&mut *store, 40, 2)
                    .unwrap(),
            );
        }
    };
    let batch_add = |n: usize| {
        handle
            .batch(|b| {
                for _ in 0..n {
                    black_box(
                        b.call_typed(|c: &calc::Calculator, s| {
                            c.demo_calc_math().call_add(s, 40, 2)
                        })
                        .unwrap(),
                    );
                }
            })
            .unwrap();
    };
    let args = [Val::S32(40), Val::S32(2)];
    let dynamic_add = || {
        black_box(handle.call("add", &args).unwrap());
    };
    let into_add = || {
        let mut results = [Val::S32(0)];
        handle.call_into("add", &args, &mut results).unwrap();
        black_box(&results);
    };
    let direct_dynamic_add = || {
        let mut store = store.borrow_mut();
        let mut results = [Val::S32(0)];
        dynamic.call(&mut *store, &args, &mut results).unwrap();
        black_box(&results);
    };
    if let Some(side) = std::env::var_os("PROFILE_CALLS") {
        let until = Instant::now() + std::time::Duration::from_secs(6);
        while Instant::now() < until {
            for _ in 0..1000 {
                match side.to_str() {
                    Some("direct") => direct_add(1),
                    Some("typed") => typed(&handle),
                    Some("dynamic") => dynamic_add(),
                    Some("into") => into_add(),
                    Some("direct-dynamic") => direct_dynamic_add(),
                    _ => batch_add(100),
                }
            }
        }
        return;
    }
    println!("  typed add (41 rounds x 20000 calls):");
    interleave(
        41,
        20_000,
        &mut [
            ("direct wasmtime", &mut || direct_add(1)),
            ("through a handle (implementation)", &mut || typed(&handle)),
            ("through a `get` handle", &mut || typed(&by_get)),
        ],
    );
    println!("  typed add, 100 per closure (41 rounds x 200):");
    interleave(
        41,
        200,
        &mut [
            ("direct wasmtime, 100 calls", &mut || direct_add(100)),
            ("one Handle::batch of 100 calls", &mut || batch_add(100)),
        ],
    );
    println!("  dynamic add (41 rounds x 20000 calls):");
    interleave(
        41,
        20_000,
        &mut [
            ("direct wasmtime Func::call", &mut || direct_dynamic_add()),
            ("Handle::call", &mut || dynamic_add()),
            ("Handle::call_into", &mut || into_add()),
        ],
    );

    // Calls per second from `threads` threads for `window`: each thread
    // makes calls with `call` until told to stop.
    let window = std::time::Duration::from_millis(100);
    let rate = |threads: usize, call: &(dyn Fn(usize) + Sync)| -> f64 {
        let stop = std::sync::atomic::AtomicBool::new(false);
        let total = std::sync::atomic::AtomicU64::new(0);
        let ready = std::sync::Barrier::new(threads + 1);
        let started = std::thread::scope(|scope| {
            for t in 0..threads {
                let (stop, total, ready) = (&stop, &total, &ready);
                scope.spawn(move || {
                    ready.wait();
                    let mut n = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        for _ in 0..100 {
                            call(t);
                        }
                        n += 100;
                    }
                    total.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                });
            }
            ready.wait();
            let started = Instant::now();
            std::thread::sleep(window);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            started
        });
        total.load(std::sync::atomic::Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
    };
    // wasmtime by hand: a store and an instance per thread.
    let raw: Vec<Mutex<(Store<Raw>, calc::Calculator)>> = (0..2)
        .map(|_| {
            let mut store = raw_store(engine);
            let instance = pre.instantiate(&mut store).unwrap();
            let bindings = calc::Calculator::new(&mut store, &instance).unwrap();
            Mutex::new((store, bindings))
        })
        .collect();
    let raw_call = |t: usize| {
        let mut guard = raw[t].lock().unwrap();
        let (store, bindings) = &mut *guard;
        black_box(bindings.demo_calc_math().call_add(store, 40, 2).unwrap());
    };
    let one = handle.clone();
    let both = registry.implementation("demo:calc/math", "calc2").unwrap();
    let one_call = |_t: usize| typed(&one);
    let both_call = |_t: usize| typed(&both);
    let sides: [(&str, &(dyn Fn(usize) + Sync)); 3] = [
        ("wasmtime, a store per thread", &raw_call),
        ("hotslot, plugin with 2 instances", &both_call),
        ("hotslot, plugin with 1 instance", &one_call),
    ];
    let mut scaling = vec![Vec::new(); sides.len()];
    let mut rates = vec![(Vec::new(), Vec::new()); sides.len()];
    // More callers than cores on one instance: what a waiter's spinning
    // costs the holder when they share a core.
    let mut crowded = Vec::new();
    for round in 0..21 {
        let order: Vec<usize> = if round % 2 == 0 {
            vec![0, 1, 2]
        } else {
            vec![2, 1, 0]
        };
        for i in order {
            let one_thread = rate(1, sides[i].1);
            let two_threads = rate(2, sides[i].1);
            scaling[i].push(two_threads / one_thread);
            rates[i].0.push(one_thread);
            rates[i].1.push(two_threads);
            if i == 2 {
                crowded.push(rate(4, sides[i].1) / one_thread);
            }
        }
    }
    println!("  calls per second, 1 thread and 2 threads (21 rounds x 100 ms each):");
    for (i, (name, _)) in sides.iter().enumerate() {
        let (s, s10, s90) = spread(scaling[i].clone());
        let (r1, _, _) = spread(rates[i].0.clone());
        let (r2, _, _) = spread(rates[i].1.clone());
        println!(
            "  {name:<36} 1 thread {:.2} M/s, 2 threads {:.2} M/s: x{s:.2} [{s10:.2} .. {s90:.2}]",
            r1 / 1e6,
            r2 / 1e6
        );
    }
    let (r, r10, r90) = ratio_spread(&scaling[1], &scaling[0]);
    println!("  hotslot (2 instances) scaling / wasmtime's: {r:.2} [{r10:.2} .. {r90:.2}]");
    let (c, c10, c90) = spread(crowded);
    println!("  hotslot, plugin with 1 instance, 4 threads / 1: x{c:.2} [{c10:.2} .. {c90:.2}]");
}

/// Loading code compiled before, from disk, in a process that has not
/// loaded it yet: hotslot's `load_file` (a registry made for the round, so
/// its in-memory cache misses; its code cache in a temporary
/// `XDG_CACHE_HOME`) beside wasmtime mapping the same file with
/// `Component::deserialize_file` and making an `InstancePre` of it.
fn loads() {
    let hex = |hash: &[u8; 32]| hash.iter().map(|b| format!("{b:02x}")).collect::<String>();
    use hotslot::engine::{build, EngineOptions};
    let cache = tempfile::tempdir().unwrap();
    // Set before any load reads it; nothing else in this bench reads it.
    std::env::set_var("XDG_CACHE_HOME", cache.path());
    let engine = build(&EngineOptions {
        disk_cache: true,
        ..EngineOptions::default()
    })
    .unwrap();
    for (stem, rounds) in [("calc", 41), ("greeter_py", 11)] {
        let path = fixture(stem);
        // Compiled once and kept; this plugin also keeps alive the engine
        // a big one runs on (a twin of `engine`), as a running host would.
        let first = Registry::with_engine(engine.clone(), hotslot::Limits::default()).unwrap();
        let kept = first.load_file(&path).unwrap();
        let runs_on = kept.component().engine().clone();
        let mut linker = Linker::<Raw>::new(&runs_on);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
        let name = format!("{}-", hex(kept.content_hash()));
        let code: Vec<PathBuf> = std::fs::read_dir(cache.path().join("hotslot/code"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(&name))
            .collect();
        let [code] = &code[..] else {
            panic!("one file of code kept for {stem}: {code:?}")
        };
        // What the plugin imports beyond WASI (hotslot's own interfaces)
        // links to traps on this side: linking is what is timed, not calls.
        // SAFETY: as below.
        let component = unsafe { Component::deserialize_file(&runs_on, code) }.unwrap();
        linker.define_unknown_imports_as_traps(&component).unwrap();
        let (mut ours, mut raw) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let registry =
                Registry::with_engine(engine.clone(), hotslot::Limits::default()).unwrap();
            let mut hotslot_side = || {
                let started = Instant::now();
                black_box(registry.load_file(&path).unwrap());
                ours.push(started.elapsed().as_secs_f64() * 1e3);
            };
            let mut wasmtime_side = || {
                let started = Instant::now();
                // SAFETY: the file is what hotslot kept for the engine
                // the plugin runs on (and wasmtime checks its header).
                let component = unsafe { Component::deserialize_file(&runs_on, code) }.unwrap();
                black_box(linker.instantiate_pre(&component).unwrap());
                raw.push(started.elapsed().as_secs_f64() * 1e3);
            };
            if round % 2 == 0 {
                hotslot_side();
                wasmtime_side();
            } else {
                wasmtime_side();
                hotslot_side();
            }
        }
        let (h, h10, h90) = spread(ours.clone());
        let (w, w10, w90) = spread(raw.clone());
        let (r, r10, r90) = ratio_spread(&ours, &raw);
        println!(
            "  {stem:<11} code kept on disk, loaded ({rounds} rounds): wasmtime {w:.2} ms [{w10:.2} .. {w90:.2}], \
             hotslot load_file {h:.2} ms [{h10:.2} .. {h90:.2}]: {r:.2}x [{r10:.2} .. {r90:.2}]"
        );
    }
}

/// A two-worker tokio runtime, as in the async test.
fn two_workers() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

/// The process's threads now.
fn threads() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("Threads:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// An async call as it was made before the queue: a blocking-pool task
/// per call.
async fn one_task_per_call(
    handle: &Handle,
    function: &str,
    args: &[Val],
) -> Result<Vec<Val>, hotslot::Error> {
    let (handle, function, args) = (handle.clone(), function.to_string(), args.to_vec());
    tokio::task::spawn_blocking(move || handle.call(&function, &args))
        .await
        .unwrap()
}

/// `Handle::call_async` (a queue per plugin, worked by as many pool tasks
/// as it has instances) beside a pool task per call (what it did before)
/// and a synchronous call: one at a time, 1,000 at once, and 1,000 at once
/// with half of them spinning to their deadline while a timer ticks.
fn async_calls(registry: &Registry) {
    let plugin = registry.load_bytes("calc.wasm", &bytes("calc")).unwrap();
    registry.add_plugin("calc_async", &plugin).unwrap();
    let calc = registry
        .implementation("demo:calc/math", "calc_async")
        .unwrap();
    let add = [Val::S32(40), Val::S32(2)];
    let runtime = two_workers();
    let per_call_of = |calls: u32, queued: bool| {
        runtime.block_on(async {
            let started = Instant::now();
            for _ in 0..calls {
                let answer = match queued {
                    true => calc.call_async("add", &add).await,
                    false => one_task_per_call(&calc, "add", &add).await,
                };
                black_box(answer.unwrap());
            }
            started.elapsed().as_nanos() as f64 / f64::from(calls)
        })
    };
    println!("async: a dynamic add, one call at a time from a task (41 rounds x 2000 calls):");
    let (mut sync, mut queued, mut tasks) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..41 {
        let mut sides: [&mut dyn FnMut(); 3] = [
            &mut || sync.push(per_call(2000, &mut || call(&calc, "add", &add))),
            &mut || queued.push(per_call_of(2000, true)),
            &mut || tasks.push(per_call_of(2000, false)),
        ];
        if round % 2 == 1 {
            sides.reverse();
        }
        sides.iter_mut().for_each(|side| side());
    }
    for (name, times) in [
        ("synchronous call on this thread", &sync),
        ("call_async (the queue)", &queued),
        ("a pool task per call (before)", &tasks),
    ] {
        let (median, p10, p90) = spread(times.clone());
        let (r, r10, r90) = ratio_spread(times, &tasks);
        println!(
            "  {name:<44} {median:>10.1} ns  [{p10:.1} .. {p90:.1}]   /before {r:.3} [{r10:.3} .. {r90:.3}]"
        );
    }
    drop(runtime);
    many_at_once(registry);
    timer_under_spinning_calls(registry);
}

/// 1,000 calls at once to a greeter with one instance and with two: how
/// long until all are answered, and how many threads the process has then.
fn many_at_once(registry: &Registry) {
    let plugin = registry
        .load_bytes("greeter_a.wasm", &bytes("greeter_a"))
        .unwrap();
    let two = plugin.clone().with_grants(hotslot::Grants {
        instances: Some(2),
        ..hotslot::Grants::default()
    });
    registry.add_plugin("greeter_async1", &plugin).unwrap();
    registry.add_plugin("greeter_async2", &two).unwrap();
    let args = [Val::String("x".into())];
    for name in ["greeter_async1", "greeter_async2"] {
        let greeter = registry.implementation("demo:greeter/greet", name).unwrap();
        let (mut queued, mut tasks) = (Vec::new(), Vec::new());
        let (mut queued_threads, mut task_threads) = (0, 0);
        for round in 0..21 {
            for queue in [round % 2 == 0, round % 2 == 1] {
                // A fresh runtime each time: the pool's threads of one
                // side must neither serve the other nor be counted for it.
                let before = threads();
                let runtime = two_workers();
                let took = runtime.block_on(async {
                    let started = Instant::now();
                    let calls: Vec<_> = (0..1000)
                        .map(|_| {
                            let (greeter, args) = (greeter.clone(), args.clone());
                            tokio::spawn(async move {
                                match queue {
                                    true => greeter.call_async("hello", &args).await,
                                    false => one_task_per_call(&greeter, "hello", &args).await,
                                }
                            })
                        })
                        .collect();
                    for call in calls {
                        call.await.unwrap().unwrap();
                    }
                    started.elapsed().as_secs_f64() * 1e3
                });
                // The pool's threads are still there (idle for 10 s before
                // they end): the most it had at once. The workers are not
                // counted.
                let added = threads().saturating_sub(before + 2);
                // Waits for the pool's threads to end.
                drop(runtime);
                match queue {
                    true => (
                        queued.push(took),
                        queued_threads = queued_threads.max(added),
                    ),
                    false => (tasks.push(took), task_threads = task_threads.max(added)),
                };
            }
        }
        let instances = &name[name.len() - 1..];
        println!("async: 1,000 hello calls at once, {instances} instance(s), 21 rounds (all answered, ms):");
        let (q, q10, q90) = spread(queued.clone());
        let (t, t10, t90) = spread(tasks.clone());
        let (r, r10, r90) = ratio_spread(&queued, &tasks);
        println!(
            "  call_async (the queue) {q:.1} [{q10:.1} .. {q90:.1}], {queued_threads} threads; \
             a pool task per call {t:.1} [{t10:.1} .. {t90:.1}], {task_threads} threads; \
             queue/before {r:.3} [{r10:.3} .. {r90:.3}]"
        );
    }
}

/// The async test's scenario: 1,000 calls at once on two workers, half to a
/// plugin (two instances) spinning until its 200 ms deadline, half to a
/// greeter, while a 10 ms timer ticks on the same runtime: its worst
/// lateness, beside a plain thread's sleeping meanwhile.
fn timer_under_spinning_calls(registry: &Registry) {
    let rogue = registry.load_bytes("rogue.wasm", &bytes("rogue")).unwrap();
    let grants = hotslot::Grants {
        instances: Some(2),
        ..hotslot::Grants::default()
    };
    let limits = hotslot::Limits {
        timeout: std::time::Duration::from_millis(200),
        ..hotslot::Limits::default()
    };
    let spinning = Registry::with_engine(registry.engine().clone(), limits).unwrap();
    let rogue = rogue.with_grants(grants);
    spinning
        .add_implementation("demo:rogue/misbehave@0.1.0", "rogue", &rogue)
        .unwrap();
    let greeter = spinning
        .load_bytes("greeter_a.wasm", &bytes("greeter_a"))
        .unwrap();
    spinning.add_plugin("greeter", &greeter).unwrap();
    let rogue = spinning
        .first_implementation("demo:rogue/misbehave@0.1.0")
        .unwrap();
    let greeter = spinning
        .implementation("demo:greeter/greet", "greeter")
        .unwrap();
    let (mut queued, mut tasks, mut plain) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..11 {
        for queue in [round % 2 == 0, round % 2 == 1] {
            let runtime = two_workers();
            let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let sleeper = {
                let done = done.clone();
                std::thread::spawn(move || worst_lateness(&done, || std::thread::sleep(TICK)))
            };
            let worst = runtime.block_on(async {
                let ticker = {
                    let done = done.clone();
                    tokio::spawn(async move {
                        let mut worst = std::time::Duration::ZERO;
                        while !done.load(std::sync::atomic::Ordering::SeqCst) {
                            let asked = Instant::now();
                            tokio::time::sleep(TICK).await;
                            worst = worst.max(asked.elapsed().saturating_sub(TICK));
                        }
                        worst
                    })
                };
                let calls: Vec<_> = (0..1000)
                    .map(|i| {
                        let (rogue, greeter) = (rogue.clone(), greeter.clone());
                        tokio::spawn(async move {
                            let (handle, function, args) = match i % 2 {
                                0 => (rogue, "spin", vec![]),
                                _ => (greeter, "hello", vec![Val::String("x".into())]),
                            };
                            match queue {
                                true => handle.call_async(function, &args).await,
                                false => one_task_per_call(&handle, function, &args).await,
                            }
                        })
                    })
                    .collect();
                for call in calls {
                    let _ = call.await.unwrap();
                }
                done.store(true, std::sync::atomic::Ordering::SeqCst);
                ticker.await.unwrap()
            });
            plain.push(sleeper.join().unwrap().as_secs_f64() * 1e3);
            runtime.shutdown_background();
            let worst = worst.as_secs_f64() * 1e3;
            match queue {
                true => queued.push(worst),
                false => tasks.push(worst),
            }
        }
    }
    println!("async: worst lateness of a 10 ms timer under 1,000 calls, half spinning (11 rounds each, ms):");
    for (name, values) in [
        ("call_async (the queue)", queued),
        ("a pool task per call (before)", tasks),
        ("a plain thread's sleep, meanwhile", plain),
    ] {
        let (median, p10, p90) = spread(values);
        println!("  {name:<44} {median:>8.1} [{p10:.1} .. {p90:.1}]");
    }
}

const TICK: std::time::Duration = std::time::Duration::from_millis(10);

/// The worst lateness of `sleep` (meant to take [`TICK`]) until `done`.
fn worst_lateness(done: &std::sync::atomic::AtomicBool, sleep: impl Fn()) -> std::time::Duration {
    let mut worst = std::time::Duration::ZERO;
    while !done.load(std::sync::atomic::Ordering::SeqCst) {
        let asked = Instant::now();
        sleep();
        worst = worst.max(asked.elapsed().saturating_sub(TICK));
    }
    worst
}

fn main() {
    // Criterion's flags are accepted and ignored: this bench times itself.
    if std::env::args().any(|a| a == "loads") {
        loads();
        return;
    }
    let registry = Registry::new().unwrap();
    let started = Instant::now();
    if std::env::args().any(|a| a == "metrics") {
        metrics_cost(registry.engine());
        return;
    }
    if std::env::args().any(|a| a == "compilers") {
        compilers();
        return;
    }
    if std::env::args().any(|a| a == "calls") {
        calls(&registry);
        return;
    }
    if std::env::args().any(|a| a == "swaps") {
        swaps(&registry);
        return;
    }
    if std::env::args().any(|a| a == "async") {
        async_calls(&registry);
        return;
    }
    if std::env::args().any(|a| a == "forwarding") {
        forwarding(&registry);
        return;
    }
    if std::env::args().any(|a| a == "prints") {
        prints(&registry);
        return;
    }
    calls(&registry);
    metrics_cost(registry.engine());
    state_costs(&registry);
    migration(&registry);
    forwarding(&registry);
    swaps(&registry);
    async_calls(&registry);
    prints(&registry);
    compilers();
    big_guests();
    loads();
    println!("({:.0} s)", started.elapsed().as_secs_f64());
}
