//! `hotslot inspect` and `hotslot list`: what a component imports and
//! exports, and what a directory would load.

use std::path::Path;

use wit_component::{DecodedWasm, WitPrinter};

use crate::error::one_line;
use crate::registry::Registry;

/// The component's world — its imports and exports — and every interface
/// they name, as WIT with versions.
pub fn inspect(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // The same checks as loading, so a core module or garbage gets the same
    // clear message rather than a decoder's.
    let registry = Registry::new().map_err(|e| e.to_string())?;
    let plugin = registry
        .load_bytes(&path.display().to_string(), &bytes)
        .map_err(|e| e.to_string())?;
    let decoded = wit_component::decode(&bytes)
        .map_err(|e| format!("cannot decode the WIT of {}: {e:#}", path.display()))?;
    let (resolve, main) = match &decoded {
        DecodedWasm::Component(resolve, world) => (resolve, resolve.worlds[*world].package),
        DecodedWasm::WitPackage(resolve, package) => (resolve, Some(*package)),
    };
    let main = main.ok_or_else(|| format!("{} has no package", path.display()))?;
    let nested: Vec<_> = resolve
        .packages
        .iter()
        .map(|(id, _)| id)
        .filter(|id| *id != main)
        .collect();
    let mut printer = WitPrinter::default();
    printer
        .print(resolve, main, &nested)
        .map_err(|e| format!("cannot print the WIT of {}: {e:#}", path.display()))?;
    let mut text = printer.output.to_string();
    text.push_str("\n// How hotslot links each import:\n");
    let engine = registry.engine();
    for (name, _) in plugin.component().component_type().imports(engine) {
        let by = if plugin
            .imports()
            .iter()
            .any(|i| i.name().to_string() == name)
        {
            "the registry: whichever plugin serves it (or the one the manifest's [imports] names)"
        } else if name.starts_with("hotslot:plugin/") {
            "hotslot: the plugin's host-kept state"
        } else {
            "WASI: nothing granted unless the manifest grants it"
        };
        text.push_str(&format!("//   {name}: {by}\n"));
    }
    Ok(text)
}

/// One row of `hotslot list`.
pub struct Row {
    /// The file name.
    pub file: String,
    /// `interface@version`, or `-` when the file does not load.
    pub interface: String,
    /// The file's size in bytes.
    pub size: u64,
    /// `yes`, or `no: reason`.
    pub loads: String,
}

/// What `hotslot watch DIR` would load, file by file in file-name order,
/// loading each into `registry` exactly as `watch` would.
pub fn list(registry: &Registry, dir: &Path) -> Result<Vec<Row>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .collect();
    files.sort();
    let mut rows = Vec::new();
    for path in files {
        let file = one_line(&path.file_name().unwrap_or_default().to_string_lossy());
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let row = |interface: String, loads: String| Row {
            file: file.clone(),
            interface,
            size,
            loads,
        };
        match registry.add_file(&path) {
            Ok(added) => {
                let waiting: Vec<String> = registry
                    .list()
                    .into_iter()
                    .filter(|i| i.name == added.name)
                    .flat_map(|i| i.imports)
                    .filter(|link| link.provider.is_none())
                    .map(|link| link.interface.to_string())
                    .collect();
                let loads = match waiting.is_empty() {
                    true => "yes".to_string(),
                    false => format!("yes, waiting for {}", waiting.join(", ")),
                };
                rows.extend(
                    added
                        .interfaces
                        .iter()
                        .map(|i| row(i.to_string(), loads.clone())),
                );
            }
            Err(e) => rows.push(row("-".into(), format!("no: {}", one_line(&e.to_string())))),
        }
    }
    Ok(rows)
}

/// Lays rows out as an aligned table with a header.
pub fn table(rows: &[Row]) -> String {
    let header = ["FILE", "INTERFACE", "SIZE", "LOADS"];
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            [
                r.file.clone(),
                r.interface.clone(),
                r.size.to_string(),
                r.loads.clone(),
            ]
        })
        .collect();
    let width = |i: usize| {
        cells
            .iter()
            .map(|c| c[i].len())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let widths = [width(0), width(1), width(2)];
    let line = |c: [&str; 4]| {
        format!(
            "{:w0$}  {:w1$}  {:>w2$}  {}",
            c[0],
            c[1],
            c[2],
            c[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        )
    };
    let mut out = vec![line(header)];
    out.extend(cells.iter().map(|c| line([&c[0], &c[1], &c[2], &c[3]])));
    out.join("\n")
}
