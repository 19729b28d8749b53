//! `clinivox bench conversation`: how long understanding one utterance takes
//! (every line of the NLU tables in `tests/nlu/`, many rounds, with the demo
//! clinic's vocabulary), and how long a whole booking call takes through
//! the real driver and store — split into the engine's own time (state
//! machine, NLU, wording) and the time spent waiting on the store.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, NaiveDateTime, Utc};

use super::percentile;
use crate::conversation::driver::Session;
use crate::conversation::nlu::{understand, Vocabulary};
use crate::conversation::{Action, Context, Direction, Language};
use crate::phone::E164;
use crate::store::Store;
use crate::testing;

/// Passes over each NLU table.
const NLU_ROUNDS: usize = 100;
/// Booking calls per engine (each books one more dermatology slot).
const CALLS: usize = 30;

/// The caller's side of the measured booking call (María, demo clinic).
const BOOKING: [&str; 5] =
    ["quiero una cita con el dermatólogo lo antes posible", "14 de marzo de 1948", "la primera", "sí", "no, gracias"];

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Language(#[from] crate::conversation::LanguageError),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("the benchmark call did not book (replies: {0})")]
    NotBooked(String),
}

pub async fn run(prompts: &Path, tables: &Path, postgres: Option<&str>) -> Result<(), BenchError> {
    let config = testing::demo_config();
    let vocabulary = Vocabulary::from_config(&config);
    println!("understanding one utterance ({NLU_ROUNDS} rounds over tests/nlu/<lang>.tsv)");
    println!("{:<6} {:>10} {:>12} {:>12}", "lang", "utterances", "median µs", "p99 µs");
    for lang in ["es", "en", "it"] {
        let language = Language::load(prompts, lang)?;
        let cases = table(&tables.join(format!("{lang}.tsv")))?;
        let mut samples = Vec::with_capacity(cases.len() * NLU_ROUNDS);
        for _ in 0..NLU_ROUNDS {
            for (text, now) in &cases {
                let t = Instant::now();
                std::hint::black_box(understand(text, &language.lexicon, &vocabulary, *now));
                samples.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
        samples.sort_by(f64::total_cmp);
        println!("{lang:<6} {:>10} {:>12.1} {:>12.1}", cases.len(), percentile(&samples, 50.0), percentile(&samples, 99.0));
    }

    println!();
    println!("one booking call, {} caller turns, {CALLS} calls per engine (time per call)", BOOKING.len());
    println!("{:<10} {:>14} {:>14} {:>14} {:>14}", "backend", "total p50 ms", "store p50 ms", "engine p50 ms", "engine p99 ms");
    let ctx = Context {
        language: Arc::new(Language::load(prompts, "es")?),
        vocabulary: Arc::new(vocabulary),
        config: Arc::new(config.clone()),
        direction: Direction::Inbound,
        caller: E164::parse("+34600111222").ok(),
    };
    let dir = tempfile::tempdir()?;
    let sqlite = testing::sqlite_store(dir.path(), &config).await?;
    calls("sqlite", sqlite, &ctx).await?;
    if let Some(url) = postgres {
        let pg = testing::postgres_store_at(url, &config, 4).await?;
        calls("postgres", pg, &ctx).await?;
    }
    Ok(())
}

async fn calls(backend: &str, store: Store, ctx: &Context) -> Result<(), BenchError> {
    // Monday 23 November 2026, 09:00 in Madrid, as in the tests.
    let start: DateTime<Utc> = "2026-11-23T08:00:00Z".parse().expect("valid timestamp");
    crate::demo::seed(&store, start).await?;
    let (mut total, mut in_store, mut engine) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..CALLS {
        let mut now = start + Duration::minutes(i as i64);
        let t = Instant::now();
        let (mut session, _) = Session::start(store.clone(), ctx.clone(), now).await;
        let mut last = Vec::new();
        let mut booked = false;
        for line in BOOKING {
            now += Duration::seconds(5);
            last = session.utterance(now, line, 0.9).await;
            booked |= last.iter().any(|a| matches!(a, Action::Say { text, .. } if text.starts_with("Hecho")));
        }
        let elapsed = t.elapsed().as_secs_f64() * 1e3;
        if !booked {
            return Err(BenchError::NotBooked(format!("{last:?}")));
        }
        let store_ms = session.store_time().as_secs_f64() * 1e3;
        total.push(elapsed);
        in_store.push(store_ms);
        engine.push(elapsed - store_ms);
    }
    for v in [&mut total, &mut in_store, &mut engine] {
        v.sort_by(f64::total_cmp);
    }
    println!(
        "{backend:<10} {:>14.2} {:>14.2} {:>14.3} {:>14.3}",
        percentile(&total, 50.0),
        percentile(&in_store, 50.0),
        percentile(&engine, 50.0),
        percentile(&engine, 99.0)
    );
    Ok(())
}

/// (text, clinic-local now) of each line of an NLU table.
fn table(path: &Path) -> Result<Vec<(String, NaiveDateTime)>, std::io::Error> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let mut cols = l.split('\t');
            let text = cols.next()?.to_string();
            let now = NaiveDateTime::parse_from_str(cols.next()?, "%Y-%m-%dT%H:%M:%S").ok()?;
            Some((text, now))
        })
        .collect())
}
