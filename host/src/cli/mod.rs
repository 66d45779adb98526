//! The `hotslot` command line: `watch`, `call`, `inspect` and `list`.
//!
//! Answers go to standard output, one line per request; events, logs and
//! what plugins print go to standard error.

mod diff;
mod inspect;
mod new;
mod page;
mod request;
mod rust_skeleton;
mod serve;
mod session;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

pub use request::{render, CallRequest};
pub use session::answer;

use crate::engine::{Compiler, EngineOptions};
use crate::http::HttpAllow;
use crate::limits::{
    Limits, DEFAULT_HTTP_TIMEOUT, DEFAULT_MAX_FILE_SIZE, DEFAULT_MAX_HTTP_RESPONSE,
    DEFAULT_MAX_MEMORY, DEFAULT_MAX_OPEN_FILES, DEFAULT_MAX_STATE, DEFAULT_TIMEOUT,
};
use crate::manifest::dir_of;
use crate::registry::Registry;
use crate::watch::Watcher;

/// Host WebAssembly component plugins that hot-reload behind stable handles.
#[derive(Parser)]
#[command(name = "hotslot", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load and watch a directory of components, then answer requests read
    /// from standard input, one line each.
    #[command(after_help = WATCH_EXAMPLE)]
    Watch {
        /// The directory of `*.wasm` components.
        dir: PathBuf,
        #[command(flatten)]
        limits: LimitArgs,
        /// Serve per-plugin metrics in the Prometheus text format at
        /// http://ADDR/metrics (e.g. 127.0.0.1:9464; port 0 picks one, and
        /// the log says which).
        #[arg(long, value_name = "ADDR")]
        metrics: Option<String>,
        /// Serve a live page of the host at http://ADDR/ (every plugin, its
        /// calls and latency, the last reloads and rejections), its data as
        /// JSON at /data and as server-sent events at /events.
        #[arg(long, value_name = "ADDR")]
        http: Option<String>,
    },
    /// Make one call on one component and print the answer.
    #[command(after_help = CALL_EXAMPLE)]
    Call {
        /// The component file.
        file: PathBuf,
        /// `INTERFACE[@VERSION]#FUNCTION(ARGS)`, arguments in WAVE.
        request: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Print a component's imports and exports as WIT, with versions.
    #[command(after_help = "Example:\n  hotslot inspect plugins/greeter_a.wasm")]
    Inspect {
        /// The component file.
        file: PathBuf,
    },
    /// Compare two versions of a component as a reload would: each function
    /// removed or changed; exits 1 when the reload would be refused.
    #[command(after_help = "Example:\n  hotslot diff plugins/calc.wasm new/calc.wasm")]
    Diff {
        /// The component serving now.
        old: PathBuf,
        /// The component that would replace it.
        new: PathBuf,
    },
    /// Write a new plugin project that builds with one command.
    #[command(after_help = NEW_EXAMPLE)]
    New {
        /// The plugin's name: a WIT identifier, e.g. `my-plugin`.
        name: String,
        /// The language to write it in.
        #[arg(long, value_enum, default_value_t = new::Lang::Rust)]
        lang: new::Lang,
        /// The WIT package holding the world to implement (with stubs): a
        /// directory (its dependencies in `deps/`; hotslot:plugin is
        /// supplied if missing) or one `.wit` file.
        #[arg(long, value_name = "DIR", requires = "world")]
        wit: Option<PathBuf>,
        /// The world in `--wit` to implement.
        #[arg(long, value_name = "WORLD", requires = "wit")]
        world: Option<String>,
        /// Where to write it (default: ./NAME); must not exist or be empty.
        #[arg(long, value_name = "PATH")]
        dir: Option<PathBuf>,
    },
    /// Show what `watch` would load from a directory, and why not when not.
    #[command(after_help = "Example:\n  hotslot list plugins")]
    List {
        /// The directory of `*.wasm` components.
        dir: PathBuf,
        #[command(flatten)]
        limits: LimitArgs,
    },
}

const WATCH_EXAMPLE: &str = r#"Requests are INTERFACE[@VERSION]#FUNCTION(ARGS), arguments and answers in WAVE;
`list` shows what is loaded. Failures answer a line starting with `error: `.

Example:
  $ hotslot watch plugins
  greeter_a::demo:greeter/greet@1.0.0#hello("world")
  "a: hello, world"
  demo:calc/math@1#add(40, 2)
  42
  list
  demo:calc/math@1.0.0 calc 1
  ...
  end"#;

const NEW_EXAMPLE: &str = r#"Without --wit the plugin exports `local:NAME/plugin` with
`hello: func(name: string) -> string` and counts its calls in the host's store.

Example:
  $ hotslot new my-plugin --lang python
  build it:  sh my-plugin/build.sh
  component: my-plugin/my-plugin.wasm
  try it:    hotslot call my-plugin/my-plugin.wasm 'local:my-plugin/plugin#hello("you")'"#;

const CALL_EXAMPLE: &str = r#"Exits 0 with the answer (an `err(...)` value too), 1 on failure, 2 on a usage error.
What the plugin prints goes to standard error (HOTSLOT_LOG=warn hides it).

Example:
  $ hotslot call plugins/calc.wasm 'demo:calc/math@1#add(1, 2)'
  3"#;

/// Limits for every plugin instance.
#[derive(clap::Args)]
struct LimitArgs {
    /// Most linear memory one instance may use, in MiB (a manifest may ask
    /// for less, never more).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_MEMORY >> 20)]
    max_memory_mib: usize,
    /// Longest one call may run, in milliseconds (a manifest may ask for
    /// less, never more).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_TIMEOUT.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,
    /// Most WASI handles (open files, streams) one instance may hold (a
    /// manifest may ask for fewer, never more).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_OPEN_FILES)]
    max_open_files: usize,
    /// Largest component file read, in MiB.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_FILE_SIZE >> 20)]
    max_file_mib: u64,
    /// Where manifests may grant directories (default: the directory of the
    /// component).
    #[arg(long, value_name = "DIR")]
    grant_root: Option<PathBuf>,
    /// Most host-kept state one plugin may hold, in KiB (a manifest may ask
    /// for less, never more).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_STATE >> 10)]
    max_state_kib: usize,
    /// Where plugins with `[state] persist = true` keep their state
    /// (default: `.hotslot-state` in the plugins' directory).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// The compiler: `cranelift` (optimizing) or `winch` (baseline:
    /// compiles several times faster, runs slower; for development; what
    /// it cannot compile Cranelift compiles, with a warning). A manifest's
    /// `[compile] compiler` chooses for its plugin.
    #[arg(long, value_name = "NAME", default_value_t = Compiler::Cranelift)]
    compiler: Compiler,
    /// The most any plugin may reach over HTTP: authorities (`host`,
    /// `host:port`, `*.domain`), repeated or comma-separated; `none`: nothing
    /// at all. A plugin reaches only what its manifest's `[http] allow`
    /// grants and this allows (default: what manifests grant).
    #[arg(long, value_name = "AUTHORITY", value_delimiter = ',', value_parser = authority)]
    http_allow: Option<Vec<String>>,
    /// Longest one outbound HTTP request may take, from connecting to the
    /// last byte of its response, in milliseconds; never more than the
    /// call's deadline (a manifest may ask for less, never more).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_HTTP_TIMEOUT.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    http_timeout_ms: u64,
    /// Largest HTTP response body a plugin may read, in KiB (a manifest may
    /// ask for less, never more).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_HTTP_RESPONSE >> 10)]
    http_max_response_kib: u64,
}

/// One `--http-allow` entry, checked as the manifest's are; `none` as
/// written, in any case.
fn authority(text: &str) -> Result<String, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(NO_HTTP.to_string());
    }
    HttpAllow::new([text]).map(|_| text.to_string())
}

/// `--http-allow none`: no plugin reaches anything over HTTP.
const NO_HTTP: &str = "none";

impl Default for LimitArgs {
    /// The flags' defaults.
    fn default() -> Self {
        LimitArgs {
            max_memory_mib: DEFAULT_MAX_MEMORY >> 20,
            timeout_ms: DEFAULT_TIMEOUT.as_millis() as u64,
            max_open_files: DEFAULT_MAX_OPEN_FILES,
            max_file_mib: DEFAULT_MAX_FILE_SIZE >> 20,
            grant_root: None,
            max_state_kib: DEFAULT_MAX_STATE >> 10,
            state_dir: None,
            compiler: Compiler::Cranelift,
            http_allow: None,
            http_timeout_ms: DEFAULT_HTTP_TIMEOUT.as_millis() as u64,
            http_max_response_kib: DEFAULT_MAX_HTTP_RESPONSE >> 10,
        }
    }
}

impl LimitArgs {
    /// The largest component file read, in bytes.
    fn max_file_size(&self) -> u64 {
        self.max_file_mib.saturating_mul(1 << 20)
    }

    fn limits(&self) -> Limits {
        Limits {
            max_memory: self.max_memory_mib.saturating_mul(1 << 20),
            timeout: Duration::from_millis(self.timeout_ms),
            max_open_files: self.max_open_files,
            max_file_size: self.max_file_size(),
            max_state: self.max_state_kib.saturating_mul(1 << 10),
            // Every entry was checked as it was parsed; `none` allows
            // nothing, whatever else is given.
            http_allow: self.http_allow.as_ref().map(|entries| {
                match entries.iter().any(|e| e == NO_HTTP) {
                    true => HttpAllow::default(),
                    false => HttpAllow::new(entries).unwrap_or_default(),
                }
            }),
            http_timeout: Duration::from_millis(self.http_timeout_ms),
            max_http_response: self.http_max_response_kib.saturating_mul(1 << 10),
        }
    }
}

/// Runs the command line; what `main` calls.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbose = matches!(cli.command, Command::Watch { .. });
    // `list` starts instances too, but its user reads a table.
    let plugin_output = verbose || matches!(cli.command, Command::Call { .. });
    init_logging(verbose, plugin_output);
    let code = run(cli.command);
    // The answer is out; what compiling it added reaches the disk before
    // the process ends.
    crate::engine::finish_keeping_functions();
    code
}

fn run(command: Command) -> ExitCode {
    let outcome = match command {
        Command::Watch {
            dir,
            limits,
            metrics,
            http,
        } => watch(dir, &limits, metrics.as_deref(), http.as_deref()),
        Command::Call {
            file,
            request,
            limits,
        } => {
            // A request that cannot be read is a usage error, said before
            // the file is compiled (an interpreter takes seconds).
            if let Err(why) = CallRequest::parse(&request) {
                tell(format_args!(
                    "error: request `{request}`: {why}\n\n\
                     For more information, try 'hotslot call --help'."
                ));
                return ExitCode::from(2);
            }
            call(file, &request, &limits)
        }
        Command::Inspect { file } => inspect::inspect(&file)
            .or_else(|unread| {
                // WIT cannot say everything a component may hold (an
                // exported type): what wasmtime finds is said instead.
                let dir = dir_of(&file).to_path_buf();
                registry(&LimitArgs::default(), &dir, Purpose::Once)
                    .and_then(|registry| inspect::exports_of(&registry, &file))
                    .map(|found| {
                        let unread: String =
                            unread.lines().map(|line| format!("// {line}\n")).collect();
                        format!("{unread}{found}")
                    })
                    .map_err(|_| unread)
            })
            .and_then(|wit| write_out(&wit)),
        Command::Diff { old, new } => {
            let dir = dir_of(&old).to_path_buf();
            match registry(&LimitArgs::default(), &dir, Purpose::Once)
                .and_then(|registry| diff::diff(&registry, &old, &new))
            {
                Ok((lines, refused)) => match write_out(&format!("{}\n", lines.join("\n"))) {
                    Ok(()) if refused => return ExitCode::FAILURE,
                    written => written,
                },
                Err(e) => Err(e),
            }
        }
        Command::New {
            name,
            lang,
            wit,
            world,
            dir,
        } => {
            let own = wit.is_none();
            let request = format!("local:{name}/plugin#hello(\"you\")");
            new::new_plugin(&new::NewPlugin {
                name,
                lang,
                wit: wit.zip(world),
                dir,
            })
            .and_then(|(command, output)| {
                let component = new::shell_word(&output.to_string_lossy());
                let try_it = match own {
                    true => format!("hotslot call {component} '{request}'"),
                    false => format!("hotslot inspect {component}"),
                };
                write_out(&format!(
                    "build it:  {command}\ncomponent: {}\ntry it:    {try_it}\n",
                    output.display()
                ))
            })
        }
        Command::List { dir, limits } => registry(&limits, &dir, Purpose::List)
            .and_then(|registry| inspect::list(&registry, &dir, limits.max_file_size()))
            .and_then(|rows| write_out(&format!("{}\n", inspect::table(&rows)))),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            let message = crate::error::escape_controls(&message, |c| c == '\n' || c == '\t');
            tell(format_args!("error: {message}"));
            ExitCode::FAILURE
        }
    }
}

fn watch(
    dir: PathBuf,
    limits: &LimitArgs,
    metrics: Option<&str>,
    http: Option<&str>,
) -> Result<(), String> {
    // Ctrl-C outside a line editor (input piped): leave at once, cleanly,
    // once the functions last compiled are on disk (a save in progress
    // takes well under a second, and waits for another's at most ten).
    let _ = ctrlc::set_handler(|| {
        crate::engine::finish_keeping_functions();
        std::process::exit(0)
    });
    let registry = Arc::new(registry(limits, &dir, Purpose::Watch)?);
    if let Some(addr) = metrics {
        serve_metrics(registry.clone(), addr)?;
    }
    let mut watcher = Watcher::new(registry.clone(), &dir);
    if let Some(addr) = http {
        page::serve(registry.clone(), watcher.subscribe(), addr)?;
    }
    // Requests are answered while the directory loads: a plugin that is
    // slow to compile or start holds up only the requests it must serve.
    watcher.start_in_background().map_err(|e| e.to_string())?;
    // Nothing to load would otherwise say nothing at all.
    let components = std::fs::read_dir(&dir).map_or(0, |entries| {
        entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "wasm"))
            .count()
    });
    if components == 0 {
        tracing::info!(
            "watching {}: no *.wasm in it yet (each one put there is loaded)",
            dir.display()
        );
    }
    let session = session::Session {
        registry: &registry,
        watcher: Some(&watcher),
    };
    session::serve(&session).map_err(|e| format!("reading requests: {e}"))
}

fn call(file: PathBuf, request: &str, limits: &LimitArgs) -> Result<(), String> {
    let dir = dir_of(&file);
    // An import this host cannot link is said before any compiling.
    if let Some((import, why)) = inspect::unlinkable(&file, limits.max_file_size())?
        .into_iter()
        .next()
    {
        return Err(inspect::unlinkable_reason(&file, &import, &why));
    }
    let registry = registry(limits, dir, Purpose::Once)?;
    let added = match spaced_name(&file) {
        // One file alone, so no answer lists its name among others: a
        // download's `calc (1).wasm` is called all the same.
        Some(name) => registry
            .load_file(&file)
            .and_then(|plugin| registry.add_plugin(&name, &plugin)),
        None => registry.add_file(&file),
    }
    .map_err(|e| e.to_string())?;
    // The registry would say only that nothing serves the request: the
    // file and what it does serve are what the user needs to know.
    if let Ok(parsed) = CallRequest::parse(request) {
        let contract = parsed.interface().name().package() == crate::loader::CONTRACT_PACKAGE;
        if contract {
            return Err(format!(
                "{} is what the host calls on {} itself (hotslot:plugin), not a request",
                parsed.interface(),
                file.display()
            ));
        }
        if !added
            .interfaces
            .iter()
            .any(|i| i.serves(parsed.interface()))
        {
            let exports: Vec<String> = added.interfaces.iter().map(|i| i.to_string()).collect();
            return Err(format!(
                "{} does not export {} (it exports: {})",
                file.display(),
                parsed.interface(),
                exports.join(", ")
            ));
        }
    }
    let answer = session::call(&registry, request).map_err(|why| {
        // Nothing will ever serve its imports here: `call` loads one file.
        match why.contains("(the dependent is waiting for") {
            true => format!(
                "{}; `hotslot call` loads {} alone: to give it what it imports, \
                 put the plugins that provide it beside it and run `hotslot watch {}`",
                why.replace(" (the dependent is waiting for one)", "")
                    .replace(" (the dependent is waiting for it)", ""),
                file.display(),
                dir.display()
            ),
            false => why,
        }
    })?;
    write_out(&format!("{answer}\n"))
}

/// For a file whose stem holds white space (which `watch` refuses in a
/// name), the stem with each run of it made `_`.
fn spaced_name(file: &Path) -> Option<String> {
    let stem = file.file_stem()?.to_str()?;
    stem.contains(char::is_whitespace)
        .then(|| stem.split_whitespace().collect::<Vec<_>>().join("_"))
}

/// Writes `text` to standard output. A reader that went away (`hotslot
/// inspect x.wasm | head`) took all it wanted: not a failure (`println!`
/// panicked there).
fn write_out(text: &str) -> Result<(), String> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write to standard output: {e}"))
        }
        _ => Ok(()),
    }
}

/// Serves the registry's metrics at http://ADDR/metrics, on a thread of its
/// own, for as long as the host runs.
fn serve_metrics(registry: Arc<Registry>, addr: &str) -> Result<(), String> {
    const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    let bound = serve::serve(addr, "metrics", move |request| {
        if request.path() == "/metrics" {
            let text = crate::prometheus::encode(&registry);
            request.respond(200, CONTENT_TYPE, &text);
        } else {
            request.respond(404, "text/plain", "not found: try /metrics\n");
        }
    })
    .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
    tell(format_args!("hotslot: metrics on http://{bound}/metrics"));
    Ok(())
}

/// What a command's registry is for: its engine is built to suit.
#[derive(Clone, Copy, PartialEq)]
enum Purpose {
    /// `watch`: plugins run for a while and their files change. The
    /// instance pool.
    Watch,
    /// `list`: plugins loaded once, and started. The pool too.
    List,
    /// `call` and `diff`: one call, or none. No pool: setting one up costs
    /// more than it saves.
    Once,
}

/// The registry for plugins in `dir`, as the flags say.
fn registry(args: &LimitArgs, dir: &Path, purpose: Purpose) -> Result<Registry, String> {
    // One engine per process; with the code kept on disk a restart (or the
    // next `hotslot call`) does not compile the same component again.
    let engine = crate::engine::build(&EngineOptions {
        disk_cache: true,
        compiler: args.compiler,
        pool_instances: match purpose {
            Purpose::Watch | Purpose::List => crate::engine::DEFAULT_POOL_INSTANCES,
            Purpose::Once => 0,
        },
        // Compiled functions kept in memory and on disk: new bytes of a
        // plugin, in this run or the next, compile only what changed.
        reuse_functions: true,
    })
    .map_err(|e| e.to_string())?;
    let registry = Registry::with_engine(engine, args.limits()).map_err(|e| e.to_string())?;
    let state_dir = match &args.state_dir {
        Some(state_dir) => state_dir.clone(),
        None => dir.join(DEFAULT_STATE_DIR),
    };
    let registry = registry.with_state_dir(state_dir);
    Ok(match &args.grant_root {
        // A root that is not there would refuse every grant, one plugin at
        // a time: said once, at the start.
        Some(root) if !root.is_dir() => {
            return Err(format!(
                "--grant-root {}: no such directory",
                root.display()
            ))
        }
        Some(root) => registry.with_grant_root(root),
        None => registry,
    })
}

/// Where persisted plugin state goes, inside the plugins' directory: the
/// watcher follows only `*.wasm` and `*.toml` files directly in it.
const DEFAULT_STATE_DIR: &str = ".hotslot-state";

/// Logs go to standard error; `HOTSLOT_LOG` (error, warn, info, debug, trace)
/// overrides the level. What plugins print is logged at `info`; with
/// `plugin_output` it is shown unless `HOTSLOT_LOG` says otherwise: a quiet
/// `call` is quiet about loading, not about the plugin its user is
/// debugging.
fn init_logging(verbose: bool, plugin_output: bool) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let asked = std::env::var("HOTSLOT_LOG").ok().filter(|l| !l.is_empty());
    let chosen = asked.as_deref().and_then(|l| l.parse::<LevelFilter>().ok());
    let default = if verbose {
        LevelFilter::INFO
    } else {
        LevelFilter::WARN
    };
    let output = match plugin_output {
        true => LevelFilter::INFO,
        false => default,
    };
    let filter = Targets::new()
        .with_default(chosen.unwrap_or(default))
        .with_target(crate::output::TARGET, chosen.unwrap_or(output));
    let _ = tracing_subscriber::fmt()
        .with_writer(LogWriter::default)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_max_level(LevelFilter::TRACE)
        .finish()
        .with(filter)
        .try_init();
    if let (Some(asked), None) = (asked, chosen) {
        tracing::warn!(
            "HOTSLOT_LOG={asked:?} is no level (error, warn, info, debug, trace, off): \
             ignored"
        );
    }
}

/// The prompt of a terminal session.
pub(crate) const PROMPT: &str = "hotslot> ";

/// Set once a terminal session shows its prompt: from then on answers and
/// log lines are printed above it, and it is drawn again below them.
static ABOVE_PROMPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Keeps lines printed above the prompt whole, one after another.
static TERMINAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub(crate) fn print_above_prompt_from_now() {
    ABOVE_PROMPT.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Prints `text` on the line the prompt is on (clearing it), then the
/// prompt again below.
pub(crate) fn print_above_prompt(text: &str) {
    use std::io::Write as _;
    let _whole = crate::sync::lock(&TERMINAL);
    let mut out = std::io::stdout().lock();
    let mut shown = String::new();
    for line in text.lines() {
        shown.push_str("\r\x1b[K");
        shown.push_str(line);
        shown.push_str("\r\n");
    }
    shown.push_str(PROMPT);
    let _ = out.write_all(shown.as_bytes());
    let _ = out.flush();
}

/// Writes a line to standard error, if it can be written: `eprintln!`
/// panics where it cannot (a full disk, a closed pipe), and the exit code
/// would say "panicked" rather than what happened.
pub(crate) fn tell(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Writes one log event: to standard error, or above a terminal prompt.
#[derive(Default)]
struct LogWriter {
    line: Vec<u8>,
}

impl std::io::Write for LogWriter {
    fn write(&mut self, event: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(event);
        let safe = log_safe(&text, stderr_is_terminal());
        let bytes = safe.as_bytes();
        if ABOVE_PROMPT.load(std::sync::atomic::Ordering::SeqCst) {
            self.line.extend_from_slice(bytes);
            return Ok(event.len());
        }
        // A log that cannot be written (a full disk, a closed pipe) is
        // dropped: reported, tracing would `eprintln!` the error, which
        // panics there, and the thread logging (a loader) would die.
        let _ = std::io::stderr().write_all(bytes);
        Ok(event.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether the log goes to a terminal (and so is coloured).
fn stderr_is_terminal() -> bool {
    static TERMINAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TERMINAL.get_or_init(|| std::io::IsTerminal::is_terminal(&std::io::stderr()))
}

/// A log event (one or more lines, ending in a newline) as it is written:
/// its control characters written out, but for tabs, its last newline and,
/// on a terminal, the colours the log's own formatting puts in. A newline
/// inside it (a plugin's words in an error: a trap's function names, an
/// `on-start` refusal) starts an indented line, so that no line of the log
/// is one a plugin wrote.
fn log_safe(event: &str, colours: bool) -> std::borrow::Cow<'_, str> {
    let body = event.strip_suffix('\n').unwrap_or(event);
    let plain = |c: char| !c.is_control() || c == '\t';
    if body.chars().all(plain) {
        return std::borrow::Cow::Borrowed(event);
    }
    let mut safe = String::with_capacity(event.len() + 16);
    let mut rest = body;
    while let Some(c) = rest.chars().next() {
        let colour = colours.then(|| sgr_length(rest)).flatten();
        if let Some(length) = colour {
            safe.push_str(&rest[..length]);
            rest = &rest[length..];
            continue;
        }
        match c {
            c if plain(c) => safe.push(c),
            '\n' => safe.push_str("\n    "),
            c => crate::error::push_escaped(&mut safe, c),
        }
        rest = &rest[c.len_utf8()..];
    }
    if body.len() < event.len() {
        safe.push('\n');
    }
    std::borrow::Cow::Owned(safe)
}

/// The length of the colour sequence (`ESC [ digits and ; m`) `text`
/// starts with, if it starts with one.
fn sgr_length(text: &str) -> Option<usize> {
    let params = text.strip_prefix("\x1b[")?;
    let end = params.find(|c: char| !c.is_ascii_digit() && c != ';')?;
    params[end..]
        .starts_with('m')
        .then_some("\x1b[".len() + end + 1)
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            print_above_prompt(String::from_utf8_lossy(&self.line).trim_end());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::log_safe;

    #[test]
    fn a_log_event_keeps_its_lines_and_colours_and_nothing_a_plugin_put_in() {
        let event =
            "\x1b[33mWARN\x1b[0m refused: a\r\n2026-01-01T00:00:00Z INFO forged\x1b]0;t\x07\n";
        assert_eq!(
            log_safe(event, true),
            "\x1b[33mWARN\x1b[0m refused: a\\r\n    2026-01-01T00:00:00Z INFO forged\\u{1b}]0;t\\u{7}\n"
        );
        assert_eq!(
            log_safe(event, false),
            "\\u{1b}[33mWARN\\u{1b}[0m refused: a\\r\n    2026-01-01T00:00:00Z INFO forged\\u{1b}]0;t\\u{7}\n"
        );
        let plain = "INFO added\tcalc\n";
        assert!(matches!(log_safe(plain, false), std::borrow::Cow::Borrowed(p) if p == plain));
    }
}
