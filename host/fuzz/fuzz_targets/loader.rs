//! Arbitrary bytes into the loader: it must refuse or load, never panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn registry() -> &'static hotslot::Registry {
    static REGISTRY: OnceLock<hotslot::Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| hotslot::Registry::new().expect("engine"))
}

fuzz_target!(|bytes: &[u8]| {
    let registry = registry();
    if let Ok(plugin) = registry.load_bytes("fuzz.wasm", bytes) {
        // Whatever loads is also registered (and so instantiated), the way
        // every file is.
        let _ = registry.add_plugin("fuzz", &plugin);
    }
});
