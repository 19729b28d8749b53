//! Loading of the per-language lexicon from the `[nlu]` table of
//! `prompts/<lang>.toml`.
//!
//! Every phrase is normalised once here, so `understand` only compares
//! ready-made token lists. Unknown keys and other top-level tables
//! (e.g. `[prompts]`) are ignored on purpose: the same file also carries
//! the spoken replies.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::normalize::phrase_words;
use super::{Intent, PartOfDay};

/// Errors raised while loading a lexicon; each names the offending key.
#[derive(thiserror::Error, Debug)]
pub enum LexiconError {
    #[error("cannot read lexicon file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("lexicon `{lang}` is not valid TOML: {source}")]
    Parse {
        lang: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("lexicon `{lang}`: missing key `{key}`")]
    Missing { lang: String, key: String },
    #[error("lexicon `{lang}`: invalid value at `{key}`: {reason}")]
    Invalid { lang: String, key: String, reason: String },
}

/// Compiled, normalised vocabulary of one language.
#[derive(Debug, Clone)]
pub struct Lexicon {
    pub(super) lang: String,
    pub(super) fillers: HashSet<String>,
    pub(super) greetings: Vec<Phrase>,
    /// Intents in priority order (first match wins); yes/no kept apart
    /// because they only count at the start of short answers.
    pub(super) intents: Vec<(Intent, Vec<Phrase>)>,
    pub(super) yes: Vec<Phrase>,
    pub(super) no: Vec<Phrase>,
    pub(super) num: NumberWords,
    pub(super) ordinals: HashMap<String, u32>,
    pub(super) ordinal_suffixes: HashSet<String>,
    pub(super) weekdays: Vec<(Phrase, u32)>,
    pub(super) months: Vec<(Phrase, u32)>,
    pub(super) relative: Vec<(Phrase, i64)>,
    pub(super) date_links: HashSet<String>,
    pub(super) day_words: Vec<Phrase>,
    pub(super) dob_cues: Vec<Phrase>,
    pub(super) next_words: Vec<Phrase>,
    /// "el día siguiente", "the day after": the day after the one being
    /// talked about (the offers' day), else tomorrow.
    pub(super) after_discussed: Vec<Phrase>,
    /// "próximo", "next" (not "este", "this"): before a weekday, read as
    /// the clinic says (`Vocabulary::next_weekday_following_week`).
    pub(super) next_strict: Vec<Phrase>,
    pub(super) spans: SpanWords,
    pub(super) numeric_mdy: bool,
    pub(super) parts: Vec<(Phrase, PartOfDay)>,
    pub(super) today_parts: Vec<(Phrase, PartOfDay)>,
    pub(super) time: TimeWords,
    pub(super) specialty_aliases: Vec<(String, Phrase)>,
    pub(super) titles: HashSet<String>,
    pub(super) name_cues: Vec<Phrase>,
    /// Cues that only count at the start of a clause ("soy", "sono").
    pub(super) name_start_cues: Vec<Phrase>,
    pub(super) name_stop: HashSet<String>,
    pub(super) name_skip: HashSet<String>,
    pub(super) option_words: Vec<Phrase>,
    pub(super) choice_blockers: HashSet<String>,
    pub(super) choice_not_after: HashSet<String>,
    pub(super) choice_allowed: HashSet<String>,
}

/// A normalised phrase; `Gap` (written `*`) skips 0..=3 words.
pub(super) type Phrase = Vec<PWord>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PWord {
    W(String),
    Gap,
}

#[derive(Debug, Clone, Default)]
pub(super) struct NumberWords {
    pub values: HashMap<String, u32>,
    pub multipliers: HashMap<String, u32>,
    pub connectors: HashSet<String>,
    /// Italian-style agglutinated numerals ("duemilaventisei").
    pub compound: bool,
    /// Words that are digits only inside digit strings ("oh" = 0).
    pub digit_only: HashMap<String, u32>,
}

/// Unit of a date offset ("en dos semanas").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unit {
    Day,
    Week,
    Month,
}

/// Words for offsets, weeks, months and bare days (`[nlu.dates]`).
#[derive(Debug, Clone, Default)]
pub(super) struct SpanWords {
    /// Articles before a bare day number ("el 15", "the 15th").
    pub articles: HashSet<String>,
    pub next_week: Vec<Phrase>,
    pub this_week: Vec<Phrase>,
    pub next_month: Vec<Phrase>,
    pub this_month: Vec<Phrase>,
    /// "a principios de", "early": the first days of a span.
    pub early: Vec<Phrase>,
    /// "a finales de", "end of": the last days of a span.
    pub late: Vec<Phrase>,
    /// "el último", "the last" (weekday of a month).
    pub last: Vec<Phrase>,
    /// "dentro de", "in", "tra", "daqui a" before a count.
    pub offset_before: Vec<Phrase>,
    /// "from now" after a count and unit.
    pub offset_after: Vec<Phrase>,
    /// "from" between an offset and its anchor ("a week from Friday").
    pub offset_from: Vec<Phrase>,
    /// "a", "an": a count of one.
    pub offset_articles: HashSet<String>,
    pub units: Vec<(Phrase, Unit)>,
}

#[derive(Debug, Clone, Default)]
pub(super) struct TimeWords {
    pub introducers: Vec<Phrase>,
    pub half: Vec<Phrase>,
    pub quarter: Vec<Phrase>,
    pub past: Vec<Phrase>,
    pub to: Vec<Phrase>,
    pub minus: Vec<Phrase>,
    /// "y"/"e" joining hour and minutes ("diez y media").
    pub connectors: HashSet<String>,
    pub am: Vec<Phrase>,
    pub pm: Vec<Phrase>,
    pub oclock: Vec<Phrase>,
    pub noon: Vec<Phrase>,
    pub minute_words: Vec<Phrase>,
    pub hour_marks: HashSet<String>,
    /// "después de las", "after": a lower bound.
    pub after: Vec<Phrase>,
    /// "antes de las", "before": an upper bound.
    pub before: Vec<Phrase>,
    /// "entre las", "between": both bounds, joined by `range_and`.
    pub between: Vec<Phrase>,
    pub range_and: Vec<Phrase>,
    /// "para las", "alle": "to" only after a quarter ("cuarto para las ocho").
    pub quarter_to: Vec<Phrase>,
}

impl Lexicon {
    /// Parses the `[nlu]` table of a prompts file.
    pub fn from_toml_str(lang: &str, text: &str) -> Result<Lexicon, LexiconError> {
        let root: toml::Table = text.parse().map_err(|source| LexiconError::Parse { lang: lang.to_string(), source })?;
        let r = Reader { lang, root: &root };
        r.table("nlu")?;
        let fillers: HashSet<String> = r.list("nlu.fillers", false)?.iter().flat_map(|f| phrase_words(f)).collect();
        let ph = |key: &str, required: bool| -> Result<Vec<Phrase>, LexiconError> {
            let mut v: Vec<Phrase> = r.list(key, required)?.iter().map(|s| compile(s, &fillers)).filter(|p| !p.is_empty()).collect();
            v.sort_by_key(|p| std::cmp::Reverse(p.len()));
            Ok(v)
        };
        let set =
            |key: &str| -> Result<HashSet<String>, LexiconError> { Ok(r.list(key, false)?.iter().flat_map(|s| phrase_words(s)).collect()) };
        let mut intents = Vec::new();
        for intent in Intent::PRIORITY {
            let key = format!("nlu.intents.{}", intent.key());
            intents.push((intent, ph(&key, true)?));
        }
        let num = NumberWords {
            values: r.u32_map("nlu.numbers.values", true)?,
            multipliers: r.u32_map("nlu.numbers.multipliers", false)?,
            connectors: set("nlu.numbers.connectors")?,
            compound: r.boolean("nlu.numbers.compound")?,
            digit_only: r.u32_map("nlu.numbers.digit_only", false)?,
        };
        let indexed = |key: &str, n: usize| -> Result<Vec<(Phrase, u32)>, LexiconError> {
            let rows = r.nested_list(key)?;
            if rows.len() != n {
                return Err(r.invalid(key, &format!("expected {n} entries, got {}", rows.len())));
            }
            let mut out = Vec::new();
            for (i, row) in rows.iter().enumerate() {
                for s in row {
                    out.push((compile(s, &fillers), i as u32));
                }
            }
            out.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
            Ok(out)
        };
        let parts_of = |prefix: &str| -> Result<Vec<(Phrase, PartOfDay)>, LexiconError> {
            let mut out = Vec::new();
            for pod in [PartOfDay::Morning, PartOfDay::Afternoon, PartOfDay::Evening] {
                for p in ph(&format!("{prefix}.{}", pod.as_str()), false)? {
                    out.push((p, pod));
                }
            }
            out.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
            Ok(out)
        };
        let mut relative: Vec<(Phrase, i64)> =
            r.i64_map("nlu.dates.relative")?.into_iter().map(|(k, v)| (compile(&k, &fillers), v)).collect();
        relative.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        let mut specialty_aliases = Vec::new();
        if let Some(t) = r.opt_table("nlu.specialties")? {
            for id in t.keys() {
                for p in ph(&format!("nlu.specialties.{id}"), true)? {
                    specialty_aliases.push((id.clone(), p));
                }
            }
        }
        let mut units = Vec::new();
        for (key, unit) in [("day", Unit::Day), ("week", Unit::Week), ("month", Unit::Month)] {
            units.extend(ph(&format!("nlu.dates.units.{key}"), false)?.into_iter().map(|p| (p, unit)));
        }
        units.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        let spans = SpanWords {
            articles: set("nlu.dates.articles")?,
            next_week: ph("nlu.dates.next_week", false)?,
            this_week: ph("nlu.dates.this_week", false)?,
            next_month: ph("nlu.dates.next_month", false)?,
            this_month: ph("nlu.dates.this_month", false)?,
            early: ph("nlu.dates.early", false)?,
            late: ph("nlu.dates.late", false)?,
            last: ph("nlu.dates.last", false)?,
            offset_before: ph("nlu.dates.offset.before", false)?,
            offset_after: ph("nlu.dates.offset.after", false)?,
            offset_from: ph("nlu.dates.offset.from", false)?,
            offset_articles: set("nlu.dates.offset.articles")?,
            units,
        };
        let order = r.string("nlu.dates.numeric_order")?;
        let numeric_mdy = match order.as_deref() {
            None | Some("dmy") => false,
            Some("mdy") => true,
            Some(_) => return Err(r.invalid("nlu.dates.numeric_order", "use \"dmy\" or \"mdy\"")),
        };
        Ok(Lexicon {
            lang: lang.to_string(),
            greetings: ph("nlu.greetings", false)?,
            intents,
            yes: ph("nlu.intents.yes", true)?,
            no: ph("nlu.intents.no", true)?,
            num,
            ordinals: r.u32_map("nlu.ordinals.words", false)?,
            ordinal_suffixes: set("nlu.ordinals.suffixes")?,
            weekdays: indexed("nlu.dates.weekdays", 7)?,
            months: indexed("nlu.dates.months", 12)?,
            relative,
            date_links: set("nlu.dates.links")?,
            day_words: ph("nlu.dates.day_words", false)?,
            dob_cues: ph("nlu.dates.birth_cues", false)?,
            next_words: ph("nlu.dates.next", false)?,
            after_discussed: ph("nlu.dates.after_discussed", false)?,
            next_strict: ph("nlu.dates.next_strict", false)?,
            spans,
            numeric_mdy,
            parts: parts_of("nlu.part_of_day")?,
            today_parts: parts_of("nlu.part_of_day.today")?,
            time: TimeWords {
                introducers: ph("nlu.time.introducers", false)?,
                half: ph("nlu.time.half", false)?,
                quarter: ph("nlu.time.quarter", false)?,
                past: ph("nlu.time.past", false)?,
                to: ph("nlu.time.to", false)?,
                minus: ph("nlu.time.minus", false)?,
                connectors: set("nlu.time.connectors")?,
                am: ph("nlu.time.am", false)?,
                pm: ph("nlu.time.pm", false)?,
                oclock: ph("nlu.time.oclock", false)?,
                noon: ph("nlu.time.noon", false)?,
                minute_words: ph("nlu.time.minute_words", false)?,
                hour_marks: set("nlu.time.hour_marks")?,
                after: ph("nlu.time.after", false)?,
                before: ph("nlu.time.before", false)?,
                between: ph("nlu.time.between", false)?,
                range_and: ph("nlu.time.range_and", false)?,
                quarter_to: ph("nlu.time.quarter_to", false)?,
            },
            specialty_aliases,
            titles: set("nlu.providers.titles")?,
            name_cues: ph("nlu.names.cues", false)?,
            name_start_cues: ph("nlu.names.start_cues", false)?,
            name_stop: set("nlu.names.stop")?,
            name_skip: set("nlu.names.skip")?,
            option_words: ph("nlu.choice.option_words", false)?,
            choice_blockers: set("nlu.choice.blockers")?,
            choice_not_after: set("nlu.choice.not_after")?,
            choice_allowed: set("nlu.choice.allowed")?,
            fillers,
        })
    }

    /// Reads `<prompts_dir>/<lang>.toml`.
    pub fn load(prompts_dir: &Path, lang: &str) -> Result<Lexicon, LexiconError> {
        let path = prompts_dir.join(format!("{lang}.toml"));
        let text = std::fs::read_to_string(&path).map_err(|source| LexiconError::Io { path: path.clone(), source })?;
        Lexicon::from_toml_str(lang, &text)
    }

    /// Language code this lexicon was loaded for.
    pub fn lang(&self) -> &str {
        &self.lang
    }
}

fn compile(s: &str, fillers: &HashSet<String>) -> Phrase {
    s.split_whitespace()
        .flat_map(|w| {
            if w == "*" {
                vec![PWord::Gap]
            } else {
                phrase_words(w).into_iter().filter(|t| !fillers.contains(t)).map(PWord::W).collect()
            }
        })
        .collect()
}

/// Walks the TOML tree, producing errors that name the full key path.
struct Reader<'a> {
    lang: &'a str,
    root: &'a toml::Table,
}

impl Reader<'_> {
    fn missing(&self, key: &str) -> LexiconError {
        LexiconError::Missing { lang: self.lang.to_string(), key: key.to_string() }
    }

    fn invalid(&self, key: &str, reason: &str) -> LexiconError {
        LexiconError::Invalid { lang: self.lang.to_string(), key: key.to_string(), reason: reason.to_string() }
    }

    fn get(&self, key: &str) -> Result<Option<&toml::Value>, LexiconError> {
        let mut parts = key.split('.');
        let first = parts.next().unwrap_or_default();
        let mut cur = match self.root.get(first) {
            Some(v) => v,
            None => return Ok(None),
        };
        for p in parts {
            let t = cur.as_table().ok_or_else(|| self.invalid(key, "expected a table on the way"))?;
            cur = match t.get(p) {
                Some(v) => v,
                None => return Ok(None),
            };
        }
        Ok(Some(cur))
    }

    fn table(&self, key: &str) -> Result<&toml::Table, LexiconError> {
        self.opt_table(key)?.ok_or_else(|| self.missing(key))
    }

    fn opt_table(&self, key: &str) -> Result<Option<&toml::Table>, LexiconError> {
        match self.get(key)? {
            None => Ok(None),
            Some(v) => v.as_table().map(Some).ok_or_else(|| self.invalid(key, "expected a table")),
        }
    }

    fn list(&self, key: &str, required: bool) -> Result<Vec<String>, LexiconError> {
        let Some(v) = self.get(key)? else {
            return if required { Err(self.missing(key)) } else { Ok(Vec::new()) };
        };
        let arr = v.as_array().ok_or_else(|| self.invalid(key, "expected an array of strings"))?;
        arr.iter()
            .enumerate()
            .map(|(i, x)| x.as_str().map(str::to_string).ok_or_else(|| self.invalid(&format!("{key}[{i}]"), "expected a string")))
            .collect()
    }

    fn nested_list(&self, key: &str) -> Result<Vec<Vec<String>>, LexiconError> {
        let v = self.get(key)?.ok_or_else(|| self.missing(key))?;
        let arr = v.as_array().ok_or_else(|| self.invalid(key, "expected an array of arrays of strings"))?;
        let mut out = Vec::new();
        for (i, row) in arr.iter().enumerate() {
            let k = format!("{key}[{i}]");
            let row = row.as_array().ok_or_else(|| self.invalid(&k, "expected an array of strings"))?;
            let mut words = Vec::new();
            for x in row {
                words.push(x.as_str().ok_or_else(|| self.invalid(&k, "expected strings"))?.to_string());
            }
            out.push(words);
        }
        Ok(out)
    }

    fn i64_map(&self, key: &str) -> Result<Vec<(String, i64)>, LexiconError> {
        let Some(t) = self.opt_table(key)? else {
            return Ok(Vec::new());
        };
        t.iter()
            .map(|(k, v)| v.as_integer().map(|n| (k.clone(), n)).ok_or_else(|| self.invalid(&format!("{key}.{k}"), "expected an integer")))
            .collect()
    }

    fn u32_map(&self, key: &str, required: bool) -> Result<HashMap<String, u32>, LexiconError> {
        if required && self.opt_table(key)?.is_none() {
            return Err(self.missing(key));
        }
        let mut out = HashMap::new();
        for (k, v) in self.i64_map(key)? {
            let n = u32::try_from(v).map_err(|_| self.invalid(&format!("{key}.{k}"), "expected a non-negative integer"))?;
            // Multi-word keys are not allowed: numbers are single tokens.
            let words = phrase_words(&k);
            if words.len() != 1 {
                return Err(self.invalid(&format!("{key}.{k}"), "expected a single word"));
            }
            out.extend(words.into_iter().map(|w| (w, n)));
        }
        Ok(out)
    }

    fn boolean(&self, key: &str) -> Result<bool, LexiconError> {
        match self.get(key)? {
            None => Ok(false),
            Some(v) => v.as_bool().ok_or_else(|| self.invalid(key, "expected true or false")),
        }
    }

    fn string(&self, key: &str) -> Result<Option<String>, LexiconError> {
        match self.get(key)? {
            None => Ok(None),
            Some(v) => v.as_str().map(|s| Some(s.to_string())).ok_or_else(|| self.invalid(key, "expected a string")),
        }
    }
}
