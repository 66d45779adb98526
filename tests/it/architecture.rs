//! The README's module table against the code: which module of `host/src`
//! uses which, and that none uses one listed after it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Module name -> the modules of ours it names as `crate::x`, from code
/// (doc comments and `$crate` in macros left out).
fn uses_in_code() -> BTreeMap<String, BTreeSet<String>> {
    let src = root().join("host/src");
    let mut found = BTreeMap::new();
    let mut files: Vec<_> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.extend(
        std::fs::read_dir(src.join("cli"))
            .unwrap()
            .map(|e| e.unwrap().path()),
    );
    for file in files
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "rs"))
    {
        let stem = file.file_stem().unwrap().to_str().unwrap().to_string();
        let module = if file.parent().unwrap().ends_with("cli") {
            "cli".to_string()
        } else {
            stem
        };
        if ["lib", "main"].contains(&module.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let uses: &mut BTreeSet<String> = found.entry(module.clone()).or_default();
        for line in text.lines().map(str::trim).filter(|l| !l.starts_with("//")) {
            let mut rest = line;
            while let Some(at) = rest.find("crate::") {
                let before = rest[..at].chars().last();
                let name: String = rest[at + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if before != Some('$') && !name.is_empty() && name != module {
                    uses.insert(name);
                }
                rest = &rest[at + 7..];
            }
        }
    }
    found
}

/// The README's table, in its order: (module, uses).
fn readme_table() -> Vec<(String, BTreeSet<String>)> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme
        .split("### Modules of `host/src`")
        .nth(1)
        .expect("README has the modules section");
    let tick = |cell: &str| -> Vec<String> {
        cell.split(',')
            .map(|c| c.trim().trim_matches('`').to_string())
            .filter(|c| !c.is_empty())
            .collect()
    };
    section
        .lines()
        .skip_while(|l| !l.starts_with("| module"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            let cells: Vec<&str> = row.trim_matches('|').split('|').collect();
            let module = tick(cells[0]).remove(0);
            (module, tick(cells[2]).into_iter().collect())
        })
        .collect()
}

#[test]
fn the_readme_says_which_module_uses_which() {
    let code = uses_in_code();
    let table = readme_table();
    let documented: BTreeMap<String, BTreeSet<String>> = table.iter().cloned().collect();
    assert_eq!(
        documented.keys().collect::<Vec<_>>(),
        code.keys().collect::<Vec<_>>(),
        "every module, and only those, in the README"
    );
    for (module, uses) in &code {
        assert_eq!(
            &documented[module], uses,
            "README's `uses` for `{module}` differs from the code"
        );
    }
}

#[test]
fn no_module_uses_one_above_it() {
    let table = readme_table();
    for (position, (module, uses)) in table.iter().enumerate() {
        for used in uses {
            let below = table[..position].iter().any(|(m, _)| m == used);
            assert!(
                below,
                "`{module}` uses `{used}`, which is not listed before it"
            );
        }
    }
}
