//! A second text filter that answers differently from filter-basic: it shouts
//! every line and masks banned words instead of dropping the line.
wit_bindgen::generate!({ path: "../../wit/text", world: "text-filter" });

use exports::demo::text::filter::{Guest, Options, TextStats, Verdict};

struct Shout;

impl Guest for Shout {
    fn describe() -> (String, String) {
        ("shout".into(), "shouts every line, masks banned words".into())
    }

    fn check(line: String, opts: Options) -> Result<Verdict, String> {
        if line.trim().is_empty() {
            return Err("nothing to shout".into());
        }
        let mut out = line.to_uppercase();
        for word in &opts.banned {
            out = out.replace(&word.to_uppercase(), &"*".repeat(word.chars().count()));
        }
        out.push('!');
        Ok(Verdict::Rewrite(out))
    }

    fn apply(lines: Vec<String>, opts: Options) -> Vec<String> {
        lines
            .into_iter()
            .map(|line| match Self::check(line.clone(), opts.clone()) {
                Ok(Verdict::Rewrite(new)) => new,
                _ => line,
            })
            .collect()
    }

    fn stats(text: String) -> TextStats {
        TextStats {
            lines: text.lines().count() as u32,
            words: text.split_whitespace().count() as u32,
            longest: None,
        }
    }
}

export!(Shout);
