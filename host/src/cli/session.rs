//! Answering request lines against a registry: what `hotslot watch` does with
//! each line it reads, and what `hotslot call` does with its one request.

use std::io::{self, BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::cli::request::{render, CallRequest};
use crate::error::{one_line, Error};
use crate::handle::Handle;
use crate::registry::Registry;
use crate::version::Request;
use crate::watch::Watcher;

/// What `help` prints.
const HELP: &str = "\
requests:
  INTERFACE[@VERSION]#FUNCTION(ARGS)        call whichever plugin serves INTERFACE first
  NAME::INTERFACE[@VERSION]#FUNCTION(ARGS)  call the plugin NAME (its file stem)
  arguments and answers are WAVE: 42, \"text\", [1, 2], {a: 1}, some(1), ok(\"x\")
  e.g. demo:greeter/greet#hello(\"you\")
commands:
  list         what is loaded: INTERFACE@VERSION NAME GENERATION [imports ...]
  state NAME   the keys of NAME's host-kept state and their sizes
  forget NAME  forget what NAME served before a removal: its next file need not keep it
  stats        calls, failures, latency, reloads, instances, memory per plugin
  help         this
  quit         leave (so do end of input and Ctrl-D)
end";

/// How long a request for an interface nothing serves yet waits for the
/// plugins still loading (a big component compiles for seconds).
const LOAD_WAIT: Duration = Duration::from_secs(120);

/// The answer to one line: the lines to print (none for a blank line).
/// Failures are one line starting with `error: `.
pub fn answer(registry: &Registry, line: &str) -> Vec<String> {
    Session {
        registry,
        watcher: None,
    }
    .answer(line)
}

/// Makes one call from a request line and renders the answer in WAVE.
pub fn call(registry: &Registry, line: &str) -> Result<String, String> {
    Session {
        registry,
        watcher: None,
    }
    .call(line)
}

/// What a session answers from: the registry, and the watcher still
/// loading into it, if any.
pub(crate) struct Session<'a> {
    pub(crate) registry: &'a Registry,
    pub(crate) watcher: Option<&'a Watcher>,
}

impl Session<'_> {
    /// The lines answering `line`. A bug of ours met on the way (a panic)
    /// costs this request its answer, not the session.
    fn answer(&self, line: &str) -> Vec<String> {
        let answered =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.answer_unguarded(line)));
        answered.unwrap_or_else(|panic| {
            let why = crate::error::panic_text(&*panic);
            vec![format!("error: `{}`: the host failed: {why}", line.trim())]
        })
    }

    fn answer_unguarded(&self, line: &str) -> Vec<String> {
        let line = line.trim();
        if line.is_empty() {
            return Vec::new();
        }
        if line == "help" {
            return HELP.lines().map(String::from).collect();
        }
        if let Some(name) = line.strip_prefix("state ") {
            return state(self, name.trim());
        }
        if let Some(name) = line.strip_prefix("forget ") {
            return vec![forget(self.registry, name.trim())];
        }
        if line == "stats" {
            // At start, once the directory has loaded; later at once (an
            // operator asks for it while a reload compiles, or spins).
            if let Some(watcher) = self.watcher {
                watcher.wait_first_load(LOAD_WAIT);
            }
            return stats(self.registry);
        }
        if line == "list" {
            if let Some(watcher) = self.watcher {
                watcher.wait_idle(LOAD_WAIT);
            }
            return list(self.registry);
        }
        if let Some(usage) = misused_command(line) {
            return vec![format!("error: {usage}")];
        }
        match self.call(line) {
            Ok(answer) => vec![answer],
            Err(message) => vec![format!("error: {}", one_line(&message))],
        }
    }

    fn call(&self, line: &str) -> Result<String, String> {
        let request = CallRequest::parse(line)?;
        let handle = match request.implementation() {
            Some(name) => self.find_named(request.interface(), name),
            None => self
                .find(request.interface())
                .map_err(|e| self.unserved(describe(&e))),
        };
        let handle = handle?;
        if !handle.is_available() {
            let why = format!("no implementation of {} is loaded", request.interface());
            return Err(self.unserved(why));
        }
        call_on(handle, &request)
    }

    /// `why` no plugin serves a request, with the files refused, whose
    /// plugins might have served it (and, for one, its reason): a file that
    /// never loaded leaves only the log to say so otherwise.
    fn unserved(&self, why: String) -> String {
        // A refused reload leaves its plugin serving: not one of these.
        let serving: Vec<String> = self.registry.list().into_iter().map(|i| i.name).collect();
        let refused: Vec<(String, String)> = self
            .watcher
            .map(Watcher::refusals)
            .unwrap_or_default()
            .into_iter()
            .filter(|(name, _)| !serving.contains(name))
            .collect();
        match refused.as_slice() {
            [] => why,
            [(name, reason)] => format!("{why}; `{name}`'s file was refused: {reason}"),
            more => {
                let names: Vec<String> = more.iter().map(|(n, _)| format!("`{n}`")).collect();
                format!(
                    "{why}; files refused: {} (`NAME::` before a request says why)",
                    names.join(", ")
                )
            }
        }
    }

    /// The plugin `name`'s implementation of `request`, waiting (bounded)
    /// while that plugin is loading; an error says what it serves instead.
    fn find_named(&self, request: &Request, name: &str) -> Result<Handle, String> {
        self.wait_for(name, || self.registry.implementation(request, name).is_ok());
        let handle = self
            .registry
            .implementation(request, name)
            .ok()
            .filter(|h| h.is_available());
        handle.ok_or_else(|| {
            let serves: Vec<String> = self
                .registry
                .list()
                .into_iter()
                .filter(|i| i.name == name)
                .map(|i| i.interface.to_string())
                .collect();
            match serves.is_empty() {
                true => self.not_loaded(name),
                false => format!(
                    "`{name}` does not serve {request} (it serves: {})",
                    serves.join(", ")
                ),
            }
        })
    }

    /// Waits while the plugin `name` is loading and `found()` is false, at
    /// most `LOAD_WAIT`: a request for a plugin still compiling is answered
    /// once it has loaded, not refused.
    fn wait_for(&self, name: &str, found: impl Fn() -> bool) {
        let Some(watcher) = self.watcher else { return };
        let deadline = Instant::now() + LOAD_WAIT;
        loop {
            let (loading, version) = watcher.loading();
            let loading_it = loading.is_none_or(|files| files.iter().any(|f| f.name == name));
            let left = deadline.saturating_duration_since(Instant::now());
            if found() || !loading_it || left.is_zero() {
                return;
            }
            watcher.wait_change(version, left);
        }
    }

    /// Why nothing named `name` answers: no such plugin, with the name of
    /// one it was likely meant for.
    fn not_loaded(&self, name: &str) -> String {
        if let Some(reason) = self.watcher.and_then(|w| w.refused(name)) {
            return format!("no plugin named `{name}` is loaded: its file was refused: {reason}");
        }
        match self.named_alike(name) {
            Some(alike) => format!(
                "no plugin named `{name}` is loaded (`{alike}` is: a plugin is \
                 named after its file, `{alike}.wasm`)"
            ),
            None => format!("no plugin named `{name}` is loaded"),
        }
    }

    /// A loaded plugin whose name is `name` with `-` and `_` swapped: a
    /// Rust project `my-plugin` builds `my_plugin.wasm`.
    fn named_alike(&self, name: &str) -> Option<String> {
        let plain = |n: &str| n.replace('-', "_");
        self.registry
            .list()
            .into_iter()
            .map(|i| i.name)
            .find(|loaded| loaded != name && plain(loaded) == plain(name))
    }

    /// The implementation that serves `request`, as it will once the files
    /// loading now have loaded: while a file that comes before the one
    /// serving now (or any file, when none serves) is loading and may export
    /// the interface, wait for it, at most `LOAD_WAIT`. Requests to plugins
    /// loaded already are answered at once.
    fn find(&self, request: &Request) -> Result<Handle, Error> {
        let deadline = Instant::now() + LOAD_WAIT;
        loop {
            let found = self.registry.first_implementation(request);
            let Some(watcher) = self.watcher else {
                return found;
            };
            let serving = found
                .as_ref()
                .ok()
                .and_then(|h| h.name())
                .and_then(|name| self.registry.rank(&name));
            let left = deadline.saturating_duration_since(Instant::now());
            let (loading, version) = watcher.loading();
            // `None`: the directory is still being listed; any file may serve.
            let waiting = loading.as_ref().is_none_or(|loading| {
                loading.iter().any(|file| {
                    let earlier = match (serving, self.registry.rank(&file.name)) {
                        (None, _) => true,
                        (Some(serving), Some(rank)) => rank < serving,
                        (Some(_), None) => false,
                    };
                    let may_serve = file
                        .exports
                        .as_ref()
                        .is_none_or(|exports| exports.iter().any(|e| e.serves(request)));
                    earlier && may_serve
                })
            });
            // The plugin that serves waits for a provider a file still
            // loading may be: its answer depends on that file too.
            let provider_loading = || {
                let name = found.as_ref().ok().and_then(|h| h.name());
                let waits_for: Vec<Request> = self
                    .registry
                    .list()
                    .into_iter()
                    .filter(|i| Some(&i.name) == name.as_ref())
                    .flat_map(|i| i.imports)
                    .filter(|link| link.provider.is_none())
                    .map(|link| link.interface.into())
                    .collect();
                !waits_for.is_empty()
                    && loading.as_ref().is_some_and(|files| {
                        files.iter().any(|file| {
                            file.exports.as_ref().is_none_or(|exports| {
                                exports
                                    .iter()
                                    .any(|e| waits_for.iter().any(|w| e.serves(w)))
                            })
                        })
                    })
            };
            if (!waiting && !provider_loading()) || left.is_zero() {
                return found;
            }
            watcher.wait_change(version, left);
        }
    }
}

/// Makes the call `request` asks for on `handle`.
fn call_on(handle: Handle, request: &CallRequest) -> Result<String, String> {
    let exported = handle
        .exported()
        .ok_or_else(|| format!("no implementation of {} is loaded", request.interface()))?;
    let function = exported.function(request.function()).ok_or_else(|| {
        let names: Vec<&str> = exported.functions().iter().map(|f| f.name()).collect();
        // Worded as the library's `Error::NoSuchFunction`, plugin included.
        format!(
            "{} `{}` has no function `{}` (it has: {})",
            exported.name(),
            handle.name().unwrap_or_default(),
            request.function(),
            names.join(", ")
        )
    })?;
    let named = |why: String| format!("{}#{}: {why}", exported.name(), request.function());
    let args = request.arguments(function).map_err(named)?;
    let results = handle
        .call(request.function(), &args)
        .map_err(|e| describe(&e))?;
    render(&results).map_err(named)
}

fn describe(error: &Error) -> String {
    error.to_string()
}

/// `forget NAME`: forgets what the plugin served before its file was
/// removed (see [`Registry::forget_contract`]), one line saying whether
/// there was anything.
fn forget(registry: &Registry, name: &str) -> String {
    match registry.forget_contract(name) {
        true => format!(
            "forgot what `{name}` served before its removal: its next file is \
             checked against nothing there"
        ),
        false => format!(
            "`{name}` has nothing to forget (what it serves now stays its contract: \
             remove its file first)"
        ),
    }
}

/// What a line that starts like a command but is none (`state` without a
/// name, `stats calc`, `exit`) was likely meant as; `None` for a request.
fn misused_command(line: &str) -> Option<String> {
    if line.contains('#') {
        return None;
    }
    let word = line.split_whitespace().next()?;
    let usage = match word {
        "state" => "it is `state NAME`: the keys of a plugin's state".to_string(),
        "forget" => "it is `forget NAME`: what a removed plugin served".to_string(),
        "list" | "stats" | "help" => format!("`{word}` takes nothing after it"),
        "quit" | "exit" | "q" | ":q" => "to leave: `quit`, or end of input (Ctrl-D)".into(),
        _ => return None,
    };
    Some(format!("`{line}`: {usage}; `help` lists the forms"))
}

/// `state NAME`: one line per key of the plugin's host-kept state, the key
/// quoted (a plugin's keys may hold any character) and the value's size in
/// bytes, then `end`. A plugin still loading is waited for, as a call to it
/// would be: its state is there once it has loaded (read back from disk,
/// and written by its `on-start`). A plugin gone keeps its state, shown if
/// it holds any; a name that never loaded has none.
fn state(session: &Session<'_>, name: &str) -> Vec<String> {
    let loaded = || session.registry.list().iter().any(|i| i.name == name);
    session.wait_for(name, loaded);
    // A name is given an empty state as soon as its file is listed.
    let state = session
        .registry
        .state(name)
        .filter(|state| !state.keys().is_empty() || loaded());
    let Some(state) = state else {
        return vec![format!("error: {}", one_line(&session.not_loaded(name)))];
    };
    let mut lines: Vec<String> = state
        .sizes()
        .into_iter()
        .map(|(key, size)| format!("{key:?} {size}"))
        .collect();
    lines.push("end".to_string());
    lines
}

/// `stats`: one line per implementation, of words `key=value`, then `end`.
fn stats(registry: &Registry) -> Vec<String> {
    let micros = |d: Option<std::time::Duration>| {
        d.map_or("-".to_string(), |d| {
            format!("{:.1}us", d.as_secs_f64() * 1e6)
        })
    };
    let mut lines: Vec<String> = registry
        .metrics()
        .into_iter()
        .map(|m| {
            let faults: Vec<String> = m
                .failed
                .iter()
                .map(|(fault, n)| format!("{}={n}", fault.word()))
                .collect();
            format!(
                "{} {} calls={} failed={} {} p50={} p99={} max={} reloads={} rejected={} \
                 instances={} memory={}KiB state={}B",
                m.interface,
                m.plugin,
                m.calls,
                m.failed_calls(),
                faults.join(" "),
                micros(m.latency_p50),
                micros(m.latency_p99),
                micros(m.latency_max),
                m.reloads,
                m.rejected_reloads,
                m.instances,
                m.memory_bytes / 1024,
                m.state_bytes
            )
        })
        .collect();
    lines.push("end".to_string());
    lines
}

/// `list`: one line per implementation, then `end`.
/// A plugin that imports from others gets more words on each line:
/// `imports`, then per import `INTERFACE<-PROVIDER#GENERATION`,
/// `INTERFACE<-waiting` (nothing serves it yet) or
/// `INTERFACE<-PROVIDER#GENERATION(mismatch)` (the log says how).
fn list(registry: &Registry) -> Vec<String> {
    let mut lines: Vec<String> = registry
        .list()
        .into_iter()
        .map(|i| {
            let mut line = format!("{} {} {}", i.interface, i.name, i.generation);
            if !i.imports.is_empty() {
                line.push_str(" imports");
                for link in &i.imports {
                    line.push_str(&format!(" {}<-{}", link.interface, provider_of(link)));
                }
            }
            line
        })
        .collect();
    lines.push("end".to_string());
    lines
}

/// An answer line as it is printed: one line (an answer is one line per
/// request), its control characters written out. A plugin's words reach
/// answers (an `on-start` refusal, a trap's function names), and a `\r`
/// or an escape sequence there would rewrite what the terminal shows.
fn printed(answer: &str) -> std::borrow::Cow<'_, str> {
    crate::error::escape_controls(answer, |_| false)
}

/// Who serves an import, as `list` words it.
pub(crate) fn provider_of(link: &crate::ImportLink) -> String {
    match (&link.provider, &link.problem) {
        (None, _) => "waiting".into(),
        (Some((name, generation)), None) => format!("{name}#{generation}"),
        (Some((name, generation)), Some(_)) => format!("{name}#{generation}(mismatch)"),
    }
}

/// Reads request lines until end of input, answering each at once. On a
/// terminal, with a prompt, line editing and history.
pub(crate) fn serve(session: &Session<'_>) -> io::Result<()> {
    if io::stdin().is_terminal() && io::stdout().is_terminal() {
        return serve_terminal(session);
    }
    let stdin = io::stdin();
    let stdout = io::stdout();
    let mut input = stdin.lock();
    let mut bytes = Vec::new();
    loop {
        bytes.clear();
        if input.read_until(b'\n', &mut bytes)? == 0 {
            return Ok(());
        }
        let answer = match std::str::from_utf8(&bytes) {
            Ok(line) if line.trim() == "quit" => return Ok(()),
            Ok(line) => session.answer(line),
            Err(e) => vec![format!(
                "error: the request is not UTF-8 text (bad byte at {})",
                e.valid_up_to()
            )],
        };
        let mut out = stdout.lock();
        for answer_line in answer {
            writeln!(out, "{}", printed(&answer_line))?;
        }
        out.flush()?;
    }
}

/// On a terminal: a prompt, line editing and history. The line editor reads
/// on a thread of its own, all the time, so that lines typed while a call
/// runs are kept (in order) rather than lost; answers and log lines are
/// printed above the prompt, which is then drawn again.
fn serve_terminal(session: &Session<'_>) -> io::Result<()> {
    use rustyline::error::ReadlineError;
    let mut editor = rustyline::DefaultEditor::new().map_err(io::Error::other)?;
    let restore = TerminalMode::save();
    crate::cli::print_above_prompt_from_now();
    let (lines, typed) = std::sync::mpsc::channel::<Option<String>>();
    std::thread::Builder::new()
        .name("hotslot-prompt".into())
        .spawn(move || loop {
            match editor.readline(crate::cli::PROMPT) {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(line.as_str());
                    }
                    if lines.send(Some(line)).is_err() {
                        return;
                    }
                }
                Err(ReadlineError::Interrupted | ReadlineError::Eof) | Err(_) => {
                    let _ = lines.send(None);
                    return;
                }
            }
        })?;
    for line in typed.iter() {
        let Some(line) = line else { break };
        if line.trim() == "quit" {
            break;
        }
        let answer: Vec<String> = session
            .answer(&line)
            .iter()
            .map(|line| printed(line).into_owned())
            .collect();
        if !answer.is_empty() {
            crate::cli::print_above_prompt(&answer.join("\n"));
        }
    }
    drop(restore);
    Ok(())
}

/// The terminal's settings when the session began, put back when it ends:
/// the editor's thread may still be in the middle of reading a line.
struct TerminalMode(Option<libc::termios>);

impl TerminalMode {
    fn save() -> Self {
        // SAFETY: tcgetattr only fills the struct it is given.
        unsafe {
            let mut mode: libc::termios = std::mem::zeroed();
            let saved = libc::tcgetattr(libc::STDIN_FILENO, &mut mode) == 0;
            TerminalMode(saved.then_some(mode))
        }
    }
}

impl Drop for TerminalMode {
    fn drop(&mut self) {
        if let Some(mode) = &self.0 {
            // SAFETY: puts back settings read from this same terminal.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, mode);
            }
        }
    }
}
