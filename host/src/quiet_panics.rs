//! Panics the host expects, and turns into errors, kept out of the panic
//! hook's output.
//!
//! Two libraries hotslot uses panic where they should fail: redb on some
//! damaged databases, and tokio where a synchronous call's wait or I/O
//! cannot block the thread it was made on (a current-thread runtime's
//! `block_on`, a `LocalSet`). hotslot catches each and goes on: an
//! [`Error::State`](crate::Error::State) naming the file, a call that fails
//! saying to use `call_async`, a wait made on another thread. The
//! process's panic hook printed the panic first all the same, with its
//! location and, under `RUST_BACKTRACE`, a trace: a host's log showed what
//! looked like a crash for one refused file or one failed call. While code
//! that expects such a panic runs, the first panic it expects (by where it
//! was raised or what it says) is logged at `debug` instead of handed to
//! the hook; any other panic, and any after it, reaches the hook as before.
//!
//! The filter is put in front of the hook in place when the process's
//! first registry is made ([`filter_the_hook`]; Rust's default hook, or
//! the host's own): a host that sets its own hook after that replaces the
//! filter, and sees these panics again.

use std::cell::Cell;
use std::panic::PanicHookInfo;
use std::sync::Once;

/// Tells whether a panic is one the code running expects.
pub(crate) type Expected = fn(&PanicHookInfo<'_>) -> bool;

thread_local! {
    /// What the code running on this thread expects a panic to be.
    static EXPECTED: Cell<Option<Expected>> = const { Cell::new(None) };
}

/// Runs `f`, keeping from the panic hook the first panic on this thread
/// that `expected` accepts. The caller still catches the panic.
///
/// ```ignore
/// let read = quiet_panics::expecting(in_redb, || catch_unwind(|| redb_read()));
/// ```
pub(crate) fn expecting<R>(expected: Expected, f: impl FnOnce() -> R) -> R {
    filter_the_hook();
    struct Restore(Option<Expected>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = EXPECTED.try_with(|e| e.set(self.0));
        }
    }
    let _restore = Restore(EXPECTED.with(|e| e.replace(Some(expected))));
    f()
}

/// Whether a panic was raised in redb's code.
pub(crate) fn in_redb(info: &PanicHookInfo<'_>) -> bool {
    info.location().is_some_and(|at| at.file().contains("redb"))
}

/// Whether a panic's message contains `text`.
pub(crate) fn says(info: &PanicHookInfo<'_>, text: &str) -> bool {
    info.payload_as_str()
        .is_some_and(|said| said.contains(text))
}

/// Puts the filter in front of the panic hook, once per process. Not from
/// a thread that is panicking, where the hook cannot be taken: a later call
/// puts it there.
pub(crate) fn filter_the_hook() {
    static FILTER: Once = Once::new();
    if std::thread::panicking() {
        return;
    }
    FILTER.call_once(|| {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Taken: a second panic in the same code (a destructor's, while
            // the first unwinds) is printed.
            let expected = EXPECTED.try_with(Cell::take).ok().flatten();
            if expected.is_some_and(|expected| expected(info)) {
                let at = info.location().map(|l| l.to_string()).unwrap_or_default();
                let said = info.payload_as_str().unwrap_or("no message");
                tracing::debug!("caught a panic hotslot expects, at {at}: {said}");
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
    /// wrote to its standard error (where the panic hook writes). Panics if
    /// it failed or did not run. (The tests using it need the test binary
    /// run directly, not through a runner such as miri's.)
    pub(crate) fn stderr_of(name: &str) -> String {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--include-ignored", "--nocapture"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name} failed:\n{stdout}\n{stderr}");
        assert!(stdout.contains("1 passed"), "{name} did not run:\n{stdout}");
        stderr
    }

    fn expected(info: &PanicHookInfo<'_>) -> bool {
        says(info, "expected")
    }

    /// Run by the test below, in a process of its own: panics expected and
    /// not, all caught.
    #[test]
    #[ignore = "run by only_the_first_expected_panic_is_kept_from_the_hook"]
    fn panics_expected_and_not() {
        let caught = |f: fn()| assert!(std::panic::catch_unwind(f).is_err());
        expecting(expected, || caught(|| panic!("an expected panic")));
        // The expectation is used up by the first.
        expecting(expected, || {
            caught(|| panic!("an expected panic, first"));
            caught(|| panic!("an expected panic, second"));
        });
        expecting(expected, || caught(|| panic!("a panic no one saw coming")));
        // Unwound out of `expecting`, or ended without a panic, it leaves
        // no expectation behind.
        caught(|| expecting(expected, || panic!("an expected panic, unwound out")));
        expecting(expected, || ());
        caught(|| panic!("an expected panic, outside"));
        // Nested, the inner one's end gives the outer one's back.
        expecting(expected, || {
            expecting(|_| false, || caught(|| panic!("an expected panic, inner")));
            caught(|| panic!("an expected panic, after the inner"));
        });
    }

    #[test]
    fn only_the_first_expected_panic_is_kept_from_the_hook() {
        let stderr = stderr_of("quiet_panics::tests::panics_expected_and_not");
        for kept in [
            "an expected panic\n",
            "an expected panic, first",
            "an expected panic, unwound out",
            "an expected panic, after the inner",
        ] {
            assert!(!stderr.contains(kept), "{kept}: {stderr}");
        }
        for printed in [
            "an expected panic, second",
            "a panic no one saw coming",
            "an expected panic, outside",
            "an expected panic, inner",
        ] {
            assert!(stderr.contains(printed), "{printed}: {stderr}");
        }
    }
}
