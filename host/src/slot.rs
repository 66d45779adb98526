//! Stable slots and the handles that reach them.
//!
//! A slot is the host-side place one implementation (an interface and a name)
//! lives at. It publishes its current *generation* — one instance of one
//! plugin — through an [`ArcSwapOption`]: a reload stores a new generation in
//! one atomic step, so every call sees either the old generation or the new
//! one, never a mixture. A call holds the generation it started on until it
//! returns; the old generation's store (and its memory) is freed when the last
//! such call ends.
//!
//! A [`Handle`] points at a slot, or, when it came from
//! [`Registry::get`](crate::Registry::get), at whichever slot currently serves
//! its request: the registry re-points it as implementations come and go.

use std::any::{type_name, Any, TypeId};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};

use arc_swap::ArcSwapOption;
use wasmtime::component::{Func, Instance, Val};
use wasmtime::Store;

use crate::engine::deadline_ticks;
use crate::error::{reason, Error, Fault};
use crate::loader::{ExportedInterface, Plugin};
use crate::manifest::MAX_INSTANCES;
use crate::sandbox::{self, Limits, PluginState};
use crate::sync::lock;
use crate::version::{InterfaceName, Request};

/// Typed bindings made by wasmtime's `bindgen!` for a world, loadable from an
/// instance. Implement it with [`hotslot::bindings!`](crate::bindings) for the
/// world's struct, then call through a handle with [`Handle::call_typed`].
///
/// ```ignore
/// wasmtime::component::bindgen!({ path: "wit/greeter", world: "greeter" });
/// hotslot::bindings!(Greeter);
///
/// let answer = handle.call_typed(|greeter: &Greeter, store| {
///     greeter.demo_greeter_greet().call_hello(store, "world")
/// })?;
/// ```
pub trait Bindings: Sized + Send + 'static {
    /// Looks up (and type-checks) the world's exports in `instance`.
    fn load(store: &mut Store<PluginState>, instance: &Instance) -> wasmtime::Result<Self>;
}

/// Implements [`Bindings`] for the world structs `bindgen!` generates, which
/// all have a `new(store, instance)` constructor.
///
/// ```ignore
/// wasmtime::component::bindgen!({ path: "wit/calc", world: "calculator" });
/// hotslot::bindings!(Calculator);
/// ```
#[macro_export]
macro_rules! bindings {
    ($($world:ty),+ $(,)?) => {$(
        impl $crate::Bindings for $world {
            fn load(
                store: &mut $crate::wasmtime::Store<$crate::PluginState>,
                instance: &$crate::wasmtime::component::Instance,
            ) -> $crate::wasmtime::Result<Self> {
                <$world>::new(store, instance)
            }
        }
    )+};
}

/// One version of one implementation: a plugin, the export it serves, and
/// the instance made for it. Replaced whole on reload.
pub(crate) struct Generation {
    number: u64,
    name: Arc<str>,
    plugin: Plugin,
    /// Which of the plugin's exports this slot serves.
    export: usize,
    limits: Limits,
    /// `limits.timeout` in epoch ticks, set before every call.
    deadline: u64,
    /// How many instances may serve calls at once.
    instances: usize,
    /// The instance made (and so checked) when the generation was created,
    /// until the slot takes it to serve calls.
    first: Mutex<Option<Live>>,
}

/// A running instance and what was looked up in it.
struct Live {
    store: Store<PluginState>,
    instance: Instance,
    /// The interface's functions, in the order of `ExportedInterface::functions`.
    funcs: Vec<Func>,
    /// Typed bindings loaded so far, by type. Usually zero or one entry.
    typed: Vec<(TypeId, Box<dyn Any + Send>)>,
}

impl Generation {
    /// Instantiates `plugin` for its export number `export`. Fails if the
    /// instance cannot be made, so a bad plugin never reaches a slot.
    pub(crate) fn new(
        number: u64,
        name: &str,
        plugin: Plugin,
        export: usize,
        limits: Limits,
    ) -> Result<Self, Error> {
        // The plugin's manifest may set its own limits.
        let limits = plugin.grants().limits(&limits);
        let mut generation = Generation {
            number,
            name: name.into(),
            instances: plugin.grants().instance_count(),
            export,
            deadline: deadline_ticks(limits.timeout),
            plugin,
            limits,
            first: Mutex::new(None),
        };
        let live = generation.instantiate()?;
        generation.first = Mutex::new(Some(live));
        Ok(generation)
    }

    pub(crate) fn number(&self) -> u64 {
        self.number
    }

    pub(crate) fn interface(&self) -> &InterfaceName {
        self.exported().name()
    }

    pub(crate) fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    pub(crate) fn serves(&self, request: &Request) -> bool {
        self.interface().serves(request)
    }

    fn exported(&self) -> &ExportedInterface {
        &self.plugin.exports()[self.export]
    }

    fn instantiate(&self) -> Result<Live, Error> {
        let failed = |e: wasmtime::Error| Error::Instantiate {
            interface: self.interface().to_string(),
            name: self.name.to_string(),
            origin: self.plugin.origin().to_string(),
            reason: reason(&e),
        };
        let pre = self.plugin.instance_pre();
        let mut store = sandbox::new_store(pre.engine(), &self.name, &self.limits, self.plugin.grants())
            .map_err(failed)?;
        let instance = pre.instantiate(&mut store).map_err(failed)?;
        let mut funcs = Vec::new();
        for function in self.exported().functions() {
            let func = instance
                .get_func(&mut store, function.index())
                .ok_or_else(|| failed(wasmtime::format_err!("no function `{}`", function.name())))?;
            funcs.push(func);
        }
        Ok(Live {
            store,
            instance,
            funcs,
            typed: Vec::new(),
        })
    }

    /// The instance to serve with: the one made at creation the first time,
    /// a fresh one after a call failed in the last.
    fn live<'a>(&self, slot: &'a mut Option<Live>) -> Result<&'a mut Live, Error> {
        if slot.is_none() {
            let first = lock(&self.first).take();
            *slot = Some(match first {
                Some(live) => live,
                None => self.instantiate()?,
            });
        }
        Ok(slot.as_mut().expect("just filled"))
    }

    fn call(
        &self,
        slot: &mut Option<Live>,
        function: &str,
        args: &[Val],
    ) -> Result<Vec<Val>, Error> {
        let exported = self.exported();
        let Some(position) = exported.position(function) else {
            return Err(Error::NoSuchFunction {
                interface: self.interface().to_string(),
                name: self.name.to_string(),
                function: function.to_string(),
                available: exported.function_names(),
            });
        };
        let signature = &exported.functions()[position];
        if args.len() != signature.param_count() {
            return Err(Error::BadArguments {
                interface: self.interface().to_string(),
                function: function.to_string(),
                reason: format!(
                    "expected {} argument(s), got {}",
                    signature.param_count(),
                    args.len()
                ),
            });
        }
        let mut results = vec![Val::Bool(false); signature.result_count()];
        let live = self.live(slot)?;
        live.store.set_epoch_deadline(self.deadline);
        match live.funcs[position].call(&mut live.store, args, &mut results) {
            Ok(()) => Ok(results),
            Err(error) => {
                let error = self.call_failed(function, args, &error);
                // Wrong arguments are refused before the guest runs; anything
                // else may have left the instance half-way, so it goes.
                if !matches!(error, Error::BadArguments { .. }) {
                    *slot = None;
                }
                Err(error)
            }
        }
    }

    fn call_typed<B, R>(
        &self,
        slot: &mut Option<Live>,
        call: impl FnOnce(&B, &mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> Result<R, Error>
    where
        B: Bindings,
    {
        let Live {
            store,
            instance,
            typed,
            ..
        } = self.live(slot)?;
        let key = TypeId::of::<B>();
        let position = match typed.iter().position(|(id, _)| *id == key) {
            Some(position) => position,
            None => {
                let bindings = B::load(store, instance).map_err(|e| Error::Bindings {
                    interface: self.interface().to_string(),
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
        match call(bindings, store) {
            Ok(value) => Ok(value),
            Err(error) => {
                *slot = None;
                Err(Error::Call {
                    interface: self.interface().to_string(),
                    name: self.name.to_string(),
                    function: type_name::<B>().to_string(),
                    fault: Fault::of(&error),
                    reason: reason(&error),
                })
            }
        }
    }

    /// Words a failed dynamic call: arguments of the wrong type are the
    /// caller's mistake, anything else happened in the plugin.
    fn call_failed(&self, function: &str, args: &[Val], error: &wasmtime::Error) -> Error {
        let signature = self.exported().function(function);
        let mismatch = signature.and_then(|s| crate::values::mismatch(s.ty(), args));
        match mismatch {
            Some(reason) if error.downcast_ref::<wasmtime::Trap>().is_none() => {
                Error::BadArguments {
                    interface: self.interface().to_string(),
                    function: function.to_string(),
                    reason,
                }
            }
            _ => Error::Call {
                interface: self.interface().to_string(),
                name: self.name.to_string(),
                function: function.to_string(),
                fault: Fault::of(error),
                reason: reason(error),
            },
        }
    }
}

/// The host-side place of one implementation: an interface (within one
/// version line) and a name. It outlives every generation put behind it.
///
/// Two views of the current generation, kept apart so the call path takes a
/// single uncontended lock:
/// - `published` is what the registry last put here, swapped atomically, with
///   `publications` counting the swaps;
/// - each *lane* holds, under the lock a call takes anyway (a store serves
///   one call at a time), the generation its calls run on and an instance of
///   it. A call that finds `publications` moved on catches its lane up first:
///   from then on it runs on the new generation. A call already running keeps
///   its own, and catches up (freeing the old instance) as it finishes.
///
/// A plugin may serve several calls at once, one per lane, up to the
/// instances its manifest grants.
pub(crate) struct Slot {
    name: String,
    /// The interface this slot last served, for messages once it is empty.
    interface: Mutex<InterfaceName>,
    published: ArcSwapOption<Generation>,
    publications: AtomicU64,
    /// How many lanes the published generation may use.
    width: AtomicUsize,
    /// Where a call waits when every lane in use is busy.
    next_lane: AtomicUsize,
    lanes: Box<[Mutex<Lane>]>,
}

/// One instance's worth of a slot: the generation calls run on, and its
/// instance.
#[derive(Default)]
struct Lane {
    /// The value of `publications` this reflects.
    seen: u64,
    generation: Option<Arc<Generation>>,
    /// `None` until the first call, and after a call failed in the instance:
    /// an instance that trapped must not run again.
    live: Option<Live>,
}

impl Slot {
    pub(crate) fn new(name: &str, interface: InterfaceName) -> Self {
        Slot {
            name: name.to_string(),
            interface: Mutex::new(interface),
            published: ArcSwapOption::empty(),
            publications: AtomicU64::new(0),
            width: AtomicUsize::new(1),
            next_lane: AtomicUsize::new(0),
            lanes: (0..MAX_INSTANCES).map(|_| Mutex::default()).collect(),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn interface(&self) -> InterfaceName {
        lock(&self.interface).clone()
    }

    /// The generation the next call will run on.
    pub(crate) fn current(&self) -> Option<Arc<Generation>> {
        self.published.load_full()
    }

    /// Publishes `generation` (or empties the slot) in one atomic step and
    /// returns what was there. Never waits for a call in flight.
    pub(crate) fn replace(&self, generation: Option<Arc<Generation>>) -> Option<Arc<Generation>> {
        if let Some(g) = &generation {
            *lock(&self.interface) = g.interface().clone();
            self.width.store(g.instances, Ordering::Relaxed);
        }
        let previous = self.published.swap(generation);
        self.publications.fetch_add(1, Ordering::AcqRel);
        // Lanes with no call in flight let go of their old instance now
        // rather than at their next call.
        for lane in self.lanes.iter() {
            if let Ok(mut lane) = lane.try_lock() {
                self.catch_up(&mut lane);
            }
        }
        previous
    }

    fn catch_up(&self, lane: &mut Lane) {
        // Read the count before the pointer: a swap between the two is then
        // seen again by the next call, never missed.
        lane.seen = self.publications.load(Ordering::Acquire);
        let newest = self.published.load_full();
        let same = match (&lane.generation, &newest) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same {
            lane.live = None;
            lane.generation = newest;
        }
    }

    /// A free lane among those in use, or else a turn to wait on one.
    fn acquire(&self) -> MutexGuard<'_, Lane> {
        let width = self.width.load(Ordering::Relaxed).clamp(1, self.lanes.len());
        for lane in &self.lanes[..width] {
            match lane.try_lock() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(poisoned)) => return recover(lane, poisoned),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let turn = self.next_lane.fetch_add(1, Ordering::Relaxed) % width;
        let lane = &self.lanes[turn];
        lane.lock().unwrap_or_else(|poisoned| recover(lane, poisoned))
    }

    /// Runs `f` on a lane's generation and instance, under the lane's lock.
    fn with<R>(
        &self,
        f: impl FnOnce(&Generation, &mut Option<Live>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let mut lane = self.acquire();
        let result = self.serve(&mut lane, f);
        self.settle(&mut lane);
        result
    }

    /// Runs `f` on the newest generation, on a lane already held.
    fn serve<R>(
        &self,
        lane: &mut Lane,
        f: impl FnOnce(&Generation, &mut Option<Live>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        if lane.seen != self.publications.load(Ordering::Acquire) {
            self.catch_up(lane);
        }
        let Lane {
            generation, live, ..
        } = lane;
        match generation {
            Some(generation) => f(generation, live),
            None => Err(Error::Unavailable {
                interface: self.interface().to_string(),
                name: self.name.clone(),
            }),
        }
    }

    /// Before a lane is let go: if a reload came while it was held, its old
    /// instance goes now.
    fn settle(&self, lane: &mut Lane) {
        if lane.seen != self.publications.load(Ordering::Acquire) {
            self.catch_up(lane);
        }
    }

    /// Runs `f` on the published generation, without touching an instance.
    fn peek<R>(&self, f: impl FnOnce(&Generation) -> R) -> Option<R> {
        self.published.load().as_deref().map(f)
    }
}

/// A typed closure panicked mid-call and poisoned its lane: the instance it
/// ran in is discarded like a trapped one.
fn recover<'a>(
    lane: &'a Mutex<Lane>,
    poisoned: PoisonError<MutexGuard<'a, Lane>>,
) -> MutexGuard<'a, Lane> {
    let mut guard = poisoned.into_inner();
    guard.live = None;
    lane.clear_poison();
    guard
}

/// What a [`Registry::get`](crate::Registry::get) handle points at: the slot
/// that currently serves its request, re-pointed by the registry.
pub(crate) struct Binding {
    request: Request,
    slot: ArcSwapOption<Slot>,
}

impl Binding {
    pub(crate) fn new(request: Request) -> Self {
        Binding {
            request,
            slot: ArcSwapOption::empty(),
        }
    }

    pub(crate) fn request(&self) -> &Request {
        &self.request
    }

    pub(crate) fn point_at(&self, slot: Option<Arc<Slot>>) {
        self.slot.store(slot);
    }
}

/// A stable handle to an implementation. Cheap to clone, `Send + Sync`.
///
/// Calls go to whatever generation is behind the slot at the moment the call
/// starts: after a reload every handle already held reaches the new code.
/// While the slot is empty, calls fail with [`Error::Unavailable`].
///
/// ```no_run
/// # fn main() -> Result<(), hotslot::Error> {
/// use hotslot::{wasmtime::component::Val, Registry};
/// let registry = Registry::new()?;
/// let plugin = registry.load_file("plugins/greeter_a.wasm")?;
/// registry.add_implementation("demo:greeter/greet@1.0.0", "impl_1", &plugin)?;
/// let greet = registry.first_implementation("demo:greeter/greet@1.0.0")?;
/// let answer = greet.call("hello", &[Val::String("world".into())])?;
/// assert_eq!(answer, [Val::String("a: hello, world".into())]);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Handle {
    target: Target,
}

#[derive(Clone)]
enum Target {
    Slot(Arc<Slot>),
    Request(Arc<Binding>),
}

impl Handle {
    pub(crate) fn to_slot(slot: Arc<Slot>) -> Self {
        Handle {
            target: Target::Slot(slot),
        }
    }

    pub(crate) fn to_binding(binding: Arc<Binding>) -> Self {
        Handle {
            target: Target::Request(binding),
        }
    }

    /// Calls `function` with `args`, dynamically: the argument count and
    /// types are checked against the interface's WIT.
    pub fn call(&self, function: &str, args: &[Val]) -> Result<Vec<Val>, Error> {
        self.with_slot(|slot| slot.with(|generation, live| generation.call(live, function, args)))
    }

    /// Calls through typed bindings generated by `bindgen!` (see
    /// [`Bindings`]). The bindings are loaded once per generation.
    pub fn call_typed<B, R>(
        &self,
        call: impl FnOnce(&B, &mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> Result<R, Error>
    where
        B: Bindings,
    {
        self.with_slot(|slot| slot.with(|generation, live| generation.call_typed(live, call)))
    }

    /// Makes several calls back to back on one instance, holding it for the
    /// whole of `f`: a hot loop pays for the lock once instead of per call.
    /// Each call still goes to the newest generation (a reload between two
    /// calls is picked up by the second), but while `f` runs no other caller
    /// can use the instance it holds.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// # let registry = hotslot::Registry::new()?;
    /// use hotslot::wasmtime::component::Val;
    /// let math = registry.first_implementation("demo:calc/math@1")?;
    /// let total = math.batch(|calls| {
    ///     let mut total = 0;
    ///     for i in 0..1000 {
    ///         if let [Val::S32(n)] = calls.call("add", &[Val::S32(i), Val::S32(1)])?.as_slice() {
    ///             total += n;
    ///         }
    ///     }
    ///     Ok::<_, hotslot::Error>(total)
    /// })??;
    /// # Ok(()) }
    /// ```
    pub fn batch<R>(&self, f: impl FnOnce(&mut Batch<'_>) -> R) -> Result<R, Error> {
        self.with_slot(|slot| {
            let mut lane = slot.acquire();
            let result = f(&mut Batch { slot, lane: &mut lane });
            slot.settle(&mut lane);
            Ok(result)
        })
    }

    /// The interface (with the version its current implementation exports),
    /// or `None` while nothing serves this handle.
    pub fn interface(&self) -> Option<InterfaceName> {
        self.peek(|g| g.interface().clone())
    }

    /// The implementation's name (for a `get` handle, the one serving it now).
    pub fn name(&self) -> Option<String> {
        self.with_slot(|slot| Ok(slot.name().to_string())).ok()
    }

    /// The generation serving calls now; it grows with every reload.
    pub fn generation(&self) -> Option<u64> {
        self.peek(|g| g.number())
    }

    /// The interface export serving calls now, with its functions and types.
    pub fn exported(&self) -> Option<ExportedInterface> {
        self.peek(|g| g.exported().clone())
    }

    /// True if a call made now would reach an implementation.
    pub fn is_available(&self) -> bool {
        self.peek(|_| ()).is_some()
    }

    fn peek<R>(&self, f: impl FnOnce(&Generation) -> R) -> Option<R> {
        self.with_slot(|slot| Ok(slot.peek(f))).ok().flatten()
    }

    /// Runs `f` on the slot this handle reaches now.
    fn with_slot<R>(&self, f: impl FnOnce(&Slot) -> Result<R, Error>) -> Result<R, Error> {
        match &self.target {
            Target::Slot(slot) => f(slot),
            Target::Request(binding) => match &*binding.slot.load() {
                Some(slot) => f(slot),
                None => Err(Error::Unavailable {
                    interface: binding.request.to_string(),
                    name: "*".to_string(),
                }),
            },
        }
    }
}

/// Calls made through [`Handle::batch`]: one instance, held for the batch.
pub struct Batch<'a> {
    slot: &'a Slot,
    lane: &'a mut Lane,
}

impl Batch<'_> {
    /// Like [`Handle::call`], on the instance this batch holds.
    pub fn call(&mut self, function: &str, args: &[Val]) -> Result<Vec<Val>, Error> {
        self.slot
            .serve(self.lane, |generation, live| generation.call(live, function, args))
    }

    /// Like [`Handle::call_typed`], on the instance this batch holds.
    pub fn call_typed<B, R>(
        &mut self,
        call: impl FnOnce(&B, &mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> Result<R, Error>
    where
        B: Bindings,
    {
        self.slot
            .serve(self.lane, |generation, live| generation.call_typed(live, call))
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.target {
            Target::Slot(slot) => write!(f, "Handle({} `{}`)", slot.interface(), slot.name()),
            Target::Request(binding) => write!(f, "Handle(get {})", binding.request),
        }
    }
}
