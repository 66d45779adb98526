//! A count kept by the host (`hotslot:plugin/state`): it survives reloads,
//! traps, and the file's removal and return, with nothing in the plugin's
//! memory. `on-start` records why each instance started; the environment
//! variable `COUNTER_REFUSE` names a start reason to refuse (for tests).
wit_bindgen::generate!({
    path: ["../../../wit/hotslot-plugin", "../../../wit/counter"],
    world: "demo:counter/stored",
    generate_all,
});

use exports::hotslot::plugin::lifecycle::StartReason;
use hotslot::plugin::state;

/// A number kept in the host's store under `key`.
fn load(key: &str) -> u64 {
    state::get(key)
        .and_then(|bytes| bytes.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

fn store(key: &str, value: &[u8]) {
    if let Err(e) = state::set(key, value) {
        panic!("cannot keep {key}: {e}");
    }
}

struct Counter;

impl exports::demo::counter::counter::Guest for Counter {
    fn increment() -> u64 {
        let count = load("count") + 1;
        store("count", &count.to_le_bytes());
        count
    }

    fn get() -> u64 {
        load("count")
    }

    fn crash() {
        panic!("counter: crashing on request");
    }

    fn starts() -> Vec<String> {
        let text = state::get("starts").unwrap_or_default();
        String::from_utf8_lossy(&text)
            .split_terminator('\n')
            .map(String::from)
            .collect()
    }

    fn pad(bytes: u32) -> Result<(), String> {
        let mut pad = state::get("pad").unwrap_or_default();
        pad.resize(pad.len() + bytes as usize, 0);
        state::set("pad", &pad)
    }
}

impl exports::hotslot::plugin::lifecycle::Guest for Counter {
    fn on_start(reason: StartReason) -> Result<(), String> {
        let reason = match reason {
            StartReason::Fresh => "fresh",
            StartReason::Reload => "reload",
            StartReason::Recover => "recover",
        };
        if std::env::var("COUNTER_REFUSE").as_deref() == Ok(reason) {
            return Err(format!("counter: refusing to start ({reason})"));
        }
        let mut starts = state::get("starts").unwrap_or_default();
        starts.extend_from_slice(reason.as_bytes());
        starts.push(b'\n');
        state::set("starts", &starts)
    }
}

export!(Counter);
