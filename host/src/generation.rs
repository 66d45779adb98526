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
use crate::chain;
use crate::engine::deadline_ticks;
use crate::error::ImportError;
use crate::error::{reason as reason_of, Error, Failed, Fault};
use crate::functions::{Entry, FunctionIndex};
use crate::limits::{Limits, MAX_CANARY_BYTES};
use crate::loader::{ExportedInterface, Plugin};
use crate::sandbox::{
    self, ImportCalls, ImportLink, PluginScope, PluginState, RecentCall, TypedCall,
};
use crate::state::StateView;
use crate::sync::lock;

/// One version of one plugin, and the instance made to check it. Replaced
/// whole on reload.
pub(crate) struct Generation {
    number: u64,
    /// Unique in the process, never reused (unlike an address): what a
    /// cache of checks made against a generation is keyed by.
    uid: u64,
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
    scope: PluginScope,
    /// Why its instances start (unless they replace one).
    reason: StartReason,
    /// Where its calls through imports from the registry go.
    imports: Option<Arc<dyn ImportCalls>>,
    /// Whether the plugin imports anything from the registry: only such a
    /// plugin can be in a cycle, so only its calls join the thread's chain.
    in_chains: bool,
    /// Whether its recent calls are kept for a canary (`[reload] canary`).
    keeps_calls: bool,
    /// Whether it is granted files or HTTP: I/O that wasmtime-wasi waits
    /// for on a tokio runtime, so its calls run through
    /// [`waits::in_place`](crate::waits::in_place).
    does_io: bool,
    /// Its exported functions, found by name on every dynamic call.
    functions: FunctionIndex,
    /// How its instances reach the plugin's host-kept state: staged until
    /// it is published (see [`Generation::commit_state`]).
    state: StateView,
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

/// A lane's instance of one generation. `started` stays true once the lane
/// has had one, so that its replacement (after a fault, or after it was
/// freed to make room) starts as a recovery.
#[derive(Default)]
pub(crate) struct Resident {
    pub(crate) live: Option<Live>,
    started: bool,
}

/// How a generation's first instance starts: why, and with what the
/// outgoing version handed over.
pub(crate) struct Start<'a> {
    pub(crate) reason: StartReason,
    pub(crate) snapshot: Option<&'a [u8]>,
}

/// Why an instance starts, as `hotslot:plugin/lifecycle` tells the plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StartReason {
    /// The plugin's first instance since the host started (or since its
    /// state was dropped).
    Fresh,
    /// A new version replaces the one that served.
    Reload,
    /// A new instance replaces one that faulted (or was freed).
    Recover,
}

impl StartReason {
    fn wit(self) -> &'static str {
        match self {
            StartReason::Fresh => "fresh",
            StartReason::Reload => "reload",
            StartReason::Recover => "recover",
        }
    }
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
    /// them, and starts the instance: `restore(snapshot)` if a snapshot of
    /// the outgoing version is given, then `on-start(reason)`. Fails if the
    /// instance cannot be made or refuses to start, so a bad plugin never
    /// reaches a slot.
    pub(crate) fn new(
        number: u64,
        name: &Arc<str>,
        plugin: Plugin,
        limits: &Limits,
        scope: PluginScope,
        imports: Option<Arc<dyn ImportCalls>>,
        start: Start<'_>,
    ) -> Result<Self, Error> {
        let Start { reason, snapshot } = start;
        let limits = plugin.grants().limits(limits);
        let in_chains = !plugin.imports().is_empty();
        let keeps_calls = plugin.grants().canary > 0;
        let does_io = !plugin.grants().dirs.is_empty() || !plugin.grants().http.is_empty();
        static UIDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let scope_state = scope.state.clone();
        let generation = Generation {
            number,
            uid: UIDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            name: name.clone(),
            instances: plugin.grants().instance_count(),
            deadline: deadline_ticks(limits.timeout),
            limits,
            first: Mutex::new(None),
            backoff: Mutex::default(),
            scope,
            reason,
            in_chains,
            keeps_calls,
            does_io,
            functions: FunctionIndex::of(plugin.exports()),
            plugin,
            imports,
            state: StateView::staged(&scope_state),
        };
        let interfaces = generation.plugin.interface_names();
        let mut live = generation.instantiate(interfaces)?;
        if let Some(snapshot) = snapshot {
            generation.restore(&mut live, snapshot, interfaces)?;
        }
        generation.start(&mut live, reason, interfaces)?;
        *lock(&generation.first) = Some(live);
        Ok(generation)
    }

    pub(crate) fn number(&self) -> u64 {
        self.number
    }

    /// Makes the state changes its instances made as they started, which
    /// were staged until now, all or none: called as it is published. A
    /// generation refused before that (or a canary's probe) changes
    /// nothing in the plugin's state.
    ///
    /// # Errors
    /// [`Error::Instantiate`] if the changes cannot be made (past the
    /// quota with what the serving version wrote meanwhile, a disk error):
    /// the generation is refused then.
    pub(crate) fn commit_state(&self) -> Result<(), Error> {
        self.state.commit().map_err(|why| {
            self.refused(
                self.plugin.interface_names(),
                format!("what it changed in its state as it started cannot be kept: {why}"),
            )
        })
    }

    /// Never 0, never shared with another generation.
    pub(crate) fn uid(&self) -> u64 {
        self.uid
    }

    pub(crate) fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// How each of its imports from the registry stands now.
    pub(crate) fn import_links(&self) -> Vec<ImportLink> {
        self.imports.as_ref().map(|i| i.links()).unwrap_or_default()
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

    /// A fresh instance. When wasmtime's instance pool is full, idle
    /// instances are freed to make room and the attempt is made once more.
    fn instantiate(&self, interface: &str) -> Result<Live, Error> {
        let failed = |e: wasmtime::Error| Error::Instantiate {
            interface: interface.to_string(),
            name: self.name.to_string(),
            origin: self.plugin.origin().to_string(),
            reason: start_up_reason(&e),
        };
        match self.try_instantiate() {
            Err(e) if pool_full(&e) => {
                let freed = (self.scope.reclaim)();
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
            &self.scope,
            &self.state,
            self.imports.clone(),
        )?;
        let instance = self.guarded(|| pre.instantiate(&mut store))?;
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
    #[inline]
    fn live<'a>(&self, resident: &'a mut Resident, export: usize) -> Result<&'a mut Live, Failed> {
        if resident.live.is_none() {
            self.fill(resident, export)?;
        }
        Ok(resident.live.as_mut().expect("just filled"))
    }

    /// Gives a lane without an instance one: the rare path of
    /// [`Generation::live`], kept out of the call's way.
    #[cold]
    #[inline(never)]
    fn fill(&self, resident: &mut Resident, export: usize) -> Result<(), Failed> {
        let first = lock(&self.first).take();
        let live = match first {
            Some(live) => live,
            None if resident.started => self.recover(export, StartReason::Recover)?,
            None => self.recover(export, self.reason)?,
        };
        resident.live = Some(live);
        resident.started = true;
        Ok(())
    }

    /// A fresh instance, started for `reason`, within the backoff.
    fn recover(&self, export: usize, reason: StartReason) -> Result<Live, Error> {
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
        let started = self.instantiate(&interface).and_then(|mut live| {
            self.start(&mut live, reason, &interface)?;
            Ok(live)
        });
        match started {
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
        resident: &mut Resident,
        export: usize,
        function: &str,
        args: &[Val],
        held: bool,
    ) -> Result<Vec<Val>, Failed> {
        let found = self.function(export, function, args.len(), held)?;
        let count = found.results();
        // Filled in place, not cloned from a template value one by one.
        let mut results = Vec::with_capacity(count);
        results.resize_with(count, || Val::Bool(false));
        self.call_at(resident, export, found.position(), args, &mut results, None)?;
        Ok(results)
    }

    /// Like [`Generation::call`], answering into `results`.
    pub(crate) fn call_into(
        &self,
        resident: &mut Resident,
        export: usize,
        function: &str,
        args: &[Val],
        results: &mut [Val],
    ) -> Result<(), Failed> {
        let found = self.function(export, function, args.len(), false)?;
        if results.len() != found.results() {
            let (position, wanted) = (found.position(), found.results());
            return Err(self.miscounted(export, position, "result", wanted, results.len()));
        }
        self.call_at(resident, export, found.position(), args, results, None)
    }

    /// Function `function` of export number `export`, refused unless it
    /// takes `args` arguments. (Their types are checked by wasmtime.) One
    /// that passes resource handles only in a batch (`held`): see
    /// [`Generation::off_count`].
    #[inline]
    fn function(
        &self,
        export: usize,
        function: &str,
        args: usize,
        held: bool,
    ) -> Result<Entry, Failed> {
        let Some(found) = self.functions.find(export, function) else {
            return Err(self.no_such_function(export, function));
        };
        if args != found.params() {
            return self.off_count(export, found, args, held);
        }
        Ok(found)
    }

    /// A function whose count of parameters `args` did not match: a call
    /// miscounted, or a function that passes resource handles (its count in
    /// the index matches no call). Those are made only in a batch, which
    /// holds one instance: a handle one call answers can go to the next,
    /// and stays in the instance until it goes. Outside one, the next call
    /// may reach another instance, so a handle answered would only stay in
    /// the instance's table, out of reach, one more per call.
    #[cold]
    #[inline(never)]
    fn off_count(
        &self,
        export: usize,
        found: Entry,
        args: usize,
        held: bool,
    ) -> Result<Entry, Failed> {
        let position = found.position();
        if !found.passes_resources() {
            return Err(self.miscounted(export, position, "argument", found.params(), args));
        }
        let wanted = self.exported(export).functions()[position].param_count();
        match (held, args == wanted) {
            (false, _) => Err(self.resources_refused(export, position)),
            (true, true) => Ok(found),
            (true, false) => Err(self.miscounted(export, position, "argument", wanted, args)),
        }
    }

    /// The refusal of a dynamic call to a function that passes resource
    /// handles, outside a batch.
    #[cold]
    fn resources_refused(&self, export: usize, position: usize) -> Failed {
        let exported = self.exported(export);
        Box::new(Error::BadArguments {
            interface: exported.name().to_string(),
            function: exported.functions()[position].name().to_string(),
            reason: "it takes or gives a resource handle, which a dynamic call cannot \
                     keep (the next may reach another instance): call it in a `batch`, \
                     or with typed bindings (`call_typed`)"
                .to_string(),
        })
    }

    #[cold]
    fn no_such_function(&self, export: usize, function: &str) -> Failed {
        let exported = self.exported(export);
        Box::new(Error::NoSuchFunction {
            interface: exported.name().to_string(),
            name: self.name.to_string(),
            function: function.to_string(),
            available: exported.function_names(),
        })
    }

    /// A call with more or fewer arguments, or room for results, than
    /// function number `position` of export number `export` takes or gives.
    #[cold]
    fn miscounted(
        &self,
        export: usize,
        position: usize,
        what: &str,
        wanted: usize,
        given: usize,
    ) -> Failed {
        let exported = self.exported(export);
        Box::new(Error::BadArguments {
            interface: exported.name().to_string(),
            function: exported.functions()[position].name().to_string(),
            reason: format!("expected {wanted} {what}(s), got {given}"),
        })
    }

    /// Calls function number `position` of export number `export`,
    /// answering into `results`, given at most `cap` epoch ticks on top of
    /// the plugin's own deadline: what is left of the chain of calls it is
    /// in. The caller has checked that `args` and `results` are as many as
    /// the function takes and gives (a call forwarded from another plugin
    /// was checked when its provider was: see `imports`), so it needs no
    /// vector of its own, no lookup by name, and no count.
    pub(crate) fn call_at(
        &self,
        resident: &mut Resident,
        export: usize,
        position: usize,
        args: &[Val],
        results: &mut [Val],
        cap: Option<u64>,
    ) -> Result<(), Failed> {
        let _entered = self.enter();
        let answered = self.run_at(
            resident,
            export,
            position,
            cap,
            Some(args),
            |func, store| func.call(store, args, results),
        );
        if self.keeps_calls && answered.is_ok() {
            self.remember(export, position, args);
        }
        answered
    }

    /// Like [`Generation::call_at`], for a forwarder that calls typed:
    /// `call` makes the call on the function, in the instance's store.
    ///
    /// # Safety
    /// Function `position` of export `export` must have exactly the types
    /// `call` calls it with (see [`TypedCall::call`]).
    pub(crate) unsafe fn call_typed_at(
        &self,
        resident: &mut Resident,
        export: usize,
        position: usize,
        call: &mut dyn TypedCall,
        cap: Option<u64>,
    ) -> Result<(), Failed> {
        let _entered = self.enter();
        // Taken now: the call consumes them.
        let args = self.keeps_calls.then(|| call.args());
        // Typed values cannot be wrong ones (no `args` to check): whatever
        // fails, fails in the call.
        let answered = self.run_at(resident, export, position, cap, None, |func, store| {
            // SAFETY: `func` is function `position` of export `export`, of
            // the types `call` calls it with (this method's contract).
            unsafe { call.call(func, store) }
        });
        if let (Some(args), Ok(())) = (args, &answered) {
            self.remember(export, position, &args);
        }
        answered
    }

    /// What [`Generation::call_at`] and [`Generation::call_typed_at`]
    /// share: the instance, its deadline, and a failure worded (with the
    /// dynamic call's `args`, to tell wrong arguments from a fault).
    #[inline]
    fn run_at(
        &self,
        resident: &mut Resident,
        export: usize,
        position: usize,
        cap: Option<u64>,
        args: Option<&[Val]>,
        call: impl FnOnce(Func, &mut Store<PluginState>) -> wasmtime::Result<()>,
    ) -> Result<(), Failed> {
        let live = self.live(resident, export)?;
        let ticks = cap.map_or(self.deadline, |cap| self.deadline.min(cap));
        sandbox::set_deadline(&mut live.store, ticks);
        let func = live.funcs[export][position];
        match self.guarded(|| call(func, &mut live.store)) {
            Ok(()) => Ok(()),
            Err(error) => {
                let function = self.exported(export).functions()[position].name();
                let error = self.call_failed(export, function, args, &error);
                // Wrong arguments are refused before the guest runs; anything
                // else may have left the instance half-way, so it goes.
                if !matches!(error, Error::BadArguments { .. }) {
                    resident.live = None;
                }
                Err(Box::new(error))
            }
        }
    }

    /// Runs a typed closure on the instance, for export number `export`.
    pub(crate) fn call_typed<B, R>(
        &self,
        resident: &mut Resident,
        export: usize,
        call: impl FnOnce(&B, &mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> Result<R, Failed>
    where
        B: Bindings,
    {
        let interface = || self.exported(export).name().to_string();
        let _entered = self.enter();
        let Live {
            store,
            instance,
            typed,
            ..
        } = self.live(resident, export)?;
        let key = TypeId::of::<B>();
        let position = match typed.iter().position(|(id, _)| *id == key) {
            Some(position) => position,
            None => {
                let bindings = B::load(store, instance).map_err(|e| Error::Bindings {
                    interface: interface(),
                    name: self.name.to_string(),
                    bindings: type_name::<B>(),
                    reason: reason_of(&e),
                })?;
                typed.push((key, Box::new(bindings)));
                typed.len() - 1
            }
        };
        let stored: &(dyn Any + Send) = &*typed[position].1;
        // SAFETY: entries are pushed only under their own type's `TypeId`
        // (just above), so this one holds a `B`. Checked by hand rather than
        // by `downcast_ref`, which asks the box its type again through a
        // virtual call on every call.
        let bindings = unsafe { &*(stored as *const (dyn Any + Send)).cast::<B>() };
        sandbox::set_deadline(store, self.deadline);
        match self.guarded(|| call(bindings, store)) {
            Ok(value) => Ok(value),
            Err(error) => {
                resident.live = None;
                if let Some(failure) = error.downcast_ref::<ImportError>() {
                    return Err(Box::new(Error::Import(Box::new(failure.clone()))));
                }
                Err(Box::new(Error::Call {
                    interface: interface(),
                    name: self.name.to_string(),
                    function: self.typed_function(&error, type_name::<B>()),
                    fault: Fault::of(&error),
                    reason: reason_of(&error),
                }))
            }
        }
    }

    /// Runs `f`, which runs the plugin's code, as [`guarded`] does; for a
    /// plugin granted files or HTTP, through
    /// [`waits::in_place`](crate::waits::in_place), so that its I/O can wait
    /// wherever the call was made.
    #[inline]
    fn guarded<R>(&self, f: impl FnOnce() -> wasmtime::Result<R>) -> wasmtime::Result<R> {
        match self.does_io {
            true => crate::waits::in_place(|| guarded(f)),
            false => guarded(f),
        }
    }

    /// Tells a new instance why it starts (`hotslot:plugin/lifecycle`), if
    /// the plugin wants to know; its `err` refuses the instance. Runs under
    /// the call deadline. Either way the plugin has now started once.
    fn start(&self, live: &mut Live, reason: StartReason, interface: &str) -> Result<(), Error> {
        let _entered = self.enter();
        if let Some((export, function)) = self.plugin.contract().on_start {
            let refused =
                |why: String| self.refused(interface, format!("on-start({}) {why}", reason.wit()));
            let func = live.funcs[export][function];
            let mut results = [Val::Bool(false)];
            sandbox::set_deadline(&mut live.store, chain::capped(self.deadline));
            let args = [Val::Enum(reason.wit().into())];
            self.guarded(|| func.call(&mut live.store, &args, &mut results))
                .map_err(|e| refused(format!("failed: {}", start_up_reason(&e))))?;
            if let Val::Result(Err(message)) = &results[0] {
                return Err(refused(format!(
                    "refused: {}",
                    result_text(message.as_deref())
                )));
            }
        }
        self.state.mark_started();
        Ok(())
    }

    /// Hands a new instance the outgoing version's snapshot
    /// (`hotslot:plugin/migrate.restore`); its `err`, or a trap, refuses it.
    fn restore(&self, live: &mut Live, snapshot: &[u8], interface: &str) -> Result<(), Error> {
        let Some((export, function)) = self.plugin.contract().restore else {
            return Ok(());
        };
        let _entered = self.enter();
        let refused = |why: String| self.refused(interface, format!("restore {why}"));
        let func = live.funcs[export][function];
        let typed = func
            .typed::<(&[u8],), (Result<(), String>,)>(&live.store)
            .map_err(|e| refused(format!("has an unexpected type: {}", reason_of(&e))))?;
        sandbox::set_deadline(&mut live.store, chain::capped(self.deadline));
        let (answer,) = self
            .guarded(|| typed.call(&mut live.store, (snapshot,)))
            .map_err(|e| refused(format!("failed: {}", start_up_reason(&e))))?;
        answer.map_err(|message| {
            let message = crate::error::escape_controls(&message, |_| false);
            refused(format!("refused: {message}"))
        })
    }

    /// The in-memory state of the instance a lane holds
    /// (`hotslot:plugin/migrate.snapshot`), or `None` when the plugin keeps
    /// none or has no instance running. A failure costs the instance.
    pub(crate) fn snapshot(&self, resident: &mut Resident) -> Result<Option<Vec<u8>>, Error> {
        let Some((export, function)) = self.plugin.contract().snapshot else {
            return Ok(None);
        };
        if resident.live.is_none() {
            match lock(&self.first).take() {
                Some(live) => resident.live = Some(live),
                None => return Ok(None),
            }
        }
        let _entered = self.enter();
        let live = resident.live.as_mut().expect("just filled");
        let failed = |e: wasmtime::Error| Error::Call {
            interface: self.exported(export).name().to_string(),
            name: self.name.to_string(),
            function: "snapshot".into(),
            fault: Fault::of(&e),
            reason: reason_of(&e),
        };
        let func = live.funcs[export][function];
        let typed = func.typed::<(), (Vec<u8>,)>(&live.store).map_err(failed)?;
        sandbox::set_deadline(&mut live.store, self.deadline);
        match self.guarded(|| typed.call(&mut live.store, ())) {
            Ok((snapshot,)) => Ok(Some(snapshot)),
            Err(e) => {
                resident.live = None;
                Err(failed(e))
            }
        }
    }

    /// Keeps a call this version answered for the canary of the next,
    /// within its bounds: the last `[reload] canary` calls of each
    /// interface, and about a MiB of arguments in all. One that faulted here is left out: the next version
    /// faulting on it too would be no regression, and would refuse every
    /// reload until it aged out.
    fn remember(&self, export: usize, position: usize, args: &[Val]) {
        let function = self.exported(export).functions()[position].name();
        let bytes = function.len()
            + args
                .iter()
                .map(|v| wasmtime::component::wasm_wave::to_string(v).map_or(64, |t| t.len()))
                .sum::<usize>();
        let call = RecentCall::new(
            self.exported(export).name().clone(),
            function.to_string(),
            args.to_vec(),
            bytes,
        );
        let keep = self.plugin.grants().canary;
        lock(&self.scope.recent).keep(call, keep, MAX_CANARY_BYTES);
    }

    /// Puts this plugin in the thread's chain of calls while it runs, if it
    /// has imports: only a plugin that can call others can be in a cycle.
    #[inline]
    fn enter(&self) -> Option<chain::Entered> {
        if !self.in_chains {
            return None;
        }
        Some(chain::enter(&self.name, self.limits.timeout))
    }

    fn refused(&self, interface: &str, reason: String) -> Error {
        Error::Instantiate {
            interface: interface.to_string(),
            name: self.name.to_string(),
            origin: self.plugin.origin().to_string(),
            reason,
        }
    }

    /// Which exported function a failed typed call was in. The closure does
    /// not tell us; the trap's backtrace does: the entry point a component
    /// lifts is named `interface#function` by wit-bindgen and most
    /// toolchains, in the guest's name section if it kept one, and in its
    /// core module's exports always. A plugin with a single function leaves
    /// no doubt.
    fn typed_function(&self, error: &wasmtime::Error, bindings: &str) -> String {
        let exports = self.plugin.exports();
        let known = |name: &str| {
            exports
                .iter()
                .any(|e| e.function(name).is_some())
                .then(|| name.to_string())
        };
        // The outermost frame the guest named `interface#function`: by its
        // name section, or else by the name its module exports it under.
        let from_backtrace = error
            .downcast_ref::<wasmtime::WasmBacktrace>()
            .and_then(|trace| {
                trace.frames().iter().rev().find_map(|frame| {
                    let exported = self.plugin.entry_name(frame.module(), frame.func_index());
                    [frame.func_name(), exported]
                        .into_iter()
                        .flatten()
                        .filter_map(|name| name.rsplit_once('#'))
                        .find_map(|(_, function)| known(function))
                })
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

    /// Words a failed call: arguments of the wrong type (given as `args`,
    /// for a dynamic call) are the caller's mistake, anything else happened
    /// in the plugin.
    fn call_failed(
        &self,
        export: usize,
        function: &str,
        args: Option<&[Val]>,
        error: &wasmtime::Error,
    ) -> Error {
        if let Some(failure) = error.downcast_ref::<ImportError>() {
            return Error::Import(Box::new(failure.clone()));
        }
        let exported = self.exported(export);
        let signature = exported.function(function);
        let mismatch = signature
            .zip(args)
            .and_then(|(s, args)| crate::values::mismatch(s.ty(), args));
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
                reason: reason_of(error),
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

/// Why start-up code (a start function, `on-start`, `restore`) failed. One
/// stopped by the deadline says so, as a call's failure does: wasmtime's own
/// words are only "wasm trap: interrupt".
fn start_up_reason(error: &wasmtime::Error) -> String {
    match Fault::of(error) {
        Fault::Timeout => format!("{}: {}", Fault::Timeout, reason_of(error)),
        _ => reason_of(error),
    }
}

/// Runs `f`, turning a panic inside it into an error. wasmtime carries a
/// panic in a host function (WASI's included) out through the guest's frames
/// to its caller; here it fails the one call (whose instance then goes)
/// rather than the host.
fn guarded<R>(f: impl FnOnce() -> wasmtime::Result<R>) -> wasmtime::Result<R> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(panic) => {
            let text = crate::error::panic_text(&*panic);
            // Tokio's refusal to wait where a synchronous call was made
            // inside an async task or `block_on`: a plugin's prints, sleeps
            // and streams wait there all the same, but wasmtime-wasi's
            // other I/O (a file's `stat`, listing a directory, an HTTP
            // request) cannot. What to do comes first.
            if crate::waits::refused_wait(&text) {
                return Err(wasmtime::format_err!(
                    "a synchronous call made inside an async task or `block_on` \
                     cannot wait there for the plugin's file or network I/O: use \
                     `call_async` (tokio: {text})"
                ));
            }
            Err(wasmtime::format_err!(
                "the host panicked during the call: {text}"
            ))
        }
    }
}

/// The text of a `result<_, string>`'s error, as a plugin gave it, its
/// control characters written out (it is shown on terminals and in logs).
fn result_text(value: Option<&Val>) -> String {
    match value {
        Some(Val::String(text)) => crate::error::escape_controls(text, |_| false).into_owned(),
        Some(other) => format!("{other:?}"),
        None => "no reason given".into(),
    }
}
