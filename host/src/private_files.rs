//! Files only this user can write, in the user's cache directory: whoever
//! can write a file of compiled code chooses the code a host runs. Opened
//! once and checked on the open file; written whole under a temporary name,
//! then renamed into place.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// A temporary file older than this was left by a writer that died.
const STALE_TEMPORARY: Duration = Duration::from_secs(3600);

/// The user's hotslot cache directory: `$XDG_CACHE_HOME/hotslot`, else
/// `~/.cache/hotslot`; `None` without an absolute one of those.
pub(crate) fn user_dir() -> Option<PathBuf> {
    // Relative paths are ignored (as the XDG base directory rules say):
    // code would otherwise be kept under whatever directory the host
    // happens to run in.
    let absolute = |name| Some(PathBuf::from(std::env::var_os(name)?)).filter(|p| p.is_absolute());
    let root = match absolute("XDG_CACHE_HOME") {
        Some(dir) => dir,
        None => absolute("HOME")?.join(".cache"),
    };
    Some(root.join("hotslot"))
}

/// `path` opened for reading if it is there (`None` if not) and it and its
/// directory are this user's and writable by no one else: whoever can
/// write there chooses the code this host runs.
pub(crate) fn open_private(path: &Path) -> Result<Option<fs::File>, String> {
    let file = match open_no_follow(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    trusted(&file, path)?;
    Ok(Some(file))
}

/// Whether the opened `file` (at `path`) and its directory are this
/// user's and writable by no one else.
#[cfg(unix)]
fn trusted(file: &fs::File, path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let private = |meta: &fs::Metadata| meta.uid() == me && meta.mode() & 0o022 == 0;
    let file = file.metadata().map_err(|e| e.to_string())?;
    let dir = path.parent().map(fs::metadata);
    match dir {
        _ if !file.is_file() => Err("it is not a regular file".into()),
        Some(Ok(dir)) if private(&dir) && private(&file) => Ok(()),
        _ => Err("it, or its directory, is another user's or writable by others".into()),
    }
}

#[cfg(not(unix))]
fn trusted(_file: &fs::File, _path: &Path) -> Result<(), String> {
    Ok(())
}

/// Writes `bytes` to `path` under a temporary name, then renames it into
/// place: a reader sees no file or a whole one. The directory is made
/// private. Not flushed to disk first: after a crash the name may hold a
/// torn file, which every reader of these files refuses by the checksum it
/// ends with (compiled code, compiled functions), so a crash costs a
/// compile, while a flush would cost every compile the disk's latency.
pub(crate) fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    make_private_dir(dir)?;
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let temporary = path.with_extension(format!(
        "{}-{}.tmp",
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    // Writable by this user only, whatever the umask (see `trusted`).
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options
        .open(&temporary)
        .and_then(|mut file| file.write_all(bytes))
        .and_then(|()| fs::rename(&temporary, path));
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written
}

/// Takes the lock file `path` (made private if it is not there), waiting
/// at most `patience` while another process (or another writer in this
/// one) holds it; held until the returned file is dropped. Writers that
/// read, change and write back a shared file take it around all three, so
/// that none of them writes over what another added meanwhile. Bounded: a
/// process stopped while holding it (suspended at a terminal, say) must not
/// stop this one.
pub(crate) fn lock_exclusive(path: &Path, patience: Duration) -> std::io::Result<fs::File> {
    make_private_dir(path.parent().unwrap_or(Path::new(".")))?;
    let mut options = fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    let named =
        |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let file = options.open(path).map_err(named)?;
    let until = Instant::now() + patience;
    let mut pause = Duration::from_millis(1);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            // A file system without locks: written unlocked, whole as ever
            // (a rename), at worst without another writer's latest.
            Err(fs::TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {
                return Ok(file)
            }
            Err(fs::TryLockError::Error(e)) => return Err(named(e)),
            Err(fs::TryLockError::WouldBlock) if Instant::now() >= until => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "{} stayed locked by another process for {} ms",
                        path.display(),
                        patience.as_millis()
                    ),
                ))
            }
            // A lock file has no waiting with a deadline (`flock` waits
            // for ever or not at all): looked at again, less and less often.
            Err(fs::TryLockError::WouldBlock) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
        }
    }
}

/// Opens `path` for reading, refusing a symbolic link as its last part,
/// and without waiting: opening a FIFO (refused next, by [`trusted`])
/// waited for a writer that never came, and every load of its component
/// with it.
fn open_no_follow(path: &Path) -> std::io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut options,
        libc::O_NOFOLLOW | libc::O_NONBLOCK,
    );
    options.open(path)
}

/// Creates `dir` (and its parents) readable and writable by its user only:
/// whoever can write there chooses the code this host runs.
fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(dir)?;
        // Made before, by hand or with another umask: made private now (by
        // its owner only; anyone else's stays refused, see `trusted`).
        if fs::metadata(dir)?.permissions().mode() & 0o022 != 0 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    builder.create(dir)
}

/// Whether `path`, last changed at `modified`, is a temporary file a writer
/// that died left behind (see [`write_whole`]).
pub(crate) fn stale_temporary(path: &Path, modified: SystemTime) -> bool {
    let age = SystemTime::now()
        .duration_since(modified)
        .unwrap_or_default();
    age > STALE_TEMPORARY && path.extension().is_some_and(|e| e == "tmp")
}

/// Removes the temporary files in `dir` that writers which died left
/// behind.
pub(crate) fn sweep_stale_temporaries(dir: &Path) {
    let Ok(listing) = fs::read_dir(dir) else {
        return;
    };
    for entry in listing.flatten() {
        let path = entry.path();
        let modified = entry.metadata().and_then(|meta| meta.modified());
        if modified.is_ok_and(|at| stale_temporary(&path, at)) {
            let _ = fs::remove_file(&path);
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// A FIFO where compiled code is kept is refused at once: opening it
    /// waited for a writer, holding every load of its component.
    #[test]
    fn a_fifo_among_private_files_is_refused_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        make_private_dir(dir.path()).unwrap();
        let fifo = dir.path().join("code.cwasm");
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid, NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let (answer, answered) = std::sync::mpsc::channel();
        std::thread::spawn(move || answer.send(open_private(&fifo).map(|f| f.is_some())));
        let opened = answered.recv_timeout(std::time::Duration::from_secs(30));
        assert_eq!(opened, Ok(Err("it is not a regular file".to_string())));
    }
}
