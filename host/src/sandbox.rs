//! What a plugin may touch: the per-instance state wasmtime keeps for it (WASI
//! with nothing granted, resource limits) and the linker that offers it WASI
//! and wasi:http.
//!
//! Nothing is granted by default: no preopened directories, no environment,
//! no network, no HTTP authority, no inherited stdio. Memory is capped per
//! instance.

use std::sync::Arc;

use wasmtime::component::{Func, Linker, ResourceTable, Val};
use wasmtime::{Engine, ResourceLimiter, Store, StoreContextMut};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::engine::deadline_ticks;
use crate::error::Error;
use crate::http::HttpGate;
use crate::limits::{LimitHit, Limits, MAX_TABLE_ELEMENTS};
use crate::manifest::Grants;
use crate::output::{LogOutput, OutputBudget};
use crate::state::{PluginStore, StateView};
use crate::version::{InterfaceName, Line};

/// The data wasmtime keeps beside each plugin instance: its WASI context and
/// its resource limits. Typed calls receive a `Store<PluginState>`.
///
/// ```
/// use hotslot::PluginState;
/// fn call_with(store: &mut wasmtime::Store<PluginState>) {
///     let _ = store.data();
/// }
/// ```
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: Limiter,
    /// The plugin's host-kept state (`hotslot:plugin/state`).
    state: StateView,
    /// Where calls through its imports from the registry go.
    imports: Option<Arc<dyn ImportCalls>>,
    http: WasiHttpCtx,
    /// Which HTTP requests may go out, and their bounds.
    http_gate: HttpGate,
}

/// How one import of a dependent stands, as `list` shows it.
///
/// ```no_run
/// # fn main() -> Result<(), hotslot::Error> {
/// # let registry = hotslot::Registry::new()?;
/// for implementation in registry.list() {
///     for link in &implementation.imports {
///         match (&link.provider, &link.problem) {
///             (Some((provider, generation)), _) => {
///                 println!("{} <- `{provider}` #{generation}", link.interface)
///             }
///             (None, Some(problem)) => println!("{}: {problem}", link.interface),
///             (None, None) => println!("{}: waiting for a provider", link.interface),
///         }
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportLink {
    /// The interface imported, with the version the dependent asks for.
    pub interface: InterfaceName,
    /// The plugin serving it now and its generation, if one does.
    pub provider: Option<(String, u64)>,
    /// Why the provider cannot be used, if it cannot (a function missing
    /// or of another type).
    pub problem: Option<String>,
    /// The plugin the dependent's manifest names for it (`[imports]`), if
    /// it names one: no other may serve it.
    pub named: Option<String>,
}

/// Where a plugin's imports from the registry (interfaces other plugins
/// serve) are answered: the import functions the linker defines
/// (`forwarders`) call this, with the positions of the import and the
/// function in [`Plugin::imports`](crate::Plugin::imports).
pub(crate) trait ImportCalls: Send + Sync {
    /// How each import stands now.
    fn links(&self) -> Vec<ImportLink>;

    /// Calls function `function` of import `import` on the plugin serving
    /// it now, with dynamic values.
    fn call(
        &self,
        import: usize,
        function: usize,
        params: &[Val],
        results: &mut [Val],
    ) -> wasmtime::Result<()>;

    /// Like [`ImportCalls::call`], for a forwarder that calls the provider's
    /// function typed: `call` makes the call once the provider's instance
    /// is at hand, its deadline set.
    fn call_typed(
        &self,
        import: usize,
        function: usize,
        call: &mut dyn TypedCall,
    ) -> wasmtime::Result<()>;
}

/// A forwarded call with its values typed: the forwarder's arguments, and
/// where its answer goes.
pub(crate) trait TypedCall {
    /// The arguments as values, for a provider that keeps its recent calls
    /// (`[reload] canary`).
    fn args(&self) -> Vec<Val>;

    /// Calls `func`, the provider's function, in the provider's `store`.
    ///
    /// # Safety
    /// `func` must have exactly the types the dependent imports the function
    /// with: it is called typed without wasmtime checking them again.
    unsafe fn call(&mut self, func: Func, store: &mut Store<PluginState>) -> wasmtime::Result<()>;
}

/// Frees idle instances (of any plugin) when wasmtime's instance pool is
/// full, and tells how many it freed.
pub(crate) type Reclaim = Arc<dyn Fn() -> usize + Send + Sync>;

/// What every instance of one plugin shares, across its generations.
#[derive(Clone)]
pub(crate) struct PluginScope {
    /// What the plugin may still print.
    pub(crate) output: OutputBudget,
    /// Its host-kept state.
    pub(crate) state: Arc<PluginStore>,
    /// Makes room in a full instance pool.
    pub(crate) reclaim: Reclaim,
    /// What its instances hold now.
    pub(crate) usage: Arc<Usage>,
    /// Its most recent dynamic calls (and calls forwarded to it from other
    /// plugins), kept when its manifest asks for a canary, for the next
    /// version to replay.
    pub(crate) recent: Arc<std::sync::Mutex<Recent>>,
}

/// Recent calls kept for a canary: the last few of each interface's version
/// line (a busy interface must not push a quiet one's calls out), and
/// about a MiB in all.
#[derive(Default)]
pub(crate) struct Recent {
    /// Each version line's calls, oldest first.
    by_interface: Vec<(Line, std::collections::VecDeque<RecentCall>)>,
    bytes: usize,
    /// The number the next call kept gets: the order they came in.
    next: u64,
}

/// One call kept for a canary.
pub(crate) struct RecentCall {
    pub(crate) interface: InterfaceName,
    pub(crate) function: String,
    pub(crate) args: Vec<Val>,
    pub(crate) bytes: usize,
    order: u64,
}

impl RecentCall {
    pub(crate) fn new(
        interface: InterfaceName,
        function: String,
        args: Vec<Val>,
        bytes: usize,
    ) -> Self {
        RecentCall {
            interface,
            function,
            args,
            bytes,
            order: 0,
        }
    }
}

impl Recent {
    /// Keeps `call`: at most `per_interface` of its interface's calls stay,
    /// and while the whole is over `max_bytes` the oldest call of the
    /// interface holding the most bytes goes (a quiet interface's few calls
    /// stay, however big the busy one's).
    pub(crate) fn keep(&mut self, mut call: RecentCall, per_interface: usize, max_bytes: usize) {
        call.order = self.next;
        self.next += 1;
        self.bytes += call.bytes;
        let line = call.interface.line();
        let at = match self.by_interface.iter().position(|(l, _)| *l == line) {
            Some(at) => at,
            None => {
                self.by_interface.push((line, Default::default()));
                self.by_interface.len() - 1
            }
        };
        let calls = &mut self.by_interface[at].1;
        calls.push_back(call);
        while calls.len() > per_interface {
            match calls.pop_front() {
                Some(gone) => self.bytes -= gone.bytes,
                None => break,
            }
        }
        while self.bytes > max_bytes {
            let biggest = self
                .by_interface
                .iter_mut()
                .max_by_key(|(_, calls)| calls.iter().map(|c| c.bytes).sum::<usize>());
            match biggest.and_then(|(_, calls)| calls.pop_front()) {
                Some(gone) => self.bytes -= gone.bytes,
                None => break,
            }
        }
    }

    /// Drops the calls of every version line but those in `served`: a new
    /// version that no longer serves a line never replays its calls, and
    /// they would hold their bytes for good.
    pub(crate) fn keep_lines(&mut self, served: &[Line]) {
        let bytes = &mut self.bytes;
        self.by_interface.retain(|(line, calls)| {
            let kept = served.contains(line);
            if !kept {
                *bytes -= calls.iter().map(|c| c.bytes).sum::<usize>();
            }
            kept
        });
    }

    /// The last `n` calls kept of each interface, in the order they came.
    pub(crate) fn last(&self, n: usize) -> Vec<&RecentCall> {
        let mut calls: Vec<&RecentCall> = self
            .by_interface
            .iter()
            .flat_map(|(_, calls)| calls.iter().skip(calls.len().saturating_sub(n)))
            .collect();
        calls.sort_by_key(|c| c.order);
        calls
    }
}

/// Caps memory and table growth. Going past a cap traps with [`LimitHit`],
/// so the call fails with a cause a caller can name, instead of the guest
/// seeing a failed allocation and aborting in its own words.
struct Limiter {
    max_memory: usize,
    max_table_elements: usize,
    /// This instance's linear memory, counted into its plugin's `usage`.
    memory: u64,
    usage: Arc<Usage>,
}

/// What a plugin's instances hold now, across them all: for its metrics.
#[derive(Default)]
pub(crate) struct Usage {
    /// Instances alive.
    pub(crate) instances: std::sync::atomic::AtomicU64,
    /// Bytes of linear memory they have grown to.
    pub(crate) memory: std::sync::atomic::AtomicU64,
}

impl Drop for Limiter {
    /// The instance is gone: so is its memory.
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.usage.instances.fetch_sub(1, Relaxed);
        self.usage.memory.fetch_sub(self.memory, Relaxed);
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _: Option<usize>,
    ) -> wasmtime::Result<bool> {
        within("memory", desired, self.max_memory)?;
        let grown = (desired - current.min(desired)) as u64;
        self.memory += grown;
        self.usage
            .memory
            .fetch_add(grown, std::sync::atomic::Ordering::Relaxed);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _: usize,
        desired: usize,
        _: Option<usize>,
    ) -> wasmtime::Result<bool> {
        within("table", desired, self.max_table_elements)
    }
}

/// Allows growth up to `limit`; past it, traps with [`LimitHit`].
fn within(what: &'static str, desired: usize, limit: usize) -> wasmtime::Result<bool> {
    if desired > limit {
        return Err(LimitHit {
            what,
            desired,
            limit,
        }
        .into());
    }
    Ok(true)
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl crate::waits::Waiting for PluginState {
    fn waiting(&mut self) -> (Option<std::time::Duration>, &mut ResourceTable) {
        (self.http_gate.call_left(), &mut self.table)
    }

    fn plugin(&self) -> &str {
        &self.http_gate.plugin
    }
}

impl WasiHttpView for PluginState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_gate,
        }
    }
}

/// A linker that offers WASI p2 and wasi:http's outgoing handler
/// (synchronously), and `hotslot:plugin/state`.
pub(crate) fn linker(engine: &Engine) -> Result<Linker<PluginState>, Error> {
    crate::waits::start_io_runtime()?;
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
        .map_err(|e| Error::Engine(format!("cannot add WASI to the linker: {e:#}")))?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker)
        .map_err(|e| Error::Engine(format!("cannot add wasi:http to the linker: {e:#}")))?;
    add_state(&mut linker)
        .map_err(|e| Error::Engine(format!("cannot add hotslot:plugin/state: {e:#}")))?;
    crate::waits::bound(&mut linker)
        .map_err(|e| Error::Engine(format!("cannot bound WASI's waits: {e:#}")))?;
    Ok(linker)
}

/// The version of `hotslot:plugin` this host serves (`wit/hotslot-plugin`).
pub(crate) const PLUGIN_VERSION: &str = "0.1.0";

/// `hotslot:plugin/state`, on the plugin's own store: nothing a plugin
/// passes can reach another plugin's state or fail the host.
fn add_state(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    let mut state = linker.instance(&format!("hotslot:plugin/state@{PLUGIN_VERSION}"))?;
    state.func_wrap(
        "get",
        |store: StoreContextMut<'_, PluginState>, (key,): (String,)| {
            Ok((store.data().state.get(&key),))
        },
    )?;
    state.func_wrap(
        "set",
        |store: StoreContextMut<'_, PluginState>, (key, value): (String, Vec<u8>)| {
            Ok((store.data().state.set(&key, value),))
        },
    )?;
    state.func_wrap(
        "remove",
        |store: StoreContextMut<'_, PluginState>, (key,): (String,)| {
            // A failed removal from disk leaves the key: it is still there.
            Ok((store.data().state.remove(&key).unwrap_or(false),))
        },
    )?;
    state.func_wrap("keys", |store: StoreContextMut<'_, PluginState>, (): ()| {
        Ok((store.data().state.keys(),))
    })?;
    Ok(())
}

impl PluginState {
    /// Where calls through the instance's imports from the registry go;
    /// borrowed, not cloned: no reference count touched per call.
    pub(crate) fn imports(&self) -> wasmtime::Result<&dyn ImportCalls> {
        self.imports
            .as_deref()
            .ok_or_else(|| wasmtime::format_err!("this instance has no imports bound"))
    }
}

/// Gives the call about to run on `store` `ticks` epoch ticks from now:
/// the epoch deadline that stops its wasm, and the time its HTTP requests
/// may take (a request blocks in the host, where the epoch cannot stop it).
#[inline]
pub(crate) fn set_deadline(store: &mut Store<PluginState>, ticks: u64) {
    store.set_epoch_deadline(ticks);
    store.data_mut().http_gate.call_ends = crate::engine::ticks_now().saturating_add(ticks);
}

/// A fresh store for one instance of the plugin `name`: WASI with only what
/// `grants` allow; what it prints goes to the log under its name.
pub(crate) fn new_store(
    engine: &Engine,
    name: &Arc<str>,
    limits: &Limits,
    grants: &Grants,
    scope: &PluginScope,
    state: &StateView,
    imports: Option<Arc<dyn ImportCalls>>,
) -> wasmtime::Result<Store<PluginState>> {
    // Within what is left of a chain of calls, if one is under way.
    let start_up = crate::chain::capped(deadline_ticks(limits.timeout));
    let mut wasi = WasiCtx::builder();
    wasi.stdout(LogOutput::new(name, "stdout", &scope.output))
        .stderr(LogOutput::new(name, "stderr", &scope.output));
    for (key, value) in &grants.env {
        wasi.env(key, value);
    }
    for dir in &grants.dirs {
        let perms = if dir.writable {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        wasi.preopened_dir(&dir.host, &dir.guest, perms)
            .map_err(|e| e.context(format!("cannot grant {}", dir.host.display())))?;
    }
    // Every open file or directory is a handle in this table, beside the
    // streams and pollables made from them: its cap is the plugin's share of
    // the host's file descriptors.
    let mut table = ResourceTable::new();
    table.set_max_capacity(limits.max_open_files);
    // Counted off again when the store (and so its limiter) goes.
    scope
        .usage
        .instances
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let state = PluginState {
        wasi: wasi.build(),
        table,
        state: state.clone(),
        imports,
        http: WasiHttpCtx::new(),
        http_gate: HttpGate {
            plugin: name.clone(),
            grant: grants.http.clone(),
            ceiling: limits.http_allow.clone(),
            // A request cannot usefully outlive the call that makes it.
            timeout: limits.http_timeout.min(limits.timeout),
            max_response: limits.max_http_response,
            // Start-up code's deadline (see the end of this function).
            call_ends: crate::engine::ticks_now().saturating_add(start_up),
            clock: crate::engine::ticks_now,
            tick: crate::engine::EPOCH_TICK,
            logged: None,
        },
        limits: Limiter {
            max_memory: limits.max_memory,
            max_table_elements: MAX_TABLE_ELEMENTS,
            memory: 0,
            usage: scope.usage.clone(),
        },
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limits);
    // Start-up code is bounded by the same deadline as a call.
    store.epoch_deadline_trap();
    store.set_epoch_deadline(start_up);
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(interface: &str, n: i32, bytes: usize) -> RecentCall {
        RecentCall::new(
            interface.parse().unwrap(),
            "f".into(),
            vec![Val::S32(n)],
            bytes,
        )
    }

    fn kept(recent: &Recent, n: usize) -> Vec<(String, i32)> {
        recent
            .last(n)
            .iter()
            .map(|c| match c.args[..] {
                [Val::S32(n)] => (c.interface.to_string(), n),
                _ => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn each_interface_keeps_its_own_last_calls_and_the_oldest_go_past_the_bytes() {
        let mut recent = Recent::default();
        recent.keep(call("a:b/quiet@1.0.0", 1, 10), 2, 1000);
        for n in 2..8 {
            recent.keep(call("a:b/busy@1.0.0", n, 10), 2, 1000);
        }
        assert_eq!(
            kept(&recent, 2),
            [
                ("a:b/quiet@1.0.0".into(), 1),
                ("a:b/busy@1.0.0".into(), 6),
                ("a:b/busy@1.0.0".into(), 7)
            ]
        );
        // A version asking for fewer replays each interface's last ones.
        assert_eq!(kept(&recent, 1).len(), 2);
        // Over the bytes, the interface holding the most gives its oldest:
        // the quiet one's call stays.
        recent.keep(call("a:b/busy@1.0.0", 8, 10), 2, 25);
        assert_eq!(
            kept(&recent, 2),
            [("a:b/quiet@1.0.0".into(), 1), ("a:b/busy@1.0.0".into(), 8)]
        );
        assert_eq!(recent.bytes, 20);
        // A newer minor is the same line; a line no longer served goes.
        recent.keep(call("a:b/quiet@1.1.0", 9, 1), 2, 1000);
        assert_eq!(kept(&recent, 2).len(), 3);
        recent.keep_lines(&["a:b/busy@1.0.0".parse::<InterfaceName>().unwrap().line()]);
        assert_eq!(kept(&recent, 2), [("a:b/busy@1.0.0".into(), 8)]);
        assert_eq!(recent.bytes, 10);
    }
}
