//! The host functions a dependent's imports from the registry are linked
//! to: each hands its call to the instance's [`ImportCalls`], which finds
//! the plugin serving the import now.
//!
//! A function of a common shape (no arguments, one of a string, an integer
//! or a bool, or two strings or two 32-bit integers; nothing or one such
//! value back) is linked typed: wasmtime lifts its arguments straight into
//! Rust values and lowers them into the provider the same way. Any other is
//! linked with dynamic values (`Val`s), which wasmtime checks and converts
//! on both sides of the host: about a tenth of a forwarded call when wired
//! by hand (BENCHMARKS, "A call forwarded to another plugin").

use wasmtime::component::types::ComponentFunc;
use wasmtime::component::{
    ComponentNamedList, ComponentType, Func, Lift, Linker, LinkerInstance, Lower, Type, TypedFunc,
    Val,
};
use wasmtime::{Store, StoreContextMut};

use crate::sandbox::{PluginState, TypedCall};

/// Defines each function of `imports` (a component's imports from the
/// registry: each interface's name, and its functions' names and types) in
/// `linker`, to be answered by the instance's imports.
pub(crate) fn link_imports(
    linker: &mut Linker<PluginState>,
    imports: &[(String, Vec<(String, ComponentFunc)>)],
) -> wasmtime::Result<()> {
    for (import, (name, functions)) in imports.iter().enumerate() {
        let mut instance = linker.instance(name)?;
        for (function, (function_name, ty)) in functions.iter().enumerate() {
            let at = Position { import, function };
            if !link_typed(&mut instance, function_name, at, ty)? {
                link_dynamic(&mut instance, function_name, at)?;
            }
        }
    }
    Ok(())
}

/// Which import, and which of its functions, a forwarder answers.
#[derive(Clone, Copy)]
struct Position {
    import: usize,
    function: usize,
}

fn link_dynamic(
    instance: &mut LinkerInstance<'_, PluginState>,
    name: &str,
    at: Position,
) -> wasmtime::Result<()> {
    instance.func_new(name, move |store, _ty, params, results| {
        let imports = store.data().imports()?;
        imports.call(at.import, at.function, params, results)
    })
}

/// The values a typed forwarder takes and gives.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Bool,
    S32,
    U32,
    S64,
    U64,
}

impl Kind {
    fn of(ty: &Type) -> Option<Kind> {
        Some(match ty {
            Type::String => Kind::Str,
            Type::Bool => Kind::Bool,
            Type::S32 => Kind::S32,
            Type::U32 => Kind::U32,
            Type::S64 => Kind::S64,
            Type::U64 => Kind::U64,
            _ => return None,
        })
    }
}

/// Links `name` typed if its type is one of the common shapes; false if
/// it is not (it is then for [`link_dynamic`]).
fn link_typed(
    instance: &mut LinkerInstance<'_, PluginState>,
    name: &str,
    at: Position,
    ty: &ComponentFunc,
) -> wasmtime::Result<bool> {
    let params: Option<Vec<Kind>> = ty.params().map(|(_, t)| Kind::of(&t)).collect();
    let results: Option<Vec<Kind>> = ty.results().map(|t| Kind::of(&t)).collect();
    let (Some(params), Some(results)) = (params, results) else {
        return Ok(false);
    };
    let result = match results.as_slice() {
        [] => None,
        [one] => Some(*one),
        _ => return Ok(false),
    };
    // One arm per shape: each a forwarder of its own, monomorphized.
    macro_rules! giving {
        ($params:ty) => {
            match result {
                None => wrap::<$params, ()>(instance, name, at),
                Some(Kind::Str) => wrap::<$params, (String,)>(instance, name, at),
                Some(Kind::Bool) => wrap::<$params, (bool,)>(instance, name, at),
                Some(Kind::S32) => wrap::<$params, (i32,)>(instance, name, at),
                Some(Kind::U32) => wrap::<$params, (u32,)>(instance, name, at),
                Some(Kind::S64) => wrap::<$params, (i64,)>(instance, name, at),
                Some(Kind::U64) => wrap::<$params, (u64,)>(instance, name, at),
            }
        };
    }
    use Kind::*;
    match params.as_slice() {
        [] => giving!(()),
        [Str] => giving!((String,)),
        [Bool] => giving!((bool,)),
        [S32] => giving!((i32,)),
        [U32] => giving!((u32,)),
        [S64] => giving!((i64,)),
        [U64] => giving!((u64,)),
        [Str, Str] => giving!((String, String)),
        [S32, S32] => giving!((i32, i32)),
        [U32, U32] => giving!((u32, u32)),
        _ => return Ok(false),
    }?;
    Ok(true)
}

/// A value a typed forwarder takes, and the same as a `Val` (for a
/// provider that keeps its recent calls).
trait Arg: ComponentType + Lift + Lower + Send + Sync + 'static {
    fn val(&self) -> Val;
}

impl Arg for String {
    fn val(&self) -> Val {
        Val::String(self.clone())
    }
}

macro_rules! scalar_args {
    ($($ty:ty => $variant:ident),*) => {
        $(impl Arg for $ty {
            fn val(&self) -> Val {
                Val::$variant(*self)
            }
        })*
    };
}
scalar_args!(bool => Bool, i32 => S32, u32 => U32, i64 => S64, u64 => U64);

/// The arguments of a typed forwarder.
trait Args: ComponentNamedList + Lift + Lower + Send + Sync + 'static {
    fn vals(&self) -> Vec<Val>;
}

impl Args for () {
    fn vals(&self) -> Vec<Val> {
        Vec::new()
    }
}

impl<A: Arg> Args for (A,) {
    fn vals(&self) -> Vec<Val> {
        vec![self.0.val()]
    }
}

impl<A: Arg, B: Arg> Args for (A, B) {
    fn vals(&self) -> Vec<Val> {
        vec![self.0.val(), self.1.val()]
    }
}

/// Defines `name` as a host function taking `P` and giving `R`, forwarded
/// typed to the provider.
fn wrap<P, R>(
    instance: &mut LinkerInstance<'_, PluginState>,
    name: &str,
    at: Position,
) -> wasmtime::Result<()>
where
    P: Args,
    R: ComponentNamedList + Lift + Lower + Send + Sync + 'static,
{
    instance.func_wrap(
        name,
        move |store: StoreContextMut<'_, PluginState>, params: P| {
            let imports = store.data().imports()?;
            let mut call = Forward::<P, R> {
                params: Some(params),
                answer: None,
            };
            imports.call_typed(at.import, at.function, &mut call)?;
            call.answer
                .ok_or_else(|| wasmtime::format_err!("the provider's call gave no answer"))
        },
    )
}

/// One typed forwarded call: its arguments until the call takes them, then
/// its answer.
struct Forward<P, R> {
    params: Option<P>,
    answer: Option<R>,
}

impl<P, R> TypedCall for Forward<P, R>
where
    P: Args,
    R: ComponentNamedList + Lift + Lower + Send + Sync + 'static,
{
    fn args(&self) -> Vec<Val> {
        self.params.as_ref().map(Args::vals).unwrap_or_default()
    }

    unsafe fn call(&mut self, func: Func, store: &mut Store<PluginState>) -> wasmtime::Result<()> {
        let params = self
            .params
            .take()
            .ok_or_else(|| wasmtime::format_err!("a forwarded call was made twice"))?;
        // SAFETY: `func` has the types the dependent imports (this method's
        // contract), and `P` and `R` are those types: `link_typed` chose
        // them from the import's type, one Rust type per WIT type.
        let typed = unsafe { TypedFunc::<P, R>::new_unchecked(func) };
        self.answer = Some(typed.call(&mut *store, params)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::component::types::ComponentItem;
    use wasmtime::component::Component;
    use wasmtime::Engine;

    use super::*;

    /// Imports of every shape a typed forwarder takes, and of some it does
    /// not.
    const SHAPES: &str = r#"(component
        (import "t:s/typed@1.0.0" (instance
            (export "none" (func))
            (export "str" (func (param "a" string) (result string)))
            (export "flag" (func (param "a" bool) (result bool)))
            (export "wide" (func (param "a" s64) (result u64)))
            (export "count" (func (result u32)))
            (export "pair" (func (param "a" string) (param "b" string)))
            (export "ints" (func (param "a" s32) (param "b" s32) (result s32)))
            (export "uints" (func (param "a" u32) (param "b" u32) (result u32)))))
        (import "t:s/dynamic@1.0.0" (instance
            (export "mixed" (func (param "a" u32) (param "b" u64) (result u32)))
            (export "bytes" (func (param "a" (list u8))))
            (export "float" (func (param "a" f64) (result f64)))
            (export "three" (func (param "a" u32) (param "b" u32) (param "c" u32)))
            (export "two-back" (func (result (tuple u32 u32))))))
    )"#;

    #[test]
    fn common_shapes_are_linked_typed_and_the_rest_dynamic() {
        let engine = Engine::default();
        let component = Component::new(&engine, wat::parse_str(SHAPES).unwrap()).unwrap();
        let mut linker = Linker::<PluginState>::new(&engine);
        let mut typed = Vec::new();
        for (name, import) in component.component_type().imports(&engine) {
            let ComponentItem::ComponentInstance(instance) = import.ty else {
                panic!("{name} is not an instance");
            };
            let mut linking = linker.instance(name).unwrap();
            for (function, item) in instance.exports(&engine) {
                let ComponentItem::ComponentFunc(ty) = item.ty else {
                    panic!("{function} is not a function");
                };
                let at = Position {
                    import: 0,
                    function: 0,
                };
                if link_typed(&mut linking, function, at, &ty).unwrap() {
                    typed.push(function.to_string());
                } else {
                    link_dynamic(&mut linking, function, at).unwrap();
                }
            }
        }
        typed.sort();
        let expected = [
            "count", "flag", "ints", "none", "pair", "str", "uints", "wide",
        ];
        assert_eq!(typed, expected);
        // wasmtime checks each host function against the type imported.
        linker.instantiate_pre(&component).unwrap();
    }

    #[test]
    fn typed_arguments_give_the_values_they_hold() {
        assert!(().vals().is_empty());
        assert_eq!(("hi".to_string(),).vals(), [Val::String("hi".into())]);
        assert_eq!((true,).vals(), [Val::Bool(true)]);
        assert_eq!((-3i32, 4i32).vals(), [Val::S32(-3), Val::S32(4)]);
        assert_eq!((5u32, 6u32).vals(), [Val::U32(5), Val::U32(6)]);
        assert_eq!((-7i64,).vals(), [Val::S64(-7)]);
        assert_eq!((u64::MAX,).vals(), [Val::U64(u64::MAX)]);
        let pair = ("a".to_string(), "b".to_string()).vals();
        assert_eq!(pair, [Val::String("a".into()), Val::String("b".into())]);
    }
}
