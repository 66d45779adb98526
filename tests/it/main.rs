//! hotslot's integration tests: one binary (each test binary links all of
//! wasmtime), one module per concept. They drive the public API with the real
//! components built by `make plugins`.

mod cli;
mod common;
mod props;
mod plugins;
mod registry;
mod sandbox;
mod typed;
mod values;
mod versions;
mod watch;
