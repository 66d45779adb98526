//! Typed calls: the [`Bindings`] trait that `bindgen!` output implements to be
//! called through a handle, and the macros that generate and implement it
//! from any crate, whether or not it depends on wasmtime itself.

use wasmtime::component::Instance;
use wasmtime::Store;

use crate::sandbox::PluginState;

/// Typed bindings made by wasmtime's `bindgen!` for a world, loadable from an
/// instance. [`hotslot::bindgen!`](crate::bindgen) generates the bindings and
/// implements this trait in one go; [`hotslot::bindings!`](crate::bindings)
/// implements it for bindings generated some other way. Call through a
/// handle with [`Handle::call_typed`](crate::Handle::call_typed).
///
/// ```ignore
/// hotslot::bindgen!({ path: "wit/greeter", world: "greeter" });
///
/// let answer = handle.call_typed(|greeter: &Greeter, store| {
///     greeter.demo_greeter_greet().call_hello(store, "world")
/// })?;
/// ```
pub trait Bindings: Sized + Send + 'static {
    /// Looks up (and type-checks) the world's exports in `instance`.
    fn load(store: &mut Store<PluginState>, instance: &Instance) -> wasmtime::Result<Self>;
}

/// Implements [`Bindings`] for world structs that `bindgen!` generated, which
/// all have a `new(store, instance)` constructor.
///
/// ```ignore
/// wasmtime::component::bindgen!({ path: "wit/calc", world: "calculator" });
/// hotslot::bindings!(Calculator);
/// ```
#[macro_export]
macro_rules! bindings {
    ($($world:ty),+ $(,)?) => {$(
        impl $crate::Bindings for $world {
            fn load(
                store: &mut $crate::wasmtime::Store<$crate::PluginState>,
                instance: &$crate::wasmtime::component::Instance,
            ) -> $crate::wasmtime::Result<Self> {
                <$world>::new(store, instance)
            }
        }
    )+};
}

/// wasmtime's `bindgen!`, pointed at the wasmtime hotslot re-exports, so a
/// crate that depends on `hotslot` alone can generate typed bindings. Takes
/// `bindgen!`'s options; given the world's struct name first, it also
/// implements [`Bindings`] for it. The generated code names the crate
/// `::hotslot` (`bindgen!` writes its paths out as text, where `$crate` does
/// not survive): under a renamed dependency, call wasmtime's own `bindgen!`
/// with `wasmtime_crate: yourname::wasmtime` among its options instead.
///
/// ```
/// mod calc {
///     hotslot::bindgen!(Calculator, {
///         inline: "
///             package demo:calc@1.0.0;
///             interface math { add: func(a: s32, b: s32) -> s32; }
///             world calculator { export math; }
///         ",
///     });
/// }
/// fn total(handle: &hotslot::Handle) -> Result<i32, hotslot::Error> {
///     handle.call_typed(|c: &calc::Calculator, store| c.demo_calc_math().call_add(store, 40, 2))
/// }
/// ```
#[macro_export]
macro_rules! bindgen {
    ({ $($option:tt)* }) => {
        $crate::wasmtime::component::bindgen!({
            wasmtime_crate: ::hotslot::wasmtime,
            $($option)*
        });
    };
    ($world:ident, { $($option:tt)* }) => {
        $crate::wasmtime::component::bindgen!({
            wasmtime_crate: ::hotslot::wasmtime,
            $($option)*
        });
        $crate::bindings!($world);
    };
}
