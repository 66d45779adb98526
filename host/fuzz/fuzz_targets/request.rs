//! Arbitrary request lines into the CLI's parser and answerer, against the
//! example plugins: one line back (or none for a blank line), never a panic.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn registry() -> &'static hotslot::Registry {
    static REGISTRY: OnceLock<hotslot::Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let registry = hotslot::Registry::new().expect("engine");
        let plugins = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/fixtures");
        for stem in ["filter_basic", "calc", "greeter_a"] {
            registry
                .add_file(plugins.join(format!("{stem}.wasm")))
                .expect("run `make plugins` first");
        }
        registry
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else { return };
    if line.contains('\n') {
        return; // the CLI reads lines: a newline never reaches it
    }
    let _ = hotslot::cli::CallRequest::parse(line);
    let answer = hotslot::cli::answer(registry(), line);
    if line.trim().is_empty() {
        assert!(answer.is_empty());
    } else if line.trim() != "list" {
        assert_eq!(answer.len(), 1, "{line:?} -> {answer:?}");
        assert!(!answer[0].contains('\n'));
    }
});
