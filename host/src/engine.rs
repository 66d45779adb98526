//! The wasmtime configuration every plugin runs under, and the one engine a
//! process shares by default.
//!
//! Chosen for call speed and cheap swaps (figures in `BENCHMARKS.md`):
//! - no `component-model-async` (a crate feature, not set here): it triples
//!   the cost of every synchronous component call and wasmtime-wasi's p2 does
//!   not need it;
//! - the pooling allocator, so that the fresh instance behind a reload costs
//!   about a microsecond rather than eight. Where the machine refuses the
//!   pool's address-space reservation we fall back to on-demand allocation.

use std::sync::OnceLock;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::Error;

/// Builds a fresh engine with hotslot's configuration.
///
/// Most programs want [`shared_engine`] instead: wasmtime engines are meant to
/// be shared, and each pooling engine reserves address space of its own.
///
/// ```
/// let engine = hotslot::engine::new_engine().unwrap();
/// # drop(engine);
/// ```
pub fn new_engine() -> Result<Engine, Error> {
    let mut config = base_config();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool()));
    match Engine::new(&config) {
        Ok(engine) => Ok(engine),
        Err(pool_error) => {
            tracing::warn!(
                "pooling allocator unavailable ({pool_error:#}); instantiating on demand"
            );
            Engine::new(&base_config()).map_err(|e| Error::Engine(format!("{e:#}")))
        }
    }
}

/// The engine shared by every registry made with [`Registry::new`](crate::Registry::new).
///
/// ```
/// let a = hotslot::engine::shared_engine().unwrap();
/// let b = hotslot::engine::shared_engine().unwrap();
/// assert!(wasmtime::Engine::same(&a, &b));
/// ```
pub fn shared_engine() -> Result<Engine, Error> {
    static SHARED: OnceLock<Engine> = OnceLock::new();
    if let Some(engine) = SHARED.get() {
        return Ok(engine.clone());
    }
    let engine = new_engine()?;
    Ok(SHARED.get_or_init(|| engine).clone())
}

fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config
}

/// Sized for a host with many plugins: every plugin generation holds one
/// instance, and a reload briefly holds two.
fn pool() -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::default();
    // Components from other languages carry adapters and runtimes of several
    // core instances, memories and tables each.
    pool.max_core_instances_per_component(64)
        .max_memories_per_component(8)
        .max_tables_per_component(16)
        // The per-plugin memory limit (sandbox) is lower; this is the ceiling.
        .max_memory_size(4 << 30);
    pool
}
