//! Handles: what callers hold. A [`Handle`] points at a slot, or, when it
//! came from [`Registry::get`](crate::Registry::get), at whichever slot serves
//! its request now: the registry re-points it as implementations come and go.
//! Calls go dynamic (`Val`s, by function name) or typed (through `bindgen!`
//! output, via [`Bindings`]).

use std::sync::Arc;

use wasmtime::component::Val;
use wasmtime::Store;

use crate::admission::NotRun;
use crate::bindings::Bindings;
use crate::error::{Error, Failed};
use crate::generation::Generation;
use crate::loader::{ExportedInterface, Plugin};
use crate::program::HeldLane;
use crate::sandbox::PluginState;
use crate::slot::{Selection, Slot};
use crate::version::InterfaceName;

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
    Selection(Arc<Selection>),
}

impl Handle {
    pub(crate) fn to_slot(slot: Arc<Slot>) -> Self {
        Handle {
            target: Target::Slot(slot),
        }
    }

    pub(crate) fn to_selection(selection: Arc<Selection>) -> Self {
        Handle {
            target: Target::Selection(selection),
        }
    }

    /// Calls `function` with `args`, dynamically: the argument count and
    /// types are checked against the interface's WIT. It blocks its thread
    /// for the call: in async code, prefer [`Handle::call_async`]. Made
    /// there anyway, on a multi-threaded runtime's thread, the call of a
    /// plugin granted files or HTTP runs in place (`block_in_place`) with
    /// wasmtime-wasi's runtime current; on a current-thread runtime or in
    /// a `LocalSet`, such I/O fails the call, saying to use `call_async`.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// # let registry = hotslot::Registry::new()?;
    /// use hotslot::{wasmtime::component::Val, Error};
    /// let greet = registry.first_implementation("demo:greeter/greet@1")?;
    /// match greet.call("hello", &[Val::String("you".into())]) {
    ///     Ok(answer) => println!("{answer:?}"),
    ///     // The plugin trapped, ran past its deadline or hit a limit: this call
    ///     // failed, and the next one gets a fresh instance.
    ///     Err(Error::Call { function, fault, reason, .. }) => eprintln!("{function}: {fault}: {reason}"),
    ///     Err(other) => return Err(other),
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Unavailable`] while nothing serves the handle;
    /// [`Error::NoSuchFunction`] and [`Error::BadArguments`] for a call that
    /// does not fit the interface, and for a function that takes or gives
    /// a resource handle (the next call may reach another instance: call it
    /// in a [`Handle::batch`] or with [`Handle::call_typed`]);
    /// [`Error::Call`] when the call failed in
    /// the plugin (the instance is replaced); [`Error::Instantiate`] when no
    /// fresh instance could be made; [`Error::Reentered`] and
    /// [`Error::Busy`] when no instance could be had.
    pub fn call(&self, function: &str, args: &[Val]) -> Result<Vec<Val>, Error> {
        unbox(self.with_slot(|slot| {
            slot.with(|generation, export, live| {
                generation.call(live, export, function, args, false)
            })
        }))
    }

    /// Like [`Handle::call`], answering into `results`, which must hold as
    /// many values as the function returns (their contents are replaced):
    /// a hot loop of dynamic calls allocates nothing for its answers.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// # let registry = hotslot::Registry::new()?;
    /// use hotslot::wasmtime::component::Val;
    /// let math = registry.first_implementation("demo:calc/math@1")?;
    /// let mut sum = [Val::S32(0)];
    /// math.call_into("add", &[Val::S32(40), Val::S32(2)], &mut sum)?;
    /// assert_eq!(sum, [Val::S32(42)]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Handle::call`]; [`Error::BadArguments`] also when `results`
    /// does not hold as many values as the function returns.
    pub fn call_into(
        &self,
        function: &str,
        args: &[Val],
        results: &mut [Val],
    ) -> Result<(), Error> {
        unbox(self.with_slot(|slot| {
            slot.with(|generation, export, live| {
                generation.call_into(live, export, function, args, results)
            })
        }))
    }

    /// Calls through typed bindings generated by `bindgen!` (see
    /// [`Bindings`]). The bindings are loaded once per instance.
    ///
    /// ```
    /// mod calc {
    ///     hotslot::bindgen!(Calculator, {
    ///         inline: "
    ///             package demo:calc@1.0.0;
    ///             interface math { add: func(a: s32, b: s32) -> s32; }
    ///             world calculator { export math; }
    ///         ",
    ///     });
    /// }
    /// fn total(math: &hotslot::Handle) -> Result<i32, hotslot::Error> {
    ///     math.call_typed(|c: &calc::Calculator, store| c.demo_calc_math().call_add(store, 40, 2))
    /// }
    /// ```
    ///
    /// # Errors
    /// As [`Handle::call`], and [`Error::Bindings`] when the bindings do not
    /// fit the plugin's exports.
    pub fn call_typed<B, R>(
        &self,
        call: impl FnOnce(&B, &mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> Result<R, Error>
    where
        B: Bindings,
    {
        unbox(self.with_slot(|slot| {
            slot.with(|generation, export, live| generation.call_typed(live, export, call))
        }))
    }

    /// Like [`Handle::call`], for async hosts: the call runs on the
    /// caller's tokio runtime's blocking pool, so no runtime worker waits for a plugin
    /// (one that spins until its deadline included), and the synchronous
    /// path is untouched. A plugin's async calls queue (one queue per
    /// runtime) for as many tasks on the pool as it has instances, each
    /// making the next call as soon as it is done with one; a queued call
    /// is a future holding no thread. One still queued when the plugin's
    /// deadline has passed is not made, and answers [`Error::Busy`] then,
    /// as a synchronous call that waited as long for an instance does; once
    /// started, it is a synchronous call (which waits for an instance a
    /// synchronous caller holds, at most the deadline again).
    /// Call it from within a tokio runtime, timers or not, or from any
    /// other executor (off tokio, the call is made on the blocking pool of
    /// a small runtime hotslot starts for such callers): the plugin's own
    /// waits and I/O (printing, sleeping, files, HTTP) run on
    /// wasmtime-wasi's runtime, as for a synchronous call made on a plain
    /// thread (which is also the runtime current while the call runs: a
    /// `tokio::spawn` in a `call_typed_async` closure lands there). Dropped
    /// before the blocking pool has started it (a request timed out), the
    /// call is never made; once started, it runs to its end.
    ///
    /// ```no_run
    /// # async fn f(handle: hotslot::Handle) -> Result<(), hotslot::Error> {
    /// use hotslot::wasmtime::component::Val;
    /// let answer = handle.call_async("hello", &[Val::String("you".into())]).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Handle::call`]; [`Error::Call`] with [`Fault::Host`](crate::Fault)
    /// if the blocking task could not run.
    pub async fn call_async(&self, function: &str, args: &[Val]) -> Result<Vec<Val>, Error> {
        let (handle, name, args) = (self.clone(), function.to_string(), args.to_vec());
        self.on_blocking_pool(function, move || handle.call(&name, &args))
            .await
    }

    /// Like [`Handle::call_typed`], for async hosts (see
    /// [`Handle::call_async`]).
    ///
    /// ```
    /// mod calc {
    ///     hotslot::bindgen!(Calculator, {
    ///         inline: "
    ///             package demo:calc@1.0.0;
    ///             interface math { add: func(a: s32, b: s32) -> s32; }
    ///             world calculator { export math; }
    ///         ",
    ///     });
    /// }
    /// async fn total(math: &hotslot::Handle) -> Result<i32, hotslot::Error> {
    ///     math.call_typed_async(|c: &calc::Calculator, store| c.demo_calc_math().call_add(store, 40, 2))
    ///         .await
    /// }
    /// ```
    ///
    /// # Errors
    /// As [`Handle::call_typed`].
    pub async fn call_typed_async<B, R>(
        &self,
        call: impl FnOnce(&B, &mut Store<PluginState>) -> wasmtime::Result<R> + Send + 'static,
    ) -> Result<R, Error>
    where
        B: Bindings,
        R: Send + 'static,
    {
        let handle = self.clone();
        self.on_blocking_pool("a typed call", move || handle.call_typed(call))
            .await
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
    ///
    /// # Errors
    /// [`Error::Unavailable`] for a `get` handle that nothing serves, and
    /// [`Error::Reentered`] or [`Error::Busy`] when no instance could be had.
    pub fn batch<R>(&self, f: impl FnOnce(&mut Batch<'_>) -> R) -> Result<R, Error> {
        unbox(self.with_slot(|slot| {
            let held = slot.acquire()?;
            Ok(f(&mut Batch { slot, held }))
        }))
    }

    /// The interface (with the version its current implementation exports),
    /// or `None` while nothing serves this handle.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// # let registry = hotslot::Registry::new()?;
    /// let math = registry.first_implementation("demo:calc/math@1")?;
    /// if let Some(interface) = math.interface() {
    ///     println!("served as {interface}"); // e.g. demo:calc/math@1.2.0
    /// }
    /// # Ok(()) }
    /// ```
    pub fn interface(&self) -> Option<InterfaceName> {
        self.peek(|g, export| g.exported(export).name().clone())
    }

    /// The implementation's name (for a `get` handle, the one serving it now).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// # let registry = hotslot::Registry::new()?;
    /// let greet = registry.get("demo:greeter/greet@1")?;
    /// println!("served by {}", greet.name().unwrap_or_else(|| "nobody".into()));
    /// # Ok(()) }
    /// ```
    pub fn name(&self) -> Option<String> {
        self.with_slot(|slot| Ok(slot.name().to_string())).ok()
    }

    /// The generation serving calls now; it grows with every reload.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// # let registry = hotslot::Registry::new()?;
    /// let math = registry.first_implementation("demo:calc/math@1")?;
    /// let before = math.generation();
    /// registry.add_file("plugins/calc.wasm")?; // a reload
    /// assert_ne!(math.generation(), before);
    /// # Ok(()) }
    /// ```
    pub fn generation(&self) -> Option<u64> {
        self.peek(|g, _| g.number())
    }

    /// The plugin serving calls now: its file, its compiler, everything it
    /// exports. `None` while nothing serves this handle.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// let registry = hotslot::Registry::new()?;
    /// registry.add_file("plugins/calc.wasm")?;
    /// let math = registry.first_implementation("demo:calc/math@1")?;
    /// if let Some(plugin) = math.plugin() {
    ///     println!("{} compiled by {}", plugin.origin(), plugin.compiler());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn plugin(&self) -> Option<Plugin> {
        self.peek(|g, _| g.plugin().clone())
    }

    /// The interface export serving calls now, with its functions and types.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// # let registry = hotslot::Registry::new()?;
    /// let math = registry.first_implementation("demo:calc/math@1")?;
    /// if let Some(exported) = math.exported() {
    ///     for function in exported.functions() {
    ///         println!("{} takes {} values", function.name(), function.param_count());
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn exported(&self) -> Option<ExportedInterface> {
        self.peek(|g, export| g.exported(export).clone())
    }

    /// True if a call made now would reach an implementation.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// # let registry = hotslot::Registry::new()?;
    /// let greet = registry.get("demo:greeter/greet@1")?;
    /// if !greet.is_available() {
    ///     println!("no greeter loaded yet");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn is_available(&self) -> bool {
        self.peek(|_, _| ()).is_some()
    }

    /// Makes `call` on tokio's blocking pool through the queue of the
    /// plugin serving this handle now (see [`admission`](crate::admission)):
    /// not made if it waited the plugin's deadline there, or if the caller
    /// stopped waiting first; once started, it runs to its end. `function`
    /// names it in errors.
    async fn on_blocking_pool<R: Send + 'static>(
        &self,
        function: &str,
        call: impl FnOnce() -> Result<R, Error> + Send + 'static,
    ) -> Result<R, Error> {
        let slot = match &self.target {
            Target::Slot(slot) => slot.clone(),
            Target::Selection(selection) => selection
                .current()
                .ok_or_else(|| *nothing_serves(selection))?,
        };
        // Answered without a plugin: nothing to queue for, and no lane to
        // touch (one may be held by a call running on).
        let Some(patience) = slot.peek(|generation, _| generation.limits().timeout) else {
            return Err(*slot.unavailable());
        };
        let queue = slot.program().admission().clone();
        // The call's I/O (a request's connection, a file read) runs on
        // wasmtime-wasi's runtime, as a synchronous call's from a plain
        // thread does: not on the caller's, which may have no timers, or
        // shut down while a plugin's connection lives on.
        let call = move || crate::waits::with_io(call);
        match queue.run(patience, call).await {
            Ok(answer) => answer,
            Err(NotRun::Busy) => Err(*slot.busy(patience)),
            Err(NotRun::Lost) => Err(host_fault(
                &slot,
                function,
                "its task on the blocking pool ended without an answer \
                 (it panicked, or the runtime shut down)"
                    .into(),
            )),
            Err(NotRun::NoRuntime(why)) => Err(host_fault(
                &slot,
                function,
                format!("the caller is on no tokio runtime: {why}"),
            )),
        }
    }

    fn peek<R>(&self, f: impl FnOnce(&Generation, usize) -> R) -> Option<R> {
        self.with_slot(|slot| Ok(slot.peek(f))).ok().flatten()
    }

    /// Runs `f` on the slot this handle reaches now.
    #[inline]
    fn with_slot<R>(&self, f: impl FnOnce(&Slot) -> Result<R, Failed>) -> Result<R, Failed> {
        match &self.target {
            Target::Slot(slot) => f(slot),
            Target::Selection(selection) => match selection.slot() {
                Some(slot) => f(slot),
                None => Err(nothing_serves(selection)),
            },
        }
    }
}

/// An async call the host could not make or hear from.
#[cold]
fn host_fault(slot: &Slot, function: &str, reason: String) -> Error {
    Error::Call {
        interface: slot.interface().to_string(),
        name: slot.name().to_string(),
        function: function.to_string(),
        fault: crate::error::Fault::Host,
        reason,
    }
}

/// The error of a `get` handle that nothing serves now.
#[cold]
fn nothing_serves(selection: &Selection) -> Failed {
    Box::new(Error::Unavailable {
        interface: selection.request().to_string(),
        name: "*".to_string(),
    })
}

/// A call's error, unboxed at the edge of the library (see [`Failed`]).
#[inline]
fn unbox<R>(result: Result<R, Failed>) -> Result<R, Error> {
    result.map_err(|e| *e)
}

/// Calls made through [`Handle::batch`]: one instance, held for the batch.
///
/// ```no_run
/// # fn main() -> Result<(), hotslot::Error> {
/// # let registry = hotslot::Registry::new()?;
/// use hotslot::wasmtime::component::Val;
/// let math = registry.first_implementation("demo:calc/math@1")?;
/// let sums = math.batch(|calls| {
///     (0..3)
///         .map(|i| calls.call("add", &[Val::S32(i), Val::S32(i)]))
///         .collect::<Result<Vec<_>, _>>()
/// })??;
/// # Ok(()) }
/// ```
pub struct Batch<'a> {
    slot: &'a Slot,
    held: HeldLane<'a>,
}

impl Batch<'_> {
    /// Like [`Handle::call`], on the instance this batch holds; functions
    /// that take or give resource handles are called too: a handle one
    /// call answers can be given to the next, in the same batch. (It stays
    /// in the instance until the instance goes: nothing here drops it.)
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// # let registry = hotslot::Registry::new()?;
    /// use hotslot::wasmtime::component::Val;
    /// let math = registry.first_implementation("demo:calc/math@1")?;
    /// let sum = math.batch(|calls| calls.call("add", &[Val::S32(40), Val::S32(2)]))??;
    /// assert_eq!(sum, [Val::S32(42)]);
    /// # Ok(()) }
    /// ```
    pub fn call(&mut self, function: &str, args: &[Val]) -> Result<Vec<Val>, Error> {
        unbox(self.slot.serve(&mut self.held, |generation, export, live| {
            generation.call(live, export, function, args, true)
        }))
    }

    /// Like [`Handle::call_typed`], on the instance this batch holds.
    ///
    /// ```
    /// mod calc {
    ///     hotslot::bindgen!(Calculator, {
    ///         inline: "
    ///             package demo:calc@1.0.0;
    ///             interface math { add: func(a: s32, b: s32) -> s32; }
    ///             world calculator { export math; }
    ///         ",
    ///     });
    /// }
    /// fn sum_to(math: &hotslot::Handle, n: i32) -> Result<i32, hotslot::Error> {
    ///     math.batch(|calls| {
    ///         let mut total = 0;
    ///         for i in 0..n {
    ///             total = calls.call_typed(|c: &calc::Calculator, store| {
    ///                 c.demo_calc_math().call_add(store, total, i)
    ///             })?;
    ///         }
    ///         Ok(total)
    ///     })?
    /// }
    /// ```
    pub fn call_typed<B, R>(
        &mut self,
        call: impl FnOnce(&B, &mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> Result<R, Error>
    where
        B: Bindings,
    {
        unbox(self.slot.serve(&mut self.held, |generation, export, live| {
            generation.call_typed(live, export, call)
        }))
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.target {
            Target::Slot(slot) => write!(f, "Handle({} `{}`)", slot.interface(), slot.name()),
            Target::Selection(selection) => write!(f, "Handle(get {})", selection.request()),
        }
    }
}
