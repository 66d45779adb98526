//! `hotslot diff OLD.wasm NEW.wasm`: what a reload from one component to the
//! other would change in each interface, as the registry's contract check
//! sees it, and whether it would be taken.

use std::path::Path;

use crate::contract;
use crate::registry::Registry;
use crate::values::signature;

/// The comparison as lines, and whether a reload would be refused.
pub fn diff(registry: &Registry, old: &Path, new: &Path) -> Result<(Vec<String>, bool), String> {
    let old = registry.load_file(old).map_err(|e| e.to_string())?;
    let new = registry.load_file(new).map_err(|e| e.to_string())?;
    let mut lines = Vec::new();
    let (mut gone, mut changed) = (false, false);
    for before in old.exports().iter().filter(|e| !e.is_contract()) {
        let line = before.name().line();
        let after = new
            .exports()
            .iter()
            .filter(|e| e.name().line() == line)
            .max_by(|a, b| a.name().version().cmp(&b.name().version()));
        let Some(after) = after else {
            lines.push(format!("{}: gone from {}", before.name(), new.origin()));
            gone = true;
            continue;
        };
        lines.push(format!("{} -> {}", before.name(), after.name()));
        let differences = contract::compare(before, after);
        changed |= !differences.is_empty();
        for difference in &differences {
            match &difference.new {
                Some(now) => lines.push(format!(
                    "  - {}: {}\n  + {}: {now}",
                    difference.function, difference.old, difference.function
                )),
                None => lines.push(format!(
                    "  - {}: {} (removed)",
                    difference.function, difference.old
                )),
            }
        }
        for added in after.functions() {
            if before.function(added.name()).is_none() {
                lines.push(format!(
                    "  + {}: {} (added)",
                    added.name(),
                    signature(added.ty())
                ));
            }
        }
    }
    // Interfaces of a line the old one did not serve: a reload adds them.
    for after in new.exports().iter().filter(|e| !e.is_contract()) {
        let line = after.name().line();
        if !old.exports().iter().any(|e| e.name().line() == line) {
            lines.push(format!("{}: new in {} (added)", after.name(), new.origin()));
        }
    }
    if gone {
        lines.push(
            "refused: a reload must serve every interface the old version serves \
             (remove the plugin first to drop one)"
                .to_string(),
        );
    }
    if changed {
        lines.push(
            "refused: within a version line every function must stay as it was; \
             restore the signatures, or bump the major version (for 0.x, the minor: \
             its version line) and load it under another name (another file): a new \
             major serves beside the old"
                .to_string(),
        );
    }
    let refused = gone || changed;
    if !refused {
        lines.push("compatible: a reload from the first to the second would be taken".to_string());
    }
    Ok((lines, refused))
}
