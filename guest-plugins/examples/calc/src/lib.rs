//! A component that exports two interfaces: `demo:calc/math` (what the
//! benchmarks call) and `demo:greeter/greet`, so it can be registered for each.
wit_bindgen::generate!({
    inline: "
        package hotslot:calc-plugin;
        world calc {
            export demo:calc/math@1.0.0;
            export demo:greeter/greet@1.0.0;
        }
    ",
    path: ["../../../wit/calc", "../../../wit/greeter"],
    world: "hotslot:calc-plugin/calc",
});

struct Calc;

impl exports::demo::calc::math::Guest for Calc {
    fn add(a: i32, b: i32) -> i32 {
        a.wrapping_add(b)
    }
}

impl exports::demo::greeter::greet::Guest for Calc {
    fn hello(name: String) -> String {
        format!("calc: {name} has {} letters", name.chars().count())
    }
}

export!(Calc);
