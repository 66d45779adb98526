//! `impl_a` of the seed: a greeter that answers in English.
wit_bindgen::generate!({ path: "../../../wit/greeter", world: "greeter" });

struct GreeterA;

impl exports::demo::greeter::greet::Guest for GreeterA {
    fn hello(name: String) -> String {
        format!("a: hello, {name}")
    }
}

export!(GreeterA);
