//! hotslot's integration tests: one binary (each test binary links all of
//! wasmtime), one module per concept. They drive the public API with the real
//! components built by `make plugins`.

mod architecture;
mod asynchost;
mod cli;
mod code_cache;
mod common;
mod compilers;
mod guide;
mod hostile;
mod http;
mod imports;
mod languages;
mod metrics;
mod plugins;
mod props;
mod registry;
mod sandbox;
mod state;
mod terminal;
mod typed;
mod values;
mod versions;
mod watch;
