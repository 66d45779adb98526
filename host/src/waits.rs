//! A plugin's waits in the host (sleeps, polls, blocking stream reads and
//! writes, opening files), each ended at the call's deadline and run on
//! wasmtime-wasi's own runtime, whichever runtime the caller is on.
//!
//! The epoch deadline stops a plugin's wasm, not a wait in the host: a
//! plugin that sleeps, or waits on anything that never becomes ready (a
//! stream nothing reads, a FIFO no one writes), held its calling thread and
//! its instance for as long as it asked, or for ever. Here each such WASI
//! function is replaced by one that waits at most until the deadline; a
//! wait cut short traps as the epoch would (`Trap::Interrupt`: "deadline
//! exceeded"), and the instance is replaced like after any fault.

use std::time::Duration;

use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime::StoreContextMut;
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, StreamResult};
use wasmtime_wasi::WasiView;
use wasmtime_wasi_io::bindings::wasi::io::streams::StreamError as WitStreamError;

use crate::error::Error;

/// What the bounded waits need of a store's data, beside WASI.
pub(crate) trait Waiting: WasiView + 'static {
    /// How long the call running may still take (`None`: no bound), and
    /// the instance's resources.
    fn waiting(&mut self) -> (Option<Duration>, &mut ResourceTable);
    /// The plugin's name, for the log.
    fn plugin(&self) -> &str;
}

/// The `wasi:io` wasmtime-wasi implements (it serves imports of every
/// 0.2.x). Were wasmtime-wasi to move to another, the names below would
/// define new instances beside its own rather than replace its waits: the
/// sandbox tests of sleeping and stalled plugins would fail.
macro_rules! wasi_version {
    () => {
        "0.2.12"
    };
}
/// The version of WASI's interfaces wasmtime-wasi defines.
pub(crate) const WASI_VERSION: &str = wasi_version!();
const WASI_POLL: &str = concat!("wasi:io/poll@", wasi_version!());
const WASI_STREAMS: &str = concat!("wasi:io/streams@", wasi_version!());
const WASI_FILESYSTEM: &str = concat!("wasi:filesystem/types@", wasi_version!());

/// Replaces the WASI functions that wait in the host with ones that end at
/// the call's deadline: `wasi:io/poll`'s `poll` and `pollable.block` (and
/// `pollable.ready`, which never waits but looks on a runtime), the
/// streams' blocking reads, writes, flushes and splices, and
/// `wasi:filesystem`'s `open-at` (see [`bound_open`]).
pub(crate) fn bound<S: Waiting>(linker: &mut Linker<S>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let bounded = bound_poll(linker)
        .and_then(|()| bound_streams(linker))
        .and_then(|()| bound_open(linker));
    linker.allow_shadowing(false);
    bounded
}

fn bound_poll<S: Waiting>(linker: &mut Linker<S>) -> wasmtime::Result<()> {
    use wasmtime_wasi_io::bindings::wasi::io::poll::{Host, HostPollable};
    let mut poll = linker.instance(WASI_POLL)?;
    poll.func_wrap(
        "poll",
        |mut store: StoreContextMut<'_, S>, (pollables,): (Vec<Resource<DynPollable>>,)| {
            let (left, table) = store.data_mut().waiting();
            let ready = until_deadline(left, Host::poll(table, pollables))??;
            Ok((ready,))
        },
    )?;
    poll.func_wrap(
        "[method]pollable.block",
        |mut store: StoreContextMut<'_, S>, (pollable,): (Resource<DynPollable>,)| {
            let (left, table) = store.data_mut().waiting();
            until_deadline(left, HostPollable::block(table, pollable))??;
            Ok(())
        },
    )?;
    // Never waits, but wasmtime-wasi's own looks on the caller's runtime,
    // which a synchronous call in async code may not block on.
    poll.func_wrap(
        "[method]pollable.ready",
        |mut store: StoreContextMut<'_, S>, (pollable,): (Resource<DynPollable>,)| {
            let (left, table) = store.data_mut().waiting();
            Ok((until_deadline(left, HostPollable::ready(table, pollable))??,))
        },
    )?;
    Ok(())
}

fn bound_streams<S: Waiting>(linker: &mut Linker<S>) -> wasmtime::Result<()> {
    use wasmtime_wasi_io::bindings::wasi::io::streams::{HostInputStream, HostOutputStream};
    type Input = Resource<DynInputStream>;
    type Output = Resource<DynOutputStream>;
    type Store<'a, S> = StoreContextMut<'a, S>;
    let mut streams = linker.instance(WASI_STREAMS)?;
    streams.func_wrap(
        "[method]input-stream.blocking-read",
        |store: Store<'_, S>, (stream, len): (Input, u64)| {
            stream_wait(store, |t| {
                Box::pin(HostInputStream::blocking_read(t, stream, len))
            })
        },
    )?;
    streams.func_wrap(
        "[method]input-stream.blocking-skip",
        |store: Store<'_, S>, (stream, len): (Input, u64)| {
            stream_wait(store, |t| {
                Box::pin(HostInputStream::blocking_skip(t, stream, len))
            })
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-write-and-flush",
        |store: Store<'_, S>, (stream, bytes): (Output, Vec<u8>)| {
            stream_wait(store, |t| {
                Box::pin(HostOutputStream::blocking_write_and_flush(t, stream, bytes))
            })
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-write-zeroes-and-flush",
        |store: Store<'_, S>, (stream, len): (Output, u64)| {
            stream_wait(store, |t| {
                Box::pin(HostOutputStream::blocking_write_zeroes_and_flush(
                    t, stream, len,
                ))
            })
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-flush",
        |store: Store<'_, S>, (stream,): (Output,)| {
            stream_wait(store, |t| {
                Box::pin(HostOutputStream::blocking_flush(t, stream))
            })
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-splice",
        |store: Store<'_, S>, (stream, from, len): (Output, Input, u64)| {
            stream_wait(store, |t| {
                Box::pin(HostOutputStream::blocking_splice(t, stream, from, len))
            })
        },
    )?;
    Ok(())
}

/// `descriptor.open-at`, opening only what cannot hold the call: regular
/// files and directories (and links to them). Opening a FIFO in a granted
/// directory waited for a writer that never came, with the plugin's
/// instance, for ever; and reading a FIFO, a socket or a terminal holds
/// wasmtime-wasi's blocking thread past any deadline. Those are refused
/// (`error-code.access`, with a line in the debug log). A path changed
/// between the look and the open (a link in a writable directory re-pointed
/// at a FIFO already there; plugins cannot make FIFOs) is not caught: that
/// open still ends at the deadline, but its thread on wasmtime-wasi's
/// blocking pool waits on.
fn bound_open<S: Waiting>(linker: &mut Linker<S>) -> wasmtime::Result<()> {
    use wasmtime_wasi::filesystem::WasiFilesystemView;
    use wasmtime_wasi::p2::bindings::filesystem::types::{
        Descriptor, DescriptorFlags, ErrorCode, Host, HostDescriptor, OpenFlags, PathFlags,
    };
    type Args = (
        Resource<Descriptor>,
        PathFlags,
        String,
        OpenFlags,
        DescriptorFlags,
    );
    let mut types = linker.instance(WASI_FILESYSTEM)?;
    types.func_wrap(
        "[method]descriptor.open-at",
        |mut store: StoreContextMut<'_, S>, (dir, follow, path, open, flags): Args| {
            let plugin = store.data().plugin().to_string();
            let (left, _) = store.data_mut().waiting();
            let mut files = store.data_mut().filesystem();
            let opened = until_deadline(left, async {
                let looked = Resource::new_borrow(dir.rep());
                let found = HostDescriptor::stat_at(&mut files, looked, follow, path.clone()).await;
                if let Some(kind) = found.ok().map(|stat| stat.type_).filter(may_wait) {
                    // Not a warning: a plugin could fill the log with them.
                    tracing::debug!(
                        "plugin {plugin}: refused to open `{path}` ({kind:?}): \
                         only files and directories open"
                    );
                    return Err(ErrorCode::Access.into());
                }
                HostDescriptor::open_at(&mut files, dir, follow, path, open, flags).await
            })?;
            match opened {
                Ok(file) => Ok((Ok(file),)),
                Err(error) => Ok((Err(Host::convert_error_code(&mut files, error)?),)),
            }
        },
    )?;
    Ok(())
}

/// Whether opening or reading a file of this kind may wait for someone
/// else (a FIFO's writer, a socket's peer, a terminal's user).
fn may_wait(kind: &wasmtime_wasi::p2::bindings::filesystem::types::DescriptorType) -> bool {
    use wasmtime_wasi::p2::bindings::filesystem::types::DescriptorType;
    !matches!(
        kind,
        DescriptorType::RegularFile | DescriptorType::Directory | DescriptorType::SymbolicLink
    )
}

/// One of a stream's blocking methods, waiting on the plugin's table.
type StreamWait<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = StreamResult<T>> + Send + 'a>>;

/// Runs a stream's blocking method until the call's deadline, and gives
/// its outcome as `wasi:io/streams` gives it to the plugin (an error it
/// reads, or a trap), the way wasmtime-wasi's own does.
fn stream_wait<S: Waiting, T: Send>(
    mut store: StoreContextMut<'_, S>,
    wait: impl for<'a> FnOnce(&'a mut ResourceTable) -> StreamWait<'a, T>,
) -> wasmtime::Result<(Result<T, WitStreamError>,)> {
    use wasmtime_wasi_io::bindings::wasi::io::streams::Host;
    let (left, table) = store.data_mut().waiting();
    match until_deadline(left, wait(table))? {
        Ok(value) => Ok((Ok(value),)),
        Err(error) => Ok((Err(Host::convert_stream_error(table, error)?),)),
    }
}

/// Waits for `wait` on wasmtime-wasi's I/O runtime for at most `left` (no
/// bound if `None`); past it, the call's deadline trap. A wait over at once
/// is answered without waiting. There whichever runtime the caller is on:
/// on the caller's, one built without timers (a plain
/// `new_current_thread().build()`) made every print or sleep of a plugin
/// it called fail the call with tokio's panic.
fn until_deadline<F: std::future::Future + Send>(
    left: Option<std::time::Duration>,
    wait: F,
) -> wasmtime::Result<F::Output>
where
    F::Output: Send,
{
    use std::future::Future as _;
    use std::task::{Context, Poll, Waker};
    let io = io_runtime().map_err(wasmtime::Error::msg)?;
    // `None`: no bound (also for a bound too far to count to).
    let deadline = left.and_then(|left| tokio::time::Instant::now().checked_add(left));
    let mut wait = std::pin::pin!(wait);
    // Most waits are over at once (a print, to the log): looked at once
    // here, they need no thread handed over or started, and no `block_on`.
    // The look is unconstrained by the caller's task's budget, which, run
    // out, made every timer and handle look pending (`pollable.ready`
    // answered false for ever); its timers and tasks, if it makes any,
    // are wasmtime-wasi's runtime's.
    let now = {
        let _in = io.enter();
        let mut once = tokio::task::unconstrained(wait.as_mut());
        std::pin::Pin::new(&mut once).poll(&mut Context::from_waker(Waker::noop()))
    };
    if let Poll::Ready(done) = now {
        return Ok(done);
    }
    let waited = blocking(|| {
        let _in = io.enter();
        match deadline {
            None => Ok(io.block_on(wait)),
            Some(deadline) => io.block_on(async { tokio::time::timeout_at(deadline, wait).await }),
        }
    });
    waited.map_err(|_| wasmtime::Trap::Interrupt.into())
}

/// Runs `wait`, which blocks its thread on a tokio runtime, wherever the
/// call is. Where tokio forbids that ("Cannot start a runtime from within a
/// runtime": a synchronous `Handle::call` made in an async host's task or
/// `block_on`), the plugin's print or sleep failed its call. On a
/// multi-threaded runtime's thread, the worker first hands its other tasks
/// to the rest (`block_in_place`); where its thread cannot be given up (a
/// current-thread runtime, a `#[tokio::test]`; a `LocalSet`), `wait` runs
/// on a thread of its own meanwhile. Elsewhere (no runtime, a
/// blocking-pool thread, as `Handle::call_async` uses) it runs as it is.
fn blocking<R: Send>(wait: impl FnOnce() -> R + Send) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if HELD.get() {
        return on_a_thread_of_its_own(wait);
    }
    match Handle::try_current().map(|runtime| runtime.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => match try_block_in_place(wait) {
            Ok(waited) => waited,
            Err(wait) => on_a_thread_of_its_own(wait),
        },
        Ok(_) => on_a_thread_of_its_own(wait),
        Err(_) => wait(),
    }
}

fn on_a_thread_of_its_own<R: Send>(wait: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|scope| match scope.spawn(wait).join() {
        Ok(waited) => waited,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// Runs `f` in `block_in_place`; gives it back, not run, where tokio
/// refuses (a `LocalSet`'s thread), its panic kept from the hook.
fn try_block_in_place<R, F: FnOnce() -> R>(f: F) -> Result<R, F> {
    let mut f = Some(f);
    let refused = |info: &std::panic::PanicHookInfo<'_>| {
        crate::quiet_panics::says(
            info,
            "can call blocking only when running on the multi-threaded runtime",
        )
    };
    let tried = crate::quiet_panics::expecting(refused, || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tokio::task::block_in_place(|| f.take().map(|f| f()))
        }))
    });
    match (tried, f) {
        (Ok(Some(done)), _) => Ok(done),
        (_, Some(f)) => Err(f),
        (Err(panic), None) => std::panic::resume_unwind(panic),
        (Ok(None), None) => unreachable!("`block_in_place` ran `f`, which answered"),
    }
}

thread_local! {
    /// Set while [`in_place`] runs a call on a thread it could not give up:
    /// the runtime current is then wasmtime-wasi's (multi-threaded), but
    /// waits must not block in place.
    static HELD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs a synchronous call of a plugin granted files or HTTP where
/// wasmtime-wasi can wait for that I/O, with its runtime current, as on a
/// plain thread. Made in an async host's task or `block_on`, the call's
/// `stat` or request panicked ("Cannot start a runtime from within a
/// runtime"), or its request waited out the deadline on the caller's
/// runtime, which the call itself held. On a multi-threaded runtime's
/// thread it runs in place (`block_in_place`), and all its I/O works.
/// Where the thread cannot be given up (a current-thread runtime, a
/// `LocalSet`), its waits are made on threads of their own, but
/// wasmtime-wasi's other file and network I/O (a `stat`, a request) fails
/// the call at once, saying to use `call_async`. Plugins granted neither
/// skip this (their calls pay nothing for it): their waits are
/// [`blocking`]'s.
pub(crate) fn in_place<R>(call: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|runtime| runtime.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) if !HELD.get() => {
            match try_block_in_place(|| with_io(call)) {
                Ok(answer) => answer,
                Err(refused) => held(refused),
            }
        }
        Ok(_) => held(call),
        Err(_) => call(),
    }
}

/// Runs `call` with wasmtime-wasi's runtime current: what it spawns (a
/// request) goes there.
pub(crate) fn with_io<R>(call: impl FnOnce() -> R) -> R {
    let _in = io_runtime().ok().map(|io| io.enter());
    call()
}

/// Runs `call` as [`with_io`] does, on a thread that cannot be given up:
/// see [`HELD`].
fn held<R>(call: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            HELD.set(self.0);
        }
    }
    let _restore = Restore(HELD.replace(true));
    // The call fails there, saying what to use instead: tokio's panic is
    // caught (see `generation::guarded`), not printed.
    crate::quiet_panics::expecting(
        |info| crate::quiet_panics::says(info, REFUSED_WAIT),
        || with_io(call),
    )
}

/// What tokio's panic says where a synchronous call made inside an async
/// task or `block_on` would wait for I/O (see [`in_place`]).
const REFUSED_WAIT: &str = "Cannot start a runtime from within a runtime";

/// Whether a panic's text is tokio refusing such a wait.
pub(crate) fn refused_wait(panic: &str) -> bool {
    panic.contains(REFUSED_WAIT)
}

/// Starts the I/O runtime wasmtime-wasi runs blocking calls on, now, while
/// the host has file descriptors to spare. Made lazily at a plugin's first
/// filesystem call instead, a plugin that had taken every descriptor would
/// find it impossible to make, and wasmtime-wasi panics then.
pub(crate) fn start_io_runtime() -> Result<(), Error> {
    io_runtime().map(|_| ()).map_err(Error::Engine)
}

/// wasmtime-wasi's own I/O runtime (multi-threaded, timers and I/O on),
/// where a plugin's waits in the host run, and its async calls' I/O (see
/// [`Handle::call_async`](crate::Handle::call_async)), whichever runtime
/// their caller is on. wasmtime-wasi hands it out only to a thread on no
/// runtime: one is started to fetch it.
pub(crate) fn io_runtime() -> Result<&'static tokio::runtime::Handle, String> {
    static IO: std::sync::OnceLock<tokio::runtime::Handle> = std::sync::OnceLock::new();
    if let Some(io) = IO.get() {
        return Ok(io);
    }
    let fetched = std::thread::Builder::new()
        .name("hotslot-wasi-runtime".into())
        .spawn(|| {
            // Its panic is the error below.
            crate::quiet_panics::expecting(
                |_| true,
                || {
                    std::panic::catch_unwind(|| {
                        wasmtime_wasi::runtime::with_ambient_tokio_runtime(
                            tokio::runtime::Handle::current,
                        )
                    })
                },
            )
        })
        .map_err(|e| e.to_string())
        .and_then(|thread| thread.join().map_err(|_| "its thread panicked".to_string()))
        .and_then(|started| started.map_err(|_| "out of file descriptors?".to_string()));
    match fetched {
        Ok(io) => Ok(IO.get_or_init(|| io)),
        Err(why) => Err(format!("cannot start wasmtime-wasi's I/O runtime: {why}")),
    }
}
