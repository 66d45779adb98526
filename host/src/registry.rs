//! The registry: which plugins and implementations exist, in which order,
//! and the slots and handles callers reach them through.
//!
//! Named after the engine API registry hotslot comes from. A plugin is added
//! under a name, for every interface it exports ([`Registry::add_plugin`]) or
//! for one ([`Registry::add_implementation`]); adding again under the same
//! name puts the new version behind the existing slots, so handles already
//! given out reach the new code. A new version takes every slot of its name
//! in one step, or none.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use wasmtime::Engine;

use crate::contract;
use crate::engine::shared_engine;
use crate::error::Error;
use crate::generation::{Generation, Resident, Start, StartReason};
use crate::handle::Handle;
use crate::imports::ImportTable;
use crate::limits::Limits;
use crate::loader::{ExportedInterface, Loader, Plugin};
use crate::manifest::Grants;
use crate::metrics::{Metrics, FAULTS};
use crate::output::OutputBudget;
use crate::program::{NoLane, Program, Programs, Published, Route};
use crate::sandbox::{self, ImportCalls, ImportLink, PluginScope};
use crate::slot::{Preference, Selection, Slot};
use crate::source::{check_name, plugin_name, Source};
use crate::state::{Persist, PluginStore, StoredState};
use crate::subscribers::Subscribers;
use crate::sync::lock;
use crate::version::{InterfaceName, Line, Request};
use wasmtime::component::Val;

/// How many of a plugin's call deadlines a canary's whole replay may take
/// (`[reload] canary`): 20 s at the default deadline, however many calls.
const CANARY_DEADLINES: u32 = 4;

/// Something that names a request: a `&str` such as
/// `"demo:greeter/greet@1.0.0"`, a [`Request`] or an [`InterfaceName`].
///
/// ```no_run
/// # fn main() -> Result<(), hotslot::Error> {
/// # let registry = hotslot::Registry::new()?;
/// use hotslot::{InterfaceName, Request};
/// let by_text = registry.get("demo:calc/math@1")?;
/// let request: Request = "demo:calc/math@1".parse()?;
/// let by_request = registry.get(request)?;
/// let exported: InterfaceName = "demo:calc/math@1.2.0".parse()?;
/// let by_name = registry.get(exported)?;
/// # Ok(()) }
/// ```
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

impl IntoRequest for String {
    fn into_request(self) -> Result<Request, Error> {
        self.parse()
    }
}

impl IntoRequest for &InterfaceName {
    fn into_request(self) -> Result<Request, Error> {
        Ok(self.clone().into())
    }
}

impl IntoRequest for InterfaceName {
    fn into_request(self) -> Result<Request, Error> {
        Ok(self.into())
    }
}

/// A change in the registry, as sent to [`Registry::subscribe`]rs.
///
/// ```no_run
/// # fn main() -> Result<(), hotslot::Error> {
/// # let registry = hotslot::Registry::new()?;
/// use hotslot::RegistryEvent;
/// for change in registry.subscribe().iter() {
///     if let RegistryEvent::Replaced { interface, name, previous, generation } = change {
///         println!("{interface} `{name}`: {previous} -> {generation}");
///     }
/// }
/// # Ok(()) }
/// ```
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
///
/// ```no_run
/// # fn main() -> Result<(), hotslot::Error> {
/// # let registry = hotslot::Registry::new()?;
/// let waiting: Vec<String> = registry
///     .list()
///     .into_iter()
///     .filter(|i| i.imports.iter().any(|import| import.provider.is_none()))
///     .map(|i| i.name)
///     .collect();
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Implementation {
    /// The interface, with the version the implementation exports.
    pub interface: InterfaceName,
    /// The implementation's (plugin's) name.
    pub name: String,
    /// The generation serving calls.
    pub generation: u64,
    /// Where the component came from.
    pub origin: String,
    /// How each of its imports from other plugins stands: which plugin
    /// serves it (and its generation), or none yet (it is waiting).
    pub imports: Vec<ImportLink>,
}

/// What [`Registry::add_plugin`] (or [`Registry::add_file`]) registered.
///
/// ```no_run
/// # fn main() -> Result<(), hotslot::Error> {
/// # let registry = hotslot::Registry::new()?;
/// let registered = registry.add_file("plugins/calc.wasm")?;
/// match registered.previous {
///     Some(previous) => println!("`{}` reloaded: {previous} -> {}", registered.name, registered.generation),
///     None => println!("`{}` serves {} interfaces", registered.name, registered.interfaces.len()),
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registered {
    /// The plugin's name.
    pub name: String,
    /// The generation now serving every one of its interfaces.
    pub generation: u64,
    /// The generation it replaced, if the name served before.
    pub previous: Option<u64>,
    /// Every interface it serves, with the version it exports, in the
    /// component's order.
    pub interfaces: Vec<InterfaceName>,
}

/// The registry of implementations. Share it behind an `Arc`; every method
/// takes `&self`.
///
/// Handles outlive it: a plugin stays loaded while a handle reaches it,
/// directly or through the imports of one a handle reaches. Dropping the
/// registry stops every plugin nothing reaches at that moment (no handle,
/// no call in flight, no import of one reached; a `get` handle counts as
/// reaching every plugin it ever pointed at) and frees its instances,
/// those that import each other (or themselves) included. Plugins that
/// import each other and are still reached when the registry goes stay
/// loaded after the handle goes too: remove them
/// ([`Registry::remove_plugin`]) first if their instances must be freed.
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
    loader: Arc<Loader>,
    limits: Limits,
    /// Where manifests' directory grants must lie; `None`: beside the file.
    grant_root: Option<PathBuf>,
    /// Where persisted plugin state is kept, and its database once opened.
    state_dir: Option<PathBuf>,
    persist: Mutex<Option<Arc<Persist>>>,
    next_generation: AtomicU64,
    state: Mutex<State>,
    subscribers: Subscribers<RegistryEvent>,
}

/// See [`Registry::file_loader`].
pub(crate) struct FileLoader {
    loader: Arc<Loader>,
    grant_root: Option<PathBuf>,
    max_file_size: u64,
}

impl FileLoader {
    /// Reads a component file and its manifest, within the file size limit.
    pub(crate) fn read(&self, path: &Path) -> Result<Source, Error> {
        Source::read(path, self.max_file_size)
    }

    /// Loads what [`FileLoader::read`] read, telling whether the compile
    /// cache served the bytes.
    pub(crate) fn load_source(&self, source: &Source) -> Result<(Plugin, bool), Error> {
        self.loader.load_source(source, self.grant_root.as_deref())
    }
}

#[derive(Default)]
struct State {
    /// Every slot ever made, in the order of their programs, then of
    /// registration. Slots are never dropped: handles may point at them.
    slots: Vec<Arc<Slot>>,
    /// Every program ever made. A name usually has one; it has more when
    /// different plugins were added under it for different interfaces
    /// ([`Registry::add_implementation`]), each running on its own.
    programs: Vec<Arc<Program>>,
    /// What the handles given out by `get` reach, re-pointed on every change.
    selections: Vec<Weak<Selection>>,
    /// How many of `selections` were live when it was last swept.
    selections_swept: usize,
    /// Every program, for making room in a full instance pool.
    every_program: Arc<Programs>,
    /// Every plugin's host-kept state, by name: it outlives its programs.
    states: HashMap<String, Arc<PluginStore>>,
    /// Whether calls are counted for [`Registry::metrics`].
    counting: bool,
    /// Every dependent's imports, to check again when a provider changes.
    import_tables: Vec<Weak<ImportTable>>,
}

impl Registry {
    /// A registry on the process's shared engine, with default limits.
    ///
    /// ```
    /// let registry = hotslot::Registry::new()?;
    /// assert!(registry.list().is_empty());
    /// # Ok::<(), hotslot::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Engine`] if wasmtime cannot be set up.
    pub fn new() -> Result<Self, Error> {
        Self::with_engine(shared_engine()?, Limits::default())
    }

    /// A registry on `engine` (configure it like [`crate::engine::new_engine`]
    /// does), whose instances run under `limits`: manifests may lower them,
    /// never raise them.
    ///
    /// The process's first registry puts a filter in front of the panic
    /// hook in place (Rust's default, or the host's own): the few panics
    /// hotslot expects from the libraries it uses, and turns into errors
    /// (redb's on a damaged state database, tokio's refusing a wait where a
    /// synchronous call was made inside `block_on`), are logged at `debug`
    /// instead of printed as a crash would be. Every other panic reaches
    /// the hook. A host that sets a hook of its own after this replaces the
    /// filter.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hotslot::{engine, Limits, Registry};
    /// let limits = Limits {
    ///     timeout: Duration::from_millis(50),
    ///     ..Limits::default()
    /// };
    /// let registry = Registry::with_engine(engine::shared_engine()?, limits)?;
    /// assert_eq!(registry.limits().timeout, Duration::from_millis(50));
    /// # Ok::<(), hotslot::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Engine`] if WASI cannot be added to the linker.
    pub fn with_engine(engine: Engine, limits: Limits) -> Result<Self, Error> {
        crate::quiet_panics::filter_the_hook();
        Ok(Registry {
            loader: Arc::new(Loader::new(engine.clone(), sandbox::linker(&engine)?)),
            limits,
            grant_root: None,
            state_dir: None,
            persist: Mutex::new(None),
            next_generation: AtomicU64::new(1),
            state: Mutex::new(State {
                counting: true,
                ..State::default()
            }),
            subscribers: Subscribers::new("the registry's changes"),
        })
    }

    /// The same registry, accepting manifests (read by
    /// [`Registry::load_file`] and [`Registry::add_file`]) that grant
    /// directories anywhere inside `root`, rather than only inside the
    /// directory of their component.
    ///
    /// ```
    /// let registry = hotslot::Registry::new()?.with_grant_root("/srv/plugin-data");
    /// # Ok::<(), hotslot::Error>(())
    /// ```
    pub fn with_grant_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.grant_root = Some(root.into());
        self
    }

    /// The same registry, counting nothing for [`Registry::metrics`]: what
    /// the benchmarks measure metrics' cost against. Metrics are cheap; most
    /// hosts keep them.
    ///
    /// ```
    /// let registry = hotslot::Registry::new()?.without_metrics();
    /// # Ok::<(), hotslot::Error>(())
    /// ```
    pub fn without_metrics(mut self) -> Self {
        self.state
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .counting = false;
        self
    }

    /// The same registry, keeping the state of plugins whose manifest says
    /// `[state] persist = true` in a database in `dir` (made if missing), so
    /// that it outlives the host. Without a state directory such plugins are
    /// refused.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let registry = hotslot::Registry::new()?.with_state_dir(dir.path());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// The wasmtime engine plugins are compiled for. A plugin that asks for
    /// the other compiler, or whose memory starts with a page of data or
    /// more, is compiled for a twin of it (same settings, a pool of its own);
    /// [`Plugin::component`](crate::Plugin::component)'s engine says which.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use hotslot::wasmtime::component::Component;
    /// let registry = hotslot::Registry::new()?;
    /// // Compiled with the settings the registry's plugins are compiled with.
    /// let component = Component::from_file(registry.engine(), "plugins/calc.wasm")?;
    /// # Ok(()) }
    /// ```
    pub fn engine(&self) -> &Engine {
        self.loader.engine()
    }

    /// The limits instances run under.
    ///
    /// ```
    /// let registry = hotslot::Registry::new()?;
    /// println!("calls stop after {:?}", registry.limits().timeout);
    /// # Ok::<(), hotslot::Error>(())
    /// ```
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Reads and compiles a component file, granted what the manifest beside
    /// it (`NAME.toml` for `NAME.wasm`) grants, as `watch` does: directories
    /// only inside the grant root ([`Registry::with_grant_root`]; by default
    /// the file's own directory), limits only below the registry's. Bytes
    /// compiled recently (by content hash) are not compiled again.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// let registry = hotslot::Registry::new()?;
    /// let calc = registry.load_file("plugins/calc.wasm")?; // and plugins/calc.toml, if there
    /// for export in calc.exports() {
    ///     println!("{} exports {}", calc.origin(), export.name());
    /// }
    /// registry.add_plugin("calc", &calc)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read (or is not a regular file),
    /// [`Error::NotAComponent`] and [`Error::Link`] for what it holds,
    /// [`Error::Manifest`] for a manifest that does not parse.
    pub fn load_file(&self, path: impl AsRef<Path>) -> Result<Plugin, Error> {
        let files = self.file_loader();
        Ok(files.load_source(&files.read(path.as_ref())?)?.0)
    }

    /// Compiles a component from bytes, with no grants; `origin` names it in
    /// errors.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let registry = hotslot::Registry::new()?;
    /// let bytes = std::fs::read("plugins/calc.wasm")?; // or from the network, a database...
    /// let calc = registry.load_bytes("calc from the store", &bytes)?;
    /// registry.add_plugin("calc", &calc)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::NotAComponent`] and [`Error::Link`].
    pub fn load_bytes(&self, origin: &str, bytes: &[u8]) -> Result<Plugin, Error> {
        Ok(self.loader.load_bytes(origin, bytes)?.0)
    }

    /// Takes `name`'s place in the order of lookups now, before its plugin
    /// loads, so that plugins loaded together keep the order they were
    /// listed in however their loads finish.
    pub(crate) fn reserve(&self, name: &str) {
        let mut state = self.lock();
        if !state.programs.iter().any(|p| p.name() == name) {
            state.new_program(name);
        }
    }

    /// The place of `name`'s first program in the order of lookups.
    pub(crate) fn rank(&self, name: &str) -> Option<usize> {
        let state = self.lock();
        let program = state.programs.iter().find(|p| p.name() == name)?;
        Some(program.rank())
    }

    /// What reads and compiles files for this registry (its
    /// [`Registry::load_file`]), without keeping the registry alive: a
    /// watcher's loaders compile with it,
    /// and a compile still running when the watcher and the registry are
    /// dropped holds neither (their database included).
    pub(crate) fn file_loader(&self) -> FileLoader {
        FileLoader {
            loader: self.loader.clone(),
            grant_root: self.grant_root.clone(),
            max_file_size: self.limits.max_file_size,
        }
    }

    /// Loads a component file with its manifest ([`Registry::load_file`])
    /// and adds it under its file stem for every interface it exports
    /// ([`Registry::add_plugin`]): what `watch` does with each file.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// let registry = hotslot::Registry::new()?;
    /// let added = registry.add_file("plugins/calc.wasm")?;
    /// assert_eq!(added.name, "calc");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// Those of both, and [`Error::BadName`] for a file stem that is not
    /// UTF-8, holds control characters, white space, `::` or `#`, or ends
    /// in `:` (see [`plugin_name`](crate::plugin_name)).
    pub fn add_file(&self, path: impl AsRef<Path>) -> Result<Registered, Error> {
        let path = path.as_ref();
        let name = plugin_name(path)?;
        // A file that does not load is a refused reload of its name, as
        // `watch` counts it.
        let plugin = self
            .load_file(path)
            .inspect_err(|_| self.count_refused(&name))?;
        self.add_plugin(&name, &plugin)
    }

    /// Adds `plugin` under `name` for every interface it exports, all served
    /// by the same instances. If `name` serves already, the new version
    /// replaces the old behind every slot in one step, or nothing changes: it
    /// must export (in the same version line) every interface served now,
    /// and its instance must start.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// let registry = hotslot::Registry::new()?;
    /// let calc = registry.load_file("plugins/calc.wasm")?;
    /// let added = registry.add_plugin("calc", &calc)?;
    /// println!("{} serves {:?} as generation {}", added.name, added.interfaces, added.generation);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::NotExported`] for a component that exports no interface,
    /// [`Error::WouldDrop`] when a served interface is missing,
    /// [`Error::NameTaken`] when another plugin serves one of its interfaces
    /// under the same name,
    /// [`Error::Instantiate`] when its instance cannot start, and
    /// [`Error::BadName`].
    pub fn add_plugin(&self, name: &str, plugin: &Plugin) -> Result<Registered, Error> {
        // Every refusal of a known name counts, whatever refused it; not
        // an instance busy for now (this content was not refused).
        self.add_whole_plugin(name, plugin).inspect_err(|e| {
            if !matches!(e, Error::Busy { .. } | Error::Reentered { .. }) {
                self.count_refused(name)
            }
        })
    }

    /// [`Registry::add_plugin`], but for counting its refusals.
    fn add_whole_plugin(&self, name: &str, plugin: &Plugin) -> Result<Registered, Error> {
        check_name(name).map_err(|reason| Error::BadName {
            name: name.to_string(),
            reason,
        })?;
        if plugin.exports().iter().all(|e| e.is_contract()) {
            return Err(Error::NotExported {
                interface: "any interface".into(),
                origin: plugin.origin().to_string(),
                exported: plugin.exports_in_words(),
            });
        }
        let mut wanted: Vec<(Line, usize)> = Vec::new();
        let offered = plugin.exports().iter().enumerate();
        for (export, exported) in offered.filter(|(_, e)| !e.is_contract()) {
            let line = exported.name().line();
            if !wanted.iter().any(|(l, _)| *l == line) {
                wanted.push((line.clone(), best_in_line(plugin, &line).unwrap_or(export)));
            }
        }
        let program = self.lock().plugin_program(name, plugin, &wanted)?;
        let _changing = lock(&program.changing);
        let current = program.current();
        let published = current
            .as_ref()
            .map_or(Ok(()), |current| {
                keeps_every_line(current, plugin, name, |line| {
                    wanted.iter().any(|(l, _)| l == line)
                })
            })
            .and_then(|()| self.publish_generation(&program, plugin, wanted))?;
        Ok(Registered {
            name: name.to_string(),
            generation: published.generation.number(),
            previous: current.map(|c| c.generation.number()),
            interfaces: published
                .routes
                .iter()
                .map(|r| published.generation.exported(r.export).name().clone())
                .collect(),
        })
    }

    /// Forgets what the plugin `name` served before it was removed (from a
    /// version line it does not serve now), which a version added under
    /// the name later would have to keep (see [`Error::Contract`]): the
    /// next one is checked against nothing there, and becomes the
    /// contract. For a name whose callers are known to expect other
    /// functions (a wrong version served by mistake, an interface
    /// redesigned at the same version while developing). What the name
    /// serves now stays its contract: remove it first. True if there was
    /// something to forget.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// let registry = hotslot::Registry::new()?;
    /// registry.add_file("plugins/calc.wasm")?;
    /// registry.remove_plugin("calc")?;
    /// registry.forget_contract("calc");
    /// registry.add_file("plugins/calc.wasm")?; // whatever its functions are now
    /// # Ok(()) }
    /// ```
    pub fn forget_contract(&self, name: &str) -> bool {
        let programs = self.lock().programs_named(name);
        let mut forgot = false;
        for program in programs {
            // Not while a version is being published (it reads and notes
            // what is served).
            let _changing = lock(&program.changing);
            let serving: Vec<Line> = program
                .current()
                .map(|p| p.routes.iter().map(|r| r.line.clone()).collect())
                .unwrap_or_default();
            forgot |= program.forget_served(|line| !serving.contains(line));
        }
        forgot
    }

    /// Removes the plugin `name` from every slot it serves. Its slots stay:
    /// calls through handles already held fail with [`Error::Unavailable`]
    /// until it is added again. Its contract stays too: a version added
    /// under the name later must keep the functions it served (see
    /// [`Registry::forget_contract`]).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// let registry = hotslot::Registry::new()?;
    /// registry.add_file("plugins/calc.wasm")?;
    /// let math = registry.implementation("demo:calc/math@1", "calc")?;
    /// registry.remove_plugin("calc")?;
    /// assert!(!math.is_available()); // until a plugin named `calc` is added again
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::NoImplementation`] if nothing by that name was ever added.
    pub fn remove_plugin(&self, name: &str) -> Result<(), Error> {
        let programs = self.lock().programs_named(name);
        if programs.is_empty() {
            return Err(Error::NoImplementation {
                request: format!("a plugin named `{name}`"),
            });
        }
        for program in programs {
            let _changing = lock(&program.changing);
            self.republish(&program, None);
        }
        Ok(())
    }

    /// Adds `plugin` as the implementation `name` of `interface`
    /// (`ns:pkg/iface@x.y.z`), and returns its generation number.
    ///
    /// The plugin must export the interface at a compatible version. If
    /// `name` already serves this interface (in the same version line), the
    /// new version goes behind its slots and every handle already held
    /// reaches it; calls in flight finish on the instance they started on.
    /// One plugin's interfaces share its instances: adding the same plugin
    /// under the same name for another interface joins the running instance,
    /// and a different plugin under that name replaces it for every
    /// interface it serves (so it must export them all).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// let registry = hotslot::Registry::new()?;
    /// let v1 = registry.load_file("plugins/greeter_a.wasm")?;
    /// registry.add_implementation("demo:greeter/greet@1.0.0", "greeter", &v1)?;
    /// let greet = registry.implementation("demo:greeter/greet@1", "greeter")?;
    /// // A hot reload: the handle already held reaches the new code.
    /// let v2 = registry.load_file("plugins/greeter_b.wasm")?;
    /// let generation = registry.add_implementation("demo:greeter/greet@1.0.0", "greeter", &v2)?;
    /// assert_eq!(greet.generation(), Some(generation));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::NotExported`], [`Error::WouldDrop`], [`Error::Instantiate`],
    /// [`Error::BadInterfaceName`] and [`Error::BadName`].
    pub fn add_implementation(
        &self,
        interface: impl IntoRequest,
        name: &str,
        plugin: &Plugin,
    ) -> Result<u64, Error> {
        let request = interface.into_request()?;
        check_name(name).map_err(|reason| Error::BadName {
            name: name.to_string(),
            reason,
        })?;
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
        let line = plugin.exports()[export].name().line();
        let program = self.lock().implementation_program(name, plugin, &line);
        let _changing = lock(&program.changing);
        let current = program.current();
        if let Some(current) = &current {
            let joins = current.generation.plugin().same_as(plugin)
                && current.routes.iter().all(|r| r.line != line);
            if joins {
                // A line the name served before (and was removed from) is
                // held to what it served there, as a new version would be.
                keeps_contract(
                    None,
                    &program.served(),
                    plugin,
                    name,
                    &[(line.clone(), export)],
                )
                .inspect_err(|_| program.count_reload(false))?;
                program.note_served(&line, plugin.exports()[export].clone());
                let mut routes = current.routes.clone();
                let generation = current.generation.clone();
                let mut state = self.lock();
                let slot = state.slot_for(&program, generation.exported(export).name());
                routes.push(Route {
                    slot: slot.id(),
                    line,
                    export,
                });
                drop(state);
                self.republish(&program, Some(Published { generation, routes }));
                return Ok(current.generation.number());
            }
        }
        // A new generation: it serves this interface and every one served now.
        let mut wanted = vec![(line.clone(), export)];
        if let Some(current) = &current {
            keeps_every_line(current, plugin, name, |l| *l == line)
                .inspect_err(|_| program.count_reload(false))?;
            for route in current.routes.iter().filter(|r| r.line != line) {
                let best = best_in_line(plugin, &route.line).expect("checked just above");
                wanted.push((route.line.clone(), best));
            }
        }
        let published = self
            .publish_generation(&program, plugin, wanted)
            .inspect_err(|_| program.count_reload(false))?;
        Ok(published.generation.number())
    }

    /// Removes the implementation `name` of `interface`. Its slot stays:
    /// calls through handles already held fail with [`Error::Unavailable`]
    /// until an implementation is added under that name again. The plugin's
    /// other interfaces keep serving, on the same instances.
    ///
    /// `interface` picks the version line (`@1.0.0` reaches `1.x`); without a
    /// version, every line of the interface loses `name`.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// let registry = hotslot::Registry::new()?;
    /// let calc = registry.load_file("plugins/calc.wasm")?;
    /// registry.add_plugin("calc", &calc)?; // it serves demo:calc/math and demo:greeter/greet
    /// registry.remove_implementation("demo:greeter/greet", "calc")?;
    /// assert!(registry.first_implementation("demo:calc/math@1").is_ok());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::NoImplementation`] if nothing by that name was registered
    /// for the interface.
    pub fn remove_implementation(
        &self,
        interface: impl IntoRequest,
        name: &str,
    ) -> Result<(), Error> {
        let request = interface.into_request()?;
        let unknown = || Error::NoImplementation {
            request: format!("{request} named `{name}`"),
        };
        let mut programs: Vec<Arc<Program>> = Vec::new();
        for slot in self.lock().slots.iter() {
            let program = slot.program();
            if slot.name() == name
                && slot.interface().in_line_of(&request)
                && !programs.iter().any(|p| Arc::ptr_eq(p, program))
            {
                programs.push(program.clone());
            }
        }
        if programs.is_empty() {
            return Err(unknown());
        }
        for program in programs {
            let _changing = lock(&program.changing);
            let Some(current) = program.current() else {
                continue;
            };
            let generation = current.generation.clone();
            let routes: Vec<Route> = current
                .routes
                .iter()
                .filter(|r| !generation.exported(r.export).name().in_line_of(&request))
                .cloned()
                .collect();
            if routes.len() != current.routes.len() {
                let next = (!routes.is_empty()).then_some(Published { generation, routes });
                self.republish(&program, next);
            }
        }
        Ok(())
    }

    /// A handle to the first implementation (in registration order) that
    /// serves `request`.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// use hotslot::wasmtime::component::Val;
    /// let registry = hotslot::Registry::new()?;
    /// registry.add_file("plugins/calc.wasm")?;
    /// let math = registry.first_implementation("demo:calc/math@1")?; // any 1.x
    /// let sum = math.call("add", &[Val::S32(40), Val::S32(2)])?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::NoImplementation`] when none serves it now.
    pub fn first_implementation(&self, request: impl IntoRequest) -> Result<Handle, Error> {
        let request = request.into_request()?;
        let first = self.lock().serving(&request).next();
        first
            .map(Handle::to_slot)
            .ok_or_else(|| Error::NoImplementation {
                request: request.to_string(),
            })
    }

    /// A handle to the implementation `name` of `request`: the slot of that
    /// plugin serving the request, or, while it serves nothing there, the
    /// slot it had in that version line.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// let registry = hotslot::Registry::new()?;
    /// registry.add_file("plugins/greeter_b.wasm")?;
    /// let b = registry.implementation("demo:greeter/greet@1", "greeter_b")?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::NoImplementation`] when `name` never served the interface.
    pub fn implementation(&self, request: impl IntoRequest, name: &str) -> Result<Handle, Error> {
        let request = request.into_request()?;
        let state = self.lock();
        let named = || state.slots.iter().filter(|s| s.name() == name);
        let found = named()
            .find(|s| s.serves(&request))
            .or_else(|| named().find(|s| s.interface().in_line_of(&request)));
        found
            .cloned()
            .map(Handle::to_slot)
            .ok_or_else(|| Error::NoImplementation {
                request: format!("{request} named `{name}`"),
            })
    }

    /// Handles to every implementation that serves `request`, in
    /// registration order.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// use hotslot::wasmtime::component::Val;
    /// let registry = hotslot::Registry::new()?;
    /// registry.add_file("plugins/greeter_a.wasm")?;
    /// registry.add_file("plugins/greeter_b.wasm")?;
    /// for greeter in registry.implementations("demo:greeter/greet@1")? {
    ///     let answer = greeter.call("hello", &[Val::String("you".into())])?;
    ///     println!("{:?}: {answer:?}", greeter.name());
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::BadInterfaceName`] for a request that does not parse.
    pub fn implementations(&self, request: impl IntoRequest) -> Result<Vec<Handle>, Error> {
        let request = request.into_request()?;
        let state = self.lock();
        let found = state.serving(&request).map(Handle::to_slot).collect();
        Ok(found)
    }

    /// A handle to the one implementation that serves `request`.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// let registry = hotslot::Registry::new()?;
    /// registry.add_file("plugins/calc.wasm")?;
    /// match registry.single_implementation("demo:calc/math@1") {
    ///     Ok(math) => println!("one calculator: {:?}", math.name()),
    ///     Err(hotslot::Error::NotSingle { count, .. }) => println!("{count} calculators"),
    ///     Err(other) => return Err(other),
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::NotSingle`] if there are none or several.
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
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// let registry = hotslot::Registry::new()?;
    /// let greet = registry.get("demo:greeter/greet@1")?; // nothing serves it yet
    /// assert!(!greet.is_available());
    /// registry.add_file("plugins/greeter_a.wasm")?;
    /// assert_eq!(greet.name().as_deref(), Some("greeter_a"));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::BadInterfaceName`] for a request that does not parse.
    pub fn get(&self, request: impl IntoRequest) -> Result<Handle, Error> {
        let selection = self.select(request.into_request()?, None, None);
        Ok(Handle::to_selection(selection))
    }

    /// The host-kept state (`hotslot:plugin/state`) of the plugin `name`:
    /// read it, or clear it. `None` if no plugin by that name was added
    /// (a [`Watcher`](crate::Watcher) gives each file's name an empty one
    /// as soon as it lists the file, before it loads).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// let registry = hotslot::Registry::new()?;
    /// registry.add_file("plugins/counter_state.wasm")?;
    /// if let Some(state) = registry.state("counter_state") {
    ///     for (key, size) in state.sizes() {
    ///         println!("{key}: {size} bytes");
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn state(&self, name: &str) -> Option<StoredState> {
        let state = self.lock();
        state.states.get(name).cloned().map(StoredState::new)
    }

    /// Every implementation currently loaded, in registration order.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// let registry = hotslot::Registry::new()?;
    /// registry.add_file("plugins/banner.wasm")?;
    /// for i in registry.list() {
    ///     println!("{} `{}` generation {} from {}", i.interface, i.name, i.generation, i.origin);
    ///     for import in &i.imports {
    ///         println!("  imports {import:?}");
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn list(&self) -> Vec<Implementation> {
        self.list_with_plugins()
            .into_iter()
            .map(|(implementation, _)| implementation)
            .collect()
    }

    /// [`Registry::list`], each with the plugin serving it: one pass, for
    /// a page that shows every row's compiler every second.
    pub(crate) fn list_with_plugins(&self) -> Vec<(Implementation, Plugin)> {
        self.lock()
            .slots
            .iter()
            .filter_map(|slot| {
                slot.peek(|generation, export| {
                    let implementation = Implementation {
                        interface: generation.exported(export).name().clone(),
                        name: slot.name().to_string(),
                        generation: generation.number(),
                        origin: generation.plugin().origin().to_string(),
                        imports: generation.import_links(),
                    };
                    (implementation, generation.plugin().clone())
                })
            })
            .collect()
    }

    /// What every implementation loaded now has done: calls, failures by
    /// fault kind, latency, reloads, instances, memory and state (see
    /// [`Metrics`]), in registration order.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// let registry = hotslot::Registry::new()?;
    /// for m in registry.metrics() {
    ///     if m.failed_calls() > 0 {
    ///         println!("{} `{}`: {} of {} calls failed", m.interface, m.plugin, m.failed_calls(), m.calls);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn metrics(&self) -> Vec<Metrics> {
        use std::sync::atomic::Ordering::Relaxed;
        let slots: Vec<Arc<Slot>> = self.lock().slots.clone();
        slots
            .iter()
            .filter_map(|slot| {
                let (interface, generation) =
                    slot.peek(|g, export| (g.exported(export).name().clone(), g.number()))?;
                let program = slot.program();
                let totals = program.totals(slot.id());
                let (reloads, rejected) = program.reloads();
                let scope = program.scope();
                Some(Metrics {
                    interface,
                    plugin: slot.name().to_string(),
                    generation,
                    calls: totals.calls,
                    failed: FAULTS.iter().copied().zip(totals.failed).collect(),
                    latency_p50: totals.quantile(0.5),
                    latency_p99: totals.quantile(0.99),
                    latency_max: (totals.max_ns > 0)
                        .then(|| std::time::Duration::from_nanos(totals.max_ns)),
                    latency_buckets: totals.buckets(),
                    latency_sum: std::time::Duration::from_nanos(totals.sum_ns),
                    reloads,
                    rejected_reloads: rejected,
                    instances: scope.usage.instances.load(Relaxed),
                    memory_bytes: scope.usage.memory.load(Relaxed),
                    state_bytes: scope.state.bytes() as u64,
                })
            })
            .collect()
    }

    /// Counts a refused load or reload of the plugin `name`, if it is known.
    /// (The watcher counts the files it refuses before they reach
    /// [`Registry::add_plugin`], which counts its own.)
    pub(crate) fn count_refused(&self, name: &str) {
        let programs = self.lock().programs_named(name);
        if let Some(program) = programs.first() {
            program.count_reload(false);
        }
    }

    /// A channel of every change from now on. Drop the receiver to
    /// unsubscribe. It holds up to 1,024 changes unread; a subscriber that
    /// falls that far behind misses newer ones until it reads (the log says
    /// so), so one that stops reading costs bounded memory and never holds
    /// up the registry.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// let registry = hotslot::Registry::new()?;
    /// let changes = registry.subscribe();
    /// std::thread::spawn(move || {
    ///     for change in changes.iter() {
    ///         println!("{change}"); // e.g. "replaced demo:calc/math@1.0.0 `calc` (generation 1 -> 2)"
    ///     }
    /// });
    /// registry.add_file("plugins/calc.wasm")?;
    /// # Ok(()) }
    /// ```
    pub fn subscribe(&self) -> Receiver<RegistryEvent> {
        self.subscribers.subscribe()
    }

    /// Instantiates `plugin` as a new generation of `program` and publishes
    /// it for `wanted` (line, export) pairs. Called with `program.changing`
    /// held: instantiating outside the registry's lock keeps a slow start-up
    /// from stalling the registry, and a failing one never reaches a slot.
    fn publish_generation(
        &self,
        program: &Arc<Program>,
        plugin: &Plugin,
        wanted: Vec<(Line, usize)>,
    ) -> Result<Arc<Published>, Error> {
        let current = program.current();
        keeps_contract(
            current.as_deref(),
            &program.served(),
            plugin,
            program.name(),
            &wanted,
        )?;
        self.prepare_state(program, plugin)?;
        self.canary(program, plugin)?;
        // In-memory state moves from the outgoing instance to the incoming
        // one when both sides offer it: calls wait (bounded) meanwhile.
        let contract = plugin.contract();
        let migrating = contract.restore.is_some()
            && current
                .as_ref()
                .is_some_and(|c| c.generation.plugin().contract().snapshot.is_some());
        if contract.snapshot.is_some() && plugin.grants().instance_count() > 1 {
            return Err(Error::Instantiate {
                interface: "hotslot:plugin/migrate".into(),
                name: program.name().to_string(),
                origin: plugin.origin().to_string(),
                reason: format!(
                    "a plugin that migrates its memory runs one instance, not {}: \
                     there would be no one memory to hand over (keep such state \
                     in hotslot:plugin/state instead)",
                    plugin.grants().instance_count()
                ),
            });
        }
        let mut held = match migrating {
            true => Some(program.acquire().map_err(|why| no_lane(program, why))?),
            false => None,
        };
        let snapshot = match &mut held {
            // A fault in `snapshot` ends the outgoing instance, and its
            // memory with it: refusing the new version would keep none of
            // it, and would refuse every version after (the fix included).
            // The new one starts as if the outgoing had no instance.
            Some(held) => program.snapshot(held).unwrap_or_else(|failure| {
                tracing::warn!(
                    "{failure}: the outgoing instance's memory is lost with it; {} \
                     starts without it",
                    plugin.origin()
                );
                None
            }),
            None => None,
        };
        let reason = match program.scope().state.started() {
            true => StartReason::Reload,
            false => StartReason::Fresh,
        };
        let imports = self.bind_imports(program.name(), plugin);
        let number = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let generation = Arc::new(Generation::new(
            number,
            program.shared_name(),
            plugin.clone(),
            &self.limits,
            program.scope().clone(),
            imports.clone().map(|t| t as Arc<dyn ImportCalls>),
            Start {
                reason,
                snapshot: snapshot.as_deref(),
            },
        )?);
        // What its start-up (`restore`, `on-start`) changed in the state is
        // made now, all or none; from here on nothing refuses it.
        generation.commit_state()?;
        let wanted_served = wanted.clone();
        let routes = {
            let mut state = self.lock();
            wanted
                .into_iter()
                .map(|(line, export)| {
                    let slot = state.slot_for(program, generation.exported(export).name());
                    Route {
                        slot: slot.id(),
                        line,
                        export,
                    }
                })
                .collect()
        };
        for (line, export) in &wanted_served {
            program.note_served(line, generation.exported(*export).clone());
        }
        let published = Arc::new(Published { generation, routes });
        self.republish_arc(program, Some(published.clone()));
        if plugin.grants().canary == 0 {
            // Kept for a canary by an older version, and never replayed on
            // this one: a later canary must not replay calls it never
            // answered.
            *lock(&program.scope().recent) = Default::default();
        } else {
            let lines: Vec<Line> = published.routes.iter().map(|r| r.line.clone()).collect();
            lock(&program.scope().recent).keep_lines(&lines);
        }
        if current.is_some() {
            program.count_reload(true);
        }
        // Letting the lane go frees the outgoing instance.
        drop(held);
        Ok(published)
    }

    /// A selection of the first slot serving `request` (of the plugin
    /// `name`, if given), re-pointed on every change from now on.
    fn select(
        &self,
        request: Request,
        name: Option<String>,
        prefers: Option<Preference>,
    ) -> Arc<Selection> {
        let selection = Arc::new(Selection::new(request, name, prefers));
        let mut state = self.lock();
        state.point(&selection);
        // Handles dropped are forgotten at the next change, and here, a
        // whole sweep each time the list has doubled: a host that asks for
        // a handle per request keeps it to about twice the live ones.
        if state.selections.len() >= state.selections_swept.max(32) * 2 {
            state.selections.retain(|s| s.strong_count() > 0);
            state.selections_swept = state.selections.len();
        }
        state.selections.push(Arc::downgrade(&selection));
        selection
    }

    /// `plugin`'s imports from the registry, each bound to the plugin its
    /// manifest names for it or else to the first serving it.
    fn bind_imports(&self, dependent: &str, plugin: &Plugin) -> Option<Arc<ImportTable>> {
        if plugin.imports().is_empty() {
            return None;
        }
        let preferred = |import: &InterfaceName| {
            plugin
                .grants()
                .imports
                .iter()
                .find(|(interface, _)| {
                    interface
                        .parse::<Request>()
                        .is_ok_and(|wanted| import.in_line_of(&wanted))
                })
                .map(|(_, name)| name.clone())
        };
        let selections = plugin
            .imports()
            .iter()
            .map(|import| {
                // Of the providers serving the interface, the first whose
                // functions have the types this plugin expects (else the
                // first, whose calls then fail saying how it differs).
                let wanted = import.clone();
                let fits: Preference = Box::new(move |slot: &Slot| {
                    slot.peek(|generation, export| {
                        crate::imports::fits(&wanted, generation, export)
                    })
                    .unwrap_or(false)
                });
                self.select(
                    import.name().clone().into(),
                    preferred(import.name()),
                    Some(fits),
                )
            })
            .collect();
        let table = Arc::new(ImportTable::new(
            dependent,
            plugin.imports().to_vec(),
            selections,
        ));
        self.lock().import_tables.push(Arc::downgrade(&table));
        for link in table.links() {
            match (&link.provider, &link.problem) {
                (None, _) => tracing::info!(
                    "`{dependent}` waits for {} serving {}",
                    link.named
                        .as_ref()
                        .map_or("a plugin".into(), |name| format!(
                            "`{name}` (its [imports])"
                        )),
                    link.interface
                ),
                (Some((provider, _)), Some(problem)) => tracing::warn!(
                    "`{dependent}` cannot use `{provider}` for {}: {problem}",
                    link.interface
                ),
                _ => {}
            }
        }
        Some(table)
    }

    /// Replays the calls `program` kept for a canary (`[reload] canary`) on
    /// a separate instance of `plugin`, granted no directories and no
    /// environment and with state of its own: a fault in any refuses the
    /// new version. Answers are not compared; new code may answer otherwise.
    /// The new version's manifest says how many of each interface's calls
    /// (none: no canary), as it says everything else the new version is
    /// granted (of the calls kept: a version taken without a canary drops
    /// them). The whole replay, the probe's start-up included, takes at
    /// most [`CANARY_DEADLINES`] of the plugin's call deadline: no call is begun that could end past that,
    /// and those left are not replayed (the log says so). The reload waits
    /// for the replay, and so would the plugin's removal.
    fn canary(&self, program: &Program, plugin: &Plugin) -> Result<(), Error> {
        let wanted = plugin.grants().canary;
        let recorded: Vec<(InterfaceName, String, Vec<Val>)> = {
            let recent = lock(&program.scope().recent);
            recent
                .last(wanted)
                .into_iter()
                .map(|c| (c.interface.clone(), c.function.clone(), c.args.clone()))
                .collect()
        };
        if recorded.is_empty() {
            return Ok(());
        }
        // From before the probe starts: its start-up counts too.
        let started = std::time::Instant::now();
        let deadline = plugin.grants().limits(&self.limits).timeout;
        let budget = deadline.saturating_mul(CANARY_DEADLINES);
        let name = program.name();
        let bare = plugin.clone().with_grants(Grants {
            dirs: Vec::new(),
            env: Vec::new(),
            ..plugin.grants().clone()
        });
        let scope = PluginScope {
            output: OutputBudget::new(),
            state: Arc::new(PluginStore::new(name)),
            reclaim: program.scope().reclaim.clone(),
            usage: Arc::default(),
            recent: Arc::default(),
        };
        let imports = self.bind_imports(name, plugin);
        let start = Start {
            reason: StartReason::Reload,
            snapshot: None,
        };
        let probe = Generation::new(
            0,
            program.shared_name(),
            bare,
            &self.limits,
            scope,
            imports.map(|t| t as Arc<dyn ImportCalls>),
            start,
        )?;
        let mut resident = Resident::default();
        for (replayed, (interface, function, args)) in recorded.iter().enumerate() {
            // No call is begun that its deadline could carry past the budget.
            if started.elapsed().saturating_add(deadline) > budget {
                tracing::warn!(
                    "canary of {}: {replayed} of {} recent calls replayed, the rest \
                     not: the replay may take {budget:?} ({CANARY_DEADLINES} call deadlines)",
                    plugin.origin(),
                    recorded.len()
                );
                break;
            }
            let Some(export) = plugin.position_serving(&interface.clone().into()) else {
                continue;
            };
            match probe
                .call(&mut resident, export, function, args, false)
                .map_err(|e| *e)
            {
                Err(Error::Call { fault, reason, .. }) => {
                    let shown: Vec<String> = args
                        .iter()
                        .map(|a| wasmtime::component::wasm_wave::to_string(a).unwrap_or_default())
                        .collect();
                    return Err(Error::Canary {
                        name: name.to_string(),
                        origin: plugin.origin().to_string(),
                        call: format!("{interface}#{function}({})", shown.join(", ")),
                        fault,
                        reason,
                    });
                }
                Err(Error::Instantiate { reason, .. }) => {
                    return Err(Error::Canary {
                        name: name.to_string(),
                        origin: plugin.origin().to_string(),
                        call: format!("{interface}#{function}"),
                        fault: crate::error::Fault::Host,
                        reason,
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Sets `program`'s state up as `plugin`'s manifest asks, before any
    /// instance of it starts: its quota, and its values from disk.
    fn prepare_state(&self, program: &Program, plugin: &Plugin) -> Result<(), Error> {
        let capped = plugin.grants().capped(&self.limits);
        if !capped.is_empty() {
            tracing::warn!(
                "{}: its manifest asks for more than the host allows, so the host's \
                 limits apply: {}",
                plugin.origin(),
                capped.join(", ")
            );
        }
        let state = &program.scope().state;
        state.set_quota(plugin.grants().limits(&self.limits).max_state);
        if plugin.grants().persist_state {
            state.persist_in(&self.persist(plugin)?)?;
        }
        Ok(())
    }

    /// The state database, opened at first use.
    fn persist(&self, plugin: &Plugin) -> Result<Arc<Persist>, Error> {
        let mut persist = lock(&self.persist);
        if let Some(persist) = &*persist {
            return Ok(persist.clone());
        }
        // The manifest that asked for it, when the plugin has one on disk.
        let manifest = crate::manifest::manifest_path(std::path::Path::new(plugin.origin()));
        let dir = self.state_dir.as_ref().ok_or_else(|| Error::Manifest {
            file: match manifest.is_file() {
                true => manifest.display().to_string(),
                false => plugin.origin().to_string(),
            },
            reason: "`[state] persist = true` needs a state directory \
                     (`--state-dir`, or `Registry::with_state_dir`)"
                .into(),
        })?;
        let opened = Arc::new(Persist::open(dir)?);
        *persist = Some(opened.clone());
        Ok(opened)
    }

    fn republish(&self, program: &Program, next: Option<Published>) {
        self.republish_arc(program, next.map(Arc::new));
    }

    /// Publishes `next` for `program`, re-points `get` handles and tells
    /// subscribers what changed.
    fn republish_arc(&self, program: &Program, next: Option<Arc<Published>>) {
        let (events, tables) = {
            let mut state = self.lock();
            let previous = program.publish(next.clone());
            // Events are worded only for someone to read: a log, or a
            // subscriber. Asked after publishing, so that whoever subscribed
            // before this change took effect hears of it.
            let told =
                tracing::event_enabled!(tracing::Level::INFO) || !self.subscribers.is_empty();
            state.repoint_selections();
            state.import_tables.retain(|t| t.strong_count() > 0);
            let tables: Vec<Arc<ImportTable>> = state
                .import_tables
                .iter()
                .filter_map(Weak::upgrade)
                .collect();
            let events = match told {
                true => changes(program.name(), previous.as_deref(), next.as_deref()),
                false => Vec::new(),
            };
            (events, tables)
        };
        events.into_iter().for_each(|event| self.publish(event));
        // A provider changed: the dependents bound to it are checked against
        // it now, and told in the log if it no longer fits.
        for table in tables {
            for link in table.links() {
                let provider = link.provider.as_ref().map(|(name, _)| name.as_str());
                if let (Some(problem), Some(name)) = (&link.problem, provider) {
                    if name == program.name() {
                        tracing::warn!(
                            "`{}` cannot use `{name}` for {}: {problem}",
                            table.dependent(),
                            link.interface
                        );
                    }
                }
            }
        }
    }

    fn publish(&self, event: RegistryEvent) {
        tracing::info!("{event}");
        self.subscribers.publish(&event);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

impl Drop for Registry {
    /// Plugins that import each other hold each other (through their import
    /// tables), and only the registry would ever have let go of them. Those
    /// nothing outside can reach any more are stopped here, so that their
    /// instances go back to the pool; the rest go on serving the handles
    /// that reach them.
    fn drop(&mut self) {
        let state = match self.state.get_mut() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        for program in state.unreachable() {
            let _changing = lock(&program.changing);
            program.publish(None);
        }
    }
}

impl State {
    /// The programs nothing outside the registry reaches: no handle holds
    /// one of their slots (or a `get` selection that kept one), no chain of
    /// calls has one pinned, and no import of a reached plugin leads to
    /// them. What is held outside is told by reference counts: any count
    /// not accounted for by the registry's own lists and the import tables
    /// is a handle's or a call's. (Nothing can make a new handle to what no
    /// handle reaches; a count raised meanwhile, by a call in flight making
    /// room in a full instance pool, only keeps a program loaded.)
    fn unreachable(&self) -> Vec<Arc<Program>> {
        let tables: Vec<Arc<ImportTable>> = self
            .import_tables
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        let mut in_tables: HashMap<*const Selection, usize> = HashMap::new();
        for selection in tables.iter().flat_map(|t| t.selections()) {
            *in_tables.entry(Arc::as_ptr(selection)).or_default() += 1;
        }
        let mut held: Vec<*const Program> = Vec::new();
        let mut kept: HashMap<*const Slot, usize> = HashMap::new();
        for selection in self.selections.iter().filter_map(Weak::upgrade) {
            // One count is the upgrade just made.
            let inside = 1 + in_tables.get(&Arc::as_ptr(&selection)).unwrap_or(&0);
            let outside = Arc::strong_count(&selection) > inside;
            selection.each_kept(|slot| {
                *kept.entry(Arc::as_ptr(slot)).or_default() += 1;
                if outside {
                    held.push(Arc::as_ptr(slot.program()));
                }
            });
        }
        for slot in &self.slots {
            let inside = 1 + kept.get(&Arc::as_ptr(slot)).unwrap_or(&0);
            if Arc::strong_count(slot) > inside {
                held.push(Arc::as_ptr(slot.program()));
            }
        }
        for program in &self.programs {
            let own_slots = self
                .slots
                .iter()
                .filter(|s| Arc::ptr_eq(s.program(), program));
            if Arc::strong_count(program) > 1 + own_slots.count() {
                held.push(Arc::as_ptr(program));
            }
        }
        // What the held ones reach through their imports (by the
        // dependent's name: every table of that name, old generations'
        // included, is followed).
        let mut reached: Vec<*const Program> = Vec::new();
        while let Some(program) = held.pop() {
            if reached.contains(&program) {
                continue;
            }
            reached.push(program);
            let Some(name) = self.programs.iter().find(|p| Arc::as_ptr(p) == program) else {
                continue;
            };
            let name = name.name();
            for table in tables.iter().filter(|t| t.dependent() == name) {
                for selection in table.selections() {
                    selection.each_kept(|slot| held.push(Arc::as_ptr(slot.program())));
                }
            }
        }
        self.programs
            .iter()
            .filter(|p| !reached.contains(&Arc::as_ptr(p)))
            .cloned()
            .collect()
    }

    /// The host-kept state of the plugin `name`, made if new.
    fn state_of(&mut self, name: &str) -> Arc<PluginStore> {
        self.states
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(PluginStore::new(name)))
            .clone()
    }

    fn programs_named(&self, name: &str) -> Vec<Arc<Program>> {
        self.programs
            .iter()
            .filter(|p| p.name() == name)
            .cloned()
            .collect()
    }

    fn new_program(&mut self, name: &str) -> Arc<Program> {
        let every_program = self.every_program.clone();
        let scope = PluginScope {
            output: OutputBudget::new(),
            state: self.state_of(name),
            reclaim: Arc::new(move || every_program.free_idle()),
            usage: Arc::default(),
            recent: Arc::default(),
        };
        let program = Arc::new(Program::new(
            name,
            self.programs.len(),
            scope,
            self.counting,
        ));
        self.every_program.add(&program);
        self.programs.push(program.clone());
        program
    }

    /// The program a whole plugin is added to under `name`: the name's
    /// first program (made if new). Refused when a line it would serve
    /// belongs to another program of that name.
    fn plugin_program(
        &mut self,
        name: &str,
        plugin: &Plugin,
        wanted: &[(Line, usize)],
    ) -> Result<Arc<Program>, Error> {
        let program = match self.programs.iter().find(|p| p.name() == name) {
            Some(program) => program.clone(),
            None => return Ok(self.new_program(name)),
        };
        for (line, export) in wanted {
            let taken = self.slots.iter().find(|s| {
                s.name() == name && s.line() == line && !Arc::ptr_eq(s.program(), &program)
            });
            if let Some(slot) = taken {
                let other = slot.peek(|g, _| g.plugin().origin().to_string());
                return Err(Error::NameTaken {
                    interface: plugin.exports()[*export].name().to_string(),
                    name: name.to_string(),
                    origin: plugin.origin().to_string(),
                    other: other.unwrap_or_else(|| "none now".into()),
                });
            }
        }
        Ok(program)
    }

    /// The program `plugin` is added to as the implementation `name` of
    /// `line`: the one that has that slot; else one of that name running the
    /// same plugin, to share its instances; else a new one.
    fn implementation_program(&mut self, name: &str, plugin: &Plugin, line: &Line) -> Arc<Program> {
        if let Some(slot) = self
            .slots
            .iter()
            .find(|s| s.name() == name && s.line() == line)
        {
            return slot.program().clone();
        }
        let running_it = self.programs.iter().find(|p| {
            p.name() == name
                && p.peek(|published| published.generation.plugin().same_as(plugin))
                    .unwrap_or(false)
        });
        match running_it {
            Some(program) => program.clone(),
            None => self.new_program(name),
        }
    }

    /// The slot of `program` in `interface`'s version line, made if new.
    fn slot_for(&mut self, program: &Arc<Program>, interface: &InterfaceName) -> Arc<Slot> {
        if let Some(slot) = self
            .slots
            .iter()
            .find(|s| Arc::ptr_eq(s.program(), program) && interface.is_in(s.line()))
        {
            return slot.clone();
        }
        let id = self.slots.len() as u64;
        let slot = Arc::new(Slot::new(id, interface.clone(), program.clone()));
        // Lookups go in program order: a plugin added (or reserved) earlier
        // comes first, whenever its slots were made.
        let place = self
            .slots
            .iter()
            .position(|s| s.program().rank() > program.rank())
            .unwrap_or(self.slots.len());
        self.slots.insert(place, slot.clone());
        slot
    }

    /// Points `selection` at the slot it chooses.
    fn point(&self, selection: &Selection) {
        selection.point_at(selection.choose(&self.slots).cloned());
    }

    /// Slots with an implementation that serves `request`, in order.
    fn serving<'a>(&'a self, request: &'a Request) -> impl Iterator<Item = Arc<Slot>> + 'a {
        self.slots
            .iter()
            .filter(|slot| slot.serves(request))
            .cloned()
    }

    /// Points every live `get` handle at the first slot serving its request,
    /// and forgets the handles that were dropped.
    fn repoint_selections(&mut self) {
        let selections: Vec<Arc<Selection>> =
            self.selections.iter().filter_map(Weak::upgrade).collect();
        for selection in &selections {
            self.point(selection);
        }
        self.selections = selections.iter().map(Arc::downgrade).collect();
    }
}

/// The export of `plugin` that serves `line`: the highest version in it.
fn best_in_line(plugin: &Plugin, line: &Line) -> Option<usize> {
    let exports = plugin.exports();
    (0..exports.len())
        .filter(|&i| exports[i].name().is_in(line))
        .max_by(|&a, &b| {
            exports[a]
                .name()
                .version()
                .cmp(&exports[b].name().version())
        })
}

/// Fails unless a new version of `name` keeps every line `current` serves
/// (apart from those `exempt` says it takes care of).
fn keeps_every_line(
    current: &Published,
    plugin: &Plugin,
    name: &str,
    exempt: impl Fn(&Line) -> bool,
) -> Result<(), Error> {
    for route in &current.routes {
        if !exempt(&route.line) && best_in_line(plugin, &route.line).is_none() {
            return Err(Error::WouldDrop {
                interface: current.generation.exported(route.export).name().to_string(),
                name: name.to_string(),
                origin: plugin.origin().to_string(),
            });
        }
    }
    Ok(())
}

/// Fails unless `plugin`, for each line in `wanted` that the plugin serves
/// now (`current`) or has `served` before a removal, keeps every function
/// as it was served last.
fn keeps_contract(
    current: Option<&Published>,
    served: &[(Line, ExportedInterface)],
    plugin: &Plugin,
    name: &str,
    wanted: &[(Line, usize)],
) -> Result<(), Error> {
    // The same component again keeps every function, by definition.
    if current.is_some_and(|c| c.generation.plugin().content_hash() == plugin.content_hash()) {
        return Ok(());
    }
    let serving = |line: &Line| {
        let current = current?;
        let route = current.routes.iter().find(|r| r.line == *line)?;
        Some(current.generation.exported(route.export))
    };
    let mut differences = Vec::new();
    for (line, export) in wanted {
        let old = serving(line).or_else(|| served.iter().find(|(l, _)| l == line).map(|(_, e)| e));
        if let Some(old) = old {
            differences.extend(contract::compare(old, &plugin.exports()[*export]));
        }
    }
    if differences.is_empty() {
        return Ok(());
    }
    Err(Error::Contract {
        name: name.to_string(),
        origin: plugin.origin().to_string(),
        differences,
    })
}

/// The events that moving `name` from `before` to `after` makes, slot by slot.
fn changes(
    name: &str,
    before: Option<&Published>,
    after: Option<&Published>,
) -> Vec<RegistryEvent> {
    let mut events = Vec::new();
    fn routes(p: Option<&Published>) -> &[Route] {
        p.map_or(&[], |p| p.routes.as_slice())
    }
    let (old_routes, new_routes) = (routes(before), routes(after));
    if let Some(after) = after {
        let generation = after.generation.number();
        for route in new_routes {
            let interface = after.generation.exported(route.export).name().clone();
            let name = name.to_string();
            match before.filter(|b| b.export_for(route.slot).is_some()) {
                None => events.push(RegistryEvent::Added {
                    interface,
                    name,
                    generation,
                }),
                Some(before) if before.generation.number() != generation => {
                    events.push(RegistryEvent::Replaced {
                        interface,
                        name,
                        generation,
                        previous: before.generation.number(),
                    })
                }
                Some(_) => {}
            }
        }
    }
    if let Some(before) = before {
        for route in old_routes
            .iter()
            .filter(|r| !new_routes.iter().any(|n| n.slot == r.slot))
        {
            events.push(RegistryEvent::Removed {
                interface: before.generation.exported(route.export).name().clone(),
                name: name.to_string(),
                generation: before.generation.number(),
            });
        }
    }
    events
}

/// Words why no lane of `program` could be had for a reload.
fn no_lane(program: &Program, why: NoLane) -> Error {
    let interface = "every interface (for a reload)".to_string();
    let name = program.name().to_string();
    match why {
        NoLane::Reentered { instances } => Error::Reentered {
            interface,
            name,
            instances,
        },
        NoLane::Busy { waited } => Error::Busy {
            interface,
            name,
            waited_ms: waited.as_millis().try_into().unwrap_or(u64::MAX),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_handles_dropped_are_forgotten_without_a_change() {
        let registry = Registry::new().unwrap();
        let kept = registry.get("demo:greeter/greet@1").unwrap();
        for _ in 0..10_000 {
            drop(registry.get("demo:greeter/greet@1").unwrap());
        }
        let remembered = registry.lock().selections.len();
        assert!(remembered <= 64, "{remembered} selections remembered");
        drop(kept);
    }
}
