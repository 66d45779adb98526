//! The `hotslot` binary; everything lives in [`hotslot::cli`].

fn main() -> std::process::ExitCode {
    give_big_blocks_back();
    hotslot::cli::main()
}

/// Compiling a big component allocates hundreds of megabytes, much of it in
/// large blocks, on several threads. glibc serves a block over its mmap
/// threshold with a mapping of its own, handed back the moment it is freed,
/// but raises that threshold as big blocks come and go, after which they
/// land in the heap and stay with the process. Fixing the thresholds keeps
/// large blocks returnable. (A library leaves the allocator's settings to
/// its application; the binary chooses.)
fn give_big_blocks_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's tuning, before any thread
    // starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1024 * 1024);
    }
}
