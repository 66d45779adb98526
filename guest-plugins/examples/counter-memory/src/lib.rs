//! A count kept in the plugin's own memory and handed from the outgoing
//! version to the incoming one (`hotslot:plugin/migrate`). Setting
//! `COUNTER_FAIL_RESTORE` makes `restore` refuse (for tests).
wit_bindgen::generate!({
    path: ["../../../wit/hotslot-plugin", "../../../wit/counter"],
    world: "demo:counter/in-memory",
    generate_all,
});

use std::cell::RefCell;

use exports::hotslot::plugin::lifecycle::StartReason;

/// Everything this plugin remembers.
#[derive(Default)]
struct Memory {
    count: u64,
    starts: Vec<String>,
    pad: Vec<u8>,
}

thread_local! {
    static MEMORY: RefCell<Memory> = RefCell::default();
}

/// The snapshot: the count, the start reasons (one per line), a blank line,
/// then the padding.
fn encode(memory: &Memory) -> Vec<u8> {
    let mut bytes = memory.count.to_le_bytes().to_vec();
    for start in &memory.starts {
        bytes.extend_from_slice(start.as_bytes());
        bytes.push(b'\n');
    }
    bytes.push(b'\n');
    bytes.extend_from_slice(&memory.pad);
    bytes
}

fn decode(bytes: &[u8]) -> Result<Memory, String> {
    let (count, rest) = bytes.split_at_checked(8).ok_or("snapshot too short")?;
    let count = u64::from_le_bytes(count.try_into().map_err(|_| "bad count")?);
    let end = rest
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|at| at + 1)
        .or_else(|| rest.first().filter(|b| **b == b'\n').map(|_| 0))
        .ok_or("snapshot without its start list")?;
    let starts = String::from_utf8_lossy(&rest[..end])
        .split_terminator('\n')
        .map(String::from)
        .collect();
    let pad = rest[end + 1..].to_vec();
    Ok(Memory { count, starts, pad })
}

struct Counter;

impl exports::demo::counter::counter::Guest for Counter {
    fn increment() -> u64 {
        MEMORY.with_borrow_mut(|m| {
            m.count += 1;
            m.count
        })
    }

    fn get() -> u64 {
        MEMORY.with_borrow(|m| m.count)
    }

    fn crash() {
        panic!("counter: crashing on request");
    }

    fn starts() -> Vec<String> {
        MEMORY.with_borrow(|m| m.starts.clone())
    }

    fn pad(bytes: u32) -> Result<(), String> {
        MEMORY.with_borrow_mut(|m| m.pad.resize(m.pad.len() + bytes as usize, 0));
        Ok(())
    }
}

impl exports::hotslot::plugin::lifecycle::Guest for Counter {
    fn on_start(reason: StartReason) -> Result<(), String> {
        let reason = match reason {
            StartReason::Fresh => "fresh",
            StartReason::Reload => "reload",
            StartReason::Recover => "recover",
        };
        MEMORY.with_borrow_mut(|m| m.starts.push(reason.to_string()));
        Ok(())
    }
}

impl exports::hotslot::plugin::migrate::Guest for Counter {
    fn snapshot() -> Vec<u8> {
        MEMORY.with_borrow(encode)
    }

    fn restore(snapshot: Vec<u8>) -> Result<(), String> {
        if std::env::var("COUNTER_FAIL_RESTORE").is_ok() {
            return Err("counter: refusing the snapshot on request".into());
        }
        let memory = decode(&snapshot)?;
        MEMORY.with_borrow_mut(|m| *m = memory);
        Ok(())
    }
}

export!(Counter);
