//! The Rust of `hotslot new --lang rust --wit DIR --world W`: an `impl` of
//! each exported interface's `Guest` trait (and a struct per exported
//! resource, implementing its `GuestR` trait), with the signatures
//! wit-bindgen gives them, every body a `todo!()` to fill in, except hotslot:plugin's
//! `on-start`, `snapshot` and `restore`, which answer so that the plugin
//! loads (wit-bindgen's own `stubs` fail them, and the host calls them
//! before any other).
//!
//! The names follow wit-bindgen 0.61's Rust generator (its `to_rust_ident`,
//! `to_upper_camel_case` and module paths). A world this does not know how
//! to write (an async function, a type wit-bindgen writes with a runtime
//! type of its own, a resource constructor that can fail, two versions of one
//! package, a name of the world's own where the skeleton writes its own) gets
//! no skeleton: the caller falls back to `stubs`.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt::Write as _;

use wit_parser::{
    Function, FunctionKind, Handle, InterfaceId, Resolve, Type, TypeDefKind, TypeId, TypeOwner,
    WorldId, WorldItem, WorldKey,
};

/// `struct Plugin` and the `impl` blocks implementing world `id`'s exports
/// on it, or `None` if the world has something this cannot write.
pub(super) fn skeleton(resolve: &Resolve, id: WorldId) -> Option<String> {
    let world = &resolve.worlds[id];
    let writer = Writer {
        resolve,
        world: id,
        used: RefCell::new(BTreeSet::new()),
    };
    // The skeleton writes `Plugin`, `Vec`, `String`, `Option` and `Result`
    // at the root, where wit-bindgen puts the world's own types.
    let taken = ["Plugin", "Vec", "String", "Option", "Result"];
    if taken.iter().any(|name| writer.world_type(name)) {
        return None;
    }
    let mut out = String::new();
    let mut loose = Vec::new();
    // Each exported resource is a struct of the plugin's, at the root.
    let mut structs: Vec<String> = vec!["Plugin".into()];
    for (key, item) in &world.exports {
        match item {
            WorldItem::Interface { id, .. } => {
                let interface = &resolve.interfaces[*id];
                let resources: Vec<(TypeId, String)> = interface
                    .types
                    .iter()
                    .filter(|(_, t)| matches!(resolve.types[**t].kind, TypeDefKind::Resource))
                    .map(|(name, t)| (*t, upper_camel(name)))
                    .collect();
                // wit-bindgen gives an interface of types alone no trait.
                if interface.functions.is_empty() && resources.is_empty() {
                    continue;
                }
                let path = writer.module(*id)?;
                let ours = interface.package.is_some_and(|p| {
                    let package = &resolve.packages[p].name;
                    (package.namespace.as_str(), package.name.as_str()) == ("hotslot", "plugin")
                });
                let name = match key {
                    WorldKey::Name(name) => name.as_str(),
                    WorldKey::Interface(_) => interface.name.as_deref().unwrap_or_default(),
                };
                let mut items = String::new();
                for (_, camel) in &resources {
                    if structs.contains(camel) || writer.world_type(camel) {
                        return None;
                    }
                    structs.push(camel.clone());
                    let _ = write!(items, "\n    type {camel} = {camel};\n");
                }
                for function in interface.functions.values() {
                    if function.kind.resource().is_some() {
                        continue;
                    }
                    let neutral = match ours {
                        true => neutral(name, &function.name),
                        false => None,
                    };
                    items.push_str(&writer.function(function, neutral)?);
                }
                let _ = write!(
                    out,
                    "\n#[allow(unused_variables)]\nimpl {path}::Guest for Plugin {{{items}}}\n"
                );
                for (resource, camel) in &resources {
                    let mut methods = String::new();
                    for function in interface.functions.values() {
                        if function.kind.resource() == Some(*resource) {
                            methods.push_str(&writer.function(function, None)?);
                        }
                    }
                    let _ = write!(
                        out,
                        "\nstruct {camel};\n\n#[allow(unused_variables)]\n\
                         impl {path}::Guest{camel} for {camel} {{{methods}}}\n"
                    );
                }
            }
            WorldItem::Function(function) => loose.push(writer.function(function, None)?),
            WorldItem::Type { .. } => {}
        }
    }
    if !loose.is_empty() {
        let _ = write!(
            out,
            "\n#[allow(unused_variables)]\nimpl Guest for Plugin {{{}}}\n",
            loose.concat()
        );
    }
    let uses: String = writer
        .used
        .into_inner()
        .iter()
        .map(|path| format!("use {path};\n"))
        .collect();
    Some(format!("{uses}\nstruct Plugin;\n{out}"))
}

/// What hotslot:plugin's function `function` of `interface` answers in a
/// skeleton: what lets the host go on.
fn neutral(interface: &str, function: &str) -> Option<&'static str> {
    match (interface, function) {
        ("lifecycle", "on-start") | ("migrate", "restore") => Some("Ok(())"),
        ("migrate", "snapshot") => Some("Vec::new()"),
        _ => None,
    }
}

struct Writer<'a> {
    resolve: &'a Resolve,
    world: WorldId,
    /// The modules written by their last name, to `use`.
    used: RefCell<BTreeSet<String>>,
}

impl Writer<'_> {
    /// How the skeleton names interface `id`'s module: by its last name
    /// (`shapes`, `use`d), unless another interface of the world has that
    /// name too, or a module at the root does (`exports`, a namespace).
    fn module(&self, id: InterfaceId) -> Option<String> {
        let path = self.interface_path(id)?;
        let Some((_, last)) = path.rsplit_once("::") else {
            return Some(path);
        };
        let world = &self.resolve.worlds[self.world];
        let mut shared = 0;
        let mut taken = ["exports", "_rt", "wit_bindgen"].contains(&last);
        for (_, item) in world.imports.iter().chain(&world.exports) {
            let WorldItem::Interface { id, .. } = item else {
                continue;
            };
            let Some(other) = self.interface_path(*id) else {
                continue;
            };
            shared += usize::from(other.rsplit("::").next() == Some(last));
            // The root holds `exports` and each imported namespace.
            taken |= other.split("::").next() == Some(last);
        }
        if shared > 1 || taken {
            return Some(path);
        }
        let last = last.to_string();
        self.used.borrow_mut().insert(path);
        Some(last)
    }

    /// `fn name(params) -> result { body }`, as wit-bindgen's `Guest`
    /// trait (or, for a resource's, its `GuestR` trait) declares it for an
    /// export: a method takes `&self`, a constructor is `new`, returning
    /// `Self`.
    fn function(&self, function: &Function, neutral: Option<&str>) -> Option<String> {
        let (name, receiver, skip) = match function.kind {
            FunctionKind::Freestanding | FunctionKind::Static(_) => {
                (rust_ident(function.item_name()), None, 0)
            }
            FunctionKind::Method(_) => (rust_ident(function.item_name()), Some("&self"), 1),
            FunctionKind::Constructor(_) => ("new".to_string(), None, 0),
            _ => return None,
        };
        let mut params: Vec<String> = receiver.map(String::from).into_iter().collect();
        for param in function.params.iter().skip(skip) {
            params.push(format!(
                "{}: {}",
                rust_ident(&param.name),
                self.ty(&param.ty)?
            ));
        }
        let result = match (&function.kind, &function.result) {
            // A constructor that may fail (`-> result<r, e>`) is written
            // `Result<Self, E> where Self: Sized`: not here.
            (FunctionKind::Constructor(resource), Some(Type::Id(made)))
                if self.owns(*made) == Some(*resource) =>
            {
                " -> Self".to_string()
            }
            (FunctionKind::Constructor(_), _) => return None,
            (_, Some(ty)) => format!(" -> {}", self.ty(ty)?),
            (_, None) => String::new(),
        };
        let body = match neutral {
            Some(answer) => answer.to_string(),
            None => format!("todo!(\"{}\")", function.name),
        };
        Some(format!(
            "\n    fn {name}({}){result} {{\n        {body}\n    }}\n",
            params.join(", ")
        ))
    }

    /// Whether the world itself names a type `camel` (wit-bindgen puts it
    /// at the root, where the skeleton's structs are).
    fn world_type(&self, camel: &str) -> bool {
        let world = &self.resolve.worlds[self.world];
        world
            .imports
            .iter()
            .chain(&world.exports)
            .any(|(key, item)| {
                matches!(item, WorldItem::Type { .. })
                    && matches!(key, WorldKey::Name(name) if upper_camel(name) == camel)
            })
    }

    /// A type as an exported function takes or gives it (owned).
    fn ty(&self, ty: &Type) -> Option<String> {
        Some(match ty {
            Type::Bool => "bool".into(),
            Type::U8 => "u8".into(),
            Type::U16 => "u16".into(),
            Type::U32 => "u32".into(),
            Type::U64 => "u64".into(),
            Type::S8 => "i8".into(),
            Type::S16 => "i16".into(),
            Type::S32 => "i32".into(),
            Type::S64 => "i64".into(),
            Type::F32 => "f32".into(),
            Type::F64 => "f64".into(),
            Type::Char => "char".into(),
            Type::String => "String".into(),
            Type::ErrorContext => return None,
            Type::Id(id) => self.type_id(*id)?,
        })
    }

    fn type_id(&self, id: TypeId) -> Option<String> {
        let def = &self.resolve.types[id];
        if let Some(name) = &def.name {
            // A type with a name is written by its name, where its
            // interface's module (or the world, at the root) has it.
            let name = upper_camel(name);
            return match def.owner {
                TypeOwner::Interface(owner) => Some(format!("{}::{name}", self.module(owner)?)),
                TypeOwner::World(_) => Some(name),
                TypeOwner::None => None,
            };
        }
        Some(match &def.kind {
            TypeDefKind::List(element) => format!("Vec<{}>", self.ty(element)?),
            TypeDefKind::Option(inner) => format!("Option<{}>", self.ty(inner)?),
            TypeDefKind::Result(result) => format!(
                "Result<{}, {}>",
                self.optional(result.ok.as_ref())?,
                self.optional(result.err.as_ref())?
            ),
            TypeDefKind::Tuple(tuple) => {
                let types: Option<Vec<String>> = tuple.types.iter().map(|t| self.ty(t)).collect();
                let types = types?;
                match types.len() {
                    1 => format!("({},)", types[0]),
                    _ => format!("({})", types.join(", ")),
                }
            }
            TypeDefKind::Type(inner) => self.ty(inner)?,
            TypeDefKind::Handle(Handle::Own(resource)) => self.ty(&Type::Id(*resource))?,
            // A borrowed resource of the plugin's own is its `RBorrow`; one
            // it imports, a reference.
            TypeDefKind::Handle(Handle::Borrow(resource)) => {
                let named = &self.resolve.types[*resource];
                let camel = upper_camel(named.name.as_deref()?);
                match self.exports_resource(*resource) {
                    true => match named.owner {
                        TypeOwner::Interface(owner) => {
                            format!("{}::{camel}Borrow<'_>", self.module(owner)?)
                        }
                        _ => return None,
                    },
                    false => format!("&{}", self.ty(&Type::Id(*resource))?),
                }
            }
            // Maps, fixed-length lists, futures and streams take types of
            // wit-bindgen's runtime.
            _ => return None,
        })
    }

    /// The resource `id` is an `own` handle of, if it is one.
    fn owns(&self, id: TypeId) -> Option<TypeId> {
        match self.resolve.types[dealias(self.resolve, id)].kind {
            TypeDefKind::Handle(Handle::Own(resource)) => Some(dealias(self.resolve, resource)),
            _ => None,
        }
    }

    /// Whether `resource` (through any alias) is one an exported
    /// interface of the world defines.
    fn exports_resource(&self, resource: TypeId) -> bool {
        let world = &self.resolve.worlds[self.world];
        match self.resolve.types[dealias(self.resolve, resource)].owner {
            TypeOwner::Interface(owner) => key_of(&world.exports, owner).is_some(),
            _ => false,
        }
    }

    fn optional(&self, ty: Option<&Type>) -> Option<String> {
        match ty {
            Some(ty) => self.ty(ty),
            None => Some("()".into()),
        }
    }

    /// The module wit-bindgen puts interface `id` in, for this world: under
    /// `exports::` if the world exports it.
    fn interface_path(&self, id: InterfaceId) -> Option<String> {
        let world = &self.resolve.worlds[self.world];
        let (key, export) = match key_of(&world.exports, id) {
            Some(key) => (key, true),
            None => (key_of(&world.imports, id)?, false),
        };
        let mut path = Vec::new();
        if export {
            path.push("exports".to_string());
        }
        match key {
            WorldKey::Name(name) => path.push(rust_ident(name)),
            WorldKey::Interface(_) => {
                let interface = &self.resolve.interfaces[id];
                let package = interface.package?;
                let name = &self.resolve.packages[package].name;
                // wit-bindgen puts the version in the module's name when two
                // versions of one package are present: not written here.
                let versions = self
                    .resolve
                    .packages
                    .iter()
                    .filter(|(_, p)| p.name.namespace == name.namespace && p.name.name == name.name)
                    .count();
                if versions > 1 {
                    return None;
                }
                path.push(rust_ident(&name.namespace));
                path.push(snake(&name.name));
                path.push(rust_ident(interface.name.as_deref()?));
            }
        }
        Some(path.join("::"))
    }
}

/// The type `ty` names through any aliases (`use`, `type x = y`).
pub(super) fn unaliased(resolve: &Resolve, mut ty: Type) -> Type {
    while let Type::Id(id) = ty {
        match resolve.types[id].kind {
            TypeDefKind::Type(next) => ty = next,
            _ => break,
        }
    }
    ty
}

/// [`unaliased`], for a type defined in WIT (a resource, a handle).
fn dealias(resolve: &Resolve, id: TypeId) -> TypeId {
    match unaliased(resolve, Type::Id(id)) {
        Type::Id(id) => id,
        _ => id,
    }
}

/// The name under which `items` (a world's imports or exports) hold
/// interface `id`.
fn key_of<'a>(
    items: impl IntoIterator<Item = (&'a WorldKey, &'a WorldItem)>,
    id: InterfaceId,
) -> Option<&'a WorldKey> {
    items.into_iter().find_map(|(key, item)| match item {
        WorldItem::Interface { id: found, .. } if *found == id => Some(key),
        _ => None,
    })
}

/// `my-name` as wit-bindgen writes it in Rust: `my_name`, a Rust keyword
/// with `_` after it (`type_`).
fn rust_ident(name: &str) -> String {
    let name = snake(name);
    match is_rust_keyword(&name) {
        true => format!("{name}_"),
        false => name,
    }
}

/// Whether Rust reserves `name` (strict, reserved and edition keywords).
pub(super) fn is_rust_keyword(name: &str) -> bool {
    const KEYWORDS: [&str; 50] = [
        "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn",
        "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref",
        "return", "self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use",
        "where", "while", "async", "await", "dyn", "abstract", "become", "box", "do", "final",
        "macro", "override", "priv", "typeof", "unsized", "virtual", "yield", "try",
    ];
    KEYWORDS.contains(&name)
}

/// `my-name` (or `HTTP-name`) as `my_name` (`http_name`).
fn snake(name: &str) -> String {
    name.to_lowercase().replace('-', "_")
}

/// `my-type` (or `HTTP-type`) as `MyType` (`HttpType`); `guest` as
/// wit-bindgen renames it, `Guest_` (its traits are `Guest`).
fn upper_camel(name: &str) -> String {
    if name == "guest" {
        return "Guest_".into();
    }
    name.split('-')
        .map(|word| {
            let mut chars = word.chars();
            match chars.next() {
                Some(first) => {
                    first.to_ascii_uppercase().to_string() + &chars.as_str().to_lowercase()
                }
                None => String::new(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skeleton_of(wit: &str) -> Option<String> {
        let mut resolve = Resolve::default();
        let package = resolve.push_str("test.wit", wit).unwrap();
        let world = resolve.select_world(&[package], Some("w")).unwrap();
        skeleton(&resolve, world)
    }

    #[test]
    fn names_are_written_as_wit_bindgen_writes_them() {
        let source = skeleton_of(
            "package a:b;\n\
             interface types { record guest { x: u8 } type HTTP-thing = list<u8>; }\n\
             interface fs { use types.{guest, HTTP-thing}; \
             move: func(in: guest, self: HTTP-thing) -> tuple<s8>; }\n\
             world w { export types; export fs; }",
        )
        .unwrap();
        assert!(source.contains("use exports::a::b::fs;"), "{source}");
        // No trait to implement for an interface of types alone.
        assert!(!source.contains("types"), "{source}");
        assert!(
            source.contains("fn move_(in_: fs::Guest_, self_: fs::HttpThing) -> (i8,) {"),
            "{source}"
        );
    }

    #[test]
    fn what_it_cannot_write_it_leaves_to_wit_bindgen() {
        for (exported, world) in [
            ("interface i { f: func(m: map<string, u8>); }", ""),
            ("interface i { f: async func(); }", ""),
            ("interface i { f: func() -> stream<u8>; }", ""),
            (
                "interface i { resource r { constructor() -> result<r>; } }",
                "",
            ),
            // Names the skeleton writes at the root, where wit-bindgen puts
            // the world's own types.
            ("interface i { f: func(); }", "record vec { x: u8 }"),
            ("interface i { f: func(); }", "record plugin { x: u8 }"),
            ("interface i { resource point; }", "record point { x: u8 }"),
        ] {
            let wit = format!("package a:b;\n{exported}\nworld w {{ {world} export i; }}");
            assert_eq!(skeleton_of(&wit), None, "{exported} {world}");
        }
    }

    #[test]
    fn an_exported_resource_is_a_struct_implementing_its_trait() {
        let source = skeleton_of(
            "package a:b;\n\
             interface store {\n\
             \x20 resource bucket {\n\
             \x20   constructor(name: string);\n\
             \x20   get: func(key: string) -> option<string>;\n\
             \x20   absorb: func(other: borrow<bucket>) -> u32;\n\
             \x20   open: static func(name: string) -> bucket;\n\
             \x20 }\n\
             \x20 take: func(b: bucket) -> list<bucket>;\n\
             }\n\
             world w { export store; }",
        )
        .unwrap();
        for line in [
            "impl store::Guest for Plugin {\n    type Bucket = Bucket;\n",
            "fn take(b: store::Bucket) -> Vec<store::Bucket> {",
            "struct Bucket;",
            "impl store::GuestBucket for Bucket {",
            "fn new(name: String) -> Self {",
            "fn get(&self, key: String) -> Option<String> {",
            "fn absorb(&self, other: store::BucketBorrow<'_>) -> u32 {",
            "fn open(name: String) -> store::Bucket {",
        ] {
            assert!(source.contains(line), "{line}\n{source}");
        }
    }
}
