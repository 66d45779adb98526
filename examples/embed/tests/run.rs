//! Runs the example application against the test plugins `make fixtures` built:
//! a typed call from a crate outside the hotslot package.

use std::path::Path;
use std::process::Command;

#[test]
fn the_example_makes_a_typed_call() {
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fixtures");
    assert!(
        plugins.join("calc.wasm").exists(),
        "run `make fixtures` first"
    );
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
