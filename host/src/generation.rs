//! A generation: one version of one implementation — a plugin, the export
//! it serves, its limits — and the calls made on an instance of it. A reload
//! makes a new generation; instances never outlive the calls that need them.

use std::any::{type_name, Any, TypeId};
use std::sync::{Arc, Mutex};

use wasmtime::component::{Func, Instance, Val};
use wasmtime::Store;

use crate::engine::deadline_ticks;
use crate::error::{reason, Error, Fault};
use crate::handle::Bindings;
use crate::loader::{ExportedInterface, Plugin};
use crate::sandbox::{self, Limits, PluginState};
use crate::sync::lock;
use crate::version::{InterfaceName, Request};

/// One version of one implementation: a plugin, the export it serves, and
/// the instance made for it. Replaced whole on reload.
pub(crate) struct Generation {
    number: u64,
    name: Arc<str>,
    plugin: Plugin,
    /// Which of the plugin's exports this slot serves.
    export: usize,
    limits: Limits,
    /// `limits.timeout` in epoch ticks, set before every call.
    deadline: u64,
    /// How many instances may serve calls at once.
    pub(crate) instances: usize,
    /// The instance made (and so checked) when the generation was created,
    /// until the slot takes it to serve calls.
    first: Mutex<Option<Live>>,
}

/// A running instance and what was looked up in it.
pub(crate) struct Live {
    store: Store<PluginState>,
    instance: Instance,
    /// The interface's functions, in the order of `ExportedInterface::functions`.
    funcs: Vec<Func>,
    /// Typed bindings loaded so far, by type. Usually zero or one entry.
    typed: Vec<(TypeId, Box<dyn Any + Send>)>,
}

impl Generation {
    /// Instantiates `plugin` for its export number `export`. Fails if the
    /// instance cannot be made, so a bad plugin never reaches a slot.
    pub(crate) fn new(
        number: u64,
        name: &str,
        plugin: Plugin,
        export: usize,
        limits: Limits,
    ) -> Result<Self, Error> {
        // The plugin's manifest may set its own limits.
        let limits = plugin.grants().limits(&limits);
        let mut generation = Generation {
            number,
            name: name.into(),
            instances: plugin.grants().instance_count(),
            export,
            deadline: deadline_ticks(limits.timeout),
            plugin,
            limits,
            first: Mutex::new(None),
        };
        let live = generation.instantiate()?;
        generation.first = Mutex::new(Some(live));
        Ok(generation)
    }

    pub(crate) fn number(&self) -> u64 {
        self.number
    }

    pub(crate) fn interface(&self) -> &InterfaceName {
        self.exported().name()
    }

    pub(crate) fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    pub(crate) fn serves(&self, request: &Request) -> bool {
        self.interface().serves(request)
    }

    pub(crate) fn exported(&self) -> &ExportedInterface {
        &self.plugin.exports()[self.export]
    }

    fn instantiate(&self) -> Result<Live, Error> {
        let failed = |e: wasmtime::Error| Error::Instantiate {
            interface: self.interface().to_string(),
            name: self.name.to_string(),
            origin: self.plugin.origin().to_string(),
            reason: reason(&e),
        };
        let pre = self.plugin.instance_pre();
        let mut store =
            sandbox::new_store(pre.engine(), &self.name, &self.limits, self.plugin.grants())
                .map_err(failed)?;
        let instance = pre.instantiate(&mut store).map_err(failed)?;
        let mut funcs = Vec::new();
        for function in self.exported().functions() {
            let func = instance
                .get_func(&mut store, function.index())
                .ok_or_else(|| {
                    failed(wasmtime::format_err!("no function `{}`", function.name()))
                })?;
            funcs.push(func);
        }
        Ok(Live {
            store,
            instance,
            funcs,
            typed: Vec::new(),
        })
    }

    /// The instance to serve with: the one made at creation the first time,
    /// a fresh one after a call failed in the last.
    fn live<'a>(&self, slot: &'a mut Option<Live>) -> Result<&'a mut Live, Error> {
        if slot.is_none() {
            let first = lock(&self.first).take();
            *slot = Some(match first {
                Some(live) => live,
                None => self.instantiate()?,
            });
        }
        Ok(slot.as_mut().expect("just filled"))
    }

    pub(crate) fn call(
        &self,
        slot: &mut Option<Live>,
        function: &str,
        args: &[Val],
    ) -> Result<Vec<Val>, Error> {
        let exported = self.exported();
        let Some(position) = exported.position(function) else {
            return Err(Error::NoSuchFunction {
                interface: self.interface().to_string(),
                name: self.name.to_string(),
                function: function.to_string(),
                available: exported.function_names(),
            });
        };
        let signature = &exported.functions()[position];
        if args.len() != signature.param_count() {
            return Err(Error::BadArguments {
                interface: self.interface().to_string(),
                function: function.to_string(),
                reason: format!(
                    "expected {} argument(s), got {}",
                    signature.param_count(),
                    args.len()
                ),
            });
        }
        let mut results = vec![Val::Bool(false); signature.result_count()];
        let live = self.live(slot)?;
        live.store.set_epoch_deadline(self.deadline);
        match live.funcs[position].call(&mut live.store, args, &mut results) {
            Ok(()) => Ok(results),
            Err(error) => {
                let error = self.call_failed(function, args, &error);
                // Wrong arguments are refused before the guest runs; anything
                // else may have left the instance half-way, so it goes.
                if !matches!(error, Error::BadArguments { .. }) {
                    *slot = None;
                }
                Err(error)
            }
        }
    }

    pub(crate) fn call_typed<B, R>(
        &self,
        slot: &mut Option<Live>,
        call: impl FnOnce(&B, &mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> Result<R, Error>
    where
        B: Bindings,
    {
        let Live {
            store,
            instance,
            typed,
            ..
        } = self.live(slot)?;
        let key = TypeId::of::<B>();
        let position = match typed.iter().position(|(id, _)| *id == key) {
            Some(position) => position,
            None => {
                let bindings = B::load(store, instance).map_err(|e| Error::Bindings {
                    interface: self.interface().to_string(),
                    name: self.name.to_string(),
                    bindings: type_name::<B>(),
                    reason: reason(&e),
                })?;
                typed.push((key, Box::new(bindings)));
                typed.len() - 1
            }
        };
        let bindings = typed[position]
            .1
            .downcast_ref::<B>()
            .expect("stored under its own TypeId");
        store.set_epoch_deadline(self.deadline);
        match call(bindings, store) {
            Ok(value) => Ok(value),
            Err(error) => {
                *slot = None;
                Err(Error::Call {
                    interface: self.interface().to_string(),
                    name: self.name.to_string(),
                    function: type_name::<B>().to_string(),
                    fault: Fault::of(&error),
                    reason: reason(&error),
                })
            }
        }
    }

    /// Words a failed dynamic call: arguments of the wrong type are the
    /// caller's mistake, anything else happened in the plugin.
    fn call_failed(&self, function: &str, args: &[Val], error: &wasmtime::Error) -> Error {
        let signature = self.exported().function(function);
        let mismatch = signature.and_then(|s| crate::values::mismatch(s.ty(), args));
        match mismatch {
            Some(reason) if error.downcast_ref::<wasmtime::Trap>().is_none() => {
                Error::BadArguments {
                    interface: self.interface().to_string(),
                    function: function.to_string(),
                    reason,
                }
            }
            _ => Error::Call {
                interface: self.interface().to_string(),
                name: self.name.to_string(),
                function: function.to_string(),
                fault: Fault::of(error),
                reason: reason(error),
            },
        }
    }
}
