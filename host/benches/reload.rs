//! Time from a component file being replaced to the first call that answers
//! from the new component, through the watcher, for a compile-cache hit and
//! for bytes never seen before. The split (notify + quiet period, compile,
//! swap) comes from the watcher's own event timings and is printed at the end.
//!
//! Run with `make bench`; figures are reported in BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use hotslot::wasmtime::component::Val;
use hotslot::{Handle, Registry, WatchEvent, Watcher};

fn plugin_bytes(stem: &str) -> Vec<u8> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../target/fixtures/{stem}.wasm"));
    std::fs::read(path).expect("run `make plugins` first")
}

/// `bytes` with a custom section appended: a different hash, the same code.
fn with_custom_section(bytes: &[u8], n: u64) -> Vec<u8> {
    let name = b"hotslot-bench";
    let payload = n.to_le_bytes();
    let mut out = bytes.to_vec();
    out.push(0); // custom section id
    out.push((1 + name.len() + payload.len()) as u8); // section size, < 128
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&payload);
    out
}

/// Writes `bytes` beside the file, then renames them over it; returns the
/// moment just before the rename, when the new content is complete.
fn replace_atomically(dir: &Path, bytes: &[u8]) -> Instant {
    let tmp = dir.join(".g.partial");
    std::fs::write(&tmp, bytes).unwrap();
    let written = Instant::now();
    std::fs::rename(&tmp, dir.join("g.wasm")).unwrap();
    written
}

fn answer(handle: &Handle) -> String {
    match handle.call("hello", &[Val::String("x".into())]) {
        Ok(v) => format!("{v:?}"),
        Err(e) => e.to_string(),
    }
}

/// Replaces the file, then calls until the answer changes; returns the time
/// from the rename to that answer, and the watcher's timings for the load.
fn one_reload(
    dir: &Path,
    handle: &Handle,
    events: &Receiver<WatchEvent>,
    bytes: &[u8],
) -> (Duration, Duration, hotslot::LoadTimings) {
    let before = answer(handle);
    let written = replace_atomically(dir, bytes);
    let deadline = written + Duration::from_secs(30);
    while answer(handle) == before {
        assert!(Instant::now() < deadline, "no reload within 30 s");
    }
    let latency = written.elapsed();
    loop {
        match events
            .recv_timeout(Duration::from_secs(30))
            .expect("reload event")
        {
            WatchEvent::Reloaded { timings, .. } => {
                return (
                    latency,
                    timings.started.saturating_duration_since(written),
                    timings,
                )
            }
            WatchEvent::Rejected { reason, .. } => panic!("rejected: {reason}"),
            _ => {}
        }
    }
}

/// One reload, timed.
struct Sample {
    kind: &'static str,
    latency: Duration,
    notice: Duration,
    compile: Duration,
    swap: Duration,
}

fn bench_reload(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().canonicalize().unwrap();
    let (a, b) = (plugin_bytes("greeter_a"), plugin_bytes("greeter_b"));
    std::fs::write(dir_path.join("g.wasm"), &a).unwrap();
    let registry = Arc::new(Registry::new().unwrap());
    let mut watcher = Watcher::new(registry.clone(), &dir_path);
    let events = watcher.subscribe();
    watcher.start().unwrap();
    let handle = registry
        .first_implementation("demo:greeter/greet@1")
        .unwrap();

    let mut splits: Vec<Sample> = Vec::new();
    let mut group = c.benchmark_group("reload");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(10));
    let mut flip = 0u64;
    group.bench_function("cache_hit", |bench| {
        bench.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                flip += 1;
                let bytes = if flip.is_multiple_of(2) { &a } else { &b };
                let (latency, notice, t) = one_reload(&dir_path, &handle, &events, bytes);
                assert!(t.cached || flip <= 2);
                splits.push(Sample {
                    kind: "cache_hit",
                    latency,
                    notice,
                    compile: t.compile,
                    swap: t.swap,
                });
                total += latency;
            }
            total
        })
    });
    let mut fresh = 0u64;
    group.bench_function("compile", |bench| {
        bench.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                fresh += 1;
                let base = if fresh.is_multiple_of(2) { &a } else { &b };
                let bytes = with_custom_section(base, fresh);
                let (latency, notice, t) = one_reload(&dir_path, &handle, &events, &bytes);
                assert!(!t.cached);
                splits.push(Sample {
                    kind: "compile",
                    latency,
                    notice,
                    compile: t.compile,
                    swap: t.swap,
                });
                total += latency;
            }
            total
        })
    });
    group.finish();

    for kind in ["cache_hit", "compile"] {
        let rows: Vec<&Sample> = splits.iter().filter(|s| s.kind == kind).collect();
        if rows.is_empty() {
            continue;
        }
        let median = |field: fn(&Sample) -> Duration| {
            let mut values: Vec<Duration> = rows.iter().map(|r| field(r)).collect();
            values.sort();
            values[values.len() / 2]
        };
        println!(
            "reload/{kind}: {} samples, medians: write→answer {:?}, write→watcher starts {:?}, compile {:?}, swap {:?}",
            rows.len(),
            median(|s| s.latency),
            median(|s| s.notice),
            median(|s| s.compile),
            median(|s| s.swap),
        );
    }
}

criterion_group!(benches, bench_reload);
criterion_main!(benches);
