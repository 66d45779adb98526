//! The errors hotslot's library returns, one enum so callers can branch on
//! what went wrong. Every variant names the file, interface, implementation
//! or function it is about.

use std::borrow::Cow;
use std::path::PathBuf;

use wasmtime::component::ResourceTableError;

/// An [`Error`] as the call path passes it between its layers: boxed, so
/// that a call's `Result` fits in two registers instead of being copied
/// through memory at each layer (an `Error` is over 100 bytes). Public
/// functions unbox it once, at the edge.
pub(crate) type Failed = Box<Error>;

/// Everything that can go wrong in the registry, the loader or a call.
///
/// ```
/// use hotslot::{Error, Registry};
/// let registry = Registry::new().unwrap();
/// let handle = registry.get("demo:greeter/greet@1.0.0").unwrap();
/// // No implementation yet: the handle exists, the call says why it failed.
/// match handle.call("hello", &[]) {
///     Err(Error::Unavailable { interface, .. }) => assert_eq!(interface, "demo:greeter/greet@1.0.0"),
///     other => panic!("unexpected {other:?}"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An interface name or request that does not parse.
    #[error("bad interface name `{text}`: {reason}")]
    BadInterfaceName {
        /// The text as given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A plugin file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },

    /// The bytes are not a component: a core module, garbage, a truncated or
    /// empty file, or a component that fails to validate or compile.
    #[error("{origin} is not a usable component: {reason}")]
    NotAComponent {
        /// Where the bytes came from (a file path, or a name given by the caller).
        origin: String,
        /// What is wrong with them.
        reason: String,
    },

    /// The component imports something this host does not provide.
    #[error("{origin} cannot be linked: {reason}")]
    Link {
        /// Where the component came from.
        origin: String,
        /// The import that is missing, as wasmtime words it.
        reason: String,
    },

    /// A component does not export the interface it was added for, at a
    /// compatible version.
    #[error(
        "{origin} does not export {interface} (it exports: {})",
        list_or_none(exported)
    )]
    NotExported {
        /// The interface asked for.
        interface: String,
        /// Where the component came from.
        origin: String,
        /// The interfaces it does export, with their versions (when it
        /// serves none: everything it exports, in words).
        exported: Vec<String>,
    },

    /// A fresh instance of a plugin could not be made (its start-up code
    /// trapped, or a limit was hit).
    #[error("cannot instantiate {origin} for {interface} `{name}`: {reason}")]
    Instantiate {
        /// The interface.
        interface: String,
        /// The implementation's name.
        name: String,
        /// Where the component came from.
        origin: String,
        /// What went wrong.
        reason: String,
    },

    /// No implementation is registered that serves the request.
    #[error("no implementation of {request}")]
    NoImplementation {
        /// The request, as asked.
        request: String,
    },

    /// `single_implementation` found more than one (or none).
    #[error("expected exactly one implementation of {request}, found {count}")]
    NotSingle {
        /// The request, as asked.
        request: String,
        /// How many serve it.
        count: usize,
    },

    /// A handle's slot is empty: its implementation was removed (and not yet
    /// added again), or a `get` handle has no implementation yet.
    #[error("{}", unavailable(interface, name))]
    Unavailable {
        /// The interface the handle is for.
        interface: String,
        /// The implementation's name, or `*` for a handle from `get` that has
        /// not found one.
        name: String,
    },

    /// The interface has no function of that name.
    #[error(
        "{interface} `{name}` has no function `{function}` (it has: {})",
        list_or_none(available)
    )]
    NoSuchFunction {
        /// The interface.
        interface: String,
        /// The implementation's name.
        name: String,
        /// The function asked for.
        function: String,
        /// The functions it does have.
        available: Vec<String>,
    },

    /// Arguments that do not match the function's parameters.
    #[error("{interface}#{function}: {reason}")]
    BadArguments {
        /// The interface.
        interface: String,
        /// The function.
        function: String,
        /// What does not match.
        reason: String,
    },

    /// The call itself failed inside the plugin. The instance it ran in is
    /// discarded; the next call gets a fresh one.
    #[error("{interface} `{name}` failed in {function}: {fault}: {reason}")]
    Call {
        /// The interface.
        interface: String,
        /// The implementation's name.
        name: String,
        /// The function.
        function: String,
        /// What kind of failure it was.
        fault: Fault,
        /// The trap or error, as wasmtime words it.
        reason: String,
    },

    /// Typed bindings (from `bindgen!`) could not be loaded from an instance.
    #[error("{interface} `{name}`: cannot load typed bindings {bindings}: {reason}")]
    Bindings {
        /// The interface.
        interface: String,
        /// The implementation's name.
        name: String,
        /// The Rust type of the bindings.
        bindings: &'static str,
        /// Why they do not fit.
        reason: String,
    },

    /// A plugin manifest (`NAME.toml`) that does not parse or grants what
    /// cannot be granted.
    #[error("bad manifest {file}: {reason}")]
    Manifest {
        /// The manifest file.
        file: String,
        /// What is wrong, with the line for a syntax error.
        reason: String,
    },

    /// A new version of a plugin does not export an interface the plugin
    /// serves now. A reload must keep every interface (or none changes):
    /// remove the implementation first to drop one.
    #[error(
        "{origin} does not export {interface}, which `{name}` serves now; \
         a reload must keep every interface (remove it first to drop one)"
    )]
    WouldDrop {
        /// The interface it would drop, as served now.
        interface: String,
        /// The plugin's name.
        name: String,
        /// Where the new version came from.
        origin: String,
    },

    /// A plugin added whole under a name would take a slot that another
    /// plugin serves under the same name (added for that one interface).
    #[error(
        "{interface} `{name}` is served by another plugin ({other}); \
         remove it before adding {origin} under that name"
    )]
    NameTaken {
        /// The interface.
        interface: String,
        /// The name.
        name: String,
        /// The plugin being added.
        origin: String,
        /// Where the plugin serving the slot came from.
        other: String,
    },

    /// A new version of a plugin would break the contract of an interface it
    /// serves: within a version line, every function must stay as it was
    /// (adding functions is fine). Nothing changed.
    #[error(
        "{origin} would break the contract `{name}` serves: {}",
        explain(differences)
    )]
    Contract {
        /// The plugin's name.
        name: String,
        /// Where the new version came from.
        origin: String,
        /// Each function removed or changed.
        differences: Vec<Difference>,
    },

    /// A new version faulted replaying a recent call (`[reload] canary`) on
    /// an instance of its own: it does not take over, and the old version
    /// keeps serving.
    #[error("{origin} was refused for `{name}`: replaying {call} it failed: {fault}: {reason}")]
    Canary {
        /// The plugin's name.
        name: String,
        /// Where the new version came from.
        origin: String,
        /// The call replayed, with its arguments in WAVE.
        call: String,
        /// How it failed.
        fault: Fault,
        /// The trap or error, as wasmtime words it.
        reason: String,
    },

    /// A call reached a plugin whose every instance this same thread is
    /// already using (a typed closure, a batch or a plugin calling back into
    /// it): waiting would never end, so the call fails at once.
    #[error(
        "{interface} `{name}` was re-entered: this thread already holds its \
         every instance ({instances}), so the call would wait for itself"
    )]
    Reentered {
        /// The interface called.
        interface: String,
        /// The plugin's name.
        name: String,
        /// How many instances the plugin may run.
        instances: usize,
    },

    /// Every instance of a plugin stayed busy past the call's deadline.
    #[error("{interface} `{name}`: no instance became free within {waited_ms} ms")]
    Busy {
        /// The interface called.
        interface: String,
        /// The plugin's name.
        name: String,
        /// How long the call waited.
        waited_ms: u64,
    },

    /// A plugin name that cannot be used: empty, not UTF-8, or holding a
    /// control character.
    #[error("bad plugin name {name:?}: {reason}")]
    BadName {
        /// The name, as far as it can be shown.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A call a plugin made through one of its imports (an interface another
    /// plugin serves) failed: no plugin serves it yet, the provider's
    /// functions do not match, the call would close a cycle, or it failed in
    /// the provider. The dependent's call fails with it.
    #[error("{0}")]
    Import(Box<ImportError>),

    /// Plugins' persisted state could not be read or written.
    #[error("plugin state in {}: {reason}", file.display())]
    State {
        /// The state database.
        file: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// The wasmtime engine could not be configured.
    #[error("cannot configure wasmtime: {0}")]
    Engine(String),
}

/// What [`Error::Import`] holds. It is also the error an import function
/// returns to wasmtime, so that it comes out of the dependent's call whole.
///
/// ```no_run
/// # fn main() -> Result<(), hotslot::Error> {
/// # let registry = hotslot::Registry::new()?;
/// use hotslot::wasmtime::component::Val;
/// let banner = registry.first_implementation("demo:banner/banner@1")?;
/// match banner.call("show", &[Val::String("x".into())]) {
///     Err(hotslot::Error::Import(failure)) => match &failure.provider {
///         Some(provider) => eprintln!("`{provider}` failed `{}`: {}", failure.dependent, failure.reason),
///         None => eprintln!("nothing serves {} yet", failure.import),
///     },
///     other => println!("{other:?}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, thiserror::Error)]
#[error(
    "`{dependent}` calling {import}#{function}{}: {reason}",
    provider.as_ref().map(|p| format!(" on `{p}`")).unwrap_or_default()
)]
pub struct ImportError {
    /// The plugin that made the call.
    pub dependent: String,
    /// The interface it imports.
    pub import: String,
    /// The function it called.
    pub function: String,
    /// The plugin that serves the import, if one does.
    pub provider: Option<String>,
    /// How the call failed in the provider, if it ran there.
    pub fault: Option<Fault>,
    /// What went wrong, naming what it is about.
    pub reason: String,
}

/// Why a call failed inside a plugin.
///
/// ```no_run
/// # fn main() -> Result<(), hotslot::Error> {
/// # let registry = hotslot::Registry::new()?;
/// use hotslot::{Error, Fault};
/// let rogue = registry.first_implementation("demo:rogue/misbehave@0.1")?;
/// match rogue.call("spin", &[]) {
///     Err(Error::Call { fault: Fault::Timeout, .. }) => println!("stopped at its deadline"),
///     Err(Error::Call { fault: Fault::Limit, .. }) => println!("stopped at its memory limit"),
///     other => println!("{other:?}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The guest trapped (`unreachable`, a panic, a bad memory access...).
    Trap,
    /// The call ran past its deadline and was interrupted.
    Timeout,
    /// The guest's stack overflowed (endless recursion).
    StackOverflow,
    /// The guest tried to grow memory or a table past its limit.
    Limit,
    /// The host failed the call (a WASI error, an exit, a type mismatch).
    Host,
}

impl Fault {
    /// The fault as one word, where it is a key or a label: `stats` in
    /// `watch` and the `fault` label of `hotslot_failed_calls_total`.
    ///
    /// ```
    /// assert_eq!(hotslot::Fault::StackOverflow.word(), "stack-overflow");
    /// ```
    pub fn word(self) -> &'static str {
        match self {
            Fault::Trap => "trap",
            Fault::Timeout => "timeout",
            Fault::StackOverflow => "stack-overflow",
            Fault::Limit => "limit",
            Fault::Host => "host",
        }
    }

    /// Classifies a wasmtime error from a call.
    pub(crate) fn of(error: &wasmtime::Error) -> Fault {
        use wasmtime::Trap;
        if let Some(fault) = error
            .downcast_ref::<ImportError>()
            .and_then(|failure| failure.fault)
        {
            return fault;
        }
        if error.downcast_ref::<crate::limits::LimitHit>().is_some() || table_full(error) {
            return Fault::Limit;
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => Fault::Timeout,
            Some(Trap::StackOverflow) => Fault::StackOverflow,
            Some(_) => Fault::Trap,
            None => Fault::Host,
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Fault::Trap => "trap",
            Fault::Timeout => "deadline exceeded",
            Fault::StackOverflow => "stack overflow",
            Fault::Limit => "resource limit hit",
            Fault::Host => "host error",
        })
    }
}

/// One way a new version breaks the contract of an old one.
///
/// ```no_run
/// # fn main() -> Result<(), hotslot::Error> {
/// # let registry = hotslot::Registry::new()?;
/// match registry.add_file("plugins/calc.wasm") {
///     Err(hotslot::Error::Contract { differences, .. }) => {
///         for d in differences {
///             println!("{}#{}: {} -> {}", d.interface, d.function, d.old, d.new.as_deref().unwrap_or("gone"));
///         }
///     }
///     other => { other?; }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// The interface, as the old version exports it.
    pub interface: String,
    /// The function.
    pub function: String,
    /// Its signature in the old version, as WIT.
    pub old: String,
    /// Its signature in the new version, as WIT, or `None` if it is gone.
    pub new: Option<String>,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.new {
            Some(new) => write!(
                f,
                "{}#{}: was `{}`, now `{new}`",
                self.interface, self.function, self.old
            ),
            None => write!(
                f,
                "{}#{}: was `{}`, now gone",
                self.interface, self.function, self.old
            ),
        }
    }
}

/// [`Error::Unavailable`] in words: for a `get` handle (`name` is `*`),
/// no plugin to name.
fn unavailable(interface: &str, name: &str) -> String {
    match name {
        "*" => format!("{interface} is unavailable: no implementation of it is loaded"),
        name => format!("{interface} `{name}` is unavailable: no implementation is loaded"),
    }
}

/// The differences as one line each, then what to do about them.
fn explain(differences: &[Difference]) -> String {
    let mut text: Vec<String> = differences.iter().map(|d| d.to_string()).collect();
    text.push(
        "a new version within a version line must keep every function as it was: \
         restore the signature, or bump the major version (for 0.x, the minor: its \
         version line) and load it under another name (another file): a new major \
         serves beside the old. A name keeps its contract across a removal \
         (`Registry::forget_contract` drops it; in `hotslot watch`, `forget NAME` \
         once its file is removed)"
            .into(),
    );
    text.join("; ")
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".to_string()
    } else {
        items.join(", ")
    }
}

/// What a full WASI handle table means, in the words of the limit that
/// sets its size: wasmtime-wasi says "resource table has no free keys".
const TABLE_FULL: &str = "the plugin holds as many WASI handles (open files and \
                          directories, streams, pollables) as `max-open-files` allows";

/// Whether `error` is a plugin's WASI handle table found full: its
/// `max-open-files` limit.
fn table_full(error: &wasmtime::Error) -> bool {
    error
        .chain()
        .any(|cause| matches!(cause.downcast_ref(), Some(ResourceTableError::Full)))
}

/// Renders a wasmtime error with its causes on one line. The wasm backtrace
/// a trap carries is left out (it spans many lines) and logged at debug level.
pub(crate) fn reason(error: &wasmtime::Error) -> String {
    if let Some(backtrace) = error.downcast_ref::<wasmtime::WasmBacktrace>() {
        tracing::debug!("{backtrace}");
    }
    error
        .chain()
        .map(|cause| match cause.downcast_ref::<ResourceTableError>() {
            Some(ResourceTableError::Full) => TABLE_FULL.to_string(),
            _ => cause.to_string(),
        })
        .filter(|text| !text.starts_with("error while executing at wasm backtrace"))
        // A plugin's words may be in it (a trap's function names): no
        // escape sequence of theirs reaches a terminal.
        .map(|text| escape_controls(&one_line(&text), |_| false).into_owned())
        .collect::<Vec<_>>()
        .join(": ")
}

/// `text` with every run of white space (newlines included) made one space,
/// for messages that must fit on one line.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `text` with its control characters (C0, DEL, C1), other than those
/// `keep` accepts, written out as Rust escapes (`\r`, `\u{1b}`): text a
/// plugin chose, shown on a terminal or in a log, moves no cursor, sets no
/// title, and starts no line of its own.
pub(crate) fn escape_controls(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if !c.is_control() || keep(c) => escaped.push(c),
            c => push_escaped(&mut escaped, c),
        }
    }
    Cow::Owned(escaped)
}

/// Writes the control character `c` out as a Rust escape.
pub(crate) fn push_escaped(out: &mut String, c: char) {
    use std::fmt::Write as _;
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
}

/// What a caught panic said, for an error message.
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_written_out() {
        let text = "a\x1b]0;title\x07\r\nb\tc\u{9b}d\u{7f}";
        assert_eq!(
            escape_controls(text, |c| c == '\t'),
            "a\\u{1b}]0;title\\u{7}\\r\\nb\tc\\u{9b}d\\u{7f}"
        );
        assert!(matches!(
            escape_controls("plain", |_| false),
            Cow::Borrowed(_)
        ));
    }
}
