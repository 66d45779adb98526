//! Dynamic values and WIT types: checking `Val`s against a function's
//! parameters (to tell a caller which argument is wrong and why, after a call
//! failed, never on the call path), and writing types and signatures as WIT
//! for messages that compare them.

use wasmtime::component::types::ComponentFunc;
use wasmtime::component::{Type, Val};

/// The first argument in `args` that does not fit `func`'s parameters, worded
/// for the caller; `None` if they fit (as far as this check sees).
pub(crate) fn mismatch(func: &ComponentFunc, args: &[Val]) -> Option<String> {
    let params: Vec<(&str, Type)> = func.params().collect();
    if params.len() != args.len() {
        return Some(format!(
            "expected {} argument(s), got {}",
            params.len(),
            args.len()
        ));
    }
    params.iter().zip(args).find_map(|((name, ty), val)| {
        fits(ty, val)
            .err()
            .map(|why| format!("argument `{name}`: {why}"))
    })
}

/// Whether `val` has the shape of `ty`. Kinds this check does not model
/// (resources, maps, async values) are left to wasmtime.
fn fits(ty: &Type, val: &Val) -> Result<(), String> {
    let wrong = || Err(format!("expected {}, got {}", describe(ty), val_kind(val)));
    match (ty, val) {
        (Type::Bool, Val::Bool(_))
        | (Type::S8, Val::S8(_))
        | (Type::U8, Val::U8(_))
        | (Type::S16, Val::S16(_))
        | (Type::U16, Val::U16(_))
        | (Type::S32, Val::S32(_))
        | (Type::U32, Val::U32(_))
        | (Type::S64, Val::S64(_))
        | (Type::U64, Val::U64(_))
        | (Type::Float32, Val::Float32(_))
        | (Type::Float64, Val::Float64(_))
        | (Type::Char, Val::Char(_))
        | (Type::String, Val::String(_)) => Ok(()),
        (Type::List(list), Val::List(items)) => {
            let element = list.ty();
            items.iter().try_for_each(|item| fits(&element, item))
        }
        (Type::Record(record), Val::Record(fields)) => {
            let expected: Vec<_> = record.fields().collect();
            if let Some(missing) = expected
                .iter()
                .find(|f| !fields.iter().any(|(name, _)| name == f.name))
            {
                return Err(format!(
                    "missing field `{}: {}`",
                    missing.name,
                    wit_type(&missing.ty)
                ));
            }
            if let Some((extra, _)) = fields
                .iter()
                .find(|(name, _)| !expected.iter().any(|f| f.name == name))
            {
                return Err(format!("no field `{extra}` in the record"));
            }
            if let Some((twice, _)) = fields
                .iter()
                .enumerate()
                .find(|(i, (name, _))| fields[..*i].iter().any(|(n, _)| n == name))
                .map(|(_, field)| field)
            {
                return Err(format!("field `{twice}` given twice"));
            }
            if expected.len() != fields.len() {
                return wrong();
            }
            expected
                .iter()
                .zip(fields)
                .try_for_each(|(field, (name, value))| {
                    if field.name != name {
                        return Err(format!("expected field `{}`, got `{name}`", field.name));
                    }
                    fits(&field.ty, value).map_err(|why| format!("field `{name}`: {why}"))
                })
        }
        (Type::Tuple(tuple), Val::Tuple(items)) => {
            let types: Vec<_> = tuple.types().collect();
            if types.len() != items.len() {
                return wrong();
            }
            types.iter().zip(items).try_for_each(|(t, v)| fits(t, v))
        }
        (Type::Variant(variant), Val::Variant(name, payload)) => {
            let Some(case) = variant.cases().find(|c| c.name == name) else {
                return Err(format!("no case `{name}` in {}", describe(ty)));
            };
            optional_fits(case.ty.as_ref(), payload.as_deref())
        }
        (Type::Enum(cases), Val::Enum(name)) => {
            if cases.names().any(|n| n == name) {
                Ok(())
            } else {
                Err(format!("no case `{name}` in {}", describe(ty)))
            }
        }
        (Type::Option(option), Val::Option(value)) => match value {
            None => Ok(()),
            Some(value) => fits(&option.ty(), value),
        },
        (Type::Result(result), Val::Result(value)) => match value {
            Ok(v) => optional_fits(result.ok().as_ref(), v.as_deref()),
            Err(v) => optional_fits(result.err().as_ref(), v.as_deref()),
        },
        (Type::Flags(flags), Val::Flags(set)) => {
            match set.iter().find(|f| !flags.names().any(|n| n == f.as_str())) {
                Some(unknown) => Err(format!("no flag `{unknown}` in {}", describe(ty))),
                None => Ok(()),
            }
        }
        (Type::Own(_) | Type::Borrow(_), Val::Resource(_))
        | (Type::Map(_), Val::Map(_))
        | (Type::Future(_), Val::Future(_))
        | (Type::Stream(_), Val::Stream(_))
        | (Type::ErrorContext, Val::ErrorContext(_))
        | (Type::FixedLengthList(_), Val::FixedLengthList(_)) => Ok(()),
        _ => wrong(),
    }
}

fn optional_fits(ty: Option<&Type>, val: Option<&Val>) -> Result<(), String> {
    match (ty, val) {
        (None, None) => Ok(()),
        (Some(ty), Some(val)) => fits(ty, val),
        (Some(_), None) => Err("missing payload".into()),
        (None, Some(_)) => Err("unexpected payload".into()),
    }
}

fn describe(ty: &Type) -> &'static str {
    match ty {
        Type::Bool => "bool",
        Type::S8 => "s8",
        Type::U8 => "u8",
        Type::S16 => "s16",
        Type::U16 => "u16",
        Type::S32 => "s32",
        Type::U32 => "u32",
        Type::S64 => "s64",
        Type::U64 => "u64",
        Type::Float32 => "f32",
        Type::Float64 => "f64",
        Type::Char => "char",
        Type::String => "string",
        Type::List(_) => "a list",
        Type::Map(_) => "a map",
        Type::Record(_) => "a record",
        Type::Tuple(_) => "a tuple",
        Type::Variant(_) => "a variant",
        Type::Enum(_) => "an enum",
        Type::Option(_) => "an option",
        Type::Result(_) => "a result",
        Type::Flags(_) => "flags",
        Type::Own(_) | Type::Borrow(_) => "a resource",
        Type::Future(_) => "a future",
        Type::Stream(_) => "a stream",
        Type::ErrorContext => "an error-context",
        Type::FixedLengthList(_) => "a fixed-length list",
    }
}

fn val_kind(val: &Val) -> &'static str {
    match val {
        Val::Bool(_) => "bool",
        Val::S8(_) => "s8",
        Val::U8(_) => "u8",
        Val::S16(_) => "s16",
        Val::U16(_) => "u16",
        Val::S32(_) => "s32",
        Val::U32(_) => "u32",
        Val::S64(_) => "s64",
        Val::U64(_) => "u64",
        Val::Float32(_) => "f32",
        Val::Float64(_) => "f64",
        Val::Char(_) => "char",
        Val::String(_) => "string",
        Val::List(_) => "a list",
        Val::Map(_) => "a map",
        Val::Record(_) => "a record",
        Val::Tuple(_) => "a tuple",
        Val::Variant(..) => "a variant",
        Val::Enum(_) => "an enum",
        Val::Option(_) => "an option",
        Val::Result(_) => "a result",
        Val::Flags(_) => "flags",
        Val::Resource(_) => "a resource",
        Val::Future(_) => "a future",
        Val::Stream(_) => "a stream",
        Val::ErrorContext(_) => "an error-context",
        Val::FixedLengthList(_) => "a fixed-length list",
    }
}

/// `ty` written the way WIT writes it, for messages that compare
/// signatures. Named types (records, variants...) are written out, since a
/// type does not carry its name.
pub(crate) fn wit_type(ty: &Type) -> String {
    let list = |items: Vec<String>| items.join(", ");
    match ty {
        Type::List(list_ty) => format!("list<{}>", wit_type(&list_ty.ty())),
        Type::FixedLengthList(_) => "fixed-length-list".into(),
        Type::Map(_) => "map".into(),
        Type::Record(record) => format!(
            "record {{ {} }}",
            list(
                record
                    .fields()
                    .map(|f| format!("{}: {}", f.name, wit_type(&f.ty)))
                    .collect()
            )
        ),
        Type::Tuple(tuple) => format!(
            "tuple<{}>",
            list(tuple.types().map(|t| wit_type(&t)).collect())
        ),
        Type::Variant(variant) => format!(
            "variant {{ {} }}",
            list(
                variant
                    .cases()
                    .map(|c| match &c.ty {
                        Some(ty) => format!("{}({})", c.name, wit_type(ty)),
                        None => c.name.to_string(),
                    })
                    .collect()
            )
        ),
        Type::Enum(cases) => format!(
            "enum {{ {} }}",
            list(cases.names().map(String::from).collect())
        ),
        Type::Option(option) => format!("option<{}>", wit_type(&option.ty())),
        Type::Result(result) => {
            let side = |t: Option<Type>| t.map_or("_".to_string(), |t| wit_type(&t));
            format!("result<{}, {}>", side(result.ok()), side(result.err()))
        }
        Type::Flags(flags) => format!(
            "flags {{ {} }}",
            list(flags.names().map(String::from).collect())
        ),
        Type::Own(_) => "own<resource>".into(),
        Type::Borrow(_) => "borrow<resource>".into(),
        Type::Future(_) => "future".into(),
        Type::Stream(_) => "stream".into(),
        Type::ErrorContext => "error-context".into(),
        plain => describe(plain).to_string(),
    }
}

/// A function's signature as WIT writes it: `func(a: s32, b: s32) -> s32`.
pub(crate) fn signature(func: &ComponentFunc) -> String {
    let params: Vec<String> = func
        .params()
        .map(|(name, ty)| format!("{name}: {}", wit_type(&ty)))
        .collect();
    let results: Vec<String> = func.results().map(|ty| wit_type(&ty)).collect();
    match results.as_slice() {
        [] => format!("func({})", params.join(", ")),
        [one] => format!("func({}) -> {one}", params.join(", ")),
        many => format!("func({}) -> ({})", params.join(", "), many.join(", ")),
    }
}

/// Whether a function of type `func` takes or gives a resource handle.
pub(crate) fn passes_resources(func: &ComponentFunc) -> bool {
    func.params().any(|(_, t)| holds_resource(&t)) || func.results().any(|t| holds_resource(&t))
}

/// Whether values of `ty` hold a resource handle anywhere inside.
pub(crate) fn holds_resource(ty: &Type) -> bool {
    match ty {
        Type::Own(_) | Type::Borrow(_) => true,
        Type::List(list) => holds_resource(&list.ty()),
        Type::Record(record) => record.fields().any(|f| holds_resource(&f.ty)),
        Type::Tuple(tuple) => tuple.types().any(|t| holds_resource(&t)),
        Type::Variant(variant) => variant
            .cases()
            .any(|c| c.ty.as_ref().is_some_and(holds_resource)),
        Type::Option(option) => holds_resource(&option.ty()),
        Type::Result(result) => {
            result.ok().is_some_and(|t| holds_resource(&t))
                || result.err().is_some_and(|t| holds_resource(&t))
        }
        _ => false,
    }
}

/// Whether two functions take and give values of the same types (names of
/// parameters aside).
pub(crate) fn same_types(a: &ComponentFunc, b: &ComponentFunc) -> bool {
    a.params().map(|(_, t)| t).eq(b.params().map(|(_, t)| t)) && a.results().eq(b.results())
}
