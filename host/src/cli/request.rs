//! The request line the CLI reads: `[NAME::]INTERFACE[@VERSION]#FUNCTION(ARGS)`,
//! with the arguments written in WAVE, and the WAVE rendering of answers.

use hotslot_wave::ast::{Node, NodeType};
use hotslot_wave::parser::{ParserError, ParserErrorKind};
use hotslot_wave::untyped::UntypedFuncCall;
use wasmtime::component::wasm_wave as hotslot_wave;
use wasmtime::component::{Type, Val};

use crate::loader::ExportedFunction;
use crate::source::check_name;
use crate::values::wit_type;
use crate::version::Request;

/// One parsed request line: which interface, which function, and the
/// arguments still untyped (they are typed against the function found).
///
/// ```
/// use hotslot::cli::CallRequest;
/// let request = CallRequest::parse(r#"demo:greeter/greet@1#hello("world")"#).unwrap();
/// assert_eq!(request.interface().to_string(), "demo:greeter/greet@1.0.0");
/// assert_eq!(request.function(), "hello");
/// ```
pub struct CallRequest {
    implementation: Option<String>,
    interface: Request,
    call: UntypedFuncCall<'static>,
}

impl CallRequest {
    /// Parses a request line. Errors say what is wrong with the line.
    ///
    /// ```
    /// use hotslot::cli::CallRequest;
    /// let request = CallRequest::parse(r#"greeter_b::demo:greeter/greet#hello("x")"#).unwrap();
    /// assert_eq!(request.implementation(), Some("greeter_b"));
    /// ```
    pub fn parse(line: &str) -> Result<Self, String> {
        let line = line.trim();
        let (target, call) = line.split_once('#').ok_or_else(|| {
            format!("expected [NAME::]INTERFACE#FUNCTION(ARGS), e.g. demo:greeter/greet#hello(\"you\"); got `{line}`")
        })?;
        let (implementation, interface) = match target.split_once("::") {
            Some((name, interface)) => {
                let name = name.trim();
                check_name(name).map_err(|why| format!("bad plugin name `{name}`: {why}"))?;
                (Some(name.to_string()), interface)
            }
            None => (None, target),
        };
        let interface: Request = interface.parse().map_err(|e| format!("{e}"))?;
        if !call.trim_end().ends_with(')') {
            return Err(format!("expected FUNCTION(ARGS) after `#`, got `{call}`"));
        }
        let call = UntypedFuncCall::parse(call)
            .map_err(|e| format!("cannot parse `{call}`: {e}"))?
            .into_owned();
        Ok(CallRequest {
            implementation,
            interface,
            call,
        })
    }

    /// The plugin the request names (`NAME::`), if it names one.
    pub fn implementation(&self) -> Option<&str> {
        self.implementation.as_deref()
    }

    /// The interface asked for.
    pub fn interface(&self) -> &Request {
        &self.interface
    }

    /// The function's name.
    pub fn function(&self) -> &str {
        self.call.name()
    }

    /// The arguments, typed against `function`'s parameters. An error names
    /// the argument and says what was expected and what was given:
    /// `argument a: expected s32, got a string` (the caller adds which
    /// function).
    pub fn arguments(&self, function: &ExportedFunction) -> Result<Vec<Val>, String> {
        let params: Vec<(String, Type)> = function
            .ty()
            .params()
            .map(|(name, ty)| (name.to_string(), ty))
            .collect();
        // WAVE passes over a field a record does not have, and a missing
        // `option` field is `none`: a misspelt `max-lenn: some(3)` was
        // called with no `max-len` at all.
        if let Some(Ok(given)) = self.call.params_node().map(|n| n.as_tuple()) {
            for ((name, ty), node) in params.iter().zip(given) {
                unknown_field(node, ty, self.call.source())
                    .map_or(Ok(()), |why| Err(format!("argument {name}: {why}")))?;
            }
        }
        let types: Vec<Type> = params.into_iter().map(|(_, ty)| ty).collect();
        self.call
            .to_wasm_params::<Val>(types.iter())
            .map_err(|e| self.explain(function, &e))
    }

    /// Words a failure to type the arguments: which argument, and what kind
    /// of value it should be and was.
    fn explain(&self, function: &ExportedFunction, error: &ParserError) -> String {
        let params: Vec<(String, Type)> = function
            .ty()
            .params()
            .map(|(name, ty)| (name.to_string(), ty))
            .collect();
        let wanted = || {
            let list: Vec<String> = params
                .iter()
                .map(|(name, ty)| format!("{name}: {}", wit_type(ty)))
                .collect();
            list.join(", ")
        };
        let given: Vec<_> = match self.call.params_node().map(|n| n.as_tuple()) {
            Some(Ok(args)) => args.collect(),
            _ => Vec::new(),
        };
        // WAVE lets trailing `option` arguments be left out.
        let optional = params
            .iter()
            .rev()
            .take_while(|(_, ty)| matches!(ty, Type::Option(_)))
            .count();
        let required = params.len() - optional;
        if given.len() < required || given.len() > params.len() {
            let count = if optional == 0 {
                params.len().to_string()
            } else {
                format!("{required} to {}", params.len())
            };
            return format!(
                "takes {count} argument(s) ({}), got {}",
                wanted(),
                given.len()
            );
        }
        let at = error.span().start;
        let culprit = params
            .iter()
            .zip(&given)
            .find(|(_, arg)| arg.span().contains(&at) || arg.span().end == at);
        match culprit {
            Some(((name, ty), arg)) => {
                // A value of another kind needs no more words; one of the
                // right kind wrong inside, or out of range, does.
                let plain =
                    error.span() == arg.span() && error.kind() == ParserErrorKind::InvalidType;
                let why = match plain {
                    true => String::new(),
                    false => format!(" ({})", self.what_is_wrong(error)),
                };
                format!(
                    "argument {name}: expected {}, got {}{why}",
                    wit_type(ty),
                    kind_of(arg.ty())
                )
            }
            None => format!("bad arguments: {error}"),
        }
    }

    /// Which part of the arguments `error` is about (quoted: a value of
    /// the right kind may hold the wrong thing deep inside), and what is
    /// wrong with it.
    fn what_is_wrong(&self, error: &ParserError) -> String {
        let source = self.call.source();
        let quoted = source.get(error.span()).unwrap_or_default();
        let what = match (error.kind(), error.detail()) {
            // wasm-wave says "invalid value" of a number out of range.
            (ParserErrorKind::InvalidValue, None) if quoted.parse::<i128>().is_ok() => {
                "out of range".to_string()
            }
            (ParserErrorKind::InvalidValue, None) if quoted.parse::<f64>().is_ok() => {
                "not a whole number".to_string()
            }
            (kind, Some(detail)) => format!("{kind}: {detail}"),
            // wasm-wave's own words, but for its article before "enum".
            (kind, None) => match std::error::Error::source(error) {
                Some(why) => why
                    .to_string()
                    .replace("expected a enum", "expected an enum"),
                None => kind.to_string(),
            },
        };
        format!("`{quoted}`: {what}")
    }
}

/// What kind of value a WAVE argument is, for messages.
fn kind_of(node: NodeType) -> &'static str {
    match node {
        NodeType::BoolTrue | NodeType::BoolFalse => "a bool",
        NodeType::Number => "a number",
        NodeType::Char => "a char",
        NodeType::String | NodeType::MultilineString => "a string",
        NodeType::Tuple => "a tuple",
        NodeType::List => "a list",
        NodeType::Record => "a record",
        NodeType::Label => "a name (an enum case or a variant case)",
        NodeType::VariantWithPayload => "a variant case with a payload",
        NodeType::OptionSome | NodeType::OptionNone => "an option",
        NodeType::ResultOk | NodeType::ResultErr => "a result",
        NodeType::Flags => "flags",
    }
}

/// An answer in WAVE: `()` for no results, the value for one, a tuple for
/// several.
pub fn render(results: &[Val]) -> Result<String, String> {
    let wave = |v: &Val| {
        // WAVE has no way to write a resource (wasm-wave panics on one).
        if holds_resource(v) {
            return Err(
                "it answered a resource handle, which cannot be shown as a value \
                        (call it from code that uses the resource)"
                    .to_string(),
            );
        }
        hotslot_wave::to_string(v).map_err(|e| format!("cannot render {v:?}: {e}"))
    };
    match results {
        [] => Ok("()".to_string()),
        [one] => wave(one),
        many => Ok(format!(
            "({})",
            many.iter()
                .map(wave)
                .collect::<Result<Vec<_>, _>>()?
                .join(", ")
        )),
    }
}

/// A field given in `node` (a WAVE value of type `ty`, in `src`), at any
/// depth, that its record does not have, worded with the fields it has.
/// Values that do not fit their type otherwise are left to the typing that
/// follows, which says what is wrong with them.
fn unknown_field(node: &Node, ty: &Type, src: &str) -> Option<String> {
    let inner = |node: &Node, ty: &Type| unknown_field(node, ty, src);
    match ty {
        Type::Record(record) => {
            for (name, value) in node.as_record(src).ok()? {
                let Some(field) = record.fields().find(|f| f.name == name) else {
                    let fields: Vec<&str> = record.fields().map(|f| f.name).collect();
                    return Some(format!(
                        "the record has no field `{name}` (its fields: {})",
                        fields.join(", ")
                    ));
                };
                if let Some(why) = inner(value, &field.ty) {
                    return Some(format!("field {name}: {why}"));
                }
            }
            None
        }
        Type::List(list) => node
            .as_list()
            .ok()?
            .find_map(|item| inner(item, &list.ty())),
        Type::Tuple(tuple) => node
            .as_tuple()
            .ok()?
            .zip(tuple.types())
            .find_map(|(item, ty)| inner(item, &ty)),
        // WAVE takes an option's or an ok's payload bare, too.
        Type::Option(option) => match node.as_option() {
            Ok(value) => inner(value?, &option.ty()),
            Err(_) => inner(node, &option.ty()),
        },
        Type::Result(result) => match node.as_result() {
            Ok(Ok(value)) => inner(value?, &result.ok()?),
            Ok(Err(value)) => inner(value?, &result.err()?),
            Err(_) => inner(node, &result.ok()?),
        },
        Type::Variant(variant) => {
            let (name, value) = node.as_variant(src).ok()?;
            let case = variant.cases().find(|c| c.name == name)?;
            inner(value?, &case.ty?)
        }
        _ => None,
    }
}

/// Whether `value` is, or holds, a resource handle (or another value
/// WAVE cannot write: a future, a stream, an error context).
fn holds_resource(value: &Val) -> bool {
    match value {
        Val::Resource(_) | Val::Future(_) | Val::Stream(_) | Val::ErrorContext(_) => true,
        Val::List(items) | Val::Tuple(items) => items.iter().any(holds_resource),
        Val::Record(fields) => fields.iter().any(|(_, v)| holds_resource(v)),
        Val::Variant(_, Some(v)) | Val::Option(Some(v)) => holds_resource(v),
        Val::Result(Ok(Some(v)) | Err(Some(v))) => holds_resource(v),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::CallRequest;

    #[test]
    fn parses_versions_and_arguments() {
        let r = CallRequest::parse("demo:text/filter@1.2#stats(\"a b\")").unwrap();
        assert_eq!(r.interface().to_string(), "demo:text/filter@1.2.0");
        assert_eq!(r.function(), "stats");
        let r = CallRequest::parse("  demo:greeter/greet#hello(\"x\")  ").unwrap();
        assert_eq!(r.interface().to_string(), "demo:greeter/greet");
    }

    #[test]
    fn refuses_malformed_lines() {
        for bad in [
            "",
            "hello",
            "demo:greeter/greet",
            "demo:greeter/greet#",
            "demo:greeter/greet#hello",
            "demo:greeter/greet#hello(",
            "demo:greeter/greet#hello(\"x\"",
            "greet#hello()",
            "demo:greeter/greet@x#hello()",
            "::demo:greeter/greet#hello()",
        ] {
            assert!(CallRequest::parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
