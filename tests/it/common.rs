//! Helpers shared by the integration tests.

use std::path::PathBuf;

use hotslot::wasmtime::component::Val;
use hotslot::{Handle, Plugin, Registry};

/// The path of a test plugin built by `make fixtures`.
pub fn plugin_path(stem: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/fixtures")
        .join(format!("{stem}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `make fixtures` (or `make test`) first",
        path.display()
    );
    path
}

/// A WIT package directory `dir` holding `file` with `text`, and
/// hotslot:plugin (the repository's) in its `deps/`.
pub fn wit_package(dir: &std::path::Path, file: &str, text: &str) -> PathBuf {
    let deps = dir.join("deps/hotslot-plugin");
    std::fs::create_dir_all(&deps).unwrap();
    let contract =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../wit/hotslot-plugin/plugin.wit");
    std::fs::copy(contract, deps.join("plugin.wit")).unwrap();
    std::fs::write(dir.join(file), text).unwrap();
    dir.to_path_buf()
}

/// An engine like the registry's own whose instance pool holds only
/// `instances` component instances, for tests that fill it.
pub fn engine_with_pool(instances: u32) -> hotslot::wasmtime::Engine {
    use hotslot::engine::{build, EngineOptions};
    build(&EngineOptions {
        pool_instances: instances,
        ..EngineOptions::default()
    })
    .unwrap()
}

/// A test plugin built by `make fixtures`, loaded into `registry` with no
/// grants.
pub fn plugin(registry: &Registry, stem: &str) -> Plugin {
    let path = plugin_path(stem);
    let bytes = std::fs::read(&path).unwrap();
    registry
        .load_bytes(&path.display().to_string(), &bytes)
        .unwrap_or_else(|e| panic!("loading {stem}: {e}"))
}

/// The rogue plugin's interface.
pub const ROGUE: &str = "demo:rogue/misbehave@0.1.0";

/// A registry under `limits` serving the rogue plugin, granted `grants`,
/// and a handle to it.
pub fn rogue_with(limits: hotslot::Limits, grants: hotslot::Grants) -> (Registry, Handle) {
    let engine = hotslot::engine::shared_engine().unwrap();
    let registry = Registry::with_engine(engine, limits).unwrap();
    let rogue = plugin(&registry, "rogue").with_grants(grants);
    registry.add_implementation(ROGUE, "rogue", &rogue).unwrap();
    let handle = registry.first_implementation(ROGUE).unwrap();
    (registry, handle)
}

/// Calls `hello(name)` through a greeter handle.
pub fn hello(handle: &Handle, name: &str) -> Result<String, hotslot::Error> {
    match handle
        .call("hello", &[Val::String(name.into())])?
        .as_slice()
    {
        [Val::String(answer)] => Ok(answer.clone()),
        other => panic!("hello answered {other:?}"),
    }
}

pub const GREET: &str = "demo:greeter/greet@1.0.0";

/// A component, written in WAT, that exports `demo:probe/probe@VERSION` with
/// one function `version: func() -> u32` answering `answer`.
pub fn probe_component(version: &str, answer: u32) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(component
            (core module $m (func (export "v") (result i32) i32.const {answer}))
            (core instance $i (instantiate $m))
            (func $v (result u32) (canon lift (core func $i "v")))
            (instance $probe (export "version" (func $v)))
            (export "demo:probe/probe@{version}" (instance $probe))
        )"#
    ))
    .expect("probe WAT parses")
}

/// Calls a probe's `version` function.
pub fn probe_answer(handle: &Handle) -> Result<u32, hotslot::Error> {
    match handle.call("version", &[])?.as_slice() {
        [Val::U32(n)] => Ok(*n),
        other => panic!("version answered {other:?}"),
    }
}

/// `bytes` with a custom section named `name` holding `data` added: the
/// same code under another content hash.
pub fn with_custom_section(bytes: &[u8], name: &str, data: &[u8]) -> Vec<u8> {
    let mut payload = vec![u8::try_from(name.len()).expect("a short name")];
    payload.extend_from_slice(name.as_bytes());
    payload.extend_from_slice(data);
    let mut out = bytes.to_vec();
    out.push(0);
    // The section's size, LEB128.
    let mut left = payload.len();
    loop {
        let byte = (left & 0x7f) as u8;
        left >>= 7;
        if left == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(&payload);
    out
}

/// `bytes` as a rebuild that changed nothing but a build id would leave
/// them.
pub fn with_build_id(bytes: &[u8], id: &str) -> Vec<u8> {
    with_custom_section(bytes, "build-id", id.as_bytes())
}

/// The figures "reusing N of its M functions" of the last compile the
/// loader logged in `log` (`None` if it gave none).
pub fn last_reuse(log: &str) -> Option<(u64, u64)> {
    let line = log
        .lines()
        .rev()
        .find(|l| l.split_whitespace().nth(2) == Some("compiled"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "reusing")?;
    Some((words[at + 1].parse().ok()?, words[at + 4].parse().ok()?))
}

/// A component exporting `demo:greeter/greet@1.0.0` whose `hello` is of
/// other types than the WIT's (`func(n: u32) -> u32`): a provider that does
/// not fit a dependent.
pub fn greeter_of_other_types() -> Vec<u8> {
    wat::parse_str(
        r#"(component
            (core module $m (func (export "h") (param i32) (result i32) local.get 0))
            (core instance $i (instantiate $m))
            (func $h (param "n" u32) (result u32) (canon lift (core func $i "h")))
            (instance $g (export "hello" (func $h)))
            (export "demo:greeter/greet@1.0.0" (instance $g))
        )"#,
    )
    .unwrap()
}

/// A component exporting `demo:res/r@1.0.0`: `make` answers a resource of
/// its own (`thing`), `take` borrows one, `seven` answers 7.
pub fn resource_maker() -> Vec<u8> {
    wat::parse_str(
        r#"(component
          (core module $m
            (func (export "take") (param i32) (result i32) i32.const 9)
            (func (export "seven") (result i32) i32.const 7)
            (func (export "dtor") (param i32)))
          (core instance $i (instantiate $m))
          (type $r (resource (rep i32) (dtor (core func $i "dtor"))))
          (core func $rnew (canon resource.new $r))
          (core module $m2 (import "x" "rnew" (func $rnew (param i32) (result i32)))
            (func (export "make") (result i32) (call $rnew (i32.const 42))))
          (core instance $i2 (instantiate $m2 (with "x" (instance (export "rnew" (func $rnew))))))
          (func $make (result (own $r)) (canon lift (core func $i2 "make")))
          (func $take (param "x" (borrow $r)) (result u32) (canon lift (core func $i "take")))
          (func $seven (result u32) (canon lift (core func $i "seven")))
          (instance $api (export "thing" (type $r)) (export "make" (func $make))
            (export "take" (func $take)) (export "seven" (func $seven)))
          (export "demo:res/r@1.0.0" (instance $api)))"#,
    )
    .unwrap()
}

/// What running this binary's test `name` alone, in a process of its own,
/// wrote to its standard error (where the panic hook writes). Panics if
/// the test failed or did not run.
pub fn stderr_of_test(name: &str) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{name} failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{name} did not run:\n{stdout}");
    stderr
}
