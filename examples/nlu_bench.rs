//! Micro-benchmark: `cargo run --release --example nlu_bench`.
//! Runs every table utterance many times per language and prints the
//! median and p99 latency of one `understand` call.

use std::path::PathBuf;
use std::time::Instant;

use clinivox::conversation::nlu::{understand, Lexicon, Vocabulary};

const ROUNDS: usize = 200;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let vocab: Vocabulary = toml::from_str(&std::fs::read_to_string(root.join("tests/nlu/vocab.toml"))?)?;
    println!("{:<6} {:>10} {:>12} {:>12}", "lang", "utterances", "median_us", "p99_us");
    for lang in ["es", "en", "it"] {
        let lex = Lexicon::load(&root.join("prompts"), lang)?;
        let table = std::fs::read_to_string(root.join(format!("tests/nlu/{lang}.tsv")))?;
        let cases: Vec<(String, chrono::NaiveDateTime)> = table
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let mut c = l.split('\t');
                let text = c.next()?.to_string();
                let now = chrono::NaiveDateTime::parse_from_str(c.next()?, "%Y-%m-%dT%H:%M:%S").ok()?;
                Some((text, now))
            })
            .collect();
        let mut samples = Vec::with_capacity(cases.len() * ROUNDS);
        for _ in 0..ROUNDS {
            for (text, now) in &cases {
                let t = Instant::now();
                let u = understand(text, &lex, &vocab, *now);
                samples.push(t.elapsed().as_secs_f64() * 1e6);
                std::hint::black_box(u);
            }
        }
        samples.sort_by(|a, b| a.total_cmp(b));
        let pick = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
        println!("{:<6} {:>10} {:>12.1} {:>12.1}", lang, cases.len(), pick(0.5), pick(0.99));
    }
    Ok(())
}
