//! Cranelift or Winch: `--compiler` on the command line, `[compile]
//! compiler` in a manifest, and plugins compiled by each calling each other.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hotslot::engine::Compiler;
use hotslot::wasmtime::component::Val;
use hotslot::{Error, Fault, Registry};

use crate::common::plugin_path;

/// A directory holding `stem.wasm` and, if given, `stem.toml`.
fn with_manifest(stem: &str, manifest: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(plugin_path(stem), dir.path().join(format!("{stem}.wasm"))).unwrap();
    if let Some(text) = manifest {
        std::fs::write(dir.path().join(format!("{stem}.toml")), text).unwrap();
    }
    dir
}

fn file(dir: &Path, stem: &str) -> std::path::PathBuf {
    dir.join(format!("{stem}.wasm"))
}

#[test]
fn a_manifest_chooses_winch_for_its_plugin_alone() {
    let registry = Registry::new().unwrap();
    let winch = with_manifest("calc", Some("[compile]\ncompiler = \"winch\"\n"));
    let plain = with_manifest("greeter_a", None);

    let calc = registry.load_file(file(winch.path(), "calc")).unwrap();
    assert_eq!(calc.compiler(), Compiler::Winch);
    let greeter = registry.load_file(file(plain.path(), "greeter_a")).unwrap();
    assert_eq!(greeter.compiler(), Compiler::Cranelift);

    adds_up(&registry, "calc", &calc);
}

/// `plugin`, added as `name`, serves `demo:calc/math` and adds.
fn adds_up(registry: &Registry, name: &str, plugin: &hotslot::Plugin) {
    registry.add_plugin(name, plugin).unwrap();
    let math = registry.implementation("demo:calc/math", name).unwrap();
    let answer = math.call("add", &[Val::S32(40), Val::S32(2)]).unwrap();
    assert_eq!(answer, [Val::S32(42)]);
}

#[test]
fn a_plugin_compiled_by_winch_imports_from_one_compiled_by_cranelift() {
    let registry = Registry::new().unwrap();
    let banner = with_manifest("banner", Some("[compile]\ncompiler = \"winch\"\n"));
    let greeter = with_manifest("greeter_a", None);
    registry
        .add_file(file(greeter.path(), "greeter_a"))
        .unwrap();
    let dependent = registry.load_file(file(banner.path(), "banner")).unwrap();
    assert_eq!(dependent.compiler(), Compiler::Winch);
    registry.add_plugin("banner", &dependent).unwrap();
    let show = registry
        .implementation("demo:banner/banner", "banner")
        .unwrap();
    let answer = show.call("show", &[Val::String("x".into())]).unwrap();
    match answer.as_slice() {
        [Val::String(text)] => assert!(text.contains("a: hello, x"), "{text}"),
        other => panic!("show answered {other:?}"),
    }
}

#[test]
fn an_endless_loop_compiled_by_winch_is_stopped_at_its_deadline() {
    let registry = Registry::new().unwrap();
    let timeout = Duration::from_millis(200);
    let manifest = format!(
        "[compile]\ncompiler = \"winch\"\n[limits]\ntimeout-ms = {}\n",
        timeout.as_millis()
    );
    let dir = with_manifest("rogue", Some(&manifest));
    let rogue = registry.load_file(file(dir.path(), "rogue")).unwrap();
    assert_eq!(rogue.compiler(), Compiler::Winch);
    registry.add_plugin("rogue", &rogue).unwrap();
    let handle = registry
        .implementation("demo:rogue/misbehave", "rogue")
        .unwrap();
    let started = Instant::now();
    match handle.call("spin", &[]) {
        Err(Error::Call { fault, .. }) => assert_eq!(fault, Fault::Timeout),
        other => panic!("expected a deadline, got {other:?}"),
    }
    assert!(started.elapsed() < 2 * timeout, "{:?}", started.elapsed());
}

#[test]
fn an_unknown_compiler_is_refused_naming_the_manifest_and_the_choices() {
    let registry = Registry::new().unwrap();
    let dir = with_manifest("calc", Some("[compile]\ncompiler = \"llvm\"\n"));
    let err = registry.load_file(file(dir.path(), "calc")).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::Manifest { .. }), "{err:?}");
    assert!(message.contains("calc.toml"), "{message}");
    assert!(message.contains("`cranelift` or `winch`"), "{message}");
}

#[test]
fn the_command_line_compiles_with_either() {
    let calc = plugin_path("calc");
    for compiler in ["winch", "cranelift"] {
        let (code, stdout, stderr) = add_on_the_command_line(compiler, &calc);
        assert_eq!((code, stdout.as_ref()), (Some(0), "42\n"), "{stderr}");
        assert!(stderr.contains(&format!("with {compiler} in")), "{stderr}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_hotslot"))
        .args(["call", "--compiler", "llvm"])
        .arg(&calc)
        .arg("demo:calc/math@1#add(40, 2)")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`cranelift` or `winch`"), "{stderr}");
}

/// `hotslot call --compiler COMPILER FILE 'demo:calc/math@1#add(40, 2)'`,
/// logging at `info`, with a home of its own: exit code, stdout, stderr.
fn add_on_the_command_line(compiler: &str, file: &Path) -> (Option<i32>, String, String) {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hotslot"))
        .args(["call", "--compiler", compiler])
        .arg(file)
        .arg("demo:calc/math@1#add(40, 2)")
        .env("HOME", home.path())
        .env("HOTSLOT_LOG", "info")
        .output()
        .unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// What a `tracing` subscriber wrote.
#[derive(Clone, Default)]
struct Log(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Log {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Log {
    type Writer = Log;

    fn make_writer(&'a self) -> Log {
        self.clone()
    }
}

/// A component Winch cannot compile (a tail call: Winch leaves the proposal
/// out) but Cranelift can.
fn with_a_tail_call() -> tempfile::TempDir {
    let bytes = wat::parse_str(
        r#"(component
            (core module $m
                (func $sum (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
                (func (export "add") (param i32 i32) (result i32)
                    local.get 0 local.get 1 return_call $sum))
            (core instance $i (instantiate $m))
            (func $add (param "a" s32) (param "b" s32) (result s32) (canon lift (core func $i "add")))
            (instance $math (export "add" (func $add)))
            (export "demo:calc/math@1.0.0" (instance $math))
        )"#,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tail.wasm"), bytes).unwrap();
    std::fs::write(
        dir.path().join("tail.toml"),
        "[compile]\ncompiler = \"winch\"\n",
    )
    .unwrap();
    dir
}

#[test]
fn what_winch_cannot_compile_cranelift_compiles_instead() {
    let registry = Registry::new().unwrap();
    let dir = with_a_tail_call();
    let tail = registry.load_file(file(dir.path(), "tail")).unwrap();
    assert_eq!(tail.compiler(), Compiler::Cranelift);
    adds_up(&registry, "tail", &tail);
    // Asked again, found compiled, and not tried with Winch again.
    let log = Log::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(log.clone())
        .finish();
    let again = tracing::subscriber::with_default(subscriber, || {
        tracing::debug!("the log is captured");
        registry.load_file(file(dir.path(), "tail")).unwrap()
    });
    assert_eq!(again.compiler(), Compiler::Cranelift);
    let log = log.text();
    assert!(log.contains("the log is captured"), "{log}");
    assert!(!log.contains("winch cannot compile"), "{log}");

    // On the command line too, saying why.
    let (code, stdout, stderr) = add_on_the_command_line("winch", &file(dir.path(), "tail"));
    assert_eq!((code, stdout.as_ref()), (Some(0), "42\n"), "{stderr}");
    assert!(stderr.contains("winch cannot compile"), "{stderr}");
    assert!(stderr.contains("tail.wasm"), "{stderr}");
    assert!(stderr.contains("with cranelift in"), "{stderr}");
}

#[test]
fn a_registry_compiling_with_winch_falls_back_too_and_refuses_what_is_no_component() {
    let engine = hotslot::engine::build(&hotslot::engine::EngineOptions {
        compiler: Compiler::Winch,
        pool_instances: 0,
        ..Default::default()
    })
    .unwrap();
    let registry = Registry::with_engine(engine, hotslot::Limits::default()).unwrap();
    // A core module: Cranelift would refuse it just the same.
    let err = registry
        .load_bytes("module.wasm", b"\0asm\x01\0\0\0")
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::NotAComponent { .. }), "{err:?}");
    assert!(message.contains("module.wasm"), "{message}");
    // The same bytes Cranelift would compile: Winch's refusal, not a plain
    // failure, is what sends them there.
    let tail = std::fs::read(file(with_a_tail_call().path(), "tail")).unwrap();
    let plugin = registry.load_bytes("tail.wasm", &tail).unwrap();
    assert_eq!(plugin.compiler(), Compiler::Cranelift);
}
