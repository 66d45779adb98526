//! Keeping a directory of components in the registry: load them all at
//! start, then add, reload and remove them as their files change.
//!
//! Beside `NAME.wasm`, a manifest `NAME.toml` grants the plugin directories,
//! environment and limits; a change to it reloads the plugin, and a manifest
//! that does not parse is rejected like a bad component.
//!
//! A file replaces the running instance only once it has been read whole,
//! compiled, instantiated and found to export at least what it exported
//! before. Anything less is *rejected*: the old instance keeps serving, and
//! the next write to the file is tried again, even of the same bytes (what
//! refused them may have been outside the file, a granted directory not
//! there yet: `touch` retries).
//!
//! We react at once to the events that say a write is complete — close after
//! writing, and a rename into place — rather than waiting out a debounce
//! period. A write not yet closed is waited for (on Linux, until it is
//! closed or quiet for two seconds), so a file written in pauses is read
//! once, whole; a manifest moved away or removed is looked at after a short
//! quiet period, so an editor's save reloads once. Reads, the host's own
//! included, are ignored, and bytes identical to what is loaded reload
//! nothing. A component that is a link follows the file it links to: a
//! change to a file here is also a change to every other name here for the
//! same file (hard and symbolic links), and the directory a symbolic link
//! points into is watched too.
//!
//! Loading runs on a few worker threads, never on the thread that follows
//! the directory, and more start whenever files wait while every loader
//! has been on its file for a quarter of a second and plugins are
//! starting (one per start-up under way, up to 64): a plugin whose
//! start-up is slow (it is bounded by the deadline) holds up no other file
//! for long. Changes to one file are handled one at
//! a time, in order; the order of registration stays the order of file
//! names, however the loads finish.
//!
//! Dropping the watcher does not wait for a compile (seconds for an
//! interpreter): a loader still at one finishes it on its own and changes
//! nothing in the registry.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock, RwLockReadGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecursiveMode, Watcher as _};

use crate::error::Error;
use crate::registry::{FileLoader, Registry};
use crate::source::plugin_name;
use crate::subscribers::Subscribers;
use crate::sync::lock;
use crate::version::InterfaceName;

/// How long a file must be quiet, after a change whose completion we did not
/// see, before it is read. Completed writes do not wait for it.
pub const QUIET_PERIOD: Duration = Duration::from_millis(50);

/// How long a file written but not yet closed must be quiet before it is
/// read anyway. On Linux every writer's close is reported, so a write is
/// waited for until it is closed (a writer that pauses between chunks
/// would otherwise have its first half read: for a manifest, a valid
/// half); only a writer that keeps the file open this long is not.
/// Elsewhere closes are not reported, and [`QUIET_PERIOD`] is all there is.
const UNCLOSED_QUIET_PERIOD: Duration = if cfg!(target_os = "linux") {
    Duration::from_secs(2)
} else {
    QUIET_PERIOD
};

/// What the watcher did, as sent to [`Watcher::subscribe`]rs and logged.
///
/// ```no_run
/// # fn main() -> Result<(), hotslot::Error> {
/// use hotslot::{Registry, WatchEvent, Watcher};
/// let mut watcher = Watcher::new(std::sync::Arc::new(Registry::new()?), "plugins");
/// let events = watcher.subscribe();
/// watcher.start()?;
/// for event in events.iter() {
///     match event {
///         WatchEvent::Reloaded { name, timings, .. } => {
///             println!("`{name}` reloaded, compiled in {:?}", timings.compile)
///         }
///         WatchEvent::Rejected { file, reason } => eprintln!("{}: {reason}", file.display()),
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// A file was loaded for the first time (or again after a removal).
    Loaded {
        /// The component file.
        file: PathBuf,
        /// The implementation name: the file stem.
        name: String,
        /// Every interface it was registered for, with its generation.
        interfaces: Vec<(InterfaceName, u64)>,
        /// Where the time went.
        timings: LoadTimings,
    },
    /// A file changed and its new content now serves behind the same slots.
    Reloaded {
        /// The component file.
        file: PathBuf,
        /// The implementation name: the file stem.
        name: String,
        /// Every interface it is registered for, with its new generation.
        interfaces: Vec<(InterfaceName, u64)>,
        /// Where the time went.
        timings: LoadTimings,
    },
    /// A file was deleted or renamed away; its slots stay, empty.
    Removed {
        /// The component file.
        file: PathBuf,
        /// The implementation name: the file stem.
        name: String,
    },
    /// A file's content could not replace what serves; nothing changed.
    Rejected {
        /// The component file.
        file: PathBuf,
        /// Why, naming the file, interface or export concerned.
        reason: String,
    },
}

/// The stages of one load, for the reload-latency figures.
///
/// ```no_run
/// # fn main() -> Result<(), hotslot::Error> {
/// # let mut watcher = hotslot::Watcher::new(std::sync::Arc::new(hotslot::Registry::new()?), "plugins");
/// # let events = watcher.subscribe();
/// use hotslot::WatchEvent;
/// for event in events.iter() {
///     if let WatchEvent::Loaded { name, timings, .. } | WatchEvent::Reloaded { name, timings, .. } = event {
///         let took = timings.read + timings.compile + timings.swap;
///         println!("`{name}` in {took:?}{}", if timings.cached { " (cached)" } else { "" });
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadTimings {
    /// When the watcher started on the file (after any quiet period).
    pub started: Instant,
    /// Reading the file.
    pub read: Duration,
    /// Compiling it (near zero when `cached`).
    pub compile: Duration,
    /// True if the compile cache already held these bytes.
    pub cached: bool,
    /// Instantiating and publishing behind the slots.
    pub swap: Duration,
}

/// Watches a directory of `*.wasm` components and keeps them in a registry.
/// Dropped, it stops at once: a compile under way finishes on its own
/// thread and changes nothing.
///
/// ```no_run
/// # fn main() -> Result<(), hotslot::Error> {
/// use std::sync::Arc;
/// let registry = Arc::new(hotslot::Registry::new()?);
/// let mut watcher = hotslot::Watcher::new(registry.clone(), "plugins");
/// let events = watcher.subscribe();
/// watcher.start()?; // loads every *.wasm, then follows changes
/// for event in events.iter() {
///     println!("{event:?}");
/// }
/// # Ok(()) }
/// ```
pub struct Watcher {
    dir: PathBuf,
    registry: Arc<Registry>,
    subscribers: Arc<Subscribers<WatchEvent>>,
    progress: Arc<Progress>,
    running: Option<Running>,
}

struct Running {
    messages: Sender<Message>,
    shared: Arc<Shared>,
    /// The thread following the directory. The loaders are not joined:
    /// see [`Shared::live`].
    dispatcher: JoinHandle<()>,
}

enum Message {
    Fs(notify::Result<notify::Event>),
    /// Load every component in the directory, in file-name order.
    Scan,
    /// A worker is done with a file.
    Done(PathBuf),
    /// A worker's reload of a file was refused for now (its instance busy
    /// past the deadline): look at it again after [`RETRY_AFTER`].
    Retry(PathBuf),
    /// A loader started beyond the first ones, idle for [`IDLE_LOADER`],
    /// has ended.
    LoaderGone,
    Stop,
}

/// What is under way: files loading or waiting out their quiet period (and
/// what each will export, once read), so that callers can wait until
/// the watcher has caught up, or until a file that matters to them has.
#[derive(Default)]
struct Progress {
    state: Mutex<Underway>,
    changed: Condvar,
}

#[derive(Default)]
struct Underway {
    /// Jobs and quiet periods not yet over, the initial scan included.
    busy: usize,
    /// By plugin name: how many of those are its, and what its new content
    /// exports, once read (then once compiled).
    files: HashMap<String, (usize, Option<Vec<InterfaceName>>)>,
    /// Work not about one file yet (the initial scan, until it has listed
    /// the directory).
    unnamed: usize,
    /// Counts changes, for waiting on the next one.
    version: u64,
    /// True once nothing was under way for the first time: the directory's
    /// first load is over.
    settled: bool,
}

impl Progress {
    fn update(&self, f: impl FnOnce(&mut Underway)) {
        let mut state = lock(&self.state);
        f(&mut state);
        state.version += 1;
        self.changed.notify_all();
    }

    fn begin(&self, name: Option<&str>) {
        self.update(|state| {
            state.busy += 1;
            match name {
                Some(name) => state.files.entry(name.to_string()).or_default().0 += 1,
                None => state.unnamed += 1,
            }
        });
    }

    fn end(&self, name: Option<&str>) {
        self.update(|state| {
            state.busy = state.busy.saturating_sub(1);
            state.settled |= state.busy == 0;
            match name {
                Some(name) => {
                    if let Some(file) = state.files.get_mut(name) {
                        file.0 = file.0.saturating_sub(1);
                        if file.0 == 0 {
                            state.files.remove(name);
                        }
                    }
                }
                None => state.unnamed = state.unnamed.saturating_sub(1),
            }
        });
    }

    fn exports_known(&self, name: &str, exports: Vec<InterfaceName>) {
        self.update(|state| {
            if let Some(file) = state.files.get_mut(name) {
                file.1 = Some(exports);
            }
        });
    }

    fn is_busy(&self) -> bool {
        lock(&self.state).busy > 0
    }

    fn wait_until_idle(&self) {
        let state = lock(&self.state);
        let _idle = self
            .changed
            .wait_while(state, |state| state.busy > 0)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }

    /// Waits until the directory's first load is over, at most `timeout`.
    fn wait_settled(&self, timeout: Duration) {
        let state = lock(&self.state);
        let _settled = self
            .changed
            .wait_timeout_while(state, timeout, |state| !state.settled)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }

    /// Waits until nothing is under way, at most `timeout`; true if so.
    fn wait_idle(&self, timeout: Duration) -> bool {
        let state = lock(&self.state);
        let (state, _) = self
            .changed
            .wait_timeout_while(state, timeout, |state| state.busy > 0)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.busy == 0
    }
}

/// A file being loaded, as [`Watcher::loading`] reports it.
///
/// ```no_run
/// # fn main() -> Result<(), hotslot::Error> {
/// # let mut watcher = hotslot::Watcher::new(std::sync::Arc::new(hotslot::Registry::new()?), "plugins");
/// watcher.start_in_background()?;
/// if let (Some(loading), _) = watcher.loading() {
///     for file in loading {
///         println!("`{}` is loading", file.name);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Loading {
    /// The plugin's name.
    pub name: String,
    /// What its new content exports: `None` until the file is read (its
    /// export section names them; compiling it confirms them).
    pub exports: Option<Vec<InterfaceName>>,
}

impl Watcher {
    /// A watcher for `dir`, not yet started: subscribe first to see the
    /// initial loads.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// use std::sync::Arc;
    /// let registry = Arc::new(hotslot::Registry::new()?);
    /// let mut watcher = hotslot::Watcher::new(registry.clone(), "plugins");
    /// watcher.start()?;
    /// let greet = registry.get("demo:greeter/greet@1")?; // follows the files from now on
    /// # Ok(()) }
    /// ```
    pub fn new(registry: Arc<Registry>, dir: impl AsRef<Path>) -> Self {
        Watcher {
            dir: dir.as_ref().to_path_buf(),
            registry,
            subscribers: Arc::new(Subscribers::new("the watcher's loads")),
            progress: Arc::default(),
            running: None,
        }
    }

    /// A channel of everything the watcher does from now on. Drop the
    /// receiver to unsubscribe. It holds up to 1,024 events unread; a
    /// subscriber that falls that far behind misses newer ones until it
    /// reads (the log says so), and never holds up the watcher.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// # let mut watcher = hotslot::Watcher::new(std::sync::Arc::new(hotslot::Registry::new()?), "plugins");
    /// let events = watcher.subscribe(); // before `start`, to hear the first loads too
    /// watcher.start()?;
    /// while let Ok(event) = events.try_recv() {
    ///     println!("{event:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn subscribe(&self) -> Receiver<WatchEvent> {
        self.subscribers.subscribe()
    }

    /// Starts watching, then loads every `*.wasm` in the directory (several
    /// at once, registered in file-name order), and returns once each has
    /// loaded or been rejected. Later changes are handled on threads of the
    /// watcher's, never on callers' threads.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// use std::sync::Arc;
    /// let registry = Arc::new(hotslot::Registry::new()?);
    /// let mut watcher = hotslot::Watcher::new(registry.clone(), "plugins");
    /// watcher.start()?; // every plugin in the directory has loaded (or been refused)
    /// println!("{} implementations", registry.list().len());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`] if the directory cannot be watched.
    pub fn start(&mut self) -> Result<(), Error> {
        let started = self.running.is_some();
        self.start_in_background()?;
        if !started {
            self.progress.wait_until_idle();
        }
        Ok(())
    }

    /// Like [`Watcher::start`], but returns at once, while the directory
    /// loads: plugins become available one by one as they load.
    /// [`Watcher::wait_idle`] waits for them.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// use std::{sync::Arc, time::Duration};
    /// let registry = Arc::new(hotslot::Registry::new()?);
    /// let mut watcher = hotslot::Watcher::new(registry.clone(), "plugins");
    /// watcher.start_in_background()?; // serve at once; plugins arrive as they compile
    /// if !watcher.wait_idle(Duration::from_secs(30)) {
    ///     println!("still compiling after 30 s");
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`] if the directory cannot be watched, or is no
    /// directory.
    pub fn start_in_background(&mut self) -> Result<(), Error> {
        if self.running.is_some() {
            return Ok(());
        }
        let dir = self.dir.canonicalize().map_err(|source| Error::Io {
            path: self.dir.clone(),
            source,
        })?;
        // A file would be watched too, and every scan of it fail: a host
        // serving nothing, quietly.
        if !dir.is_dir() {
            return Err(Error::Io {
                path: self.dir.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotADirectory,
                    "not a directory: a watcher follows the directory its plugins are in",
                ),
            });
        }
        let (sender, receiver) = channel();
        let fs_sender = sender.clone();
        let notify = notify::recommended_watcher(move |event| {
            let _ = fs_sender.send(Message::Fs(event));
        })
        .and_then(|mut w| w.watch(&dir, RecursiveMode::NonRecursive).map(|()| w))
        .map_err(|e| Error::Io {
            path: dir.clone(),
            source: std::io::Error::other(format!("cannot watch: {e}")),
        })?;
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            registry: Arc::downgrade(&self.registry),
            loader: self.registry.file_loader(),
            subscribers: self.subscribers.clone(),
            files: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
            progress: self.progress.clone(),
            starting: Default::default(),
            live: RwLock::new(true),
        });
        let (jobs, job_queue) = channel::<PathBuf>();
        let job_queue = Arc::new(Mutex::new(job_queue));
        let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name)
                .spawn(f)
                .map_err(|source| Error::Io {
                    path: dir.clone(),
                    source,
                })
        };
        let loader = {
            let (shared, job_queue, done) = (shared.clone(), job_queue.clone(), sender.clone());
            move |i: usize| {
                let (shared, job_queue, done) = (shared.clone(), job_queue.clone(), done.clone());
                let extra = i >= workers();
                std::thread::Builder::new()
                    .name(format!("hotslot-load-{i}"))
                    .spawn(move || work(&shared, &job_queue, &done, extra))
            }
        };
        let loaders = workers();
        for i in 0..loaders {
            loader(i).map_err(|source| Error::Io {
                path: dir.clone(),
                source,
            })?;
        }
        // Watching began above, before the first scan: nothing written
        // during it is lost.
        self.progress.begin(None);
        let _ = sender.send(Message::Scan);
        let mut dispatcher = Dispatcher {
            shared: shared.clone(),
            progress: self.progress.clone(),
            jobs,
            in_flight: HashMap::new(),
            pending: HashMap::new(),
            notify,
            gone: false,
            loaders,
            more_loaders: Box::new(loader),
            last_progress: Instant::now(),
            link_dirs: Vec::new(),
            link_targets: Default::default(),
            link_dirs_gone: Vec::new(),
        };
        let dispatcher = spawn(
            format!("hotslot-watch {}", dir.display()),
            // Its end lets the loaders go: the job queue goes with it.
            Box::new(move || dispatcher.run(receiver)),
        );
        let dispatcher = match dispatcher {
            Ok(dispatcher) => dispatcher,
            Err(e) => {
                // The loaders started stop with the dispatcher gone.
                *shared.live.write().unwrap_or_else(PoisonError::into_inner) = false;
                return Err(e);
            }
        };
        self.running = Some(Running {
            messages: sender,
            shared,
            dispatcher,
        });
        Ok(())
    }

    /// Waits until every change seen so far has been handled (loaded or
    /// rejected), at most `timeout`; true if it was.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let mut watcher = hotslot::Watcher::new(std::sync::Arc::new(hotslot::Registry::new()?), "plugins");
    /// watcher.start_in_background()?;
    /// // What was in the directory at the start (and any change seen since)
    /// // has loaded or been refused. (A change made after this call may not
    /// // have been seen yet: wait for its event from `subscribe`.)
    /// let done = watcher.wait_idle(std::time::Duration::from_secs(60));
    /// # let _ = done;
    /// # Ok(()) }
    /// ```
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        self.progress.wait_idle(timeout)
    }

    /// Waits until the directory's first load is over (every file there at
    /// the start loaded or refused), at most `timeout`; at once after it.
    pub(crate) fn wait_first_load(&self, timeout: Duration) {
        self.progress.wait_settled(timeout);
    }

    /// True while files are loading (or waiting out their quiet period).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// # let mut watcher = hotslot::Watcher::new(std::sync::Arc::new(hotslot::Registry::new()?), "plugins");
    /// # watcher.start_in_background()?;
    /// let status = if watcher.is_busy() { "loading" } else { "ready" };
    /// # let _ = status;
    /// # Ok(()) }
    /// ```
    pub fn is_busy(&self) -> bool {
        self.progress.is_busy()
    }

    /// The plugins loading now (or about to), and a number that changes
    /// whenever that list does (see [`Watcher::wait_change`]). While the
    /// directory is still being listed, at start, `None`: any file may be
    /// about to load.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// # let mut watcher = hotslot::Watcher::new(std::sync::Arc::new(hotslot::Registry::new()?), "plugins");
    /// # watcher.start_in_background()?;
    /// match watcher.loading() {
    ///     (None, _) => println!("still listing the directory"),
    ///     (Some(files), _) => println!("{} files loading", files.len()),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn loading(&self) -> (Option<Vec<Loading>>, u64) {
        let state = lock(&self.progress.state);
        let loading = state
            .files
            .iter()
            .map(|(name, (_, exports))| Loading {
                name: name.clone(),
                exports: exports.clone(),
            })
            .collect();
        let known = state.unnamed == 0;
        (known.then_some(loading), state.version)
    }

    /// Waits until what is loading changes from what `version` (from
    /// [`Watcher::loading`]) saw, at most `timeout`.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// # let mut watcher = hotslot::Watcher::new(std::sync::Arc::new(hotslot::Registry::new()?), "plugins");
    /// # watcher.start_in_background()?;
    /// use std::time::Duration;
    /// // Wait (at most a minute) until `calc` is no longer loading.
    /// loop {
    ///     let (loading, version) = watcher.loading();
    ///     let calc_loading = loading.is_none_or(|files| files.iter().any(|f| f.name == "calc"));
    ///     if !calc_loading {
    ///         break;
    ///     }
    ///     watcher.wait_change(version, Duration::from_secs(60));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn wait_change(&self, version: u64, timeout: Duration) {
        let state = lock(&self.progress.state);
        let _changed = self
            .progress
            .changed
            .wait_timeout_while(state, timeout, |state| state.version == version)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }

    /// Why the file of the plugin `name` was refused, if refusing it is the
    /// last thing the watcher did with it (a load or a removal since
    /// clears it). A refused reload leaves the old version serving: this
    /// says why the new one does not.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// # let mut watcher = hotslot::Watcher::new(std::sync::Arc::new(hotslot::Registry::new()?), "plugins");
    /// watcher.start()?;
    /// if let Some(reason) = watcher.refused("calc") {
    ///     eprintln!("calc.wasm was refused: {reason}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn refused(&self, name: &str) -> Option<String> {
        let running = self.running.as_ref()?;
        lock(&running.shared.refused).get(name).cloned()
    }

    /// The plugins whose files stand refused now, by name, with why (as
    /// [`Watcher::refused`] gives each).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// # let mut watcher = hotslot::Watcher::new(std::sync::Arc::new(hotslot::Registry::new()?), "plugins");
    /// watcher.start()?;
    /// for (name, reason) in watcher.refusals() {
    ///     eprintln!("{name}: {reason}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn refusals(&self) -> Vec<(String, String)> {
        let Some(running) = self.running.as_ref() else {
            return Vec::new();
        };
        let mut all: Vec<(String, String)> = lock(&running.shared.refused)
            .iter()
            .map(|(name, why)| (name.clone(), why.clone()))
            .collect();
        all.sort();
        all
    }

    /// The directory watched.
    ///
    /// ```
    /// # fn main() -> Result<(), hotslot::Error> {
    /// let watcher = hotslot::Watcher::new(std::sync::Arc::new(hotslot::Registry::new()?), "plugins");
    /// assert_eq!(watcher.dir(), std::path::Path::new("plugins"));
    /// # Ok(()) }
    /// ```
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            // Waits for a loader changing the registry now (a swap; a
            // start-up and any canary replay, each call bounded by the
            // deadline), not for a compile.
            *running
                .shared
                .live
                .write()
                .unwrap_or_else(PoisonError::into_inner) = false;
            let _ = running.messages.send(Message::Stop);
            let _ = running.dispatcher.join();
        }
    }
}

/// How long a reload refused for now (the plugin's instance busy past the
/// deadline, or the thread's own) waits before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What became of a look at a file.
enum Synced {
    /// Loaded, reloaded, removed, unchanged, or refused for good (until
    /// the file changes).
    Done,
    /// Refused for now: to be tried again.
    Again,
}

/// How often a watcher whose directory went away looks for it, when no
/// event says it is back (its parent may have gone too).
const LOOK_AGAIN: Duration = Duration::from_secs(1);

/// Counts a plugin's start-up in [`Shared::starting`] while it lives.
struct Starting<'a>(&'a AtomicUsize);

impl<'a> Starting<'a> {
    fn count(starting: &'a AtomicUsize) -> Self {
        starting.fetch_add(1, Ordering::Relaxed);
        Starting(starting)
    }
}

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether `path` is a symbolic link, or a file with other hard links.
fn is_link(path: &Path) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    let linked = std::os::unix::fs::MetadataExt::nlink(&meta) > 1;
    #[cfg(not(unix))]
    let linked = false;
    meta.file_type().is_symlink() || linked
}

/// How long every loader may be on its file, with files waiting, before
/// another loader starts.
const SLOW_LOAD: Duration = Duration::from_millis(250);

/// Loader threads at most. Beyond the first ones, loaders start only for
/// start-ups that hold theirs up (a start function or `on-start` spinning
/// to its deadline takes a thread, not the cores' compiling: a big
/// component's compile waits for the one pool such compiles share), and
/// end once idle for [`IDLE_LOADER`]. Files beyond this many slow
/// start-ups wait for one to end: a directory of a thousand that spin is
/// a thousand deadlines, not a thousand threads. Those that spin share the
/// cores with everything else meanwhile, each to its deadline.
const MOST_LOADERS: usize = 64;

/// Loader threads at first: as many as the machine has cores, and at least
/// two; more start when every one is held up (see [`SLOW_LOAD`]).
fn workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8)
}

/// How long a loader started beyond the first ones (for start-ups that
/// held the others up) waits for a file before it ends.
const IDLE_LOADER: Duration = Duration::from_secs(30);

/// A loader thread: takes files off the queue until the queue goes; an
/// `extra` one also ends once idle for [`IDLE_LOADER`].
fn work(shared: &Shared, queue: &Mutex<Receiver<PathBuf>>, done: &Sender<Message>, extra: bool) {
    loop {
        let next = match extra {
            false => lock(queue).recv().ok(),
            true => match lock(queue).recv_timeout(IDLE_LOADER) {
                Ok(path) => Some(path),
                Err(RecvTimeoutError::Timeout) => {
                    let _ = done.send(Message::LoaderGone);
                    return;
                }
                Err(RecvTimeoutError::Disconnected) => None,
            },
        };
        let Some(path) = next else { return };
        // A panic while loading (a bug, here or in a crate below) rejects
        // this file; the thread, and the wait for its `Done`, go on.
        let synced = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shared.sync(&path)));
        match synced {
            Ok(Synced::Done) => {}
            Ok(Synced::Again) => {
                let _ = done.send(Message::Retry(path.clone()));
            }
            Err(panic) => {
                let why = crate::error::panic_text(&*panic);
                let reason = format!("{}: loading it panicked: {why}", path.display());
                shared.reject(&path, reason);
            }
        }
        if done.send(Message::Done(path)).is_err() {
            return;
        }
    }
}

/// The registry, reached while the watcher lives: see [`Shared::while_live`].
struct Live<'a> {
    /// Dropped before the hold below, so that the watcher's drop never
    /// leaves the last reference to the registry with a loader.
    registry: Arc<Registry>,
    _live: RwLockReadGuard<'a, bool>,
}

/// What the dispatcher and the loaders share.
struct Shared {
    dir: PathBuf,
    /// Reached only while the watcher lives (see [`Shared::while_live`]):
    /// a compile still running after its drop keeps no registry alive.
    registry: Weak<Registry>,
    /// Reads and compiles files as the registry does.
    loader: FileLoader,
    subscribers: Arc<Subscribers<WatchEvent>>,
    /// By implementation name (file stem).
    files: Mutex<HashMap<String, FileState>>,
    /// Why each plugin's file was refused, by name, while that is the
    /// last the watcher did with it.
    refused: Mutex<HashMap<String, String>>,
    progress: Arc<Progress>,
    /// Loaders starting a plugin now (compiled, instantiating it and
    /// running its start-up, which may take up to the deadline).
    starting: AtomicUsize,
    /// True until the watcher is dropped. A loader reaches the registry
    /// only with it read-held and true (see [`Shared::while_live`]); the
    /// drop sets it write-held, so once the drop returns no loader
    /// changes anything, and one still compiling throws its work away.
    live: RwLock<bool>,
}

struct FileState {
    /// The last attempt, loaded or rejected: its content (component and
    /// manifest) and the file's metadata then ([`attempt_key`]).
    tried: [u8; 32],
    /// The content that serves, if any.
    serving: Option<[u8; 32]>,
}

/// Follows the directory's events and hands files to the loaders, one job
/// per file at a time; owned by the watcher's thread.
struct Dispatcher {
    shared: Arc<Shared>,
    progress: Arc<Progress>,
    jobs: Sender<PathBuf>,
    /// Files a loader has now, and whether they changed again meanwhile.
    in_flight: HashMap<PathBuf, bool>,
    /// Files changed without a sign of completion, and when to read them.
    pending: HashMap<PathBuf, Instant>,
    /// Watches the directory (its parent while it is gone).
    notify: notify::RecommendedWatcher,
    /// Whether the directory was removed or moved away.
    gone: bool,
    /// Loader threads running.
    loaders: usize,
    /// Starts loader thread number `i`.
    more_loaders: Box<dyn Fn(usize) -> std::io::Result<JoinHandle<()>> + Send>,
    /// When a loader last finished a file (or one was added).
    last_progress: Instant,
    /// Directories outside this one watched because a component here is a
    /// symbolic link into them.
    link_dirs: Vec<PathBuf>,
    /// The files (their full paths, links resolved) that components here
    /// are symbolic links to.
    link_targets: std::collections::HashSet<PathBuf>,
    /// Directories watched for links that were removed or moved away (a
    /// `cargo clean`): looked for now and then, and watched again when back.
    link_dirs_gone: Vec<PathBuf>,
}

impl Dispatcher {
    fn run(&mut self, messages: Receiver<Message>) {
        loop {
            let mut timeout = self
                .pending
                .values()
                .min()
                .map(|due| due.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_secs(3600));
            if self.gone || !self.link_dirs_gone.is_empty() {
                // Its parent may have gone too, and with it any event that
                // would say the directory is back: look now and then.
                timeout = timeout.min(LOOK_AGAIN);
            }
            if self.queued() > 0 && self.loaders < MOST_LOADERS {
                // Once due, looked at again every SLOW_LOAD: loaders busy
                // compiling (no start-up under way) add none, and a wait of
                // zero would spin.
                let due =
                    (self.last_progress + SLOW_LOAD).saturating_duration_since(Instant::now());
                timeout = timeout.min(if due.is_zero() { SLOW_LOAD } else { due });
            }
            match messages.recv_timeout(timeout) {
                Ok(Message::Fs(Ok(event))) => self.on_event(event),
                Ok(Message::Fs(Err(e))) => tracing::warn!("file watcher error: {e}"),
                Ok(Message::Scan) => {
                    self.scan();
                    self.progress.end(None);
                }
                Ok(Message::Done(path)) => self.done(path),
                Ok(Message::LoaderGone) => self.loaders = self.loaders.saturating_sub(1),
                Ok(Message::Retry(path)) => self.retry(path),
                Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) if self.gone => self.look_for_directory(),
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.sync_due();
            self.grow_if_stuck();
            self.look_for_link_dirs();
        }
    }

    /// If `path` is a symbolic link to a file in another directory, watches
    /// that directory too: a build that writes the file there (a plugin's
    /// `target/` directory linked into this one) reloads the plugin.
    fn follow_link(&mut self, path: &Path) {
        let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        // Only a link to a regular file: one to a device (refused when
        // loaded) must not have its directory (`/dev`) watched.
        let Some(target) = is_link
            .then(|| std::fs::canonicalize(path).ok())
            .flatten()
            .filter(|target| target.is_file())
        else {
            return;
        };
        let Some(dir) = target.parent().map(Path::to_path_buf) else {
            return;
        };
        self.link_targets.insert(target);
        if dir == self.shared.dir
            || self.link_dirs.contains(&dir)
            || self.link_dirs_gone.contains(&dir)
        {
            return;
        }
        match self.notify.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => self.link_dirs.push(dir),
            Err(e) => tracing::warn!(
                "cannot watch {} for {} links to: {e}",
                dir.display(),
                path.display()
            ),
        }
    }

    /// A directory watched for links went (removed, or moved away): its
    /// watch is dropped, and the directory looked for until it is back.
    fn link_dir_gone(&mut self, dir: &Path) {
        let _ = self.notify.unwatch(dir);
        self.link_dirs.retain(|d| d != dir);
        if !self.link_dirs_gone.iter().any(|d| d == dir) {
            self.link_dirs_gone.push(dir.to_path_buf());
        }
    }

    /// Watches again the directories watched for links that are back, and
    /// looks at the links whose file is there: a build after a `cargo
    /// clean` wrote it while nothing watched. A link whose file is not back
    /// yet keeps its plugin serving; the file's arrival is seen.
    fn look_for_link_dirs(&mut self) {
        let back: Vec<PathBuf> = self
            .link_dirs_gone
            .iter()
            .filter(|dir| dir.is_dir())
            .cloned()
            .collect();
        for dir in back {
            self.link_dirs_gone.retain(|d| *d != dir);
            if let Err(e) = self.notify.watch(&dir, RecursiveMode::NonRecursive) {
                tracing::warn!("cannot watch {} again: {e}", dir.display());
                continue;
            }
            self.link_dirs.push(dir.clone());
            let targets: Vec<PathBuf> = self
                .link_targets
                .iter()
                .filter(|t| t.parent() == Some(dir.as_path()) && t.is_file())
                .cloned()
                .collect();
            for target in targets {
                for link in self.shared.names_of(&target) {
                    self.schedule(link);
                }
            }
        }
    }

    /// Files handed to the loaders that none has taken yet.
    fn queued(&self) -> usize {
        self.in_flight.len().saturating_sub(self.loaders)
    }

    /// More loaders when files wait while every loader has been on its
    /// file for [`SLOW_LOAD`] and some are starting a plugin: one more per
    /// start-up under way (so a run of files that spin at start doubles
    /// the loaders every `SLOW_LOAD`, and the file after them is not held
    /// up for a deadline per few of them). Compiles alone do not count:
    /// they already use every core, and more at once would only add to the
    /// memory.
    fn grow_if_stuck(&mut self) {
        let starting = self.shared.starting.load(Ordering::Relaxed);
        let stuck = self.queued() > 0 && self.last_progress.elapsed() >= SLOW_LOAD && starting > 0;
        if !stuck {
            return;
        }
        let more = starting
            .min(self.queued())
            .min(MOST_LOADERS.saturating_sub(self.loaders));
        for _ in 0..more {
            match (self.more_loaders)(self.loaders) {
                Ok(_) => self.loaders += 1,
                Err(e) => {
                    tracing::warn!("cannot start another loader thread: {e}");
                    break;
                }
            }
        }
        self.last_progress = Instant::now();
    }

    /// The directory itself was removed or moved away (`rm -rf dir && mkdir
    /// dir`, `mv dir old && mkdir dir`), or, while it is gone, something
    /// changed beside it. Its watch followed the old directory (by inode):
    /// the parent is watched until a directory is back at the path, which
    /// is then watched and looked at afresh. Until then, what was loaded
    /// serves on.
    fn on_directory_event(&mut self, event: &notify::Event) {
        let dir = self.shared.dir.clone();
        let away = matches!(
            event.kind,
            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
        );
        // Even with a directory at the path again already (made before this
        // event was read), the watch is on the one that left.
        if !self.gone && away {
            self.gone = true;
            // Files waiting out their quiet period are looked at with the
            // rest when the directory is back.
            let waiting: Vec<PathBuf> = self.pending.keys().cloned().collect();
            for path in waiting {
                self.end_pending(&path);
            }
            let _ = self.notify.unwatch(&dir);
            tracing::warn!("{} went away: waiting for it to come back", dir.display());
            if let Some(parent) = dir.parent() {
                if let Err(e) = self.notify.watch(parent, RecursiveMode::NonRecursive) {
                    tracing::warn!("cannot watch {} for it: {e}", parent.display());
                }
            }
        }
        self.look_for_directory();
    }

    /// Whether the directory that went away is back; if so, watches it
    /// again and looks at it afresh.
    fn look_for_directory(&mut self) {
        let dir = self.shared.dir.clone();
        // Checked after watching the parent too: it may be back already.
        if self.gone && dir.is_dir() {
            if let Some(parent) = dir.parent() {
                let _ = self.notify.unwatch(parent);
            }
            match self.notify.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.gone = false;
                    tracing::info!("{} is back: looking at it afresh", dir.display());
                    self.rescan();
                }
                Err(e) => tracing::warn!("cannot watch {} again: {e}", dir.display()),
            }
        }
    }

    /// Looks at every file again: those in the directory, and those loaded
    /// from it that may have left.
    fn rescan(&mut self) {
        self.scan();
        let known: Vec<String> = lock(&self.shared.files).keys().cloned().collect();
        for name in known {
            let file = self.shared.dir.join(format!("{name}.wasm"));
            if !file.exists() {
                self.schedule(file);
            }
        }
    }

    /// Every component in the directory, registered in file-name order:
    /// each name's place is taken before any load begins.
    fn scan(&mut self) {
        let dir = &self.shared.dir;
        let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) => {
                let reason = format!("cannot list {}: {e}", dir.display());
                self.shared.reject(dir, reason);
                return;
            }
        };
        files.retain(|p| self.shared.is_component_file(p));
        files.sort();
        if let Some(registry) = self.shared.registry.upgrade() {
            for name in files.iter().filter_map(|file| plugin_name(file).ok()) {
                registry.reserve(&name);
            }
        }
        for file in files {
            self.schedule(file);
        }
    }

    fn on_event(&mut self, event: notify::Event) {
        if self.gone || event.paths.iter().any(|p| *p == self.shared.dir) {
            self.on_directory_event(&event);
            return;
        }
        // The kernel's queue overflowed: what changed meanwhile is unknown.
        if event.need_rescan() {
            tracing::warn!(
                "missed file events in {}: looking again",
                self.shared.dir.display()
            );
            self.rescan();
            return;
        }
        let complete = match event.kind {
            // Our own reads (and anyone's) change nothing.
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
            EventKind::Access(_) => return,
            EventKind::Modify(ModifyKind::Metadata(_)) => return,
            // A rename, a removal: the file as it is now tells what to do
            // (a component gone is removed; a manifest gone reloads its
            // plugin without grants).
            EventKind::Modify(ModifyKind::Name(_)) | EventKind::Remove(_) => true,
            _ => false,
        };
        let away = matches!(
            event.kind,
            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
        );
        let closed = matches!(
            event.kind,
            EventKind::Access(AccessKind::Close(AccessMode::Write))
        );
        for path in &event.paths {
            if away && self.link_dirs.contains(path) {
                self.link_dir_gone(path);
                continue;
            }
            // A link (`ln`, `ln -s`, cargo putting its output in place) is
            // whole once made; no close follows it.
            let complete =
                complete || (matches!(event.kind, EventKind::Create(_)) && is_link(path));
            let linked_to = self.shared.is_component_file(path) || self.link_targets.contains(path);
            if complete && linked_to {
                // The same file under other names here: hard links, and
                // symbolic links (into this directory or out of it).
                for other in self.shared.names_of(path) {
                    self.end_pending(&other);
                    self.schedule(other);
                }
            }
            let Some(component) = self.shared.component_for(path) else {
                continue;
            };
            let quiet = match complete {
                // A manifest moved or removed is most often an editor's save
                // (the old one moved aside, the new one written at once):
                // one reload for both, not one without a manifest between,
                // nor one of the new manifest half-written (whether it is
                // there by now says nothing of whether it is whole).
                true if path != &component && !closed => QUIET_PERIOD,
                true => {
                    self.end_pending(&component);
                    self.schedule(component);
                    continue;
                }
                false => UNCLOSED_QUIET_PERIOD,
            };
            if !self.pending.contains_key(&component) {
                self.progress.begin(name_of(&component).as_deref());
            }
            self.pending.insert(component, Instant::now() + quiet);
        }
    }

    /// Hands `path` to a loader, or, if one has it now, marks it for
    /// another look once that one is done.
    fn schedule(&mut self, path: PathBuf) {
        if let Some(again) = self.in_flight.get_mut(&path) {
            *again = true;
            return;
        }
        self.follow_link(&path);
        let name = name_of(&path);
        self.progress.begin(name.as_deref());
        if self.queued() == 0 {
            // The first to wait: waiting is counted from now.
            self.last_progress = Instant::now();
        }
        self.in_flight.insert(path.clone(), false);
        if self.jobs.send(path).is_err() {
            self.progress.end(name.as_deref());
        }
    }

    fn done(&mut self, path: PathBuf) {
        self.last_progress = Instant::now();
        let name = name_of(&path);
        match self.in_flight.remove(&path) {
            Some(true) => {
                // Changed while it loaded: look again.
                self.schedule(path);
                self.progress.end(name.as_deref());
            }
            Some(false) => self.progress.end(name.as_deref()),
            None => {}
        }
    }

    /// Looks at `path` again after [`RETRY_AFTER`] (or sooner, if it
    /// changes meanwhile).
    fn retry(&mut self, path: PathBuf) {
        if self.gone || self.pending.contains_key(&path) {
            return;
        }
        self.progress.begin(name_of(&path).as_deref());
        self.pending.insert(path, Instant::now() + RETRY_AFTER);
    }

    fn end_pending(&mut self, component: &Path) {
        if self.pending.remove(component).is_some() {
            self.progress.end(name_of(component).as_deref());
        }
    }

    fn sync_due(&mut self) {
        let now = Instant::now();
        let mut due: Vec<PathBuf> = self
            .pending
            .iter()
            .filter(|(_, when)| **when <= now)
            .map(|(path, _)| path.clone())
            .collect();
        due.sort();
        for path in due {
            self.end_pending(&path);
            self.schedule(path);
        }
    }
}

impl Shared {
    /// The registry, and a hold on the watcher's life while a loader
    /// changes it; `None` once the watcher is dropped. Taken once per
    /// change, never while held: a second read waits behind a drop that
    /// waits for the first.
    fn while_live(&self) -> Option<Live<'_>> {
        let live = self.live.read().unwrap_or_else(PoisonError::into_inner);
        if !*live {
            return None;
        }
        Some(Live {
            registry: self.registry.upgrade()?,
            _live: live,
        })
    }

    /// The component a changed file is about: itself, or for a manifest
    /// `NAME.toml`, `NAME.wasm` (a manifest change reloads its plugin).
    fn component_for(&self, path: &Path) -> Option<PathBuf> {
        if self.is_component_file(path) {
            return Some(path.to_path_buf());
        }
        let is_manifest = path.parent() == Some(self.dir.as_path())
            && path.extension().is_some_and(|e| e == "toml");
        let component = path.with_extension("wasm");
        (is_manifest && component.exists()).then_some(component)
    }

    /// The components here, other than `path`, that are the same file as
    /// `path` now (by device and inode, links followed): hard links to it
    /// and symbolic links to it. A file's change is seen under the name
    /// written to only.
    fn names_of(&self, path: &Path) -> Vec<PathBuf> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let Ok(changed) = std::fs::metadata(path) else {
                return Vec::new();
            };
            let Ok(listing) = std::fs::read_dir(&self.dir) else {
                return Vec::new();
            };
            listing
                .flatten()
                .map(|entry| entry.path())
                .filter(|other| other != path && self.is_component_file(other))
                .filter(|other| {
                    std::fs::metadata(other)
                        .is_ok_and(|m| m.dev() == changed.dev() && m.ino() == changed.ino())
                })
                .collect()
        }
        #[cfg(not(unix))]
        {
            let _ = path;
            Vec::new()
        }
    }

    /// A file that left: remove its plugin (its slots stay).
    fn forget(&self, path: &Path) {
        let Ok(name) = plugin_name(path) else { return };
        // Gone, it is refused no more.
        lock(&self.refused).remove(&name);
        let Some(state) = lock(&self.files).remove(&name) else {
            return;
        };
        if state.serving.is_none() {
            return;
        }
        let Some(live) = self.while_live() else {
            return;
        };
        if let Err(e) = live.registry.remove_plugin(&name) {
            tracing::warn!("removing {}: {e}", path.display());
        }
        self.publish(WatchEvent::Removed {
            file: path.to_path_buf(),
            name,
        });
    }

    /// Brings the registry in line with the file as it is now.
    fn sync(&self, path: &Path) -> Synced {
        let started = Instant::now();
        let name = match plugin_name(path) {
            Ok(name) => name,
            Err(e) => {
                self.reject(path, e.to_string());
                return Synced::Done;
            }
        };
        // Taken before the read: a refusal is then known by metadata as old
        // as what was read, or older. Taken after, a file replaced between
        // the two would lend its metadata to the old content's refusal, and
        // a second look at unchanged content would report it again.
        let metadata = std::fs::metadata(path).ok();
        let read = self.loader.read(path);
        // The manifest is part of what is loaded: a change to either reloads.
        // A file refused before it was read whole is known by the refusal
        // and its metadata instead.
        let hash = match &read {
            Ok(source) => source.hash(),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                self.forget(path);
                return Synced::Done;
            }
            Err(e) => refusal_hash(metadata.as_ref(), e),
        };
        {
            // The same write seen again (one write makes several events), or
            // the content that serves (back after a half-written version was
            // refused): nothing to do. Refused content written again is a
            // new attempt.
            let attempt = attempt_key(&hash, metadata.as_ref());
            let mut files = lock(&self.files);
            let state = files.entry(name.clone()).or_insert(FileState {
                tried: [0; 32],
                serving: None,
            });
            let back = state.serving == Some(hash);
            let unchanged = state.tried == attempt || back;
            state.tried = attempt;
            drop(files);
            if back {
                // What serves is what is there again: no refusal stands.
                lock(&self.refused).remove(&name);
            }
            if unchanged {
                return Synced::Done;
            }
        }
        let source = match read {
            Ok(source) => source,
            Err(e) => {
                self.reject(path, e.to_string());
                return Synced::Done;
            }
        };
        let read = started.elapsed();
        // Known before the compile (seconds for an interpreter), so that
        // requests for what this file does not export need not wait for it.
        if let Some(exports) = crate::loader::declared_exports(&source.bytes) {
            self.progress.exports_known(&name, exports);
        }
        let compiling = Instant::now();
        let compiled = self.loader.load_source(&source);
        let Some(live) = self.while_live() else {
            return Synced::Done;
        };
        let (plugin, cached) = match compiled {
            Ok(compiled) => compiled,
            Err(e) => {
                self.reject_live(&live, path, e.to_string());
                return Synced::Done;
            }
        };
        let exports = plugin.exports().iter().map(|e| e.name().clone()).collect();
        self.progress.exports_known(&name, exports);
        let added = {
            let _starting = Starting::count(&self.starting);
            live.registry.add_plugin(&name, &plugin)
        };
        let compile = compiling.elapsed();
        // A refusal from here on is the registry's, which counted it (or
        // did not: an instance busy for now is no refusal of the content).
        let registered = match added {
            Ok(registered) => registered,
            // The plugin's only instance held past the deadline (a long
            // batch of calls) or by this thread: not this content refused,
            // the moment.
            Err(e @ (Error::Busy { .. } | Error::Reentered { .. })) => {
                if let Some(state) = lock(&self.files).get_mut(&name) {
                    state.tried = [0; 32];
                }
                self.publish_rejected(path, format!("{e}; trying again in a second"));
                return Synced::Again;
            }
            Err(e) => {
                self.publish_rejected(path, e.to_string());
                return Synced::Done;
            }
        };
        let timings = LoadTimings {
            started,
            read,
            compile,
            cached,
            swap: started.elapsed().saturating_sub(read + compile),
        };
        if let Some(state) = lock(&self.files).get_mut(&name) {
            state.serving = Some(hash);
        }
        let interfaces = registered
            .interfaces
            .iter()
            .map(|i| (i.clone(), registered.generation))
            .collect();
        let file = path.to_path_buf();
        self.publish(match registered.previous {
            None => WatchEvent::Loaded {
                file,
                name,
                interfaces,
                timings,
            },
            Some(_) => WatchEvent::Reloaded {
                file,
                name,
                interfaces,
                timings,
            },
        });
        Synced::Done
    }

    /// Counts and tells a refusal, unless the watcher was dropped.
    fn reject(&self, path: &Path, reason: String) {
        if let Some(live) = self.while_live() {
            self.reject_live(&live, path, reason);
        }
    }

    /// [`Shared::reject`] with the watcher's life already held.
    fn reject_live(&self, live: &Live<'_>, path: &Path, reason: String) {
        if let Ok(name) = plugin_name(path) {
            live.registry.count_refused(&name);
        }
        self.publish_rejected(path, reason);
    }

    /// Tells a refusal without counting it: the registry did, or it was
    /// none of the content (an instance busy for now).
    fn publish_rejected(&self, path: &Path, reason: String) {
        self.publish(WatchEvent::Rejected {
            file: path.to_path_buf(),
            reason,
        });
    }

    fn publish(&self, event: WatchEvent) {
        let file = match &event {
            WatchEvent::Loaded { file, .. }
            | WatchEvent::Reloaded { file, .. }
            | WatchEvent::Removed { file, .. }
            | WatchEvent::Rejected { file, .. } => file,
        };
        // A refusal of the directory itself (it cannot be listed) is no
        // plugin's.
        if let Some(name) = name_of(file).filter(|_| self.is_component_file(file)) {
            let mut refused = lock(&self.refused);
            match &event {
                WatchEvent::Rejected { reason, .. } => refused.insert(name, reason.clone()),
                _ => refused.remove(&name),
            };
        }
        match &event {
            // Most reasons name the file already; one about the instance
            // serving now (it was busy for the whole deadline) names only
            // the plugin.
            WatchEvent::Rejected { reason, file } => match file
                .file_name()
                .is_some_and(|name| reason.contains(&*name.to_string_lossy()))
            {
                true => tracing::warn!("rejected: {reason}"),
                false => tracing::warn!(
                    "rejected {}: {reason}",
                    crate::error::escape_controls(&file.display().to_string(), |_| false)
                ),
            },
            WatchEvent::Loaded { file, .. } => tracing::info!("loaded {}", file.display()),
            WatchEvent::Reloaded {
                file, interfaces, ..
            } => tracing::info!(
                "reloaded {} (generation {})",
                file.display(),
                interfaces.iter().map(|(_, g)| g).max().unwrap_or(&0)
            ),
            WatchEvent::Removed { file, .. } => tracing::info!("removed {}", file.display()),
        }
        self.subscribers.publish(&event);
    }

    /// Only `*.wasm` files directly in the watched directory count.
    fn is_component_file(&self, path: &Path) -> bool {
        path.parent() == Some(self.dir.as_path())
            && path.extension().is_some_and(|e| e == "wasm")
            && path.file_stem().is_some_and(|s| !s.is_empty())
    }
}

/// The plugin name a file gives, if it gives one.
fn name_of(path: &Path) -> Option<String> {
    plugin_name(path).ok()
}

/// Stands for the content of a file refused before it was read whole: the
/// refusal, and the file's identity, size and modification time.
fn refusal_hash(metadata: Option<&std::fs::Metadata>, error: &Error) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(b"refused\0");
    hasher.update(error.to_string().as_bytes());
    hash_metadata(&mut hasher, metadata);
    hasher.finalize().into()
}

/// One attempt at a file: its content (`hash`) as written at the time its
/// `metadata` tells (a later write of the same bytes is another attempt).
fn attempt_key(hash: &[u8; 32], metadata: Option<&std::fs::Metadata>) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(b"attempt\0");
    hasher.update(hash);
    hash_metadata(&mut hasher, metadata);
    hasher.finalize().into()
}

/// Adds what tells one write of a file from another to `hasher`.
fn hash_metadata(hasher: &mut sha2::Sha256, metadata: Option<&std::fs::Metadata>) {
    use sha2::Digest;
    use std::os::unix::fs::MetadataExt;
    if let Some(meta) = metadata {
        for n in [
            meta.ino(),
            meta.size(),
            meta.mtime() as u64,
            meta.mtime_nsec() as u64,
        ] {
            hasher.update(n.to_le_bytes());
        }
    }
}
