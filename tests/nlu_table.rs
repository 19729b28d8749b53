//! Table-driven accuracy test over `tests/nlu/<lang>.tsv`.
//!
//! Each line: `text<TAB>now<TAB>expected JSON` (`#` starts a comment).
//! The whole `Understanding` is compared, so an extra wrong slot fails.

use std::path::{Path, PathBuf};

use clinivox::conversation::nlu::{understand, Lexicon, Vocabulary};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn vocab() -> Vocabulary {
    let text = std::fs::read_to_string(root().join("tests/nlu/vocab.toml")).expect("vocab file present");
    toml::from_str(&text).expect("vocab file is valid")
}

struct Case {
    line: usize,
    text: String,
    now: chrono::NaiveDateTime,
    expected: serde_json::Value,
}

fn cases(lang: &str) -> Vec<Case> {
    let path = root().join(format!("tests/nlu/{lang}.tsv"));
    let text = std::fs::read_to_string(&path).expect("table present");
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 3, "{}:{}: expected 3 tab-separated columns", path.display(), n + 1);
        let now = chrono::NaiveDateTime::parse_from_str(cols[1], "%Y-%m-%dT%H:%M:%S")
            .unwrap_or_else(|e| panic!("{}:{}: bad now: {e}", path.display(), n + 1));
        let expected = serde_json::from_str(cols[2]).unwrap_or_else(|e| panic!("{}:{}: bad json: {e}", path.display(), n + 1));
        out.push(Case { line: n + 1, text: cols[0].to_string(), now, expected });
    }
    out
}

#[test]
fn table_accuracy() {
    let vocab = vocab();
    let mut failures = Vec::new();
    let mut total = 0;
    for lang in ["es", "en", "it", "pt"] {
        let lex = match Lexicon::load(&root().join("prompts"), lang) {
            Ok(l) => l,
            Err(e) => {
                failures.push(format!("{lang}: {e}"));
                continue;
            }
        };
        let cases = cases(lang);
        let mut ok = 0;
        for c in &cases {
            let got = serde_json::to_value(understand(&c.text, &lex, &vocab, c.now)).expect("serializable");
            if got == c.expected {
                ok += 1;
            } else {
                failures.push(format!("{lang}:{} {:?}\n   expected {}\n   got      {}", c.line, c.text, c.expected, got));
            }
        }
        total += cases.len();
        println!("{lang}: {ok}/{} correct ({:.1}%)", cases.len(), 100.0 * ok as f64 / cases.len().max(1) as f64);
    }
    println!("total cases: {total}");
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn exact_json_for_reference_case() {
    let lex = Lexicon::load(Path::new(&root().join("prompts")), "es").expect("lexicon loads");
    let now = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).and_then(|d| d.and_hms_opt(9, 0, 0)).expect("valid date");
    let u = understand("quiero una cita con el dermatólogo mañana por la mañana", &lex, &vocab(), now);
    assert_eq!(
        serde_json::to_string(&u).expect("serializable"),
        r#"{"intent":"book","slots":{"specialty":"dermatology","date":"2026-11-24","part_of_day":"morning"}}"#
    );
}

/// Keys the development sets score: every one of them is compared.
const DATE_KEYS: [&str; 7] = ["date", "date_to", "date_conflict", "time", "time_after", "time_before", "date_of_birth"];

/// Share of `tests/nlu/dates_<lang>.tsv` understood right, with the misses.
fn dev_score(lang: &str, lex: &Lexicon, vocab: &Vocabulary) -> (usize, usize, Vec<String>) {
    let cases = cases(&format!("dates_{lang}"));
    let mut misses = Vec::new();
    for c in &cases {
        let got = serde_json::to_value(understand(&c.text, lex, vocab, c.now)).expect("serializable");
        let slots = &got["slots"];
        let mut keys: Vec<&str> = DATE_KEYS.to_vec();
        if c.expected.get("part_of_day").is_some() {
            keys.push("part_of_day");
        }
        let wrong = keys.iter().any(|k| slots.get(*k) != c.expected.get(*k));
        if wrong {
            misses.push(format!("{lang}:{} {:?}\n   expected {}\n   got      {}", c.line, c.text, c.expected, slots));
        }
    }
    (cases.len() - misses.len(), cases.len(), misses)
}

/// Dates and times as callers say them: at least 90 % per language.
#[test]
fn dates_dev_set() {
    let vocab = vocab();
    let mut low = Vec::new();
    for lang in ["es", "en", "it", "pt"] {
        let lex = Lexicon::load(&root().join("prompts"), lang).expect("lexicon loads");
        let (ok, n, misses) = dev_score(lang, &lex, &vocab);
        let pct = 100.0 * ok as f64 / n.max(1) as f64;
        println!("dates {lang}: {ok}/{n} ({pct:.1}%)");
        for m in &misses {
            println!("{m}");
        }
        if pct < 90.0 {
            low.push(format!("{lang} {pct:.1}%"));
        }
    }
    assert!(low.is_empty(), "below 90%: {}", low.join(", "));
}
