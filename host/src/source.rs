//! What a plugin is loaded from: a component file and the manifest beside
//! it, read so that nothing in a watched directory can stall or starve the
//! host, and the plugin name a file gives.
//!
//! - Only regular files are read (a symlink to one is fine). The type is
//!   checked on the opened descriptor, not the path, and the file is opened
//!   non-blocking, so a FIFO, a device or a socket is refused at once rather
//!   than read forever or waited on.
//! - A component's 8-byte header is checked before the rest is read, and a
//!   file over the size limit is refused before any of it is read.
//! - A name is the file stem, and only names that can be said in UTF-8
//!   without control characters are accepted: every line that names a plugin
//!   stays one line, and two files never share a name by lossy conversion.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::manifest::manifest_path;

/// The largest manifest read: far beyond any honest one.
pub const MAX_MANIFEST_SIZE: u64 = 1 << 20;

/// A component file and its manifest, as read.
pub(crate) struct Source {
    /// The component file.
    pub path: PathBuf,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// `NAME.toml` beside it, if there is one: its path and text.
    pub manifest: Option<(PathBuf, String)>,
}

impl Source {
    /// Reads `path` (at most `max_size` bytes, header first) and its manifest.
    pub(crate) fn read(path: &Path, max_size: u64) -> Result<Source, Error> {
        let bytes = read_regular(path, max_size, Some(check_header))?;
        let manifest_file = manifest_path(path);
        let manifest = match read_regular(&manifest_file, MAX_MANIFEST_SIZE, None) {
            Ok(bytes) => {
                let text = String::from_utf8(bytes).map_err(|_| Error::Manifest {
                    file: manifest_file.display().to_string(),
                    reason: "not UTF-8 text".into(),
                })?;
                Some((manifest_file, text))
            }
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => None,
            // Said of the manifest: `read_regular` words it as a component.
            Err(Error::NotAComponent { reason, .. }) => {
                return Err(Error::Manifest {
                    file: manifest_file.display().to_string(),
                    reason,
                })
            }
            Err(e) => return Err(e),
        };
        Ok(Source {
            path: path.to_path_buf(),
            bytes,
            manifest,
        })
    }

    /// SHA-256 of the component and its manifest: equal hashes, nothing to
    /// reload.
    pub(crate) fn hash(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(&self.bytes);
        if let Some((_, text)) = &self.manifest {
            hasher.update(b"\0manifest\0");
            hasher.update(text.as_bytes());
        }
        hasher.finalize().into()
    }

    /// How the component is named in messages.
    pub(crate) fn origin(&self) -> String {
        self.path.display().to_string()
    }
}

/// Checks the first bytes of a file before the rest is read.
type HeaderCheck = fn(&[u8]) -> Result<(), String>;

/// Reads a regular file of at most `max_size` bytes. `check` sees the first
/// 8 bytes (or fewer, for a shorter file) before the rest is read.
fn read_regular(path: &Path, max_size: u64, check: Option<HeaderCheck>) -> Result<Vec<u8>, Error> {
    let io = |source: std::io::Error| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let refuse = |reason: String| Error::NotAComponent {
        origin: path.display().to_string(),
        reason,
    };
    // Non-blocking: opening a FIFO for reading must not wait for a writer.
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    let metadata = file.metadata().map_err(io)?;
    if !metadata.is_file() {
        return Err(io(std::io::Error::other(format!(
            "not a regular file ({})",
            file_kind(&metadata)
        ))));
    }
    if metadata.len() > max_size {
        return Err(refuse(format!(
            "the file is {} bytes, over the limit of {max_size}",
            metadata.len()
        )));
    }
    // The length can change under us: never read more than the limit.
    let mut reader = file.take(max_size.saturating_add(1));
    let mut bytes = Vec::with_capacity(metadata.len().min(max_size) as usize);
    if let Some(check) = check {
        (&mut reader).take(8).read_to_end(&mut bytes).map_err(io)?;
        check(&bytes).map_err(refuse)?;
    }
    reader.read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > max_size {
        return Err(refuse(format!(
            "the file grew past the limit of {max_size} bytes while read"
        )));
    }
    Ok(bytes)
}

fn file_kind(metadata: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let kind = metadata.file_type();
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a plain file"
    }
}

/// Tells a component from the things most often mistaken for one, before the
/// compiler gives a less direct message.
pub(crate) fn check_header(bytes: &[u8]) -> Result<(), String> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_MODULE: [u8; 4] = [1, 0, 0, 0];
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err("not a WebAssembly binary (no `\\0asm` header)".into());
    }
    if bytes[4..8] == CORE_MODULE {
        return Err(
            "this is a core WebAssembly module, not a component: build it for \
             wasm32-wasip2, or wrap it with `wasm-tools component new`"
                .into(),
        );
    }
    Ok(())
}

/// The plugin name `path` gives: its file stem, if it can be said in UTF-8
/// without control characters, and a request line could name it (no `::`
/// or `#`, no `:` at its end, no white space).
///
/// ```
/// use std::path::Path;
/// assert_eq!(hotslot::plugin_name(Path::new("plugins/greeter_a.wasm")).unwrap(), "greeter_a");
/// assert!(hotslot::plugin_name(Path::new("plugins/two\nlines.wasm")).is_err());
/// ```
pub fn plugin_name(path: &Path) -> Result<String, Error> {
    let stem = path.file_stem().unwrap_or_default();
    let bad = |reason: &str| Error::BadName {
        name: stem.to_string_lossy().into_owned(),
        reason: format!("{reason} (file {path:?})"),
    };
    let name = stem
        .to_str()
        .ok_or_else(|| bad("the file name is not UTF-8"))?;
    check_name(name)
        .and_then(|()| check_addressable(name))
        .map_err(|reason| bad(&reason))?;
    Ok(name.to_string())
}

/// Whether `name` can name a plugin: not empty, no control characters.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.chars().any(char::is_control) {
        return Err("the name holds a control character".into());
    }
    Ok(())
}

/// Whether a request line could name a plugin called `name`
/// (`NAME::INTERFACE#FUNCTION(...)`), and answers tell it apart from the
/// words beside it: no `::` or `#` in it, no `:` at its end, no white
/// space. Names taken from files (for the watcher
/// and the CLI) must be; a host naming plugins itself may use any name
/// [`check_name`] takes.
fn check_addressable(name: &str) -> Result<(), String> {
    if name.contains("::") || name.contains('#') || name.ends_with(':') {
        return Err("a request could not name it (it holds `::` or `#`, or ends in `:`)".into());
    }
    if name.contains(char::is_whitespace) {
        let plain = name.split_whitespace().collect::<Vec<_>>().join("_");
        return Err(format!(
            "the name holds white space, which `list`, `stats` and `state` answers \
             use between their fields: name the file `{plain}.wasm`, say"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checks_name_the_problem() {
        assert!(check_header(b"").unwrap_err().contains("empty"));
        assert!(check_header(b"hello world").unwrap_err().contains("header"));
        assert!(check_header(b"\0asm\x01\0\0\0")
            .unwrap_err()
            .contains("core"));
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
    }

    #[test]
    fn names_must_be_utf8_without_control_characters() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(plugin_name(Path::new("a/calc.wasm")).unwrap(), "calc");
        assert!(plugin_name(Path::new("a/z\nend.wasm")).is_err());
        assert!(plugin_name(Path::new("a/\u{7f}.wasm")).is_err());
        for unaddressable in [
            "a/x::y.wasm",
            "a/a#b.wasm",
            "a/ lead.wasm",
            "a/trail .wasm",
            "a/sp ace.wasm",
            "a/colon:.wasm",
        ] {
            let err = plugin_name(Path::new(unaddressable))
                .unwrap_err()
                .to_string();
            assert!(err.contains(unaddressable), "{err}");
        }
        assert_eq!(plugin_name(Path::new("a/x:y.wasm")).unwrap(), "x:y");
        let latin1 = Path::new(OsStr::from_bytes(b"a/caf\xe9.wasm"));
        let err = plugin_name(latin1).unwrap_err().to_string();
        assert!(err.contains("not UTF-8"), "{err}");
    }
}
