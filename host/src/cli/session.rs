//! Answering request lines against a registry: what `hotslot watch` does with
//! each line it reads, and what `hotslot call` does with its one request.

use std::io::{self, BufRead, IsTerminal, Write};

use crate::cli::request::{render, CallRequest};
use crate::error::{one_line, Error};
use crate::registry::Registry;

/// The answer to one line: the lines to print (none for a blank line).
/// Failures are one line starting with `error: `.
pub fn answer(registry: &Registry, line: &str) -> Vec<String> {
    let line = line.trim();
    if line.is_empty() {
        return Vec::new();
    }
    if line == "list" {
        return list(registry);
    }
    match call(registry, line) {
        Ok(answer) => vec![answer],
        Err(message) => vec![format!("error: {}", one_line(&message))],
    }
}

/// Makes one call from a request line and renders the answer in WAVE.
pub fn call(registry: &Registry, line: &str) -> Result<String, String> {
    let request = CallRequest::parse(line)?;
    let handle = registry
        .first_implementation(request.interface())
        .map_err(|e| describe(&e))?;
    let exported = handle
        .exported()
        .ok_or_else(|| format!("no implementation of {} is loaded", request.interface()))?;
    let function = exported.function(request.function()).ok_or_else(|| {
        let names: Vec<&str> = exported.functions().iter().map(|f| f.name()).collect();
        format!(
            "{} has no function `{}` (it has: {})",
            exported.name(),
            request.function(),
            names.join(", ")
        )
    })?;
    let args = request.arguments(function)?;
    let results = handle
        .call(request.function(), &args)
        .map_err(|e| describe(&e))?;
    render(&results)
}

fn describe(error: &Error) -> String {
    error.to_string()
}

/// `list`: one line per implementation, then `end`.
fn list(registry: &Registry) -> Vec<String> {
    let mut lines: Vec<String> = registry
        .list()
        .into_iter()
        .map(|i| format!("{} {} {}", i.interface, i.name, i.generation))
        .collect();
    lines.push("end".to_string());
    lines
}

/// Reads request lines until end of input, answering each at once. On a
/// terminal, with a prompt, line editing and history.
pub fn serve(registry: &Registry) -> io::Result<()> {
    if io::stdin().is_terminal() && io::stdout().is_terminal() {
        return serve_terminal(registry);
    }
    let stdin = io::stdin();
    let stdout = io::stdout();
    for line in stdin.lock().lines() {
        let line = line?;
        let answer = answer(registry, &line);
        let mut out = stdout.lock();
        for answer_line in answer {
            writeln!(out, "{answer_line}")?;
        }
        out.flush()?;
    }
    Ok(())
}

fn serve_terminal(registry: &Registry) -> io::Result<()> {
    use rustyline::error::ReadlineError;
    let mut editor = rustyline::DefaultEditor::new().map_err(io::Error::other)?;
    loop {
        match editor.readline("hotslot> ") {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                for answer_line in answer(registry, &line) {
                    println!("{answer_line}");
                }
            }
            Err(ReadlineError::Interrupted | ReadlineError::Eof) => return Ok(()),
            Err(e) => return Err(io::Error::other(e)),
        }
    }
}
