//! `clinivox chat`: the real conversation and store, driven by text lines
//! instead of speech, for tests and for clinic staff trying the flows
//! before going live. A line is what the caller says, except:
//! `#dtmf 1 4 0 3` (or `*1403`) presses keys, `#silence` is a silent turn,
//! `#hangup` hangs up. Replies are printed as `assistant: …`. With
//! `--outreach <appointment id>` the clinic calls the patient instead (the
//! escalation of an unanswered reminder), and the result is printed last.

use std::io::{BufRead, Write};

use chrono::{DateTime, Utc};

use super::action::{Action, Patience};
use super::context::Context;
use super::driver::Session;
use super::outreach::{Outreach, OutreachResult};
use crate::store::Store;

/// One line of chat input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatLine {
    Say(String),
    Keys(String),
    Silence,
    Hangup,
    Nothing,
}

impl ChatLine {
    pub fn parse(line: &str) -> ChatLine {
        let line = line.trim();
        if line.is_empty() {
            ChatLine::Nothing
        } else if let Some(keys) = line.strip_prefix("#dtmf") {
            ChatLine::Keys(keys.chars().filter(|c| !c.is_whitespace()).collect())
        } else if let Some(keys) = line.strip_prefix('*') {
            ChatLine::Keys(keys.chars().filter(|c| !c.is_whitespace()).collect())
        } else if line == "#silence" {
            ChatLine::Silence
        } else if line == "#hangup" {
            ChatLine::Hangup
        } else {
            ChatLine::Say(line.to_string())
        }
    }
}

/// An outbound call's result as the job records it ("confirmed", "accepted"…).
pub fn outreach_result_str(r: OutreachResult) -> &'static str {
    match r {
        OutreachResult::Reminder(c) => c.as_str(),
        OutreachResult::Offer(o) => o.as_str(),
    }
}

/// How an action is shown in the chat.
pub fn render(action: &Action) -> Option<String> {
    match action {
        Action::Say { text, .. } => Some(format!("assistant: {text}")),
        Action::Transfer { group, summary } => Some(format!("[transfer to {}] {summary}", group.as_str())),
        Action::Hangup => Some("[hangup]".into()),
        Action::ExpectLonger { reason: Patience::DateOfBirth } => Some("[listening longer: date of birth]".into()),
        Action::ExpectLonger { reason: Patience::Name } => Some("[listening longer: name]".into()),
        Action::Store(_) => None,
    }
}

/// Runs one call over `input` lines. `clock` gives the `now` of each event
/// (the store sees the same time).
pub async fn run(
    store: Store,
    ctx: Context,
    clock: impl Fn() -> DateTime<Utc>,
    input: impl BufRead,
    output: impl Write,
) -> std::io::Result<()> {
    let (session, first) = Session::start(store, ctx, clock()).await;
    converse(session, first, clock, input, output).await
}

/// Like [`run`], but the clinic calls: an outbound conversation for
/// `outreach` (`clinivox chat --outreach <appointment id>`).
pub async fn run_outreach(
    store: Store,
    ctx: Context,
    outreach: Outreach,
    clock: impl Fn() -> DateTime<Utc>,
    input: impl BufRead,
    output: impl Write,
) -> std::io::Result<()> {
    let (session, first) = Session::start_outreach(store, ctx, clock(), outreach).await;
    converse(session, first, clock, input, output).await
}

async fn converse(
    mut session: Session,
    first: Vec<Action>,
    clock: impl Fn() -> DateTime<Utc>,
    input: impl BufRead,
    mut output: impl Write,
) -> std::io::Result<()> {
    print(&mut output, &first)?;
    for line in input.lines() {
        if session.conversation().is_ended() {
            break;
        }
        let now = clock();
        let out = match ChatLine::parse(&line?) {
            ChatLine::Say(text) => session.utterance(now, &text, 1.0).await,
            ChatLine::Keys(keys) => session.dtmf(now, &keys).await,
            ChatLine::Silence => session.silence(now).await,
            ChatLine::Hangup => session.hangup(now).await,
            ChatLine::Nothing => continue,
        };
        print(&mut output, &out)?;
    }
    if !session.conversation().is_ended() {
        session.hangup(clock()).await;
    }
    if let Some(result) = session.conversation().outreach_result() {
        writeln!(output, "[outreach result: {}]", outreach_result_str(result))?;
    }
    Ok(())
}

fn print(output: &mut impl Write, actions: &[Action]) -> std::io::Result<()> {
    for a in actions {
        if let Some(line) = render(a) {
            writeln!(output, "{line}")?;
        }
    }
    output.flush()
}

/// `clinivox nlu`: one utterance understood with the clinic's vocabulary,
/// as one JSON line. `now` is clinic-local.
pub fn understand_json(
    config: &crate::config::Config,
    prompts_dir: &std::path::Path,
    lang: &str,
    now: chrono::NaiveDateTime,
    text: &str,
) -> Result<String, super::nlu::LexiconError> {
    let lexicon = super::nlu::Lexicon::load(prompts_dir, lang)?;
    let vocabulary = super::nlu::Vocabulary::from_config(config);
    let u = super::nlu::understand(text, &lexicon, &vocabulary, now);
    Ok(serde_json::to_string(&u).unwrap_or_else(|_| "{}".into()))
}

/// Where `clinivox chat` gets its time: the wall clock, or a given start
/// that then moves on with the wall clock.
pub fn chat_clock(start: Option<DateTime<Utc>>) -> impl Fn() -> DateTime<Utc> {
    let began = std::time::Instant::now();
    move || {
        let base = start.unwrap_or_else(Utc::now);
        let elapsed = if start.is_some() { began.elapsed() } else { std::time::Duration::ZERO };
        let t = base + chrono::Duration::from_std(elapsed).unwrap_or_default();
        // The store works in whole seconds.
        DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
    }
}
