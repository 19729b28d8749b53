//! Rule- and lexicon-based understanding of caller utterances.
//!
//! Pipeline: normalise → drop fillers/greetings → spot intent phrases →
//! extract slots left to right, each extractor marking the tokens it used
//! so that one word never feeds two slots ("mañana por la mañana").
//! All wording lives in `prompts/<lang>.toml` (`[nlu]` table).

mod dates;
mod entities;
mod intent;
mod lexicon;
mod matcher;
mod normalize;
mod numbers;
mod times;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use lexicon::{Lexicon, LexiconError};

/// The clinic's own vocabulary, from its configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Vocabulary {
    #[serde(default)]
    pub specialties: Vec<SpecialtyTerm>,
    #[serde(default)]
    pub providers: Vec<ProviderTerm>,
    /// The clinic's opening hours by weekday ("monday" → ["09:00-14:00"]),
    /// for reading an hour said without a part of day: "a las cinco" is
    /// 17:00 where the clinic opens 9–20, 05:00 nowhere.
    #[serde(default)]
    pub opening_hours: BTreeMap<String, Vec<String>>,
    /// "el próximo viernes" / "next Friday" is the Friday of next week
    /// while this week's is still ahead (`[clinic] next_weekday =
    /// "following_week"`); by default it is the coming one. "Este
    /// viernes", "el viernes" and "el viernes que viene" are always the
    /// coming one; every date is said back to the caller with its number.
    #[serde(default)]
    pub next_weekday_following_week: bool,
}

impl Vocabulary {
    /// Whether the clinic is open at `h:m` on `day` (any day when `None`);
    /// `None` when it has no hours at all.
    pub(crate) fn open_at(&self, day: Option<chrono::Weekday>, h: u32, m: u32) -> Option<bool> {
        if self.opening_hours.is_empty() {
            return None;
        }
        let minute = h * 60 + m;
        let within = |range: &String| {
            let (a, b) = range.split_once('-')?;
            let at = |s: &str| {
                let (h, m) = s.trim().split_once(':')?;
                Some(h.parse::<u32>().ok()? * 60 + m.parse::<u32>().ok()?)
            };
            Some(at(a)? <= minute && minute < at(b)?)
        };
        let days: Vec<&str> = match day {
            Some(d) => vec![WEEKDAYS[d.num_days_from_monday() as usize]],
            None => WEEKDAYS.to_vec(),
        };
        Some(days.iter().any(|d| self.opening_hours.get(*d).is_some_and(|rs| rs.iter().any(|r| within(r) == Some(true)))))
    }
}

/// Weekday keys of `opening_hours`, Monday first (as in the configuration).
pub(crate) const WEEKDAYS: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

/// A specialty id ("dermatology") with its spoken names per language.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SpecialtyTerm {
    pub id: String,
    /// lang -> names
    #[serde(default)]
    pub names: BTreeMap<String, Vec<String>>,
}

/// A provider id ("dr-garcia"), display name and specialty id.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProviderTerm {
    pub id: String,
    pub name: String,
    pub specialty: String,
}

/// What the caller wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    Book,
    Confirm,
    Cancel,
    Reschedule,
    Query,
    Hours,
    Location,
    Human,
    Yes,
    No,
    Choose,
    Goodbye,
    Emergency,
    /// "Do not call me again": contact consent withdrawn.
    OptOut,
    Unknown,
}

/// Values extracted from the utterance; only what was actually said.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slots {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specialty: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// "YYYY-MM-DD", resolved against `now` (clinic-local). With
    /// `date_to`, the first day of a span ("la semana que viene").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// "YYYY-MM-DD": last day of a span that starts at `date`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_to: Option<String>,
    /// A weekday and a day number that do not agree ("el lunes 20" when
    /// the 20th is a Sunday): no `date` is guessed, the caller is asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_conflict: Option<DateConflict>,
    /// `date` was said as "the day after" ("el día siguiente"): the day
    /// after the one being talked about, where there is one (the offers'
    /// day); `date` holds tomorrow for when there is none.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub after_discussed: bool,
    /// "morning" | "afternoon" | "evening"
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_of_day: Option<String>,
    /// "HH:MM"
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// "HH:MM": not earlier than this ("después de las cinco").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_after: Option<String>,
    /// "HH:MM": not later than this ("antes de las diez").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_before: Option<String>,
    /// 1-based ordinal of an offered option.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// "YYYY-MM-DD"
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<String>,
    /// Digits of a phone or id number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digits: Option<String>,
}

/// The two readings of a weekday said with a day number that disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DateConflict {
    /// "YYYY-MM-DD": the day number's date (the 20th).
    pub by_day: String,
    /// "YYYY-MM-DD": the said weekday nearest to it (Monday the 21st).
    pub by_weekday: String,
}

/// Result of [`understand`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Understanding {
    pub intent: Intent,
    pub slots: Slots,
}

/// Understands one utterance. Never panics; does no I/O.
///
/// Documented choices for ambiguous input:
/// - a bare weekday ("el viernes") is its next occurrence strictly after
///   today, so on a Friday it means next week's Friday; "next Monday" /
///   "el lunes que viene" resolve the same way, while "el lunes de la
///   semana que viene" is the Monday of next week (weeks start on Monday);
/// - a day/month without year is this year, or next year if already past;
///   a bare day of the month ("el 15") is this month's, or next month's
///   once past; a weekday with a day number must agree, else
///   `date_conflict` holds both readings and `date` stays empty;
/// - a two-digit year is in the future for an appointment (up to ten
///   years ahead) and in the past after a birth cue;
/// - spans ("la semana que viene", "a finales de mes") set `date` and
///   `date_to`;
/// - an hour without am/pm or part of day is the reading within the
///   clinic's opening hours (`Vocabulary::opening_hours`, for the date
///   said or any day); when both or neither are, 1–7 are afternoon
///   (clinics do not open at 3 am);
/// - "de la tarde"/"pm" right after a time set only `time`, not `part_of_day`;
/// - a fully dated day in the past (or after "nací"/"born") is a birth date;
/// - emergency phrases always win, even if negated ("no me duele el pecho").
pub fn understand(text: &str, lex: &Lexicon, vocab: &Vocabulary, now: chrono::NaiveDateTime) -> Understanding {
    let toks: Vec<normalize::Tok> = normalize::tokenize(text).into_iter().filter(|t| !lex.fillers.contains(&t.norm)).collect();
    let mut cx = matcher::Ctx::new(&toks, lex);
    cx.mark_all(&lex.greetings);
    let found = intent::spot(&cx);
    // Goodbye formulas ("hasta mañana", "buona sera") carry no slot data.
    if let Some((_, phrases)) = lex.intents.iter().find(|(i, _)| *i == Intent::Goodbye) {
        cx.mark_all(phrases);
    }
    let mut slots = Slots::default();
    entities::extract_name(&mut cx, &mut slots);
    dates::extract(&mut cx, now.date(), &mut slots);
    let (after, before) = times::extract_bounds(&mut cx);
    let clock = times::extract(&mut cx);
    dates::extract_relative(&mut cx, now.date(), vocab.next_weekday_following_week, &mut slots);
    let part = slots.part_of_day.clone();
    let day =
        slots.date.as_deref().and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()).map(|d| chrono::Datelike::weekday(&d));
    let open = |h: u32, m: u32| vocab.open_at(day, h, m);
    slots.time = clock.map(|c| c.resolve(part.as_deref(), &open));
    slots.time_after = after.map(|c| c.resolve(part.as_deref(), &open));
    slots.time_before = before.map(|c| c.resolve(part.as_deref(), &open));
    entities::extract_vocab(&mut cx, vocab, &mut slots);
    entities::extract_choice(&mut cx, &mut slots);
    entities::extract_digits(&mut cx, &mut slots);
    let intent = intent::decide(found, &slots);
    Understanding { intent, slots }
}

/// Coarse part of the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PartOfDay {
    Morning,
    Afternoon,
    Evening,
}

impl PartOfDay {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PartOfDay::Morning => "morning",
            PartOfDay::Afternoon => "afternoon",
            PartOfDay::Evening => "evening",
        }
    }
}

impl Intent {
    /// Phrase-driven intents, highest priority first.
    pub(crate) const PRIORITY: [Intent; 11] = [
        Intent::Emergency,
        Intent::OptOut,
        Intent::Human,
        Intent::Cancel,
        Intent::Reschedule,
        Intent::Confirm,
        Intent::Query,
        Intent::Hours,
        Intent::Location,
        Intent::Book,
        Intent::Goodbye,
    ];

    /// Key used in the TOML `[nlu.intents]` table.
    pub fn key(self) -> &'static str {
        match self {
            Intent::Book => "book",
            Intent::Confirm => "confirm",
            Intent::Cancel => "cancel",
            Intent::Reschedule => "reschedule",
            Intent::Query => "query",
            Intent::Hours => "hours",
            Intent::Location => "location",
            Intent::Human => "human",
            Intent::Yes => "yes",
            Intent::No => "no",
            Intent::Choose => "choose",
            Intent::Goodbye => "goodbye",
            Intent::Emergency => "emergency",
            Intent::OptOut => "opt_out",
            Intent::Unknown => "unknown",
        }
    }
}
