//! Turning bytes into a [`Plugin`]: checking that they are a component,
//! compiling them, linking them against what the sandbox offers, and listing
//! the interfaces they export.
//!
//! A plugin is compiled once and can then serve any number of slots and
//! generations; each of those instantiates it afresh.

use std::collections::VecDeque;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{Component, ComponentExportIndex, InstancePre, Linker};
use wasmtime::Engine;

use crate::code_cache;
use crate::engine::{self, Compiler, EngineOptions, MemoryInit};
use crate::error::{reason, Error};
use crate::forwarders;
use crate::function_cache::{self, Reused};
use crate::manifest::{dir_of, Grants};
use crate::sandbox::{self, PluginState};
use crate::source::{check_header, Source};
use crate::sync::lock;
use crate::values;
use crate::version::{InterfaceName, Request};

/// A compiled, linked component, ready to be instantiated. Cheap to clone.
///
/// Made by [`Registry::load_file`](crate::Registry::load_file) or
/// [`Registry::load_bytes`](crate::Registry::load_bytes).
///
/// ```no_run
/// # fn main() -> Result<(), hotslot::Error> {
/// let registry = hotslot::Registry::new()?;
/// let plugin = registry.load_file("plugins/greeter_a.wasm")?;
/// for export in plugin.exports() {
///     println!("{} with {} functions", export.name(), export.functions().len());
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Plugin {
    origin: Arc<str>,
    compiled: Arc<Compiled>,
    grants: Arc<Grants>,
}

/// What compiling a component's bytes gives, shared by every plugin loaded
/// from the same bytes.
struct Compiled {
    pre: InstancePre<PluginState>,
    exports: Vec<ExportedInterface>,
    imports: Vec<ImportedInterface>,
    contract: Contract,
    hash: ContentHash,
    /// Every exported interface's name, for messages about the whole
    /// component: made once here, not at each instance.
    interfaces: String,
    /// The functions its core modules export under `interface#function`
    /// names: which function a trap's outermost frame entered, when the
    /// guest kept no name section.
    entries: Vec<CoreEntries>,
}

impl Compiled {
    /// Bytes of its compiled code image.
    fn code_bytes(&self) -> usize {
        let image = self.pre.component().image_range();
        image.end as usize - image.start as usize
    }
}

/// One core module of a component: the names it exports, in order (how its
/// `wasmtime::Module` is told from the others), and its functions exported
/// under `interface#function` names, by function index.
#[derive(Debug, Default, PartialEq)]
struct CoreEntries {
    exports: Vec<String>,
    entries: Vec<(u32, String)>,
}

impl CoreEntries {
    /// The `interface#function` name function `index` of `module` is
    /// exported under, if `module` is this one.
    fn entry(&self, module: &wasmtime::Module, index: u32) -> Option<&str> {
        let (_, name) = self.entries.iter().find(|(i, _)| *i == index)?;
        let same = module
            .exports()
            .map(|e| e.name())
            .eq(self.exports.iter().map(String::as_str));
        same.then_some(name.as_str())
    }
}

/// One interface a component imports from the registry: one that another
/// plugin serves (not WASI, not `hotslot:plugin`).
///
/// ```no_run
/// # fn main() -> Result<(), hotslot::Error> {
/// let registry = hotslot::Registry::new()?;
/// let banner = registry.load_file("plugins/banner.wasm")?;
/// for import in banner.imports() {
///     let functions: Vec<&str> = import.functions().iter().map(|f| f.name()).collect();
///     println!("needs {} ({})", import.name(), functions.join(", "));
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ImportedInterface {
    name: InterfaceName,
    /// The import's name exactly as the component writes it.
    written: String,
    functions: Vec<ImportedFunction>,
}

/// One function of an interface a component imports.
///
/// ```no_run
/// # fn main() -> Result<(), hotslot::Error> {
/// # let registry = hotslot::Registry::new()?;
/// let banner = registry.load_file("plugins/banner.wasm")?;
/// for function in banner.imports().iter().flat_map(|i| i.functions()) {
///     println!("{}: {} parameters", function.name(), function.ty().params().len());
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ImportedFunction {
    name: String,
    ty: ComponentFunc,
}

impl ImportedInterface {
    /// The interface, with the version the component asks for.
    pub fn name(&self) -> &InterfaceName {
        &self.name
    }

    /// Its functions, as the component expects them.
    pub fn functions(&self) -> &[ImportedFunction] {
        &self.functions
    }
}

impl ImportedFunction {
    /// The function's name inside its interface.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its parameter and result types, as the importer expects them.
    pub fn ty(&self) -> &ComponentFunc {
        &self.ty
    }
}

impl fmt::Debug for ImportedFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportedFunction")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Where the functions of the `hotslot:plugin` interfaces a component
/// exports are: (export, function) positions in [`Plugin::exports`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Contract {
    /// `lifecycle.on-start`.
    pub(crate) on_start: Option<(usize, usize)>,
    /// `migrate.snapshot`.
    pub(crate) snapshot: Option<(usize, usize)>,
    /// `migrate.restore`.
    pub(crate) restore: Option<(usize, usize)>,
}

/// The package of the interfaces a plugin offers the host, not its callers.
pub(crate) const CONTRACT_PACKAGE: &str = "hotslot:plugin";

impl Contract {
    fn of(exports: &[ExportedInterface]) -> Self {
        let find = |interface: &str, function: &str| {
            exports.iter().enumerate().find_map(|(e, exported)| {
                let name = exported.name();
                let ours = name.package() == CONTRACT_PACKAGE
                    && name.interface() == interface
                    && name.version().is_some_and(|v| v.major == 0 && v.minor == 1);
                ours.then(|| exported.position(function).map(|f| (e, f)))
                    .flatten()
            })
        };
        Contract {
            on_start: find("lifecycle", "on-start"),
            snapshot: find("migrate", "snapshot"),
            restore: find("migrate", "restore"),
        }
    }
}

/// SHA-256 of a component's bytes.
///
/// ```no_run
/// # fn main() -> Result<(), hotslot::Error> {
/// # let registry = hotslot::Registry::new()?;
/// let old = registry.load_file("plugins/calc.wasm")?;
/// let new = registry.load_file("plugins/calc.wasm")?;
/// assert_eq!(old.content_hash(), new.content_hash()); // the same bytes
/// # Ok(()) }
/// ```
pub type ContentHash = [u8; 32];

/// One interface a component exports, with its functions.
///
/// ```no_run
/// # fn main() -> Result<(), hotslot::Error> {
/// # let registry = hotslot::Registry::new()?;
/// let calc = registry.load_file("plugins/calc.wasm")?;
/// for export in calc.exports().iter().filter(|e| !e.is_contract()) {
///     println!("{}", export.name());
///     for function in export.functions() {
///         println!("  {}: {} -> {} results", function.name(), function.param_count(), function.result_count());
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ExportedInterface {
    name: InterfaceName,
    functions: Vec<ExportedFunction>,
}

/// One function of an exported interface.
///
/// ```no_run
/// # fn main() -> Result<(), hotslot::Error> {
/// # let registry = hotslot::Registry::new()?;
/// let calc = registry.load_file("plugins/calc.wasm")?;
/// let add = calc.exports()[0].function("add").expect("calc exports add");
/// assert_eq!((add.param_count(), add.result_count()), (2, 1));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ExportedFunction {
    name: String,
    index: ComponentExportIndex,
    ty: ComponentFunc,
    params: usize,
    results: usize,
}

impl Plugin {
    /// Where the plugin came from: its file path, or the name it was loaded under.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// # let registry = hotslot::Registry::new()?;
    /// let calc = registry.load_file("plugins/calc.wasm")?;
    /// assert_eq!(calc.origin(), "plugins/calc.wasm");
    /// # Ok(()) }
    /// ```
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The interfaces the component exports, in the component's order.
    /// Exports that are not named interfaces (plain functions, unnamed
    /// instances) are not listed.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// # let registry = hotslot::Registry::new()?;
    /// let calc = registry.load_file("plugins/calc.wasm")?;
    /// let names: Vec<String> = calc.exports().iter().map(|e| e.name().to_string()).collect();
    /// # Ok(()) }
    /// ```
    pub fn exports(&self) -> &[ExportedInterface] {
        &self.compiled.exports
    }

    /// The `interface#function` name under which the component's core
    /// module `module` exports its function `index`, if it does.
    pub(crate) fn entry_name(&self, module: &wasmtime::Module, index: u32) -> Option<&str> {
        self.compiled
            .entries
            .iter()
            .find_map(|core| core.entry(module, index))
    }

    /// Everything the component exports, in words: its interfaces, and
    /// what hotslot cannot serve (functions of its world itself), for an
    /// error that says why nothing is served.
    pub(crate) fn exports_in_words(&self) -> Vec<String> {
        let component = self.compiled.pre.component();
        let engine = self.compiled.pre.engine();
        component
            .component_type()
            .exports(engine)
            .map(|(name, item)| unserved(name, &item.ty).unwrap_or_else(|| name.to_string()))
            .collect()
    }

    /// The interfaces it imports from the registry (served by other
    /// plugins), in the component's order.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// # let registry = hotslot::Registry::new()?;
    /// let banner = registry.load_file("plugins/banner.wasm")?;
    /// if !banner.imports().is_empty() {
    ///     println!("banner waits until some plugin serves what it imports");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn imports(&self) -> &[ImportedInterface] {
        &self.compiled.imports
    }

    /// Every exported interface's name, comma-separated (those of
    /// `hotslot:plugin` left out, unless they are all it exports).
    pub(crate) fn interface_names(&self) -> &str {
        &self.compiled.interfaces
    }

    /// Where its `hotslot:plugin` lifecycle and migrate functions are.
    pub(crate) fn contract(&self) -> &Contract {
        &self.compiled.contract
    }

    /// The exported interface that best serves `request`: among those that
    /// serve it, the highest version.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// # let registry = hotslot::Registry::new()?;
    /// let calc = registry.load_file("plugins/calc.wasm")?;
    /// let math = calc.export_serving(&"demo:calc/math@1".parse()?);
    /// assert!(math.is_some());
    /// # Ok(()) }
    /// ```
    pub fn export_serving(&self, request: &Request) -> Option<&ExportedInterface> {
        self.position_serving(request)
            .map(|i| &self.compiled.exports[i])
    }

    pub(crate) fn position_serving(&self, request: &Request) -> Option<usize> {
        let exports = &self.compiled.exports;
        (0..exports.len())
            .filter(|&i| exports[i].name.serves(request) && !exports[i].is_contract())
            .max_by(|&a, &b| exports[a].name.version().cmp(&exports[b].name.version()))
    }

    /// The component, as wasmtime compiled it.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// # let registry = hotslot::Registry::new()?;
    /// let calc = registry.load_file("plugins/calc.wasm")?;
    /// let ty = calc.component().component_type();
    /// # let _ = ty;
    /// # Ok(()) }
    /// ```
    pub fn component(&self) -> &Component {
        self.compiled.pre.component()
    }

    /// The compiler it was compiled with.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// let registry = hotslot::Registry::new()?;
    /// let plugin = registry.load_file("plugins/calc.wasm")?;
    /// assert_eq!(plugin.compiler(), hotslot::engine::Compiler::Cranelift);
    /// # Ok(()) }
    /// ```
    pub fn compiler(&self) -> Compiler {
        engine::options_of(self.compiled.pre.engine()).compiler
    }

    /// The same plugin, granted `grants` (directories, environment, limits)
    /// in every instance made from now on.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// let registry = hotslot::Registry::new()?;
    /// let grants = hotslot::Grants::for_component("plugins/rogue.wasm".as_ref())?;
    /// let plugin = registry.load_file("plugins/rogue.wasm")?.with_grants(grants);
    /// # Ok(()) }
    /// ```
    pub fn with_grants(mut self, grants: Grants) -> Plugin {
        self.grants = Arc::new(grants);
        self
    }

    /// What this plugin is granted.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// # let registry = hotslot::Registry::new()?;
    /// let plugin = registry.load_file("plugins/notes.wasm")?; // with plugins/notes.toml
    /// for dir in &plugin.grants().dirs {
    ///     println!("may open {}", dir.host.display());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn grants(&self) -> &Grants {
        &self.grants
    }

    /// True if both are the same compiled component with the same grants:
    /// adding one where the other serves joins its running instances.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// # let registry = hotslot::Registry::new()?;
    /// let a = registry.load_file("plugins/calc.wasm")?;
    /// let b = registry.load_file("plugins/calc.wasm")?;
    /// assert!(a.same_as(&b)); // adding `b` where `a` serves keeps the instances
    /// # Ok(()) }
    /// ```
    pub fn same_as(&self, other: &Plugin) -> bool {
        Arc::ptr_eq(&self.compiled, &other.compiled) && self.grants == other.grants
    }

    /// SHA-256 of the component's bytes: equal hashes, equal plugins.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// # let registry = hotslot::Registry::new()?;
    /// let calc = registry.load_file("plugins/calc.wasm")?;
    /// let hex: String = calc.content_hash().iter().map(|b| format!("{b:02x}")).collect();
    /// println!("calc is {hex}");
    /// # Ok(()) }
    /// ```
    pub fn content_hash(&self) -> &ContentHash {
        &self.compiled.hash
    }

    pub(crate) fn instance_pre(&self) -> &InstancePre<PluginState> {
        &self.compiled.pre
    }
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("origin", &self.origin)
            .field("exports", &self.compiled.exports)
            .finish()
    }
}

impl ExportedInterface {
    /// The interface's name, with the version the component exports.
    pub fn name(&self) -> &InterfaceName {
        &self.name
    }

    /// Its functions, in the component's order.
    pub fn functions(&self) -> &[ExportedFunction] {
        &self.functions
    }

    /// The function called `name`, if there is one.
    pub fn function(&self, name: &str) -> Option<&ExportedFunction> {
        self.functions.iter().find(|f| f.name == name)
    }

    /// True for the `hotslot:plugin` interfaces, which a plugin exports for
    /// the host (lifecycle, migration), not for callers.
    pub fn is_contract(&self) -> bool {
        self.name.package() == CONTRACT_PACKAGE
    }

    pub(crate) fn position(&self, name: &str) -> Option<usize> {
        self.functions.iter().position(|f| f.name == name)
    }

    pub(crate) fn function_names(&self) -> Vec<String> {
        self.functions.iter().map(|f| f.name.clone()).collect()
    }
}

impl ExportedFunction {
    /// The function's name inside its interface.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its parameter and result types.
    pub fn ty(&self) -> &ComponentFunc {
        &self.ty
    }

    /// How many parameters it takes.
    pub fn param_count(&self) -> usize {
        self.params
    }

    /// How many results it returns (0 or 1 in today's component model).
    pub fn result_count(&self) -> usize {
        self.results
    }

    pub(crate) fn index(&self) -> &ComponentExportIndex {
        &self.index
    }
}

impl fmt::Debug for ExportedFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExportedFunction")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// How many compiled components the loader keeps for reuse. A hot-reload
/// session flips between a handful of versions; older ones are dropped first.
const CACHE_ENTRIES: usize = 32;

/// How much compiled code those no plugin uses any more may hold in all.
/// Each keeps its code image mapped and its metadata (~5 MB resident for
/// the 35 MB image of the Python greeter): counted in entries alone, a watch
/// reloading Python grew by that much per reload up to the 32nd. Entries a
/// plugin still uses cost nothing more here and are not counted.
const CACHE_IDLE_CODE_BYTES: usize = 128 << 20;

/// Compiles components for one engine and linker, remembering recent ones by
/// content hash so that bytes seen before (a reverted file, two builds
/// swapped back and forth) skip compilation.
pub(crate) struct Loader {
    engine: Engine,
    linker: Linker<PluginState>,
    /// Engines and linkers like the loader's own but for the other compiler
    /// (`[compile] compiler` in a manifest) or the other way of initializing
    /// memory (see [`MemoryInit`]), made the first time a plugin needs one.
    twins: Mutex<Vec<Twin>>,
    cache: Mutex<VecDeque<Arc<Compiled>>>,
    /// Bytes Winch could not compile and Cranelift could, lately: asked
    /// for with Winch again (the same file loaded again, a reverted
    /// build), they go to Cranelift without Winch's failed attempt, which
    /// may have compiled most of them before it failed.
    refused_by_winch: Mutex<VecDeque<ContentHash>>,
}

/// An engine like the loader's own but for another compiler or memory
/// initialization, and the linker for it.
struct Twin {
    compiler: Compiler,
    init: MemoryInit,
    engine: Engine,
    linker: Linker<PluginState>,
}

impl Loader {
    pub(crate) fn new(engine: Engine, linker: Linker<PluginState>) -> Self {
        Loader {
            engine,
            linker,
            twins: Mutex::new(Vec::new()),
            cache: Mutex::new(VecDeque::new()),
            refused_by_winch: Mutex::new(VecDeque::new()),
        }
    }

    /// The engine and linker for a plugin compiled with `compiler` whose
    /// modules start with `data` bytes of data: the loader's own unless
    /// that compiles with another or initializes memory otherwise, then one
    /// built like it. (An engine not built here maps memory, as wasmtime
    /// does by default, and so keeps every plugin that asks for no other
    /// compiler.)
    fn target(
        &self,
        compiler: Option<Compiler>,
        data: usize,
    ) -> Result<(Engine, Linker<PluginState>), Error> {
        let (own, own_init) = engine::built_with(&self.engine)
            .unwrap_or_else(|| (EngineOptions::default(), MemoryInit::Map));
        let compiler = compiler.unwrap_or(own.compiler);
        let init = MemoryInit::for_data(data, own_init);
        if (compiler, init) == (own.compiler, own_init) {
            return Ok((self.engine.clone(), self.linker.clone()));
        }
        let mut twins = lock(&self.twins);
        let made = twins
            .iter()
            .find(|t| (t.compiler, t.init) == (compiler, init));
        if let Some(twin) = made {
            return Ok((twin.engine.clone(), twin.linker.clone()));
        }
        let engine = engine::like(&self.engine, compiler, init)?;
        let linker = sandbox::linker(&engine)?;
        twins.push(Twin {
            compiler,
            init,
            engine: engine.clone(),
            linker: linker.clone(),
        });
        Ok((engine, linker))
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Loads a component file as read, granted what its manifest grants
    /// within `grant_root` (by default, the directory of the file); errors
    /// name the file. The flag tells whether the cache served it.
    pub(crate) fn load_source(
        &self,
        source: &Source,
        grant_root: Option<&Path>,
    ) -> Result<(Plugin, bool), Error> {
        let grants = match &source.manifest {
            None => Grants::default(),
            Some((file, text)) => {
                let base = dir_of(file);
                let root = grant_root.unwrap_or(base);
                Grants::from_toml_within(text, base, &file.display().to_string(), root)?
            }
        };
        let (plugin, cached) = self.load_with(&source.origin(), &source.bytes, grants.compiler)?;
        if let Some((file, _)) = &source.manifest {
            names_only_imports(&plugin, &grants, file)?;
        }
        Ok((plugin.with_grants(grants), cached))
    }

    /// Compiles and links `bytes` (or finds them compiled already); `origin`
    /// names them in errors. The flag tells whether the cache served them.
    pub(crate) fn load_bytes(&self, origin: &str, bytes: &[u8]) -> Result<(Plugin, bool), Error> {
        self.load_with(origin, bytes, None)
    }

    /// Like [`Loader::load_bytes`], with `compiler` rather than the
    /// loader's own, if given. What Winch cannot compile (tail calls and
    /// relaxed SIMD, proposals it leaves out, or an instruction it lacks)
    /// is compiled by Cranelift instead, with a warning: Winch is chosen for
    /// speed while developing, and a plugin that runs is worth more than one
    /// compiled sooner.
    fn load_with(
        &self,
        origin: &str,
        bytes: &[u8],
        compiler: Option<Compiler>,
    ) -> Result<(Plugin, bool), Error> {
        let hash: ContentHash = Sha256::digest(bytes).into();
        let plugin = |compiled| Plugin {
            origin: origin.into(),
            compiled,
            grants: Arc::default(),
        };
        let data = initial_data(bytes);
        let (engine, linker) = self.target(compiler, data)?;
        let winch = engine::options_of(&engine).compiler == Compiler::Winch;
        let refused = winch && lock(&self.refused_by_winch).contains(&hash);
        let winch_failed = if refused {
            None
        } else {
            if let Some(compiled) = self.cached(&hash, &engine) {
                return Ok((plugin(compiled), true));
            }
            match self.compile_new(origin, bytes, hash, &engine, &linker) {
                // Bytes that are no component at all fail as such.
                Err(Error::NotAComponent { reason, .. })
                    if winch && check_header(bytes).is_ok() =>
                {
                    tracing::debug!("winch cannot compile {origin}; trying cranelift");
                    Some(reason)
                }
                compiled => return Ok((plugin(compiled?), false)),
            }
        };
        let (engine, linker) = self.target(Some(Compiler::Cranelift), data)?;
        if let Some(compiled) = self.cached(&hash, &engine) {
            return Ok((plugin(compiled), true));
        }
        // Said only once Cranelift has compiled them: if it cannot either,
        // its error is the one that says what is wrong with the bytes.
        let compiled = self.compile_new(origin, bytes, hash, &engine, &linker)?;
        if let Some(reason) = winch_failed {
            tracing::warn!("winch cannot compile {origin} ({reason}); compiled it with cranelift");
            let mut refused = lock(&self.refused_by_winch);
            // Two loads of the same bytes at once both get here.
            refused.retain(|h| *h != hash);
            refused.push_back(hash);
            if refused.len() > CACHE_ENTRIES {
                refused.pop_front();
            }
        }
        Ok((plugin(compiled), false))
    }

    /// Compiles `bytes` for `engine` (or maps them from the code cache),
    /// says so in the log, and keeps them in the loader's cache.
    fn compile_new(
        &self,
        origin: &str,
        bytes: &[u8],
        hash: ContentHash,
        engine: &Engine,
        linker: &Linker<PluginState>,
    ) -> Result<Arc<Compiled>, Error> {
        let started = std::time::Instant::now();
        let options = engine::options_of(engine);
        let compiler = options.compiler;
        // Counted over the whole process: said only for a compile that had
        // the process to itself (another beside it would be counted in).
        let alone = Alone::start();
        let before = (options.reuse_functions && compiler == Compiler::Cranelift).then(Reused::now);
        let compiled = compile(origin, bytes, hash, engine, linker);
        let reused = before.map(Reused::since);
        let alone = alone.alone();
        let (compiled, mapped) = compiled?;
        let compiled = Arc::new(compiled);
        let took = started.elapsed().as_secs_f64() * 1e3;
        if mapped {
            tracing::info!(
                "loaded {origin}, compiled with {compiler} before, in {took:.1} ms from the code \
                 kept on disk"
            );
        } else if let Some(Reused { looked, found }) = reused.filter(|_| alone) {
            tracing::info!(
                "compiled {origin} with {compiler} in {took:.1} ms, \
                 reusing {found} of its {looked} functions already compiled \
                 (before, or the same code elsewhere in it)"
            );
        } else if reused.is_some() {
            tracing::info!(
                "compiled {origin} with {compiler} in {took:.1} ms, beside another compile"
            );
        } else {
            tracing::info!("compiled {origin} with {compiler} in {took:.1} ms");
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.push_back(compiled.clone());
        if cache.len() > CACHE_ENTRIES {
            cache.pop_front();
        }
        trim_idle(&mut cache);
        Ok(compiled)
    }

    /// The same bytes, compiled for the same engine.
    fn cached(&self, hash: &ContentHash, engine: &Engine) -> Option<Arc<Compiled>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .iter()
            .find(|c| &c.hash == hash && Engine::same(c.pre.engine(), engine))
            .cloned()
    }
}

/// Tells whether a compile ran with no other beside it, start to end;
/// counted out when dropped.
struct Alone {
    number: u64,
    first: bool,
}

/// Compiles started in this process, and those under way.
static COMPILES: AtomicU64 = AtomicU64::new(0);
static COMPILING: AtomicUsize = AtomicUsize::new(0);

impl Alone {
    fn start() -> Alone {
        let first = COMPILING.fetch_add(1, Ordering::SeqCst) == 0;
        let number = COMPILES.fetch_add(1, Ordering::SeqCst) + 1;
        Alone { number, first }
    }

    /// True if no other compile was under way at its start or started since.
    fn alone(self) -> bool {
        self.first && COMPILES.load(Ordering::SeqCst) == self.number
    }
}

impl Drop for Alone {
    fn drop(&mut self) {
        COMPILING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Drops the oldest compiled components only the loader holds until those
/// hold at most [`CACHE_IDLE_CODE_BYTES`] of code.
fn trim_idle(cache: &mut VecDeque<Arc<Compiled>>) {
    let idle = |c: &Arc<Compiled>| Arc::strong_count(c) == 1;
    let mut code: usize = cache
        .iter()
        .filter(|c| idle(c))
        .map(|c| c.code_bytes())
        .sum();
    while code > CACHE_IDLE_CODE_BYTES {
        let Some(oldest) = cache.iter().position(idle) else {
            return;
        };
        if let Some(dropped) = cache.remove(oldest) {
            code -= dropped.code_bytes();
        }
    }
}

/// Compiles `bytes` for `engine` and links them with `linker`; the flag
/// tells whether the code came from the code cache rather than the compiler.
fn compile(
    origin: &str,
    bytes: &[u8],
    hash: ContentHash,
    engine: &Engine,
    linker: &Linker<PluginState>,
) -> Result<(Compiled, bool), Error> {
    let not_a_component = |reason: String| Error::NotAComponent {
        origin: origin.to_string(),
        reason,
    };
    check_header(bytes).map_err(not_a_component)?;
    // A panic in the compiler (a bug in wasmtime or Cranelift on some input,
    // or, in debug builds, the check of a reused function) fails this file,
    // never the host.
    let compiled =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            match engine::built_with(engine) {
                Some((options, init)) => compile_built(engine, &options, init, &hash, bytes),
                None => Component::new(engine, bytes).map(|component| (component, false)),
            }
        }))
        .unwrap_or_else(|panic| {
            Err(wasmtime::format_err!(
                "the compiler panicked: {}",
                crate::error::panic_text(&*panic)
            ))
        });
    if !matches!(compiled, Ok((_, true))) {
        give_back_memory();
    }
    let (component, mapped) = compiled.map_err(|e| not_a_component(reason(&e)))?;
    let link_error = |reason: String| Error::Link {
        origin: origin.to_string(),
        reason,
    };
    let imports = registry_imports(engine, &component).map_err(link_error)?;
    let pre = if imports.is_empty() {
        linker.instantiate_pre(&component)
    } else {
        // Each of this component's imports from the registry gets a
        // function that forwards to whichever plugin serves it.
        let mut linker = linker.clone();
        let names: Vec<(String, Vec<(String, ComponentFunc)>)> = imports
            .iter()
            .map(|i| {
                let functions = i
                    .functions
                    .iter()
                    .map(|f| (f.name.clone(), f.ty.clone()))
                    .collect();
                (i.written.clone(), functions)
            })
            .collect();
        forwarders::link_imports(&mut linker, &names)
            .and_then(|()| linker.instantiate_pre(&component))
    }
    .map_err(|e| link_error(reason(&e)))?;
    let exports = exported_interfaces(engine, &component);
    // Whatever else it exports no call can reach: said once, here, unless
    // nothing is served at all (adding it fails, saying so).
    if exports.iter().any(|e| !e.is_contract()) {
        let unreachable: Vec<String> = component
            .component_type()
            .exports(engine)
            // componentize-py's own `exports` (its build-time `init`) is in
            // every Python plugin: not the author's.
            .filter(|(name, item)| {
                !(*name == "exports" && matches!(item.ty, ComponentItem::ComponentInstance(_)))
            })
            .filter_map(|(name, item)| unserved(name, &item.ty))
            .collect();
        if !unreachable.is_empty() {
            tracing::warn!(
                "{origin} also exports what no call can reach: {}",
                unreachable.join("; ")
            );
        }
    }
    let contract = Contract::of(&exports);
    // What its errors name it by: the interfaces it serves, not the
    // `hotslot:plugin` ones the host calls on it (unless that is all).
    let served: Vec<String> = exports
        .iter()
        .filter(|e| !e.is_contract())
        .map(|e| e.name().to_string())
        .collect();
    let interfaces = match served.is_empty() {
        true => exports.iter().map(|e| e.name().to_string()).collect(),
        false => served,
    }
    .join(", ");
    let compiled = Compiled {
        interfaces,
        pre,
        exports,
        imports,
        contract,
        hash,
        entries: core_entries(bytes),
    };
    Ok((compiled, mapped))
}

/// The interfaces a component's own export section names
/// (`demo:text/filter@1.2.0`), read without validating or compiling:
/// what its file will serve, known in a millisecond where compiling an
/// interpreter takes seconds. `None` when the bytes are not a component
/// that can be read that far (compiling them will say what is wrong).
pub(crate) fn declared_exports(bytes: &[u8]) -> Option<Vec<InterfaceName>> {
    use wasmparser::{Chunk, ComponentExternalKind, Encoding, Parser, Payload};
    let mut parser = Parser::new(0);
    let mut rest = bytes;
    let mut exports = Vec::new();
    loop {
        let Chunk::Parsed { consumed, payload } = parser.parse(rest, true).ok()? else {
            return None;
        };
        rest = rest.get(consumed..)?;
        match payload {
            Payload::Version { encoding, .. } if encoding != Encoding::Component => return None,
            // Nested modules and components: skipped whole, unread.
            Payload::ModuleSection {
                unchecked_range, ..
            }
            | Payload::ComponentSection {
                unchecked_range, ..
            } => rest = rest.get(unchecked_range.len()..)?,
            Payload::ComponentExportSection(section) => {
                for export in section {
                    let export = export.ok()?;
                    if export.kind == ComponentExternalKind::Instance {
                        if let Ok(name) = export.name.name.parse() {
                            exports.push(name);
                        }
                    }
                }
            }
            Payload::End(_) => return Some(exports),
            _ => {}
        }
    }
}

/// The core modules of the component in `bytes` and their exported entry
/// points, read without validating (what cannot be read is left out).
/// Code is skipped unread: 0.6 ms for the 18 MB Python greeter.
fn core_entries(bytes: &[u8]) -> Vec<CoreEntries> {
    use wasmparser::{Chunk, Encoding, ExternalKind, Parser, Payload};
    let mut found = Vec::new();
    // Components nest modules; modules nest nothing.
    let mut open: Vec<Option<CoreEntries>> = Vec::new();
    let mut parser = Parser::new(0);
    // The parsers of the components a nested one is in.
    let mut outer: Vec<Parser> = Vec::new();
    let mut rest = bytes;
    while let Ok(Chunk::Parsed { consumed, payload }) = parser.parse(rest, true) {
        let Some(after) = rest.get(consumed..) else {
            break;
        };
        rest = after;
        match payload {
            Payload::Version { encoding, .. } => {
                open.push((encoding == Encoding::Module).then(CoreEntries::default))
            }
            Payload::ModuleSection { parser: inner, .. }
            | Payload::ComponentSection { parser: inner, .. } => {
                outer.push(std::mem::replace(&mut parser, inner));
            }
            Payload::CodeSectionStart { size, .. } => {
                parser.skip_section();
                let Some(after) = rest.get(size as usize..) else {
                    break;
                };
                rest = after;
            }
            Payload::ExportSection(section) => {
                let Some(Some(module)) = open.last_mut() else {
                    continue;
                };
                for export in section.into_iter().flatten() {
                    module.exports.push(export.name.to_string());
                    if export.kind == ExternalKind::Func && export.name.contains('#') {
                        module.entries.push((export.index, export.name.to_string()));
                    }
                }
            }
            Payload::End(_) => {
                if let Some(Some(module)) = open.pop() {
                    found.push(module);
                }
                match outer.pop() {
                    Some(enclosing) => parser = enclosing,
                    None => break,
                }
            }
            _ => {}
        }
    }
    found
}

/// Bytes of data the core modules in `bytes` start their memories with
/// (their data sections, nested modules included), read without
/// validating: what decides how their memory is initialized. Unreadable
/// bytes count what was read before; compiling them says what is wrong.
fn initial_data(bytes: &[u8]) -> usize {
    let mut data = 0;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload {
            Ok(wasmparser::Payload::DataSection(section)) => data += section.range().len(),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    data
}

/// Components at least this big are compiled on an engine of their own.
const COMPILE_APART: usize = 1 << 20;

/// Compiles `bytes` for `engine`, an engine hotslot built (with `options`,
/// initializing memory as `init` says): mapped from the code cache when
/// the options keep one and it holds them (the flag says so), else
/// compiled (a big component apart) and kept there.
fn compile_built(
    engine: &Engine,
    options: &EngineOptions,
    init: MemoryInit,
    hash: &ContentHash,
    bytes: &[u8],
) -> wasmtime::Result<(Component, bool)> {
    let kept = options
        .disk_cache
        .then(|| code_cache::Entry::for_user(hash, engine, options.compiler, init))
        .flatten();
    if let Some(component) = kept.as_ref().and_then(|kept| kept.load(engine)) {
        return Ok((component, true));
    }
    if bytes.len() < COMPILE_APART {
        let component = Component::new(engine, bytes)?;
        if let Some(kept) = &kept {
            match component.serialize() {
                Ok(code) => {
                    kept.store(&code);
                }
                Err(e) => tracing::warn!(
                    "cannot keep compiled code in {}: {e:#}",
                    kept.path().display()
                ),
            }
        }
        return Ok((component, false));
    }
    // Big components (interpreters) are where reusing what an earlier run
    // compiled pays: the file of kept functions is read in before and
    // written after. A small one compiles in tens of milliseconds, less than
    // reading that file (tens of megabytes) would take.
    let keeps_functions =
        options.reuse_functions && options.disk_cache && options.compiler == Compiler::Cranelift;
    if keeps_functions {
        function_cache::read_kept();
    }
    let code = compile_apart(options, init, bytes);
    if keeps_functions {
        function_cache::save();
    }
    let code = code?;
    // Mapped from the file just written where there is one: its pages are
    // read only as the code runs, and shared with every other host.
    if let Some(component) = kept
        .as_ref()
        .filter(|kept| kept.store(&code))
        .and_then(|kept| kept.load(engine))
    {
        return Ok((component, false));
    }
    // SAFETY: `code` was made by wasmtime just now, in this process, from
    // `bytes`, by an engine configured exactly like `engine`: it is the
    // trusted artifact `deserialize` requires.
    unsafe { Component::deserialize(engine, &code) }.map(|component| (component, false))
}

/// Compiles `bytes` on an engine made for it (built with `options` and
/// `init`), and gives the code to move into the engine it runs on.
/// Cranelift keeps its working buffers in the engine for the next compile,
/// sized for the biggest function it has seen (tens of megabytes after an
/// interpreter's): dropping the compiling engine gives them back. Moving
/// the code costs one copy, a few milliseconds against seconds of
/// compiling.
fn compile_apart(
    options: &EngineOptions,
    init: MemoryInit,
    bytes: &[u8],
) -> wasmtime::Result<Vec<u8>> {
    let apart = engine::for_compiling(options, init)?;
    let compile = || Component::new(&apart, bytes)?.serialize();
    // On threads of their own: wasmtime compiles a component's functions
    // on rayon's pool, first come first served, so in the shared pool an
    // interpreter's twenty thousand functions held a small plugin's
    // compile behind them (calc beside the Python greeter: 13 s instead of
    // 0.13 s, one start in ten). Big compiles still queue behind each
    // other, as before: two interpreters at once would need twice the
    // memory, and take as long.
    match big_compiles() {
        Some(pool) => pool.install(compile),
        None => compile(),
    }
}

/// The rayon pool big components compile on (as many threads as cores),
/// made at the first; `None` if it could not be (they then compile on the
/// shared pool).
fn big_compiles() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("hotslot-big-compile-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// Returns the memory compiling freed to the operating system. Cranelift
/// allocates hundreds of megabytes for a big component on several threads,
/// and glibc's allocator keeps what they freed in its arenas: without this,
/// a host that compiled two 15 MB components stays at six times the memory
/// of one that loaded them from the cache.
fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory the allocator holds.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The interfaces `component` imports that the registry links: every
/// imported instance named as an interface, but WASI's and `hotslot:plugin`'s.
/// Refused, saying so, when one passes resources: a handle belongs to one
/// store and cannot cross to another plugin.
fn registry_imports(
    engine: &Engine,
    component: &Component,
) -> Result<Vec<ImportedInterface>, String> {
    let mut found = Vec::new();
    for (written, import) in component.component_type().imports(engine) {
        let ComponentItem::ComponentInstance(instance) = import.ty else {
            continue;
        };
        let Ok(name) = written.parse::<InterfaceName>() else {
            continue;
        };
        let namespace = name.package().split(':').next().unwrap_or_default();
        if namespace == "wasi" || name.package() == CONTRACT_PACKAGE {
            continue;
        }
        let mut functions = Vec::new();
        for (function, item) in instance.exports(engine) {
            let ty = match item.ty {
                ComponentItem::ComponentFunc(ty) => ty,
                ComponentItem::Resource(_) => {
                    return Err(format!(
                        "it imports {written}, which has a resource type (`{function}`): \
                         resources cannot cross from one plugin to another, so hotslot \
                         does not link such imports"
                    ))
                }
                _ => continue,
            };
            if values::passes_resources(&ty) {
                return Err(format!(
                    "it imports {written}#{function}, which passes a resource handle: \
                     resources cannot cross from one plugin to another, so hotslot \
                     does not link such imports"
                ));
            }
            functions.push(ImportedFunction {
                name: function.to_string(),
                ty,
            });
        }
        found.push(ImportedInterface {
            name,
            written: written.to_string(),
            functions,
        });
    }
    Ok(found)
}

/// An export hotslot cannot serve, in words; `None` for an interface.
fn unserved(name: &str, item: &ComponentItem) -> Option<String> {
    match item {
        ComponentItem::ComponentInstance(_) if name.parse::<InterfaceName>().is_ok() => None,
        ComponentItem::ComponentInstance(_) if !name.contains([':', '/']) => Some(format!(
            "interface `{name}`, which has no package (hotslot serves interfaces \
             named `namespace:package/interface`: `export {name};` with `interface \
             {name}` in a package)"
        )),
        ComponentItem::ComponentInstance(_) => Some(format!(
            "instance `{name}` (hotslot serves interfaces named \
             `namespace:package/interface[@version]`)"
        )),
        ComponentItem::ComponentFunc(_) => Some(format!(
            "function `{name}` of its world itself (hotslot serves the \
             functions of an exported interface: `export {name}-api;` \
             with `{name}` in `interface {name}-api`)"
        )),
        _ => Some(format!("`{name}`")),
    }
}

/// Every export whose name is an interface name, with its functions.
fn exported_interfaces(engine: &Engine, component: &Component) -> Vec<ExportedInterface> {
    let mut found = Vec::new();
    for (export_name, export) in component.component_type().exports(engine) {
        let ComponentItem::ComponentInstance(instance) = export.ty else {
            continue;
        };
        let Ok(name) = export_name.parse::<InterfaceName>() else {
            continue;
        };
        let Some((_, instance_index)) = component.get_export(None, export_name) else {
            continue;
        };
        let functions = instance
            .exports(engine)
            .filter_map(|(func_name, export)| match export.ty {
                ComponentItem::ComponentFunc(ty) => {
                    let (_, index) = component.get_export(Some(&instance_index), func_name)?;
                    let (params, results) = (ty.params().len(), ty.results().len());
                    Some(ExportedFunction {
                        name: func_name.to_string(),
                        index,
                        ty,
                        params,
                        results,
                    })
                }
                _ => None,
            })
            .collect();
        found.push(ExportedInterface { name, functions });
    }
    found
}

/// Refuses a manifest whose `[imports]` names an interface the component
/// does not import from other plugins: a misspelt interface chose nothing,
/// silently.
fn names_only_imports(plugin: &Plugin, grants: &Grants, manifest: &Path) -> Result<(), Error> {
    for (interface, _) in &grants.imports {
        let Ok(wanted) = interface.parse::<crate::version::Request>() else {
            continue; // refused as the manifest was read
        };
        if plugin
            .imports()
            .iter()
            .any(|i| i.name().in_line_of(&wanted))
        {
            continue;
        }
        let imported: Vec<String> = plugin
            .imports()
            .iter()
            .map(|i| i.name().to_string())
            .collect();
        return Err(Error::Manifest {
            file: manifest.display().to_string(),
            reason: format!(
                "[imports] names {interface}, which {} does not import from another plugin \
                 (it imports: {})",
                plugin.origin(),
                match imported.is_empty() {
                    true => "nothing".to_string(),
                    false => imported.join(", "),
                }
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    use super::{compile, declared_exports, initial_data};
    use crate::error::Error;

    #[test]
    fn declared_exports_are_read_past_nested_modules_without_compiling() {
        let component = wat::parse_str(
            r#"(component
                (core module $m (func (export "v") (result i32) i32.const 1))
                (core instance $i (instantiate $m))
                (func $v (result u32) (canon lift (core func $i "v")))
                (instance $a (export "version" (func $v)))
                (instance $b (export "version" (func $v)))
                (export "demo:probe/probe@1.2.0" (instance $a))
                (export "plain" (instance $b))
                (export "run" (func $v)))"#,
        )
        .expect("parses");
        let names: Vec<String> = declared_exports(&component)
            .expect("a component")
            .iter()
            .map(|name| name.to_string())
            .collect();
        assert_eq!(names, ["demo:probe/probe@1.2.0"]);
        let module = wat::parse_str("(module)").expect("parses");
        assert!(declared_exports(&module).is_none(), "a core module");
        assert!(
            declared_exports(&component[..component.len() / 2]).is_none(),
            "cut short"
        );
    }

    /// A store of compiled functions that, once `swapping`, hands back
    /// for any function the code kept for another: well-formed, but not
    /// that function's.
    #[derive(Debug, Default)]
    struct Swapped {
        kept: Mutex<Vec<(Vec<u8>, Vec<u8>)>>,
        swapping: AtomicBool,
    }

    impl wasmtime::CacheStore for Swapped {
        fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
            if !self.swapping.load(Ordering::Relaxed) {
                return None;
            }
            let kept = self.kept.lock().unwrap();
            let other = kept.iter().find(|(k, _)| k != key)?;
            Some(Cow::Owned(other.1.clone()))
        }

        fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
            self.kept.lock().unwrap().push((key.to_vec(), value));
            true
        }
    }

    #[test]
    fn a_panic_in_the_compiler_fails_the_file_not_the_host() {
        // Cranelift's own check of a reused function (compiled again and
        // compared) panics on the wrong code: a compiler panic on demand.
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        let store = Arc::new(Swapped::default());
        config
            .enable_incremental_compilation(store.clone())
            .unwrap();
        // SAFETY: a setting that only adds checks.
        unsafe { config.cranelift_flag_enable("enable_incremental_compilation_cache_checks") };
        let engine = wasmtime::Engine::new(&config).unwrap();
        let linker = crate::sandbox::linker(&engine).unwrap();
        let wat = r#"(component
            (core module $m
                (func (export "add") (param i32 i32) (result i32)
                    local.get 0 local.get 1 i32.add)
                (func (export "mul") (param i32 i32) (result i32)
                    local.get 0 local.get 1 i32.mul))
            (core instance $i (instantiate $m))
            (func $add (param "a" s32) (param "b" s32) (result s32)
                (canon lift (core func $i "add")))
            (func $mul (param "a" s32) (param "b" s32) (result s32)
                (canon lift (core func $i "mul")))
            (instance $math (export "add" (func $add)) (export "mul" (func $mul)))
            (export "demo:calc/math@1.0.0" (instance $math))
        )"#;
        let first = wat::parse_str(wat).unwrap();
        assert!(compile("first.wasm", &first, [1; 32], &engine, &linker).is_ok());
        // The same code with a custom section more: new bytes, each
        // function handed another's code.
        let mut second = first.clone();
        second.extend_from_slice(&[0, 2, 1, b'x']);
        store.swapping.store(true, Ordering::Relaxed);
        let failed = compile("second.wasm", &second, [2; 32], &engine, &linker);
        match failed {
            Err(Error::NotAComponent { origin, reason }) => {
                assert_eq!(origin, "second.wasm");
                assert!(reason.contains("the compiler panicked"), "{reason}");
            }
            Err(other) => panic!("expected a compiler panic, got {other}"),
            Ok(_) => panic!("the wrong code was taken"),
        }
    }

    /// A core module whose memory starts with `bytes` bytes of data, in two
    /// segments.
    fn module(bytes: usize) -> String {
        let half = "x".repeat(bytes / 2);
        let rest = "y".repeat(bytes - bytes / 2);
        format!(
            "(core module (memory 1) (data (i32.const 0) \"{half}\") (data (i32.const 40000) \"{rest}\"))"
        )
    }

    #[test]
    fn initial_data_counts_every_module_nested_or_not() {
        let wat = format!(
            "(component {} (component {} (component {})))",
            module(3000),
            module(2000),
            module(1000)
        );
        let bytes = wat::parse_str(&wat).unwrap();
        let data = initial_data(&bytes);
        // The segments' bytes, and a few of section and segment headers.
        assert!((6000..6000 + 64).contains(&data), "{data}");
    }

    #[test]
    fn initial_data_of_what_is_not_wasm_is_what_was_read() {
        assert_eq!(initial_data(b"not wasm at all"), 0);
        let mut cut = wat::parse_str(format!("(component {})", module(5000))).unwrap();
        cut.truncate(cut.len() / 2);
        assert_eq!(
            initial_data(&cut),
            0,
            "a data section cut short is not counted"
        );
    }
}
