//! Compiled code the CLI keeps on disk: the next run maps it instead of
//! compiling, big components (compiled apart) included, and a damaged file
//! costs one compile, never an answer.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::plugin_path;

/// `hotslot call FILE REQUEST` with `cache` as the user's cache directory:
/// (stdout, stderr), after checking that it succeeded.
fn call(file: &Path, request: &str, cache: &Path) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hotslot"))
        .arg("call")
        .arg(file)
        .arg(request)
        .env("XDG_CACHE_HOME", cache)
        .env("HOTSLOT_LOG", "info")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    (stdout, stderr)
}

/// The files of compiled code kept under `cache`.
fn kept(cache: &Path) -> Vec<PathBuf> {
    let dir = cache.join("hotslot").join("code");
    let Ok(listing) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    listing
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "cwasm"))
        .collect()
}

/// Runs `request` on `file` four times: compiled and kept, mapped back,
/// compiled again after the kept file is damaged, mapped back again.
fn compiled_once_then_mapped(file: &Path, request: &str, answer: &str) {
    let cache = tempfile::tempdir().unwrap();
    let compiled = format!("compiled {} with cranelift in", file.display());
    let mapped = format!("loaded {}, compiled with cranelift before", file.display());

    let (stdout, stderr) = call(file, request, cache.path());
    assert_eq!(stdout, answer);
    assert!(stderr.contains(&compiled), "{stderr}");
    let files = kept(cache.path());
    assert_eq!(files.len(), 1, "{files:?}");

    let (stdout, stderr) = call(file, request, cache.path());
    assert_eq!(stdout, answer);
    assert!(stderr.contains(&mapped), "{stderr}");
    assert!(!stderr.contains(&compiled), "{stderr}");

    std::fs::write(&files[0], b"\x7fELF and then nothing of use").unwrap();
    let (stdout, stderr) = call(file, request, cache.path());
    assert_eq!(stdout, answer);
    assert!(stderr.contains("cannot be used"), "{stderr}");
    assert!(stderr.contains(&compiled), "{stderr}");

    let (stdout, stderr) = call(file, request, cache.path());
    assert_eq!(stdout, answer);
    assert!(stderr.contains(&mapped), "{stderr}");
    assert_eq!(kept(cache.path()), files);
}

#[test]
fn the_next_run_maps_the_code_the_first_compiled() {
    compiled_once_then_mapped(&plugin_path("calc"), "demo:calc/math@1#add(40, 2)", "42\n");
}

#[test]
fn a_big_component_is_kept_and_mapped_too() {
    // Over a megabyte (so compiled on an engine of its own), nearly all of
    // it data: quick to compile.
    let data = "\\2a".repeat(1 << 20);
    let wat = format!(
        r#"(component
            (core module $m
                (memory (export "memory") 17)
                (data (i32.const 0) "{data}")
                (func (export "first") (result i32) i32.const 0 i32.load8_u))
            (core instance $i (instantiate $m))
            (func $first (result u32) (canon lift (core func $i "first")))
            (instance $data (export "first" (func $first)))
            (export "demo:big/data@1.0.0" (instance $data)))"#
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.wasm");
    let bytes = wat::parse_str(&wat).unwrap();
    assert!(bytes.len() > 1 << 20);
    std::fs::write(&file, bytes).unwrap();
    compiled_once_then_mapped(&file, "demo:big/data@1#first()", "42\n");
}

#[test]
fn runs_racing_to_keep_the_same_code_leave_one_whole_file() {
    let cache = tempfile::tempdir().unwrap();
    let calc = plugin_path("calc");
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let (calc, cache) = (calc.clone(), cache.path().to_path_buf());
            std::thread::spawn(move || call(&calc, "demo:calc/math@1#add(40, 2)", &cache))
        })
        .collect();
    for run in runs {
        assert_eq!(run.join().unwrap().0, "42\n");
    }
    let dir = cache.path().join("hotslot").join("code");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    let (_, stderr) = call(&calc, "demo:calc/math@1#add(40, 2)", cache.path());
    assert!(
        stderr.contains("compiled with cranelift before"),
        "{stderr}"
    );
}
