//! A plugin that uses another plugin: `show` asks whichever plugin serves
//! `demo:greeter/greet` for a greeting (the host links the import through
//! its registry) and frames it. Its own count of calls lives in its memory.
wit_bindgen::generate!({
    path: ["../../../wit/greeter", "../../../wit/banner"],
    world: "demo:banner/framed",
    generate_all,
});

use std::sync::atomic::{AtomicU32, Ordering};

static SHOWN: AtomicU32 = AtomicU32::new(0);

struct Banner;

impl exports::demo::banner::banner::Guest for Banner {
    fn show(name: String) -> String {
        SHOWN.fetch_add(1, Ordering::Relaxed);
        let greeting = demo::greeter::greet::hello(&name);
        let rule = "*".repeat(greeting.chars().count() + 4);
        format!("{rule} | {greeting} | {rule}")
    }

    fn shown() -> u32 {
        SHOWN.load(Ordering::Relaxed)
    }
}

export!(Banner);
