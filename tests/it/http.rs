//! Outbound HTTP by grant: a loopback server sees the requests a plugin's
//! manifest (and the operator's ceiling) let through, and no other; the
//! plugin sees wasi:http's own `HTTP-request-denied` for the rest.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hotslot::wasmtime::component::Val;
use hotslot::{Handle, HttpAllow, Limits, Registry};

use crate::common::plugin_path;

const FETCH: &str = "demo:web/fetch@1.0.0";

/// How the test server answers.
#[derive(Clone, Copy)]
enum Answer {
    /// `200` with `served PATH`.
    Path,
    /// `200` with this many bytes.
    Bytes(usize),
    /// Nothing: it reads the request and waits for the client to go.
    Silent,
}

/// An HTTP server on loopback that counts the connections it accepts.
struct Server {
    port: u16,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(answer: Answer) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (counted, stopped) = (hits.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                counted.fetch_add(1, Ordering::SeqCst);
                if let Ok(stream) = stream {
                    std::thread::spawn(move || serve(stream, answer));
                }
            }
        });
        Server { port, hits, stop }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(stream: TcpStream, answer: Answer) {
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    let path = first.split(' ').nth(1).unwrap_or("?").to_string();
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let body = match answer {
        Answer::Path => format!("served {path}"),
        Answer::Bytes(n) => "x".repeat(n),
        Answer::Silent => {
            // Until the client hangs up.
            let _ = reader.read_to_end(&mut Vec::new());
            return;
        }
    };
    let mut stream = reader.into_inner();
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A directory holding `stem.wasm` and `stem.toml`.
fn with_manifest(stem: &str, manifest: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{stem}.wasm"));
    std::fs::copy(plugin_path(stem), &file).unwrap();
    std::fs::write(dir.path().join(format!("{stem}.toml")), manifest).unwrap();
    (dir, file)
}

/// A directory holding `stem.wasm` and a manifest granting it HTTP to
/// each of `servers`.
fn granting(stem: &str, servers: &[&Server]) -> (tempfile::TempDir, PathBuf) {
    let allow: Vec<String> = servers
        .iter()
        .map(|s| format!("\"127.0.0.1:{}\"", s.port))
        .collect();
    with_manifest(stem, &format!("[http]\nallow = [{}]\n", allow.join(", ")))
}

/// `hotslot call FILE 'fetch#get(URL)' --http-allow ALLOW`, in `file`'s
/// directory with `home` as HOME: (exit code, stdout, stderr).
fn call_cli(file: &Path, allow: &str, url: &str, home: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hotslot"))
        .args(["call", "--http-allow", allow])
        .arg(file)
        .arg(format!("{FETCH}#get({url:?})"))
        .env("HOME", home)
        .current_dir(file.parent().unwrap())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), stdout, stderr)
}

fn fetcher(registry: &Registry, file: &Path) -> Handle {
    let added = registry.add_file(file).unwrap();
    registry.implementation(FETCH, &added.name).unwrap()
}

/// `get(url)`'s answer: the plugin's `ok` or `err` text.
fn get(handle: &Handle, url: &str) -> Result<String, String> {
    let answer = handle.call("get", &[Val::String(url.into())]).unwrap();
    let text = |val: &Option<Box<Val>>| match val.as_deref() {
        Some(Val::String(text)) => text.clone(),
        other => panic!("not a string: {other:?}"),
    };
    match answer.as_slice() {
        [Val::Result(Ok(ok))] => Ok(text(ok)),
        [Val::Result(Err(err))] => Err(text(err)),
        other => panic!("not a result: {other:?}"),
    }
}

#[test]
fn a_granted_request_returns_the_body_and_any_other_is_denied_unsent() {
    let granted = Server::start(Answer::Path);
    let other = Server::start(Answer::Path);
    let (_dir, file) = granting("fetcher_rs", &[&granted]);
    let registry = Registry::new().unwrap();
    let handle = fetcher(&registry, &file);

    assert_eq!(
        get(&handle, &granted.url("/hello")),
        Ok("200 served /hello".into())
    );
    assert_eq!(granted.hits(), 1);
    assert_eq!(
        get(&handle, &other.url("/secret")),
        Err("HTTP-request-denied".into())
    );
    assert_eq!(other.hits(), 0, "a denied request reached the server");
    // The same host on another port, and a name for it, are other
    // authorities.
    let by_name = format!("http://localhost:{}/", granted.port);
    assert_eq!(get(&handle, &by_name), Err("HTTP-request-denied".into()));
    assert_eq!(granted.hits(), 1);
}

/// Called from runtimes with neither timers nor I/O (a plain
/// `new_current_thread().build()`), an async call's request is made all
/// the same, and a synchronous call's in a multi-threaded runtime's task:
/// a plugin's I/O never runs on its caller's runtime.
#[test]
fn requests_are_made_for_callers_on_runtimes_without_io_or_timers() {
    let server = Server::start(Answer::Path);
    let (_dir, file) = granting("fetcher_rs", &[&server]);
    let registry = Registry::new().unwrap();
    let handle = fetcher(&registry, &file);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let args = [Val::String(server.url("/async"))];
    let answer = runtime.block_on(handle.call_async("get", &args)).unwrap();
    let body = Val::String("200 served /async".into());
    assert_eq!(answer, [Val::Result(Ok(Some(Box::new(body))))]);
    assert_eq!(server.hits(), 1);

    // And a synchronous call in a task of a multi-threaded one.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let url = server.url("/in-task");
    let in_task = {
        let handle = handle.clone();
        runtime.block_on(async move { tokio::spawn(async move { get(&handle, &url) }).await })
    };
    assert_eq!(in_task.unwrap(), Ok("200 served /in-task".into()));
    assert_eq!(server.hits(), 2);

    // Inside a current-thread runtime's `block_on` (a `#[tokio::test]`),
    // whose one thread the call holds, the request fails the call at once
    // (it waited out the deadline), saying what to use instead.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let url = server.url("/in-block-on");
    let answer = runtime.block_on(async { handle.call("get", &[Val::String(url)]) });
    let message = answer.unwrap_err().to_string();
    assert!(message.contains("use `call_async`"), "{message}");
}

#[test]
fn without_a_grant_nothing_is_reachable() {
    let server = Server::start(Answer::Path);
    let (_dir, file) = with_manifest("fetcher_rs", "[limits]\ntimeout-ms = 2000\n");
    let registry = Registry::new().unwrap();
    let handle = fetcher(&registry, &file);
    assert_eq!(
        get(&handle, &server.url("/")),
        Err("HTTP-request-denied".into())
    );
    assert_eq!(server.hits(), 0);
}

#[test]
fn the_operators_ceiling_bounds_what_a_manifest_grants() {
    let inside = Server::start(Answer::Path);
    let outside = Server::start(Answer::Path);
    let (_dir, file) = granting("fetcher_rs", &[&inside, &outside]);
    let ceiling = HttpAllow::new([format!("127.0.0.1:{}", inside.port)]).unwrap();
    let limits = Limits {
        http_allow: Some(ceiling),
        ..Limits::default()
    };
    let registry =
        Registry::with_engine(hotslot::engine::shared_engine().unwrap(), limits).unwrap();
    let handle = fetcher(&registry, &file);
    assert_eq!(
        get(&handle, &inside.url("/in")),
        Ok("200 served /in".into())
    );
    assert_eq!(
        get(&handle, &outside.url("/out")),
        Err("HTTP-request-denied".into())
    );
    assert_eq!((inside.hits(), outside.hits()), (1, 0));
}

#[test]
fn responses_are_bounded_in_size_and_in_time() {
    let big = Server::start(Answer::Bytes(64 * 1024));
    let silent = Server::start(Answer::Silent);
    let fine = Server::start(Answer::Path);
    let (_dir, file) = with_manifest(
        "fetcher_rs",
        "[http]\nallow = [\"127.0.0.1\"]\nmax-response-kib = 16\ntimeout-ms = 300\n",
    );
    let registry = Registry::new().unwrap();
    let handle = fetcher(&registry, &file);

    let err = get(&handle, &big.url("/")).unwrap_err();
    assert!(err.contains("body size") && err.contains("16384"), "{err}");

    let started = Instant::now();
    let err = get(&handle, &silent.url("/")).unwrap_err();
    // Stopped by the request's own bound, well within the call's deadline.
    assert!(
        started.elapsed() < hotslot::DEFAULT_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
    assert!(err.contains("Timeout"), "{err}");
    assert_eq!(silent.hits(), 1);
    // The plugin is fine, and granted requests still go out.
    assert_eq!(
        get(&handle, &fine.url("/after")),
        Ok("200 served /after".into())
    );
}

#[test]
fn a_javascript_plugin_fetches_what_is_granted_and_is_denied_the_rest() {
    let granted = Server::start(Answer::Path);
    let other = Server::start(Answer::Path);
    let (_dir, file) = granting("fetcher_js", &[&granted, &other]);
    let home = tempfile::tempdir().unwrap();
    let allow = format!("127.0.0.1:{}", granted.port);
    let call = |url: String| call_cli(&file, &allow, &url, home.path());

    let (code, stdout, stderr) = call(granted.url("/page"));
    assert_eq!(
        (code, stdout.as_str()),
        (Some(0), "ok(\"200 served /page\")\n"),
        "{stderr}"
    );
    assert_eq!(granted.hits(), 1);

    // Granted by the manifest, but beyond the operator's --http-allow.
    let (code, stdout, stderr) = call(other.url("/page"));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("err("), "{stdout}");
    assert!(
        stderr.contains("plugin fetcher_js") && stderr.contains("denied"),
        "{stderr}"
    );
    assert_eq!(other.hits(), 0, "a denied request reached the server");

    // What `inspect` says of its wasi:http imports.
    let out = Command::new(env!("CARGO_BIN_EXE_hotslot"))
        .arg("inspect")
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let outgoing = text
        .lines()
        .find(|l| l.contains("wasi:http/outgoing-handler") && l.starts_with("//"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(outgoing.contains("[http] allow"), "{outgoing}");
}

#[test]
fn credentials_in_a_url_are_refused_before_connecting() {
    let granted = Server::start(Answer::Path);
    let (_dir, file) = granting("fetcher_rs", &[&granted]);
    let registry = Registry::new().unwrap();
    let handle = fetcher(&registry, &file);
    let with_user = format!("http://someone@127.0.0.1:{}/x", granted.port);
    assert_eq!(get(&handle, &with_user), Err("HTTP-request-denied".into()));
    assert_eq!(granted.hits(), 0);
    assert_eq!(get(&handle, &granted.url("/y")), Ok("200 served /y".into()));
}

#[test]
fn http_allow_none_on_the_command_line_allows_nothing() {
    let server = Server::start(Answer::Path);
    let (_dir, file) = granting("fetcher_rs", &[&server]);
    let home = tempfile::tempdir().unwrap();
    let url = server.url("/");
    let (_, stdout, stderr) = call_cli(
        &file,
        &format!("NONE,127.0.0.1:{}", server.port),
        &url,
        home.path(),
    );
    assert_eq!(stdout, "err(\"HTTP-request-denied\")\n", "{stderr}");
    assert!(
        stderr.contains("plugin fetcher_rs: HTTP request denied")
            && stderr.contains("--http-allow"),
        "{stderr}"
    );
    assert_eq!(server.hits(), 0);
    let allow = format!("127.0.0.1:{}", server.port);
    let (_, stdout, stderr) = call_cli(&file, &allow, &url, home.path());
    assert_eq!(stdout, "ok(\"200 served /\")\n", "{stderr}");
    assert_eq!(server.hits(), 1);
}
