//! Contract-checked reloads: within one version line, a new version of an
//! interface must keep every function its callers were written against,
//! with the same parameters (names included) and results. Adding functions
//! is allowed (that is what a minor version means); anything else needs a
//! new major version, which lives in a slot of its own.

pub use crate::error::Difference;
use crate::loader::ExportedInterface;
use crate::values::signature;

/// What `new` breaks of `old`'s contract: functions removed, or changed in
/// their parameters (names included) or results.
///
/// ```no_run
/// # fn main() -> Result<(), hotslot::Error> {
/// let registry = hotslot::Registry::new()?;
/// let old = registry.load_file("plugins/calc.wasm")?;
/// let new = registry.load_file("plugins/calc.wasm")?;
/// let differences = hotslot::contract::compare(&old.exports()[0], &new.exports()[0]);
/// assert!(differences.is_empty());
/// # Ok(()) }
/// ```
pub fn compare(old: &ExportedInterface, new: &ExportedInterface) -> Vec<Difference> {
    let mut found = Vec::new();
    for function in old.functions() {
        let was = signature(function.ty());
        let now = new.function(function.name()).map(|f| signature(f.ty()));
        if now.as_deref() != Some(was.as_str()) {
            found.push(Difference {
                interface: old.name().to_string(),
                function: function.name().to_string(),
                old: was,
                new: now,
            });
        }
    }
    found
}
