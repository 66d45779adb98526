//! Panics the host expects, and turns into errors, kept out of the panic
//! hook's output.
//!
//! Two libraries hotslot uses panic where they should fail: redb on some
//! damaged databases, and tokio when wasmtime-wasi's file or network I/O
//! has to wait inside a current-thread runtime's `block_on`. hotslot
//! catches both and returns an error that carries the panic's text (an
//! [`Error::State`](crate::Error::State) naming the file; a failed call
//! saying to use `call_async`). The process's panic hook printed the panic
//! first all the same, with its location and, under `RUST_BACKTRACE`, a
//! trace: a host's log showed what looked like a crash for what was one
//! refused file or one failed call. While code that expects such a panic
//! runs, a panic whose text it expects is logged at `debug` instead of
//! handed to the hook; every other panic reaches the hook as before.
//!
//! The filter wraps the hook in place when hotslot first expects a panic
//! (Rust's default, or the host's own), once per process. A host that sets
//! a hook of its own later replaces the filter, and sees these panics again.

use std::cell::Cell;
use std::sync::Once;

/// Tells whether a panic's text is one the code running expects.
pub(crate) type Expected = fn(&str) -> bool;

thread_local! {
    /// What the code running on this thread expects a panic to say.
    static EXPECTED: Cell<Option<Expected>> = const { Cell::new(None) };
}

/// Runs `f`, keeping from the panic hook any panic on this thread whose
/// text `expected` accepts. The caller still catches the panic.
///
/// ```ignore
/// let read = quiet_panics::expecting(|_| true, || catch_unwind(|| redb_read()));
/// ```
pub(crate) fn expecting<R>(expected: Expected, f: impl FnOnce() -> R) -> R {
    filter_the_hook();
    struct Restore(Option<Expected>);
    impl Drop for Restore {
        fn drop(&mut self) {
            EXPECTED.with(|e| e.set(self.0));
        }
    }
    let _restore = Restore(EXPECTED.with(|e| e.replace(Some(expected))));
    f()
}

/// Puts the filter in front of the panic hook, the first time only.
fn filter_the_hook() {
    static FILTER: Once = Once::new();
    FILTER.call_once(|| {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let expected = EXPECTED.try_with(Cell::get).ok().flatten();
            let text = info.payload_as_str().unwrap_or("");
            if expected.is_some_and(|expected| expected(text)) {
                let at = info.location().map(|l| l.to_string()).unwrap_or_default();
                tracing::debug!("caught an expected panic at {at}: {text}");
                return;
            }
            hook(info);
        }));
    });
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// What running the lib's test `name` alone, in a process of its own,
    /// wrote to its standard error (where the panic hook writes), with
    /// `HOTSLOT_TEST_CHILD` set so the test does its part. Panics if it failed.
    pub(crate) fn stderr_of(name: &str) -> String {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env("HOTSLOT_TEST_CHILD", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name} failed:\n{stdout}\n{stderr}");
        assert!(stdout.contains("1 passed"), "{name} did not run:\n{stdout}");
        stderr
    }

    /// True in the process [`stderr_of`] starts.
    pub(crate) fn in_child() -> bool {
        std::env::var_os("HOTSLOT_TEST_CHILD").is_some()
    }

    /// The child of the test below: one expected panic and one not, both
    /// caught.
    #[test]
    fn panics_expected_and_not() {
        if !in_child() {
            return;
        }
        let caught = expecting(
            |text| text.contains("expected"),
            || std::panic::catch_unwind(|| panic!("an expected panic")),
        );
        assert!(caught.is_err());
        let caught = expecting(
            |text| text.contains("expected"),
            || std::panic::catch_unwind(|| panic!("a panic no one saw coming")),
        );
        assert!(caught.is_err());
        let caught = std::panic::catch_unwind(|| panic!("an expected panic, outside"));
        assert!(caught.is_err());
    }

    #[test]
    fn only_the_panics_expected_are_kept_from_the_hook() {
        let stderr = stderr_of("quiet_panics::tests::panics_expected_and_not");
        assert!(!stderr.contains("an expected panic\n"), "{stderr}");
        assert!(stderr.contains("a panic no one saw coming"), "{stderr}");
        assert!(stderr.contains("an expected panic, outside"), "{stderr}");
    }
}
