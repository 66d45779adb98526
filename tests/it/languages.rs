//! Plugin authors in Rust, Python and JavaScript: the repository's own
//! plugins in each language answer and reload with their state, and
//! `hotslot new` writes a project in each that builds with the command it
//! prints. The Python and JavaScript tools are the ones `make plugins`
//! installed in `.tools/`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use crate::common::plugin_path;

const DEADLINE: Duration = Duration::from_secs(120);

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The environment that points the scaffolds' build scripts at the tools
/// `make plugins` installed, rather than installing them again.
fn tools() -> [(&'static str, PathBuf); 2] {
    let root = root();
    let py = root.join(".tools/python/bin/componentize-py");
    let js = root.join(".tools/node/node_modules/.bin/componentize-js");
    assert!(py.exists() && js.exists(), "run `make plugins` first");
    [("COMPONENTIZE_PY", py), ("COMPONENTIZE_JS", js)]
}

fn hotslot() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hotslot"))
}

fn sh(command: &str) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(command)
        .envs(tools())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{command}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `hotslot watch` answering one request at a time.
struct Watch {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    answers: Receiver<String>,
}

impl Watch {
    fn start(dir: &Path) -> Self {
        let mut child = hotslot()
            .arg("watch")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (sender, answers) = channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take().unwrap();
        Watch {
            child,
            stdin,
            answers,
        }
    }

    fn ask(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").unwrap();
        self.answers.recv_timeout(DEADLINE).expect("an answer")
    }

    /// `list`, up to its `end`.
    fn list(&mut self) -> Vec<String> {
        writeln!(self.stdin, "list").unwrap();
        let mut lines = Vec::new();
        loop {
            match self.answers.recv_timeout(DEADLINE).expect("a list") {
                end if end == "end" => return lines,
                line => lines.push(line),
            }
        }
    }

    /// Asks `line` until the answer starts with `prefix` (bounded).
    fn ask_until(&mut self, line: &str, prefix: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let answer = self.ask(line);
            if answer.starts_with(prefix) {
                return answer;
            }
            assert!(
                Instant::now() < deadline,
                "still {answer} after {DEADLINE:?}"
            );
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A copy of the fixture project `name` (its WIT links followed) whose
/// greeting says `greeting`.
fn edited_copy(name: &str, file: &str, greeting: &str, into: &Path) -> PathBuf {
    let from = root().join("guest-plugins/fixtures").join(name);
    let to = into.join(name);
    sh(&format!("cp -rL {} {}", from.display(), to.display()));
    let source = std::fs::read_to_string(to.join(file)).unwrap();
    let old = source
        .lines()
        .find(|l| l.starts_with("GREETING") || l.starts_with("const GREETING"))
        .unwrap()
        .to_string();
    let new = match file {
        "app.py" => format!("GREETING = \"{greeting}\""),
        _ => format!("const GREETING = \"{greeting}\";"),
    };
    std::fs::write(to.join(file), source.replace(&old, &new)).unwrap();
    to
}

/// Rust, Python and JavaScript plugins answer in one session; each is
/// reloaded once (the Python and JavaScript ones rebuilt with a change),
/// and each keeps the count it keeps in the host.
#[test]
fn three_languages_answer_and_reload_with_their_state() {
    let dir = tempfile::tempdir().unwrap();
    for stem in ["counter_state", "greeter_py", "greeter_js"] {
        std::fs::copy(plugin_path(stem), dir.path().join(format!("{stem}.wasm"))).unwrap();
    }
    let mut s = Watch::start(dir.path());
    let py = r#"greeter_py::demo:greeter/greet#hello("x")"#;
    let js = r#"greeter_js::demo:greeter/greet#hello("x")"#;
    let rust = "counter_state::demo:counter/counter#increment()";
    assert_eq!(s.ask(py), r#""py: hello, x (call 1)""#);
    assert_eq!(s.ask(js), r#""js: hello, x (call 1)""#);
    assert_eq!(s.ask(rust), "1");

    let work = tempfile::tempdir().unwrap();
    let rebuild = |project: &Path, kind: &str, stem: &str| {
        let out = work.path().join(format!("{stem}.wasm"));
        let command = match kind {
            "py" => format!(
                "$COMPONENTIZE_PY -d {p}/wit -w greeter-py componentize app -p {p} -o {o}",
                p = project.display(),
                o = out.display()
            ),
            _ => format!(
                "$COMPONENTIZE_JS {p}/app.js --wit {p}/wit -n greeter-js -d http fetch-event -o {o}",
                p = project.display(),
                o = out.display()
            ),
        };
        sh(&command);
        // Into place in one step, as a build tool's final rename would.
        std::fs::rename(&out, dir.path().join(format!("{stem}.wasm"))).unwrap();
    };
    let project = edited_copy("greeter-py", "app.py", "py: hi", work.path());
    rebuild(&project, "py", "greeter_py");
    // Asked while it reloaded, it counted on: never back to 1.
    assert!(calls(&s.ask_until(py, r#""py: hi"#)) >= 2);

    let project = edited_copy("greeter-js", "app.js", "js: hi", work.path());
    rebuild(&project, "js", "greeter_js");
    assert!(calls(&s.ask_until(js, r#""js: hi"#)) >= 2);

    let before = s.list();
    std::fs::write(
        dir.path().join("counter_state.toml"),
        "[env]\nROUND = \"2\"\n",
    )
    .unwrap();
    let deadline = Instant::now() + DEADLINE;
    while s.list() == before {
        assert!(Instant::now() < deadline, "counter_state never reloaded");
    }
    assert_eq!(s.ask(rust), "2");
}

/// The count in a greeting ending `(call N)"`.
fn calls(answer: &str) -> u64 {
    let at = answer.rfind("(call ").expect("a count") + "(call ".len();
    answer[at..]
        .trim_end_matches(")\"")
        .parse()
        .expect("a number")
}

/// The printed build command of a scaffold, run, and the component it
/// made; what it says to try with it works, from where it was said.
fn scaffold(args: &[&str], into: &Path) -> PathBuf {
    let env = tools().map(|(k, v)| (k, v.into_os_string()));
    let (component, try_it) = scaffold_with(args, into, env);
    let bin = Path::new(env!("CARGO_BIN_EXE_hotslot")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let tried = Command::new("sh")
        .arg("-c")
        .arg(&try_it)
        .current_dir(into)
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(
        tried.status.success(),
        "`{try_it}`: {}",
        String::from_utf8_lossy(&tried.stderr)
    );
    component
}

/// [`scaffold`] but what it says to try, the build command run with `env`;
/// the component and that command.
fn scaffold_with(
    args: &[&str],
    into: &Path,
    env: impl IntoIterator<Item = (&'static str, std::ffi::OsString)>,
) -> (PathBuf, String) {
    let out = hotslot().args(args).current_dir(into).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |label: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("no `{label}` in {stdout}"))
            .trim()
            .to_string()
    };
    let command = field("build it:");
    let component = into.join(field("component:"));
    let built = Command::new("sh")
        .arg("-c")
        .arg(&command)
        .current_dir(into)
        .envs(env)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "`{command}`: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    assert!(component.exists(), "{} was not built", component.display());
    (component, field("try it:"))
}

fn call(component: &Path, request: &str) -> (bool, String) {
    let out = hotslot()
        .arg("call")
        .arg(component)
        .arg(request)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(if out.status.success() {
        &out.stdout
    } else {
        &out.stderr
    });
    (out.status.success(), text.trim().to_string())
}

/// `hotslot new` in each language: the project builds with the command it
/// prints, and the plugin answers, counting its calls in the host.
#[test]
fn hotslot_new_writes_a_plugin_that_builds_and_answers_in_each_language() {
    let work = tempfile::tempdir().unwrap();
    for lang in ["rust", "python", "js"] {
        let name = format!("hi-{lang}");
        let component = scaffold(&["new", &name, "--lang", lang], work.path());
        let request = format!("local:{name}/plugin#hello(\"you\")");
        assert_eq!(
            call(&component, &request),
            (true, "\"hello, you (call 1)\"".into())
        );
        let readme = std::fs::read_to_string(work.path().join(&name).join("README.md")).unwrap();
        assert!(readme.contains("Build it"), "{readme}");
    }

    // Implementing a given world: stubs that build, load and answer with
    // an error until filled in.
    let wit = root().join("wit/calc");
    let component = scaffold(
        &[
            "new",
            "stub-calc",
            "--lang",
            "python",
            "--wit",
            wit.to_str().unwrap(),
            "--world",
            "calculator",
        ],
        work.path(),
    );
    let (ok, answer) = call(&component, "demo:calc/math#add(1, 2)");
    assert!(!ok && answer.contains("failed in add"), "{answer}");

    // A world with a resource, and names the languages reserve: the stubs
    // parse and build (they were `def [constructor]bucket(…)` and
    // `def copy(self, from, to, in)`). It exports hotslot:plugin's
    // lifecycle and migrate too, whose stubs let the plugin load (a stub
    // `on-start` that failed refused every instance).
    let wit = crate::common::wit_package(
        &work.path().join("store-wit"),
        "store.wit",
        "package local:res@0.1.0;\n\
         interface store {\n\
         \x20 resource bucket {\n\
         \x20   constructor(name: string);\n\
         \x20   get: func(key: string) -> option<string>;\n\
         \x20   absorb: func(other: borrow<bucket>) -> u32;\n\
         \x20   open: static func(name: string) -> bucket;\n\
         \x20 }\n\
         \x20 copy: func(%from: string, to: string, in: u32) -> u32;\n\
         \x20 check: func(key: string) -> result<u32, string>;\n\
         \x20 %import: func() -> u32;\n\
         }\n\
         world keeper {\n\
         \x20 export store;\n\
         \x20 export hotslot:plugin/lifecycle@0.1.0;\n\
         \x20 export hotslot:plugin/migrate@0.1.0;\n\
         }\n",
    );
    for lang in ["python", "js", "rust"] {
        let name = format!("keeper-{lang}");
        let args = [
            "new",
            &name,
            "--lang",
            lang,
            "--wit",
            wit.to_str().unwrap(),
            "--world",
            "keeper",
        ];
        let component = scaffold(&args, work.path());
        let (ok, answer) = call(&component, r#"local:res/store#copy("a", "b", 1)"#);
        assert!(!ok && answer.contains("failed in copy"), "{lang}: {answer}");
        // A function that can answer an error text answers one (in Rust,
        // its `todo!()` fails it, as every other).
        let (ok, answer) = call(&component, r#"local:res/store#check("k")"#);
        match lang {
            "rust" => assert!(!ok && answer.contains("failed in check"), "{answer}"),
            _ => assert_eq!(
                (ok, answer.as_str()),
                (true, r#"err("not implemented: check")"#),
                "{lang}"
            ),
        }
    }
    // In Rust, the resource is a struct implementing its trait.
    let source = std::fs::read_to_string(work.path().join("keeper-rust/src/lib.rs")).unwrap();
    assert!(
        source.contains("impl store::GuestBucket for Bucket {"),
        "{source}"
    );

    // Without one, Rust gets an `impl` per export, typed as wit-bindgen
    // wants: it builds (records, variants, flags, aliases, tuples, Rust
    // keywords, a function and an interface of the world's own), loads
    // (hotslot:plugin's functions answer), and each function fails naming
    // itself until filled in.
    let wit = crate::common::wit_package(
        &work.path().join("painter-wit"),
        "shapes.wit",
        "package local:shapes@0.1.0;\n\
         interface types {\n\
         \x20 record point { x: s32, y: s32 }\n\
         \x20 flags perms { read, write }\n\
         \x20 type bytes = list<u8>;\n\
         }\n\
         interface shapes {\n\
         \x20 use types.{point, perms, bytes as blob};\n\
         \x20 enum color { red, green }\n\
         \x20 variant shape { circle(f64), dot, poly(list<point>) }\n\
         \x20 record guest { name: string }\n\
         \x20 area: func(s: shape) -> f64;\n\
         \x20 move: func(p: point, by: tuple<s32, s32>) -> point;\n\
         \x20 paint: func(c: color, p: perms, g: guest) -> option<string>;\n\
         \x20 pack: func(data: blob, in: list<list<u8>>) -> result<blob, string>;\n\
         \x20 pair: func(%type: s8, x: u8) -> result<tuple<u32>, u64>;\n\
         \x20 HTTP-get: func(url: string) -> result<tuple<string, option<point>>>;\n\
         \x20 nothing: func();\n\
         }\n\
         world painter {\n\
         \x20 use types.{point};\n\
         \x20 export shapes;\n\
         \x20 export hotslot:plugin/lifecycle@0.1.0;\n\
         \x20 export hotslot:plugin/migrate@0.1.0;\n\
         \x20 export origin: func() -> point;\n\
         \x20 export greet: interface { hello: func(name: string) -> string; }\n\
         }\n",
    );
    let args = ["new", "painter", "--wit", wit.to_str().unwrap()];
    let component = scaffold(&[&args[..], &["--world", "painter"]].concat(), work.path());
    let source = std::fs::read_to_string(work.path().join("painter/src/lib.rs")).unwrap();
    assert!(source.contains("impl shapes::Guest for Plugin"), "{source}");
    for (request, function) in [
        ("local:shapes/shapes#move({x: 1, y: 2}, (3, 4))", "move"),
        ("local:shapes/shapes#nothing()", "nothing"),
        ("local:shapes/shapes#HTTP-get(\"x\")", "HTTP-get"),
    ] {
        let (ok, answer) = call(&component, request);
        assert!(
            !ok && answer.contains(&format!("failed in {function}")),
            "{request}: {answer}"
        );
    }

    // What it refuses.
    let out = hotslot()
        .args(["new", "Not_A_Name"])
        .current_dir(work.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a WIT identifier"));
    let out = hotslot()
        .args(["new", "hi-rust"])
        .current_dir(work.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
    let out = hotslot()
        .args([
            "new",
            "typo",
            "--wit",
            wit.to_str().unwrap(),
            "--world",
            "calculater",
        ])
        .current_dir(work.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no world `calculater`"));
    assert!(!work.path().join("typo").exists(), "a half-made project");
}

/// The command `hotslot new` prints runs from where it was printed, even
/// for a directory whose name the shell would split or unquote; the
/// project's README gives the command to run inside the project. The
/// tools are stand-ins that write the component where the real ones would
/// (the builds themselves are the test above's).
#[test]
fn hotslot_new_prints_commands_that_run_where_they_are_said_to() {
    let work = tempfile::tempdir().unwrap();
    let fake = work.path().join("bin");
    std::fs::create_dir(&fake).unwrap();
    // The last argument of componentize-py and componentize-js is the
    // component; cargo's is made where cargo puts it.
    let tool = "#!/bin/sh\nfor last; do :; done\necho built > \"$last\"\n";
    let cargo = "#!/bin/sh\nmkdir -p target/wasm32-wasip2/release\n\
                 name=$(sed -n 's/^name = \"\\(.*\\)\"/\\1/p' Cargo.toml | tr - _)\n\
                 echo built > \"target/wasm32-wasip2/release/$name.wasm\"\n";
    let words = "#!/bin/sh\nfor word; do printf '%s\\n' \"$word\"; done\n";
    for (name, text) in [("tool", tool), ("cargo", cargo), ("hotslot", words)] {
        let path = fake.join(name);
        std::fs::write(&path, text).unwrap();
        let executable = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(&path, executable).unwrap();
    }
    let path = format!("{}:{}", fake.display(), std::env::var("PATH").unwrap());
    for (lang, inside) in [
        ("python", "sh build.sh"),
        ("js", "sh build.sh"),
        ("rust", "cargo build --release --target wasm32-wasip2"),
    ] {
        let dir = format!("it's {lang} $HOME");
        let env = [
            ("PATH", path.clone().into()),
            ("COMPONENTIZE_PY", fake.join("tool").into_os_string()),
            ("COMPONENTIZE_JS", fake.join("tool").into_os_string()),
        ];
        let args = ["new", "spaced", "--lang", lang, "--dir", &dir];
        let (component, try_it) = scaffold_with(&args, work.path(), env);
        // The command to try names the component as one word: a stand-in
        // `hotslot` prints the words it was given, one a line.
        let tried = Command::new("sh")
            .arg("-c")
            .arg(&try_it)
            .current_dir(work.path())
            .env("PATH", &path)
            .output()
            .unwrap();
        let words: Vec<String> = String::from_utf8_lossy(&tried.stdout)
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(words.len(), 3, "`{try_it}`: {words:?}");
        assert_eq!(words[0], "call");
        assert_eq!(work.path().join(&words[1]), component, "`{try_it}`");
        assert_eq!(words[2], r#"local:spaced/plugin#hello("you")"#);
        let readme = std::fs::read_to_string(work.path().join(&dir).join("README.md")).unwrap();
        assert!(
            readme.contains(&format!("```sh\n{inside}\n```")),
            "{readme}"
        );
    }

    // The interface is named `plugin`: a world cannot be.
    let out = hotslot()
        .args(["new", "plugin"])
        .current_dir(work.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("choose another name"), "{stderr}");
    assert!(!work.path().join("plugin").exists(), "a half-made project");
}
