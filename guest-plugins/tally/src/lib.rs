//! A plugin exporting two interfaces over one count in its memory: proof
//! that one instance serves both, and that they move together on a reload.
wit_bindgen::generate!({ path: "../../wit/tally", world: "tally" });

use std::sync::atomic::{AtomicU64, Ordering};

static COUNT: AtomicU64 = AtomicU64::new(0);

struct Tally;

impl exports::demo::tally::counter::Guest for Tally {
    fn add(n: u32) -> u64 {
        COUNT.fetch_add(u64::from(n), Ordering::Relaxed) + u64::from(n)
    }
}

impl exports::demo::tally::admin::Guest for Tally {
    fn total() -> u64 {
        COUNT.load(Ordering::Relaxed)
    }

    fn crash() {
        panic!("tally: crashing on request");
    }

    fn version() -> String {
        std::env::var("TALLY_VERSION").unwrap_or_else(|_| "v1".into())
    }
}

export!(Tally);
