//! The real `hotslot` binary, driven as scripts and people drive it.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{last_reuse, plugin_path, resource_maker, with_build_id};

const DEADLINE: Duration = Duration::from_secs(20);

fn hotslot() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hotslot"))
}

/// A directory holding copies of plugins, under the names given.
fn plugin_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, stem) in files {
        std::fs::copy(plugin_path(stem), dir.path().join(name)).unwrap();
    }
    dir
}

/// A running `hotslot watch`, answering one line per request.
struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    answers: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    /// Told each time `stderr` grows.
    stderr_grew: Arc<Condvar>,
    stderr_reader: Option<thread::JoinHandle<()>>,
}

impl Session {
    fn start(dir: &Path, extra: &[&str]) -> Self {
        Self::start_with(dir, extra, &[])
    }

    /// Like [`Session::start`], with more environment variables.
    fn start_with(dir: &Path, extra: &[&str], env: &[(&str, &Path)]) -> Self {
        let mut child = hotslot()
            .arg("watch")
            .arg(dir)
            .args(extra)
            .env("HOTSLOT_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, answers) = channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut child_stderr = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let stderr_grew = Arc::new(Condvar::new());
        let grew = stderr_grew.clone();
        let stderr_reader = thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = child_stderr.read(&mut buffer) {
                if n == 0 {
                    return;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
                grew.notify_all();
            }
        });
        let stdin = child.stdin.take();
        Session {
            child,
            stdin,
            answers,
            stderr,
            stderr_grew,
            stderr_reader: Some(stderr_reader),
        }
    }

    /// Waits until the log holds `text` (at most [`DEADLINE`]), woken each
    /// time it grows; panics saying `what` was not logged.
    fn wait_log(&self, text: &str, what: &str) {
        let deadline = Instant::now() + DEADLINE;
        let mut log = self.stderr.lock().unwrap();
        while !log.contains(text) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{what}: {log}");
            log = self.stderr_grew.wait_timeout(log, left).unwrap().0;
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn next_line(&self, after: &str) -> String {
        self.answers.recv_timeout(DEADLINE).unwrap_or_else(|_| {
            panic!(
                "no answer to {after:?}; stderr: {}",
                self.stderr.lock().unwrap()
            )
        })
    }

    fn ask(&mut self, line: &str) -> String {
        self.send(line);
        self.next_line(line)
    }

    /// Like [`Session::ask`], waiting up to `patience` for the answer (one
    /// that waits for a plugin to compile: seconds for an interpreter on a
    /// busy machine).
    fn ask_within(&mut self, line: &str, patience: Duration) -> String {
        self.send(line);
        self.answers.recv_timeout(patience).unwrap_or_else(|_| {
            panic!(
                "no answer to {line:?} within {patience:?}; stderr: {}",
                self.stderr.lock().unwrap()
            )
        })
    }

    /// The lines answering `request` (`list`, `stats`, `state NAME`), up
    /// to their `end`.
    fn lines(&mut self, request: &str) -> Vec<String> {
        self.send(request);
        let mut lines = Vec::new();
        loop {
            match self.next_line(request) {
                end if end == "end" => return lines,
                line => lines.push(line),
            }
        }
    }

    /// Ends the process at once, whatever it is doing (a compile under way
    /// would otherwise be waited for).
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Closes standard input and waits for the exit; returns the exit
    /// status's success, what is left on stdout, and stderr.
    fn finish(mut self) -> (bool, Vec<String>, String) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        let rest: Vec<String> = self.answers.iter().collect();
        // All of stderr, to its end, before it is checked.
        if let Some(reader) = self.stderr_reader.take() {
            reader.join().unwrap();
        }
        let stderr = self.stderr.lock().unwrap().clone();
        (status.success(), rest, stderr)
    }
}

/// A test that fails with a session open shows what the host logged: the
/// reason a plugin did not load is there, not on stdout.
impl Drop for Session {
    fn drop(&mut self) {
        if !thread::panicking() {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        let stderr = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
        eprintln!("--- the watch process's stderr ---\n{stderr}--- end ---");
    }
}

#[test]
fn a_session_for_each_interface() {
    let dir = plugin_dir(&[
        ("greeter_a.wasm", "greeter_a"),
        ("z_calc.wasm", "calc"),
        ("filter_basic.wasm", "filter_basic"),
    ]);
    let mut s = Session::start(dir.path(), &[]);
    assert_eq!(
        s.ask(r#"demo:greeter/greet@1.0.0#hello("world")"#),
        r#""a: hello, world""#
    );
    assert_eq!(
        s.ask(r#"demo:greeter/greet#hello("no version")"#),
        r#""a: hello, no version""#
    );
    assert_eq!(s.ask("demo:calc/math@1#add(40, 2)"), "42");
    assert_eq!(s.ask("demo:calc/math@1.0#add(-5, 2)"), "-3");
    let opts = r#"{case-mode: keep, max-len: none, banned: ["darn"], scope: {comments}}"#;
    assert_eq!(
        s.ask(&format!(r#"demo:text/filter@1.2#check("oh darn", {opts})"#)),
        r#"ok(drop("banned word: darn"))"#
    );
    assert_eq!(
        s.ask(r#"demo:text/filter@1.2.0#check("Hi", {case-mode: upper, max-len: some(1), banned: [], scope: {}})"#),
        r#"ok(rewrite("H"))"#
    );
    assert_eq!(
        s.ask(&format!(r#"demo:text/filter#check("", {opts})"#)),
        r#"err("empty line")"#,
        "a WIT err is an answer"
    );
    assert_eq!(
        s.ask(r#"demo:text/filter#stats("a bb ccc")"#),
        r#"{lines: 1, words: 3, longest: some("ccc")}"#
    );
    assert_eq!(
        s.ask(&format!(
            r#"demo:text/filter#apply(["keep", "darn it"], {opts})"#
        )),
        r#"["keep"]"#
    );
    // A blank line gets no answer: the next line's answer comes next.
    s.send("");
    s.send("   ");
    assert_eq!(s.ask("demo:calc/math#add(1, 1)"), "2");

    s.send("list");
    let mut listed = Vec::new();
    loop {
        let line = s.next_line("list");
        if line == "end" {
            break;
        }
        listed.push(line);
    }
    let generation = |line: &str| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap();
    let shape: Vec<String> = listed
        .iter()
        .map(|l| l.rsplit_once(' ').unwrap().0.to_string())
        .collect();
    assert_eq!(
        shape,
        [
            "demo:text/filter@1.2.0 filter_basic",
            "demo:greeter/greet@1.0.0 greeter_a",
            "demo:calc/math@1.0.0 z_calc",
            "demo:greeter/greet@1.0.0 z_calc",
        ]
    );
    // One generation per plugin: calc's two interfaces share one instance,
    // and each plugin's number is its own.
    let generations: Vec<u64> = listed.iter().map(|l| generation(l)).collect();
    assert_eq!(generations[2], generations[3], "{listed:?}");
    assert_ne!(generations[0], generations[1], "{listed:?}");
    assert_ne!(generations[1], generations[2], "{listed:?}");
    assert_ne!(generations[0], generations[2], "{listed:?}");

    let (ok, rest, _) = s.finish();
    assert!(ok, "end of input exits 0");
    assert!(rest.is_empty(), "nothing after the answers: {rest:?}");
}

#[test]
fn every_failure_is_one_error_line_and_the_process_lives_on() {
    let dir = plugin_dir(&[("greeter_a.wasm", "greeter_a"), ("rogue.wasm", "rogue")]);
    std::fs::write(dir.path().join("res.wasm"), resource_maker()).unwrap();
    let mut s = Session::start(dir.path(), &["--timeout-ms", "300"]);
    let failures = [
        ("unparseable", "this is not a request"),
        ("no function part", "demo:greeter/greet@1.0.0"),
        ("unclosed arguments", r#"demo:greeter/greet#hello("x""#),
        ("bad interface name", "Demo Greeter#hello()"),
        ("unknown interface", r#"demo:nothing/here#hello("x")"#),
        ("unknown function", r#"demo:greeter/greet#goodbye("x")"#),
        ("too few arguments", "demo:greeter/greet#hello()"),
        (
            "too many arguments",
            r#"demo:greeter/greet#hello("a", "b")"#,
        ),
        ("wrong type", "demo:greeter/greet#hello(42)"),
        ("bad WAVE", "demo:greeter/greet#hello(\"unterminated)"),
        (
            "no implementation of that version",
            r#"demo:greeter/greet@2#hello("x")"#,
        ),
        (
            "newer minor than served",
            r#"demo:greeter/greet@1.1#hello("x")"#,
        ),
        ("trap", "demo:rogue/misbehave#trap()"),
        ("deadline", "demo:rogue/misbehave#spin()"),
        // A resource answered: wasm-wave panicked writing it.
        ("a resource answered", "demo:res/r#make()"),
    ];
    for (what, request) in failures {
        let answer = s.ask(request);
        assert!(answer.starts_with("error: "), "{what}: {answer}");
        assert_eq!(
            s.ask(r#"demo:greeter/greet#hello("still")"#),
            r#""a: hello, still""#,
            "after {what}"
        );
    }
    assert_eq!(s.ask("demo:rogue/misbehave#ping()"), r#""pong""#);
    // Worded as the library words it: the plugin named too.
    let unknown = s.ask(r#"demo:greeter/greet#goodbye("x")"#);
    assert!(
        unknown.contains("demo:greeter/greet@1.0.0 `greeter_a` has no function `goodbye`"),
        "{unknown}"
    );
    let (ok, _, stderr) = s.finish();
    assert!(ok);
    // The host's own panics only: the rogue plugin's trap prints one of its
    // own (`[rogue stderr] thread '<unnamed>' (1) panicked at …`).
    let host_panics = stderr
        .lines()
        .filter(|line| line.contains("panicked at") && !line.contains("[rogue stderr]"));
    assert_eq!(host_panics.count(), 0, "{stderr}");
}

#[test]
fn a_log_that_cannot_be_written_loses_no_answer() {
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    let dir = plugin_dir(&[("calc.wasm", "calc")]);
    let mut watch = hotslot()
        .arg("watch")
        .arg(dir.path())
        .env("HOTSLOT_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(full())
        .spawn()
        .unwrap();
    let mut stdin = watch.stdin.take().unwrap();
    writeln!(stdin, "calc::demo:calc/math#add(1, 2)").unwrap();
    drop(stdin);
    let out = watch.wait_with_output().unwrap();
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(0), "3\n".to_string())
    );
    let calc = plugin_path("calc");
    for (request, code, answer) in [
        ("demo:calc/math#add(1, 2)", 0, "3\n"),
        ("demo:calc/math#nope(1, 2)", 1, ""),
    ] {
        let out = hotslot()
            .args(["call", calc.to_str().unwrap(), request])
            .env("HOTSLOT_LOG", "info")
            .stderr(full())
            .output()
            .unwrap();
        assert_eq!(
            (out.status.code(), text(&out.stdout).as_str()),
            (Some(code), answer),
            "{request}"
        );
    }
}

/// A component `hotslot call` runs (no instance pool there) but `watch`
/// cannot hold (65 core instances, over the pool's 64 a component): the
/// code `call` kept is neither blamed nor removed, and `watch` says why it
/// refuses the component.
#[test]
fn code_kept_for_a_component_the_pool_cannot_hold_is_not_blamed() {
    let instances = "(core instance (instantiate $m))\n".repeat(65);
    let wat = format!(
        r#"(component
          (core module $m (func (export "f") (result i32) i32.const 7))
          (core instance $i (instantiate $m))
          {instances}
          (func $f (result u32) (canon lift (core func $i "f")))
          (instance $api (export "f" (func $f)))
          (export "demo:many/m@1.0.0" (instance $api)))"#
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("many.wasm"), wat::parse_str(&wat).unwrap()).unwrap();
    let file = dir.path().join("many.wasm");
    let out = hotslot()
        .args(["call", file.to_str().unwrap(), "demo:many/m#f()"])
        .env("XDG_CACHE_HOME", cache.path())
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "7\n", "{}", text(&out.stderr));
    let kept = || {
        std::fs::read_dir(cache.path().join("hotslot/code"))
            .unwrap()
            .count()
    };
    assert_eq!(kept(), 1);
    let mut s = Session::start_with(dir.path(), &[], &[("XDG_CACHE_HOME", cache.path())]);
    assert!(s.ask("demo:many/m#f()").starts_with("error: "));
    let (_, _, stderr) = s.finish();
    assert!(stderr.contains("66 core module instances"), "{stderr}");
    assert!(!stderr.contains("cannot be used"), "{stderr}");
    assert_eq!(kept(), 1, "the kept code was removed");
}

/// WAVE takes an option's or an ok's payload written bare (`{a: 1}` for
/// `some({a: 1})`): a misspelt field there is refused as it is elsewhere,
/// not passed over. `f` answers its record's `a` (0 for `none`), `g` the
/// ok record's `a` (0 for `err`).
#[test]
fn a_misspelt_field_in_a_bare_option_or_ok_payload_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bare.wasm");
    let wat = r#"(component
      (core module $m
        (func (export "f") (param i32 i32) (result i32)
          (select (local.get 1) (i32.const 0) (local.get 0)))
        (func (export "g") (param i32 i32) (result i32)
          (select (i32.const 0) (local.get 1) (local.get 0))))
      (core instance $i (instantiate $m))
      (type $r (record (field "a" u32)))
      (type $o (option $r))
      (type $res (result $r))
      (func $f (param "o" $o) (result u32) (canon lift (core func $i "f")))
      (func $g (param "x" $res) (result u32) (canon lift (core func $i "g")))
      (instance $api (export "r" (type $r)) (export "f" (func $f)) (export "g" (func $g)))
      (export "demo:bare/api@1.0.0" (instance $api)))"#;
    std::fs::write(&file, wat::parse_str(wat).unwrap()).unwrap();
    let file = file.to_str().unwrap();
    for (request, answer) in [
        ("demo:bare/api#f({a: 5})", "5\n"),
        ("demo:bare/api#f(some({a: 6}))", "6\n"),
        ("demo:bare/api#f(none)", "0\n"),
        ("demo:bare/api#g({a: 7})", "7\n"),
        ("demo:bare/api#g(ok({a: 8}))", "8\n"),
    ] {
        let out = run(&["call", file, request]);
        assert_eq!(
            text(&out.stdout),
            answer,
            "{request}: {}",
            text(&out.stderr)
        );
    }
    for (request, argument) in [
        ("demo:bare/api#f({a: 5, b: 1})", "argument o"),
        ("demo:bare/api#f(some({a: 6, b: 1}))", "argument o"),
        ("demo:bare/api#g({a: 7, b: 1})", "argument x"),
        ("demo:bare/api#g(ok({a: 8, b: 1}))", "argument x"),
    ] {
        let stderr = refused_call(file, request);
        assert!(
            stderr.contains(&format!(
                "{argument}: the record has no field `b` (its fields: a)"
            )),
            "{request}: {stderr}"
        );
    }
}

/// A component that also exports a type, which WIT cannot say: `call`
/// runs it as `watch` does (it was refused, its WIT unreadable), and
/// `inspect` says what wasmtime finds it exports.
#[test]
fn a_component_whose_wit_cannot_be_read_is_still_called_and_inspected() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typed.wasm");
    let wat = r#"(component
      (core module $m (func (export "f") (result i32) i32.const 7))
      (core instance $i (instantiate $m))
      (func $f (result u32) (canon lift (core func $i "f")))
      (instance $api (export "f" (func $f)))
      (export "demo:w/a@1.0.0" (instance $api))
      (type $t u32)
      (export "ty" (type $t)))"#;
    std::fs::write(&file, wat::parse_str(wat).unwrap()).unwrap();
    let file = file.to_str().unwrap();
    let out = run(&["call", file, "demo:w/a#f()"]);
    assert_eq!(text(&out.stdout), "7\n", "{}", text(&out.stderr));
    let out = run(&["inspect", file]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let found = text(&out.stdout);
    assert!(found.contains("cannot decode the WIT"), "{found}");
    assert!(
        found.contains("// export demo:w/a@1.0.0\n//   f: func() -> u32"),
        "{found}"
    );
}

#[test]
fn a_replaced_file_is_answered_from_by_the_next_calls() {
    let dir = plugin_dir(&[("g.wasm", "greeter_a")]);
    let mut s = Session::start(dir.path(), &[]);
    assert_eq!(
        s.ask(r#"demo:greeter/greet#hello("x")"#),
        r#""a: hello, x""#
    );
    let tmp = dir.path().join(".g.partial");
    std::fs::copy(plugin_path("greeter_b"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.path().join("g.wasm")).unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let answer = s.ask(r#"demo:greeter/greet#hello("x")"#);
        if answer == r#""b: bonjour, x""# {
            break;
        }
        assert_eq!(answer, r#""a: hello, x""#);
        assert!(Instant::now() < deadline, "the reload never showed");
    }
    let (ok, _, stderr) = s.finish();
    assert!(ok);
    assert!(
        stderr.contains("reloaded"),
        "the reload is logged on stderr: {stderr}"
    );
}

#[test]
fn plugin_output_never_reaches_stdout() {
    let dir = plugin_dir(&[("chatty.wasm", "chatty"), ("rogue.wasm", "rogue")]);
    let mut s = Session::start(dir.path(), &[]);
    assert_eq!(
        s.ask(r#"demo:greeter/greet#hello("x")"#),
        r#""chatty: hi, x""#
    );
    // What a plugin prints reaches the log with its control characters
    // written out: a carriage return hid the line's prefix, and a line
    // feed, printed in one line, forged a log line of its own.
    assert_eq!(
        s.ask(r#"demo:greeter/greet#hello("y\r2026-01-01T00:00:00Z  INFO forged\u{1b}]0;t\u{7}")"#),
        r#""chatty: hi, y\r2026-01-01T00:00:00Z  INFO forged\u{1b}]0;t\u{7}""#
    );
    assert_eq!(s.ask("demo:rogue/misbehave#flood(50, 20)"), "()");
    assert_eq!(
        s.ask("demo:rogue/misbehave#trap()").split(' ').next(),
        Some("error:")
    );
    let (ok, rest, stderr) = s.finish();
    assert!(ok);
    assert!(rest.is_empty(), "stdout holds answers only: {rest:?}");
    assert!(
        stderr.contains(r"greeting y\r2026-01-01T00:00:00Z  INFO forged\u{1b}]0;t\u{7}"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(['\r', '\u{1b}', '\u{7}']),
        "a control character reached the log: {stderr:?}"
    );
    assert!(
        stderr.contains("[chatty stdout] chatty stdout: greeting x"),
        "{stderr}"
    );
    assert!(
        stderr.contains("[chatty stderr] chatty stderr: greeting x"),
        "{stderr}"
    );
    assert!(stderr.contains("rogue: trapping on request"), "{stderr}");

    // `call` too, though it logs only warnings: the plugin is what its user
    // is looking at. `HOTSLOT_LOG` still decides when it is set.
    let chatty = plugin_path("chatty");
    let request = r#"demo:greeter/greet#hello("z")"#;
    let out = run(&["call", chatty.to_str().unwrap(), request]);
    assert_eq!(text(&out.stdout), "\"chatty: hi, z\"\n");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("[chatty stdout] chatty stdout: greeting z")
            && stderr.contains("[chatty stderr] chatty stderr: greeting z"),
        "{stderr}"
    );
    let logged: Vec<&str> = stderr.lines().filter(|l| !l.contains(" WARN ")).collect();
    assert_eq!(logged.len(), 2, "nothing but the plugin's lines: {stderr}");
    let out = hotslot()
        .args(["call", chatty.to_str().unwrap(), request])
        .env("HOTSLOT_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "\"chatty: hi, z\"\n");
    assert_eq!(text(&out.stderr), "", "HOTSLOT_LOG=warn");
}

fn run(args: &[&str]) -> Output {
    hotslot().args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `hotslot call FILE REQUEST`, which must fail (exit 1) with nothing on
/// stdout: its stderr.
fn refused_call(file: impl AsRef<Path>, request: &str) -> String {
    let file = file.as_ref().to_str().unwrap();
    let out = run(&["call", file, request]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{request}: {stderr}");
    assert!(out.stdout.is_empty(), "{request}: {}", text(&out.stdout));
    stderr
}

#[test]
fn call_answers_on_stdout_and_exits_by_outcome() {
    let calc = plugin_path("calc");
    let calc = calc.to_str().unwrap();
    let out = run(&["call", calc, "demo:calc/math@1#add(1, 2)"]);
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(0), "3\n".to_string())
    );

    let filter = plugin_path("filter_basic");
    let out = run(&[
        "call",
        filter.to_str().unwrap(),
        r#"demo:text/filter#check("", {case-mode: keep, max-len: none, banned: [], scope: {}})"#,
    ]);
    assert_eq!(out.status.code(), Some(0), "an err value is an answer");
    assert_eq!(text(&out.stdout), "err(\"empty line\")\n");
    // A misspelt field is refused, not passed over (WAVE passes over it,
    // and the `option` field misspelt would be `none`).
    let stderr = refused_call(
        &filter,
        r#"demo:text/filter#check("abcdef", {case-mode: keep, max-lenn: some(3), banned: [], scope: {}})"#,
    );
    assert!(
        stderr.contains("argument opts: the record has no field `max-lenn`"),
        "{stderr}"
    );

    // The contract with the host is not for requests.
    let stderr = refused_call(
        plugin_path("counter_memory"),
        "hotslot:plugin/migrate#snapshot()",
    );
    assert!(stderr.contains("is what the host calls on"), "{stderr}");
    // An interface the file does not export: the file and what it does
    // export are named.
    for request in ["demo:nope/x#f()", "demo:calc/math@2#add(1, 2)"] {
        let stderr = refused_call(calc, request);
        assert!(
            stderr.contains("calc.wasm does not export demo:")
                && stderr.contains("(it exports: demo:calc/math@1.0.0, demo:greeter/greet@1.0.0)"),
            "{request}: {stderr}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"not wasm").unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, wat::parse_str("(module)").unwrap()).unwrap();
    let missing = dir.path().join("missing.wasm");
    for (file, expected) in [
        (&missing, "missing.wasm"),
        (&garbage, "not a WebAssembly binary"),
        (&core, "core WebAssembly module"),
    ] {
        let stderr = refused_call(file, "demo:calc/math#add(1, 2)");
        assert!(
            stderr.contains(expected)
                && stderr.contains(file.file_name().unwrap().to_str().unwrap()),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }

    let res = dir.path().join("res.wasm");
    std::fs::write(&res, resource_maker()).unwrap();
    let stderr = refused_call(&res, "demo:res/r#make()");
    assert!(
        stderr.contains("#make: it takes or gives a resource handle"),
        "{stderr}"
    );

    let out = run(&["call", calc, "demo:calc/math#add(1, \"two\")"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("error: "));
    // A value of the right kind that is still wrong is quoted, and why
    // said (it was "expected s32, got a number").
    for (request, said) in [
        (
            "demo:calc/math#add(2147483648, 1)",
            "got a number (`2147483648`: out of range)",
        ),
        (
            "demo:calc/math#add(1.5, 1)",
            "got a number (`1.5`: not a whole number)",
        ),
    ] {
        let out = run(&["call", calc, request]);
        let stderr = text(&out.stderr);
        assert!(stderr.contains(said), "{request}: {stderr}");
    }
    let out = run(&[
        "call",
        filter.to_str().unwrap(),
        r#"demo:text/filter#check("x", {case-mode: kep, max-len: none, banned: [], scope: {}})"#,
    ]);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("got a record (`kep`: expected an enum"),
        "{stderr}"
    );

    let out = run(&["call", calc]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    // A request that cannot be read is one too, said before compiling:
    // even for a file that is not there.
    for request in [
        "garbage",
        "add(1, 2)",
        "nosuch#add(1, 2)",
        "demo:calc/math#add(1,",
    ] {
        let out = run(&["call", missing.to_str().unwrap(), request]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{request}: {stderr}");
        assert!(stderr.contains(request), "{stderr}");
        assert!(!stderr.contains("missing.wasm"), "{stderr}");
    }
}

#[test]
fn watch_refuses_a_file_for_a_directory() {
    let calc = plugin_path("calc");
    let out = hotslot()
        .args(["watch"])
        .arg(&calc)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("calc.wasm") && stderr.contains("not a directory"),
        "{stderr}"
    );
}

#[test]
fn a_reader_gone_before_the_answer_is_no_failure() {
    // `hotslot inspect x.wasm | head`: the pipe's reader has gone by the
    // time the answer is written (closed here before the child has even
    // read the file).
    for args in [
        vec!["inspect", "greeter_py"],
        vec!["call", "calc", "demo:calc/math#add(40, 2)"],
    ] {
        let mut command = hotslot();
        command
            .arg(args[0])
            .arg(plugin_path(args[1]))
            .args(&args[2..]);
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn inspect_prints_the_wit_of_imports_and_exports() {
    let out = run(&["inspect", plugin_path("filter_basic").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let wit = text(&out.stdout);
    assert!(wit.contains("export demo:text/filter@1.2.0;"), "{wit}");
    assert!(wit.contains("import wasi:cli/stdout@0.2"), "{wit}");
    assert!(wit.contains("package demo:text@1.2.0"), "{wit}");
    // What each WASI import gives the plugin.
    let out = run(&["inspect", plugin_path("rogue").to_str().unwrap()]);
    let rogue = text(&out.stdout);
    for said in [
        "wasi:cli/environment@0.2.12: WASI: empty unless the manifest's [env] grants variables",
        "wasi:cli/stdout@0.2.12: WASI: what it writes goes to the host's log",
        "wasi:filesystem/preopens@0.2.12: WASI: no directory unless the manifest's [[dir]]",
        "wasi:clocks/wall-clock@0.2.12: WASI: always offered",
    ] {
        assert!(rogue.contains(said), "no `{said}` in:\n{rogue}");
    }
    // Every function and type of the WIT source is in the output, as written.
    let source = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/text/filter.wit"),
    )
    .unwrap();
    for line in source.lines().map(str::trim) {
        let declares = line.contains(": func(")
            || ["record ", "variant ", "enum ", "flags "]
                .iter()
                .any(|k| line.starts_with(k));
        // Types print over several lines: their opening is compared.
        let expected = match line.find('{') {
            Some(brace) if !line.contains(": func(") => &line[..=brace],
            _ => line,
        };
        if declares {
            assert!(wit.contains(expected), "missing `{expected}` in:\n{wit}");
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"nope").unwrap();
    let out = run(&["inspect", garbage.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("garbage.wasm"));
}

/// `list DIR` says a plugin waits only for what no file in the directory
/// serves, wherever the provider comes by name.
#[test]
fn list_counts_a_provider_that_comes_after_its_dependent() {
    let loads_of_banner = |files: &[(&str, &str)]| {
        let dir = plugin_dir(files);
        let out = run(&["list", dir.path().to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let table = text(&out.stdout);
        let row = table
            .lines()
            .find(|l| l.starts_with("a_banner.wasm"))
            .unwrap_or_else(|| panic!("no banner row in\n{table}"))
            .to_string();
        row.split_whitespace().skip(3).collect::<Vec<_>>().join(" ")
    };
    assert_eq!(
        loads_of_banner(&[("a_banner.wasm", "banner")]),
        "yes, waiting for demo:greeter/greet@1.0.0"
    );
    assert_eq!(
        loads_of_banner(&[("a_banner.wasm", "banner"), ("z_greeter.wasm", "greeter_a")]),
        "yes"
    );
}

#[test]
fn list_shows_what_watch_would_load() {
    let dir = plugin_dir(&[("greeter_a.wasm", "greeter_a"), ("calc.wasm", "calc")]);
    std::fs::write(dir.path().join("broken.wasm"), b"\0asm\x0d\0\x01\0garbage").unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"ignored").unwrap();
    let out = run(&["list", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["FILE", "INTERFACE", "SIZE", "LOADS"]);
    assert_eq!(rows[1][..2], ["broken.wasm", "-"]);
    assert_eq!(rows[1][3], "no:");
    assert_eq!(rows[2][..2], ["calc.wasm", "demo:calc/math@1.0.0"]);
    assert_eq!(rows[3][..2], ["calc.wasm", "demo:greeter/greet@1.0.0"]);
    assert_eq!(rows[4][..2], ["greeter_a.wasm", "demo:greeter/greet@1.0.0"]);
    let size = std::fs::metadata(dir.path().join("greeter_a.wasm"))
        .unwrap()
        .len();
    assert_eq!(rows[4][2], size.to_string());
    assert_eq!(rows[4][3], "yes");
    assert!(!table.contains("notes.txt"));
}

/// A file that does not load still shows what it would serve, and why it
/// does not as `call` would say it; a dependent whose only provider does
/// not fit says so; a file name cannot write to the terminal.
#[test]
fn list_says_what_a_refused_file_would_serve_and_why() {
    let dir = plugin_dir(&[("a_banner.wasm", "banner"), ("calc.wasm", "calc")]);
    let path = |name: &str| dir.path().join(name);
    std::fs::write(path("calc.toml"), "[limits]\nmax-memory-mib = 0\n").unwrap();
    std::fs::write(path("odd.wasm"), crate::common::greeter_of_other_types()).unwrap();
    let keyvalue = r#"(component
        (import "wasi:keyvalue/store@0.2.0" (instance (export "get" (func (result u32)))))
        (instance $e)
        (export "demo:probe/probe@1.0.0" (instance $e)))"#;
    std::fs::write(path("kv.wasm"), wat::parse_str(keyvalue).unwrap()).unwrap();
    std::fs::copy(plugin_path("greeter_b"), path("e\u{1b}[31mred.wasm")).unwrap();
    // A reason over several lines (TOML's), and a contract with the host.
    std::fs::copy(plugin_path("greeter_b"), path("torn.wasm")).unwrap();
    std::fs::write(path("torn.toml"), "[limits\n").unwrap();
    std::fs::copy(plugin_path("counter_memory"), path("cm.wasm")).unwrap();
    std::fs::write(path("cm.toml"), "[limits]\nmax-memory-mib = 0\n").unwrap();
    let out = run(&["list", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let loads = |file: &str, interface: &str| -> String {
        let row = table
            .lines()
            .find(|l| l.starts_with(file) && l.contains(interface))
            .unwrap_or_else(|| panic!("no {file} {interface} row in\n{table}"));
        row.split_whitespace().skip(3).collect::<Vec<_>>().join(" ")
    };
    assert!(
        loads("a_banner.wasm", "demo:banner/banner@1.0.0")
            .starts_with("yes, demo:greeter/greet@1.0.0 from `odd` does not fit"),
        "{table}"
    );
    for interface in ["demo:calc/math@1.0.0", "demo:greeter/greet@1.0.0"] {
        assert!(
            loads("calc.wasm", interface).starts_with("no: cannot instantiate"),
            "{table}"
        );
    }
    assert!(
        loads("kv.wasm", "demo:probe/probe@1.0.0").contains(
            "cannot be linked: it imports wasi:keyvalue/store@0.2.0: \
             hotslot does not offer wasi:keyvalue to plugins"
        ),
        "{table}"
    );
    assert!(table.contains(r"e\u{1b}[31mred.wasm"), "{table}");
    assert!(!table.contains('\u{1b}'), "{table:?}");
    let torn = loads("torn.wasm", "demo:greeter/greet@1.0.0");
    assert!(
        torn.starts_with("no: bad manifest") && !torn.contains(r"\n"),
        "{torn}"
    );
    assert!(
        loads("cm.wasm", "demo:counter/counter@1.0.0").starts_with("no: cannot instantiate"),
        "{table}"
    );
    let contract_rows = table.lines().filter(|l| {
        l.split_whitespace()
            .nth(1)
            .is_some_and(|i| i.starts_with("hotslot:"))
    });
    assert_eq!(contract_rows.count(), 0, "its contract is no row: {table}");
}

/// `[imports]` mistakes are said: a plugin named that is not there is
/// what the dependent waits for, by name; an interface misspelt (one the
/// component does not import) refuses the manifest rather than choosing
/// nothing.
#[test]
fn imports_named_in_a_manifest_are_checked_and_said() {
    let dir = plugin_dir(&[("banner.wasm", "banner"), ("greeter_a.wasm", "greeter_a")]);
    let manifest = dir.path().join("banner.toml");
    std::fs::write(
        &manifest,
        "[imports]\n\"demo:greeter/greet\" = \"nobody\"\n",
    )
    .unwrap();
    let banner = dir.path().join("banner.wasm");
    let out = run(&["list", dir.path().to_str().unwrap()]);
    let table = text(&out.stdout);
    assert!(
        table.contains("yes, waiting for demo:greeter/greet@1.0.0 from `nobody`"),
        "{table}"
    );
    let stderr = refused_call(&banner, r#"demo:banner/banner#show("x")"#);
    assert!(
        stderr.contains("`nobody`, which the dependent's manifest names for it"),
        "{stderr}"
    );

    std::fs::write(
        &manifest,
        "[imports]\n\"demo:greter/greet\" = \"greeter_a\"\n",
    )
    .unwrap();
    let out = run(&["list", dir.path().to_str().unwrap()]);
    let table = text(&out.stdout);
    assert!(
        table.contains("no: bad manifest")
            && table.contains(
                "banner.wasm does not import from another plugin \
                 (it imports: demo:greeter/greet@1.0.0)"
            )
            && table.contains("[imports] names demo:greter/greet, which "),
        "{table}"
    );
}

/// A reload whose outgoing instance's `snapshot` traps is taken all the
/// same (it was refused, and so was every reload after it), and the log
/// names the file that starts without the memory.
#[test]
fn a_trapping_snapshot_is_logged_with_the_file_that_takes_over() {
    let wat = r#"(component
        (core module $m
          (memory (export "mem") 1)
          (func (export "realloc") (param i32 i32 i32 i32) (result i32) i32.const 64)
          (func (export "snapshot") (result i32) unreachable)
          (func (export "restore") (param i32 i32) (result i32) i32.const 0)
          (func (export "seven") (result i32) i32.const 7))
        (core instance $i (instantiate $m))
        (alias core export $i "mem" (core memory $mem))
        (alias core export $i "realloc" (core func $realloc))
        (func $snapshot (result (list u8)) (canon lift (core func $i "snapshot") (memory $mem)))
        (func $restore (param "snapshot" (list u8)) (result (result (error string)))
          (canon lift (core func $i "restore") (memory $mem) (realloc $realloc)))
        (func $seven (result u32) (canon lift (core func $i "seven")))
        (instance $migrate (export "snapshot" (func $snapshot)) (export "restore" (func $restore)))
        (export "hotslot:plugin/migrate@0.1.0" (instance $migrate))
        (instance $api (export "seven" (func $seven)))
        (export "demo:keep/api@1.0.0" (instance $api)))"#;
    let bytes = wat::parse_str(wat).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keep.wasm"), &bytes).unwrap();
    let mut s = Session::start(dir.path(), &[]);
    assert_eq!(s.ask("demo:keep/api#seven()"), "7");
    let tmp = dir.path().join(".keep.partial");
    std::fs::write(&tmp, with_build_id(&bytes, "2")).unwrap();
    std::fs::rename(&tmp, dir.path().join("keep.wasm")).unwrap();
    s.wait_log("failed in snapshot", "the fault was not logged");
    let log = s.stderr.lock().unwrap().clone();
    let line = log
        .lines()
        .find(|l| l.contains("failed in snapshot"))
        .unwrap();
    assert!(
        line.contains("memory is lost with it; ") && line.contains("keep.wasm starts without it"),
        "{line}"
    );
    let deadline = Instant::now() + DEADLINE;
    while !s.lines("list").iter().any(|l| l.ends_with(" keep 2")) {
        assert!(Instant::now() < deadline, "the new version never served");
    }
    assert_eq!(s.ask("demo:keep/api#seven()"), "7");
    s.kill();
}

#[test]
fn every_command_has_help_with_an_example() {
    for command in ["watch", "call", "inspect", "list", "diff", "new"] {
        let out = run(&[command, "--help"]);
        assert_eq!(out.status.code(), Some(0));
        let help = text(&out.stdout);
        assert!(help.contains("Example"), "{command}: {help}");
    }
}

/// Reads `list` answers up to `end`.
fn listed(s: &mut Session) -> Vec<String> {
    s.send("list");
    let mut lines = Vec::new();
    loop {
        let line = s.next_line("list");
        if line == "end" {
            return lines;
        }
        lines.push(line);
    }
}

/// The tally plugin exports two interfaces over one count: through `watch`
/// they share one instance, and a reload moves both to one new instance.
#[test]
fn two_interfaces_of_one_plugin_share_a_count_through_watch() {
    let dir = plugin_dir(&[("tally.wasm", "tally")]);
    let mut s = Session::start(dir.path(), &[]);
    assert_eq!(s.ask("demo:tally/counter#add(5)"), "5");
    assert_eq!(s.ask("demo:tally/admin@1#total()"), "5");
    assert_eq!(s.ask("demo:tally/counter#add(2)"), "7");
    let before = listed(&mut s);
    assert_eq!(before.len(), 2, "{before:?}");
    let generation = |line: &str| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap();
    assert_eq!(generation(&before[0]), generation(&before[1]));

    // A manifest change reloads the plugin.
    let tmp = dir.path().join(".tally.toml.partial");
    std::fs::write(&tmp, "[env]\nTALLY_VERSION = \"v2\"\n").unwrap();
    std::fs::rename(&tmp, dir.path().join("tally.toml")).unwrap();
    let deadline = Instant::now() + DEADLINE;
    while s.ask("demo:tally/admin#version()") != r#""v2""# {
        assert!(Instant::now() < deadline, "the reload never showed");
    }
    assert_eq!(s.ask("demo:tally/admin#total()"), "0", "a new instance");
    assert_eq!(s.ask("demo:tally/counter#add(1)"), "1");
    assert_eq!(
        s.ask("demo:tally/admin#total()"),
        "1",
        "one instance for both"
    );
    let after = listed(&mut s);
    assert_eq!(generation(&after[0]), generation(&after[1]));
    assert!(generation(&after[0]) > generation(&before[0]));
    let (ok, _, _) = s.finish();
    assert!(ok);
}

/// `NAME::INTERFACE#FUNCTION(ARGS)` reaches a plugin that is not the first
/// to serve the interface, in `watch` and in `call`; `help` lists the forms,
/// `quit` leaves, and a wrongly typed argument is named.
#[test]
fn a_request_can_name_its_plugin_and_the_session_explains_itself() {
    let dir = plugin_dir(&[("a_greeter.wasm", "greeter_a"), ("mine.wasm", "greeter_b")]);
    let mut s = Session::start(dir.path(), &[]);
    assert_eq!(
        s.ask(r#"demo:greeter/greet#hello("x")"#),
        r#""a: hello, x""#
    );
    assert_eq!(
        s.ask(r#"mine::demo:greeter/greet#hello("x")"#),
        r#""b: bonjour, x""#
    );
    assert_eq!(
        s.ask(r#"mine::demo:calc/math#add(1, 2)"#),
        "error: `mine` does not serve demo:calc/math (it serves: demo:greeter/greet@1.0.0)"
    );
    assert_eq!(
        s.ask(r#"nobody::demo:greeter/greet#hello("x")"#),
        "error: no plugin named `nobody` is loaded"
    );
    // A name as its Rust project spells it, not as its file does.
    assert_eq!(
        s.ask(r#"a-greeter::demo:greeter/greet#hello("x")"#),
        "error: no plugin named `a-greeter` is loaded (`a_greeter` is: a plugin is \
         named after its file, `a_greeter.wasm`)"
    );
    assert_eq!(
        s.ask(r#"demo:greeter/greet#hello(42)"#),
        "error: demo:greeter/greet@1.0.0#hello: argument name: expected string, got a number"
    );
    s.send("help");
    let mut help = Vec::new();
    loop {
        let line = s.next_line("help");
        if line == "end" {
            break;
        }
        help.push(line);
    }
    let help = help.join("\n");
    for form in ["NAME::INTERFACE", "list", "state NAME", "quit"] {
        assert!(help.contains(form), "{help}");
    }
    // A command mistyped is told its form, not taken for a request.
    for (line, said) in [
        ("state", "it is `state NAME`"),
        ("stats calc", "`stats` takes nothing after it"),
        ("exit", "to leave: `quit`"),
    ] {
        let answer = s.ask(line);
        assert!(
            answer.starts_with(&format!("error: `{line}`: ")) && answer.contains(said),
            "{line}: {answer}"
        );
    }
    s.send("quit");
    let (ok, rest, _) = s.finish();
    assert!(ok && rest.is_empty(), "{rest:?}");

    let calc = plugin_path("calc");
    let out = run(&[
        "call",
        calc.to_str().unwrap(),
        "calc::demo:calc/math#add(40, 2)",
    ]);
    assert_eq!(text(&out.stdout), "42\n");
    let out = run(&[
        "call",
        calc.to_str().unwrap(),
        "other::demo:calc/math#add(40, 2)",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no plugin named `other`"));
    let out = run(&[
        "call",
        calc.to_str().unwrap(),
        r#"demo:calc/math#add("a", 2)"#,
    ]);
    assert!(
        text(&out.stderr)
            .contains("demo:calc/math@1.0.0#add: argument a: expected s32, got a string"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn arguments_left_out_may_only_be_trailing_options() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pad.wasm");
    let component = wat::parse_str(
        r#"(component
            (core module $m
                (func (export "pad") (param i32 i32 i32) (result i32)
                    local.get 0 local.get 2 i32.add))
            (core instance $i (instantiate $m))
            (func $pad (param "n" s32) (param "by" (option u8)) (result s32)
                (canon lift (core func $i "pad")))
            (instance $text (export "pad" (func $pad)))
            (export "demo:pad/text@1.0.0" (instance $text))
        )"#,
    )
    .unwrap();
    std::fs::write(&file, component).unwrap();
    let call = |request: &str| run(&["call", file.to_str().unwrap(), request]);
    assert_eq!(text(&call("demo:pad/text#pad(40, some(2))").stdout), "42\n");
    assert_eq!(text(&call("demo:pad/text#pad(40)").stdout), "40\n");
    // A wrong first argument is named as such, not as a missing second.
    let out = call(r#"demo:pad/text#pad("x")"#);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("demo:pad/text@1.0.0#pad: argument n: expected s32, got a string"),
        "{stderr}"
    );
    let out = call("demo:pad/text#pad()");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("#pad: takes 1 to 2 argument(s) (n: s32, by: option<u8>), got 0"),
        "{stderr}"
    );
}

/// `demo:calc/math@1.0.0` with `add` over `ty` (`s32` or `s64`) answering
/// `a + b + bonus`.
fn wat_math(ty: &str, bonus: i64) -> Vec<u8> {
    let core = if ty == "s32" { "i32" } else { "i64" };
    wat::parse_str(format!(
        r#"(component
            (core module $m (func (export "add") (param {core} {core}) (result {core})
                local.get 0 local.get 1 {core}.add {core}.const {bonus} {core}.add))
            (core instance $i (instantiate $m))
            (func $add (param "a" {ty}) (param "b" {ty}) (result {ty}) (canon lift (core func $i "add")))
            (instance $math (export "add" (func $add)))
            (export "demo:calc/math@1.0.0" (instance $math))
        )"#
    ))
    .unwrap()
}

/// A file removed and written again must keep what its plugin served (a
/// build after `cargo clean` that broke the contract is refused, as a
/// reload is); `forget NAME` lets the next one serve other functions.
#[test]
fn a_file_removed_keeps_its_contract_until_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let math = dir.path().join("math.wasm");
    let tmp = dir.path().join(".math.tmp");
    let put = |ty: &str| {
        std::fs::write(&tmp, wat_math(ty, 0)).unwrap();
        std::fs::rename(&tmp, &math).unwrap();
    };
    put("s32");
    let mut s = Session::start(dir.path(), &[]);
    assert_eq!(s.ask("demo:calc/math#add(40, 2)"), "42");
    std::fs::remove_file(&math).unwrap();
    let deadline = Instant::now() + DEADLINE;
    while !s.ask("demo:calc/math#add(40, 2)").starts_with("error: ") {
        assert!(Instant::now() < deadline, "never removed");
    }
    put("s64");
    s.wait_log("would break the contract", "no refusal logged");
    let answer = s.ask("demo:calc/math#add(40, 2)");
    assert!(
        answer.contains("`math`'s file was refused") && answer.contains("forget NAME"),
        "{answer}"
    );
    assert!(s
        .ask("forget math")
        .starts_with("forgot what `math` served"));
    put("s64");
    let deadline = Instant::now() + DEADLINE;
    while s.ask("demo:calc/math#add(40, 2)") != "42" {
        assert!(Instant::now() < deadline, "the forgotten name never loaded");
    }
    assert!(s.ask("forget math").contains("has nothing to forget"));
    assert!(s.ask("forget").starts_with("error: "));
    let (ok, _, _) = s.finish();
    assert!(ok);
}

/// A reload that changes `add(a: s32, b: s32) -> s32` to s64 under the same
/// version is refused with both signatures, and the old version answers;
/// `hotslot diff` shows the same and exits 1.
#[test]
fn a_reload_that_changes_a_signature_is_refused_and_diff_says_why() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("math.wasm"), wat_math("s32", 0)).unwrap();
    let mut s = Session::start(dir.path(), &[]);
    assert_eq!(s.ask("demo:calc/math#add(40, 2)"), "42");
    let tmp = dir.path().join(".math.tmp");
    std::fs::write(&tmp, wat_math("s64", 0)).unwrap();
    std::fs::rename(&tmp, dir.path().join("math.wasm")).unwrap();
    s.wait_log("would break the contract", "no rejection logged");
    assert_eq!(
        s.ask("demo:calc/math#add(40, 2)"),
        "42",
        "the old version answers"
    );
    // A request nothing serves does not blame the refused reload of a
    // plugin that serves on.
    let unserved = s.ask("demo:nothing/here#f()");
    assert!(
        unserved.starts_with("error: ") && !unserved.contains("math"),
        "{unserved}"
    );
    // A compatible change (same signature, new code) is taken.
    std::fs::write(&tmp, wat_math("s32", 1)).unwrap();
    std::fs::rename(&tmp, dir.path().join("math.wasm")).unwrap();
    let deadline = Instant::now() + DEADLINE;
    while s.ask("demo:calc/math#add(40, 2)") != "43" {
        assert!(
            Instant::now() < deadline,
            "the compatible reload never came"
        );
    }
    let (ok, _, stderr) = s.finish();
    assert!(ok);
    assert!(stderr.contains("func(a: s32, b: s32) -> s32"), "{stderr}");
    assert!(stderr.contains("func(a: s64, b: s64) -> s64"), "{stderr}");

    let old = dir.path().join("old.wasm");
    let new = dir.path().join("new.wasm");
    std::fs::write(&old, wat_math("s32", 0)).unwrap();
    std::fs::write(&new, wat_math("s64", 0)).unwrap();
    let out = run(&["diff", old.to_str().unwrap(), new.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("- add: func(a: s32, b: s32) -> s32"),
        "{shown}"
    );
    assert!(
        shown.contains("+ add: func(a: s64, b: s64) -> s64"),
        "{shown}"
    );
    assert!(shown.contains("refused"), "{shown}");
    let out = run(&["diff", old.to_str().unwrap(), old.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("compatible"));
    // An interface gone is said as such (it was said as a signature changed).
    let greeter = plugin_path("greeter_a");
    let out = run(&["diff", old.to_str().unwrap(), greeter.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let shown = text(&out.stdout);
    assert!(shown.contains("demo:calc/math@1.0.0: gone from"), "{shown}");
    assert!(
        shown.contains("refused: a reload must serve every interface"),
        "{shown}"
    );
    assert!(!shown.contains("every function must stay"), "{shown}");
    // One added is said too, and taken.
    let calc = plugin_path("calc");
    let out = run(&["diff", old.to_str().unwrap(), calc.to_str().unwrap()]);
    let shown = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("demo:greeter/greet@1.0.0: new in") && shown.contains("(added)"),
        "{shown}"
    );
    assert!(shown.contains("compatible"), "{shown}");
}

/// A request to a plugin whose provider is still loading waits for it, as
/// a request to a plugin still loading does: the first answer is the real one.
#[test]
fn a_dependent_asked_at_once_waits_for_its_provider_to_load() {
    for _ in 0..3 {
        let dir = plugin_dir(&[
            ("a_banner.wasm", "banner"),
            ("z_greeter.wasm", "greeter_py"),
        ]);
        let mut s = Session::start(dir.path(), &[]);
        // It waits for the Python interpreter to compile when nothing has
        // kept its code yet.
        let answer = s.ask_within(r#"demo:banner/banner#show("x")"#, COMPILE_PATIENCE);
        assert!(answer.contains("py: hello, x"), "{answer}");
        s.finish();
    }
}

/// `state NAME` asked at start waits for the plugin to load, as a call to
/// it would: it answered "no plugin named" before the directory was
/// listed, and a bare `end` (the state not yet read back nor written by
/// `on-start`) while it loaded. A name whose file never loads has no state.
/// A race by nature: five starts, each asking at once.
#[test]
fn state_asked_at_once_waits_for_the_plugin() {
    for _ in 0..5 {
        let dir = plugin_dir(&[("a_greeter.wasm", "greeter_a"), ("c.wasm", "counter_state")]);
        std::fs::write(dir.path().join("bad.wasm"), b"not a component").unwrap();
        let mut s = Session::start(dir.path(), &[]);
        // The counter's `on-start` counts its starts in its state.
        let answer = s.ask("state c");
        assert!(answer.starts_with("\"starts\" "), "{answer}");
        assert_eq!(s.next_line("state c"), "end");
        // Asked at once too, and told why it is not there.
        for request in ["state bad", "bad::demo:greeter/greet#hello(\"x\")"] {
            let answer = s.ask(request);
            assert!(
                answer
                    .starts_with("error: no plugin named `bad` is loaded: its file was refused: ")
                    && answer.contains("not a usable component"),
                "{answer}"
            );
        }
        // A request nothing serves names the file refused, whose plugin
        // might have served it.
        let answer = s.ask("demo:calc/math#add(1, 2)");
        assert!(
            answer.starts_with("error: no implementation")
                && answer.contains("; `bad`'s file was refused: ")
                && answer.contains("not a usable component"),
            "{answer}"
        );
        s.finish();
    }
}

/// `stats` asked at once tells of the directory as loaded, as `list` does
/// (it answered a bare `end` while the directory loaded).
#[test]
fn stats_asked_at_once_waits_for_the_directory() {
    for _ in 0..5 {
        let dir = plugin_dir(&[("g.wasm", "greeter_a")]);
        let mut s = Session::start(dir.path(), &[]);
        let answer = s.ask("stats");
        assert!(answer.contains(" g calls=0 "), "{answer}");
        s.finish();
    }
}

/// How long a request may wait for the Python interpreter (18 MB) to
/// compile: ~5 s alone, several times that beside the other tests.
const COMPILE_PATIENCE: Duration = Duration::from_secs(120);

/// A request to a plugin already loaded is answered at once, even while a
/// file that comes before it (and exports something else) still compiles:
/// what a file exports is read from it before it compiles.
#[test]
fn a_loaded_plugin_answers_while_an_earlier_file_still_compiles() {
    let dir = plugin_dir(&[("a_py.wasm", "greeter_py"), ("z_calc.wasm", "calc")]);
    // A cache of its own: nothing kept, the interpreter compiles for seconds.
    let cache = tempfile::tempdir().unwrap();
    let mut s = Session::start_with(dir.path(), &[], &[("XDG_CACHE_HOME", cache.path())]);
    assert_eq!(s.ask("demo:calc/math#add(40, 2)"), "42");
    let log = s.stderr.lock().unwrap().clone();
    assert!(
        !log.contains("a_py.wasm with"),
        "answered only once the Python plugin had compiled:\n{log}"
    );
    assert!(log.contains("z_calc.wasm"), "{log}");
    s.kill();
}

/// `inspect` reads a component without linking or compiling it, so one that
/// would not link shows which import is missing; `call` says so before
/// compiling anything.
#[test]
fn inspect_shows_a_missing_import_and_call_refuses_it_before_compiling() {
    let dir = tempfile::tempdir().unwrap();
    let needs_kv = wat::parse_str(
        r#"(component
            (import "wasi:keyvalue/store@0.2.0" (instance $h
                (export "ping" (func (result u32)))))
            (import "demo:greeter/greet@1.0.0" (instance $g
                (export "hello" (func (param "name" string) (result string)))))
            (core module $m (func (export "v") (result i32) i32.const 1))
            (core instance $i (instantiate $m))
            (func $v (result u32) (canon lift (core func $i "v")))
            (instance $probe (export "version" (func $v)))
            (export "demo:probe/probe@1.0.0" (instance $probe))
        )"#,
    )
    .unwrap();
    let file = dir.path().join("needs_kv.wasm");
    std::fs::write(&file, needs_kv).unwrap();
    let out = run(&["inspect", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("wasi:keyvalue/store@0.2.0: missing: hotslot does not offer wasi:keyvalue"),
        "{shown}"
    );
    assert!(
        shown.contains("demo:greeter/greet@1.0.0: the registry"),
        "{shown}"
    );
    let out = run(&["call", file.to_str().unwrap(), "demo:probe/probe#version()"]);
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stderr);
    assert!(
        said.contains("cannot be linked: it imports wasi:keyvalue/store@0.2.0"),
        "{said}"
    );
    // The host's own interfaces at a version it does not serve (inspect
    // said they linked; loading refused them).
    for (import, ty) in [
        (
            "wasi:cli/environment@0.1.0",
            "(func (result (list (tuple string string))))",
        ),
        (
            "hotslot:plugin/state@0.2.0",
            "(func (result (list string)))",
        ),
    ] {
        let function = if import.starts_with("wasi") {
            "get-environment"
        } else {
            "keys"
        };
        let wat = format!(
            r#"(component
                (import "{import}" (instance (export "{function}" {ty})))
                (core module $m (func (export "v") (result i32) i32.const 1))
                (core instance $i (instantiate $m))
                (func $v (result u32) (canon lift (core func $i "v")))
                (instance $probe (export "version" (func $v)))
                (export "demo:probe/probe@1.0.0" (instance $probe)))"#
        );
        std::fs::write(&file, wat::parse_str(&wat).unwrap()).unwrap();
        let out = run(&["inspect", file.to_str().unwrap()]);
        let shown = text(&out.stdout);
        assert!(
            shown.contains(&format!("{import}: missing: hotslot offers")),
            "{shown}"
        );
        let out = run(&["call", file.to_str().unwrap(), "demo:probe/probe#version()"]);
        let said = text(&out.stderr);
        assert!(
            said.contains(&format!("cannot be linked: it imports {import}")),
            "{said}"
        );
    }
}

/// `hotslot new` refuses a WIT keyword for a name, before writing
/// anything: the scaffold's package and world would not parse.
#[test]
fn new_refuses_a_wit_keyword_for_a_name() {
    let work = tempfile::tempdir().unwrap();
    for keyword in ["world", "interface", "string", "use"] {
        let out = hotslot()
            .args(["new", keyword, "--lang", "rust"])
            .current_dir(work.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{keyword}");
        let said = text(&out.stderr);
        assert!(
            said.contains(&format!("`{keyword}` is a WIT keyword")),
            "{said}"
        );
        assert!(
            !work.path().join(keyword).exists(),
            "{keyword}: a project was written"
        );
    }
    // A Rust keyword cannot name a crate: refused for Rust only.
    for keyword in ["fn", "match", "self"] {
        let out = hotslot()
            .args(["new", keyword, "--lang", "rust"])
            .current_dir(work.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{keyword}");
        let said = text(&out.stderr);
        assert!(
            said.contains(&format!("`{keyword}` is a Rust keyword")),
            "{said}"
        );
        assert!(!work.path().join(keyword).exists(), "{keyword}");
    }
    let out = hotslot()
        .args(["new", "fn", "--lang", "python"])
        .current_dir(work.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// An import that passes resources is one the registry does not link:
/// `inspect` says so, and `call` refuses it before compiling, as loading
/// would refuse it after.
#[test]
fn inspect_and_call_refuse_imports_that_pass_resources() {
    let dir = tempfile::tempdir().unwrap();
    let probe = r#"
            (core module $m (func (export "v") (result i32) i32.const 1))
            (core instance $i (instantiate $m))
            (func $v (result u32) (canon lift (core func $i "v")))
            (instance $probe (export "version" (func $v)))
            (export "demo:probe/probe@1.0.0" (instance $probe))"#;
    let own_resource = format!(
        r#"(component
            (import "test:res/store@1.0.0" (instance
                (export "conn" (type (sub resource)))
                (export "open" (func (result (own 0))))))
            {probe})"#
    );
    let used_resource = format!(
        r#"(component
            (import "test:res/types@1.0.0" (instance $t
                (export "conn" (type (sub resource)))))
            (alias export $t "conn" (type $conn))
            (import "test:res/use@1.0.0" (instance
                (alias outer 1 $conn (type $c))
                (export "conn" (type (eq $c)))
                (export "close" (func (param "c" (borrow 1))))))
            {probe})"#
    );
    // An interface that `use`s another's resource has that resource too.
    let conn = "it has a resource type (`conn`)";
    for (stem, wat, refused) in [
        ("own", own_resource, &[("test:res/store@1.0.0", conn)][..]),
        (
            "used",
            used_resource,
            &[("test:res/types@1.0.0", conn), ("test:res/use@1.0.0", conn)],
        ),
    ] {
        let file = dir.path().join(format!("{stem}.wasm"));
        std::fs::write(&file, wat::parse_str(&wat).unwrap()).unwrap();
        let out = run(&["inspect", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let shown = text(&out.stdout);
        for (import, why) in refused {
            assert!(
                shown.contains(&format!("{import}: missing: {why}")),
                "{shown}"
            );
        }
        let import = refused[0].0;
        let out = run(&["call", file.to_str().unwrap(), "demo:probe/probe#version()"]);
        assert_eq!(out.status.code(), Some(1));
        let said = text(&out.stderr);
        assert!(
            said.contains(&format!("cannot be linked: it imports {import}")),
            "{said}"
        );
        assert!(
            !said.contains("compiled"),
            "compiled before refusing: {said}"
        );
    }
}

/// When a provider comes (or reloads) that does not fit what a dependent
/// expects, the log says so at once, before any call.
#[test]
fn a_provider_that_does_not_fit_is_reported_when_it_loads() {
    let dir = plugin_dir(&[("banner.wasm", "banner")]);
    let mut s = Session::start(dir.path(), &[]);
    assert!(s.ask("list").contains("demo:greeter/greet@1.0.0<-waiting"));
    while s.next_line("list") != "end" {}
    let wrong = crate::common::greeter_of_other_types();
    let tmp = dir.path().join(".greeter.tmp");
    std::fs::write(&tmp, wrong).unwrap();
    std::fs::rename(&tmp, dir.path().join("greeter.wasm")).unwrap();
    s.wait_log(
        "cannot use `greeter`",
        "the provider's refusal was not logged",
    );
    let (ok, _, stderr) = s.finish();
    assert!(ok);
    assert!(stderr.contains("func(n: u32) -> u32"), "{stderr}");
}

#[test]
fn call_takes_a_bare_file_name_with_its_manifest() {
    let dir = plugin_dir(&[("calc.wasm", "calc")]);
    std::fs::write(
        dir.path().join("calc.toml"),
        "[limits]\ntimeout-ms = 1000\n",
    )
    .unwrap();
    let out = hotslot()
        .args(["call", "calc.wasm", "demo:calc/math@1#add(40, 2)"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n", "{stderr}");
}

/// Asks `request` until it answers `want` (any other answer must be
/// `before`), within the deadline.
fn ask_until(s: &mut Session, request: &str, before: &str, want: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let answer = s.ask(request);
        if answer == want {
            return;
        }
        assert_eq!(answer, before);
        assert!(Instant::now() < deadline, "the reload never showed");
    }
}

#[test]
fn watch_compiles_only_what_changed_and_answers_from_the_new_code() {
    let dir = plugin_dir(&[("g.wasm", "greeter_a")]);
    // A cache of its own: code kept on disk by an earlier run would be
    // mapped, not compiled.
    let cache = tempfile::tempdir().unwrap();
    let mut s = Session::start_with(dir.path(), &[], &[("XDG_CACHE_HOME", cache.path())]);
    let hello = r#"demo:greeter/greet#hello("x")"#;
    assert_eq!(s.ask(hello), r#""a: hello, x""#);
    let bytes = std::fs::read(plugin_path("greeter_a")).unwrap();
    let tmp = dir.path().join(".g.partial");
    std::fs::write(&tmp, with_build_id(&bytes, "2")).unwrap();
    std::fs::rename(&tmp, dir.path().join("g.wasm")).unwrap();
    let deadline = Instant::now() + DEADLINE;
    // Same answer before and after: the log says when the reload is done.
    while !s.stderr.lock().unwrap().contains("(generation 2)") {
        assert!(Instant::now() < deadline, "the reload never showed");
        assert_eq!(s.ask(hello), r#""a: hello, x""#);
    }
    let (found, looked) = last_reuse(&s.stderr.lock().unwrap()).expect("a reuse line");
    // Cranelift gives a few functions other keys from one compile to the
    // next; most come back.
    assert!(found * 4 > looked * 3, "reused {found} of {looked}");
    assert_eq!(s.ask(hello), r#""a: hello, x""#);

    // Other code, sharing the standard library's: what differs is compiled.
    std::fs::copy(plugin_path("greeter_b"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.path().join("g.wasm")).unwrap();
    ask_until(&mut s, hello, r#""a: hello, x""#, r#""b: bonjour, x""#);
    // The log line after the answer: stderr is read on a thread of its own.
    s.wait_log("(generation 3)", "the reload was not logged");
    let (found, looked) = last_reuse(&s.stderr.lock().unwrap()).expect("a reuse line");
    assert!(found > 0 && found < looked, "reused {found} of {looked}");
    let (ok, _, _) = s.finish();
    assert!(ok);
}

/// A plugin exporting, beside an interface, what no call can reach (a
/// function of its world, an interface with no package) is served, and
/// the log says what else it exports and how to reach it.
#[test]
fn exports_no_call_can_reach_are_named_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mixed.wasm");
    let component = wat::parse_str(
        r#"(component
            (core module $m
                (func (export "add") (param i32 i32) (result i32)
                    local.get 0 local.get 1 i32.add))
            (core instance $i (instantiate $m))
            (func $add (param "a" s32) (param "b" s32) (result s32)
                (canon lift (core func $i "add")))
            (instance $math (export "add" (func $add)))
            (export "demo:calc/math@1.0.0" (instance $math))
            (export "sum" (func $add))
            (export "maths" (instance $math))
        )"#,
    )
    .unwrap();
    std::fs::write(&file, component).unwrap();
    let out = hotslot()
        .arg("call")
        .arg(&file)
        .arg("demo:calc/math#add(40, 2)")
        .env("HOTSLOT_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("mixed.wasm also exports what no call can reach")
            && log.contains("function `sum` of its world itself")
            && log.contains("interface `maths`, which has no package"),
        "{log}"
    );
    assert!(!log.contains("demo:calc/math@1.0.0"), "{log}");
    // Not what a toolchain adds: componentize-py's own `exports`.
    let out = hotslot()
        .arg("call")
        .arg(plugin_path("greeter_py"))
        .arg(r#"demo:greeter/greet#hello("x")"#)
        .env("HOTSLOT_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let log = text(&out.stderr);
    assert!(!log.contains("no call can reach"), "{log}");
}

/// `new --wit` takes a package that uses hotslot:plugin without having it
/// (the project gets hotslot's), a single `.wit` file, and says what it
/// takes when given a directory that is no package.
#[test]
fn new_reads_the_wit_packages_authors_have() {
    let work = tempfile::tempdir().unwrap();
    let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
    let new = |name: &str, from: &Path, world: &str| {
        hotslot()
            .args(["new", name, "--lang", "python", "--world", world])
            .arg("--wit")
            .arg(from)
            .current_dir(work.path())
            .output()
            .unwrap()
    };
    let out = new("counting", &wit.join("counter"), "stored");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let supplied = work
        .path()
        .join("counting/wit/deps/hotslot-plugin/plugin.wit");
    assert_eq!(
        std::fs::read_to_string(supplied).unwrap(),
        std::fs::read_to_string(wit.join("hotslot-plugin/plugin.wit")).unwrap()
    );
    let out = new("adding", &wit.join("calc/calc.wit"), "calculator");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(work.path().join("adding/wit/calc.wit").is_file());
    assert!(!work.path().join("adding/wit/deps").exists());
    let out = new("lost", &wit, "calculator");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--wit takes one package"),
        "{}",
        text(&out.stderr)
    );
    // Another dependency missing, hotslot:plugin there: that one is said
    // (a retry with hotslot's own added it twice, and wit-parser panicked).
    let partial = crate::common::wit_package(
        &work.path().join("partial-wit"),
        "a.wit",
        "package a:b;\ninterface api { f: func() -> u32; }\n\
         world w { import hotslot:plugin/state@0.1.0; import wasi:io/poll@0.2.0; export api; }\n",
    );
    let out = new("partial", &partial, "w");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let said = text(&out.stderr);
    assert!(
        said.contains("package 'wasi:io@0.2.0' not found") && !said.contains("panicked"),
        "{said}"
    );
    // A component is no WIT file.
    let out = new("binary", &plugin_path("calc"), "calculator");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is no .wit file"),
        "{}",
        text(&out.stderr)
    );
}

/// A `HOTSLOT_LOG` that names no level is said to be ignored, and the
/// default level applies.
#[test]
fn a_log_level_that_is_none_is_said_to_be_ignored() {
    let out = hotslot()
        .args(["call"])
        .arg(plugin_path("calc"))
        .arg("demo:calc/math#add(1, 2)")
        .env("HOTSLOT_LOG", "verbose")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout).trim(), "3");
    let log = text(&out.stderr);
    assert!(
        log.contains(r#"HOTSLOT_LOG="verbose" is no level"#),
        "{log}"
    );
}

/// A manifest that asks for more than the operator allows is capped, and
/// the log says which limits, and by how much.
#[test]
fn a_manifest_asking_above_the_host_is_told_it_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(plugin_path("calc"), dir.path().join("calc.wasm")).unwrap();
    std::fs::write(
        dir.path().join("calc.toml"),
        "[limits]\nmax-memory-mib = 100000\ntimeout-ms = 4000\n",
    )
    .unwrap();
    let out = hotslot()
        .arg("call")
        .arg(dir.path().join("calc.wasm"))
        .arg("demo:calc/math#add(1, 2)")
        .args(["--max-memory-mib", "64"])
        .env("HOTSLOT_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let log = text(&out.stderr);
    assert!(
        log.contains("asks for more than the host allows")
            && log.contains("max-memory-mib = 100000 (at most 64)")
            && !log.contains("timeout-ms"),
        "{log}"
    );
}

/// `watch` on a directory with no component says so, rather than nothing.
#[test]
fn watching_an_empty_directory_says_it_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = hotslot()
        .arg("watch")
        .arg(dir.path())
        .env_remove("HOTSLOT_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "quit").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let log = text(&out.stderr);
    assert!(log.contains("no *.wasm in it yet"), "{log}");
}

/// `call` on a plugin whose import nothing can serve (it loads one file)
/// says how to give it one.
#[test]
fn call_says_how_to_give_a_plugin_its_imports() {
    let out = hotslot()
        .arg("call")
        .arg(plugin_path("banner"))
        .arg(r#"demo:banner/banner#show("x")"#)
        .env("HOTSLOT_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stderr);
    assert!(
        said.contains("calling demo:greeter/greet@1.0.0#hello: no plugin serves it yet;")
            && said.contains("loads")
            && said.contains("run `hotslot watch")
            && !said.contains("waiting"),
        "{said}"
    );
}

/// Limits that could only fail every call, or every grant, are refused at
/// the start.
#[test]
fn limits_that_would_fail_everything_are_refused_at_the_start() {
    for (limit, code, said) in [
        (["--timeout-ms", "0"], 2, "--timeout-ms"),
        (
            ["--grant-root", "/no/such/dir"],
            1,
            "--grant-root /no/such/dir: no such directory",
        ),
    ] {
        let out = hotslot()
            .arg("call")
            .arg(plugin_path("calc"))
            .arg("demo:calc/math#add(1, 2)")
            .args(limit)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{out:?}");
        assert!(text(&out.stderr).contains(said), "{}", text(&out.stderr));
    }
}
