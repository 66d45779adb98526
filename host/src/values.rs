//! Checking dynamic values against WIT types, to tell a caller which argument
//! is wrong and why. Used only after a call failed, never on the call path.

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
