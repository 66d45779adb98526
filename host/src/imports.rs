//! Plugins that use plugins: a component's imports from the registry, bound
//! to whichever plugin serves each interface now.
//!
//! Each import is bound to a [`Selection`]: the first plugin serving the
//! imported interface and version with functions of the types the
//! dependent expects (else the first serving it; only the one the
//! dependent's manifest names, if it names one), re-pointed by the registry
//! as plugins come, go and reload. So a
//! dependent's next call reaches a reloaded provider without the dependent
//! being instantiated again.
//! - One chain of calls sees one generation of each provider: the first call
//!   to a provider pins one of its lanes until the outermost call returns.
//! - A provider whose function does not match what the dependent expects is
//!   never called; the error shows both signatures.
//! - A call that would close a cycle (A calls B calls A, or A itself) is
//!   refused at once.
//! - A fault in the provider fails the dependent's call with an error naming
//!   both plugins and the fault; the provider's instance is replaced, and so
//!   is the dependent's (wasmtime leaves it unusable after a failed import).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use wasmtime::component::Val;

use crate::chain;
use crate::error::{Error, Failed, ImportError};
use crate::generation::{Generation, Resident};
use crate::loader::ImportedInterface;
use crate::program::NoLane;
use crate::sandbox::{ImportCalls, ImportLink, TypedCall};
use crate::slot::Selection;
use crate::sync::lock;
use crate::values::{same_types, signature};

/// A dependent's imports, bound to the registry.
pub(crate) struct ImportTable {
    dependent: Arc<str>,
    imports: Vec<ImportedInterface>,
    bindings: Vec<Binding>,
}

/// One import: where it points now, and whether the generation it last
/// reached matched what the dependent expects.
pub(crate) struct Binding {
    selection: Arc<Selection>,
    /// The export checked last (its generation's uid and its position
    /// there, see [`route_key`]) and the outcome.
    checked: Mutex<Option<(u64, Result<(), String>)>>,
    /// For each imported function, where the provider's matching function
    /// is, in the last export found to match: `route_key << 16 | position`,
    /// or 0. The lock-free answer every forwarded call asks for. Keyed by
    /// the export as well as the generation: a generation published again
    /// with fewer routes (an implementation removed) may serve the import
    /// from another of its exports, of other types.
    found: Vec<AtomicU64>,
}

/// How many bits of [`Binding::found`] hold the position.
const POSITION_BITS: u32 = 16;

/// How many bits of a route key hold the export.
const EXPORT_BITS: u32 = 8;

/// Export `export` of `generation`, as one number: the generation's uid and
/// the export's position. `None` when they do not fit beside a position in
/// 64 bits (a trillion generations, 256 exports): such a route is checked
/// again on every call rather than cached.
fn route_key(generation: &Generation, export: usize) -> Option<u64> {
    let export = u64::try_from(export)
        .ok()
        .filter(|e| *e < 1 << EXPORT_BITS)?;
    let uid = generation.uid();
    (uid < 1 << (64 - POSITION_BITS - EXPORT_BITS)).then_some(uid << EXPORT_BITS | export)
}

/// Whether export `export` of `generation` offers every function `wanted`
/// imports, with the same types: a provider the import can be linked to.
pub(crate) fn fits(wanted: &ImportedInterface, generation: &Generation, export: usize) -> bool {
    let offered = generation.exported(export);
    wanted.functions().iter().all(|function| {
        offered
            .function(function.name())
            .is_some_and(|given| same_types(function.ty(), given.ty()))
    })
}

impl ImportTable {
    pub(crate) fn new(
        dependent: &str,
        imports: Vec<ImportedInterface>,
        selections: Vec<Arc<Selection>>,
    ) -> Self {
        let bindings = selections
            .into_iter()
            .zip(&imports)
            .map(|(selection, import)| Binding {
                selection,
                checked: Mutex::new(None),
                found: import
                    .functions()
                    .iter()
                    .map(|_| AtomicU64::new(0))
                    .collect(),
            })
            .collect();
        ImportTable {
            dependent: dependent.into(),
            imports,
            bindings,
        }
    }

    /// The plugin whose imports these are.
    pub(crate) fn dependent(&self) -> &str {
        &self.dependent
    }

    /// What each import is bound to.
    pub(crate) fn selections(&self) -> impl Iterator<Item = &Arc<Selection>> {
        self.bindings.iter().map(|b| &b.selection)
    }

    /// How each import stands now.
    fn links_now(&self) -> Vec<ImportLink> {
        self.imports
            .iter()
            .enumerate()
            .map(|(i, import)| {
                let slot = self.bindings[i].selection.slot();
                let reached = slot.and_then(|slot| {
                    slot.peek(|generation, export| {
                        let problem = self.check(i, generation, export).err();
                        ((slot.name().to_string(), generation.number()), problem)
                    })
                });
                ImportLink {
                    interface: import.name().clone(),
                    provider: reached.as_ref().map(|(p, _)| p.clone()),
                    problem: reached.and_then(|(_, problem)| problem),
                    named: self.bindings[i].selection.named().map(String::from),
                }
            })
            .collect()
    }

    /// Where, in the provider's generation, the function is that function
    /// `function` of import `i` reaches, once the generation is found to
    /// match ([`ImportTable::check`]).
    fn find(
        &self,
        i: usize,
        function: usize,
        generation: &Generation,
        export: usize,
    ) -> Result<usize, String> {
        let found = &self.bindings[i].found;
        let key = route_key(generation, export);
        let seen = found[function].load(Ordering::Acquire);
        if key.is_some_and(|key| seen >> POSITION_BITS == key) {
            return Ok((seen & ((1 << POSITION_BITS) - 1)) as usize);
        }
        self.check(i, generation, export)?;
        let offered = generation.exported(export);
        let mut position = 0;
        for (f, wanted) in self.imports[i].functions().iter().enumerate() {
            let at = offered.position(wanted.name()).ok_or_else(|| {
                format!("`{}` has no function `{}`", offered.name(), wanted.name())
            })?;
            if f == function {
                position = at;
            }
            // A route whose positions do not fit is only never cached.
            if let (Some(key), Ok(at)) = (key, u64::try_from(at)) {
                if at < 1 << POSITION_BITS {
                    found[f].store(key << POSITION_BITS | at, Ordering::Release);
                }
            }
        }
        Ok(position)
    }

    /// Whether export `export` of the provider's generation offers every
    /// function import `i` expects, with the same types; remembered per
    /// export of a generation.
    fn check(&self, i: usize, generation: &Generation, export: usize) -> Result<(), String> {
        let key = route_key(generation, export);
        let binding = &self.bindings[i];
        let mut checked = lock(&binding.checked);
        if let (Some((seen, outcome)), Some(key)) = (&*checked, key) {
            if *seen == key {
                return outcome.clone();
            }
        }
        let offered = generation.exported(export);
        let mut outcome = Ok(());
        for wanted in self.imports[i].functions() {
            let problem = match offered.function(wanted.name()) {
                None => Some(format!(
                    "`{}` has no function `{}` (expected {})",
                    generation.plugin().origin(),
                    wanted.name(),
                    signature(wanted.ty())
                )),
                Some(given) if !same_types(wanted.ty(), given.ty()) => Some(format!(
                    "`{}` does not match: `{}` expects {}, {} has {}",
                    wanted.name(),
                    self.dependent,
                    signature(wanted.ty()),
                    generation.plugin().origin(),
                    signature(given.ty())
                )),
                Some(_) => None,
            };
            if let Some(problem) = problem {
                outcome = Err(problem);
                break;
            }
        }
        *checked = key.map(|key| (key, outcome.clone()));
        outcome
    }

    fn failure(&self, i: usize, function: usize) -> ImportError {
        ImportError {
            dependent: self.dependent.to_string(),
            import: self.imports[i].name().to_string(),
            function: self.imports[i].functions()[function].name().to_string(),
            provider: None,
            fault: None,
            reason: String::new(),
        }
    }
}

impl ImportCalls for ImportTable {
    fn links(&self) -> Vec<ImportLink> {
        self.links_now()
    }

    fn call(
        &self,
        import: usize,
        function: usize,
        params: &[Val],
        results: &mut [Val],
    ) -> wasmtime::Result<()> {
        self.forward(
            import,
            function,
            |generation, resident, export, position, cap| {
                generation.call_at(resident, export, position, params, results, cap)
            },
        )
    }

    fn call_typed(
        &self,
        import: usize,
        function: usize,
        call: &mut dyn TypedCall,
    ) -> wasmtime::Result<()> {
        self.forward(
            import,
            function,
            |generation, resident, export, position, cap| {
                // SAFETY: `forward` calls this only with the position `find`
                // gave, of a function `check` found to have the import's
                // types, which are those the forwarder was linked with.
                unsafe { generation.call_typed_at(resident, export, position, call, cap) }
            },
        )
    }
}

impl ImportTable {
    /// Forwards a call of function `function` of import `import` to the
    /// plugin serving it now: refused if it would close a cycle, made on
    /// the provider's lane pinned for this chain (`call` makes it, given
    /// the generation, its lane's instance, the export and function's
    /// positions there, and what is left of the chain's deadline).
    #[inline]
    fn forward(
        &self,
        import: usize,
        function: usize,
        call: impl FnOnce(&Generation, &mut Resident, usize, usize, Option<u64>) -> Result<(), Failed>,
    ) -> wasmtime::Result<()> {
        let fail = |provider: Option<&str>, fault, reason: String| {
            let mut failure = self.failure(import, function);
            failure.provider = provider.map(String::from);
            failure.fault = fault;
            failure.reason = reason;
            wasmtime::Error::new(failure)
        };
        // A borrow, not a clone: no reference count touched per call.
        let selection = &self.bindings[import].selection;
        let Some(slot) = selection.slot() else {
            return Err(fail(None, None, unserved(selection.named())));
        };
        let provider = slot.name();
        if let Some(chain) = chain::cycle_to(provider) {
            let path = chain.join(" -> ");
            return Err(fail(
                Some(provider),
                None,
                format!("a cycle: {path} -> {provider}; refused"),
            ));
        }
        let name = self.imports[import].functions()[function].name();
        let program = slot.program();
        let answer = chain::with_held(
            Arc::as_ptr(program) as usize,
            || {
                program
                    .pin()
                    .map_err(|why| Box::new(no_lane(provider, why)))
            },
            |lane, cap| {
                program.serve_pinned(
                    lane,
                    slot.id(),
                    |generation, export, resident| {
                        let position =
                            self.find(import, function, generation, export)
                                .map_err(|problem| Error::BadArguments {
                                    interface: self.imports[import].name().to_string(),
                                    function: name.to_string(),
                                    reason: problem,
                                })?;
                        call(generation, resident, export, position, cap)
                    },
                    || {
                        Box::new(Error::Unavailable {
                            interface: self.imports[import].name().to_string(),
                            name: provider.to_string(),
                        })
                    },
                )
            },
        )
        .and_then(|answer| answer);
        match answer {
            Ok(()) => Ok(()),
            Err(failed) => Err(self.provider_failed(import, function, provider, *failed)),
        }
    }
}

impl ImportTable {
    /// The error a dependent sees for a forwarded call that failed at (or on
    /// the way to) `provider`: its own function, and the provider's fault.
    #[cold]
    fn provider_failed(
        &self,
        import: usize,
        function: usize,
        provider: &str,
        error: Error,
    ) -> wasmtime::Error {
        let fail = |fault, reason: String| {
            let mut failure = self.failure(import, function);
            failure.provider = Some(provider.to_string());
            failure.fault = fault;
            failure.reason = reason;
            wasmtime::Error::new(failure)
        };
        match error {
            Error::Call { fault, reason, .. } => {
                fail(Some(fault), format!("it failed there: {fault}: {reason}"))
            }
            Error::BadArguments { reason, .. } => fail(None, reason),
            other => {
                let fault = match &other {
                    Error::Import(inner) => inner.fault,
                    _ => None,
                };
                fail(fault, other.to_string())
            }
        }
    }
}

fn no_lane(provider: &str, why: NoLane) -> Error {
    let (interface, name) = ("its imports".to_string(), provider.to_string());
    match why {
        NoLane::Reentered { instances } => Error::Reentered {
            interface,
            name,
            instances,
        },
        NoLane::Busy { waited } => Error::Busy {
            interface,
            name,
            waited_ms: waited.as_millis().try_into().unwrap_or(u64::MAX),
        },
    }
}

/// Why a call through an import found no provider: none serves it yet, or
/// not the one the dependent's manifest names.
#[cold]
fn unserved(named: Option<&str>) -> String {
    match named {
        None => "no plugin serves it yet (the dependent is waiting for one)".into(),
        Some(name) => format!(
            "`{name}`, which the dependent's manifest names for it ([imports]), \
             is not loaded or does not serve it (the dependent is waiting for it)"
        ),
    }
}
