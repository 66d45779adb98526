//! `impl_b` of the seed: a greeter that answers differently from greeter-a,
//! so a test can tell which one served a call.
wit_bindgen::generate!({ path: "../../../wit/greeter", world: "greeter" });

struct GreeterB;

impl exports::demo::greeter::greet::Guest for GreeterB {
    fn hello(name: String) -> String {
        format!("b: bonjour, {name}")
    }
}

export!(GreeterB);
