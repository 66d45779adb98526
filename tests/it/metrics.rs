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
    // A file of the name that does not load is refused too, as `watch`
    // counts it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rogue.wasm"), b"not a component").unwrap();
    assert!(registry.add_file(dir.path().join("rogue.wasm")).is_err());
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
    assert_eq!((rogue.reloads, rogue.rejected_reloads), (1, 2));
    assert_eq!(rogue.instances, 1, "the reloaded generation's one instance");
    assert!(rogue.memory_bytes > 0);
    let p50 = rogue.latency_p50.expect("sampled calls");
    assert!(p50 <= rogue.latency_p99.unwrap() && p50 <= rogue.latency_max.unwrap());
    let counter = all.iter().find(|m| m.plugin == "counter").unwrap();
    assert_eq!(counter.calls, 1);
    assert!(counter.state_bytes >= 8 + "count".len() as u64);
}

/// Calls refused before they reach the plugin (a function it lacks,
/// arguments that do not fit) are not counted as its calls: they were
/// counted, and never as failed, so a dashboard read them as answered.
#[test]
fn calls_refused_before_the_plugin_are_not_counted() {
    let registry = Registry::new().unwrap();
    registry
        .add_plugin("rogue", &plugin(&registry, "rogue"))
        .unwrap();
    let handle = registry
        .implementation("demo:rogue/misbehave", "rogue")
        .unwrap();
    handle.call("ping", &[]).unwrap();
    assert!(handle.call("nosuch", &[]).is_err());
    assert!(handle.call("ping", &[Val::U32(1)]).is_err());
    assert!(handle.call("hog", &[Val::String("x".into())]).is_err());
    assert!(handle.call("trap", &[]).is_err());

    let all = registry.metrics();
    let rogue = all.iter().find(|m| m.plugin == "rogue").unwrap();
    assert_eq!(rogue.calls, 2, "the ping and the trap");
    assert_eq!(rogue.failed_calls(), 1);
}

/// `watch --metrics`: a real HTTP client scrapes the Prometheus text over
/// loopback, and the counters match the calls made; `stats` says the same.
#[test]
fn a_scrape_of_watch_metrics_matches_the_calls_made() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::{Command, Stdio};
    use std::sync::mpsc::channel;
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        crate::common::plugin_path("greeter_a"),
        dir.path().join("g.wasm"),
    )
    .unwrap();
    std::fs::copy(
        crate::common::plugin_path("rogue"),
        dir.path().join("r.wasm"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hotslot"))
        .arg("watch")
        .arg(dir.path())
        .args(["--metrics", "127.0.0.1:0"])
        .env("HOTSLOT_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut announced = String::new();
    stderr.read_line(&mut announced).unwrap();
    let url = announced
        .trim()
        .strip_prefix("hotslot: metrics on ")
        .unwrap_or_else(|| panic!("{announced}"))
        .to_string();
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
    });
    let (sender, answers) = channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let mut stdin = child.stdin.take().unwrap();
    let mut ask = |line: &str| {
        writeln!(stdin, "{line}").unwrap();
        answers.recv_timeout(Duration::from_secs(30)).unwrap()
    };
    for _ in 0..3 {
        assert_eq!(ask(r#"demo:greeter/greet#hello("x")"#), r#""a: hello, x""#);
    }
    assert!(ask("demo:rogue/misbehave#trap()").starts_with("error:"));

    let text = ureq::get(&url)
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    let sample = |name: &str, labels: &str| -> f64 {
        let key = format!("{name}{{{labels}}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&key))
            .unwrap_or_else(|| panic!("no {key} in\n{text}"))
            .trim()
            .parse()
            .unwrap()
    };
    let greeter = r#"interface="demo:greeter/greet@1.0.0",plugin="g""#;
    let rogue = r#"interface="demo:rogue/misbehave@0.1.0",plugin="r""#;
    assert_eq!(sample("hotslot_calls_total", greeter), 3.0);
    assert_eq!(sample("hotslot_calls_total", rogue), 1.0);
    assert_eq!(
        sample(
            "hotslot_failed_calls_total",
            &format!(r#"{rogue},fault="trap""#)
        ),
        1.0
    );
    // Each fault by the word `stats` uses for it.
    for fault in ["timeout", "stack-overflow", "limit", "host"] {
        let labels = format!(r#"{rogue},fault="{fault}""#);
        assert_eq!(sample("hotslot_failed_calls_total", &labels), 0.0);
    }
    assert_eq!(sample("hotslot_instances", greeter), 1.0);
    assert!(
        text.contains("# TYPE hotslot_call_latency_seconds histogram"),
        "{text}"
    );
    // Latency is sampled: the first call (one in 64), and the first of each
    // epoch tick besides.
    let timed = sample(
        "hotslot_call_latency_seconds_bucket",
        &format!(r#"le="+Inf",{greeter}"#),
    );
    assert!((1.0..=3.0).contains(&timed), "{timed} timed in\n{text}");

    writeln!(stdin, "stats").unwrap();
    let line = answers.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(
        line.starts_with("demo:greeter/greet@1.0.0 g calls=3 failed=0"),
        "{line}"
    );
    drop(stdin);
    let _ = child.wait();
}

/// `watch --http`: the page is served, its data endpoint says what the
/// registry holds and what the watcher did, and the event stream pushes it.
#[test]
fn the_live_page_serves_its_data_and_streams_it() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        crate::common::plugin_path("greeter_a"),
        dir.path().join("g.wasm"),
    )
    .unwrap();
    std::fs::write(dir.path().join("bad.wasm"), b"not a component").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hotslot"))
        .arg("watch")
        .arg(dir.path())
        .args(["--http", "127.0.0.1:0"])
        .env("HOTSLOT_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut announced = String::new();
    stderr.read_line(&mut announced).unwrap();
    let base = announced
        .trim()
        .strip_prefix("hotslot: page on ")
        .unwrap_or_else(|| panic!("{announced}"))
        .to_string();
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
    });
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    writeln!(stdin, r#"demo:greeter/greet#hello("x")"#).unwrap();
    let mut answer = String::new();
    stdout.read_line(&mut answer).unwrap();
    assert_eq!(answer.trim(), r#""a: hello, x""#);

    let get = |path: &str| {
        ureq::get(&format!("{base}{path}"))
            .call()
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap()
    };
    assert!(get("").contains("<title>hotslot</title>"));
    // The page follows the watcher's events on a thread of its own: they
    // may reach it a moment after the plugin answers.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let data: serde_json::Value = loop {
        let data: serde_json::Value = serde_json::from_str(&get("data")).unwrap();
        let kinds: Vec<&str> = data["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["kind"].as_str())
            .collect();
        let both = kinds.contains(&"loaded") && kinds.contains(&"rejected");
        if both || std::time::Instant::now() > deadline {
            break data;
        }
        std::thread::yield_now();
    };
    let g = data["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["plugin"] == "g")
        .unwrap_or_else(|| panic!("{data}"));
    assert_eq!(g["interface"], "demo:greeter/greet@1.0.0");
    assert_eq!(g["calls"], 1);
    assert_eq!(g["compiler"], "cranelift");
    let events = data["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "rejected" && e["file"].as_str().unwrap().ends_with("bad.wasm")),
        "{data}"
    );
    assert!(events.iter().any(|e| e["kind"] == "loaded"), "{data}");

    // The stream pushes a snapshot at once, and another after a change.
    let response = ureq::get(&format!("{base}events")).call().unwrap();
    let mut reader = BufReader::new(response.into_body().into_reader());
    let mut next_event = || loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if let Some(data) = line.strip_prefix("data: ") {
            return serde_json::from_str::<serde_json::Value>(data).unwrap();
        }
    };
    assert_eq!(next_event()["plugins"][0]["plugin"], "g");
    // Compiled by Winch, as its manifest asks: the data says so.
    std::fs::write(
        dir.path().join("h.toml"),
        "[compile]\ncompiler = \"winch\"\n",
    )
    .unwrap();
    std::fs::copy(
        crate::common::plugin_path("greeter_b"),
        dir.path().join("h.wasm"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let event = next_event();
        let plugins = event["plugins"].as_array().unwrap();
        if let Some(h) = plugins.iter().find(|p| p["plugin"] == "h") {
            assert_eq!(h["compiler"], "winch", "{event}");
            break;
        }
        assert!(Instant::now() < deadline, "the new plugin never showed");
    }
    // A plugin that imports the greeter: its row names what it imports and
    // which plugin provides it.
    std::fs::copy(
        crate::common::plugin_path("banner"),
        dir.path().join("k.wasm"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let event = next_event();
        let plugins = event["plugins"].as_array().unwrap();
        if let Some(k) = plugins.iter().find(|p| p["plugin"] == "k") {
            let imports = k["imports"].as_array().unwrap();
            assert_eq!(imports.len(), 1, "{event}");
            assert_eq!(imports[0]["interface"], "demo:greeter/greet@1.0.0");
            let provider = imports[0]["provider"].as_str().unwrap();
            assert!(["g#1", "h#1"].contains(&provider), "{event}");
            assert_eq!(k["compiler"], "cranelift", "{event}");
            break;
        }
        assert!(Instant::now() < deadline, "the dependent never showed");
    }
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
}

/// A reload frees every idle instance of the old version at once, on each
/// lane a call ever used, not only the first.
#[test]
fn a_reload_frees_the_old_instances_of_every_lane() {
    let registry = Registry::new().unwrap();
    let two = plugin(&registry, "rogue").with_grants(hotslot::Grants {
        instances: Some(2),
        ..hotslot::Grants::default()
    });
    registry.add_plugin("rogue", &two).unwrap();
    let handle = registry
        .implementation("demo:rogue/misbehave", "rogue")
        .unwrap();
    // One call holds the first lane while another thread's call takes the
    // second: both lanes now have an instance.
    let (held, go) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
    std::thread::scope(|scope| {
        scope.spawn(|| {
            held.wait();
            handle.call("ping", &[]).unwrap();
            go.wait();
        });
        handle
            .batch(|calls| {
                calls.call("ping", &[]).unwrap();
                held.wait();
                go.wait();
            })
            .unwrap();
    });
    let instances = || {
        registry
            .metrics()
            .into_iter()
            .find(|m| m.plugin == "rogue")
            .unwrap()
            .instances
    };
    assert_eq!(instances(), 2);
    registry.add_plugin("rogue", &two).unwrap();
    assert_eq!(instances(), 1, "only the new version's first instance");
}
