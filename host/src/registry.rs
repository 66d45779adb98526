//! The registry: which implementations exist, in which order, and the slots
//! and handles callers reach them through.
//!
//! Named after the engine API registry hotslot comes from. Implementations are
//! added under an interface and a name; adding again under the same pair (in
//! the same version line) puts the new instance behind the existing slot, so
//! handles already given out reach the new code.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use wasmtime::Engine;

use crate::engine::shared_engine;
use crate::error::Error;
use crate::generation::Generation;
use crate::handle::Handle;
use crate::loader::{Loader, Plugin};
use crate::sandbox::{self, Limits};
use crate::slot::{Binding, Slot};
use crate::sync::lock;
use crate::version::{InterfaceName, Request};

/// Something that names a request: a `&str` such as
/// `"demo:greeter/greet@1.0.0"`, a [`Request`] or an [`InterfaceName`].
pub trait IntoRequest {
    /// Parses or converts it.
    fn into_request(self) -> Result<Request, Error>;
}

impl IntoRequest for &str {
    fn into_request(self) -> Result<Request, Error> {
        self.parse()
    }
}

impl IntoRequest for &String {
    fn into_request(self) -> Result<Request, Error> {
        self.parse()
    }
}

impl IntoRequest for Request {
    fn into_request(self) -> Result<Request, Error> {
        Ok(self)
    }
}

impl IntoRequest for &Request {
    fn into_request(self) -> Result<Request, Error> {
        Ok(self.clone())
    }
}

impl IntoRequest for InterfaceName {
    fn into_request(self) -> Result<Request, Error> {
        Ok(self.into())
    }
}

/// A change in the registry, as sent to [`Registry::subscribe`]rs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistryEvent {
    /// An implementation was added to an empty (or new) slot.
    Added {
        /// The interface, with the version the implementation exports.
        interface: InterfaceName,
        /// The implementation's name.
        name: String,
        /// The generation now serving.
        generation: u64,
    },
    /// An implementation was replaced behind its slot.
    Replaced {
        /// The interface, with the version the new implementation exports.
        interface: InterfaceName,
        /// The implementation's name.
        name: String,
        /// The generation now serving.
        generation: u64,
        /// The generation it replaced.
        previous: u64,
    },
    /// An implementation was removed; its slot stays, empty.
    Removed {
        /// The interface, with the version the removed implementation exported.
        interface: InterfaceName,
        /// The implementation's name.
        name: String,
        /// The generation that was serving.
        generation: u64,
    },
}

impl std::fmt::Display for RegistryEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryEvent::Added {
                interface,
                name,
                generation,
            } => {
                write!(f, "added {interface} `{name}` (generation {generation})")
            }
            RegistryEvent::Replaced {
                interface,
                name,
                generation,
                previous,
            } => write!(
                f,
                "replaced {interface} `{name}` (generation {previous} -> {generation})"
            ),
            RegistryEvent::Removed {
                interface,
                name,
                generation,
            } => {
                write!(f, "removed {interface} `{name}` (generation {generation})")
            }
        }
    }
}

/// One registered implementation, as [`Registry::list`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Implementation {
    /// The interface, with the version the implementation exports.
    pub interface: InterfaceName,
    /// The implementation's name.
    pub name: String,
    /// The generation serving calls.
    pub generation: u64,
    /// Where the component came from.
    pub origin: String,
}

/// The registry of implementations. Share it behind an `Arc`; every method
/// takes `&self`.
///
/// ```no_run
/// # fn main() -> Result<(), hotslot::Error> {
/// use hotslot::Registry;
/// let registry = Registry::new()?;
/// let impl_a = registry.load_file("plugins/greeter_a.wasm")?;
/// let impl_b = registry.load_file("plugins/greeter_b.wasm")?;
///
/// registry.add_implementation("demo:greeter/greet@1.0.0", "impl_1", &impl_a)?;
/// let x = registry.first_implementation("demo:greeter/greet@1.0.0")?;
/// registry.remove_implementation("demo:greeter/greet@1.0.0", "impl_1")?;
/// registry.add_implementation("demo:greeter/greet@1.0.0", "impl_1", &impl_b)?;
/// // `x` now reaches impl_b.
/// # Ok(()) }
/// ```
pub struct Registry {
    loader: Loader,
    limits: Limits,
    next_generation: AtomicU64,
    state: Mutex<State>,
    subscribers: Mutex<Vec<Sender<RegistryEvent>>>,
}

#[derive(Default)]
struct State {
    /// Every slot ever made, in registration order. Slots are never dropped:
    /// handles may point at them.
    slots: Vec<Arc<Slot>>,
    /// The handles given out by `get`, re-pointed on every change.
    bindings: Vec<Weak<Binding>>,
}

impl Registry {
    /// A registry on the process's shared engine, with default limits.
    pub fn new() -> Result<Self, Error> {
        Self::with_engine(shared_engine()?, Limits::default())
    }

    /// A registry on `engine` (configure it like [`crate::engine::new_engine`]
    /// does), whose instances run under `limits`.
    pub fn with_engine(engine: Engine, limits: Limits) -> Result<Self, Error> {
        Ok(Registry {
            loader: Loader::new(engine.clone(), sandbox::linker(&engine)?),
            limits,
            next_generation: AtomicU64::new(1),
            state: Mutex::new(State::default()),
            subscribers: Mutex::new(Vec::new()),
        })
    }

    /// The wasmtime engine plugins are compiled for.
    pub fn engine(&self) -> &Engine {
        self.loader.engine()
    }

    /// Reads and compiles a component file. Bytes compiled recently (by
    /// content hash) are not compiled again.
    pub fn load_file(&self, path: impl AsRef<Path>) -> Result<Plugin, Error> {
        Ok(self.loader.load_file(path.as_ref())?.0)
    }

    /// Compiles a component from bytes; `origin` names it in errors.
    pub fn load_bytes(&self, origin: &str, bytes: &[u8]) -> Result<Plugin, Error> {
        Ok(self.loader.load_bytes(origin, bytes)?.0)
    }

    /// Like [`Registry::load_bytes`], also telling whether the compile cache
    /// served the bytes.
    pub(crate) fn load_bytes_cached(
        &self,
        origin: &str,
        bytes: &[u8],
    ) -> Result<(Plugin, bool), Error> {
        self.loader.load_bytes(origin, bytes)
    }

    /// Adds `plugin` as the implementation `name` of `interface`
    /// (`ns:pkg/iface@x.y.z`), and returns its generation number.
    ///
    /// The plugin must export the interface at a compatible version. If a slot
    /// for this name and interface (in the same version line) exists, the new
    /// instance goes behind it and every handle already held reaches it;
    /// calls in flight finish on the instance they started on.
    pub fn add_implementation(
        &self,
        interface: &str,
        name: &str,
        plugin: &Plugin,
    ) -> Result<u64, Error> {
        let request: Request = interface.parse()?;
        let export = plugin
            .position_serving(&request)
            .ok_or_else(|| Error::NotExported {
                interface: request.to_string(),
                origin: plugin.origin().to_string(),
                exported: plugin
                    .exports()
                    .iter()
                    .map(|e| e.name().to_string())
                    .collect(),
            })?;
        let number = self.next_generation.fetch_add(1, Ordering::Relaxed);
        // Instantiate before taking the lock: a slow start-up must not stall
        // the registry, and a failing one never reaches a slot.
        let generation = Arc::new(Generation::new(
            number,
            name,
            plugin.clone(),
            export,
            self.limits.clone(),
        )?);
        let exported = generation.interface().clone();
        let event = {
            let mut state = self.lock();
            let slot = state.slot_for(&exported, name);
            let previous = slot.replace(Some(generation));
            state.repoint_bindings();
            match previous {
                Some(previous) => RegistryEvent::Replaced {
                    interface: exported,
                    name: name.to_string(),
                    generation: number,
                    previous: previous.number(),
                },
                None => RegistryEvent::Added {
                    interface: exported,
                    name: name.to_string(),
                    generation: number,
                },
            }
        };
        self.publish(event);
        Ok(number)
    }

    /// Removes the implementation `name` of `interface`. Its slot stays:
    /// calls through handles already held fail with [`Error::Unavailable`]
    /// until an implementation is added under that name again.
    ///
    /// `interface` picks the version line (`@1.0.0` reaches `1.x`); without a
    /// version, every line of the interface loses `name`. Fails with
    /// [`Error::NoImplementation`] if nothing by that name was registered.
    pub fn remove_implementation(&self, interface: &str, name: &str) -> Result<(), Error> {
        let request: Request = interface.parse()?;
        let mut removed = Vec::new();
        let mut known = false;
        {
            let mut state = self.lock();
            for slot in &state.slots {
                if slot.name() != name || !same_line(&slot.interface(), &request) {
                    continue;
                }
                known = true;
                if let Some(old) = slot.replace(None) {
                    removed.push(RegistryEvent::Removed {
                        interface: old.interface().clone(),
                        name: name.to_string(),
                        generation: old.number(),
                    });
                }
            }
            state.repoint_bindings();
        }
        if !known {
            return Err(Error::NoImplementation {
                request: format!("{request} named `{name}`"),
            });
        }
        removed.into_iter().for_each(|event| self.publish(event));
        Ok(())
    }

    /// A handle to the first implementation (in registration order) that
    /// serves `request`.
    pub fn first_implementation(&self, request: impl IntoRequest) -> Result<Handle, Error> {
        let request = request.into_request()?;
        let first = self.lock().serving(&request).next();
        first
            .map(Handle::to_slot)
            .ok_or_else(|| Error::NoImplementation {
                request: request.to_string(),
            })
    }

    /// Handles to every implementation that serves `request`, in
    /// registration order.
    pub fn implementations(&self, request: impl IntoRequest) -> Result<Vec<Handle>, Error> {
        let request = request.into_request()?;
        let state = self.lock();
        let found = state.serving(&request).map(Handle::to_slot).collect();
        Ok(found)
    }

    /// A handle to the one implementation that serves `request`; an error if
    /// there are none or several.
    pub fn single_implementation(&self, request: impl IntoRequest) -> Result<Handle, Error> {
        let request = request.into_request()?;
        let mut found = self.implementations(&request)?;
        match found.len() {
            1 => Ok(found.remove(0)),
            count => Err(Error::NotSingle {
                request: request.to_string(),
                count,
            }),
        }
    }

    /// A handle that serves `request` through whichever implementation is
    /// first to serve it at the time of each call. It can be taken before any
    /// implementation exists, and starts working as soon as one is added.
    pub fn get(&self, request: impl IntoRequest) -> Result<Handle, Error> {
        let binding = Arc::new(Binding::new(request.into_request()?));
        let mut state = self.lock();
        binding.point_at(state.serving(binding.request()).next());
        state.bindings.push(Arc::downgrade(&binding));
        Ok(Handle::to_binding(binding))
    }

    /// Every implementation currently loaded, in registration order.
    pub fn list(&self) -> Vec<Implementation> {
        self.lock()
            .slots
            .iter()
            .filter_map(|slot| {
                let generation = slot.current()?;
                Some(Implementation {
                    interface: generation.interface().clone(),
                    name: slot.name().to_string(),
                    generation: generation.number(),
                    origin: generation.plugin().origin().to_string(),
                })
            })
            .collect()
    }

    /// A channel of every change from now on. Drop the receiver to
    /// unsubscribe.
    pub fn subscribe(&self) -> Receiver<RegistryEvent> {
        let (sender, receiver) = channel();
        lock(&self.subscribers).push(sender);
        receiver
    }

    fn publish(&self, event: RegistryEvent) {
        tracing::info!("{event}");
        lock(&self.subscribers).retain(|s| s.send(event.clone()).is_ok());
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

impl State {
    /// The slot for `name` in `interface`'s version line, made if new.
    fn slot_for(&mut self, interface: &InterfaceName, name: &str) -> Arc<Slot> {
        let line = interface.line();
        if let Some(slot) = self
            .slots
            .iter()
            .find(|s| s.name() == name && s.interface().line() == line)
        {
            return slot.clone();
        }
        let slot = Arc::new(Slot::new(name, interface.clone()));
        self.slots.push(slot.clone());
        slot
    }

    /// Slots with an implementation that serves `request`, in order.
    fn serving<'a>(&'a self, request: &'a Request) -> impl Iterator<Item = Arc<Slot>> + 'a {
        self.slots
            .iter()
            .filter(|slot| slot.current().is_some_and(|g| g.serves(request)))
            .cloned()
    }

    /// Points every live `get` handle at the first slot serving its request,
    /// and forgets the handles that were dropped.
    fn repoint_bindings(&mut self) {
        let bindings: Vec<Arc<Binding>> = self.bindings.iter().filter_map(Weak::upgrade).collect();
        for binding in &bindings {
            binding.point_at(self.serving(binding.request()).next());
        }
        self.bindings = bindings.iter().map(Arc::downgrade).collect();
    }
}

/// Whether a slot that last served `interface` is in the version line a
/// removal names (any line, when the removal gives no version).
fn same_line(interface: &InterfaceName, request: &Request) -> bool {
    let wanted = request.name();
    match wanted.version() {
        None => {
            interface.package() == wanted.package() && interface.interface() == wanted.interface()
        }
        Some(_) => interface.line() == wanted.line(),
    }
}
