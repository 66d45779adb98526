//! hotslot: a host for WebAssembly component plugins that hot-reload behind
//! stable handles.
//!
//! Plugins are components (built for `wasm32-wasip2`) that export versioned
//! WIT interfaces. The [`Registry`] keeps each implementation in a stable
//! slot; a [`Handle`] to that slot keeps working across reloads, always
//! reaching the newest instance, while calls in flight finish on the one they
//! started on.
//!
//! ```no_run
//! # fn main() -> Result<(), hotslot::Error> {
//! use hotslot::{wasmtime::component::Val, Registry};
//!
//! let registry = Registry::new()?;
//! let greeter = registry.get("demo:greeter/greet@1.0")?; // before any plugin is loaded
//! let plugin = registry.load_file("plugins/greeter_a.wasm")?;
//! registry.add_implementation("demo:greeter/greet@1.0.0", "greeter_a", &plugin)?;
//! let answer = greeter.call("hello", &[Val::String("world".into())])?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod admission;
mod bindings;
mod chain;
pub mod cli;
mod code_cache;
pub mod contract;
pub mod engine;
mod error;
mod forwarders;
mod function_cache;
mod functions;
mod generation;
mod handle;
mod http;
mod imports;
mod lane_lock;
mod limits;
mod loader;
mod manifest;
mod metrics;
mod output;
mod private_files;
mod program;
pub mod prometheus;
mod quiet_panics;
mod registry;
mod sandbox;
mod slot;
mod source;
mod state;
mod subscribers;
mod sync;
mod values;
mod version;
mod waits;
pub mod watch;

pub use bindings::Bindings;
pub use error::{Error, Fault, ImportError};
pub use handle::{Batch, Handle};
pub use http::HttpAllow;
pub use limits::{
    LimitHit, Limits, DEFAULT_HTTP_TIMEOUT, DEFAULT_MAX_FILE_SIZE, DEFAULT_MAX_HTTP_RESPONSE,
    DEFAULT_MAX_MEMORY, DEFAULT_MAX_OPEN_FILES, DEFAULT_MAX_STATE, DEFAULT_TIMEOUT, MAX_DIR_GRANTS,
    MAX_INSTANCES,
};
pub use loader::{
    ContentHash, ExportedFunction, ExportedInterface, ImportedFunction, ImportedInterface, Plugin,
};
pub use manifest::{dir_of, manifest_path, DirGrant, Grants};
pub use metrics::Metrics;
pub use registry::{Implementation, IntoRequest, Registered, Registry, RegistryEvent};
pub use sandbox::{ImportLink, PluginState};
pub use source::plugin_name;
pub use state::{StoredState, MAX_KEY_LEN};
pub use version::{InterfaceName, Request};
pub use watch::{LoadTimings, Loading, WatchEvent, Watcher};

/// The wasmtime this crate is built on, for `Val`, `bindgen!` and typed calls.
pub use wasmtime;
