//! The plugin author's guide (`docs/plugins.md`) cannot go stale: each of
//! its code blocks is an excerpt of a file the tests build (`file=PATH`), a
//! script that is run here (`run`), or what such a script prints last
//! (`output`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Each fenced block: its info string and its text.
fn blocks(markdown: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in markdown.lines() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => open = Some((info.trim().to_string(), String::new())),
            (Some(_), Some(_)) => found.push(open.take().unwrap()),
            (Some((_, text)), None) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "an unclosed block");
    found
}

/// Runs a `run` block in a fresh directory, with `hotslot` on the PATH and
/// the Python and JavaScript tools `make plugins` installed.
fn run(script: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_hotslot")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let root = root();
    let out = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir.path())
        .env("PATH", path)
        .env("HOTSLOT_REPO", &root)
        .env(
            "COMPONENTIZE_PY",
            root.join(".tools/python/bin/componentize-py"),
        )
        .env(
            "COMPONENTIZE_JS",
            root.join(".tools/node/node_modules/.bin/componentize-js"),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the guide's script failed:\n{script}\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn every_block_of_the_guide_is_built_or_run() {
    let guide = std::fs::read_to_string(root().join("docs/plugins.md")).unwrap();
    let blocks = blocks(&guide);
    assert!(blocks.len() > 10, "the guide has its examples");
    let mut last_output: Option<String> = None;
    for (info, text) in blocks {
        if let Some(file) = info
            .split_whitespace()
            .find_map(|w| w.strip_prefix("file="))
        {
            let source = std::fs::read_to_string(root().join(file))
                .unwrap_or_else(|e| panic!("the guide quotes {file}: {e}"));
            assert!(
                source.contains(text.trim_end()),
                "the guide's excerpt of {file} is not in it:\n{text}"
            );
        } else if info.split_whitespace().any(|w| w == "run") {
            last_output = Some(run(&text));
        } else if info.split_whitespace().any(|w| w == "output") {
            let printed = last_output
                .take()
                .expect("an output block follows a run block");
            assert!(
                printed.trim_end().ends_with(text.trim_end()),
                "the guide says the script prints\n{text}\nbut it printed\n{printed}"
            );
        } else {
            panic!("a block the tests neither build nor run: ```{info}\n{text}```");
        }
    }
}
