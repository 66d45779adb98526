//! Dynamic calls on the richer text-filter interface: records, variants,
//! enums, flags, lists, options and results, and the errors for bad calls.

use hotslot::wasmtime::component::Val;
use hotslot::{Error, Registry};

use crate::common::{plugin, resource_maker};

const FILTER: &str = "demo:text/filter@1.2.0";

fn options(banned: &[&str], case_mode: &str, max_len: Option<u32>) -> Val {
    Val::Record(vec![
        ("case-mode".into(), Val::Enum(case_mode.into())),
        (
            "max-len".into(),
            Val::Option(max_len.map(|n| Box::new(Val::U32(n)))),
        ),
        (
            "banned".into(),
            Val::List(banned.iter().map(|w| Val::String((*w).into())).collect()),
        ),
        ("scope".into(), Val::Flags(vec!["comments".into()])),
    ])
}

fn registry_with_filters() -> Registry {
    let registry = Registry::new().unwrap();
    registry
        .add_implementation(
            "demo:text/filter@1.0.0",
            "basic",
            &plugin(&registry, "filter_basic"),
        )
        .unwrap();
    registry
        .add_implementation(FILTER, "shout", &plugin(&registry, "filter_shout"))
        .unwrap();
    registry
}

fn check(registry: &Registry, which: usize, line: &str, opts: Val) -> Val {
    let handles = registry.implementations(FILTER).unwrap();
    let mut answer = handles[which]
        .call("check", &[Val::String(line.into()), opts])
        .unwrap();
    answer.remove(0)
}

fn ok(payload: Val) -> Val {
    Val::Result(Ok(Some(Box::new(payload))))
}

#[test]
fn two_filters_answer_differently_through_rich_types() {
    let registry = registry_with_filters();
    let banned = options(&["darn"], "keep", None);
    assert_eq!(
        check(&registry, 0, "oh darn it", banned.clone()),
        ok(Val::Variant(
            "drop".into(),
            Some(Box::new(Val::String("banned word: darn".into())))
        ))
    );
    assert_eq!(
        check(&registry, 1, "oh darn it", banned),
        ok(Val::Variant(
            "rewrite".into(),
            Some(Box::new(Val::String("OH **** IT!".into())))
        ))
    );
    assert_eq!(
        check(&registry, 0, "Hello", options(&[], "upper", Some(3))),
        ok(Val::Variant(
            "rewrite".into(),
            Some(Box::new(Val::String("HEL".into())))
        ))
    );
    assert_eq!(
        check(&registry, 0, "fine", options(&[], "keep", None)),
        ok(Val::Variant("keep".into(), None))
    );
    // A WIT `err` is an answer, not a failure.
    assert_eq!(
        check(&registry, 0, "", options(&[], "keep", None)),
        Val::Result(Err(Some(Box::new(Val::String("empty line".into())))))
    );
}

#[test]
fn lists_records_and_tuples_come_back_whole() {
    let registry = registry_with_filters();
    let basic = registry.first_implementation(FILTER).unwrap();
    let lines = Val::List(
        ["keep me", "bad word", "Short"]
            .iter()
            .map(|s| Val::String((*s).into()))
            .collect(),
    );
    assert_eq!(
        basic
            .call("apply", &[lines, options(&["bad"], "lower", None)])
            .unwrap(),
        [Val::List(vec![
            Val::String("keep me".into()),
            Val::String("short".into())
        ])]
    );
    assert_eq!(
        basic
            .call("stats", &[Val::String("one two\nthree".into())])
            .unwrap(),
        [Val::Record(vec![
            ("lines".into(), Val::U32(2)),
            ("words".into(), Val::U32(3)),
            (
                "longest".into(),
                Val::Option(Some(Box::new(Val::String("three".into()))))
            ),
        ])]
    );
    assert_eq!(
        basic.call("describe", &[]).unwrap()[0],
        Val::Tuple(vec![
            Val::String("basic".into()),
            Val::String("drops banned lines, applies case, cuts long lines".into())
        ])
    );
}

#[test]
fn bad_calls_are_typed_errors_and_the_instance_keeps_serving() {
    let registry = registry_with_filters();
    let basic = registry.first_implementation(FILTER).unwrap();

    let err = basic.call("no-such", &[]).unwrap_err();
    assert!(matches!(err, Error::NoSuchFunction { .. }), "{err:?}");
    assert!(
        err.to_string().contains("no-such") && err.to_string().contains("check"),
        "{err}"
    );

    let err = basic.call("stats", &[]).unwrap_err();
    assert!(matches!(err, Error::BadArguments { .. }), "{err:?}");
    assert!(
        err.to_string().contains("expected 1 argument(s), got 0"),
        "{err}"
    );

    let err = basic.call("stats", &[Val::U32(3)]).unwrap_err();
    assert!(matches!(err, Error::BadArguments { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("argument `text`: expected string, got u32"),
        "{err}"
    );

    let bad_enum = options(&[], "sideways", None);
    let err = basic
        .call("check", &[Val::String("x".into()), bad_enum])
        .unwrap_err();
    assert!(err.to_string().contains("sideways"), "{err}");

    // A record short of a field, or with one of its own, names it.
    let Val::Record(fields) = options(&[], "keep", None) else {
        unreachable!()
    };
    let short = Val::Record(fields[..3].to_vec());
    let err = basic
        .call("check", &[Val::String("x".into()), short])
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("argument `opts`: missing field `scope: flags { blank, comments }`"),
        "{err}"
    );
    let mut long = fields.clone();
    long.push(("colour".into(), Val::U32(1)));
    let err = basic
        .call("check", &[Val::String("x".into()), Val::Record(long)])
        .unwrap_err();
    assert!(err.to_string().contains("no field `colour`"), "{err}");
    let mut twice = fields[..3].to_vec();
    twice.push(fields[0].clone());
    let err = basic
        .call("check", &[Val::String("x".into()), Val::Record(twice)])
        .unwrap_err();
    assert!(err.to_string().contains("missing field `scope"), "{err}");
    let mut twice = fields.clone();
    twice.push(fields[0].clone());
    let err = basic
        .call("check", &[Val::String("x".into()), Val::Record(twice)])
        .unwrap_err();
    assert!(
        err.to_string().contains("field `case-mode` given twice"),
        "{err}"
    );

    let answer = basic
        .call("stats", &[Val::String("still here".into())])
        .unwrap();
    assert!(matches!(&answer[0], Val::Record(_)));
}

#[test]
fn call_into_answers_into_the_callers_slots() {
    let registry = Registry::new().unwrap();
    registry
        .add_plugin("calc", &plugin(&registry, "calc"))
        .unwrap();
    let math = registry.implementation("demo:calc/math", "calc").unwrap();
    let mut sum = [Val::Bool(false)];
    for i in 0..3 {
        math.call_into("add", &[Val::S32(40), Val::S32(i)], &mut sum)
            .unwrap();
        assert_eq!(sum, [Val::S32(40 + i)]);
    }
    let err = math
        .call_into("add", &[Val::S32(1), Val::S32(2)], &mut [])
        .unwrap_err();
    assert!(matches!(err, Error::BadArguments { .. }), "{err:?}");
    assert!(err.to_string().contains("add"), "{err}");
    // Refused before the guest ran: the instance keeps serving.
    math.call_into("add", &[Val::S32(1), Val::S32(2)], &mut sum)
        .unwrap();
    assert_eq!(sum, [Val::S32(3)]);
}

/// A function that takes or gives a resource handle is refused to dynamic
/// calls, before it runs: a handle it answered stayed in the instance's
/// table, out of the caller's reach (one leaked per call), and the next
/// call may reach another instance. Its other functions answer, and in a
/// batch such functions are called.
#[test]
fn dynamic_calls_refuse_functions_that_pass_resources() {
    let component = resource_maker();
    let registry = Registry::new().unwrap();
    let plugin = registry.load_bytes("res.wasm", &component).unwrap();
    registry.add_plugin("res", &plugin).unwrap();
    let handle = registry.implementation("demo:res/r", "res").unwrap();
    for function in ["make", "take"] {
        let args: &[Val] = match function {
            "take" => &[Val::U32(1)],
            _ => &[],
        };
        match handle.call(function, args) {
            Err(Error::BadArguments { reason, .. }) => {
                assert!(reason.contains("resource handle"), "{reason}")
            }
            other => panic!("{function}: {other:?}"),
        }
    }
    assert_eq!(handle.call("seven", &[]).unwrap(), [Val::U32(7)]);
    // In a batch, which holds one instance, the handle one call answers
    // goes to the next.
    let taken = handle
        .batch(|batch| {
            let made = batch.call("make", &[])?;
            batch.call("take", &made)
        })
        .unwrap();
    assert_eq!(taken.unwrap(), [Val::U32(9)]);
}
