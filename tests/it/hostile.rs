//! What an attacker who can write into the watched directory, or write a
//! plugin, can do to the host: each case costs at most the file or the call
//! it comes with, never the host, its memory, its descriptors or its answers.
//! Tests that would eat the machine if the host regressed watch the child's
//! memory and time and kill it early.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use hotslot::wasmtime::component::Val;
use hotslot::{Error, Fault, Grants, Limits, Registry};

use crate::common::{plugin, plugin_path};

/// The most a hostile-file test lets the host's resident memory reach.
const MAX_RSS_KIB: u64 = 1 << 20;
const DEADLINE: Duration = Duration::from_secs(30);

fn hotslot() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hotslot"))
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Waits for `child` to end, killing it (and failing) if its memory or its
/// time goes past the bounds: a regression fails fast instead of eating
/// the machine or hanging CI. Its output is read as it comes, so a full
/// pipe never stalls it.
fn bounded(mut child: Child) -> Output {
    use std::io::Read;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        let rss = rss_kib(child.id()).unwrap_or(0);
        if rss > MAX_RSS_KIB || started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "killed the host at {rss} KiB after {:?}; stderr: {}",
                started.elapsed(),
                String::from_utf8_lossy(&stderr.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(20)); // a sampling clock
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Runs `hotslot ARGS` with `input` on standard input, bounded.
fn run(args: &[&std::ffi::OsStr], input: &[u8]) -> Output {
    let mut child = hotslot()
        .args(args)
        .env("HOTSLOT_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    drop(stdin);
    bounded(child)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

const HELLO: &str = r#"demo:greeter/greet#hello("x")"#;

#[test]
fn a_raised_file_limit_holds_for_call_and_no_limit_is_no_limit() {
    // Past the default limit (256 MiB), within a raised one: read as far as
    // its header, which refuses it (sparse: nothing else is read).
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.wasm");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(300 << 20)
        .unwrap();
    let args = [
        "call".as_ref(),
        "--max-file-mib".as_ref(),
        "512".as_ref(),
        big.as_os_str(),
        HELLO.as_ref(),
    ];
    let out = run(&args, b"");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("over the limit"), "{stderr}");
    assert!(stderr.contains("big.wasm"), "{stderr}");

    // A library user's "no limit".
    let limits = hotslot::Limits {
        max_file_size: u64::MAX,
        ..hotslot::Limits::default()
    };
    let registry =
        hotslot::Registry::with_engine(hotslot::engine::shared_engine().unwrap(), limits).unwrap();
    registry.add_file(plugin_path("calc")).unwrap();
}

#[test]
fn devices_fifos_and_huge_files_are_refused_without_reading_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(plugin_path("greeter_a"), dir.path().join("g.wasm")).unwrap();
    std::fs::copy(plugin_path("calc"), dir.path().join("a.wasm")).unwrap();
    std::os::unix::fs::symlink("/dev/urandom", dir.path().join("a.toml")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("z.wasm")).unwrap();
    mkfifo(&dir.path().join("f.wasm"));
    let sparse = std::fs::File::create(dir.path().join("x.wasm")).unwrap();
    sparse.set_len(2 << 30).unwrap();

    let out = run(&["list".as_ref(), dir.path().as_os_str()], b"");
    let table = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let row = |file: &str| {
        table
            .lines()
            .find(|l| l.starts_with(file))
            .unwrap_or_else(|| panic!("no row for {file}: {table}"))
            .to_string()
    };
    assert!(row("a.wasm").contains("not a regular file"), "{table}");
    assert!(row("f.wasm").contains("FIFO"), "{table}");
    assert!(row("x.wasm").contains("over the limit"), "{table}");
    assert!(row("z.wasm").contains("character device"), "{table}");
    assert!(row("g.wasm").contains("yes"), "{table}");

    // `watch` answers at once, and ends with its input.
    let out = run(
        &["watch".as_ref(), dir.path().as_os_str()],
        HELLO.as_bytes(),
    );
    assert_eq!(
        text(&out.stdout),
        "\"a: hello, x\"\n",
        "{}",
        text(&out.stderr)
    );
    assert!(out.status.success());
}

#[test]
fn a_fifo_made_while_watching_blocks_nothing() {
    use std::io::{BufRead, BufReader, Read};
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(plugin_path("greeter_a"), dir.path().join("g.wasm")).unwrap();
    let mut child = hotslot()
        .arg("watch")
        .arg(dir.path())
        .env("HOTSLOT_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let mut stderr = child.stderr.take().unwrap();
    let sink = log.clone();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n @ 1..) = stderr.read(&mut buffer) {
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    });
    let mut stdin = child.stdin.take().unwrap();
    let mut answers = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut ask = |line: &str| {
        writeln!(stdin, "{line}").unwrap();
        answers.next().unwrap().unwrap()
    };
    assert_eq!(ask(HELLO), "\"a: hello, x\"");
    // More FIFOs than the host has loader threads; wait (bounded) until
    // the host has tried them, so a loader stuck on one would show below.
    for i in 0..10 {
        mkfifo(&dir.path().join(format!("z{i}.wasm")));
    }
    let tried = Instant::now();
    while log.lock().unwrap().matches("a FIFO").count() < 10
        && tried.elapsed() < Duration::from_secs(5)
    {
        std::thread::yield_now();
    }
    // A later change is still seen: no loader was stuck on a FIFO.
    let tmp = dir.path().join(".g.tmp");
    std::fs::copy(plugin_path("greeter_b"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.path().join("g.wasm")).unwrap();
    let deadline = Instant::now() + DEADLINE;
    while ask(HELLO) != "\"b: bonjour, x\"" {
        assert!(Instant::now() < deadline, "the reload was never seen");
    }
    assert_eq!(log.lock().unwrap().matches("a FIFO").count(), 10);
    drop(stdin);
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success());
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "end of input did not end the host"
        );
        std::thread::yield_now();
    }
}

#[test]
fn a_request_line_that_is_not_utf8_gets_an_error_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(plugin_path("greeter_a"), dir.path().join("g.wasm")).unwrap();
    let mut input = b"demo:greeter/greet#hello(\"\xff\")\n".to_vec();
    input.extend_from_slice(HELLO.as_bytes());
    let out = run(&["watch".as_ref(), dir.path().as_os_str()], &input);
    let lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("error: ") && lines[0].contains("UTF-8"));
    assert_eq!(lines[1], "\"a: hello, x\"");
    assert!(out.status.success());
}

#[test]
fn names_with_control_characters_or_not_utf8_are_refused_and_list_stays_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(plugin_path("greeter_a"), dir.path().join("g.wasm")).unwrap();
    std::fs::copy(plugin_path("greeter_b"), dir.path().join("z\nend\nq.wasm")).unwrap();
    for bytes in [&b"caf\xe9.wasm"[..], &b"caf\xe8.wasm"[..]] {
        let name = std::ffi::OsStr::from_bytes(bytes);
        std::fs::copy(plugin_path("greeter_b"), dir.path().join(name)).unwrap();
    }
    // A space would make `list`'s name two words.
    let download = dir.path().join("g (1).wasm");
    std::fs::copy(plugin_path("greeter_b"), &download).unwrap();
    let out = run(&["watch".as_ref(), dir.path().as_os_str()], b"list\n");
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout, "demo:greeter/greet@1.0.0 g 1\nend\n",
        "only g loads; every line is one line"
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("control character"), "{stderr}");
    assert_eq!(stderr.matches("not UTF-8").count(), 2, "{stderr}");
    assert!(
        stderr.contains("white space") && stderr.contains("`g_(1).wasm`"),
        "{stderr}"
    );

    let out = run(&["list".as_ref(), dir.path().as_os_str()], b"");
    let table = text(&out.stdout);
    assert_eq!(table.lines().count(), 6, "a header and five rows: {table}");
    assert_eq!(
        table
            .lines()
            .filter(|l| l.contains("no: bad plugin name"))
            .count(),
        4
    );
    // `call` on that one file lists no names: it is called.
    let out = run(
        &["call".as_ref(), download.as_os_str(), HELLO.trim().as_ref()],
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "\"b: bonjour, x\"\n");
}

#[test]
fn a_manifest_cannot_raise_the_operators_limits() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(plugin_path("rogue"), dir.path().join("rogue.wasm")).unwrap();
    std::fs::write(
        dir.path().join("rogue.toml"),
        "[limits]\ntimeout-ms = 100000000\n",
    )
    .unwrap();
    let started = Instant::now();
    let out = run(
        &[
            "call".as_ref(),
            dir.path().join("rogue.wasm").as_os_str(),
            "demo:rogue/misbehave#spin()".as_ref(),
            "--timeout-ms".as_ref(),
            "300".as_ref(),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("deadline"),
        "{}",
        text(&out.stderr)
    );
    assert!(started.elapsed() < DEADLINE);

    // In the library, the same: the registry's limits are the ceiling.
    let grants = Grants::from_toml(
        "[limits]\ntimeout-ms = 100000000\nmax-memory-mib = 100000\n",
        Path::new("."),
        "m",
    )
    .unwrap();
    let ceiling = Limits {
        timeout: Duration::from_millis(300),
        max_memory: 32 << 20,
        ..Limits::default()
    };
    assert_eq!(grants.limits(&ceiling), ceiling);
}

/// A component whose start function never ends.
fn endless_start() -> Vec<u8> {
    wat::parse_str(
        r#"(component
            (core module $m (func $forever (loop $again (br $again))) (start $forever))
            (core instance $i (instantiate $m))
            (instance $e)
            (export "demo:probe/probe@1.0.0" (instance $e))
        )"#,
    )
    .unwrap()
}

/// A component whose `on-start` (`hotslot:plugin/lifecycle`) never ends.
fn endless_on_start() -> Vec<u8> {
    wat::parse_str(
        r#"(component
            (core module $m
              (memory (export "mem") 1)
              (func (export "on-start") (param i32) (result i32) (loop $again (br $again)) unreachable))
            (core instance $i (instantiate $m))
            (alias core export $i "mem" (core memory $mem))
            (type $reason (enum "fresh" "reload" "recover"))
            (func $on-start (param "reason" $reason) (result (result (error string)))
              (canon lift (core func $i "on-start") (memory $mem)))
            (instance $life (export "start-reason" (type $reason)) (export "on-start" (func $on-start)))
            (export "hotslot:plugin/lifecycle@0.1.0" (instance $life))
            (instance $e)
            (export "demo:probe/probe@1.0.0" (instance $e))
        )"#,
    )
    .unwrap()
}

/// Start-up code that never ends (a start function, `on-start`) is
/// refused, saying the deadline passed (wasmtime's own words were only
/// "wasm trap: interrupt").
#[test]
fn an_endless_start_up_is_refused_at_its_deadline_saying_so() {
    let limits = Limits {
        timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let registry =
        Registry::with_engine(hotslot::engine::shared_engine().unwrap(), limits).unwrap();
    for (name, bytes, said) in [
        ("endless", endless_start(), "deadline exceeded"),
        (
            "endless_on_start",
            endless_on_start(),
            "on-start(fresh) failed: deadline exceeded",
        ),
    ] {
        let plugin = registry.load_bytes("endless.wasm", &bytes).unwrap();
        match registry.add_plugin(name, &plugin) {
            Err(Error::Instantiate { reason, .. }) => {
                assert!(reason.starts_with(said), "{name}: {reason}")
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

/// Twenty-four plugins whose start-up never ends, named to load first (many
/// more than this machine's first loader threads, and three times the eight
/// loaders there once were at most), and a greeter: the greeter answers
/// before even one start-up's deadline passes.
#[test]
fn endless_start_ups_hold_up_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    let endless = endless_start();
    for n in 1..=24 {
        std::fs::write(dir.path().join(format!("a{n:02}.wasm")), &endless).unwrap();
    }
    std::fs::copy(plugin_path("greeter_a"), dir.path().join("g.wasm")).unwrap();
    // Long, so that the greeter's compile beside the spinning start-ups on
    // a busy machine fits well within it.
    let timeout = Duration::from_secs(10);
    let mut child = hotslot()
        .args([
            "watch".as_ref(),
            dir.path().as_os_str(),
            "--timeout-ms".as_ref(),
            "10000".as_ref(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{HELLO}").unwrap();
    let mut answer = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut answer)
        .unwrap();
    let took = started.elapsed();
    // Not waited for: its start-ups would run to their deadline first.
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(answer, "\"a: hello, x\"\n");
    // Held up behind two of them, the first answer would come after one
    // deadline; behind eight at a time, three.
    assert!(took < timeout, "first answer after {took:?}");
}

/// A manifest over its size limit is refused as a manifest (it was said
/// to be "not a usable component").
#[test]
fn a_manifest_too_big_is_refused_as_a_manifest() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(plugin_path("calc"), dir.path().join("calc.wasm")).unwrap();
    std::fs::write(dir.path().join("calc.toml"), "#".repeat(2 << 20)).unwrap();
    let err = Registry::new()
        .unwrap()
        .add_file(dir.path().join("calc.wasm"))
        .unwrap_err();
    assert!(matches!(err, Error::Manifest { .. }), "{err:?}");
    assert!(err.to_string().contains("calc.toml"), "{err}");
}

#[test]
fn grants_outside_the_root_are_refused_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::copy(plugin_path("rogue"), dir.path().join("rogue.wasm")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("sneaky")).unwrap();
    let registry = Registry::new().unwrap();
    for (host, shown) in [
        ("/".to_string(), "/".to_string()),
        (
            "sneaky".to_string(),
            outside.path().canonicalize().unwrap().display().to_string(),
        ),
    ] {
        std::fs::write(
            dir.path().join("rogue.toml"),
            format!("[[dir]]\nhost = \"{host}\"\nguest = \"/x\"\n"),
        )
        .unwrap();
        let err = registry
            .add_file(dir.path().join("rogue.wasm"))
            .unwrap_err();
        assert!(matches!(err, Error::Manifest { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("outside the grant root"), "{message}");
        assert!(message.contains(&shown), "{message}");
    }
    // Inside the directory is fine; a wider root is the operator's to give.
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(
        dir.path().join("rogue.toml"),
        "[[dir]]\nhost = \"data\"\nguest = \"/x\"\n",
    )
    .unwrap();
    registry.add_file(dir.path().join("rogue.wasm")).unwrap();
    std::fs::write(
        dir.path().join("rogue.toml"),
        "[[dir]]\nhost = \"sneaky\"\nguest = \"/x\"\n",
    )
    .unwrap();
    let wider = Registry::new().unwrap().with_grant_root(outside.path());
    let err = wider.add_file(dir.path().join("rogue.wasm"));
    assert!(err.is_ok(), "{err:?}");

    let out = run(
        &[
            "call".as_ref(),
            dir.path().join("rogue.wasm").as_os_str(),
            "demo:rogue/misbehave#ping()".as_ref(),
            "--grant-root".as_ref(),
            outside.path().as_os_str(),
        ],
        b"",
    );
    assert_eq!(text(&out.stdout), "\"pong\"\n", "{}", text(&out.stderr));
}

#[test]
fn too_many_directory_grants_are_refused() {
    let mut manifest = String::new();
    for i in 0..20_000 {
        manifest.push_str(&format!("[[dir]]\nhost = \".\"\nguest = \"/d{i}\"\n"));
    }
    let err = Grants::from_toml(&manifest, Path::new("."), "many.toml").unwrap_err();
    assert!(err.to_string().contains("at most 64"), "{err}");
}

/// A plugin that opens files without end is stopped at its cap, and the
/// descriptors it held come back: every other plugin still reloads.
#[test]
fn a_plugin_cannot_take_every_file_descriptor() {
    let base = tempfile::tempdir().unwrap();
    std::fs::create_dir(base.path().join("data")).unwrap();
    std::fs::write(base.path().join("data/f"), "x").unwrap();
    let grants = Grants::from_toml(
        "[[dir]]\nhost = \"data\"\nguest = \"/data\"\n",
        base.path(),
        "rogue.toml",
    )
    .unwrap();
    let registry = Registry::new().unwrap();
    registry
        .add_plugin("rogue", &plugin(&registry, "rogue").with_grants(grants))
        .unwrap();
    let rogue = registry
        .implementation("demo:rogue/misbehave", "rogue")
        .unwrap();
    let opened = rogue.call(
        "open-many",
        &[Val::String("/data/f".into()), Val::U32(100_000)],
    );
    // Said as the limit it is, named (wasmtime-wasi's words were "host
    // error: resource table has no free keys").
    match opened.as_deref() {
        Ok([Val::U32(n)]) => assert!(*n < 300, "opened {n} files"),
        Err(Error::Call {
            fault: Fault::Limit,
            reason,
            ..
        }) if reason.contains("`max-open-files`") => {}
        other => panic!("{other:?}"),
    }
    for _ in 0..20 {
        registry
            .add_plugin("greeter", &plugin(&registry, "greeter_a"))
            .unwrap();
    }
    assert_eq!(
        rogue.call("ping", &[]).unwrap(),
        [Val::String("pong".into())]
    );
}

/// Runs `hotslot watch DIR` under a descriptor limit, with `input`.
fn watch_with_fd_limit(dir: &Path, limit: u64, input: &[u8]) -> Output {
    let mut command = hotslot();
    command
        .arg("watch")
        .arg(dir)
        .env("HOTSLOT_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    drop(stdin);
    bounded(child)
}

/// A rogue plugin in `dir` granted `dirs` directories (each an open
/// descriptor in every instance).
fn rogue_granted(dir: &Path, dirs: usize) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/f"), "x").unwrap();
    std::fs::copy(plugin_path("rogue"), dir.join("rogue.wasm")).unwrap();
    let mut manifest = String::new();
    for i in 0..dirs {
        manifest.push_str(&format!("[[dir]]\nhost = \"data\"\nguest = \"/d{i}\"\n"));
    }
    std::fs::write(dir.join("rogue.toml"), manifest).unwrap();
}

/// A plugin granted 60 directories, under every descriptor limit from far
/// too few to enough: at some limits its grants take the last descriptors
/// before its first filesystem call. Its grants, or its calls, fail cleanly;
/// the host never panics. (Made lazily, wasmtime-wasi's I/O runtime would
/// be made only then, and wasmtime-wasi panics when it cannot be.)
#[test]
fn running_out_of_descriptors_never_panics_the_host() {
    let dir = tempfile::tempdir().unwrap();
    rogue_granted(dir.path(), 60);
    for limit in 40..90 {
        let out = watch_with_fd_limit(
            dir.path(),
            limit,
            b"demo:rogue/misbehave#read-file(\"/d0/f\")\ndemo:rogue/misbehave#ping()\n",
        );
        let stderr = text(&out.stderr);
        assert!(
            !stderr.contains("panicked"),
            "at {limit} descriptors: {stderr}"
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "at {limit} descriptors: {stderr}"
        );
        let lines = text(&out.stdout).lines().count();
        assert_eq!(lines, 2, "at {limit} descriptors: {}", text(&out.stdout));
    }

    // And a plugin that opens files until none are left: its calls fail,
    // the host's do not.
    let dir = tempfile::tempdir().unwrap();
    rogue_granted(dir.path(), 1);
    let out = watch_with_fd_limit(
        dir.path(),
        64,
        b"demo:rogue/misbehave#open-many(\"/d0/f\", 100000)\n\
          demo:rogue/misbehave#read-file(\"/d0/f\")\n\
          demo:rogue/misbehave#ping()\n",
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[2], "\"pong\"");
}

/// A plugin that floods its output and traps, round after round, gets one
/// allowance, not one per instance: the log grows at the plugin's rate.
#[test]
fn the_output_rate_follows_the_plugin_across_traps() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(plugin_path("rogue"), dir.path().join("rogue.wasm")).unwrap();
    let mut input = String::new();
    for _ in 0..20 {
        input.push_str("demo:rogue/misbehave#flood(2000, 250)\ndemo:rogue/misbehave#trap()\n");
    }
    let started = Instant::now();
    let out = run(
        &["watch".as_ref(), dir.path().as_os_str()],
        input.as_bytes(),
    );
    let took = started.elapsed().as_secs_f64();
    assert!(out.status.success());
    // 20 rounds print 20 MB; the budget is a 256 KiB burst and 64 KiB/s
    // after it, for both streams together, whatever the instance. What is
    // counted is what the plugin printed, not the log's own prefixes.
    let allowed = 256.0 * 1024.0 + 64.0 * 1024.0 * took + 64.0 * 1024.0;
    let logged: usize = text(&out.stderr)
        .lines()
        .filter_map(|line| {
            let at = line
                .find("[rogue stdout] ")
                .or_else(|| line.find("[rogue stderr] "))?;
            Some(line.len() - at - "[rogue stdout] ".len() + 1)
        })
        .sum();
    let logged = logged as f64;
    assert!(logged < allowed, "logged {logged} bytes in {took:.1} s");
}

/// A pool with room for four instances, four plugins in it: a reload still
/// succeeds (idle instances make room, and start again when called), and the
/// log says the pool was full.
#[test]
fn a_reload_succeeds_when_the_instance_pool_is_full() {
    let engine = crate::common::engine_with_pool(4);
    let registry = Registry::with_engine(engine, Limits::default()).unwrap();
    let greeter = plugin(&registry, "greeter_a");
    for name in ["p1", "p2", "p3", "p4"] {
        registry.add_plugin(name, &greeter).unwrap();
    }
    let reloaded = registry.add_plugin("p1", &plugin(&registry, "greeter_b"));
    assert!(reloaded.is_ok(), "{reloaded:?}");
    for name in ["p1", "p2", "p3", "p4"] {
        let handle = registry.implementation(crate::common::GREET, name).unwrap();
        let answer = crate::common::hello(&handle, "x").unwrap();
        let expected = if name == "p1" {
            "b: bonjour, x"
        } else {
            "a: hello, x"
        };
        assert_eq!(answer, expected);
    }
}

/// What a raw HTTP client gets for `request` from `addr`: the whole
/// answer, or what came before the connection ended.
fn http_exchange(addr: &str, request: &[u8]) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    // The server may close before taking all of a hostile request in.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// `watch --metrics` and `--http` against hostile clients, under a low
/// descriptor limit: a request claiming a petabyte of body (tiny_http, used
/// before, allocated it and aborted the process), a header line without
/// end, and more idle connections than the process has descriptors (which
/// stopped tiny_http's accept thread for good). Each server answers the
/// next plain request.
#[test]
fn the_http_servers_outlive_hostile_clients() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = hotslot();
    command
        .arg("watch")
        .arg(dir.path())
        .args(["--metrics", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .env("HOTSLOT_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 64,
                rlim_max: 64,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut announced = |prefix: &str, suffix: &str| {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
        line.trim()
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(suffix))
            .unwrap_or_else(|| panic!("{line}"))
            .to_string()
    };
    let metrics = announced("hotslot: metrics on http://", "/metrics");
    let page = announced("hotslot: page on http://", "/");
    let get = |addr: &str, path: &str| {
        http_exchange(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        )
    };

    let head = http_exchange(&metrics, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        head.starts_with("HTTP/1.1 200") && !head.contains("# EOF"),
        "{head}"
    );
    let typed = http_exchange(&metrics, b"GET /metrics HTTP/1.0\n\n");
    assert!(typed.contains("# EOF"), "{typed}");
    let huge = "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000000\r\n\r\n";
    assert!(http_exchange(&metrics, huge.as_bytes()).starts_with("HTTP/1.1 200"));
    assert!(get(&metrics, "/metrics").contains("# EOF"));

    let mut endless = b"GET /data HTTP/1.1\r\nX-Long: ".to_vec();
    endless.resize(1 << 20, b'a');
    let refused = http_exchange(&page, &endless);
    assert!(
        refused.is_empty() || refused.starts_with("HTTP/1.1 431"),
        "{refused}"
    );
    assert!(get(&page, "/data").contains("\"plugins\""));

    let idle: Vec<_> = (0..100)
        .filter_map(|_| std::net::TcpStream::connect(&metrics).ok())
        .collect();
    drop(idle);
    let deadline = Instant::now() + DEADLINE;
    loop {
        if get(&metrics, "/metrics").contains("# EOF") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the metrics server stopped answering"
        );
    }
    assert!(get(&page, "/").contains("<title>hotslot</title>"));

    // A head sent a byte a second is cut off at the head's 5 s, however
    // long each byte took.
    let mut drip = std::net::TcpStream::connect(&metrics).unwrap();
    drip.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut writer = drip.try_clone().unwrap();
    let started = Instant::now();
    let dripping = std::thread::spawn(move || {
        for byte in b"GET /metrics HTTP/1.1\r\nX: aaaaaaaaaaaa\r\n\r\n" {
            if writer.write_all(&[*byte]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut drip, &mut answer);
    let took = started.elapsed();
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    assert!(took < Duration::from_secs(8), "held for {took:?}");
    drop(drip);
    let _ = dripping.join();
    assert_eq!(child.try_wait().unwrap(), None, "the host is gone");
    let _ = child.kill();
    let _ = child.wait();
}
