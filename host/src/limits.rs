//! Every limit a plugin instance runs under, with its default: one home for
//! the numbers the CLI's flags, a manifest's `[limits]` and the library's
//! [`Limits`] set. Pure data; of ours it imports only the type of an HTTP
//! allow list.

use std::time::Duration;

use crate::http::HttpAllow;

/// The default cap on one instance's linear memory: 256 MiB.
pub const DEFAULT_MAX_MEMORY: usize = 256 << 20;

/// The default deadline for one call (and for start-up code): 5 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The most instances one plugin may serve calls with at once.
pub const MAX_INSTANCES: usize = 16;

/// Table elements one instance may grow to: generous for any real plugin,
/// interpreters compiled to wasm included (their function tables go far
/// beyond wasmtime's pool default of 20,000). The pool reserves address
/// space, not memory, for this many per table.
pub const MAX_TABLE_ELEMENTS: usize = 1 << 18;

/// The most stack one call's wasm frames may use: deep recursion traps here
/// rather than exhausting the host's stack.
pub const MAX_WASM_STACK: usize = 512 * 1024;

/// The limits each instance runs under. A manifest may lower them for its
/// plugin, never raise them.
///
/// ```
/// let limits = hotslot::Limits { max_memory: 64 << 20, ..Default::default() };
/// assert_eq!(limits.max_memory, 64 << 20);
/// assert_eq!(limits.timeout, hotslot::DEFAULT_TIMEOUT);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The most linear memory one instance may grow to, in bytes.
    pub max_memory: usize,
    /// The longest one call (or one instantiation) may run.
    pub timeout: Duration,
    /// The most WASI handles one instance may hold at once: open files and
    /// directories, and the streams and pollables made from them.
    pub max_open_files: usize,
    /// The largest component file read, in bytes.
    pub max_file_size: u64,
    /// The most host-kept state (`hotslot:plugin/state`) one plugin may
    /// hold, keys and values together, in bytes.
    pub max_state: usize,
    /// The authorities any plugin may reach over HTTP, whatever its
    /// manifest grants (`--http-allow`); `None`: whatever manifests grant.
    /// A plugin reaches only what its own manifest's `[http] allow` grants.
    pub http_allow: Option<HttpAllow>,
    /// The most one outbound HTTP request may take, from connecting to the
    /// last byte of its response; never more than the call's deadline.
    pub http_timeout: Duration,
    /// The largest response body an outbound HTTP request may read, in bytes.
    pub max_http_response: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_memory: DEFAULT_MAX_MEMORY,
            timeout: DEFAULT_TIMEOUT,
            max_open_files: DEFAULT_MAX_OPEN_FILES,
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            max_state: DEFAULT_MAX_STATE,
            http_allow: None,
            http_timeout: DEFAULT_HTTP_TIMEOUT,
            max_http_response: DEFAULT_MAX_HTTP_RESPONSE,
        }
    }
}

/// The default bound on one outbound HTTP request: 10 s.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The default largest HTTP response body a plugin may read: 16 MiB.
pub const DEFAULT_MAX_HTTP_RESPONSE: u64 = 16 << 20;

/// The default quota of host-kept state per plugin: 16 MiB.
pub const DEFAULT_MAX_STATE: usize = 16 << 20;

/// The default cap on WASI handles per instance: 256.
pub const DEFAULT_MAX_OPEN_FILES: usize = 256;

/// The most recent calls a canary reload replays.
pub const MAX_CANARY: usize = 1000;

/// The most bytes of arguments a plugin keeps for its canary (about: the
/// size of their WAVE text).
pub const MAX_CANARY_BYTES: usize = 1 << 20;

/// The most directories one manifest may grant: each is an open descriptor
/// in every instance.
pub const MAX_DIR_GRANTS: usize = 64;

/// A plugin instance tried to grow memory or a table past its limit. It
/// travels inside the wasmtime error of the call that hit it.
///
/// ```
/// let hit = hotslot::LimitHit { what: "memory", desired: 3 << 19, limit: 1 << 20 };
/// assert_eq!(
///     hit.to_string(),
///     "memory limit hit: tried to grow to 1572864 bytes (1.5 MiB), limit 1 MiB \
///      (max-memory-mib, or the host's --max-memory-mib)"
/// );
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{}", hit_text(self))]
pub struct LimitHit {
    /// `memory` (bytes) or `table` (elements).
    pub what: &'static str,
    /// The size asked for.
    pub desired: usize,
    /// The limit.
    pub limit: usize,
}

/// [`LimitHit`] in words: memory in MiB, as limits are set.
fn hit_text(hit: &LimitHit) -> String {
    if hit.what != "memory" {
        return format!(
            "{} limit hit: tried to grow to {}, limit {}",
            hit.what, hit.desired, hit.limit
        );
    }
    let mib = |bytes: usize| {
        let mib = bytes as f64 / f64::from(1 << 20);
        match mib.fract() == 0.0 {
            true => format!("{mib:.0} MiB"),
            false => format!("{mib:.1} MiB"),
        }
    };
    format!(
        "memory limit hit: tried to grow to {} bytes ({}), limit {} (max-memory-mib, \
         or the host's --max-memory-mib)",
        hit.desired,
        mib(hit.desired),
        mib(hit.limit)
    )
}

/// The largest component file the host reads: 256 MiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 256 << 20;
