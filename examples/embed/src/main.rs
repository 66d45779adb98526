//! An application that embeds hotslot: load a directory of plugins, keep it
//! loaded while files change, and call a plugin through typed bindings.
//!
//! ```sh
//! make plugins && cargo run -p hotslot-example -- plugins
//! ```

use std::sync::Arc;

use hotslot::{Registry, Watcher};

// Typed bindings for the `demo:calc` world, generated through hotslot's
// re-export of wasmtime: this crate needs no wasmtime dependency of its own.
mod calc {
    hotslot::bindgen!(Calculator, { path: "wit/calc", world: "calculator" });
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "plugins".into());

    // One registry per application; handles to its slots survive reloads.
    let registry = Arc::new(Registry::new()?);

    // The watcher loads every component in the directory now, and reloads
    // each one as its file changes, for as long as it lives.
    let mut watcher = Watcher::new(registry.clone(), &dir);
    watcher.start()?;

    // Ask for an interface, not a plugin: whichever serves it answers.
    let math = registry.get("demo:calc/math@1")?;
    let sum =
        math.call_typed(|c: &calc::Calculator, store| c.demo_calc_math().call_add(store, 40, 2))?;
    println!(
        "demo:calc/math#add(40, 2) = {sum} (from `{}`)",
        math.name().unwrap_or_default()
    );

    for implementation in registry.list() {
        println!(
            "{} {} {}",
            implementation.interface, implementation.name, implementation.generation
        );
    }
    Ok(())
}
