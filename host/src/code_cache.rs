//! Compiled code kept on disk between runs: a component loaded again (a
//! restarted host, the next `hotslot call` on the same file) has its
//! machine code mapped from a file instead of compiled.
//!
//! One file per component content and engine configuration, under the
//! user's cache directory (`$XDG_CACHE_HOME/hotslot/code`, else
//! `~/.cache/hotslot/code`), holding what wasmtime's `serialize` wrote,
//! uncompressed. Loading it is wasmtime's `deserialize_file`, an `mmap`:
//! ~4 ms for an 18 MB Python component, where wasmtime's own disk cache
//! (which hashes the bytes again and decompresses what it kept) took ~100.
//!
//! A mapped file changed in place would change the code of a running
//! host, so files are only ever written whole under a temporary name and
//! renamed into place, and removed, never rewritten. wasmtime checks a
//! file's header, not its code: each file ends with a checksum of what
//! precedes it, so that a file damaged on disk is refused rather than run
//! as machine code. A file refused (damaged, written by another wasmtime)
//! is removed, and the component compiled and kept again. The directory is
//! kept under [`KEEP_BYTES`], the least recently used files going first;
//! it is listed only when what this process wrote may have taken it over
//! (or a minute after the last listing: other processes write there too),
//! since listing it costs a `stat` per file, and it fills with thousands of
//! a small plugin's rebuilds.

use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

use crate::engine::{Compiler, MemoryInit};
use crate::private_files;
use crate::sync::lock;

/// How many bytes of compiled code the directory keeps: about thirty
/// versions of an 18 MB Python component (34 MB of code each).
pub(crate) const KEEP_BYTES: u64 = 1 << 30;

/// How long the size this process last listed a directory at is trusted,
/// with what it wrote since added: other processes write there too.
const RELIST: Duration = Duration::from_secs(60);

/// What this process knows of each directory it keeps code in: its size
/// when last listed (and trimmed), plus what it has written there since.
static SIZES: Mutex<Vec<(PathBuf, Known)>> = Mutex::new(Vec::new());

struct Known {
    bytes: u64,
    listed: Instant,
}

/// The file that holds, or will hold, one component's compiled code.
#[derive(Debug)]
pub(crate) struct Entry {
    path: PathBuf,
    keep_bytes: u64,
}

impl Entry {
    /// The entry for `content` (its SHA-256) compiled by `engine` (built to
    /// compile with `compiler` and initialize memory as `init` says), in
    /// the user's cache directory; `None` when no cache directory can be
    /// named (no absolute `XDG_CACHE_HOME` or `HOME`).
    pub(crate) fn for_user(
        content: &[u8; 32],
        engine: &Engine,
        compiler: Compiler,
        init: MemoryInit,
    ) -> Option<Entry> {
        let dir = private_files::user_dir()?.join("code");
        Some(Entry::in_dir(
            &dir, content, engine, compiler, init, KEEP_BYTES,
        ))
    }

    /// Like [`Entry::for_user`], in `dir`, which is kept under `keep_bytes`.
    pub(crate) fn in_dir(
        dir: &Path,
        content: &[u8; 32],
        engine: &Engine,
        compiler: Compiler,
        init: MemoryInit,
        keep_bytes: u64,
    ) -> Entry {
        let hex: String = content.iter().map(|b| format!("{b:02x}")).collect();
        let init = match init {
            MemoryInit::Copy => "copy",
            MemoryInit::Map => "map",
        };
        // What wasmtime needs to be the same for code to be reused (its
        // settings and the processor's features): hosts configured
        // differently keep apart files rather than replace each other's.
        // SHA-256 rather than std's hasher, whose output may change with
        // the Rust toolchain (every file would then be missed once).
        let mut engine_hash = StableHasher(Sha256::new());
        engine
            .precompile_compatibility_hash()
            .hash(&mut engine_hash);
        env!("CARGO_PKG_VERSION").hash(&mut engine_hash);
        let name = format!(
            "{hex}-{compiler}-{init}-{:016x}.cwasm",
            engine_hash.finish()
        );
        Entry {
            path: dir.join(name),
            keep_bytes,
        }
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The component, mapped from the file into `engine`, if the file is
    /// there and wasmtime takes it; a file it refuses is removed.
    pub(crate) fn load(&self, engine: &Engine) -> Option<Component> {
        self.load_as(engine, self.on_local_disk())
    }

    /// [`Entry::load`], mapping the file or (`map` false) reading it.
    fn load_as(&self, engine: &Engine, map: bool) -> Option<Component> {
        // Opened once: what is checked below is what wasmtime maps, even
        // if the name is pointed elsewhere meanwhile.
        let file = match private_files::open_private(&self.path) {
            Ok(Some(file)) => file,
            Ok(None) => return None,
            Err(why) => {
                tracing::warn!("not using compiled code in {}: {why}", self.path.display());
                return None;
            }
        };
        let loaded = if map {
            checked_len(&file).and_then(|_| {
                // SAFETY: the file was written by `Entry::store` with what
                // `serialize` gave for this engine's configuration (the name
                // says which), whole and renamed into place, and its checksum
                // says it is still what was written; it is this user's and no
                // one else can write it or its directory (checked just above,
                // on the file that is mapped); files there are never changed
                // in place, only removed, which leaves a mapping whole on a
                // local disk. wasmtime checks the header (its version,
                // settings, processor features) and refuses what does not
                // match; it reads the code's own sections by their offsets,
                // so the checksum after them is never read as code.
                unsafe { Component::deserialize_file(engine, fd_path(&file, &self.path)) }
            })
        } else {
            // On a network file system a file removed by another machine
            // takes its mapped pages with it (a fault, not an error): read
            // it whole instead.
            read_whole(&file).and_then(|whole| {
                let code = checked(&whole)?;
                // SAFETY: as above, read into memory rather than mapped.
                unsafe { Component::deserialize(engine, code) }
            })
        };
        match loaded {
            Ok(component) => {
                // Used now: the last to go when the directory is trimmed.
                if let Err(e) = file.set_modified(SystemTime::now()) {
                    tracing::debug!("cannot mark {} as used: {e}", self.path.display());
                }
                Some(component)
            }
            // The code is sound, but this engine's instance pool cannot
            // hold such a component (wasmtime checks at load, and says so
            // in these words): the compile that follows is refused for the
            // same reason, and says it; the file stays, for engines
            // without a pool (`hotslot call`).
            Err(e) if format!("{e:#}").contains("in the pooling allocator") => {
                tracing::debug!("{}: {e:#}", self.path.display());
                None
            }
            Err(e) => {
                tracing::warn!(
                    "compiled code in {} cannot be used: {e:#}",
                    self.path.display()
                );
                // Only the file refused: not one another host has renamed
                // into its place meanwhile.
                if same_file(&file, &self.path) {
                    let _ = fs::remove_file(&self.path);
                }
                None
            }
        }
    }

    /// Whether the directory is on a local disk, where a mapped file
    /// stays whole after it is removed (see `load`).
    #[cfg(target_os = "linux")]
    fn on_local_disk(&self) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let Some(dir) = self.path.parent() else {
            return false;
        };
        let Ok(dir) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
            return false;
        };
        // SAFETY: `dir` is a NUL-terminated path; `stats` is written by
        // statfs and read only when it succeeded.
        let kind = unsafe {
            let mut stats: libc::statfs = std::mem::zeroed();
            if libc::statfs(dir.as_ptr(), &mut stats) != 0 {
                return false;
            }
            stats.f_type as i64
        };
        LOCAL_FILE_SYSTEMS.contains(&kind)
    }

    #[cfg(not(target_os = "linux"))]
    fn on_local_disk(&self) -> bool {
        true
    }

    /// Keeps `code` (what `serialize` gave) in the file, then trims the
    /// directory; whether it is kept. A failure costs the next run a
    /// compile, so it is logged, not returned.
    pub(crate) fn store(&self, code: &[u8]) -> bool {
        match self.write(code) {
            Ok(()) => {
                self.trim_if_due((code.len() + TRAILER) as u64);
                true
            }
            Err(e) => {
                tracing::warn!("cannot keep compiled code in {}: {e}", self.path.display());
                false
            }
        }
    }

    /// Writes `code` and its trailer under a temporary name, then renames
    /// them into place: a reader sees no file or a whole one (or, after a
    /// crash, a torn one, which the checksum refuses).
    fn write(&self, code: &[u8]) -> std::io::Result<()> {
        let mut whole = Vec::with_capacity(code.len() + TRAILER);
        whole.extend_from_slice(code);
        whole.extend_from_slice(&checksum(code));
        whole.extend_from_slice(TRAILER_MAGIC);
        private_files::write_whole(&self.path, &whole)
    }

    /// Keeps `whole` in the file as it is, trailer and all (for tests that
    /// damage it).
    #[cfg(test)]
    fn store_raw(&self, whole: &[u8]) -> bool {
        private_files::write_whole(&self.path, whole).is_ok()
    }

    /// Trims the directory (see [`Entry::trim`]) unless what this process
    /// knows of it says it holds at most `keep_bytes` with the `written`
    /// bytes just kept.
    fn trim_if_due(&self, written: u64) {
        let Some(dir) = self.path.parent() else {
            return;
        };
        let mut sizes = lock(&SIZES);
        let known = sizes.iter_mut().find(|(d, _)| d == dir);
        if let Some((_, known)) = known {
            let bytes = known.bytes.saturating_add(written);
            if known.listed.elapsed() < RELIST && bytes <= self.keep_bytes {
                known.bytes = bytes;
                return;
            }
        }
        drop(sizes);
        let Some(bytes) = self.trim() else {
            return;
        };
        let known = Known {
            bytes,
            listed: Instant::now(),
        };
        let mut sizes = lock(&SIZES);
        match sizes.iter_mut().find(|(d, _)| d == dir) {
            Some((_, old)) => *old = known,
            None => sizes.push((dir.to_path_buf(), known)),
        }
    }

    /// Removes temporary files writers left behind and, when the directory
    /// holds more than `keep_bytes`, the least recently used files until it
    /// holds at most fifteen sixteenths of it: a directory at its limit is
    /// then not listed again on every store. Answers what it holds after,
    /// or `None` if it cannot be listed.
    fn trim(&self) -> Option<u64> {
        let dir = self.path.parent()?;
        let listing = fs::read_dir(dir).ok()?;
        let mut kept = Vec::new();
        for entry in listing.flatten() {
            let (path, Ok(meta)) = (entry.path(), entry.metadata()) else {
                continue;
            };
            let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            if path.extension().is_some_and(|e| e == "cwasm") {
                kept.push((used, meta.len(), path));
            } else if private_files::stale_temporary(&path, used) {
                let _ = fs::remove_file(&path);
            }
        }
        let mut total: u64 = kept.iter().map(|(_, len, _)| len).sum();
        if total <= self.keep_bytes {
            return Some(total);
        }
        let low = self.keep_bytes - self.keep_bytes / 16;
        kept.sort();
        for (_, len, path) in kept {
            if total <= low {
                break;
            }
            // The file just written stays, even alone over the limit.
            if path == self.path {
                continue;
            }
            if fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
        Some(total)
    }
}

/// Linux file systems (`statfs` magic numbers) on which a removed file
/// stays whole while mapped: ext2/3/4, XFS, Btrfs, tmpfs, overlayfs, ZFS,
/// F2FS, bcachefs. Any other is read rather than mapped.
#[cfg(target_os = "linux")]
const LOCAL_FILE_SYSTEMS: [i64; 8] = [
    0xEF53,
    0x5846_5342,
    0x9123_683E,
    0x0102_1994,
    0x794C_7630,
    0x2FC1_2FC1,
    0xF2F5_2010,
    0xCA45_1A4E,
];

/// What ends a kept file, after the code's checksum: tells a file this
/// hotslot wrote from one an older one did (without a checksum).
const TRAILER_MAGIC: &[u8; 8] = b"hotslot1";

/// The bytes after the code: its checksum, then [`TRAILER_MAGIC`].
const TRAILER: usize = 4 + TRAILER_MAGIC.len();

/// The checksum kept after `code`: a CRC-32 (IEEE), which catches what
/// disks and copies do to a file (any burst of up to 32 flipped bits, and
/// all but one in four billion other damages) at several gigabytes a
/// second, where SHA-256 would add ~15 ms to mapping the Python
/// interpreter's 34 MB. Those who can write the directory are not guarded
/// against by a checksum: nobody but the user can (`private_files`).
fn checksum(code: &[u8]) -> [u8; 4] {
    crc32fast::hash(code).to_le_bytes()
}

/// The code in `whole` (a kept file's bytes), if its trailer is there and
/// its checksum right.
fn checked(whole: &[u8]) -> wasmtime::Result<&[u8]> {
    let code_len = whole
        .len()
        .checked_sub(TRAILER)
        .filter(|len| whole[len + 4..] == TRAILER_MAGIC[..])
        .ok_or_else(|| {
            wasmtime::format_err!("no checksum at its end: not written by this hotslot")
        })?;
    let (code, trailer) = whole.split_at(code_len);
    if checksum(code)[..] != trailer[..4] {
        wasmtime::bail!("its checksum does not match: damaged");
    }
    Ok(code)
}

/// The length of the code in `file`, if its trailer is there and its
/// checksum right. The code is read through a mapping of its own, not
/// copied out: the pages read are the page cache's, which wasmtime's
/// mapping then shares (copying 34 MB out took longer than summing it).
fn checked_len(file: &fs::File) -> wasmtime::Result<u64> {
    let no_trailer =
        || wasmtime::format_err!("no checksum at its end: not written by this hotslot");
    let len = usize::try_from(file.metadata()?.len())?;
    let code_len = len.checked_sub(TRAILER).ok_or_else(no_trailer)?;
    let whole = ReadOnlyMap::new(file, len)?;
    let trailer = &whole.bytes()[code_len..];
    if trailer[4..] != TRAILER_MAGIC[..] {
        return Err(no_trailer());
    }
    if checksum(&whole.bytes()[..code_len])[..] != trailer[..4] {
        wasmtime::bail!("its checksum does not match: damaged");
    }
    Ok(code_len as u64)
}

/// The first `len` bytes of a file, mapped read-only while this lives.
struct ReadOnlyMap {
    start: *mut libc::c_void,
    len: usize,
}

impl ReadOnlyMap {
    fn new(file: &fs::File, len: usize) -> std::io::Result<ReadOnlyMap> {
        use std::os::fd::AsRawFd;
        if len == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        // SAFETY: a fresh private read-only mapping of an open file,
        // placed by the kernel: it aliases no memory of ours.
        let start = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if start == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the range just mapped; advice only (read ahead).
        unsafe { libc::madvise(start, len, libc::MADV_SEQUENTIAL) };
        Ok(ReadOnlyMap { start, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `len` readable bytes from `start`, mapped until drop. The
        // file is never changed in place or cut short (only removed, which
        // leaves the mapping whole on the local disks this path is used on:
        // see `Entry::load`), so the bytes cannot change under the slice.
        unsafe { std::slice::from_raw_parts(self.start.cast::<u8>(), self.len) }
    }
}

impl Drop for ReadOnlyMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped; no slice outlives `self`.
        unsafe { libc::munmap(self.start, self.len) };
    }
}

/// A path that opens `file` itself (on Linux, through `/proc`), else `path`.
fn fd_path(file: &fs::File, path: &Path) -> PathBuf {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let by_fd = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        if by_fd.exists() {
            return by_fd;
        }
    }
    let _ = file;
    path.to_path_buf()
}

/// The whole of `file`, from its start.
fn read_whole(mut file: &fs::File) -> wasmtime::Result<Vec<u8>> {
    use std::io::Read;
    let mut code = Vec::new();
    file.read_to_end(&mut code)?;
    Ok(code)
}

/// Whether `path` still names `file`.
fn same_file(file: &fs::File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), fs::symlink_metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        true
    }
}

/// A [`Hasher`] over SHA-256, whose output does not change with the Rust
/// toolchain (std's `DefaultHasher` may).
struct StableHasher(Sha256);

impl Hasher for StableHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        let mut first = [0; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADD: &str = r#"(component
        (core module $m (func (export "add") (param i32 i32) (result i32)
            local.get 0 local.get 1 i32.add))
        (core instance $i (instantiate $m))
        (func (export "add") (param "a" s32) (param "b" s32) (result s32)
            (canon lift (core func $i "add"))))"#;

    fn engine() -> Engine {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        Engine::new(&config).expect("an engine")
    }

    /// An engine configured unlike [`engine`]'s: its code differs.
    fn epoch_engine() -> Engine {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        Engine::new(&config).expect("an engine")
    }

    fn entry(dir: &Path, engine: &Engine, content: u8, keep_bytes: u64) -> Entry {
        let compiler = Compiler::Cranelift;
        Entry::in_dir(
            dir,
            &[content; 32],
            engine,
            compiler,
            MemoryInit::Copy,
            keep_bytes,
        )
    }

    fn code(engine: &Engine) -> Vec<u8> {
        compiled(engine, ADD)
    }

    fn compiled(engine: &Engine, text: &str) -> Vec<u8> {
        let wasm = wat::parse_str(text).expect("parses");
        let component = Component::new(engine, wasm).expect("compiles");
        component.serialize().expect("serializes")
    }

    #[test]
    fn code_kept_is_mapped_back_and_answers() {
        let dir = tempfile::tempdir().expect("a directory");
        let engine = engine();
        let entry = entry(dir.path(), &engine, 1, KEEP_BYTES);
        assert!(entry.load(&engine).is_none(), "nothing kept yet");
        assert!(entry.store(&code(&engine)));
        let component = entry.load(&engine).expect("kept code loads");
        assert_eq!(add(&engine, &component), 42);
    }

    #[test]
    fn a_damaged_file_is_refused_and_removed() {
        let dir = tempfile::tempdir().expect("a directory");
        let engine = engine();
        let entry = entry(dir.path(), &engine, 2, KEEP_BYTES);
        let good = code(&engine);
        for damaged in [b"not code at all".to_vec(), good[..good.len() / 2].to_vec()] {
            assert!(entry.store(&damaged));
            assert!(entry.load(&engine).is_none(), "damaged code was taken");
            assert!(!entry.path().exists(), "damaged file left in place");
        }
    }

    #[test]
    fn a_bit_flipped_anywhere_is_refused_mapped_or_read() {
        let dir = tempfile::tempdir().expect("a directory");
        let engine = engine();
        let entry = entry(dir.path(), &engine, 3, KEEP_BYTES);
        let good = code(&engine);
        assert!(entry.store(&good));
        let whole = fs::read(entry.path()).expect("kept");
        // Most of these land where wasmtime looks at nothing (code, data,
        // tables): only the checksum tells them apart.
        for at in (0..whole.len()).step_by(whole.len() / 97 + 1) {
            for map in [true, false] {
                let mut flipped = whole.clone();
                flipped[at] ^= 0x20;
                assert!(entry.store_raw(&flipped));
                assert!(
                    entry.load_as(&engine, map).is_none(),
                    "a bit flipped at byte {at} of {} was taken (mapped: {map})",
                    whole.len()
                );
                assert!(!entry.path().exists(), "damaged file left in place");
            }
        }
        assert!(entry.store_raw(&whole));
        assert!(
            entry.load_as(&engine, false).is_some(),
            "the whole file, read"
        );
        assert!(
            entry.load_as(&engine, true).is_some(),
            "the whole file, mapped"
        );
        assert!(entry.store_raw(&good));
        assert!(
            entry.load(&engine).is_none(),
            "a file with no checksum was taken"
        );
    }

    #[test]
    fn the_directory_is_trimmed_least_recently_used_first() {
        let dir = tempfile::tempdir().expect("a directory");
        let engine = engine();
        let code = code(&engine);
        let size = (code.len() + TRAILER) as u64;
        // Room for two files and a half (trimmed to fifteen sixteenths of
        // it, room for two): the third written sends out the one used least
        // recently, which is the first unless it was loaded since.
        let entries: Vec<Entry> = (0..3)
            .map(|i| entry(dir.path(), &engine, i, 2 * size + size / 2))
            .collect();
        let age = |entry: &Entry, seconds| {
            let file = fs::File::open(entry.path()).expect("kept");
            let when = SystemTime::now() - std::time::Duration::from_secs(seconds);
            file.set_modified(when).expect("dated");
        };
        assert!(entries[0].store(&code));
        assert!(entries[1].store(&code));
        age(&entries[0], 20);
        age(&entries[1], 10);
        assert!(entries[0].load(&engine).is_some(), "kept");
        assert!(entries[2].store(&code));
        assert!(entries[0].path().exists(), "the file used last went");
        assert!(!entries[1].path().exists(), "the file used least stayed");
        assert!(entries[2].path().exists(), "the file written went");
    }

    /// A store lists the directory only when what this process wrote may
    /// have taken it over its limit: another process's file that takes it
    /// over goes only then (or a minute later).
    #[test]
    fn a_store_lists_the_directory_only_when_it_may_be_over() {
        let dir = tempfile::tempdir().expect("a directory");
        let engine = engine();
        let code = code(&engine);
        let size = (code.len() + TRAILER) as u64;
        let entries: Vec<Entry> = (0..4)
            .map(|i| entry(dir.path(), &engine, i, 3 * size))
            .collect();
        assert!(entries[0].store(&code));
        // Another process's code, used long ago: the directory is full.
        let other = dir.path().join("other.cwasm");
        fs::write(&other, vec![0; 2 * size as usize]).expect("written");
        let file = fs::File::open(&other).expect("there");
        let long_ago = SystemTime::now() - std::time::Duration::from_secs(3600);
        file.set_modified(long_ago).expect("dated");
        assert!(entries[1].store(&code));
        assert!(entries[2].store(&code));
        assert!(
            other.exists(),
            "listed though what this process wrote kept it under the limit"
        );
        assert!(entries[3].store(&code));
        assert!(
            !other.exists(),
            "not trimmed once this process's writes reached the limit"
        );
        // Six files' worth, trimmed to under fifteen sixteenths of three:
        // two left, the newest.
        assert!(!entries[1].path().exists(), "trimmed only to the limit");
        assert!(entries[2].path().exists() && entries[3].path().exists());
    }

    /// Calls `add(40, 2)` on a new instance of `component`.
    fn add(engine: &Engine, component: &Component) -> i32 {
        let mut store = wasmtime::Store::new(engine, ());
        let instance = wasmtime::component::Linker::new(engine)
            .instantiate(&mut store, component)
            .expect("instantiates");
        let add = instance
            .get_typed_func::<(i32, i32), (i32,)>(&mut store, "add")
            .expect("exports add");
        add.call(&mut store, (40, 2)).expect("answers").0
    }

    #[test]
    fn code_mapped_answers_after_its_file_is_replaced_and_removed() {
        let dir = tempfile::tempdir().expect("a directory");
        let engine = engine();
        let entry = entry(dir.path(), &engine, 5, KEEP_BYTES);
        assert!(entry.store(&code(&engine)));
        for map in [true, false] {
            let component = entry.load_as(&engine, map).expect("kept code loads");
            // What another host does meanwhile: keeps other code under the
            // same name, then trims it away.
            assert!(entry.store(&compiled(&engine, &ADD.replace("i32.add", "i32.sub"))));
            fs::remove_file(entry.path()).expect("removed");
            assert_eq!(add(&engine, &component), 42);
            assert!(entry.store(&code(&engine)));
        }
    }

    #[test]
    fn code_kept_for_another_engine_is_refused_and_removed() {
        let dir = tempfile::tempdir().expect("a directory");
        let (plain, other) = (engine(), epoch_engine());
        // The other engine's code, under the plain engine's name.
        let entry = entry(dir.path(), &plain, 6, KEEP_BYTES);
        assert!(entry.store(&code(&other)));
        assert!(entry.load(&plain).is_none(), "ran another engine's code");
        assert!(!entry.path().exists(), "refused file left in place");
    }

    #[cfg(unix)]
    #[test]
    fn code_others_can_write_is_not_run() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("a directory");
        let engine = engine();
        let entry = entry(dir.path(), &engine, 4, KEEP_BYTES);
        assert!(entry.store(&code(&engine)));
        let code_dir = entry.path().parent().expect("a directory");
        let mode = |path: &Path, mode| {
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
        };
        mode(code_dir, 0o777);
        assert!(
            entry.load(&engine).is_none(),
            "ran code from a shared directory"
        );
        mode(code_dir, 0o700);
        mode(entry.path(), 0o666);
        assert!(entry.load(&engine).is_none(), "ran code others can change");
        mode(entry.path(), 0o644);
        assert!(entry.load(&engine).is_some(), "refused a private file");
    }

    #[test]
    fn engines_configured_differently_keep_apart_files() {
        let dir = tempfile::tempdir().expect("a directory");
        let (plain, other) = (engine(), epoch_engine());
        let a = entry(dir.path(), &plain, 3, KEEP_BYTES);
        let b = entry(dir.path(), &other, 3, KEEP_BYTES);
        assert_ne!(a.path(), b.path());
    }
}
