//! Property tests over the two entry points untrusted input reaches: the
//! loader (any bytes) and the CLI's request line (any text). Neither may
//! panic, and each failure is an error that says what it is about.

use std::sync::OnceLock;

use hotslot::cli::answer;
use hotslot::{Error, Registry};
use proptest::prelude::*;

use crate::common::{plugin, plugin_path};

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let registry = Registry::new().unwrap();
        for (interface, stem) in [
            ("demo:text/filter@1.2.0", "filter_basic"),
            ("demo:calc/math@1.0.0", "calc"),
            ("demo:greeter/greet@1.0.0", "greeter_a"),
        ] {
            registry
                .add_implementation(interface, stem, &plugin(&registry, stem))
                .unwrap();
        }
        registry
    })
}

fn component() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| std::fs::read(plugin_path("greeter_a")).unwrap())
}

fn assert_load_error(result: Result<hotslot::Plugin, Error>) {
    match result {
        Ok(_) => {}
        Err(e @ (Error::NotAComponent { .. } | Error::Link { .. })) => {
            assert!(e.to_string().contains("fuzzed.wasm"), "{e}")
        }
        Err(other) => panic!("unexpected error kind: {other:?}"),
    }
}

/// Request lines built from the pieces a real one has, so most reach the
/// argument parser and the call rather than failing at the first character.
fn request_line() -> impl Strategy<Value = String> {
    let interface = prop_oneof![
        Just("demo:text/filter".to_string()),
        Just("demo:text/filter@1.2".to_string()),
        Just("demo:calc/math@1".to_string()),
        Just("demo:greeter/greet@1.0.0".to_string()),
        Just("demo:nope/x@9".to_string()),
        "[a-z:/@.0-9]{0,20}",
    ];
    let function = prop_oneof![
        Just("check".to_string()),
        Just("apply".to_string()),
        Just("stats".to_string()),
        Just("add".to_string()),
        Just("hello".to_string()),
        "[a-z-]{0,8}"
    ];
    let arg = prop_oneof![
        Just("\"text\"".to_string()),
        Just("{case-mode: upper, max-len: some(3), banned: [\"a\"], scope: {blank}}".to_string()),
        Just("[\"a\", \"b\"]".to_string()),
        any::<i32>().prop_map(|n| n.to_string()),
        "[ -~]{0,12}",
    ];
    (interface, function, prop::collection::vec(arg, 0..4))
        .prop_map(|(i, f, args)| format!("{i}#{f}({})", args.join(", ")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn loading_any_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        assert_load_error(registry().load_bytes("fuzzed.wasm", &bytes));
    }

    #[test]
    fn loading_a_damaged_component_never_panics(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = component().to_vec();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let keep = 8 + cut.index(bytes.len() - 8);
        bytes.truncate(keep);
        assert_load_error(registry().load_bytes("fuzzed.wasm", &bytes));
    }

    #[test]
    fn any_text_gets_one_line_back(line in "[ -~]{0,80}") {
        let lines = answer(registry(), &line);
        if line.trim().is_empty() {
            prop_assert!(lines.is_empty());
        } else if line.trim() != "list" {
            prop_assert_eq!(lines.len(), 1);
            prop_assert!(!lines[0].contains('\n'));
        }
    }

    #[test]
    fn request_shaped_lines_get_one_line_back(line in request_line()) {
        let lines = answer(registry(), &line);
        prop_assert_eq!(lines.len(), 1, "{:?}", lines);
        prop_assert!(!lines[0].contains('\n'));
    }
}
