//! A generation: one version of one plugin — a compiled component with its
//! grants and limits — and the calls made on instances of it. One instance
//! serves every interface the plugin exports. A reload makes a new
//! generation; instances never outlive the calls that need them.

use std::any::{type_name, Any, TypeId};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::{Func, Instance, Val};
use wasmtime::Store;

use crate::bindings::Bindings;
use crate::engine::deadline_ticks;
use crate::error::{reason, Error, Fault};
use crate::limits::Limits;
use crate::loader::{ExportedInterface, Plugin};
use crate::output::OutputBudget;
use crate::sandbox::{self, PluginState};
use crate::sync::lock;

/// One version of one plugin, and the instance made to check it. Replaced
/// whole on reload.
pub(crate) struct Generation {
    number: u64,
    name: Arc<str>,
    plugin: Plugin,
    limits: Limits,
    /// `limits.timeout` in epoch ticks, set before every call.
    deadline: u64,
    /// How many instances may serve calls at once.
    instances: usize,
    /// The instance made (and so checked) when the generation was created,
    /// until a lane takes it to serve calls.
    first: Mutex<Option<Live>>,
    /// Failed attempts to replace a faulted instance.
    backoff: Mutex<Backoff>,
    /// What it shares with the plugin's other generations.
    shared: Shared,
}

/// Frees idle instances (of any plugin) when wasmtime's instance pool is
/// full, and tells how many it freed.
pub(crate) type Reclaim = Arc<dyn Fn() -> usize + Send + Sync>;

/// What every generation of one plugin shares with the host around it.
#[derive(Clone)]
pub(crate) struct Shared {
    /// What the plugin may still print.
    pub(crate) output: OutputBudget,
    /// Makes room in a full instance pool.
    pub(crate) reclaim: Reclaim,
}

/// A running instance and what was looked up in it.
pub(crate) struct Live {
    store: Store<PluginState>,
    instance: Instance,
    /// Each exported interface's functions, in the order of
    /// [`Plugin::exports`] and [`ExportedInterface::functions`].
    funcs: Vec<Vec<Func>>,
    /// Typed bindings loaded so far, by type. Usually zero or one entry.
    typed: Vec<(TypeId, Box<dyn Any + Send>)>,
}

/// After an instantiation fails, calls fail at once for a while instead of
/// each paying for another attempt; the pause doubles with every failure in
/// a row. A new generation (the file changed) starts afresh.
#[derive(Default)]
struct Backoff {
    failures: u32,
    until: Option<Instant>,
    last: String,
}

const FIRST_PAUSE: Duration = Duration::from_millis(500);
const LONGEST_PAUSE: Duration = Duration::from_secs(30);

impl Generation {
    /// Instantiates `plugin` once, under `limits` as its manifest lowers
    /// them. Fails if the instance cannot be made, so a bad plugin never
    /// reaches a slot.
    pub(crate) fn new(
        number: u64,
        name: &str,
        plugin: Plugin,
        limits: &Limits,
        shared: Shared,
    ) -> Result<Self, Error> {
        let limits = plugin.grants().limits(limits);
        let generation = Generation {
            number,
            name: name.into(),
            instances: plugin.grants().instance_count(),
            deadline: deadline_ticks(limits.timeout),
            plugin,
            limits,
            first: Mutex::new(None),
            backoff: Mutex::default(),
            shared,
        };
        let live = generation.instantiate(&generation.all_interfaces())?;
        *lock(&generation.first) = Some(live);
        Ok(generation)
    }

    pub(crate) fn number(&self) -> u64 {
        self.number
    }

    pub(crate) fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    pub(crate) fn instances(&self) -> usize {
        self.instances
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    pub(crate) fn exported(&self, export: usize) -> &ExportedInterface {
        &self.plugin.exports()[export]
    }

    fn all_interfaces(&self) -> String {
        let names: Vec<String> = self
            .plugin
            .exports()
            .iter()
            .map(|e| e.name().to_string())
            .collect();
        names.join(", ")
    }

    /// A fresh instance. When wasmtime's instance pool is full, idle
    /// instances are freed to make room and the attempt is made once more.
    fn instantiate(&self, interface: &str) -> Result<Live, Error> {
        let failed = |e: wasmtime::Error| Error::Instantiate {
            interface: interface.to_string(),
            name: self.name.to_string(),
            origin: self.plugin.origin().to_string(),
            reason: reason(&e),
        };
        match self.try_instantiate() {
            Err(e) if pool_full(&e) => {
                let freed = (self.shared.reclaim)();
                tracing::warn!(
                    "the instance pool is full: freed {freed} idle instance(s) to start `{}`",
                    self.name
                );
                self.try_instantiate().map_err(failed)
            }
            other => other.map_err(failed),
        }
    }

    fn try_instantiate(&self) -> wasmtime::Result<Live> {
        let pre = self.plugin.instance_pre();
        let mut store = sandbox::new_store(
            pre.engine(),
            &self.name,
            &self.limits,
            self.plugin.grants(),
            &self.shared.output,
        )?;
        let instance = guarded(|| pre.instantiate(&mut store))?;
        let mut funcs = Vec::with_capacity(self.plugin.exports().len());
        for exported in self.plugin.exports() {
            let mut these = Vec::with_capacity(exported.functions().len());
            for function in exported.functions() {
                let func = instance
                    .get_func(&mut store, function.index())
                    .ok_or_else(|| wasmtime::format_err!("no function `{}`", function.name()))?;
                these.push(func);
            }
            funcs.push(these);
        }
        Ok(Live {
            store,
            instance,
            funcs,
            typed: Vec::new(),
        })
    }

    /// Drops the instance made at creation if no lane has taken it yet: it
    /// starts again when a call needs it. True if there was one.
    pub(crate) fn drop_spare(&self) -> bool {
        lock(&self.first).take().is_some()
    }

    /// The instance to serve with: the one made at creation the first time,
    /// a fresh one after a call failed in the last (unless recent attempts
    /// failed: then the call fails at once, see [`Backoff`]).
    fn live<'a>(&self, slot: &'a mut Option<Live>, export: usize) -> Result<&'a mut Live, Error> {
        if slot.is_none() {
            let first = lock(&self.first).take();
            *slot = Some(match first {
                Some(live) => live,
                None => self.recover(export)?,
            });
        }
        Ok(slot.as_mut().expect("just filled"))
    }

    /// A fresh instance to replace one that faulted, within the backoff.
    fn recover(&self, export: usize) -> Result<Live, Error> {
        let interface = self.exported(export).name().to_string();
        let mut backoff = lock(&self.backoff);
        if let Some(until) = backoff.until {
            let left = until.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                return Err(Error::Instantiate {
                    interface,
                    name: self.name.to_string(),
                    origin: self.plugin.origin().to_string(),
                    reason: format!(
                        "{} (failed {} time(s) in a row; not tried again for {} ms, \
                         or until the plugin changes)",
                        backoff.last,
                        backoff.failures,
                        left.as_millis()
                    ),
                });
            }
        }
        match self.instantiate(&interface) {
            Ok(live) => {
                *backoff = Backoff::default();
                Ok(live)
            }
            Err(error) => {
                backoff.failures += 1;
                let pause = FIRST_PAUSE
                    .saturating_mul(1 << (backoff.failures - 1).min(16))
                    .min(LONGEST_PAUSE);
                backoff.until = Some(Instant::now() + pause);
                backoff.last = match &error {
                    Error::Instantiate { reason, .. } => reason.clone(),
                    other => other.to_string(),
                };
                tracing::warn!(
                    "{error}; failed {} time(s) in a row, backing off for {} ms",
                    backoff.failures,
                    pause.as_millis()
                );
                Err(error)
            }
        }
    }

    /// Calls `function` of export number `export` with dynamic values.
    pub(crate) fn call(
        &self,
        slot: &mut Option<Live>,
        export: usize,
        function: &str,
        args: &[Val],
    ) -> Result<Vec<Val>, Error> {
        let exported = self.exported(export);
        let Some(position) = exported.position(function) else {
            return Err(Error::NoSuchFunction {
                interface: exported.name().to_string(),
                name: self.name.to_string(),
                function: function.to_string(),
                available: exported.function_names(),
            });
        };
        let signature = &exported.functions()[position];
        if args.len() != signature.param_count() {
            return Err(Error::BadArguments {
                interface: exported.name().to_string(),
                function: function.to_string(),
                reason: format!(
                    "expected {} argument(s), got {}",
                    signature.param_count(),
                    args.len()
                ),
            });
        }
        let mut results = vec![Val::Bool(false); signature.result_count()];
        let live = self.live(slot, export)?;
        live.store.set_epoch_deadline(self.deadline);
        let func = live.funcs[export][position];
        match guarded(|| func.call(&mut live.store, args, &mut results)) {
            Ok(()) => Ok(results),
            Err(error) => {
                let error = self.call_failed(export, function, args, &error);
                // Wrong arguments are refused before the guest runs; anything
                // else may have left the instance half-way, so it goes.
                if !matches!(error, Error::BadArguments { .. }) {
                    *slot = None;
                }
                Err(error)
            }
        }
    }

    /// Runs a typed closure on the instance, for export number `export`.
    pub(crate) fn call_typed<B, R>(
        &self,
        slot: &mut Option<Live>,
        export: usize,
        call: impl FnOnce(&B, &mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> Result<R, Error>
    where
        B: Bindings,
    {
        let interface = || self.exported(export).name().to_string();
        let Live {
            store,
            instance,
            typed,
            ..
        } = self.live(slot, export)?;
        let key = TypeId::of::<B>();
        let position = match typed.iter().position(|(id, _)| *id == key) {
            Some(position) => position,
            None => {
                let bindings = B::load(store, instance).map_err(|e| Error::Bindings {
                    interface: interface(),
                    name: self.name.to_string(),
                    bindings: type_name::<B>(),
                    reason: reason(&e),
                })?;
                typed.push((key, Box::new(bindings)));
                typed.len() - 1
            }
        };
        let bindings = typed[position]
            .1
            .downcast_ref::<B>()
            .expect("stored under its own TypeId");
        store.set_epoch_deadline(self.deadline);
        match guarded(|| call(bindings, store)) {
            Ok(value) => Ok(value),
            Err(error) => {
                *slot = None;
                Err(Error::Call {
                    interface: interface(),
                    name: self.name.to_string(),
                    function: self.typed_function(&error, type_name::<B>()),
                    fault: Fault::of(&error),
                    reason: reason(&error),
                })
            }
        }
    }

    /// Which exported function a failed typed call was in. The closure does
    /// not tell us; the trap's backtrace does when the guest kept its name
    /// section (the entry point a component lifts is named
    /// `interface#function` by wit-bindgen and most toolchains), and a plugin
    /// with a single function leaves no doubt.
    fn typed_function(&self, error: &wasmtime::Error, bindings: &str) -> String {
        let exports = self.plugin.exports();
        let known = |name: &str| {
            exports
                .iter()
                .any(|e| e.function(name).is_some())
                .then(|| name.to_string())
        };
        let from_backtrace = error
            .downcast_ref::<wasmtime::WasmBacktrace>()
            .and_then(|trace| {
                trace
                    .frames()
                    .iter()
                    .rev()
                    .filter_map(|frame| frame.func_name())
                    .filter_map(|name| name.rsplit_once('#'))
                    .find_map(|(_, function)| known(function))
            });
        if let Some(function) = from_backtrace {
            return function;
        }
        let mut all = exports.iter().flat_map(|e| e.functions());
        match (all.next(), all.next()) {
            (Some(only), None) => only.name().to_string(),
            _ => format!("a typed call through {bindings}"),
        }
    }

    /// Words a failed dynamic call: arguments of the wrong type are the
    /// caller's mistake, anything else happened in the plugin.
    fn call_failed(
        &self,
        export: usize,
        function: &str,
        args: &[Val],
        error: &wasmtime::Error,
    ) -> Error {
        let exported = self.exported(export);
        let signature = exported.function(function);
        let mismatch = signature.and_then(|s| crate::values::mismatch(s.ty(), args));
        match mismatch {
            Some(reason) if error.downcast_ref::<wasmtime::Trap>().is_none() => {
                Error::BadArguments {
                    interface: exported.name().to_string(),
                    function: function.to_string(),
                    reason,
                }
            }
            _ => Error::Call {
                interface: exported.name().to_string(),
                name: self.name.to_string(),
                function: function.to_string(),
                fault: Fault::of(error),
                reason: reason(error),
            },
        }
    }
}

/// Whether instantiating failed because wasmtime's instance pool is full.
fn pool_full(error: &wasmtime::Error) -> bool {
    error
        .chain()
        .any(|cause| cause.is::<wasmtime::PoolConcurrencyLimitError>())
}

/// Runs `f`, turning a panic inside it into an error. wasmtime carries a
/// panic in a host function (WASI's included) out through the guest's frames
/// to its caller; here it fails the one call (whose instance then goes)
/// rather than the host.
fn guarded<R>(f: impl FnOnce() -> wasmtime::Result<R>) -> wasmtime::Result<R> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(wasmtime::format_err!(
                "the host panicked during the call: {message}"
            ))
        }
    }
}
