//! What a plugin is granted, from the manifest `NAME.toml` beside
//! `NAME.wasm`. Without a manifest a plugin gets nothing: no directories, no
//! environment, the host's default limits and one instance.
//!
//! ```toml
//! [limits]
//! max-memory-mib = 64    # linear memory per instance
//! timeout-ms = 1000      # deadline per call
//! max-open-files = 32    # WASI handles per instance
//! max-state-kib = 1024   # host-kept state (hotslot:plugin/state)
//! instances = 2          # instances that may serve calls at once
//!
//! [state]
//! persist = true         # keep host-kept state on disk, across restarts
//!
//! [reload]
//! canary = 20            # a new version replays each interface's last 20 calls first
//!
//! [compile]
//! compiler = "winch"     # or "cranelift" (the host's choice by default)
//!
//! [http]                 # outbound HTTP (wasi:http): nothing unless listed
//! allow = ["api.example.com", "*.cdn.example.net", "127.0.0.1:8080"]
//! timeout-ms = 2000      # one request, start to end (default: the host's, 10 s)
//! max-response-kib = 512 # response body (default: the host's, 16 MiB)
//!
//! [imports]                 # who serves an import, by plugin name
//! "demo:greeter/greet" = "greeter_b"
//!
//! [env]
//! GREETING = "hello"
//!
//! [[dir]]
//! host = "data"          # relative to the manifest's directory
//! guest = "/data"
//! mode = "read-only"     # or "read-write"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::engine::Compiler;
use crate::error::Error;
use crate::http::HttpAllow;
use crate::limits::{Limits, MAX_CANARY, MAX_DIR_GRANTS, MAX_INSTANCES};

/// What one plugin is granted. The default grants nothing.
///
/// ```
/// use std::path::Path;
/// let grants = hotslot::Grants::from_toml(
///     "[limits]\ntimeout-ms = 250\n[env]\nMODE = \"test\"\n",
///     Path::new("."),
///     "demo.toml",
/// ).unwrap();
/// assert_eq!(grants.timeout, Some(std::time::Duration::from_millis(250)));
/// assert_eq!(grants.env, [("MODE".to_string(), "test".to_string())]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    /// Host directories the plugin may open.
    pub dirs: Vec<DirGrant>,
    /// Environment variables it sees.
    pub env: Vec<(String, String)>,
    /// Its memory limit, if not the host's default.
    pub max_memory: Option<usize>,
    /// Its call deadline, if not the host's default.
    pub timeout: Option<Duration>,
    /// Its cap on WASI handles per instance, if not the host's default.
    pub max_open_files: Option<usize>,
    /// Its quota of host-kept state, if not the host's default.
    pub max_state: Option<usize>,
    /// Whether its host-kept state is also kept on disk, across restarts.
    pub persist_state: bool,
    /// Which plugin serves an import, where the plugin chooses: interface
    /// (with or without a version) and plugin name.
    pub imports: Vec<(String, String)>,
    /// How many recent calls of each interface a new version must replay
    /// without a fault before it takes over (`[reload] canary`); 0: none.
    pub canary: usize,
    /// How many instances may serve its calls at once (default 1).
    pub instances: Option<usize>,
    /// The compiler to compile it with, if not the host's (`[compile]
    /// compiler`). Read when the component is loaded with its manifest
    /// ([`Registry::load_file`](crate::Registry::load_file)); grants given
    /// to a plugin already compiled do not compile it again.
    pub compiler: Option<Compiler>,
    /// The authorities it may reach over HTTP (`[http] allow`); nothing
    /// by default. The operator's `--http-allow` bounds it further.
    pub http: HttpAllow,
    /// Its bound on one HTTP request, if not the host's.
    pub http_timeout: Option<Duration>,
    /// Its largest HTTP response body, if not the host's.
    pub max_http_response: Option<u64>,
}

/// A host directory mapped into a plugin.
///
/// ```
/// let plugins = tempfile::tempdir()?;
/// std::fs::create_dir(plugins.path().join("data"))?;
/// let manifest = "[[dir]]\nhost = \"data\"\nguest = \"/data\"\nmode = \"read-write\"\n";
/// let grants = hotslot::Grants::from_toml(manifest, plugins.path(), "notes.toml")?;
/// assert_eq!(grants.dirs[0].guest, "/data");
/// assert!(grants.dirs[0].writable);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirGrant {
    /// The directory on the host.
    pub host: PathBuf,
    /// Where the plugin sees it.
    pub guest: String,
    /// Whether the plugin may change it.
    pub writable: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ManifestFile {
    #[serde(default)]
    limits: LimitsSection,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    dir: Vec<DirSection>,
    #[serde(default)]
    state: StateSection,
    #[serde(default)]
    imports: BTreeMap<String, String>,
    #[serde(default)]
    reload: ReloadSection,
    #[serde(default)]
    compile: CompileSection,
    #[serde(default)]
    http: HttpSection,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct HttpSection {
    #[serde(default)]
    allow: Vec<String>,
    timeout_ms: Option<u64>,
    max_response_kib: Option<u64>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct CompileSection {
    compiler: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ReloadSection {
    #[serde(default)]
    canary: u32,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct StateSection {
    #[serde(default)]
    persist: bool,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct LimitsSection {
    max_memory_mib: Option<u64>,
    timeout_ms: Option<u64>,
    max_open_files: Option<u64>,
    max_state_kib: Option<u64>,
    instances: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct DirSection {
    host: PathBuf,
    guest: String,
    #[serde(default)]
    mode: Mode,
}

#[derive(Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    #[default]
    ReadOnly,
    ReadWrite,
}

impl Grants {
    /// Parses a manifest; relative host directories are taken from `base`.
    /// Errors name `origin` and, for syntax, the line.
    ///
    /// ```
    /// use std::{path::Path, time::Duration};
    /// let grants = hotslot::Grants::from_toml(
    ///     "[limits]\ntimeout-ms = 200\n[env]\nMODE = \"test\"\n",
    ///     Path::new("plugins"),
    ///     "plugins/calc.toml",
    /// )?;
    /// assert_eq!(grants.timeout, Some(Duration::from_millis(200)));
    /// assert!(hotslot::Grants::from_toml("[limits]\ntimeout-ms = 0\n", Path::new("."), "x.toml").is_err());
    /// # Ok::<(), hotslot::Error>(())
    /// ```
    pub fn from_toml(text: &str, base: &Path, origin: &str) -> Result<Grants, Error> {
        Self::parse(text, base, origin, None)
    }

    /// Like [`Grants::from_toml`], for a manifest its plugin's author wrote:
    /// every granted directory must resolve (symlinks followed) inside
    /// `root`, or the manifest is refused naming the path.
    ///
    /// ```
    /// use std::path::Path;
    /// let dir = std::env::temp_dir();
    /// let err = hotslot::Grants::from_toml_within(
    ///     "[[dir]]\nhost = \"/\"\nguest = \"/all\"\n", &dir, "p.toml", &dir,
    /// ).unwrap_err();
    /// assert!(err.to_string().contains("outside"), "{err}");
    /// ```
    pub fn from_toml_within(
        text: &str,
        base: &Path,
        origin: &str,
        root: &Path,
    ) -> Result<Grants, Error> {
        Self::parse(text, base, origin, Some(root))
    }

    fn parse(text: &str, base: &Path, origin: &str, root: Option<&Path>) -> Result<Grants, Error> {
        let bad = |reason: String| Error::Manifest {
            file: origin.to_string(),
            reason,
        };
        let file: ManifestFile = toml::from_str(text).map_err(|e| bad(syntax_error(text, &e)))?;
        let limits = file.limits;
        if let Some(n) = limits.instances {
            if n == 0 || n as usize > MAX_INSTANCES {
                return Err(bad(format!(
                    "instances must be 1 to {MAX_INSTANCES}, not {n}"
                )));
            }
        }
        if limits.timeout_ms == Some(0) {
            return Err(bad("timeout-ms must be more than 0".into()));
        }
        if file.dir.len() > MAX_DIR_GRANTS {
            return Err(bad(format!(
                "{} directories granted; at most {MAX_DIR_GRANTS}",
                file.dir.len()
            )));
        }
        let compiler = match &file.compile.compiler {
            Some(name) => Some(
                name.parse::<Compiler>()
                    .map_err(|e| bad(format!("[compile]: {e}")))?,
            ),
            None => None,
        };
        let http =
            HttpAllow::new(&file.http.allow).map_err(|e| bad(format!("[http] allow: {e}")))?;
        if file.http.timeout_ms == Some(0) {
            return Err(bad("[http] timeout-ms must be more than 0".into()));
        }
        for interface in file.imports.keys() {
            if let Err(e) = interface.parse::<crate::version::Request>() {
                return Err(bad(format!("[imports]: {e}")));
            }
        }
        let root = match root {
            Some(root) => Some(root.canonicalize().map_err(|e| {
                bad(format!(
                    "cannot resolve the grant root {}: {e}",
                    root.display()
                ))
            })?),
            None => None,
        };
        let mut dirs = Vec::new();
        for dir in file.dir {
            let mut host = base.join(&dir.host);
            if !host.is_dir() {
                return Err(bad(format!("{} is not a directory", host.display())));
            }
            if let Some(root) = &root {
                let real = host
                    .canonicalize()
                    .map_err(|e| bad(format!("cannot resolve {}: {e}", host.display())))?;
                if !real.starts_with(root) {
                    return Err(bad(format!(
                        "{} resolves to {}, outside the grant root {}",
                        host.display(),
                        real.display(),
                        root.display()
                    )));
                }
                // The resolved path from now on: a symlink swapped in later
                // does not move the grant.
                host = real;
            }
            if dir.guest.is_empty() {
                return Err(bad(format!("no guest path for {}", host.display())));
            }
            dirs.push(DirGrant {
                host,
                guest: dir.guest,
                writable: dir.mode == Mode::ReadWrite,
            });
        }
        Ok(Grants {
            dirs,
            env: file.env.into_iter().collect(),
            max_memory: limits
                .max_memory_mib
                .map(|mib| usize::try_from(mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)),
            timeout: limits.timeout_ms.map(Duration::from_millis),
            max_open_files: limits
                .max_open_files
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            max_state: limits
                .max_state_kib
                .map(|kib| usize::try_from(kib.saturating_mul(1024)).unwrap_or(usize::MAX)),
            persist_state: file.state.persist,
            imports: file.imports.into_iter().collect(),
            canary: (file.reload.canary as usize).min(MAX_CANARY),
            instances: limits.instances.map(|n| n as usize),
            compiler,
            http,
            http_timeout: file.http.timeout_ms.map(Duration::from_millis),
            max_http_response: file
                .http
                .max_response_kib
                .map(|kib| kib.saturating_mul(1024)),
        })
    }

    /// Reads the manifest beside `component` (`NAME.toml` for `NAME.wasm`);
    /// no file means no grants. Granted directories must lie inside the
    /// component's own directory.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// let grants = hotslot::Grants::for_component("plugins/notes.wasm".as_ref())?; // reads plugins/notes.toml
    /// println!("{} directories granted", grants.dirs.len());
    /// # Ok(()) }
    /// ```
    pub fn for_component(component: &Path) -> Result<Grants, Error> {
        let path = manifest_path(component);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let base = dir_of(&path);
                Grants::from_toml_within(&text, base, &path.display().to_string(), base)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Grants::default()),
            Err(source) => Err(Error::Io { path, source }),
        }
    }

    /// The limits an instance runs under: the operator's `ceiling`, lowered
    /// where this manifest asks for less. A manifest never raises a limit.
    ///
    /// ```
    /// use std::{path::Path, time::Duration};
    /// use hotslot::{Grants, Limits};
    /// let grants = Grants::from_toml("[limits]\ntimeout-ms = 5000\n", Path::new("."), "x.toml")?;
    /// let ceiling = Limits { timeout: Duration::from_secs(1), ..Limits::default() };
    /// assert_eq!(grants.limits(&ceiling).timeout, Duration::from_secs(1)); // never raised
    /// # Ok::<(), hotslot::Error>(())
    /// ```
    pub fn limits(&self, ceiling: &Limits) -> Limits {
        Limits {
            max_memory: self
                .max_memory
                .map_or(ceiling.max_memory, |m| m.min(ceiling.max_memory)),
            timeout: self
                .timeout
                .map_or(ceiling.timeout, |t| t.min(ceiling.timeout)),
            max_open_files: self
                .max_open_files
                .map_or(ceiling.max_open_files, |n| n.min(ceiling.max_open_files)),
            max_file_size: ceiling.max_file_size,
            max_state: self
                .max_state
                .map_or(ceiling.max_state, |n| n.min(ceiling.max_state)),
            // The plugin's own list is kept in its grants: a request must
            // be in both.
            http_allow: ceiling.http_allow.clone(),
            http_timeout: self
                .http_timeout
                .map_or(ceiling.http_timeout, |t| t.min(ceiling.http_timeout)),
            max_http_response: self
                .max_http_response
                .map_or(ceiling.max_http_response, |n| {
                    n.min(ceiling.max_http_response)
                }),
        }
    }

    /// What this manifest asks for above the operator's `ceiling`, which
    /// [`Grants::limits`] caps: each as its manifest key, what it asks and
    /// the most the host allows (e.g. `max-memory-mib = 100000 (at most
    /// 256)`).
    ///
    /// ```
    /// # use std::path::Path;
    /// let grants = hotslot::Grants::from_toml(
    ///     "[limits]\nmax-memory-mib = 100000\n", Path::new("."), "big.toml")?;
    /// let capped = grants.capped(&hotslot::Limits::default());
    /// assert_eq!(capped, ["max-memory-mib = 100000 (at most 256)"]);
    /// # Ok::<(), hotslot::Error>(())
    /// ```
    pub fn capped(&self, ceiling: &Limits) -> Vec<String> {
        const MIB: usize = 1 << 20;
        let mut capped = Vec::new();
        let mut check = |key: &str, asked: Option<u128>, most: u128| {
            if let Some(asked) = asked.filter(|asked| *asked > most) {
                capped.push(format!("{key} = {asked} (at most {most})"));
            }
        };
        let memory = |bytes: usize| (bytes / MIB) as u128;
        check(
            "max-memory-mib",
            self.max_memory.map(memory),
            memory(ceiling.max_memory),
        );
        check(
            "timeout-ms",
            self.timeout.map(|t| t.as_millis()),
            ceiling.timeout.as_millis(),
        );
        check(
            "max-open-files",
            self.max_open_files.map(|n| n as u128),
            ceiling.max_open_files as u128,
        );
        check(
            "max-state-kib",
            self.max_state.map(|n| (n / 1024) as u128),
            (ceiling.max_state / 1024) as u128,
        );
        check(
            "[http] timeout-ms",
            self.http_timeout.map(|t| t.as_millis()),
            ceiling.http_timeout.as_millis(),
        );
        check(
            "[http] max-response-kib",
            self.max_http_response.map(|n| (n / 1024) as u128),
            (ceiling.max_http_response / 1024) as u128,
        );
        capped
    }

    /// How many instances may serve at once.
    pub(crate) fn instance_count(&self) -> usize {
        self.instances.unwrap_or(1).clamp(1, MAX_INSTANCES)
    }
}

/// The directory `path` is in: `.` for a bare file name (whose parent is
/// the empty path, which no file call accepts).
///
/// ```
/// use std::path::Path;
/// assert_eq!(hotslot::dir_of(Path::new("calc.wasm")), Path::new("."));
/// assert_eq!(hotslot::dir_of(Path::new("plugins/calc.wasm")), Path::new("plugins"));
/// ```
pub fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// `NAME.toml` beside `NAME.wasm`.
///
/// ```
/// use std::path::Path;
/// assert_eq!(hotslot::manifest_path(Path::new("plugins/calc.wasm")), Path::new("plugins/calc.toml"));
/// ```
pub fn manifest_path(component: &Path) -> PathBuf {
    component.with_extension("toml")
}

/// A manifest's syntax error on one line, where it is: toml's own text
/// draws the line with a caret under it, over several lines, and errors
/// here are one line (a log line, an `error:` answer).
fn syntax_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim();
    let Some(before) = error.span().and_then(|span| text.get(..span.start)) else {
        return message.to_string();
    };
    let line = before.matches('\n').count() + 1;
    let column = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count()
        + 1;
    format!("line {line}, column {column}: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limit_capped_is_named_and_none_lowered() {
        let grants = Grants::from_toml(
            "[limits]\ntimeout-ms = 9000\nmax-open-files = 8\nmax-state-kib = 99999\n\
             [http]\nallow = [\"example.com\"]\ntimeout-ms = 60000\nmax-response-kib = 1\n",
            Path::new("."),
            "m.toml",
        )
        .unwrap();
        assert_eq!(
            grants.capped(&Limits::default()),
            [
                "timeout-ms = 9000 (at most 5000)",
                "max-state-kib = 99999 (at most 16384)",
                "[http] timeout-ms = 60000 (at most 10000)",
            ]
        );
    }

    #[test]
    fn a_malformed_manifest_names_its_line() {
        let err = Grants::from_toml(
            "[limits]\ntimeout-ms = \"soon\"\n",
            Path::new("."),
            "p.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("p.toml") && err.contains("line 2, column 14: "),
            "{err}"
        );
        // On one line: toml's caret drawing is left out.
        assert!(!err.contains('\n'), "{err}");
        let err = Grants::from_toml("[limits]\nspeed = 3\n", Path::new("."), "p.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("speed") && err.contains("line 2, column 1"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn a_manifest_lowers_limits_but_never_raises_them() {
        let grants = Grants::from_toml(
            "[limits]\nmax-memory-mib = 100000\ntimeout-ms = 100000000\n",
            Path::new("."),
            "p.toml",
        )
        .unwrap();
        let ceiling = Limits {
            max_memory: 16 << 20,
            timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        assert_eq!(grants.limits(&ceiling), ceiling);
    }

    #[test]
    fn limits_override_the_defaults() {
        let grants = Grants::from_toml(
            "[limits]\nmax-memory-mib = 8\ninstances = 3\n",
            Path::new("."),
            "p.toml",
        )
        .unwrap();
        let limits = grants.limits(&Limits::default());
        assert_eq!(limits.max_memory, 8 << 20);
        assert_eq!(limits.timeout, Limits::default().timeout);
        assert_eq!(grants.instance_count(), 3);
        assert!(Grants::from_toml("[limits]\ninstances = 99\n", Path::new("."), "p").is_err());
    }
}
