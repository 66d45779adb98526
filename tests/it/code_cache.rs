//! Compiled code the CLI keeps on disk: the next run maps it instead of
//! compiling, big components (compiled apart) included, and a damaged file
//! costs one compile, never an answer.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{last_reuse, plugin_path, with_build_id, with_custom_section};

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

/// Runs `request` on `file`: compiled and kept, mapped back, compiled
/// again after a bit of the kept file is flipped, and again after it is
/// replaced by garbage, mapped back again.
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

    // One bit flipped in the middle, where wasmtime checks nothing (its
    // header is at the start): refused by the checksum, never run.
    let mut flipped = std::fs::read(&files[0]).unwrap();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x04;
    std::fs::write(&files[0], &flipped).unwrap();
    let (stdout, stderr) = call(file, request, cache.path());
    assert_eq!(stdout, answer);
    assert!(stderr.contains("checksum does not match"), "{stderr}");
    assert!(stderr.contains(&compiled), "{stderr}");

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

/// A component exporting `demo:big/data@1.0.0` whose one function,
/// `first`, answers the first byte of `data` (WAT string syntax), which
/// starts a memory of `pages` pages.
fn data_component(pages: u32, data: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(component
            (core module $m
                (memory (export "memory") {pages})
                (data (i32.const 0) "{data}")
                (func (export "first") (result i32) i32.const 0 i32.load8_u))
            (core instance $i (instantiate $m))
            (func $first (result u32) (canon lift (core func $i "first")))
            (instance $data (export "first" (func $first)))
            (export "demo:big/data@1.0.0" (instance $data)))"#
    ))
    .unwrap()
}

#[test]
fn a_big_component_is_kept_and_mapped_too() {
    // Over a megabyte (so compiled on an engine of its own), nearly all of
    // it data: quick to compile.
    let bytes = data_component(17, &"\\2a".repeat(1 << 20));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.wasm");
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

/// The compiled-code files process `pid` has mapped.
#[cfg(target_os = "linux")]
fn mapped_code_files(pid: u32) -> usize {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut files: Vec<&str> = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| path.ends_with(".cwasm"))
        .collect();
    files.sort_unstable();
    files.dedup();
    files.len()
}

/// A child process killed when dropped, on a failed assertion too.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_string_of_reloads_leaves_few_old_components_in_memory() {
    use std::io::{BufRead, BufReader};
    // 48 MiB of data, all of it in the code file: three such files are
    // more than the loader keeps of recent components (128 MiB).
    let bytes = data_component(800, &"a".repeat(48 << 20));
    let (dir, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let file = dir.path().join("big.wasm");
    std::fs::write(&file, &bytes).unwrap();
    let mut child = Killed(
        Command::new(env!("CARGO_BIN_EXE_hotslot"))
            .arg("watch")
            .arg(dir.path())
            .env("XDG_CACHE_HOME", cache.path())
            .env("HOTSLOT_LOG", "info")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (lines, log) = std::sync::mpsc::channel();
    let stderr = child.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let wait_for = |what: &str| loop {
        let line = log
            .recv_timeout(std::time::Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("no {what:?} in the log"));
        if line.contains(what) {
            return;
        }
    };
    wait_for("added demo:big/data@1.0.0");
    for generation in 2..=7 {
        let tmp = dir.path().join(".big.partial");
        std::fs::write(&tmp, with_build_id(&bytes, &generation.to_string())).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        wait_for(&format!("(generation {generation})"));
    }
    // The one serving, the one it replaced (let go after the last load),
    // and the two the loader keeps for bytes seen again (two of these make
    // 96 of its 128 MiB): not every generation's code, as an old instance
    // waiting to give its memory back in a batch, or a loader counting
    // entries alone, kept it.
    let mapped = mapped_code_files(child.0.id());
    assert!(mapped >= 1, "the code is mapped from its file");
    assert!(
        mapped <= 4,
        "{mapped} components' code still mapped after 6 reloads"
    );
}

/// `bytes` padded with a custom section of `size` bytes: over a megabyte,
/// a component is compiled apart, and what it compiled is kept on disk.
fn padded(bytes: &[u8], size: usize) -> Vec<u8> {
    with_custom_section(bytes, "padding", &vec![0; size])
}

#[test]
fn the_next_run_compiles_only_what_changed() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("g.wasm");
    // Big enough to be compiled apart (an interpreter would be): the file
    // of kept functions is read and written only for such compiles.
    let bytes = padded(&std::fs::read(plugin_path("greeter_a")).unwrap(), 1 << 20);
    std::fs::write(&file, &bytes).unwrap();
    let request = r#"demo:greeter/greet@1#hello("x")"#;
    let (stdout, _) = call(&file, request, cache.path());
    assert_eq!(stdout, "\"a: hello, x\"\n");
    assert!(cache.path().join("hotslot/functions/pack").is_file());

    // New bytes, the same code: another run finds its functions kept.
    std::fs::write(&file, with_build_id(&bytes, "2")).unwrap();
    let (stdout, stderr) = call(&file, request, cache.path());
    assert_eq!(stdout, "\"a: hello, x\"\n");
    let (found, looked) = last_reuse(&stderr).expect("a reuse line");
    assert!(found * 4 > looked * 3, "reused {found} of {looked}");

    // Other code: what differs is compiled, and answers.
    let other = padded(&std::fs::read(plugin_path("greeter_b")).unwrap(), 1 << 20);
    std::fs::write(&file, other).unwrap();
    let (stdout, stderr) = call(&file, request, cache.path());
    assert_eq!(stdout, "\"b: bonjour, x\"\n");
    let (found, looked) = last_reuse(&stderr).expect("a reuse line");
    assert!(found > 0 && found < looked, "reused {found} of {looked}");
}

#[test]
fn a_small_component_leaves_the_kept_functions_alone() {
    let cache = tempfile::tempdir().unwrap();
    let (stdout, _) = call(
        &plugin_path("calc"),
        "demo:calc/math@1#add(40, 2)",
        cache.path(),
    );
    assert_eq!(stdout, "42\n");
    assert!(!cache.path().join("hotslot/functions").exists());
}
