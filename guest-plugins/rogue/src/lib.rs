//! The misbehaving plugin: each function does one thing a sandbox must
//! survive.
wit_bindgen::generate!({ path: "../../wit/rogue", world: "rogue" });

use std::sync::atomic::{AtomicU32, Ordering};

static CALLS: AtomicU32 = AtomicU32::new(0);

struct Rogue;

impl exports::demo::rogue::misbehave::Guest for Rogue {
    fn ping() -> String {
        "pong".into()
    }

    fn trap() {
        panic!("rogue: trapping on request");
    }

    fn spin() {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }

    fn hog(mib: u32) -> u32 {
        let mut kept: Vec<Vec<u8>> = Vec::new();
        for _ in 0..mib {
            kept.push(vec![1u8; 1 << 20]);
        }
        std::hint::black_box(&kept);
        kept.len() as u32
    }

    fn recurse(depth: u64) -> u64 {
        if depth == 0 {
            return 0;
        }
        // black_box keeps the compiler from turning this into a loop.
        std::hint::black_box(Self::recurse(depth - 1)) + 1
    }

    fn flood(lines: u32, width: u32) {
        let line = "x".repeat(width as usize);
        for _ in 0..lines {
            println!("{line}");
            eprintln!("{line}");
        }
    }

    fn read_file(path: String) -> Result<String, String> {
        std::fs::read_to_string(&path).map_err(|e| e.to_string())
    }

    fn write_file(path: String, contents: String) -> Result<(), String> {
        std::fs::write(&path, contents).map_err(|e| e.to_string())
    }

    fn env(name: String) -> Option<String> {
        std::env::var(name).ok()
    }

    fn count() -> u32 {
        CALLS.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn open_many(path: String, times: u32) -> u32 {
        let mut open = Vec::new();
        for _ in 0..times {
            match std::fs::File::open(&path) {
                Ok(file) => open.push(file),
                Err(_) => break,
            }
        }
        open.len() as u32
    }
}

export!(Rogue);
