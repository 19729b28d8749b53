//! Everything the assistant says, per language, from the `[prompts]` table
//! of `prompts/<lang>.toml`: templates with `{placeholders}`, the calendar
//! words used to speak dates, and the few phrases only the conversation
//! listens for (the NLU lexicon lives in `[nlu]` of the same file).
//!
//! Loading checks that every template the flows use is present, so a
//! missing translation is a start-up error, not a silent gap mid-call.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate, NaiveTime, Timelike};

/// Template keys every language must define.
pub const REQUIRED: &[&str] = &[
    "greeting",
    "recording_notice",
    "how_can_i_help",
    "anything_else",
    "yes_no_keys",
    "keypad_menu",
    "reprompt",
    "silence_goodbye",
    "not_understood",
    "not_understood_transfer",
    "low_confidence",
    "goodbye",
    "transfer",
    "emergency",
    "emergency_transfer",
    "emergency_decline",
    "ask_name",
    "ask_dob",
    "ask_dob_known",
    "bad_dob",
    "verified",
    "not_verified",
    "verify_locked",
    "opted_out",
    "outreach_opt_out_hint",
    "offer_reception",
    "new_patient",
    "ask_specialty",
    "specialty_option",
    "ask_when",
    "ask_when_reschedule",
    "none_that_day",
    "offer_intro",
    "offer_item",
    "offer_outro",
    "readback",
    "readback_reschedule",
    "booked",
    "slot_taken",
    "not_booked",
    "nothing_free",
    "waitlisted",
    "no_appointments",
    "appointments_intro",
    "appointment_item",
    "one_appointment",
    "which_appointment",
    "confirmed",
    "ask_cancel",
    "cancelled",
    "not_cancelled",
    "rescheduled",
    "technical_problem",
    "callback_closed",
    "callback_no_answer",
    "callback_ask_name",
    "callback_confirm_number",
    "callback_ask_number",
    "callback_bad_number",
    "callback_ask_reason",
    "callback_stored",
    "callback_when_soon",
    "callback_when_today",
    "callback_when_tomorrow",
    "callback_when_day",
    "callback_sorry",
    "lines_busy",
    "hours_intro",
    "hours_day",
    "hours_span",
    "hours_range",
    "hours_closed_rest",
    "hours_open_now",
    "hours_closed_now",
    "hours_holiday_today",
    "hours_next_holiday",
    "location",
    "and",
    "date",
    "birth_date",
    "time",
    "outreach_hello_morning",
    "outreach_hello_afternoon",
    "outreach_hello_evening",
    "outreach_greeting",
    "outreach_ask_person",
    "outreach_ask_fetch",
    "outreach_wait",
    "outreach_call_again",
    "outreach_dob_mismatch",
    "outreach_not_verified",
    "outreach_appointment",
    "outreach_confirm_question",
    "outreach_offer",
    "outreach_offer_question",
    "outreach_offer_declined",
    "outreach_offer_gone",
    "outreach_goodbye",
    "voicemail",
];

#[derive(Debug, thiserror::Error)]
pub enum PromptsError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{lang}: {message}")]
    Invalid { lang: String, message: String },
}

/// One language's wording.
#[derive(Debug, Clone)]
pub struct Prompts {
    lang: String,
    texts: HashMap<String, String>,
    weekdays: Vec<String>,
    months: Vec<String>,
    clock_12h: bool,
    /// Folded phrases meaning "the first free slot, whenever".
    earliest: Vec<String>,
    /// Spoken letter names ("ge" → 'g') for surnames spelled out.
    letters: HashMap<String, char>,
    /// Lowercase surname particles ("de", "da", "dos").
    particles: Vec<String>,
}

impl Prompts {
    /// Reads `<prompts_dir>/<lang>.toml`.
    pub fn load(prompts_dir: &Path, lang: &str) -> Result<Prompts, PromptsError> {
        let path = prompts_dir.join(format!("{lang}.toml"));
        let text = std::fs::read_to_string(&path).map_err(|source| PromptsError::Io { path, source })?;
        Prompts::from_toml_str(lang, &text)
    }

    pub fn from_toml_str(lang: &str, text: &str) -> Result<Prompts, PromptsError> {
        let bad = |message: String| PromptsError::Invalid { lang: lang.to_string(), message };
        let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| bad(e.to_string()))?;
        let table = doc.get("prompts").and_then(|v| v.as_table()).ok_or_else(|| bad("no [prompts] table".into()))?;
        let mut texts = HashMap::new();
        for (k, v) in table {
            if let Some(s) = v.as_str() {
                texts.insert(k.clone(), s.to_string());
            }
        }
        let missing: Vec<&str> = REQUIRED.iter().copied().filter(|k| !texts.contains_key(*k)).collect();
        if !missing.is_empty() {
            return Err(bad(format!("[prompts] lacks {}", missing.join(", "))));
        }
        let list = |section: &str, key: &str, len: Option<usize>| -> Result<Vec<String>, PromptsError> {
            let items: Vec<String> = table
                .get(section)
                .and_then(|s| s.get(key))
                .and_then(|v| v.as_array())
                .ok_or_else(|| bad(format!("[prompts.{section}] lacks {key}")))?
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            match len {
                Some(n) if items.len() != n => Err(bad(format!("[prompts.{section}] {key} needs {n} entries"))),
                _ => Ok(items),
            }
        };
        let clock_12h = table.get("calendar").and_then(|c| c.get("clock")).and_then(|v| v.as_str()) == Some("12h");
        Ok(Prompts {
            lang: lang.to_string(),
            weekdays: list("calendar", "weekdays", Some(7))?,
            months: list("calendar", "months", Some(12))?,
            earliest: list("listen", "earliest", None)?.iter().map(|p| fold(p)).collect(),
            letters: letters(table),
            particles: list("listen", "name_particles", None).unwrap_or_default().iter().map(|p| fold(p)).collect(),
            clock_12h,
            texts,
        })
    }

    pub fn lang(&self) -> &str {
        &self.lang
    }

    /// The template `key` with each `{name}` replaced. Loading guarantees
    /// the required keys; an unknown key yields itself, visibly wrong.
    pub fn say(&self, key: &str, args: &[(&str, &str)]) -> String {
        let Some(template) = self.texts.get(key) else {
            return key.to_string();
        };
        let mut out = template.clone();
        for (name, value) in args {
            out = out.replace(&format!("{{{name}}}"), value);
        }
        out
    }

    /// "martes 24 de noviembre" (the article, if any, is in the templates).
    pub fn date(&self, d: NaiveDate) -> String {
        let weekday = &self.weekdays[d.weekday().num_days_from_monday() as usize];
        let month = &self.months[d.month0() as usize];
        self.say("date", &[("weekday", weekday), ("day", &d.day().to_string()), ("month", month), ("year", &d.year().to_string())])
    }

    /// "14 de marzo de 1948": a date of birth, with its year and no weekday.
    pub fn birth_date(&self, d: NaiveDate) -> String {
        let month = &self.months[d.month0() as usize];
        self.say("birth_date", &[("day", &d.day().to_string()), ("month", month), ("year", &d.year().to_string())])
    }

    pub fn weekday(&self, index_from_monday: usize) -> &str {
        self.weekdays.get(index_from_monday).map(String::as_str).unwrap_or("")
    }

    /// "9:15", or "9:15 am" where the language speaks a 12-hour clock.
    /// A language may define `time_on_the_hour` ("{hour}") for whole
    /// hours: espeak-ng reads "9:00" as "nine zero zero".
    pub fn time(&self, t: NaiveTime) -> String {
        if !self.clock_12h && t.minute() == 0 && self.texts.contains_key("time_on_the_hour") {
            return self.say("time_on_the_hour", &[("hour", &t.hour().to_string())]);
        }
        let clock = if self.clock_12h {
            let (pm, h) = t.hour12();
            let suffix = if pm { "pm" } else { "am" };
            if t.minute() == 0 {
                format!("{h} {suffix}")
            } else {
                format!("{h}:{:02} {suffix}", t.minute())
            }
        } else {
            format!("{}:{:02}", t.hour(), t.minute())
        };
        self.say("time", &[("clock", &clock)])
    }

    /// "a, b y c".
    pub fn join(&self, items: &[String]) -> String {
        match items {
            [] => String::new(),
            [one] => one.clone(),
            [init @ .., last] => format!("{}{}{last}", init.join(", "), self.say("and", &[])),
        }
    }

    /// The letter a spoken word names, in a spelled-out surname.
    pub fn letter(&self, word: &str) -> Option<char> {
        let w = fold(word);
        let mut chars = w.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_alphabetic() => Some(c),
            _ => self.letters.get(&w).copied(),
        }
    }

    /// A surname particle kept lowercase ("de", "del", "da", "di", "dos").
    pub fn is_particle(&self, word: &str) -> bool {
        let w = fold(word);
        self.particles.contains(&w)
    }

    /// The caller asked for the first free slot, whenever it is.
    pub fn means_earliest(&self, text: &str) -> bool {
        let folded = fold(text);
        self.earliest.iter().any(|p| folded.contains(p.as_str()))
    }
}

/// `[prompts.listen] letters`: spoken letter name → letter (optional).
fn letters(table: &toml::Table) -> HashMap<String, char> {
    let Some(t) = table.get("listen").and_then(|l| l.get("letters")).and_then(|v| v.as_table()) else {
        return HashMap::new();
    };
    t.iter().filter_map(|(k, v)| Some((fold(k), v.as_str()?.chars().next()?))).collect()
}

/// Lowercase without accents, for matching speech loosely.
pub(crate) fn fold(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    text.nfd().filter(|c| !unicode_normalization::char::is_combining_mark(*c)).flat_map(char::to_lowercase).collect()
}
