//! Compiled functions kept by their content, in memory and (for hosts that
//! keep code on disk) in a file for the next run, so that changed bytes have
//! Cranelift compile only the functions that changed.
//!
//! A plugin under development changes a function or two between builds; an
//! interpreter plugin (Python, JavaScript) changes only its data. Cranelift's
//! incremental cache keys each function by its body (after translation from
//! wasm, with the names of what it calls abstracted away) and the compiler's
//! settings, and skips optimizing, allocating registers and emitting code for
//! any it has seen. This module is the store behind it: one per process,
//! shared by every Cranelift engine that asks for it (the key carries the
//! settings: engines share only what they would compile alike), bounded in
//! size (keys and code counted; the table and a chunk's unused end not),
//! least recently used out first.
//!
//! The file (`…/hotslot/functions/pack`) is read in before a run's first big
//! compile and written whole after one (the loader says when), with what
//! other runs wrote there meanwhile merged in, under a lock file beside it;
//! what it holds becomes machine code, so it is refused whole unless its
//! checksum, its writer (this hotslot) and its owner (this user alone) are
//! right.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::CacheStore;

use crate::private_files;
use crate::sync::lock;

/// Bytes of compiled functions kept at most: Python's interpreter (the 18 MB
/// greeter) takes 27 MB, the JavaScript greeter's 36 MB; plugins of one
/// language share theirs.
const KEEP_BYTES: usize = 128 << 20;

/// What is left after a trim: trimming a quarter at a time keeps a store
/// that sits at its limit from trimming on every insert.
const TRIM_TO: usize = KEEP_BYTES / 4 * 3;

/// How long a save waits for another process's save to end (one takes well
/// under a second) before it gives up, to try again after the next compile.
const LOCK_PATIENCE: Duration = Duration::from_secs(10);

/// The process's store of compiled functions.
pub(crate) fn shared() -> Arc<FunctionCache> {
    static SHARED: OnceLock<Arc<FunctionCache>> = OnceLock::new();
    SHARED
        .get_or_init(|| Arc::new(FunctionCache::new(KEEP_BYTES, TRIM_TO)))
        .clone()
}

/// Keeps the process's store between runs, in the user's cache directory
/// (`$XDG_CACHE_HOME/hotslot/functions/pack`, else under `~/.cache`): read
/// in by [`read_kept`], written by [`save`]. Without a cache directory,
/// kept in memory only.
pub(crate) fn keep_for_user() {
    if let Some(dir) = private_files::user_dir() {
        shared().keep_at(dir.join("functions").join("pack"));
    }
}

/// Reads in what the process's store's file holds (see [`keep_for_user`]),
/// once: before a compile that may reuse it.
pub(crate) fn read_kept() {
    shared().read_once();
}

/// Writes the process's store to its file (see [`keep_for_user`]) if a
/// compile added to it since it was read or written: on a thread of its
/// own, so that the plugin just compiled answers without waiting for the
/// disk (reading back what other runs kept, writing and syncing tens of
/// megabytes: 0.25-0.4 s for the JavaScript and Python greeters'). Saves
/// still happen one at a time; [`finish_saving`] waits for them.
pub(crate) fn save() {
    shared().save_in_background();
}

/// Waits for every save [`save`] started: what a process does before it
/// exits, so that the next run finds what it compiled.
pub(crate) fn finish_saving() {
    shared().finish_saving();
}

/// Compiled functions by cache key, with their last use.
#[derive(Debug)]
pub(crate) struct FunctionCache {
    keep: usize,
    trim_to: usize,
    inner: Mutex<Inner>,
    /// The file the store is kept in between runs, if any.
    pack: OnceLock<PathBuf>,
    /// Held while the store is written: a save that took its copy earlier
    /// never lands after one that took it later.
    saving: Mutex<()>,
    /// Saves started in the background and perhaps not finished.
    pending: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// How long a save waits for the file's lock.
    patience: Duration,
    /// Functions looked for, and found, since the process started.
    looked: AtomicU64,
    found: AtomicU64,
}

/// Functions looked for and found in the process's store so far: the
/// difference over a compile says how much of it was reused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Reused {
    pub(crate) looked: u64,
    pub(crate) found: u64,
}

impl Reused {
    /// The counts now.
    pub(crate) fn now() -> Reused {
        let cache = shared();
        // `found` first: a lookup counts in `looked` before `found`, so
        // read this way round found never exceeds looked.
        let found = cache.found.load(Ordering::Acquire);
        Reused {
            looked: cache.looked.load(Ordering::Acquire),
            found,
        }
    }

    /// What was looked for and found since `before`.
    pub(crate) fn since(before: Reused) -> Reused {
        let now = Reused::now();
        Reused {
            looked: now.looked.saturating_sub(before.looked),
            found: now.found.saturating_sub(before.found),
        }
    }
}

/// The code lives in large chunks rather than one allocation per function:
/// Cranelift hands over tens of thousands of small vectors (24,000 for the
/// Python and JavaScript greeters, 63 MB), which kept one by one scatter
/// over the allocator's arenas and hold ~2.4 times their size.
#[derive(Debug, Default)]
struct Inner {
    /// Keys in the table itself: a small allocation per key, made on the
    /// compiling threads, would pin pages the allocator could give back.
    entries: HashMap<Key, Entry>,
    chunks: Vec<Vec<u8>>,
    /// Bytes of keys and code kept.
    bytes: usize,
    /// A clock counting uses, for least recently used first.
    uses: u64,
    /// Whether the file the store is kept in was read (or tried).
    read: bool,
    /// Whether anything was added since it was read or written.
    changed: bool,
    /// The checksum of the file as this process last read or wrote it:
    /// another one there means another process wrote it since.
    on_disk: Option<Sum>,
}

#[derive(Debug)]
struct Entry {
    chunk: usize,
    start: usize,
    len: usize,
    used: u64,
}

/// Cranelift's keys are SHA-256 hashes; any other is not kept.
type Key = [u8; 32];

/// Bytes per chunk; a function bigger than this gets one of its own.
const CHUNK: usize = 1 << 20;

impl FunctionCache {
    fn new(keep: usize, trim_to: usize) -> Self {
        FunctionCache {
            keep,
            trim_to,
            inner: Mutex::new(Inner::default()),
            pack: OnceLock::new(),
            saving: Mutex::new(()),
            pending: Mutex::new(Vec::new()),
            patience: LOCK_PATIENCE,
            looked: AtomicU64::new(0),
            found: AtomicU64::new(0),
        }
    }

    /// Keeps the store in `path` between runs; the first path given holds.
    fn keep_at(&self, path: PathBuf) {
        let _ = self.pack.set(path);
    }

    /// Reads in what the store's file holds, the first time it is asked.
    fn read_once(&self) {
        let mut inner = lock(&self.inner);
        if inner.read {
            return;
        }
        inner.read = true;
        let Some(path) = self.pack.get() else {
            return;
        };
        match read_pack(path) {
            Ok(pack) => {
                inner.on_disk = pack.sum;
                for (key, code) in pack.records {
                    inner.add(key, &pack.bytes[code]);
                }
                if inner.bytes > self.keep {
                    inner.trim(self.trim_to);
                }
            }
            Err(why) => tracing::warn!(
                "not reusing compiled functions kept in {}: {why}",
                path.display()
            ),
        }
    }

    /// [`FunctionCache::save`] on a thread of its own (see [`save`]).
    fn save_in_background(self: &Arc<Self>) {
        if self.pack.get().is_none() || !lock(&self.inner).changed {
            return;
        }
        let mut pending = lock(&self.pending);
        pending.retain(|save| !save.is_finished());
        let cache = self.clone();
        let spawned = std::thread::Builder::new()
            .name("hotslot-keep-functions".into())
            .spawn(move || cache.save());
        match spawned {
            Ok(save) => pending.push(save),
            // No thread to be had: saved here, late rather than never.
            Err(_) => {
                drop(pending);
                self.save();
            }
        }
    }

    /// Waits for the saves started in the background.
    fn finish_saving(&self) {
        let pending = std::mem::take(&mut *lock(&self.pending));
        for save in pending {
            // A save that panicked kept nothing; the next run compiles more.
            let _ = save.join();
        }
    }

    /// Writes the store to its file if anything was added since it was
    /// read or written; a failure costs the next run some compiling, so it
    /// is logged.
    fn save(&self) {
        let Some(path) = self.pack.get() else {
            return;
        };
        let _one_at_a_time = lock(&self.saving);
        if !lock(&self.inner).changed {
            return;
        }
        let started = std::time::Instant::now();
        match self.merge_and_write(path) {
            Ok(written) => {
                tracing::debug!(
                    "kept {:.1} MB of compiled functions in {} in {:.1} ms",
                    written as f64 / 1e6,
                    path.display(),
                    started.elapsed().as_secs_f64() * 1e3
                );
                if let Some(dir) = path.parent() {
                    private_files::sweep_stale_temporaries(dir);
                }
            }
            Err(e) => {
                tracing::warn!("cannot keep compiled functions in {}: {e}", path.display());
                // Tried again after the next compile.
                lock(&self.inner).changed = true;
            }
        }
    }

    /// Writes the store to `path` whole, with what other processes kept
    /// there since this one last read or wrote it: a `watch` and a `call`
    /// sharing the file each keep what the other compiled. Theirs counts as
    /// used before anything of this process's. All of it under the file's
    /// lock, so no writer's additions are lost between another's read and
    /// write. Returns the bytes written.
    fn merge_and_write(&self, path: &Path) -> std::io::Result<usize> {
        let _others_wait =
            private_files::lock_exclusive(&path.with_extension("lock"), self.patience)?;
        let on_disk = lock(&self.inner).on_disk;
        let theirs = match sum_of(path) {
            Some(sum) if Some(sum) != on_disk => match read_pack(path) {
                Ok(pack) => Some(pack),
                // Another hotslot's, say: benign, and said at every save.
                Err(why) => {
                    tracing::debug!(
                        "writing over the compiled functions kept in {}: {why}",
                        path.display()
                    );
                    None
                }
            },
            _ => None,
        };
        let mut body = {
            let mut inner = lock(&self.inner);
            if let Some(theirs) = theirs {
                inner.take_in_older(&theirs, self.keep);
            }
            inner.changed = false;
            inner.pack()
        };
        // Summed outside the lock: compiles go on meanwhile.
        let sum: Sum = Sha256::digest(&body).into();
        body.extend_from_slice(&sum);
        private_files::write_whole(path, &body)?;
        lock(&self.inner).on_disk = Some(sum);
        Ok(body.len())
    }

    /// Bytes kept now (keys and code).
    #[cfg(test)]
    fn bytes(&self) -> usize {
        lock(&self.inner).bytes
    }
}

impl CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        self.looked.fetch_add(1, Ordering::Release);
        let key = Key::try_from(key).ok()?;
        let mut inner = lock(&self.inner);
        inner.uses += 1;
        let now = inner.uses;
        let entry = inner.entries.get_mut(&key)?;
        entry.used = now;
        let (chunk, start, len) = (entry.chunk, entry.start, entry.len);
        self.found.fetch_add(1, Ordering::Release);
        // Copied out: the lock cannot be held while Cranelift reads it.
        Some(Cow::Owned(inner.chunks[chunk][start..start + len].to_vec()))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let Ok(key) = Key::try_from(key) else {
            return false;
        };
        let size = key.len() + value.len();
        if size > self.keep {
            return false;
        }
        let mut inner = lock(&self.inner);
        // Cranelift inserts only what it did not find, or found and could
        // not read (kept by another Cranelift): that one is replaced, or
        // it would be found, and refused, forever.
        inner.remove(&key);
        inner.add(key, &value);
        inner.changed = true;
        if inner.bytes > self.keep {
            inner.trim(self.trim_to);
        }
        true
    }
}

impl Inner {
    /// Forgets what is kept under `key` (its code stays in its chunk until
    /// the next trim moves what stays).
    fn remove(&mut self, key: &Key) {
        if let Some(entry) = self.entries.remove(key) {
            self.bytes -= key.len() + entry.len;
        }
    }

    /// Keeps `code` under `key`, as used now; false if the key was there
    /// (same key, same function: what is kept is as good).
    fn add(&mut self, key: Key, code: &[u8]) -> bool {
        if self.entries.contains_key(&key) {
            return false;
        }
        self.uses += 1;
        let entry = self.append(code);
        self.entries.insert(key, entry);
        self.bytes += key.len() + code.len();
        true
    }

    /// Takes in the functions of `pack` not kept here, as used before all
    /// that is (in the pack's order: least recently used first), as many
    /// of its newest as fit in `keep` bytes with what is kept: no copy is
    /// made only to be trimmed away.
    fn take_in_older(&mut self, pack: &Pack, keep: usize) {
        let mut room = keep.saturating_sub(self.bytes);
        let mut taken = Vec::new();
        // A file written by hotslot holds each key once; one made by hand
        // may not.
        let mut seen = std::collections::HashSet::new();
        for (key, code) in pack.records.iter().rev() {
            let size = key.len() + code.len();
            if size > room {
                break;
            }
            if !self.entries.contains_key(key) && seen.insert(key) {
                room -= size;
                taken.push((key, code));
            }
        }
        // Room below every use counted here.
        let older = taken.len() as u64;
        for entry in self.entries.values_mut() {
            entry.used += older;
        }
        self.uses += older;
        for (used, (key, code)) in (1..).zip(taken.into_iter().rev()) {
            self.add(*key, &pack.bytes[code.clone()]);
            if let Some(entry) = self.entries.get_mut(key) {
                entry.used = used;
            }
        }
    }

    /// The store as its file holds it, but for the checksum at its end:
    /// least recently used first, so that reading it back keeps their
    /// order (see [`read_pack`]).
    fn pack(&self) -> Vec<u8> {
        let mut by_use: Vec<(&Key, &Entry)> = self.entries.iter().collect();
        by_use.sort_unstable_by_key(|(_, entry)| entry.used);
        let mut pack = Vec::with_capacity(PACK_MAGIC.len() + self.bytes + 4 * by_use.len() + 32);
        pack.extend_from_slice(PACK_MAGIC);
        for (key, entry) in by_use {
            let code = &self.chunks[entry.chunk][entry.start..entry.start + entry.len];
            // Never over 4 GiB (a store holds 128 MiB): skipped, not cut.
            let Ok(len) = u32::try_from(code.len()) else {
                continue;
            };
            pack.extend_from_slice(key);
            pack.extend_from_slice(&len.to_le_bytes());
            pack.extend_from_slice(code);
        }
        pack
    }

    /// Puts `code` at the end of the last chunk (a new one if it is full).
    fn append(&mut self, code: &[u8]) -> Entry {
        let fits = self
            .chunks
            .last()
            .is_some_and(|chunk| chunk.capacity() - chunk.len() >= code.len());
        if !fits {
            self.chunks.push(Vec::with_capacity(code.len().max(CHUNK)));
        }
        let chunk = self.chunks.len() - 1;
        let start = self.chunks[chunk].len();
        self.chunks[chunk].extend_from_slice(code);
        Entry {
            chunk,
            start,
            len: code.len(),
            used: self.uses,
        }
    }

    /// Drops the least recently used entries until at most `to` bytes are
    /// kept, and packs what stays into fresh chunks.
    fn trim(&mut self, to: usize) {
        let mut by_use: Vec<(u64, usize)> = self
            .entries
            .iter()
            .map(|(key, entry)| (entry.used, key.len() + entry.len))
            .collect();
        by_use.sort_unstable();
        let mut bytes = self.bytes;
        let mut last_dropped = 0;
        for (used, size) in by_use {
            if bytes <= to {
                break;
            }
            bytes -= size;
            last_dropped = used;
        }
        self.entries.retain(|_, entry| entry.used > last_dropped);
        // What stays moves in the order it sits in, so that each old chunk
        // is freed once its survivors are out: the move never holds much
        // more than what was kept before it.
        let mut order: Vec<(usize, usize, Key)> = self
            .entries
            .iter()
            .map(|(key, entry)| (entry.chunk, entry.start, *key))
            .collect();
        order.sort_unstable();
        let mut old = std::mem::take(&mut self.chunks);
        let mut freed = 0;
        self.bytes = 0;
        for (chunk, start, key) in order {
            // Chunks before this one hold nothing that stays.
            while freed < chunk {
                old[freed] = Vec::new();
                freed += 1;
            }
            let Some(len) = self.entries.get(&key).map(|entry| entry.len) else {
                continue;
            };
            let moved = self.append(&old[chunk][start..start + len]);
            if let Some(entry) = self.entries.get_mut(&key) {
                entry.chunk = moved.chunk;
                entry.start = moved.start;
            }
            self.bytes += key.len() + len;
        }
    }
}

/// What a file of kept functions starts with: its format, version 1, and
/// the hotslot that wrote it (whose wasmtime, and Cranelift, wrote the
/// code: another one's is refused whole rather than tried function by
/// function). Then, for each function, its key (32 bytes), the length of its code
/// (4 bytes, little-endian) and the code; then the SHA-256 of all that
/// precedes it.
const PACK_MAGIC: &[u8] = concat!(
    "hotslot compiled functions 1, hotslot ",
    env!("CARGO_PKG_VERSION"),
    "\n"
)
.as_bytes();

/// The functions kept in `path`, least recently used first: none if there
/// is no such file. A file that is not this user's and private, or whose
/// checksum or layout is wrong (damaged, another version), is refused
/// whole: Cranelift would turn what it holds into machine code as it is.
fn read_pack(path: &Path) -> Result<Pack, String> {
    let Some(mut file) = private_files::open_private(path)? else {
        return Ok(Pack::default());
    };
    // No more than a store can hold, with its framing.
    let most = (KEEP_BYTES * 2) as u64;
    let mut pack = Vec::new();
    (&mut file)
        .take(most + 1)
        .read_to_end(&mut pack)
        .map_err(|e| e.to_string())?;
    if pack.len() as u64 > most {
        return Err("larger than a store can be".into());
    }
    let body_len = pack
        .len()
        .checked_sub(32)
        .filter(|len| *len >= PACK_MAGIC.len() && pack.starts_with(PACK_MAGIC))
        .ok_or("not a file of compiled functions")?;
    let (body, sum) = pack.split_at(body_len);
    if Sha256::digest(body).as_slice() != sum {
        return Err("its checksum does not match: damaged".into());
    }
    let mut records = Vec::new();
    let mut at = PACK_MAGIC.len();
    while at < body_len {
        let cut_short = || "a record cut short".to_string();
        let key: Key = body
            .get(at..at + 32)
            .and_then(|key| key.try_into().ok())
            .ok_or_else(cut_short)?;
        let len: [u8; 4] = body
            .get(at + 32..at + 36)
            .and_then(|len| len.try_into().ok())
            .ok_or_else(cut_short)?;
        let start = at + 36;
        let end = usize::try_from(u32::from_le_bytes(len))
            .ok()
            .and_then(|len| start.checked_add(len))
            .filter(|end| *end <= body_len)
            .ok_or_else(cut_short)?;
        let code = start..end;
        at = code.end;
        records.push((key, code));
    }
    let sum = Sum::try_from(&pack[body_len..]).ok();
    pack.truncate(body_len);
    Ok(Pack {
        bytes: pack,
        records,
        sum,
    })
}

/// A file of kept functions, read and checked: where each one's code is.
#[derive(Default)]
struct Pack {
    bytes: Vec<u8>,
    records: Vec<(Key, std::ops::Range<usize>)>,
    /// Its checksum: what tells it from the next version of the file.
    sum: Option<Sum>,
}

/// A file's SHA-256, as it ends the file.
type Sum = [u8; 32];

/// The checksum at the end of the file at `path`, if there is one to read:
/// what tells whether another process wrote it since this one read or
/// wrote it (two writes of one store never end alike unless they are
/// alike).
fn sum_of(path: &Path) -> Option<Sum> {
    use std::io::{Seek, SeekFrom};
    let mut file = private_files::open_private(path).ok()??;
    file.seek(SeekFrom::End(-32)).ok()?;
    let mut sum = [0; 32];
    file.read_exact(&mut sum).ok()?;
    Some(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: u8) -> [u8; 32] {
        [name; 32]
    }

    #[test]
    fn keeps_and_gives_back() {
        let cache = FunctionCache::new(1000, 750);
        assert!(cache.get(&key(b'f')).is_none());
        assert!(cache.insert(&key(b'f'), vec![1, 2, 3]));
        assert_eq!(cache.get(&key(b'f')).as_deref(), Some(&[1u8, 2, 3][..]));
        assert!(cache.insert(&key(b'g'), vec![4]));
        assert_eq!(cache.get(&key(b'g')).as_deref(), Some(&[4u8][..]));
        assert_eq!(cache.get(&key(b'f')).as_deref(), Some(&[1u8, 2, 3][..]));
        assert_eq!(cache.bytes(), 64 + 4);
    }

    #[test]
    fn least_recently_used_goes_first() {
        let cache = FunctionCache::new(300, 200);
        for (name, fill) in [(b'a', 1), (b'b', 2), (b'c', 3)] {
            assert!(cache.insert(&key(name), vec![fill; 68]));
        }
        // `a` used again: `b` is now the oldest, then `c`.
        assert!(cache.get(&key(b'a')).is_some());
        assert!(cache.insert(&key(b'd'), vec![4; 68]));
        assert!(
            cache.get(&key(b'b')).is_none(),
            "the least recently used stays"
        );
        assert!(cache.get(&key(b'c')).is_none(), "trimmed to 200 bytes");
        // What stays is moved into fresh chunks, intact.
        assert_eq!(cache.get(&key(b'a')).as_deref(), Some(&[1u8; 68][..]));
        assert_eq!(cache.get(&key(b'd')).as_deref(), Some(&[4u8; 68][..]));
        assert_eq!(cache.bytes(), 200);
    }

    #[test]
    fn what_stays_moves_out_of_chunks_intact() {
        let size = CHUNK - 32;
        let cache = FunctionCache::new(5 * CHUNK, 3 * CHUNK);
        for name in 1..=5 {
            assert!(cache.insert(&key(name), vec![name; size]));
        }
        // Each in a chunk of its own; 2 and 4 used again, then a sixth
        // drives the total over the limit.
        assert!(cache.get(&key(2)).is_some());
        assert!(cache.get(&key(4)).is_some());
        assert!(cache.insert(&key(6), vec![6; size]));
        for gone in [1, 3, 5] {
            assert!(cache.get(&key(gone)).is_none(), "{gone} was used least");
        }
        for kept in [2, 4, 6] {
            assert_eq!(
                cache.get(&key(kept)).as_deref(),
                Some(&vec![kept; size][..])
            );
        }
        assert_eq!(cache.bytes(), 3 * CHUNK);
    }

    /// A store kept in `path`, as one run of a host would have it.
    fn kept_in(path: &Path) -> FunctionCache {
        let cache = FunctionCache::new(1000, 750);
        cache.keep_at(path.to_path_buf());
        cache.read_once();
        cache
    }

    #[test]
    fn kept_on_disk_and_read_back_by_the_next_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("functions").join("pack");
        let first = kept_in(&path);
        first.save();
        assert!(!path.exists(), "nothing kept, nothing written");
        assert!(first.get(&key(1)).is_none(), "nothing kept yet");
        assert!(first.insert(&key(1), vec![1, 2, 3]));
        assert!(first.insert(&key(2), vec![4]));
        first.save();
        let next = kept_in(&path);
        assert_eq!(next.get(&key(1)).as_deref(), Some(&[1u8, 2, 3][..]));
        assert_eq!(next.get(&key(2)).as_deref(), Some(&[4u8][..]));
    }

    #[test]
    fn two_runs_sharing_the_file_each_keep_what_the_other_compiled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("functions").join("pack");
        // A `watch` and a `call` started before either wrote anything.
        let (watch, call) = (kept_in(&path), kept_in(&path));
        assert!(watch.insert(&key(1), vec![1]));
        watch.save();
        assert!(call.insert(&key(2), vec![2]));
        call.save();
        assert!(watch.insert(&key(3), vec![3]));
        watch.save();
        let next = kept_in(&path);
        for name in 1..=3 {
            assert_eq!(next.get(&key(name)).as_deref(), Some(&[name][..]));
        }
    }

    #[test]
    fn what_another_run_kept_goes_before_what_this_one_uses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("functions").join("pack");
        let in_file = |cache: FunctionCache| {
            cache.keep_at(path.clone());
            cache.read_once();
            cache
        };
        // Room for three functions of 100 bytes with their keys; a trim
        // leaves two.
        let (this, other) = (
            in_file(FunctionCache::new(300, 200)),
            in_file(FunctionCache::new(300, 200)),
        );
        assert!(other.insert(&key(b'b'), vec![2; 68]));
        assert!(other.insert(&key(b'c'), vec![3; 68]));
        other.save();
        assert!(this.insert(&key(b'a'), vec![1; 68]));
        assert!(this.insert(&key(b'd'), vec![4; 68]));
        this.save();
        // Only the newest of theirs fits beside this run's two.
        let next = kept_in(&path);
        for kept in [b'a', b'd', b'c'] {
            assert!(next.get(&key(kept)).is_some(), "{} kept", kept as char);
        }
        assert!(next.get(&key(b'b')).is_none(), "b did not fit");
        assert_eq!(this.bytes(), 300);
        // The next trim drops theirs first: `c`, then this run's oldest.
        assert!(this.insert(&key(b'e'), vec![5; 68]));
        for kept in [b'd', b'e'] {
            assert!(this.get(&key(kept)).is_some(), "{} stays", kept as char);
        }
        for gone in [b'c', b'a'] {
            assert!(this.get(&key(gone)).is_none(), "{} goes", gone as char);
        }
    }

    #[test]
    fn a_file_naming_a_function_twice_counts_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("functions").join("pack");
        let cache = kept_in(&path);
        let mut body = PACK_MAGIC.to_vec();
        for _ in 0..2 {
            body.extend_from_slice(&key(7));
            body.extend_from_slice(&3u32.to_le_bytes());
            body.extend_from_slice(&[7, 7, 7]);
        }
        private_files::write_whole(&path, &summed(&body)).unwrap();
        assert!(cache.insert(&key(1), vec![1]));
        cache.save();
        assert_eq!(cache.bytes(), 32 + 1 + 32 + 3);
        let next = kept_in(&path);
        assert_eq!(next.bytes(), 32 + 1 + 32 + 3);
    }

    #[test]
    fn writers_saving_at_once_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("functions").join("pack");
        const WRITERS: u8 = 8;
        for round in 0..4u8 {
            let ready = std::sync::Barrier::new(usize::from(WRITERS));
            std::thread::scope(|scope| {
                for writer in 0..WRITERS {
                    let (path, ready) = (&path, &ready);
                    scope.spawn(move || {
                        let cache = FunctionCache::new(1 << 20, 1 << 19);
                        cache.keep_at(path.clone());
                        cache.read_once();
                        assert!(cache.insert(&key(round * WRITERS + writer), vec![writer; 4096]));
                        ready.wait();
                        cache.save();
                    });
                }
            });
        }
        let next = FunctionCache::new(1 << 20, 1 << 19);
        next.keep_at(path.clone());
        next.read_once();
        let lost: Vec<u8> = (0..4 * WRITERS)
            .filter(|name| next.get(&key(*name)).is_none())
            .collect();
        assert!(lost.is_empty(), "lost {lost:?}");
    }

    #[test]
    fn a_save_in_the_background_is_waited_for_before_exit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("functions").join("pack");
        let cache = Arc::new(kept_in(&path));
        assert!(cache.insert(&key(1), vec![1]));
        let (held, is_held) = std::sync::mpsc::channel();
        let (go, told) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|scope| {
            // Another save under way, until told to end (or, should the
            // save below wait for it, for ten seconds): the one started now
            // waits behind it, and the compile that started it does not.
            let cache = &cache;
            scope.spawn(move || {
                let _another = lock(&cache.saving);
                held.send(()).unwrap();
                let _ = told.recv_timeout(Duration::from_secs(10));
            });
            is_held.recv().unwrap();
            cache.save_in_background();
            assert!(!path.exists(), "written on the compile's time");
            go.send(()).unwrap();
        });
        cache.finish_saving();
        assert_eq!(kept_in(&path).get(&key(1)).as_deref(), Some(&[1u8][..]));
    }

    #[test]
    fn a_save_gives_up_on_a_lock_held_too_long_and_tries_again_later() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("functions").join("pack");
        let mut cache = FunctionCache::new(1000, 750);
        cache.patience = Duration::from_millis(50);
        cache.keep_at(path.clone());
        cache.read_once();
        assert!(cache.insert(&key(1), vec![1]));
        {
            // A process stopped while it held the lock.
            let _stopped =
                private_files::lock_exclusive(&path.with_extension("lock"), Duration::ZERO)
                    .unwrap();
            cache.save();
            assert!(!path.exists(), "written under another's lock");
        }
        cache.save();
        assert_eq!(kept_in(&path).get(&key(1)).as_deref(), Some(&[1u8][..]));
    }

    #[test]
    fn a_save_sweeps_what_dead_writers_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("functions").join("pack");
        let cache = kept_in(&path);
        assert!(cache.insert(&key(1), vec![1]));
        cache.save();
        let left = |name: &str, age: u64| {
            let file = std::fs::File::create(path.with_file_name(name)).unwrap();
            let at = std::time::SystemTime::now() - std::time::Duration::from_secs(age);
            file.set_modified(at).unwrap();
        };
        left("pack.1-0.tmp", 2 * 3600);
        left("pack.2-0.tmp", 60);
        assert!(cache.insert(&key(2), vec![2]));
        cache.save();
        assert!(
            !path.with_file_name("pack.1-0.tmp").exists(),
            "stale: swept"
        );
        assert!(
            path.with_file_name("pack.2-0.tmp").exists(),
            "maybe still written"
        );
        assert!(path.exists());
    }

    #[test]
    fn a_damaged_or_cut_file_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("functions").join("pack");
        let first = kept_in(&path);
        assert!(first.insert(&key(1), vec![7; 100]));
        first.save();
        let whole = std::fs::read(&path).unwrap();
        let mut damaged = whole.clone();
        damaged[PACK_MAGIC.len() + 40] ^= 1;
        for bad in [damaged, whole[..whole.len() - 1].to_vec()] {
            std::fs::write(&path, bad).unwrap();
            assert!(kept_in(&path).get(&key(1)).is_none());
        }
    }

    /// `body` as a file of kept functions, its checksum right.
    fn summed(body: &[u8]) -> Vec<u8> {
        let mut file = body.to_vec();
        file.extend_from_slice(&Sha256::digest(body));
        file
    }

    #[test]
    fn a_file_with_its_sum_right_but_not_ours_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("functions").join("pack");
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
            .create(dir.path().join("functions"))
            .unwrap();
        let mut record = key(1).to_vec();
        record.extend_from_slice(&100u32.to_le_bytes());
        record.extend_from_slice(&[7; 10]);
        let cut = [PACK_MAGIC, &record].concat();
        let other = [
            &b"hotslot compiled functions 1, hotslot 0.0.0\n"[..],
            &record[..36],
            &[7; 100],
        ]
        .concat();
        let fine = [PACK_MAGIC, &record[..36], &[7; 100]].concat();
        for (body, read) in [(cut, false), (other, false), (fine, true)] {
            std::fs::write(&path, summed(&body)).unwrap();
            assert_eq!(kept_in(&path).get(&key(1)).is_some(), read);
        }
    }

    #[test]
    fn what_cranelift_inserts_again_replaces_what_was_kept() {
        let cache = FunctionCache::new(1000, 750);
        assert!(cache.insert(&key(1), vec![1]));
        assert!(cache.insert(&key(1), vec![2, 2]));
        assert_eq!(cache.get(&key(1)).as_deref(), Some(&[2u8, 2][..]));
        assert_eq!(cache.bytes(), 32 + 2);
    }

    #[test]
    fn refuses_what_cannot_fit() {
        let cache = FunctionCache::new(100, 50);
        assert!(!cache.insert(&key(b'x'), vec![0; 100]));
        assert!(cache.get(&key(b'x')).is_none());
        assert!(
            !cache.insert(b"not a hash", vec![0]),
            "keys are SHA-256 hashes"
        );
    }
}
