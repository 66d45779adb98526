//! The `hotslot` binary; everything lives in [`hotslot::cli`].

fn main() -> std::process::ExitCode {
    hotslot::cli::main()
}
