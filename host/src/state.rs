//! The host-kept store behind `hotslot:plugin/state`: values a plugin keeps
//! outside its instances, under its name, so that a reload, a fault or the
//! file's removal and return find them where the last instance left them —
//! the component-model form of the seed registry's `static_variable`.
//!
//! - One store per plugin name, shared by all its instances and interfaces;
//!   no plugin can reach another's.
//! - Each `set` is atomic, and concurrent instances never lose a write,
//!   with one exception: what a new version changes as it starts
//!   (`restore`, `on-start`) is staged ([`StateView`]) and made when it is
//!   published, over what the serving version wrote to the same keys
//!   meanwhile (the last writer wins); a version refused as it starts
//!   changes no value.
//! - A quota bounds keys and values together; a `set` past it stores nothing
//!   and returns an error naming the quota. Keys are 1 to 1024 bytes.
//! - With persistence on (`[state] persist = true`), every change is also
//!   committed to an embedded transactional database (redb) before the call
//!   returns, so a host killed at any moment loses at most the change in
//!   flight.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableDatabase, TableDefinition};

use crate::error::Error;
use crate::limits::DEFAULT_MAX_STATE;
use crate::sync::lock;

/// The longest key a plugin may use, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// A plugin's host-kept state (`hotslot:plugin/state`), as the host's user
/// sees it: from [`Registry::state`](crate::Registry::state).
///
/// ```no_run
/// # fn main() -> Result<(), hotslot::Error> {
/// let registry = hotslot::Registry::new()?;
/// registry.add_file("plugins/counter_state.wasm")?;
/// let state = registry.state("counter_state").expect("added above");
/// for (key, size) in state.sizes() {
///     println!("{key}: {size} bytes");
/// }
/// state.clear()?; // its next instance starts `fresh`
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct StoredState {
    store: Arc<PluginStore>,
}

impl StoredState {
    pub(crate) fn new(store: Arc<PluginStore>) -> Self {
        StoredState { store }
    }

    /// Every key, in order.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// # let registry = hotslot::Registry::new()?;
    /// if let Some(state) = registry.state("counter_state") {
    ///     println!("keys: {}", state.keys().join(", "));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn keys(&self) -> Vec<String> {
        self.store.keys()
    }

    /// The value under `key`, if any.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// # let registry = hotslot::Registry::new()?;
    /// let count = registry
    ///     .state("counter_state")
    ///     .and_then(|state| state.get("count"))
    ///     .map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
    /// # Ok(()) }
    /// ```
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.store.get(key)
    }

    /// Every key with the size of its value, in key order.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// # let registry = hotslot::Registry::new()?;
    /// if let Some(state) = registry.state("counter_state") {
    ///     let total: usize = state.sizes().iter().map(|(key, size)| key.len() + size).sum();
    ///     println!("{total} bytes of the quota used");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn sizes(&self) -> Vec<(String, usize)> {
        self.store.sizes()
    }

    /// Drops every value (from disk too, when persisted); the plugin's next
    /// instance is told it starts `fresh`.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hotslot::Error> {
    /// # let registry = hotslot::Registry::new()?;
    /// if let Some(state) = registry.state("counter_state") {
    ///     state.clear()?;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::State`] if persisted values could not be removed.
    pub fn clear(&self) -> Result<(), Error> {
        self.store.clear()
    }
}

/// A plugin's host-kept state.
pub(crate) struct PluginStore {
    name: Arc<str>,
    entries: Mutex<Entries>,
}

struct Entries {
    values: BTreeMap<String, Vec<u8>>,
    /// Bytes of keys and values together.
    bytes: usize,
    quota: usize,
    persist: Option<Arc<Persist>>,
    /// An instance of the plugin has started since the host started (or
    /// since the state was dropped).
    started: bool,
    /// How many times the state was dropped ([`PluginStore::clear`]):
    /// changes staged before a drop are not made after it.
    clears: u64,
}

impl PluginStore {
    pub(crate) fn new(name: &str) -> Self {
        PluginStore {
            name: name.into(),
            entries: Mutex::new(Entries {
                values: BTreeMap::new(),
                bytes: 0,
                quota: DEFAULT_MAX_STATE,
                persist: None,
                started: false,
                clears: 0,
            }),
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<Vec<u8>> {
        lock(&self.entries).values.get(key).cloned()
    }

    /// Stores `value` under `key`, or nothing and says why.
    pub(crate) fn set(&self, key: &str, value: Vec<u8>) -> Result<(), String> {
        check_key(key)?;
        let mut entries = lock(&self.entries);
        let old = entries.values.get(key).map_or(0, |v| key.len() + v.len());
        let after = entries.bytes - old + key.len() + value.len();
        if after > entries.quota {
            return Err(self.over_quota(after, entries.quota));
        }
        if let Some(persist) = &entries.persist {
            persist
                .set(&self.name, key, &value)
                .map_err(|e| e.to_string())?;
        }
        entries.bytes = after;
        entries.values.insert(key.to_string(), value);
        Ok(())
    }

    /// Removes `key`; true if it was there.
    pub(crate) fn remove(&self, key: &str) -> Result<bool, String> {
        let mut entries = lock(&self.entries);
        if !entries.values.contains_key(key) {
            return Ok(false);
        }
        if let Some(persist) = &entries.persist {
            persist.remove(&self.name, key).map_err(|e| e.to_string())?;
        }
        if let Some(value) = entries.values.remove(key) {
            entries.bytes -= key.len() + value.len();
        }
        Ok(true)
    }

    /// Every key with the size of its value, in key order.
    pub(crate) fn sizes(&self) -> Vec<(String, usize)> {
        let entries = lock(&self.entries);
        entries
            .values
            .iter()
            .map(|(k, v)| (k.clone(), v.len()))
            .collect()
    }

    /// Bytes of keys and values held.
    pub(crate) fn bytes(&self) -> usize {
        lock(&self.entries).bytes
    }

    pub(crate) fn keys(&self) -> Vec<String> {
        lock(&self.entries).values.keys().cloned().collect()
    }

    /// Forgets every value (and, persisted, removes them from disk). The
    /// plugin's next instance starts `fresh`.
    pub(crate) fn clear(&self) -> Result<(), Error> {
        let mut entries = lock(&self.entries);
        if let Some(persist) = &entries.persist {
            persist.clear(&self.name)?;
        }
        entries.values.clear();
        entries.bytes = 0;
        entries.started = false;
        entries.clears += 1;
        Ok(())
    }

    pub(crate) fn set_quota(&self, bytes: usize) {
        lock(&self.entries).quota = bytes;
    }

    /// Keeps this plugin's state in `persist` from now on, taking what it
    /// holds there already. Values set in memory before are kept too.
    pub(crate) fn persist_in(&self, persist: &Arc<Persist>) -> Result<(), Error> {
        let mut entries = lock(&self.entries);
        if entries
            .persist
            .as_ref()
            .is_some_and(|p| Arc::ptr_eq(p, persist))
        {
            return Ok(());
        }
        for (key, value) in persist.load(&self.name)? {
            entries.values.entry(key).or_insert(value);
        }
        for (key, value) in &entries.values {
            persist.set(&self.name, key, value)?;
        }
        entries.bytes = entries.values.iter().map(|(k, v)| k.len() + v.len()).sum();
        entries.persist = Some(persist.clone());
        Ok(())
    }

    pub(crate) fn started(&self) -> bool {
        lock(&self.entries).started
    }

    /// A `set` refused: `after` bytes would pass the quota.
    fn over_quota(&self, after: usize, quota: usize) -> String {
        format!(
            "state quota of `{}` exceeded: {after} bytes of keys and values, quota {quota} \
             (`[limits] max-state-kib`); nothing stored",
            self.name
        )
    }

    /// The bytes of keys and values there would be with `changes` made,
    /// and the quota.
    fn bytes_with(&self, changes: &BTreeMap<String, Option<Vec<u8>>>) -> (usize, usize) {
        let entries = lock(&self.entries);
        (bytes_after(&entries, changes), entries.quota)
    }

    /// How many times the state was dropped so far.
    fn clears(&self) -> u64 {
        lock(&self.entries).clears
    }

    /// Makes `changes` (a value set, or `None`: removed) together, or none
    /// of them and says why: the quota counts the result, and persisted
    /// they are written in one transaction. Changes staged before the
    /// state was dropped (`clears` has moved on since) are not made:
    /// false then.
    fn apply(
        &self,
        changes: &BTreeMap<String, Option<Vec<u8>>>,
        clears: u64,
    ) -> Result<bool, String> {
        let mut entries = lock(&self.entries);
        if entries.clears != clears {
            return Ok(false);
        }
        let after = bytes_after(&entries, changes);
        if after > entries.quota {
            return Err(self.over_quota(after, entries.quota));
        }
        if let Some(persist) = &entries.persist {
            persist
                .apply(&self.name, changes)
                .map_err(|e| e.to_string())?;
        }
        for (key, change) in changes {
            match change {
                Some(value) => entries.values.insert(key.clone(), value.clone()),
                None => entries.values.remove(key),
            };
        }
        entries.bytes = after;
        Ok(true)
    }

    pub(crate) fn mark_started(&self) {
        lock(&self.entries).started = true;
    }
}

/// How one generation of a plugin reaches its host-kept state. Until the
/// generation is published, what its instances change is staged, seen by
/// them alone: a version refused as it starts (its `restore` or `on-start`
/// failed or refused) leaves the state as it found it, for the version
/// that serves on. Publishing ([`StateView::commit`]) makes the changes,
/// and the view writes through from then on.
#[derive(Clone)]
pub(crate) struct StateView {
    store: Arc<PluginStore>,
    /// `None` once committed.
    staged: Arc<Mutex<Option<Staged>>>,
}

struct Staged {
    /// Keys set (`Some`) or removed (`None`) while staged.
    changes: BTreeMap<String, Option<Vec<u8>>>,
    /// An instance has started.
    started: bool,
    /// The store's [`PluginStore::clears`] when staging began.
    clears: u64,
}

impl StateView {
    /// A view that stages changes until [`StateView::commit`].
    pub(crate) fn staged(store: &Arc<PluginStore>) -> Self {
        StateView {
            store: store.clone(),
            staged: Arc::new(Mutex::new(Some(Staged {
                changes: BTreeMap::new(),
                started: false,
                clears: store.clears(),
            }))),
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<Vec<u8>> {
        if let Some(staged) = &*lock(&self.staged) {
            if let Some(change) = staged.changes.get(key) {
                return change.clone();
            }
        }
        self.store.get(key)
    }

    /// Stores `value` under `key` (staged, while the view stages), or
    /// nothing and says why: the quota counts the changes staged.
    pub(crate) fn set(&self, key: &str, value: Vec<u8>) -> Result<(), String> {
        let mut staged = lock(&self.staged);
        let Some(staged) = staged.as_mut() else {
            return self.store.set(key, value);
        };
        check_key(key)?;
        let before = staged.changes.insert(key.to_string(), Some(value));
        let (after, quota) = self.store.bytes_with(&staged.changes);
        if after > quota {
            match before {
                Some(before) => staged.changes.insert(key.to_string(), before),
                None => staged.changes.remove(key),
            };
            return Err(self.store.over_quota(after, quota));
        }
        Ok(())
    }

    /// Removes `key` (staged, while the view stages); true if it was there.
    pub(crate) fn remove(&self, key: &str) -> Result<bool, String> {
        let mut staged = lock(&self.staged);
        let Some(staged) = staged.as_mut() else {
            return self.store.remove(key);
        };
        let there = match staged.changes.get(key) {
            Some(change) => change.is_some(),
            None => self.store.get(key).is_some(),
        };
        if there {
            staged.changes.insert(key.to_string(), None);
        }
        Ok(there)
    }

    pub(crate) fn keys(&self) -> Vec<String> {
        let staged = lock(&self.staged);
        let Some(staged) = staged.as_ref() else {
            return self.store.keys();
        };
        let mut keys: std::collections::BTreeSet<String> = self.store.keys().into_iter().collect();
        for (key, change) in &staged.changes {
            match change {
                Some(_) => keys.insert(key.clone()),
                None => keys.remove(key),
            };
        }
        keys.into_iter().collect()
    }

    /// Notes that an instance has started (see [`PluginStore::started`]).
    pub(crate) fn mark_started(&self) {
        match &mut *lock(&self.staged) {
            Some(staged) => staged.started = true,
            None => self.store.mark_started(),
        }
    }

    /// Makes the changes staged, all of them or none (the quota counts
    /// the result; persisted, one transaction), and writes through from
    /// now on. Changes staged before the state was dropped
    /// ([`StoredState::clear`]) are not made: the next instance is told
    /// it starts `fresh`, as the drop promised.
    pub(crate) fn commit(&self) -> Result<(), String> {
        let mut staged = lock(&self.staged);
        let Some(done) = staged.take() else {
            return Ok(());
        };
        if !self.store.apply(&done.changes, done.clears)? {
            tracing::info!(
                "state of `{}` was dropped while its new version started: \
                 what it changed as it started is not kept",
                self.store.name
            );
            return Ok(());
        }
        if done.started {
            self.store.mark_started();
        }
        Ok(())
    }
}

/// The bytes of keys and values `entries` would hold with `changes` made.
fn bytes_after(entries: &Entries, changes: &BTreeMap<String, Option<Vec<u8>>>) -> usize {
    changes.iter().fold(entries.bytes, |bytes, (key, change)| {
        let old = entries.values.get(key).map_or(0, |v| key.len() + v.len());
        let new = change.as_ref().map_or(0, |v| key.len() + v.len());
        bytes - old + new
    })
}

fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("a state key must not be empty".into());
    }
    if key.len() > MAX_KEY_LEN {
        return Err(format!(
            "a state key may be at most {MAX_KEY_LEN} bytes, not {}",
            key.len()
        ));
    }
    Ok(())
}

/// Keys are (plugin name, key), so one table holds every plugin's state.
const TABLE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("state");

/// Plugins' state on disk: one redb database in the state directory.
pub(crate) struct Persist {
    /// Dropped by hand (see the `Drop` below).
    db: std::mem::ManuallyDrop<Database>,
    file: PathBuf,
}

impl Drop for Persist {
    /// redb closes a database that panicked inside a transaction (on a
    /// damaged file) by panicking again: the host exited 101 at `quit`.
    fn drop(&mut self) {
        // SAFETY: `db` is taken once, here, and never used after.
        let db = unsafe { std::mem::ManuallyDrop::take(&mut self.db) };
        let closed = unpanicked(&self.file, || {
            drop(db);
            Ok(())
        });
        if let Err(e) = closed {
            tracing::warn!("{e} (closing it)");
        }
    }
}

impl Persist {
    /// Opens (or makes) the database in `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Self, Error> {
        let file = dir.join("state.redb");
        let failed = |e: String| Error::State {
            file: file.clone(),
            reason: e,
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| failed(format!("cannot make its directory {}: {e}", dir.display())))?;
        let db = unpanicked(&file, || {
            Database::create(&file).map_err(|e| failed(e.to_string()))
        })?;
        Ok(Persist {
            db: std::mem::ManuallyDrop::new(db),
            file,
        })
    }

    fn failed(&self, reason: impl ToString) -> Error {
        Error::State {
            file: self.file.clone(),
            reason: reason.to_string(),
        }
    }

    fn load(&self, name: &str) -> Result<Vec<(String, Vec<u8>)>, Error> {
        unpanicked(&self.file, || self.load_unguarded(name))
    }

    /// [`Persist::load`] without the guard against redb's panics.
    fn load_unguarded(&self, name: &str) -> Result<Vec<(String, Vec<u8>)>, Error> {
        let read = self.db.begin_read().map_err(|e| self.failed(e))?;
        let table = match read.open_table(TABLE) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.failed(e)),
        };
        let mut found = Vec::new();
        for entry in table.range((name, "")..).map_err(|e| self.failed(e))? {
            let (key, value) = entry.map_err(|e| self.failed(e))?;
            let (plugin, key) = key.value();
            if plugin != name {
                break;
            }
            found.push((key.to_string(), value.value().to_vec()));
        }
        Ok(found)
    }

    /// Runs `f` in one write transaction and commits it (durably) before
    /// returning.
    fn write(
        &self,
        f: impl FnOnce(&mut redb::Table<(&str, &str), &[u8]>) -> Result<(), redb::StorageError>,
    ) -> Result<(), Error> {
        unpanicked(&self.file, || {
            let txn = self.db.begin_write().map_err(|e| self.failed(e))?;
            {
                let mut table = txn.open_table(TABLE).map_err(|e| self.failed(e))?;
                f(&mut table).map_err(|e| self.failed(e))?;
            }
            txn.commit().map_err(|e| self.failed(e))
        })
    }

    fn set(&self, name: &str, key: &str, value: &[u8]) -> Result<(), Error> {
        self.write(|table| table.insert((name, key), value).map(drop))
    }

    fn remove(&self, name: &str, key: &str) -> Result<(), Error> {
        self.write(|table| table.remove((name, key)).map(drop))
    }

    fn clear(&self, name: &str) -> Result<(), Error> {
        self.write(|table| table.retain(|(plugin, _), _| plugin != name))
    }

    /// Makes `changes` (set, or `None`: removed) in one transaction.
    fn apply(&self, name: &str, changes: &BTreeMap<String, Option<Vec<u8>>>) -> Result<(), Error> {
        self.write(|table| {
            for (key, change) in changes {
                match change {
                    Some(value) => table
                        .insert((name, key.as_str()), value.as_slice())
                        .map(drop)?,
                    None => table.remove((name, key.as_str())).map(drop)?,
                }
            }
            Ok(())
        })
    }
}

/// Runs `f` on the database in `file`, a panic in it (redb panics on some
/// damaged files, where it should fail) an error naming the file: a file
/// on disk must not take a loader thread down.
/// Such a panic is not printed (see [`crate::quiet_panics`]): the error
/// carries its text.
fn unpanicked<R>(file: &Path, f: impl FnOnce() -> Result<R, Error>) -> Result<R, Error> {
    let caught = crate::quiet_panics::expecting(crate::quiet_panics::in_redb, || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
    });
    caught.unwrap_or_else(|panic| {
        Err(Error::State {
            file: file.to_path_buf(),
            reason: format!(
                "the database is damaged: {}",
                crate::error::panic_text(&*panic)
            ),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of a database holding fifty values of plugin `p`.
    fn good_database() -> Vec<u8> {
        let good = tempfile::tempdir().unwrap();
        {
            let persist = Arc::new(Persist::open(good.path()).unwrap());
            let store = PluginStore::new("p");
            store.persist_in(&persist).unwrap();
            for i in 0..50 {
                store.set(&format!("k{i}"), vec![i as u8; 300]).unwrap();
            }
        }
        std::fs::read(good.path().join("state.redb")).unwrap()
    }

    /// Opens a database holding `bytes`, reads plugin `p`'s state from it
    /// and writes one value; closes it on the way out.
    fn open_and_write(bytes: &[u8]) -> Result<(), Error> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("state.redb"), bytes).unwrap();
        let persist = Arc::new(Persist::open(dir.path())?);
        let store = PluginStore::new("p");
        store.persist_in(&persist)?;
        store
            .set("new", b"1".to_vec())
            .map_err(|reason| Error::State {
                file: dir.path().to_path_buf(),
                reason,
            })
    }

    /// A fixed sequence of numbers, the same every run, to damage with.
    fn numbers() -> impl FnMut() -> usize {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        }
    }

    /// Damaged databases, each from a good one with bytes past its header
    /// overwritten (a fixed sequence, the same every run): each fails or
    /// opens, none panics.
    #[test]
    fn a_damaged_database_fails_naming_its_file_never_panics() {
        let bytes = good_database();
        let mut next = numbers();
        let mut damaged = 0;
        for _ in 0..40 {
            let mut copy = bytes.clone();
            for _ in 0..8 {
                let at = 4096 + next() % (copy.len() - 4096);
                copy[at] = next() as u8;
            }
            let opened = open_and_write(&copy);
            if let Err(e) = opened {
                assert!(e.to_string().contains("state.redb"), "{e}");
                damaged += 1;
            }
        }
        assert!(
            damaged > 0,
            "no damage was noticed: the test damages nothing"
        );
    }

    /// Databases damaged so that redb panics inside a write (found by
    /// damaging runs of bytes with this generator: rounds 859 and 1417 of
    /// 3,000): the write fails naming the file, and closing the database
    /// afterwards, where redb panics again, no longer panics.
    #[test]
    fn a_database_that_panicked_in_a_write_closes_without_panicking() {
        let bytes = good_database();
        let mut next = numbers();
        let mut panicked_in_redb = 0;
        for round in 0..=1417 {
            let mut copy = bytes.clone();
            let at = 4096 + next() % (copy.len() - 4096);
            let run = 1 + next() % 64;
            for k in 0..run {
                let i = (at + k) % copy.len();
                copy[i] = next() as u8;
            }
            if round != 859 && round != 1417 {
                continue;
            }
            let closed = std::panic::catch_unwind(|| open_and_write(&copy));
            let Ok(written) = closed else {
                panic!("round {round}: closing the database panicked");
            };
            if let Err(e) = written {
                assert!(e.to_string().contains("state.redb"), "{e}");
                panicked_in_redb += usize::from(e.to_string().contains("damaged"));
            }
        }
        assert!(
            panicked_in_redb > 0,
            "redb panicked in no write: these rounds no longer damage what they did"
        );
    }

    /// redb's panics in the test above are caught, and not printed as a
    /// crash would be.
    #[test]
    fn redb_panics_on_a_damaged_database_are_not_printed() {
        let stderr = crate::quiet_panics::tests::stderr_of(
            "state::tests::a_database_that_panicked_in_a_write_closes_without_panicking",
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }

    #[test]
    fn a_staged_view_sees_its_changes_alone_until_committed() {
        let store = Arc::new(PluginStore::new("p"));
        store.set_quota(100);
        store.set("kept", vec![1]).unwrap();
        store.set("gone", vec![2]).unwrap();
        let view = StateView::staged(&store);
        view.set("new", vec![3; 10]).unwrap();
        assert_eq!(view.remove("gone"), Ok(true));
        assert_eq!(view.remove("gone"), Ok(false));
        view.mark_started();
        // The view sees its changes; the store does not, yet.
        assert_eq!(view.keys(), ["kept", "new"]);
        assert_eq!(
            (view.get("new"), view.get("gone")),
            (Some(vec![3; 10]), None)
        );
        assert_eq!(store.keys(), ["gone", "kept"]);
        assert!(!store.started());
        // The quota counts what is staged: 4 + 1 + 3 + 10 held, 80 more is past 100.
        let err = view.set("big", vec![0; 80]).unwrap_err();
        assert!(err.contains("quota"), "{err}");
        assert_eq!(view.get("big"), None, "nothing staged");
        view.commit().unwrap();
        assert_eq!(store.keys(), ["kept", "new"]);
        assert!(store.started());
        // Through, from now on.
        view.commit().unwrap();
        view.set("later", vec![4]).unwrap();
        assert_eq!(store.get("later"), Some(vec![4]));
        // A view dropped uncommitted changes nothing.
        let refused = StateView::staged(&store);
        refused.set("kept", vec![9]).unwrap();
        drop(refused);
        assert_eq!(store.get("kept"), Some(vec![1]));
    }

    #[test]
    fn staged_changes_are_made_together_and_not_after_a_drop() {
        let store = Arc::new(PluginStore::new("p"));
        store.set_quota(30);
        store.set("count_v1", vec![0; 10]).unwrap();
        // A key renamed: made one by one in key order, `count` would be set
        // (33 bytes) before `count_v1` goes, past the quota.
        let view = StateView::staged(&store);
        assert_eq!(view.remove("count_v1"), Ok(true));
        view.set("count", vec![1; 10]).unwrap();
        view.commit().unwrap();
        assert_eq!(
            (store.keys(), store.bytes()),
            (vec!["count".to_string()], 15)
        );

        // Changes staged before the state was dropped are not made after.
        let view = StateView::staged(&store);
        view.set("stale", vec![2]).unwrap();
        view.mark_started();
        store.clear().unwrap();
        view.commit().unwrap();
        assert!(store.keys().is_empty());
        assert!(!store.started(), "the next instance hears `fresh`");
        // And one that cannot be made is refused whole.
        let view = StateView::staged(&store);
        view.set("a", vec![0; 20]).unwrap();
        store.set("b", vec![0; 9]).unwrap();
        assert!(view.commit().unwrap_err().contains("quota"));
        assert_eq!(store.keys(), ["b"]);
    }

    #[test]
    fn the_quota_counts_keys_and_values_and_refuses_whole() {
        let store = PluginStore::new("p");
        store.set_quota(100);
        store.set("a", vec![0; 50]).unwrap();
        let err = store.set("b", vec![0; 60]).unwrap_err();
        assert!(err.contains("quota") && err.contains("`p`"), "{err}");
        assert_eq!(store.get("b"), None, "nothing stored");
        // Replacing a value frees the old one first.
        store.set("a", vec![0; 98]).unwrap();
        assert!(store.set("", vec![]).unwrap_err().contains("empty"));
        assert!(store.set(&"k".repeat(2000), vec![]).is_err());
        assert_eq!(store.remove("a"), Ok(true));
        assert_eq!(store.sizes(), []);
    }

    #[test]
    fn persisted_state_comes_back_in_a_new_store() {
        let dir = tempfile::tempdir().unwrap();
        let persist = Arc::new(Persist::open(dir.path()).unwrap());
        let store = PluginStore::new("p");
        store.persist_in(&persist).unwrap();
        store.set("count", b"7".to_vec()).unwrap();
        let other = PluginStore::new("q");
        other.persist_in(&persist).unwrap();
        other.set("count", b"1".to_vec()).unwrap();
        drop((store, other, persist));

        let persist = Arc::new(Persist::open(dir.path()).unwrap());
        let again = PluginStore::new("p");
        again.persist_in(&persist).unwrap();
        assert_eq!(again.get("count"), Some(b"7".to_vec()));
        again.clear().unwrap();
        let q = PluginStore::new("q");
        q.persist_in(&persist).unwrap();
        assert_eq!(
            q.get("count"),
            Some(b"1".to_vec()),
            "another plugin's state stays"
        );
    }
}
