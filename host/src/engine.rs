//! The wasmtime configuration every plugin runs under, and the one engine a
//! process shares by default.
//!
//! Chosen for call speed and cheap swaps (figures in `BENCHMARKS.md`):
//! - no `component-model-async` (a crate feature, not set here): it triples
//!   the cost of every synchronous component call and wasmtime-wasi's p2 does
//!   not need it;
//! - epoch interruption, so an endless loop is stopped at its deadline; a
//!   thread per engine advances the epoch every [`EPOCH_TICK`];
//! - the pooling allocator, so that the fresh instance behind a reload costs
//!   about a microsecond rather than eight. Where the machine refuses the
//!   pool's address-space reservation we fall back to on-demand allocation;
//! - a plugin's initial memory copied in rather than mapped copy-on-write
//!   when it fits in a page (see `MemoryInit`): a swap then faults half as
//!   many pages.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use wasmtime::{Config, Engine, EngineWeak, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::Error;
use crate::limits::{MAX_TABLE_ELEMENTS, MAX_WASM_STACK};
use crate::sync::lock;

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
    build_engine(false)
}

/// Like [`new_engine`]; with `disk_cache`, compiled code is also kept on
/// disk (`$XDG_CACHE_HOME/hotslot/code`, else `~/.cache/hotslot/code`, at
/// most 1 GiB, least recently used out first), so that a restarted host
/// maps what it compiled before instead of compiling it again. The
/// `hotslot` CLI turns it on.
///
/// ```
/// let engine = hotslot::engine::build_engine(true).unwrap();
/// # drop(engine);
/// ```
pub fn build_engine(disk_cache: bool) -> Result<Engine, Error> {
    build(&EngineOptions {
        disk_cache,
        ..EngineOptions::default()
    })
}

/// How to build an engine; the defaults are what [`new_engine`] uses.
///
/// ```
/// use hotslot::engine::{build, EngineOptions};
/// let small = build(&EngineOptions { pool_instances: 8, ..EngineOptions::default() }).unwrap();
/// # drop(small);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineOptions {
    /// Keep compiled code on disk between runs (see [`build_engine`]).
    pub disk_cache: bool,
    /// How many component instances the pooling allocator holds at once.
    /// Every plugin holds one per instance it runs; a reload briefly holds
    /// one more. When the pool is full, idle instances of other plugins are
    /// freed (they start again at their next call) to make room. Plugins
    /// that ask for the other compiler, or start with a page of data or
    /// more, run on a twin engine with a pool of the same size. `0`: no
    /// pool, each instance allocated when made (setting a pool up costs a
    /// few milliseconds: worth it for a host that runs, not for one call).
    pub pool_instances: u32,
    /// Which compiler turns wasm into machine code.
    pub compiler: Compiler,
    /// Keep every function Cranelift compiles in memory, by its content, so
    /// that new bytes of a plugin compile only the functions that changed
    /// (at most 128 MiB per process, least recently used out first); with
    /// `disk_cache`, those of components over a megabyte on disk too
    /// (`$XDG_CACHE_HOME/hotslot/functions`, else under `~/.cache`), for the
    /// next run (written in the background: see
    /// [`finish_keeping_functions`]). For hosts that reload plugins
    /// under development; the `hotslot` CLI turns it on. Cranelift's
    /// incremental cache, on which it stands, is marked experimental by its
    /// authors. Winch engines ignore it.
    pub reuse_functions: bool,
}

/// The compiler an engine uses: Cranelift (optimizing, the default) or Winch
/// (wasmtime's baseline compiler: compiles several times faster, runs
/// slower; for development reloads). A plugin Winch cannot compile (it
/// leaves out tail calls and relaxed SIMD) is compiled by Cranelift
/// instead, with a warning.
///
/// ```
/// use hotslot::engine::Compiler;
/// assert_eq!("winch".parse::<Compiler>().unwrap(), Compiler::Winch);
/// assert_eq!(Compiler::default().to_string(), "cranelift");
/// assert!("llvm".parse::<Compiler>().is_err());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Compiler {
    /// Cranelift, wasmtime's optimizing compiler.
    #[default]
    Cranelift,
    /// Winch, wasmtime's baseline compiler.
    Winch,
}

impl std::str::FromStr for Compiler {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "cranelift" => Ok(Compiler::Cranelift),
            "winch" => Ok(Compiler::Winch),
            other => Err(format!(
                "unknown compiler `{other}`: expected `cranelift` or `winch`"
            )),
        }
    }
}

impl std::fmt::Display for Compiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compiler::Cranelift => "cranelift",
            Compiler::Winch => "winch",
        })
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            disk_cache: false,
            pool_instances: DEFAULT_POOL_INSTANCES,
            compiler: Compiler::Cranelift,
            reuse_functions: false,
        }
    }
}

/// Component instances in the default pool.
pub const DEFAULT_POOL_INSTANCES: u32 = 1000;

/// Builds an engine as `options` say.
///
/// ```
/// use hotslot::engine::{build, Compiler, EngineOptions};
/// use hotslot::{Limits, Registry};
/// // A development host: Winch compiles reloads several times sooner.
/// let engine = build(&EngineOptions {
///     compiler: Compiler::Winch,
///     pool_instances: 16,
///     ..EngineOptions::default()
/// })?;
/// let registry = Registry::with_engine(engine, Limits::default())?;
/// # Ok::<(), hotslot::Error>(())
/// ```
///
/// # Errors
/// [`Error::Engine`] if wasmtime refuses the configuration.
pub fn build(options: &EngineOptions) -> Result<Engine, Error> {
    build_as(options, MemoryInit::Copy)
}

fn build_as(options: &EngineOptions, init: MemoryInit) -> Result<Engine, Error> {
    let mut config = base_config(options, init);
    if options.pool_instances > 0 {
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool(
            options.pool_instances,
            init,
        )));
    }
    let engine = match Engine::new(&config) {
        Ok(engine) => engine,
        Err(pool_error) => {
            tracing::warn!(
                "pooling allocator unavailable ({pool_error:#}); instantiating on demand"
            );
            Engine::new(&base_config(options, init)).map_err(|e| Error::Engine(format!("{e:#}")))?
        }
    };
    start_ticker(&engine)?;
    remember(&engine, options, init);
    Ok(engine)
}

/// How a new instance's linear memory gets the data its modules start with.
///
/// Engines from [`build`] copy it; a plugin whose modules start with
/// [`MemoryInit::MAP_FROM`] bytes of data or more is compiled for a twin
/// engine that maps it. Copying costs a page fault for every page of data,
/// when the instance is made; mapping costs nothing then, but two faults and
/// a TLB flush for each page the instance first reads, then writes. Which
/// is cheaper depends on how many pages the data spans (measured, a swap
/// and its first call, copied against mapped: 2.4 KiB of data 12.8 against
/// 14.2 µs; 6.7 KiB 21.5 against 20.7; 10.5 KiB 18.2 against 15.2; 32 KiB
/// 31.8 against 15.6; see BENCHMARKS). An interpreter's megabytes are
/// always mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MemoryInit {
    /// Copied into the instance's memory when it is made.
    Copy,
    /// Mapped copy-on-write from an image made at compile time (wasmtime's
    /// default).
    Map,
}

impl MemoryInit {
    /// Bytes of data from which a plugin's memory is mapped rather than
    /// copied: one page. Copying wins only while the data fits in one (a
    /// small Rust plugin's statics, 2–3 KiB).
    pub(crate) const MAP_FROM: usize = 4 << 10;

    /// What suits a plugin whose modules start with `data` bytes, on an
    /// engine that does `own`: an engine that maps keeps every plugin.
    pub(crate) fn for_data(data: usize, own: MemoryInit) -> MemoryInit {
        match own {
            MemoryInit::Copy if data >= Self::MAP_FROM => MemoryInit::Map,
            own => own,
        }
    }
}

/// Engines built here, and how: so that an engine for a plugin that asks
/// for the other compiler, or starts with much data, can be built like the
/// one it goes beside.
static BUILT: Mutex<Vec<(EngineWeak, EngineOptions, MemoryInit)>> = Mutex::new(Vec::new());

fn remember(engine: &Engine, options: &EngineOptions, init: MemoryInit) {
    let mut built = lock(&BUILT);
    built.retain(|(weak, ..)| weak.upgrade().is_some());
    built.push((engine.weak(), options.clone(), init));
}

/// An engine built like `engine` but compiling with `compiler` and
/// initializing memory as `init` says: one already built so and still
/// alive, else a new one. Every plugin that needs the same shares it.
pub(crate) fn like(engine: &Engine, compiler: Compiler, init: MemoryInit) -> Result<Engine, Error> {
    let options = EngineOptions {
        compiler,
        ..options_of(engine)
    };
    let alive = lock(&BUILT)
        .iter()
        .filter(|(_, built, built_init)| *built == options && *built_init == init)
        .find_map(|(weak, ..)| weak.upgrade());
    match alive {
        Some(engine) => Ok(engine),
        None => build_as(&options, init),
    }
}

/// A plain engine that compiles exactly as one built with `options` and
/// `init` does (same compiler and settings), without an
/// instance pool or an epoch ticker: made to compile one big component and
/// be dropped, taking with it what the compiler keeps between compiles (see
/// the loader's `compile_apart`).
pub(crate) fn for_compiling(options: &EngineOptions, init: MemoryInit) -> Result<Engine, Error> {
    Engine::new(&base_config(options, init)).map_err(|e| Error::Engine(format!("{e:#}")))
}

/// How `engine` was built, if [`build`] (or a twin of one) built it.
pub(crate) fn built_with(engine: &Engine) -> Option<(EngineOptions, MemoryInit)> {
    lock(&BUILT)
        .iter()
        .find(|(weak, ..)| weak.upgrade().is_some_and(|e| Engine::same(&e, engine)))
        .map(|(_, options, init)| (options.clone(), *init))
}

/// How `engine` was built, if it was built here; wasmtime's defaults
/// (Cranelift, no disk cache) otherwise.
pub(crate) fn options_of(engine: &Engine) -> EngineOptions {
    built_with(engine)
        .map(|(options, _)| options)
        .unwrap_or_default()
}

/// How often the epoch advances: the granularity of call deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The number of epoch ticks that covers `timeout`, rounded up, plus two:
/// one for the part of the current tick already gone, one for a ticker that
/// woke late and catches up at once. A call gets at least its time on an idle
/// machine; under heavy load it may be stopped by as much as the ticker lags.
pub(crate) fn deadline_ticks(timeout: Duration) -> u64 {
    // In whole microseconds and u64: a u128 division is a slow library call,
    // and this runs on every call forwarded to another plugin.
    let micros = u64::try_from(timeout.as_micros()).unwrap_or(u64::MAX);
    let tick = EPOCH_TICK.as_micros() as u64;
    micros.div_ceil(tick).saturating_add(2)
}

/// Ticks of [`EPOCH_TICK`] since the first engine's ticker started, as the
/// tickers keep it: a clock as coarse as a deadline, and far cheaper to read
/// than the system's (one load). A chain of calls between plugins measures
/// what is left of its deadline on it.
#[inline]
pub(crate) fn ticks_now() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

static TICKS: AtomicU64 = AtomicU64::new(0);

/// When [`TICKS`] was 0.
fn clock_start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Advances the engine's epoch once per tick of wall time, for as long as
/// the engine lives, and sweeps the async calls' queues
/// ([`admission::sweep`](crate::admission::sweep)). The epoch follows the
/// clock, not the number of sleeps, so a ticker delayed by a busy machine
/// catches up instead of stretching every deadline. (This sleep is a
/// clock, not a wait for an event.)
fn start_ticker(engine: &Engine) -> Result<(), Error> {
    let weak = engine.weak();
    let started = Instant::now();
    let clock = clock_start();
    std::thread::Builder::new()
        .name("hotslot-epoch".into())
        .spawn(move || {
            let mut ticks: u128 = 0;
            loop {
                std::thread::sleep(EPOCH_TICK);
                let Some(engine) = weak.upgrade() else { return };
                let due = started.elapsed().as_nanos() / EPOCH_TICK.as_nanos();
                while ticks < due {
                    engine.increment_epoch();
                    ticks += 1;
                }
                let now = clock.elapsed().as_nanos() / EPOCH_TICK.as_nanos();
                TICKS.fetch_max(u64::try_from(now).unwrap_or(u64::MAX), Ordering::Relaxed);
                // Async calls queued past their patience hear `Busy` now.
                // Nothing there may stop the clock every deadline needs.
                let _ = std::panic::catch_unwind(crate::admission::sweep);
            }
        })
        .map(drop)
        .map_err(|e| Error::Engine(format!("cannot start the epoch thread: {e}")))
}

/// Waits until the functions compiled so far are kept on disk, for engines
/// that keep them there ([`EngineOptions::reuse_functions`] with
/// `disk_cache`). They are written on a thread of their own after each
/// compile of a component over a megabyte, so that the plugin answers
/// without waiting for the disk; a host that exits right after such a
/// compile calls this first, or the next run compiles those functions
/// again. Returns at once when nothing is being written.
///
/// ```
/// hotslot::engine::finish_keeping_functions();
/// ```
pub fn finish_keeping_functions() {
    crate::function_cache::finish_saving();
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

fn base_config(options: &EngineOptions, init: MemoryInit) -> Config {
    let mut config = Config::new();
    if options.compiler == Compiler::Winch {
        config.strategy(wasmtime::Strategy::Winch);
        // What Winch leaves to Cranelift (the trampolines between host and
        // wasm) is compiled for speed of compiling too.
        config.cranelift_opt_level(wasmtime::OptLevel::None);
    } else if options.reuse_functions {
        // Only sets a field in wasmtime 48; were it refused, compiling
        // everything anew is still correct.
        if let Err(e) = config.enable_incremental_compilation(crate::function_cache::shared()) {
            tracing::warn!("compiled functions will not be reused: {e:#}");
        }
        if options.disk_cache {
            crate::function_cache::keep_for_user();
        }
        // In debug builds (the test suite) every function found is compiled
        // again and compared with what was kept, which panics on a
        // difference: the incremental cache is young, and its code goes on
        // to the disk cache too.
        #[cfg(debug_assertions)]
        // SAFETY: a setting that only adds checks; the code compiled is the
        // same.
        unsafe {
            config.cranelift_flag_enable("enable_incremental_compilation_cache_checks");
        }
    }
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.memory_init_cow(init == MemoryInit::Map);
    // Deep recursion traps here rather than exhausting the host's stack.
    config.max_wasm_stack(MAX_WASM_STACK);
    config
}

/// Sized for a host with many plugins: every plugin generation holds one
/// instance, and a reload briefly holds two.
fn pool(instances: u32, init: MemoryInit) -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::default();
    // A wit-bindgen component holds three or four core instances, one or two
    // memories and a few tables; other languages' more.
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(4))
        .total_memories(instances.saturating_mul(2))
        .total_tables(instances.saturating_mul(4))
        // Components from other languages carry adapters and runtimes of
        // several core instances, memories and tables each.
        .max_core_instances_per_component(64)
        .max_memories_per_component(8)
        .max_tables_per_component(16)
        // Interpreters compiled to wasm (Python, JavaScript) have function
        // tables far beyond the pool's default of 20,000 elements.
        .table_elements(MAX_TABLE_ELEMENTS)
        // The per-plugin memory limit (sandbox) is lower; this is the ceiling.
        .max_memory_size(4 << 30);
    // What a swap costs is mostly the kernel's: giving an old instance's
    // pages back and faulting the new one's in. Decommitting in batches
    // takes one system call (and one TLB shootdown) for many instances, and
    // the first 64 KiB of each table are cleared in place rather than
    // handed back (measured: swap median 20.1 -> 13.5 us, see BENCHMARKS).
    // An instance waiting for its batch keeps its pages and its component's
    // code. The engine that maps memory runs every plugin with a page of
    // data or more, interpreters among them, where fifteen old instances
    // held hundreds of megabytes after a string of reloads: it gives each
    // back at once (an `add_plugin` of filter_basic, 32 KiB of data, went
    // 5.6 -> 7.3 us; see BENCHMARKS).
    pool.decommit_batch_size(match init {
        MemoryInit::Copy => 16,
        MemoryInit::Map => 1,
    });
    pool.table_keep_resident(64 << 10);
    pool
}
