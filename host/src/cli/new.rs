//! `hotslot new`: a plugin project that builds with one command, in Rust,
//! Python or JavaScript. Without `--wit` it carries a small WIT of its own
//! (`local:NAME/plugin#hello`, counting calls in `hotslot:plugin/state`);
//! with `--wit DIR --world WORLD` it implements that world with stubs.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use wit_parser::{FunctionKind, Resolve, TypeDefKind, WorldItem, WorldKey};

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
    let crate_name = name.replace('-', "_");
    if request.lang == Lang::Rust && super::rust_skeleton::is_rust_keyword(&crate_name) {
        return Err(format!(
            "`{name}` is a Rust keyword, which cannot name a crate (nor the module \
             wit-bindgen makes of the package): choose another name (e.g. `my-{name}`)"
        ));
    }
    if name == "plugin" && request.wit.is_none() {
        return Err(
            "`plugin` is the name of the interface the project exports, and a world \
             cannot share it: choose another name (e.g. `my-plugin`)"
                .into(),
        );
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
            let (stubs, supplied) = Stubs::read(wit, world)?;
            match wit.is_dir() {
                true => copy_dir(wit, &dir.join("wit"))?,
                false => copy_file(wit, &dir.join("wit"))?,
            }
            if supplied {
                write(&dir.join("wit/deps/hotslot-plugin/plugin.wit"), PLUGIN_WIT)?;
            }
            stubs
        }
        None => {
            write(&dir.join("wit/world.wit"), &default_wit(name))?;
            write(&dir.join("wit/deps/hotslot-plugin/plugin.wit"), PLUGIN_WIT)?;
            Stubs::default_for(name)
        }
    };
    // The command and the component as seen from inside the project.
    let (inside, built) = match request.lang {
        Lang::Rust => rust(&dir, name, &world, request.wit.is_none())?,
        Lang::Python => python(&dir, name, &world, request.wit.is_none())?,
        Lang::Js => javascript(&dir, name, &world, request.wit.is_none())?,
    };
    let needs = match request.lang {
        Lang::Rust => "Rust's `wasm32-wasip2` target: `rustup target add wasm32-wasip2`, \
                       once"
            .to_string(),
        Lang::Python => format!(
            "`python3` with `venv`: the script installs componentize-py \
             {COMPONENTIZE_PY} into `.venv` the first time"
        ),
        Lang::Js => format!(
            "`npm`: the script installs componentize-js {COMPONENTIZE_JS} into \
             `node_modules` the first time"
        ),
    };
    let try_it = match request.wit {
        None => format!("hotslot call {built} 'local:{name}/plugin#hello(\"you\")'"),
        Some(_) => format!(
            "hotslot inspect {built}   # its interfaces and functions\n\
             hotslot call {built} 'INTERFACE#FUNCTION(ARGS)'"
        ),
    };
    write(
        &dir.join("README.md"),
        &format!(
            "# {name}\n\nA hotslot plugin ({:?}), implementing the world `{}` of `wit/`.\n\n\
             Build it, here (it needs {needs}):\n\n```sh\n{inside}\n```\n\n\
             The component is `{built}`: drop it into the directory `hotslot watch` \
             follows, or try it:\n\n```sh\n{try_it}\n```\n",
            request.lang, world.world,
        ),
    )?;
    let command = match request.lang {
        Lang::Rust => format!("cd {} && {inside}", shell_word(&dir.to_string_lossy())),
        // The script goes to its own directory first.
        Lang::Python | Lang::Js => {
            format!("sh {}", shell_word(&dir.join("build.sh").to_string_lossy()))
        }
    };
    Ok((command, dir.join(built)))
}

/// `text` as one word of a POSIX shell command: as it is when nothing in it
/// is special to the shell, else single-quoted.
pub(crate) fn shell_word(text: &str) -> String {
    // A leading `-` would be read as an option (`cd -y`).
    let text = match text.starts_with('-') {
        true => format!("./{text}"),
        false => text.to_string(),
    };
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./+:,@%=".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        return text;
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn default_wit(name: &str) -> String {
    format!(
        "/// The plugin `{name}`: it greets, and counts its calls in the host.\n\
         package local:{name}@0.1.0;\n\n\
         interface plugin {{\n    /// A greeting for `name`.\n    hello: func(name: string) -> string;\n}}\n\n\
         world {name} {{\n    import hotslot:plugin/state@0.1.0;\n    export plugin;\n}}\n"
    )
}

/// A function to stub: its WIT name (a resource's method or static
/// function: the part after the dot) and its parameters' names (`self`
/// left out).
struct StubFunction {
    name: String,
    params: Vec<String>,
    /// What the stub answers instead of failing: for the functions of
    /// `hotslot:plugin` the host calls before any other (a failing
    /// `on-start` would keep the plugin from ever loading).
    answers: Option<Neutral>,
    /// Whether it returns a `result` whose error is a string: its stub
    /// answers that error rather than failing the call.
    errs_with_text: bool,
}

/// A stub's answer that lets the host go on.
#[derive(Clone, Copy)]
enum Neutral {
    /// `ok` of a `result<_, string>`: `on-start`, `restore`.
    Accept,
    /// No bytes: `snapshot` (nothing to carry over).
    NoBytes,
}

impl Neutral {
    /// The answer of `hotslot:plugin`'s function `function` of `interface`.
    fn of(interface: &str, function: &str) -> Option<Neutral> {
        match (interface, function) {
            ("lifecycle", "on-start") | ("migrate", "restore") => Some(Neutral::Accept),
            ("migrate", "snapshot") => Some(Neutral::NoBytes),
            _ => None,
        }
    }

    fn python(self) -> &'static str {
        match self {
            Neutral::Accept => "return None",
            Neutral::NoBytes => "return b\"\"",
        }
    }

    fn javascript(self) -> &'static str {
        match self {
            Neutral::Accept => "return;",
            Neutral::NoBytes => "return new Uint8Array(0);",
        }
    }
}

/// An exported resource: its constructor (if it has one, named
/// `constructor`), its methods and its static functions.
struct StubResource {
    name: String,
    constructor: Option<StubFunction>,
    methods: Vec<StubFunction>,
    statics: Vec<StubFunction>,
}

/// One exported interface (`name`; `None` for functions of the world
/// itself): its functions and its resources.
struct StubInterface {
    name: Option<String>,
    functions: Vec<StubFunction>,
    resources: Vec<StubResource>,
}

/// The functions a world exports, grouped by interface.
struct Stubs {
    world: String,
    exports: Vec<StubInterface>,
    /// The Rust `impl`s of the exports, typed, when the world is one
    /// [`rust_skeleton`](super::rust_skeleton) can write.
    rust: Option<String>,
}

impl Stubs {
    fn default_for(name: &str) -> Self {
        Stubs {
            world: name.to_string(),
            exports: vec![StubInterface {
                name: Some("plugin".into()),
                functions: vec![StubFunction {
                    name: "hello".into(),
                    params: vec!["name".into()],
                    answers: None,
                    errs_with_text: false,
                }],
                resources: Vec::new(),
            }],
            rust: None,
        }
    }

    /// Whether a stub must answer before the host lets calls in: the
    /// world exports `hotslot:plugin`'s lifecycle or migrate.
    fn answers_first(&self) -> bool {
        self.exports
            .iter()
            .flat_map(|e| &e.functions)
            .any(|f| f.answers.is_some())
    }

    /// The world `world` of the package at `wit` (a directory, its
    /// dependencies in `deps/`, or a file); true if it uses
    /// `hotslot:plugin` without having it, which the project then gets.
    fn read(wit: &Path, world: &str) -> Result<(Self, bool), String> {
        let (resolve, package, supplied) = read_wit(wit)?;
        let id = resolve
            .select_world(&[package], Some(world))
            .map_err(|e| format!("no world `{world}` in {}: {e:#}", wit.display()))?;
        let mut exports = Vec::new();
        let mut loose = Vec::new();
        for (key, item) in &resolve.worlds[id].exports {
            match item {
                WorldItem::Interface { id, .. } => {
                    let interface = &resolve.interfaces[*id];
                    let name = match key {
                        WorldKey::Name(name) => name.clone(),
                        WorldKey::Interface(_) => interface.name.clone().unwrap_or_default(),
                    };
                    let mut stub = StubInterface::read(&resolve, Some(name), interface);
                    let ours = interface.package.is_some_and(|p| {
                        let package = &resolve.packages[p].name;
                        (package.namespace.as_str(), package.name.as_str()) == ("hotslot", "plugin")
                    });
                    if let (true, Some(interface)) = (ours, &interface.name) {
                        for function in &mut stub.functions {
                            function.answers = Neutral::of(interface, &function.name);
                        }
                    }
                    exports.push(stub);
                }
                WorldItem::Function(f) => loose.push(stub_function(&resolve, f)),
                WorldItem::Type { .. } => {}
            }
        }
        if !loose.is_empty() {
            exports.push(StubInterface {
                name: None,
                functions: loose,
                resources: Vec::new(),
            });
        }
        let stubs = Stubs {
            world: world.to_string(),
            exports,
            rust: super::rust_skeleton::skeleton(&resolve, id),
        };
        Ok((stubs, supplied))
    }
}

impl StubInterface {
    fn read(resolve: &Resolve, name: Option<String>, interface: &wit_parser::Interface) -> Self {
        let mut stub = StubInterface {
            name,
            functions: Vec::new(),
            resources: Vec::new(),
        };
        // Every resource, even one with no function: the languages want a
        // class for each.
        for (type_name, ty) in &interface.types {
            if matches!(resolve.types[*ty].kind, TypeDefKind::Resource) {
                stub.resources.push(StubResource {
                    name: type_name.clone(),
                    constructor: None,
                    methods: Vec::new(),
                    statics: Vec::new(),
                });
            }
        }
        for function in interface.functions.values() {
            let owner = match &function.kind {
                FunctionKind::Freestanding | FunctionKind::AsyncFreestanding => {
                    stub.functions.push(stub_function(resolve, function));
                    continue;
                }
                FunctionKind::Constructor(ty)
                | FunctionKind::Method(ty)
                | FunctionKind::AsyncMethod(ty)
                | FunctionKind::Static(ty)
                | FunctionKind::AsyncStatic(ty) => resolve.types[*ty].name.as_ref(),
            };
            let Some(resource) = stub.resources.iter_mut().find(|r| Some(&r.name) == owner) else {
                continue;
            };
            match function.kind {
                FunctionKind::Constructor(_) => {
                    resource.constructor = Some(stub_function(resolve, function))
                }
                FunctionKind::Method(_) | FunctionKind::AsyncMethod(_) => {
                    resource.methods.push(stub_function(resolve, function))
                }
                _ => resource.statics.push(stub_function(resolve, function)),
            }
        }
        stub
    }
}

/// A function's stub: its own name (for a resource's, after the dot) and
/// its parameters but a method's first, `self`.
fn stub_function(resolve: &Resolve, function: &wit_parser::Function) -> StubFunction {
    // Through aliases (`type outcome = result<u32, message>`, `type
    // message = string`, or either `use`d).
    let plain = |ty| super::rust_skeleton::unaliased(resolve, ty);
    let errs_with_text = match function.result.map(plain) {
        Some(wit_parser::Type::Id(id)) => matches!(
            &resolve.types[id].kind,
            TypeDefKind::Result(r) if r.err.map(plain) == Some(wit_parser::Type::String)
        ),
        _ => false,
    };
    let method = matches!(
        function.kind,
        FunctionKind::Method(_) | FunctionKind::AsyncMethod(_)
    );
    let params = function
        .params
        .iter()
        .skip(usize::from(method))
        .map(|p| p.name.clone())
        .collect();
    StubFunction {
        name: function.item_name().to_string(),
        params,
        answers: None,
        errs_with_text,
    }
}

/// Writes a Rust project; the command that builds it and the component it
/// makes, both from inside the project (so also the next two).
fn rust(dir: &Path, name: &str, world: &Stubs, own: bool) -> Result<(String, String), String> {
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
    } else if let Some(impls) = &world.rust {
        let first = match world.answers_first() {
            true => {
                "//! hotslot:plugin's `on-start`, `snapshot` and `restore` answer already (the\n\
                     //! host calls them first, and refuses an instance they fail).\n"
            }
            false => "",
        };
        format!(
            "//! The plugin `{name}`, implementing the world `{w}`: fill in each\n\
             //! function; until then, each `todo!()` fails its calls, naming the function.\n{first}\
             wit_bindgen::generate!({{ path: \"wit\", world: \"{w}\", generate_all }});\n\n\
             {impls}\nexport!(Plugin);\n",
            w = world.world
        )
    } else {
        // A world the skeleton cannot write (an async function among its
        // exports, say): wit-bindgen's stubs, which fail every function,
        // hotslot:plugin's included, which the host calls before any other.
        let first = match world.answers_first() {
            true => {
                "//! The host calls hotslot:plugin's `on-start` (every instance), and `snapshot`\n\
                     //! and `restore` (every reload): until yours answer, it refuses them. Start there.\n"
            }
            false => "",
        };
        format!(
            "//! The plugin `{name}`, implementing the world `{w}`. `stubs` makes\n\
             //! wit-bindgen answer every export with `unreachable!()`: replace it with\n\
             //! `struct Plugin;`, an `impl exports::...::Guest for Plugin` per exported\n\
             //! interface, and `export!(Plugin);`.\n{first}\
             wit_bindgen::generate!({{ path: \"wit\", world: \"{w}\", generate_all, stubs }});\n",
            w = world.world
        )
    };
    write(&dir.join("src/lib.rs"), &source)?;
    Ok((
        "cargo build --release --target wasm32-wasip2".into(),
        format!("target/wasm32-wasip2/release/{crate_name}.wasm"),
    ))
}

fn python(dir: &Path, name: &str, world: &Stubs, own: bool) -> Result<(String, String), String> {
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
        app.push_str("import wit_world\nfrom componentize_py_types import Err\n");
        for interface in &world.exports {
            python_interface(dir, interface, &mut app)?;
        }
    }
    write(&dir.join("app.py"), &app)?;
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
    Ok(("sh build.sh".into(), format!("{name}.wasm")))
}

fn javascript(
    dir: &Path,
    name: &str,
    world: &Stubs,
    own: bool,
) -> Result<(String, String), String> {
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
        for interface in &world.exports {
            javascript_interface(interface, &mut app);
        }
    }
    write(&dir.join("app.js"), &app)?;
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
    Ok(("sh build.sh".into(), format!("{name}.wasm")))
}

/// Writes the stubs of one exported interface: its functions as a class in
/// `app.py` (componentize-py looks for one named after the interface
/// there), and its resources as classes in a module named after it (where
/// componentize-py looks for them).
fn python_interface(dir: &Path, interface: &StubInterface, app: &mut String) -> Result<(), String> {
    let class = interface
        .name
        .as_deref()
        .map(camel)
        .unwrap_or_else(|| "WitWorld".into());
    let base = match interface.name {
        Some(_) => format!("exports.{class}"),
        None => "wit_world.WitWorld".into(),
    };
    let _ = write!(app, "\n\nclass {class}({base}):");
    for function in &interface.functions {
        app.push_str(&python_def(function, "self", &function.name));
    }
    if interface.functions.is_empty() {
        app.push_str("\n    pass\n");
    }
    let Some(name) = interface
        .name
        .as_deref()
        .filter(|_| !interface.resources.is_empty())
    else {
        return Ok(());
    };
    let module = snake(name);
    // Written as `{module}.py`, beside `app.py` and the bindings package.
    if module == "app" || module == "wit_world" {
        return Err(format!(
            "the interface `{name}` has resources, which componentize-py looks for in \
             {module}.py: that file is the plugin's own (or its bindings'); rename the interface"
        ));
    }
    let mut classes = format!(
        "\"\"\"The resources of `{name}`: componentize-py looks for them here.\"\"\"\n\n\
         from componentize_py_types import Err\n\
         from wit_world.exports import {module}\n"
    );
    for resource in &interface.resources {
        let class = camel(&resource.name);
        let _ = write!(classes, "\n\nclass {class}({module}.{class}):");
        let mut empty = true;
        if let Some(constructor) = &resource.constructor {
            let wit = format!("[constructor]{}", resource.name);
            classes.push_str(&python_def_named(constructor, "self", "__init__", &wit));
            empty = false;
        }
        for method in &resource.methods {
            let wit = format!("[method]{}.{}", resource.name, method.name);
            classes.push_str(&python_def(method, "self", &wit));
            empty = false;
        }
        for function in &resource.statics {
            let wit = format!("[static]{}.{}", resource.name, function.name);
            classes.push_str("\n    @classmethod");
            classes.push_str(&python_def(function, "cls", &wit));
            empty = false;
        }
        if empty {
            classes.push_str("\n    pass\n");
        }
    }
    write(&dir.join(format!("{module}.py")), &classes)
}

/// A Python method stub for `function`, taking `receiver` first.
fn python_def(function: &StubFunction, receiver: &str, wit: &str) -> String {
    python_def_named(function, receiver, &python_name(&function.name), wit)
}

fn python_def_named(function: &StubFunction, receiver: &str, name: &str, wit: &str) -> String {
    let args: String = function
        .params
        .iter()
        .map(|p| format!(", {}", python_name(p)))
        .collect();
    let body = match (function.answers, function.errs_with_text) {
        (Some(neutral), _) => neutral.python().to_string(),
        (None, true) => format!("raise Err(\"not implemented: {wit}\")"),
        (None, false) => format!("raise NotImplementedError(\"{wit}\")"),
    };
    format!("\n    def {name}({receiver}{args}):\n        {body}\n")
}

/// A WIT name as componentize-py writes it in Python: `my-func` as
/// `my_func`, and a Python keyword with `_` after it (`from_`).
fn python_name(name: &str) -> String {
    const KEYWORDS: [&str; 35] = [
        "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class",
        "continue", "def", "del", "elif", "else", "except", "finally", "for", "from", "global",
        "if", "import", "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return",
        "try", "while", "with", "yield",
    ];
    unreserved(snake(name), &KEYWORDS)
}

/// Writes the stubs of one exported interface as componentize-js wants
/// them: an object named after it, with its functions, and each resource as
/// a class on it.
fn javascript_interface(interface: &StubInterface, app: &mut String) {
    let function_body = |function: &StubFunction, wit: &str, indent: &str| {
        let args: Vec<String> = function.params.iter().map(|p| javascript_name(p)).collect();
        // componentize-js answers a value thrown as the `result`'s error.
        let body = match (function.answers, function.errs_with_text) {
            (Some(neutral), _) => neutral.javascript().to_string(),
            (None, true) => format!("throw \"not implemented: {wit}\";"),
            (None, false) => format!("throw new Error(\"not implemented: {wit}\");"),
        };
        format!(
            "{indent}{}({}) {{\n{indent}  {body}\n{indent}}}",
            lower_camel(&function.name),
            args.join(", ")
        )
    };
    let Some(name) = &interface.name else {
        for function in &interface.functions {
            let _ = write!(
                app,
                "\nexport function {}\n",
                function_body(function, &function.name, "").trim_start()
            );
        }
        return;
    };
    let mut members: Vec<String> = Vec::new();
    for resource in &interface.resources {
        let class = camel(&resource.name);
        let mut body = Vec::new();
        if let Some(constructor) = &resource.constructor {
            let wit = format!("[constructor]{}", resource.name);
            body.push(function_body(constructor, &wit, "    "));
        }
        for method in &resource.methods {
            let wit = format!("[method]{}.{}", resource.name, method.name);
            body.push(function_body(method, &wit, "    "));
        }
        for function in &resource.statics {
            let wit = format!("[static]{}.{}", resource.name, function.name);
            body.push(format!(
                "    static {}",
                function_body(function, &wit, "    ").trim_start()
            ));
        }
        members.push(format!(
            "  {class}: class {class} {{\n{}\n  }}",
            body.join("\n")
        ));
    }
    for function in &interface.functions {
        members.push(function_body(function, &function.name, "  "));
    }
    let _ = write!(
        app,
        "\nexport const {} = {{\n{}\n}};\n",
        lower_camel(name),
        members
            .iter()
            .map(|m| format!("{m},"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A WIT name as a JavaScript parameter: `my-arg` as `myArg`, and a word
/// JavaScript reserves with `_` after it (`in_`).
fn javascript_name(name: &str) -> String {
    const RESERVED: [&str; 46] = [
        "await",
        "break",
        "case",
        "catch",
        "class",
        "const",
        "continue",
        "debugger",
        "default",
        "delete",
        "do",
        "else",
        "enum",
        "export",
        "extends",
        "false",
        "finally",
        "for",
        "function",
        "if",
        "implements",
        "import",
        "in",
        "instanceof",
        "interface",
        "let",
        "new",
        "null",
        "package",
        "private",
        "protected",
        "public",
        "return",
        "static",
        "super",
        "switch",
        "this",
        "throw",
        "true",
        "try",
        "typeof",
        "var",
        "void",
        "while",
        "with",
        "yield",
    ];
    unreserved(lower_camel(name), &RESERVED)
}

/// `name`, with `_` after it if it is one of the `reserved` words.
fn unreserved(name: String, reserved: &[&str]) -> String {
    match reserved.contains(&name.as_str()) {
        true => format!("{name}_"),
        false => name,
    }
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

/// Reads the WIT package at `wit`; if it uses `hotslot:plugin` without
/// having it in `deps/`, with hotslot's own (and true).
fn read_wit(wit: &Path) -> Result<(Resolve, wit_parser::PackageId, bool), String> {
    let failed = |e: anyhow::Error| {
        let mut reason = format!("cannot read the WIT in {}: {e:#}", wit.display());
        if reason.contains("no `package` header") {
            reason.push_str(
                " (--wit takes one package: a directory of .wit files that begin \
                 `package NAMESPACE:NAME;`, its dependencies in deps/, or one such file)",
            );
        }
        reason
    };
    if wit.is_file() && wit.extension().is_none_or(|x| x != "wit") {
        return Err(format!(
            "{} is no .wit file: --wit takes the directory of a WIT package, or one \
             .wit file",
            wit.display()
        ));
    }
    let mut resolve = Resolve::default();
    let first = match resolve.push_path(wit) {
        Ok((package, _)) => return Ok((resolve, package, false)),
        Err(e) => e,
    };
    // Only when what is missing is hotslot:plugin itself (a package the
    // WIT has in deps/ is listed among the known ones in other errors).
    if !format!("{first:#}").contains("package 'hotslot:plugin@0.1.0' not found") {
        return Err(failed(first));
    }
    // Guarded: wit-parser panics on a package added twice, which this
    // retry must not turn into a crash if the test above is ever wrong.
    let retried = std::panic::catch_unwind(|| {
        let mut resolve = Resolve::default();
        resolve.push_str("hotslot-plugin.wit", PLUGIN_WIT)?;
        let (package, _) = resolve.push_path(wit)?;
        anyhow::Ok((resolve, package))
    });
    match retried {
        Ok(Ok((resolve, package))) => Ok((resolve, package, true)),
        // What the first reading said is what is wrong.
        _ => Err(failed(first)),
    }
}

/// Copies the WIT file `from` into the directory `to`.
fn copy_file(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("cannot make {}: {e}", to.display()))?;
    let name = from.file_name().unwrap_or_default();
    std::fs::copy(from, to.join(name))
        .map(drop)
        .map_err(|e| format!("cannot copy {}: {e}", from.display()))
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

#[cfg(test)]
mod tests {
    use super::{shell_word, Stubs};

    /// A stub answers an error text for every `result` whose error is a
    /// string, through aliases too.
    #[test]
    fn a_result_with_an_error_text_is_seen_through_aliases() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.wit"),
            "package a:b;\n\
             interface types { type message = string; }\n\
             interface api {\n\
             \x20 use types.{message};\n\
             \x20 type outcome = result<u32, message>;\n\
             \x20 direct: func() -> result<u32, string>;\n\
             \x20 named: func() -> outcome;\n\
             \x20 other: func() -> result<u32, u32>;\n\
             \x20 plain: func() -> string;\n\
             }\n\
             world w { export api; }\n",
        )
        .unwrap();
        let (stubs, supplied) = Stubs::read(dir.path(), "w").unwrap();
        assert!(!supplied);
        let flags: Vec<(&str, bool)> = stubs.exports[0]
            .functions
            .iter()
            .map(|f| (f.name.as_str(), f.errs_with_text))
            .collect();
        assert_eq!(
            flags,
            [
                ("direct", true),
                ("named", true),
                ("other", false),
                ("plain", false)
            ]
        );
    }

    #[test]
    fn a_shell_word_is_one_word_and_never_an_option() {
        assert_eq!(shell_word("my-plugin/build.sh"), "my-plugin/build.sh");
        assert_eq!(shell_word("it's $HOME"), r"'it'\''s $HOME'");
        assert_eq!(shell_word("-y"), "./-y");
        assert_eq!(shell_word("-a b"), "'./-a b'");
    }
}
