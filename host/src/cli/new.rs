//! `hotslot new`: a plugin project that builds with one command, in Rust,
//! Python or JavaScript. Without `--wit` it carries a small WIT of its own
//! (`local:NAME/plugin#hello`, counting calls in `hotslot:plugin/state`);
//! with `--wit DIR --world WORLD` it implements that world with stubs.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use wit_parser::{Resolve, WorldItem, WorldKey};

/// The languages `hotslot new` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust with wit-bindgen, built for wasm32-wasip2.
    Rust,
    /// Python with componentize-py.
    Python,
    /// JavaScript with componentize-js.
    Js,
}

/// The wit-bindgen version this repository's guests use.
const WIT_BINDGEN: &str = "0.61";
/// The componentize-py and componentize-js versions the Makefile pins.
const COMPONENTIZE_PY: &str = "0.25.1";
const COMPONENTIZE_JS: &str = "0.23.0";
/// The contract, copied into every scaffold that uses it.
const PLUGIN_WIT: &str = include_str!("../../../wit/hotslot-plugin/plugin.wit");

/// What `new` was asked for.
pub struct NewPlugin {
    /// The plugin's name: a WIT identifier.
    pub name: String,
    /// Its language.
    pub lang: Lang,
    /// A WIT directory and a world in it to implement, or none for the
    /// scaffold's own.
    pub wit: Option<(PathBuf, String)>,
    /// Where to write it (default: `./NAME`).
    pub dir: Option<PathBuf>,
}

/// The words WIT reserves (wit-parser's lexer): as a plugin's name they
/// would make its package and world unreadable.
const WIT_KEYWORDS: [&str; 44] = [
    "use",
    "type",
    "func",
    "u8",
    "u16",
    "u32",
    "u64",
    "s8",
    "s16",
    "s32",
    "s64",
    "f32",
    "f64",
    "char",
    "resource",
    "own",
    "borrow",
    "record",
    "flags",
    "variant",
    "enum",
    "bool",
    "string",
    "option",
    "result",
    "future",
    "stream",
    "error-context",
    "list",
    "map",
    "as",
    "from",
    "static",
    "interface",
    "tuple",
    "world",
    "import",
    "export",
    "package",
    "constructor",
    "include",
    "with",
    "async",
    "_",
];

/// Writes the project; returns the command that builds it and where the
/// component will be.
pub fn new_plugin(request: &NewPlugin) -> Result<(String, PathBuf), String> {
    let name = &request.name;
    if !crate::version::is_wit_identifier(name) {
        return Err(format!(
            "`{name}` is not a WIT identifier: lower-case words of letters and digits, \
             joined by `-`, each starting with a letter (e.g. `my-plugin`)"
        ));
    }
    if WIT_KEYWORDS.contains(&name.as_str()) {
        return Err(format!(
            "`{name}` is a WIT keyword, which cannot name a package or a world: \
             choose another name (e.g. `my-{name}`)"
        ));
    }
    let dir = request.dir.clone().unwrap_or_else(|| PathBuf::from(name));
    let occupied = std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some());
    if occupied {
        return Err(format!(
            "{} exists and is not empty: choose another --dir",
            dir.display()
        ));
    }
    let world = match &request.wit {
        // The world is found before anything is written: a name mistyped
        // leaves no half-made project behind.
        Some((wit, world)) => {
            let stubs = Stubs::read(wit, world)?;
            copy_dir(wit, &dir.join("wit"))?;
            stubs
        }
        None => {
            write(&dir.join("wit/world.wit"), &default_wit(name))?;
            write(&dir.join("wit/deps/hotslot-plugin/plugin.wit"), PLUGIN_WIT)?;
            Stubs::default_for(name)
        }
    };
    let (command, output) = match request.lang {
        Lang::Rust => rust(&dir, name, &world, request.wit.is_none())?,
        Lang::Python => python(&dir, name, &world, request.wit.is_none())?,
        Lang::Js => javascript(&dir, name, &world, request.wit.is_none())?,
    };
    write(
        &dir.join("README.md"),
        &format!(
            "# {name}\n\nA hotslot plugin ({:?}), implementing the world `{}` of `wit/`.\n\n\
             Build it:\n\n```sh\n{command}\n```\n\nThe component is `{}`: drop it into \
             the directory `hotslot watch` follows, or try it with `hotslot call {} \
             'INTERFACE#FUNCTION(ARGS)'`.\n",
            request.lang,
            world.world,
            output.display(),
            output.display()
        ),
    )?;
    Ok((command, output))
}

fn default_wit(name: &str) -> String {
    format!(
        "/// The plugin `{name}`: it greets, and counts its calls in the host.\n\
         package local:{name}@0.1.0;\n\n\
         interface plugin {{\n    /// A greeting for `name`.\n    hello: func(name: string) -> string;\n}}\n\n\
         world {name} {{\n    import hotslot:plugin/state@0.1.0;\n    export plugin;\n}}\n"
    )
}

/// A function to stub: its name and its parameters' names.
type StubFunction = (String, Vec<String>);

/// The functions a world exports, grouped by interface.
struct Stubs {
    world: String,
    /// Interface (its own name, or `None` for functions of the world
    /// itself), and its functions.
    exports: Vec<(Option<String>, Vec<StubFunction>)>,
}

impl Stubs {
    fn default_for(name: &str) -> Self {
        Stubs {
            world: name.to_string(),
            exports: vec![(
                Some("plugin".into()),
                vec![("hello".into(), vec!["name".into()])],
            )],
        }
    }

    fn read(wit: &Path, world: &str) -> Result<Self, String> {
        let mut resolve = Resolve::default();
        let (package, _) = resolve
            .push_dir(wit)
            .map_err(|e| format!("cannot read the WIT in {}: {e:#}", wit.display()))?;
        let id = resolve
            .select_world(&[package], Some(world))
            .map_err(|e| format!("no world `{world}` in {}: {e:#}", wit.display()))?;
        let mut exports = Vec::new();
        let functions = |funcs: Vec<&wit_parser::Function>| {
            funcs
                .into_iter()
                .map(|f| {
                    let params = f.params.iter().map(|p| p.name.clone()).collect();
                    (f.name.clone(), params)
                })
                .collect::<Vec<_>>()
        };
        let mut loose = Vec::new();
        for (key, item) in &resolve.worlds[id].exports {
            match item {
                WorldItem::Interface { id, .. } => {
                    let interface = &resolve.interfaces[*id];
                    let name = match key {
                        WorldKey::Name(name) => name.clone(),
                        WorldKey::Interface(_) => interface.name.clone().unwrap_or_default(),
                    };
                    exports.push((
                        Some(name),
                        functions(interface.functions.values().collect()),
                    ));
                }
                WorldItem::Function(f) => loose.push(f),
                WorldItem::Type { .. } => {}
            }
        }
        if !loose.is_empty() {
            exports.push((None, functions(loose)));
        }
        Ok(Stubs {
            world: world.to_string(),
            exports,
        })
    }
}

fn rust(dir: &Path, name: &str, world: &Stubs, own: bool) -> Result<(String, PathBuf), String> {
    let crate_name = name.replace('-', "_");
    write(
        &dir.join("Cargo.toml"),
        &format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [lib]\ncrate-type = [\"cdylib\"]\n\n\
             [dependencies]\nwit-bindgen = \"{WIT_BINDGEN}\"\n\n\
             [profile.release]\nopt-level = \"s\"\nlto = true\nstrip = \"debuginfo\"\ncodegen-units = 1\n\n\
             # A project of its own, not part of any workspace above it.\n[workspace]\n"
        ),
    )?;
    let source = if own {
        format!(
            "//! The plugin `{name}`: it answers `local:{name}/plugin#hello`, and counts its\n\
             //! calls in the host's store (hotslot:plugin/state), so the count survives a\n\
             //! reload.\n\
             wit_bindgen::generate!({{ path: \"wit\", world: \"{name}\", generate_all }});\n\n\
             use hotslot::plugin::state;\n\n\
             struct Plugin;\n\n\
             impl exports::local::{crate_name}::plugin::Guest for Plugin {{\n\
             \x20   fn hello(name: String) -> String {{\n\
             \x20       let calls = state::get(\"calls\")\n\
             \x20           .and_then(|bytes| bytes.try_into().ok())\n\
             \x20           .map(u64::from_le_bytes)\n\
             \x20           .unwrap_or(0)\n\
             \x20           + 1;\n\
             \x20       // Past the host's quota, `set` fails: the count stays where it was.\n\
             \x20       let _ = state::set(\"calls\", &calls.to_le_bytes());\n\
             \x20       format!(\"hello, {{name}} (call {{calls}})\")\n\
             \x20   }}\n\
             }}\n\n\
             export!(Plugin);\n"
        )
    } else {
        format!(
            "//! The plugin `{name}`, implementing the world `{w}`. `stubs` makes\n\
             //! wit-bindgen answer every export with `unimplemented!()`: replace it with\n\
             //! `struct Plugin;`, an `impl exports::...::Guest for Plugin` per exported\n\
             //! interface, and `export!(Plugin);`.\n\
             wit_bindgen::generate!({{ path: \"wit\", world: \"{w}\", generate_all, stubs }});\n",
            w = world.world
        )
    };
    write(&dir.join("src/lib.rs"), &source)?;
    let output = dir.join(format!("target/wasm32-wasip2/release/{crate_name}.wasm"));
    let command = format!(
        "cd {} && cargo build --release --target wasm32-wasip2",
        dir.display()
    );
    Ok((command, output))
}

fn python(dir: &Path, name: &str, world: &Stubs, own: bool) -> Result<(String, PathBuf), String> {
    let mut app = format!(
        "\"\"\"The plugin `{name}`, implementing the world `{}`.\"\"\"\n\n\
         from wit_world import exports\n",
        world.world
    );
    if own {
        app.push_str(
            "from wit_world.imports import state\n\n\n\
             class Plugin(exports.Plugin):\n\
             \x20   def hello(self, name: str) -> str:\n\
             \x20       saved = state.get(\"calls\")\n\
             \x20       calls = (int.from_bytes(saved, \"little\") if saved else 0) + 1\n\
             \x20       state.set(\"calls\", calls.to_bytes(8, \"little\"))\n\
             \x20       return f\"hello, {name} (call {calls})\"\n",
        );
    } else {
        app.push_str("import wit_world\n");
        for (interface, functions) in &world.exports {
            let class = interface
                .as_deref()
                .map(camel)
                .unwrap_or_else(|| "WitWorld".into());
            let base = match interface {
                Some(_) => format!("exports.{class}"),
                None => "wit_world.WitWorld".into(),
            };
            let _ = write!(app, "\n\nclass {class}({base}):");
            for (function, params) in functions {
                let args: Vec<String> = params.iter().map(|p| snake(p)).collect();
                let _ = write!(
                    app,
                    "\n    def {}(self{}):\n        raise NotImplementedError(\"{function}\")\n",
                    snake(function),
                    args.iter().map(|a| format!(", {a}")).collect::<String>()
                );
            }
        }
    }
    write(&dir.join("app.py"), &app)?;
    let output = dir.join(format!("{name}.wasm"));
    write(
        &dir.join("build.sh"),
        &format!(
            "#!/bin/sh\n# Builds {name}.wasm with componentize-py {COMPONENTIZE_PY}, installed in .venv\n\
             # the first time (or the one $COMPONENTIZE_PY names).\nset -e\ncd \"$(dirname \"$0\")\"\n\
             tool=\"${{COMPONENTIZE_PY:-.venv/bin/componentize-py}}\"\n\
             if [ ! -x \"$tool\" ]; then\n\
             \x20   python3 -m venv .venv\n\
             \x20   .venv/bin/pip install --quiet --disable-pip-version-check componentize-py=={COMPONENTIZE_PY}\n\
             \x20   tool=.venv/bin/componentize-py\nfi\n\
             \"$tool\" -d wit -w {} componentize app -o {name}.wasm\n",
            world.world
        ),
    )?;
    Ok((format!("sh {}", dir.join("build.sh").display()), output))
}

fn javascript(
    dir: &Path,
    name: &str,
    world: &Stubs,
    own: bool,
) -> Result<(String, PathBuf), String> {
    let mut app = format!(
        "// The plugin `{name}`, implementing the world `{}`.\n",
        world.world
    );
    if own {
        app.push_str(
            "import { get, set } from \"hotslot:plugin/state@0.1.0\";\n\n\
             export const plugin = {\n\
             \x20 hello(name) {\n\
             \x20   const saved = get(\"calls\");\n\
             \x20   const view = saved && new DataView(saved.buffer, saved.byteOffset, 8);\n\
             \x20   const calls = (view ? Number(view.getBigUint64(0, true)) : 0) + 1;\n\
             \x20   const bytes = new Uint8Array(8);\n\
             \x20   new DataView(bytes.buffer).setBigUint64(0, BigInt(calls), true);\n\
             \x20   set(\"calls\", bytes);\n\
             \x20   return `hello, ${name} (call ${calls})`;\n\
             \x20 },\n};\n",
        );
    } else {
        for (interface, functions) in &world.exports {
            let bodies: Vec<String> = functions
                .iter()
                .map(|(function, params)| {
                    let args: Vec<String> = params.iter().map(|p| lower_camel(p)).collect();
                    format!(
                        "  {}({}) {{\n    throw new Error(\"not implemented: {function}\");\n  }},\n",
                        lower_camel(function),
                        args.join(", ")
                    )
                })
                .collect();
            match interface {
                Some(interface) => {
                    let _ = write!(
                        app,
                        "\nexport const {} = {{\n{}}};\n",
                        lower_camel(interface),
                        bodies.concat()
                    );
                }
                None => {
                    for (function, params) in functions {
                        let args: Vec<String> = params.iter().map(|p| lower_camel(p)).collect();
                        let _ = write!(
                            app,
                            "\nexport function {}({}) {{\n  throw new Error(\"not implemented: {function}\");\n}}\n",
                            lower_camel(function),
                            args.join(", ")
                        );
                    }
                }
            }
        }
    }
    write(&dir.join("app.js"), &app)?;
    let output = dir.join(format!("{name}.wasm"));
    write(
        &dir.join("build.sh"),
        &format!(
            "#!/bin/sh\n# Builds {name}.wasm with componentize-js {COMPONENTIZE_JS}, installed in\n\
             # node_modules the first time (or the one $COMPONENTIZE_JS names).\nset -e\n\
             cd \"$(dirname \"$0\")\"\ntool=\"${{COMPONENTIZE_JS:-node_modules/.bin/componentize-js}}\"\n\
             if [ ! -x \"$tool\" ]; then\n\
             \x20   npm install --silent --no-fund --no-audit @bytecodealliance/componentize-js@{COMPONENTIZE_JS}\n\
             \x20   tool=node_modules/.bin/componentize-js\nfi\n\
             # componentize-js's defaults: fetch() works, over wasi:http, to what a\n\
             # manifest {name}.toml beside {name}.wasm grants in [http] allow.\n\
             \"$tool\" app.js --wit wit -n {} -o {name}.wasm\n",
            world.world
        ),
    )?;
    Ok((format!("sh {}", dir.join("build.sh").display()), output))
}

/// `my-iface` as `MyIface` (a Python class, as componentize-py names it).
fn camel(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// `my-func` as `my_func`.
fn snake(name: &str) -> String {
    name.replace('-', "_")
}

/// `my-func` as `myFunc`.
fn lower_camel(name: &str) -> String {
    let upper = camel(name);
    let mut chars = upper.chars();
    match chars.next() {
        Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot make {}: {e}", parent.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Copies the WIT directory `from` (with its `deps/`) to `to`, following
/// symlinks.
fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    let entries =
        std::fs::read_dir(from).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
    std::fs::create_dir_all(to).map_err(|e| format!("cannot make {}: {e}", to.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", from.display()))?;
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &to.join(entry.file_name()))?;
        } else {
            std::fs::copy(&path, to.join(entry.file_name()))
                .map_err(|e| format!("cannot copy {}: {e}", path.display()))?;
        }
    }
    Ok(())
}
