//! A greeter that prints to its standard output and error on every call:
//! the host must keep that off its own standard output.
wit_bindgen::generate!({ path: "../../wit/greeter", world: "greeter" });

struct Chatty;

impl exports::demo::greeter::greet::Guest for Chatty {
    fn hello(name: String) -> String {
        println!("chatty stdout: greeting {name}");
        eprintln!("chatty stderr: greeting {name}");
        format!("chatty: hi, {name}")
    }
}

export!(Chatty);
