//! `watch --http ADDR`: a live page of the host. `/` is the page, `/data`
//! what it shows as JSON (every plugin, its interfaces, generation and
//! compiler, calls and latency, its imports, and the last loads, reloads
//! and rejections with their reasons), and `/events` the same, pushed as
//! server-sent events whenever the watcher does something, and every
//! second.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::serve::{Held, Request};
use crate::registry::Registry;
use crate::sync::lock;
use crate::watch::WatchEvent;

/// How many of the watcher's events the page keeps.
const KEPT: usize = 30;

/// The most event streams served at once: each holds a connection for as
/// long as its client stays, and the page and its data need some too.
const STREAMS: usize = 16;

/// What the page shows besides the registry: the watcher's last events.
struct Journal {
    events: Mutex<(u64, VecDeque<Value>)>,
    changed: Condvar,
    /// Event streams being served.
    streams: Arc<AtomicUsize>,
}

/// Serves the page at http://ADDR/ on threads of its own, for as long as the
/// host runs, following the watcher's events from `events`.
pub(crate) fn serve(
    registry: Arc<Registry>,
    events: Receiver<WatchEvent>,
    addr: &str,
) -> Result<(), String> {
    let journal = Arc::new(Journal {
        events: Mutex::new((0, VecDeque::new())),
        changed: Condvar::new(),
        streams: Arc::new(AtomicUsize::new(0)),
    });
    let keeper = journal.clone();
    std::thread::Builder::new()
        .name("hotslot-page-events".into())
        .spawn(move || {
            for event in events {
                let mut kept = lock(&keeper.events);
                kept.0 += 1;
                kept.1.push_back(describe(&event));
                while kept.1.len() > KEPT {
                    kept.1.pop_front();
                }
                keeper.changed.notify_all();
            }
        })
        .map_err(|e| e.to_string())?;
    let bound = super::serve::serve(addr, "page", move |request| {
        answer(request, &registry, &journal)
    })
    .map_err(|e| format!("cannot serve the page on {addr}: {e}"))?;
    super::tell(format_args!("hotslot: page on http://{bound}/"));
    Ok(())
}

/// Answers one request for the page, its data, or its event stream.
fn answer(request: Request, registry: &Registry, journal: &Journal) {
    match request.path() {
        "/" => request.respond(200, "text/html; charset=utf-8", PAGE),
        "/data" => {
            let data = snapshot(registry, journal).to_string();
            request.respond(200, "application/json", &data);
        }
        "/events" => stream(request, registry, journal),
        _ => request.respond(404, "text/plain", "not found\n"),
    }
}

/// Server-sent events: a snapshot now, then after every watcher event (and
/// at least every second), until the client goes.
fn stream(request: Request, registry: &Registry, journal: &Journal) {
    if journal.streams.load(Ordering::Relaxed) >= STREAMS {
        let busy = "too many event streams at once: try again later\n";
        request.respond(503, "text/plain", busy);
        return;
    }
    let _held = Held::take(&journal.streams);
    let Some(mut out) = request.into_stream("text/event-stream") else {
        return;
    };
    let mut seen = lock(&journal.events).0;
    loop {
        let data = snapshot(registry, journal).to_string();
        if write!(out, "data: {data}\n\n")
            .and_then(|()| out.flush())
            .is_err()
        {
            return;
        }
        let kept = lock(&journal.events);
        let (kept, _) = journal
            .changed
            .wait_timeout_while(kept, Duration::from_secs(1), |kept| kept.0 == seen)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        seen = kept.0;
    }
}

/// Everything the page shows, as JSON.
fn snapshot(registry: &Registry, journal: &Journal) -> Value {
    let micros = |d: Option<Duration>| d.map(|d| (d.as_secs_f64() * 1e6 * 10.0).round() / 10.0);
    // Keyed once by plugin and interface: each row below finds its own
    // in one step, however many plugins there are.
    let listed: HashMap<_, _> = registry
        .list_with_plugins()
        .into_iter()
        .map(|(i, plugin)| ((i.name.clone(), i.interface.clone()), (i, plugin)))
        .collect();
    let plugins: Vec<Value> = registry
        .metrics()
        .into_iter()
        .map(|m| {
            let row = listed.get(&(m.plugin.clone(), m.interface.clone()));
            let imports: Vec<Value> = row
                .map(|(i, _)| {
                    i.imports
                        .iter()
                        .map(|link| {
                            json!({
                                "interface": link.interface.to_string(),
                                "provider": crate::cli::session::provider_of(link),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            let compiler = row.map(|(_, plugin)| plugin.compiler().to_string());
            json!({
                "interface": m.interface.to_string(),
                "plugin": m.plugin,
                "generation": m.generation,
                "compiler": compiler,
                "calls": m.calls,
                "failed": m.failed_calls(),
                "p50_us": micros(m.latency_p50),
                "p99_us": micros(m.latency_p99),
                "reloads": m.reloads,
                "rejected": m.rejected_reloads,
                "instances": m.instances,
                "memory_kib": m.memory_bytes / 1024,
                "state_bytes": m.state_bytes,
                "imports": imports,
            })
        })
        .collect();
    let events: Vec<Value> = lock(&journal.events).1.iter().rev().cloned().collect();
    json!({ "plugins": plugins, "events": events })
}

/// A watcher event, as the page lists it.
fn describe(event: &WatchEvent) -> Value {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (kind, file, detail) = match event {
        WatchEvent::Loaded {
            file, interfaces, ..
        } => ("loaded", file, generation_of(interfaces)),
        WatchEvent::Reloaded {
            file, interfaces, ..
        } => ("reloaded", file, generation_of(interfaces)),
        WatchEvent::Removed { file, .. } => ("removed", file, String::new()),
        WatchEvent::Rejected { file, reason } => ("rejected", file, reason.clone()),
    };
    json!({ "at": at, "kind": kind, "file": file.display().to_string(), "detail": detail })
}

fn generation_of(interfaces: &[(crate::InterfaceName, u64)]) -> String {
    interfaces
        .first()
        .map(|(_, g)| format!("generation {g}"))
        .unwrap_or_default()
}

/// The page: a table of plugins and a list of events, redrawn on each event.
const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>hotslot</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
  h1 { font-size: 1.3em; } h2 { font-size: 1.05em; margin-top: 1.5em; }
  table { border-collapse: collapse; }
  th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #ddd; text-align: left; }
  td.n { text-align: right; font-variant-numeric: tabular-nums; }
  .rejected { color: #a00; } .reloaded { color: #060; } .loaded { color: #036; }
  #status { color: #888; }
</style>
</head>
<body>
<h1>hotslot <span id="status">connecting…</span></h1>
<h2>Plugins</h2>
<table>
  <thead><tr><th>interface</th><th>plugin</th><th>gen</th><th>calls</th><th>failed</th>
  <th>p50 µs</th><th>p99 µs</th><th>reloads</th><th>rejected</th><th>inst</th><th>imports</th></tr></thead>
  <tbody id="plugins"></tbody>
</table>
<h2>Last loads, reloads and rejections</h2>
<ul id="events"></ul>
<script>
function cell(text, numeric) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "-" : String(text);
  if (numeric) td.className = "n";
  return td;
}
function draw(data) {
  const rows = document.getElementById("plugins");
  rows.replaceChildren(...data.plugins.map(p => {
    const tr = document.createElement("tr");
    tr.append(cell(p.interface), cell(p.plugin), cell(p.generation, true), cell(p.calls, true),
      cell(p.failed, true), cell(p.p50_us, true), cell(p.p99_us, true), cell(p.reloads, true),
      cell(p.rejected, true), cell(p.instances, true),
      cell(p.imports.map(i => i.interface + " <- " + i.provider).join(", ")));
    return tr;
  }));
  const list = document.getElementById("events");
  list.replaceChildren(...data.events.map(e => {
    const li = document.createElement("li");
    li.className = e.kind;
    li.textContent = new Date(e.at * 1000).toLocaleTimeString() + " " + e.kind + " " + e.file +
      (e.detail ? ": " + e.detail : "");
    return li;
  }));
}
const source = new EventSource("/events");
source.onopen = () => { document.getElementById("status").textContent = "live"; };
source.onerror = () => { document.getElementById("status").textContent = "disconnected"; };
source.onmessage = (message) => draw(JSON.parse(message.data));
</script>
</body>
</html>
"#;
