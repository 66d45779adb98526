//! `hotslot inspect` and `hotslot list`: what a component imports and
//! exports, and what a directory would load.

use std::path::Path;

use wit_component::{DecodedWasm, WitPrinter};
use wit_parser::{InterfaceId, Resolve, Type, TypeDefKind, WorldId, WorldItem, WorldKey};

use crate::error::{escape_controls, one_line};
use crate::limits::DEFAULT_MAX_FILE_SIZE;
use crate::registry::Registry;
use crate::source::Source;
use crate::version::InterfaceName;

/// The component's world — its imports and exports — and every interface
/// they name, as WIT with versions, then how this host would link each
/// import. It reads the component; it neither compiles nor links it, so a
/// component that would not link can be inspected to learn why.
pub fn inspect(path: &Path) -> Result<String, String> {
    let bytes = read(path)?;
    let (resolve, world) = decode(path, &bytes)?;
    let main = resolve.worlds[world]
        .package
        .ok_or_else(|| format!("{} has no package", path.display()))?;
    let nested: Vec<_> = resolve
        .packages
        .iter()
        .map(|(id, _)| id)
        .filter(|id| *id != main)
        .collect();
    let mut printer = WitPrinter::default();
    printer
        .print(&resolve, main, &nested)
        .map_err(|e| format!("cannot print the WIT of {}: {e:#}", path.display()))?;
    let mut text = printer.output.to_string();
    text.push_str("\n// How hotslot links each import:\n");
    for (name, linked) in imports(&resolve, world) {
        let by = match linked {
            Linked::Wasi => format!("WASI: {}", wasi_offer(&name)),
            Linked::Http => "wasi:http: requests go only to what the manifest's \
                             [http] allow grants"
                .to_string(),
            Linked::Hotslot => "hotslot: the plugin's host-kept state".to_string(),
            Linked::Registry => "the registry: whichever plugin serves it \
                                 (or the one the manifest's [imports] names)"
                .to_string(),
            Linked::Missing(why) => format!("missing: {why}"),
        };
        text.push_str(&format!("//   {name}: {by}\n"));
    }
    Ok(text)
}

/// What a plugin gets through the WASI interface `name` (sandbox.rs
/// builds it): only files and the environment are granted, by manifest.
fn wasi_offer(name: &str) -> &'static str {
    let unversioned = name.split('@').next().unwrap_or(name);
    match unversioned {
        "wasi:clocks/wall-clock" | "wasi:clocks/monotonic-clock" => "always offered",
        "wasi:random/random" | "wasi:random/insecure" | "wasi:random/insecure-seed" => {
            "always offered"
        }
        "wasi:cli/environment" => "empty unless the manifest's [env] grants variables",
        "wasi:cli/stdout" | "wasi:cli/stderr" => "what it writes goes to the host's log",
        "wasi:cli/stdin" => "always empty",
        "wasi:filesystem/types" | "wasi:filesystem/preopens" => {
            "no directory unless the manifest's [[dir]] grants one"
        }
        _ if unversioned.starts_with("wasi:sockets/") => "no network (use [http] allow)",
        _ if unversioned.starts_with("wasi:cli/terminal-") => "never a terminal",
        "wasi:cli/exit" => "fails the call it is made in",
        _ => "offered",
    }
}

/// The interfaces a component exports and their functions' signatures,
/// as wasmtime reads them once it has compiled the component: for a
/// component whose WIT cannot be read.
pub fn exports_of(registry: &Registry, path: &Path) -> Result<String, String> {
    let plugin = registry.load_file(path).map_err(|e| e.to_string())?;
    let mut text = "// What wasmtime finds it exports:\n".to_string();
    for export in plugin.exports() {
        text.push_str(&format!("// export {}\n", export.name()));
        for function in export.functions() {
            let signature = crate::values::signature(function.ty());
            text.push_str(&format!("//   {}: {signature}\n", function.name()));
        }
    }
    Ok(text)
}

/// What a component imports that this host cannot link, read from the
/// component (a file of at most `max_size` bytes) without compiling it:
/// (import, why). Nothing when its WIT cannot be read (a component that
/// exports a type, which WIT cannot say but wasmtime runs): compiling it
/// tells.
pub fn unlinkable(path: &Path, max_size: u64) -> Result<Vec<(String, String)>, String> {
    Ok(unlinkable_in(path, &read_within(path, max_size)?))
}

/// Why `path` cannot be used: it imports `import`, which this host does
/// not offer, for `why`.
pub fn unlinkable_reason(path: &Path, import: &str, why: &str) -> String {
    format!(
        "{} cannot be linked: it imports {import}: {why}",
        path.display()
    )
}

/// [`unlinkable`] of the bytes read from `path`.
fn unlinkable_in(path: &Path, bytes: &[u8]) -> Vec<(String, String)> {
    let Ok((resolve, world)) = decode(path, bytes) else {
        return Vec::new();
    };
    imports(&resolve, world)
        .into_iter()
        .filter_map(|(name, linked)| match linked {
            Linked::Missing(why) => Some((name, why)),
            _ => None,
        })
        .collect()
}

/// How this host links one import.
enum Linked {
    Wasi,
    Http,
    Hotslot,
    Registry,
    Missing(String),
}

/// WASI's interfaces this host offers (wasmtime-wasi's p2).
const WASI_OFFERED: [&str; 6] = ["cli", "io", "clocks", "filesystem", "random", "sockets"];

fn imports(resolve: &Resolve, world: WorldId) -> Vec<(String, Linked)> {
    resolve.worlds[world]
        .imports
        .iter()
        .filter_map(|(key, item)| {
            let name = match key {
                WorldKey::Interface(id) => resolve.id_of(*id)?,
                WorldKey::Name(name) => {
                    let kind = match item {
                        WorldItem::Function(_) => "a function",
                        WorldItem::Interface { .. } => "an unnamed interface",
                        WorldItem::Type { .. } => return None,
                    };
                    return Some((
                        name.clone(),
                        Linked::Missing(format!(
                            "{kind} imported by a plain name: hotslot links interfaces \
                             named `namespace:package/interface`"
                        )),
                    ));
                }
            };
            if let Some(why) = unoffered_version(&name) {
                return Some((name, Linked::Missing(why)));
            }
            let linked = match name.split_once(':') {
                Some(("wasi", rest)) if rest.starts_with("http/") => {
                    let interface = rest["http/".len()..].split('@').next().unwrap_or_default();
                    match interface {
                        "types" | "outgoing-handler" => Linked::Http,
                        _ => Linked::Missing(format!(
                            "hotslot offers wasi:http's types and outgoing-handler, \
                             not wasi:http/{interface}"
                        )),
                    }
                }
                Some(("wasi", rest)) => {
                    let package = rest.split('/').next().unwrap_or_default();
                    match WASI_OFFERED.contains(&package) {
                        true => Linked::Wasi,
                        false => Linked::Missing(format!(
                            "hotslot does not offer wasi:{package} to plugins"
                        )),
                    }
                }
                Some(("hotslot", rest)) if rest.starts_with("plugin/state") => Linked::Hotslot,
                Some(("hotslot", _)) => {
                    Linked::Missing("hotslot:plugin offers only `state` to import".into())
                }
                _ => match key {
                    WorldKey::Interface(id) => match passes_resources(resolve, *id) {
                        Some(why) => Linked::Missing(format!(
                            "{why}: resources cannot cross from one plugin to another, so \
                             hotslot does not link such imports"
                        )),
                        None => Linked::Registry,
                    },
                    WorldKey::Name(_) => Linked::Registry,
                },
            };
            Some((name, linked))
        })
        .collect()
}

/// Why the host's own interfaces (WASI's, `hotslot:plugin`'s) cannot
/// serve the version `name` asks for, if it asks for one they cannot:
/// wasmtime links an import to a definition in the same version line
/// (`0.2.x` to `0.2.y`, `1.x` to `1.y`), the registry's rule for a line.
fn unoffered_version(name: &str) -> Option<String> {
    let (interface, _) = name.split_once('@')?;
    let offered = match interface.split_once(':')?.0 {
        "wasi" => crate::waits::WASI_VERSION,
        "hotslot" => crate::sandbox::PLUGIN_VERSION,
        _ => return None,
    };
    let asked: InterfaceName = name.parse().ok()?;
    let served: InterfaceName = format!("{interface}@{offered}").parse().ok()?;
    (asked.line() != served.line())
        .then(|| format!("hotslot offers {served}, and links imports of its version line only"))
}

/// What in interface `id` would pass a resource between plugins (as
/// loading refuses it), if anything: a resource type of its own, or a
/// function taking or giving a handle.
fn passes_resources(resolve: &Resolve, id: InterfaceId) -> Option<String> {
    let interface = &resolve.interfaces[id];
    if let Some(name) = interface
        .types
        .iter()
        .find(|(_, ty)| is_resource(resolve, **ty))
        .map(|(name, _)| name)
    {
        return Some(format!("it has a resource type (`{name}`)"));
    }
    interface.functions.values().find_map(|function| {
        let types = function
            .params
            .iter()
            .map(|p| &p.ty)
            .chain(&function.result);
        types
            .into_iter()
            .any(|ty| holds_handle(resolve, ty))
            .then(|| format!("`{}` passes a resource handle", function.name))
    })
}

/// Whether type `id` is a resource, its own or one it names (`use`d from
/// another interface): loading sees either as a resource of the import.
fn is_resource(resolve: &Resolve, mut id: wit_parser::TypeId) -> bool {
    loop {
        match &resolve.types[id].kind {
            TypeDefKind::Resource => return true,
            TypeDefKind::Type(Type::Id(named)) => id = *named,
            _ => return false,
        }
    }
}

/// Whether a value of type `ty` can hold a resource handle (or a future or
/// stream, which this host does not pass either).
fn holds_handle(resolve: &Resolve, ty: &Type) -> bool {
    let Type::Id(id) = ty else {
        return false;
    };
    let any = |types: &mut dyn Iterator<Item = &Type>| {
        for ty in types {
            if holds_handle(resolve, ty) {
                return true;
            }
        }
        false
    };
    match &resolve.types[*id].kind {
        TypeDefKind::Resource
        | TypeDefKind::Handle(_)
        | TypeDefKind::Future(_)
        | TypeDefKind::Stream(_) => true,
        TypeDefKind::Record(record) => any(&mut record.fields.iter().map(|f| &f.ty)),
        TypeDefKind::Tuple(tuple) => any(&mut tuple.types.iter()),
        TypeDefKind::Variant(variant) => {
            any(&mut variant.cases.iter().filter_map(|c| c.ty.as_ref()))
        }
        TypeDefKind::Result(result) => any(&mut result.ok.iter().chain(&result.err)),
        TypeDefKind::Map(key, value) => any(&mut [key, value].into_iter()),
        TypeDefKind::Option(t)
        | TypeDefKind::List(t)
        | TypeDefKind::FixedLengthList(t, _)
        | TypeDefKind::Type(t) => holds_handle(resolve, t),
        TypeDefKind::Flags(_) | TypeDefKind::Enum(_) | TypeDefKind::Unknown => false,
    }
}

/// Reads a component file the way loading does: a regular file within the
/// size limit, its header checked first.
fn read(path: &Path) -> Result<Vec<u8>, String> {
    read_within(path, DEFAULT_MAX_FILE_SIZE)
}

/// Like [`read`], with the size limit given.
fn read_within(path: &Path, max_size: u64) -> Result<Vec<u8>, String> {
    Source::read(path, max_size)
        .map(|source| source.bytes)
        .map_err(|e| e.to_string())
}

fn decode(path: &Path, bytes: &[u8]) -> Result<(Resolve, WorldId), String> {
    match wit_component::decode(bytes) {
        Ok(DecodedWasm::Component(resolve, world)) => Ok((resolve, world)),
        Ok(DecodedWasm::WitPackage(..)) => Err(format!(
            "{} is a WIT package, not a component",
            path.display()
        )),
        Err(e) => Err(format!(
            "cannot decode the WIT of {}: {e:#}",
            path.display()
        )),
    }
}

/// One row of `hotslot list`.
pub struct Row {
    /// The file name.
    pub file: String,
    /// `interface@version`; `-` for a file that does not say what it
    /// exports (not a component, or not read: too big, not a regular
    /// file).
    pub interface: String,
    /// The file's size in bytes.
    pub size: u64,
    /// `yes`, or `no: reason`.
    pub loads: String,
}

/// What `hotslot watch DIR` would load, file by file in file-name order,
/// loading each into `registry` exactly as `watch` would. A refused file
/// is read again (up to `max_size` bytes) for what it would serve.
pub fn list(registry: &Registry, dir: &Path, max_size: u64) -> Result<Vec<Row>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .collect();
    files.sort();
    // All added first: a plugin waits only for what no file serves, and a
    // provider may come after its dependent by name.
    let added: Vec<_> = files
        .iter()
        .map(|path| (path, registry.add_file(path)))
        .collect();
    let listed = registry.list();
    let mut rows = Vec::new();
    for (path, added) in added {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let file = one_line(&escape_controls(&name, |_| false));
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let row = |interface: String, loads: String| Row {
            file: file.clone(),
            interface,
            size,
            loads,
        };
        match added {
            Ok(added) => {
                let links = listed
                    .iter()
                    .filter(|i| i.name == added.name)
                    .flat_map(|i| &i.imports);
                let mut caveats: Vec<String> = Vec::new();
                for link in links {
                    let caveat = match (&link.provider, &link.problem) {
                        (None, _) => match &link.named {
                            None => format!("waiting for {}", link.interface),
                            Some(name) => format!("waiting for {} from `{name}`", link.interface),
                        },
                        (Some((provider, _)), Some(problem)) => format!(
                            "{} from `{provider}` does not fit: {problem}",
                            link.interface
                        ),
                        (Some(_), None) => continue,
                    };
                    // Each interface a plugin serves lists its imports again.
                    if !caveats.contains(&caveat) {
                        caveats.push(caveat);
                    }
                }
                let loads = match caveats.is_empty() {
                    true => "yes".to_string(),
                    false => format!("yes, {}", caveats.join(", ")),
                };
                rows.extend(
                    added
                        .interfaces
                        .iter()
                        .map(|i| row(i.to_string(), loads.clone())),
                );
            }
            Err(e) => {
                let bytes = read_within(path, max_size).ok();
                let reason = refusal(path, bytes.as_deref(), &e);
                let loads = format!("no: {}", escape_controls(&one_line(&reason), |_| false));
                // What the file would serve (not its contract with the
                // host), when it says.
                let exports = bytes
                    .as_deref()
                    .and_then(crate::loader::declared_exports)
                    .map(|exports| {
                        exports
                            .into_iter()
                            .filter(|e| e.package() != crate::loader::CONTRACT_PACKAGE)
                            .collect::<Vec<_>>()
                    })
                    .filter(|exports| !exports.is_empty());
                match exports {
                    Some(exports) => {
                        rows.extend(exports.iter().map(|i| row(i.to_string(), loads.clone())))
                    }
                    None => rows.push(row("-".into(), loads)),
                }
            }
        }
    }
    Ok(rows)
}

/// Why `path` was refused, said as `call` says it when the reason is an
/// import this host cannot link (wasmtime's own words name only a function
/// whose "implementation is missing").
fn refusal(path: &Path, bytes: Option<&[u8]>, error: &crate::Error) -> String {
    let unlinkable = bytes.and_then(|bytes| unlinkable_in(path, bytes).into_iter().next());
    match unlinkable {
        Some((import, why)) => unlinkable_reason(path, &import, &why),
        None => error.to_string(),
    }
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
