//! A plain text filter: drops lines with banned words, applies the case mode,
//! cuts long lines.
wit_bindgen::generate!({ path: "../../../wit/text", world: "text-filter" });

use exports::demo::text::filter::{CaseMode, Guest, Options, Scope, TextStats, Verdict};

struct Basic;

impl Guest for Basic {
    fn describe() -> (String, String) {
        (
            "basic".into(),
            "drops banned lines, applies case, cuts long lines".into(),
        )
    }

    fn check(line: String, opts: Options) -> Result<Verdict, String> {
        if line.is_empty() {
            return Err("empty line".into());
        }
        if line.trim().is_empty() && !opts.scope.contains(Scope::BLANK) {
            return Ok(Verdict::Keep);
        }
        if line.starts_with('#') && !opts.scope.contains(Scope::COMMENTS) {
            return Ok(Verdict::Keep);
        }
        if let Some(word) = opts.banned.iter().find(|w| line.contains(w.as_str())) {
            return Ok(Verdict::Drop(format!("banned word: {word}")));
        }
        let mut out = match opts.case_mode {
            CaseMode::Keep => line.clone(),
            CaseMode::Upper => line.to_uppercase(),
            CaseMode::Lower => line.to_lowercase(),
        };
        if let Some(max) = opts.max_len {
            out = out.chars().take(max as usize).collect();
        }
        Ok(if out == line {
            Verdict::Keep
        } else {
            Verdict::Rewrite(out)
        })
    }

    fn apply(lines: Vec<String>, opts: Options) -> Vec<String> {
        lines
            .into_iter()
            .filter_map(|line| match Self::check(line.clone(), opts.clone()) {
                Ok(Verdict::Keep) | Err(_) => Some(line),
                Ok(Verdict::Rewrite(new)) => Some(new),
                Ok(Verdict::Drop(_)) => None,
            })
            .collect()
    }

    fn stats(text: String) -> TextStats {
        TextStats {
            lines: text.lines().count() as u32,
            words: text.split_whitespace().count() as u32,
            longest: text
                .split_whitespace()
                .fold(None::<&str>, |best, w| match best {
                    Some(b) if b.chars().count() >= w.chars().count() => Some(b),
                    _ => Some(w),
                })
                .map(str::to_string),
        }
    }
}

export!(Basic);
