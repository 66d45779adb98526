//! The request line the CLI reads: `INTERFACE[@VERSION]#FUNCTION(ARGS)`, with
//! the arguments written in WAVE, and the WAVE rendering of answers.

use hotslot_wave::untyped::UntypedFuncCall;
use wasmtime::component::wasm_wave as hotslot_wave;
use wasmtime::component::{Type, Val};

use crate::loader::ExportedFunction;
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
    interface: Request,
    call: UntypedFuncCall<'static>,
}

impl CallRequest {
    /// Parses a request line. Errors say what is wrong with the line.
    pub fn parse(line: &str) -> Result<Self, String> {
        let line = line.trim();
        let (interface, call) = line.split_once('#').ok_or_else(|| {
            format!("expected INTERFACE#FUNCTION(ARGS), e.g. demo:greeter/greet#hello(\"you\"); got `{line}`")
        })?;
        let interface: Request = interface.parse().map_err(|e| format!("{e}"))?;
        if !call.trim_end().ends_with(')') {
            return Err(format!("expected FUNCTION(ARGS) after `#`, got `{call}`"));
        }
        let call = UntypedFuncCall::parse(call)
            .map_err(|e| format!("cannot parse `{call}`: {e}"))?
            .into_owned();
        Ok(CallRequest { interface, call })
    }

    /// The interface asked for.
    pub fn interface(&self) -> &Request {
        &self.interface
    }

    /// The function's name.
    pub fn function(&self) -> &str {
        self.call.name()
    }

    /// The arguments, typed against `function`'s parameters.
    pub fn arguments(&self, function: &ExportedFunction) -> Result<Vec<Val>, String> {
        let types: Vec<Type> = function.ty().params().map(|(_, ty)| ty).collect();
        self.call
            .to_wasm_params::<Val>(types.iter())
            .map_err(|e| format!("bad arguments for {}: {e}", self.function()))
    }
}

/// An answer in WAVE: `()` for no results, the value for one, a tuple for
/// several.
pub fn render(results: &[Val]) -> Result<String, String> {
    let wave =
        |v: &Val| hotslot_wave::to_string(v).map_err(|e| format!("cannot render {v:?}: {e}"));
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
        ] {
            assert!(CallRequest::parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
