//! Compiled functions kept in memory by their content, so that a reload of
//! changed bytes has Cranelift compile only the functions that changed.
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

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use wasmtime::CacheStore;

use crate::sync::lock;

/// Bytes of compiled functions kept at most: Python's interpreter (the 18 MB
/// greeter) takes 27 MB, the JavaScript greeter's 36 MB; plugins of one
/// language share theirs.
const KEEP_BYTES: usize = 128 << 20;

/// What is left after a trim: trimming a quarter at a time keeps a store
/// that sits at its limit from trimming on every insert.
const TRIM_TO: usize = KEEP_BYTES / 4 * 3;

/// The process's store of compiled functions.
pub(crate) fn shared() -> Arc<FunctionCache> {
    static SHARED: OnceLock<Arc<FunctionCache>> = OnceLock::new();
    SHARED
        .get_or_init(|| Arc::new(FunctionCache::new(KEEP_BYTES, TRIM_TO)))
        .clone()
}

/// Compiled functions by cache key, with their last use.
#[derive(Debug)]
pub(crate) struct FunctionCache {
    keep: usize,
    trim_to: usize,
    inner: Mutex<Inner>,
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
            looked: AtomicU64::new(0),
            found: AtomicU64::new(0),
        }
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
        if inner.entries.contains_key(&key) {
            // Same key, same function: what is kept is as good.
            return true;
        }
        inner.uses += 1;
        let entry = inner.append(&value);
        inner.entries.insert(key, entry);
        inner.bytes += size;
        if inner.bytes > self.keep {
            inner.trim(self.trim_to);
        }
        true
    }
}

impl Inner {
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
