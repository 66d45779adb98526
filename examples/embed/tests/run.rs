//! Runs the example application against a test plugin `make fixtures`
//! built: a typed call from a crate outside the hotslot package.

use std::path::Path;
use std::process::Command;

#[test]
fn the_example_makes_a_typed_call() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fixtures");
    assert!(
        fixtures.join("calc.wasm").exists(),
        "run `make fixtures` first"
    );
    // A directory of its own, holding just the plugin the example calls.
    let plugins = std::env::temp_dir().join(format!("hotslot-example-{}", std::process::id()));
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(fixtures.join("calc.wasm"), plugins.join("calc.wasm")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hotslot-example"))
        .arg(&plugins)
        .env("HOTSLOT_LOG", "warn")
        .output()
        .expect("the example runs");
    std::fs::remove_dir_all(&plugins).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("demo:calc/math#add(40, 2) = 42"),
        "{stdout}"
    );
}
