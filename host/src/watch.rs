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
//! the next change to the file is tried again.
//!
//! We react at once to the events that say a write is complete — close after
//! writing, and a rename into place — rather than waiting out a debounce
//! period. Other changes (a create or write whose close we never see) are
//! picked up after a short quiet period. Reads, the host's own included, are
//! ignored, and bytes identical to what is loaded reload nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher as _};

use crate::error::Error;
use crate::registry::Registry;
use crate::source::plugin_name;
use crate::sync::lock;
use crate::version::InterfaceName;

/// How long a file must be quiet, after a change whose completion we did not
/// see, before it is read. Completed writes do not wait for it.
pub const QUIET_PERIOD: Duration = Duration::from_millis(50);

/// What the watcher did, as sent to [`Watcher::subscribe`]rs and logged.
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
    subscribers: Arc<Mutex<Vec<Sender<WatchEvent>>>>,
    running: Option<Running>,
}

struct Running {
    // Dropping the notify watcher closes the channel the thread reads.
    _notify: notify::RecommendedWatcher,
    stop: Sender<Message>,
    thread: Option<JoinHandle<()>>,
}

enum Message {
    Fs(notify::Result<notify::Event>),
    Stop,
}

impl Watcher {
    /// A watcher for `dir`, not yet started: subscribe first to see the
    /// initial loads.
    pub fn new(registry: Arc<Registry>, dir: impl AsRef<Path>) -> Self {
        Watcher {
            dir: dir.as_ref().to_path_buf(),
            registry,
            subscribers: Arc::new(Mutex::new(Vec::new())),
            running: None,
        }
    }

    /// A channel of everything the watcher does from now on.
    pub fn subscribe(&self) -> Receiver<WatchEvent> {
        let (sender, receiver) = channel();
        lock(&self.subscribers).push(sender);
        receiver
    }

    /// Starts watching, then loads every `*.wasm` in the directory in
    /// file-name order (on this thread, so they are all in the registry when
    /// it returns). Later changes are handled on a thread of the watcher's,
    /// never on callers' threads.
    pub fn start(&mut self) -> Result<(), Error> {
        if self.running.is_some() {
            return Ok(());
        }
        let dir = self.dir.canonicalize().map_err(|source| Error::Io {
            path: self.dir.clone(),
            source,
        })?;
        let (sender, receiver) = channel();
        let fs_sender = sender.clone();
        let mut notify = notify::recommended_watcher(move |event| {
            let _ = fs_sender.send(Message::Fs(event));
        })
        .and_then(|mut w| w.watch(&dir, RecursiveMode::NonRecursive).map(|()| w))
        .map_err(|e| Error::Io {
            path: dir.clone(),
            source: std::io::Error::other(format!("cannot watch: {e}")),
        })?;
        let _ = &mut notify;
        // Watch before the first scan, so nothing written during it is lost.
        let mut state = DirState {
            dir: dir.clone(),
            registry: self.registry.clone(),
            subscribers: self.subscribers.clone(),
            files: HashMap::new(),
            pending: HashMap::new(),
        };
        state.scan();
        let thread = std::thread::Builder::new()
            .name(format!("hotslot-watch {}", dir.display()))
            .spawn(move || state.run(receiver))
            .map_err(|source| Error::Io { path: dir, source })?;
        self.running = Some(Running {
            _notify: notify,
            stop: sender,
            thread: Some(thread),
        });
        Ok(())
    }

    /// The directory watched.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Some(mut running) = self.running.take() {
            let _ = running.stop.send(Message::Stop);
            if let Some(thread) = running.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// What the watcher knows of the directory; owned by its thread.
struct DirState {
    dir: PathBuf,
    registry: Arc<Registry>,
    subscribers: Arc<Mutex<Vec<Sender<WatchEvent>>>>,
    /// By implementation name (file stem).
    files: HashMap<String, FileState>,
    /// Files changed without a sign of completion, and when to read them.
    pending: HashMap<PathBuf, Instant>,
}

struct FileState {
    /// The content (component and manifest) last tried, loaded or rejected.
    tried: [u8; 32],
    /// The content that serves, if any.
    serving: Option<[u8; 32]>,
}

impl DirState {
    fn scan(&mut self) {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) => {
                let reason = format!("cannot list {}: {e}", self.dir.display());
                self.publish(WatchEvent::Rejected {
                    file: self.dir.clone(),
                    reason,
                });
                return;
            }
        };
        files.retain(|p| self.is_component_file(p) && p.is_file());
        files.sort();
        for file in files {
            self.sync(&file);
        }
    }

    fn run(mut self, messages: Receiver<Message>) {
        loop {
            let timeout = self
                .pending
                .values()
                .min()
                .map(|due| due.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_secs(3600));
            match messages.recv_timeout(timeout) {
                Ok(Message::Fs(Ok(event))) => self.on_event(event),
                Ok(Message::Fs(Err(e))) => tracing::warn!("file watcher error: {e}"),
                Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.sync_due();
        }
    }

    fn on_event(&mut self, event: notify::Event) {
        let complete = match event.kind {
            // Our own reads (and anyone's) change nothing.
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
            EventKind::Access(_) => return,
            EventKind::Modify(ModifyKind::Metadata(_)) => return,
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) if event.paths.len() == 2 => {
                match self.is_component_file(&event.paths[0]) {
                    true => self.forget(&event.paths[0]),
                    false => self.sync_now(&event.paths[0]),
                }
                self.sync_now(&event.paths[1]);
                return;
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::From)) | EventKind::Remove(_) => {
                for path in &event.paths {
                    // A manifest that goes reloads its plugin without grants.
                    match self.is_component_file(path) {
                        true => self.forget(path),
                        false => self.sync_now(path),
                    }
                }
                return;
            }
            EventKind::Modify(ModifyKind::Name(_)) => true,
            _ => false,
        };
        for path in &event.paths {
            if complete {
                self.sync_now(path);
            } else if let Some(component) = self.component_for(path) {
                self.pending
                    .insert(component, Instant::now() + QUIET_PERIOD);
            }
        }
    }

    fn sync_now(&mut self, path: &Path) {
        if let Some(component) = self.component_for(path) {
            self.pending.remove(&component);
            self.sync(&component);
        }
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
        (is_manifest && component.is_file()).then_some(component)
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
            self.pending.remove(&path);
            self.sync(&path);
        }
    }

    /// A file that left: remove its plugin (its slots stay).
    fn forget(&mut self, path: &Path) {
        if !self.is_component_file(path) {
            return;
        }
        self.pending.remove(path);
        let Ok(name) = plugin_name(path) else { return };
        let Some(state) = self.files.remove(&name) else {
            return;
        };
        if state.serving.is_none() {
            return;
        }
        if let Err(e) = self.registry.remove_plugin(&name) {
            tracing::warn!("removing {}: {e}", path.display());
        }
        self.publish(WatchEvent::Removed {
            file: path.to_path_buf(),
            name,
        });
    }

    /// Brings the registry in line with the file as it is now.
    fn sync(&mut self, path: &Path) {
        let started = Instant::now();
        let name = match plugin_name(path) {
            Ok(name) => name,
            Err(e) => return self.reject(path, e.to_string()),
        };
        let read = self.registry.read(path);
        // The manifest is part of what is loaded: a change to either reloads.
        // A file refused before it was read whole is known by the refusal
        // and its metadata instead.
        let hash = match &read {
            Ok(source) => source.hash(),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return self.forget(path)
            }
            Err(e) => refusal_hash(path, e),
        };
        let state = self.files.entry(name.clone()).or_insert(FileState {
            tried: [0; 32],
            serving: None,
        });
        // Same content as last time, or as what serves (back after a
        // half-written version was refused): nothing to do.
        let unchanged = state.tried == hash || state.serving == Some(hash);
        state.tried = hash;
        if unchanged {
            return;
        }
        let source = match read {
            Ok(source) => source,
            Err(e) => return self.reject(path, e.to_string()),
        };
        let read = started.elapsed();
        let compiling = Instant::now();
        let loaded = self
            .registry
            .load_source(&source)
            .and_then(|(plugin, cached)| Ok((self.registry.add_plugin(&name, &plugin)?, cached)));
        let compile = compiling.elapsed();
        match loaded {
            Ok((registered, cached)) => {
                let timings = LoadTimings {
                    started,
                    read,
                    compile,
                    cached,
                    swap: started.elapsed().saturating_sub(read + compile),
                };
                if let Some(state) = self.files.get_mut(&name) {
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
            }
            Err(e) => self.reject(path, e.to_string()),
        }
    }

    fn reject(&self, path: &Path, reason: String) {
        self.publish(WatchEvent::Rejected {
            file: path.to_path_buf(),
            reason,
        });
    }

    fn publish(&self, event: WatchEvent) {
        match &event {
            WatchEvent::Rejected { reason, .. } => tracing::warn!("rejected: {reason}"),
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
        lock(&self.subscribers).retain(|s| s.send(event.clone()).is_ok());
    }

    /// Only `*.wasm` files directly in the watched directory count.
    fn is_component_file(&self, path: &Path) -> bool {
        path.parent() == Some(self.dir.as_path())
            && path.extension().is_some_and(|e| e == "wasm")
            && path.file_stem().is_some_and(|s| !s.is_empty())
    }
}

/// Stands for the content of a file refused before it was read whole: the
/// refusal, and the file's identity, size and modification time.
fn refusal_hash(path: &Path, error: &Error) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::MetadataExt;
    let mut hasher = Sha256::new();
    hasher.update(b"refused\0");
    hasher.update(error.to_string().as_bytes());
    if let Ok(meta) = std::fs::metadata(path) {
        for n in [
            meta.ino(),
            meta.size(),
            meta.mtime() as u64,
            meta.mtime_nsec() as u64,
        ] {
            hasher.update(n.to_le_bytes());
        }
    }
    hasher.finalize().into()
}
