//! What one conversation knows before the caller speaks: the clinic's
//! configuration, the language's wording and lexicon, the clinic's own
//! vocabulary, and who is calling. Shared read-only between calls.

use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::phone::E164;

use super::action::Direction;
use super::nlu::{Lexicon, LexiconError, ProviderTerm, SpecialtyTerm, Vocabulary};
use super::prompts::{Prompts, PromptsError};

/// One language, loaded once and shared by every call in it.
#[derive(Debug)]
pub struct Language {
    pub prompts: Prompts,
    pub lexicon: Lexicon,
}

#[derive(Debug, thiserror::Error)]
pub enum LanguageError {
    #[error(transparent)]
    Prompts(#[from] PromptsError),
    #[error(transparent)]
    Lexicon(#[from] LexiconError),
}

impl Language {
    /// Reads `<prompts_dir>/<lang>.toml` (both its `[nlu]` and `[prompts]`).
    pub fn load(prompts_dir: &Path, lang: &str) -> Result<Language, LanguageError> {
        Ok(Language { prompts: Prompts::load(prompts_dir, lang)?, lexicon: Lexicon::load(prompts_dir, lang)? })
    }
}

impl Vocabulary {
    /// The clinic's specialties (spoken names per language) and providers.
    pub fn from_config(config: &Config) -> Vocabulary {
        Vocabulary {
            specialties: config.specialties.iter().map(|s| SpecialtyTerm { id: s.id.clone(), names: s.names.clone() }).collect(),
            providers: config
                .providers
                .iter()
                .map(|p| ProviderTerm { id: p.id.clone(), name: p.name.clone(), specialty: p.specialty.clone() })
                .collect(),
            opening_hours: super::nlu::WEEKDAYS
                .iter()
                .zip(config.clinic.opening_hours.0.iter())
                .filter(|(_, ranges)| !ranges.is_empty())
                .map(|(day, ranges)| {
                    let ranges = ranges.iter().map(|r| format!("{}-{}", r.start.format("%H:%M"), r.end.format("%H:%M"))).collect();
                    (day.to_string(), ranges)
                })
                .collect(),
            next_weekday_following_week: config.clinic.next_weekday_following_week,
        }
    }
}

/// Everything a [`super::Conversation`] is created with.
#[derive(Debug, Clone)]
pub struct Context {
    pub config: Arc<Config>,
    pub language: Arc<Language>,
    pub vocabulary: Arc<Vocabulary>,
    pub direction: Direction,
    /// Caller ID, when the network gave a usable one.
    pub caller: Option<E164>,
}

impl Context {
    /// The name the assistant says for a specialty id, in this language.
    pub(crate) fn specialty_name(&self, id: &str) -> String {
        self.config
            .specialties
            .iter()
            .find(|s| s.id == id)
            .and_then(|s| s.names.get(self.language.prompts.lang()).and_then(|n| n.first()))
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }

    pub(crate) fn provider_name(&self, id: &str) -> String {
        self.config.providers.iter().find(|p| p.id == id).map(|p| p.name.clone()).unwrap_or_else(|| id.to_string())
    }

    pub(crate) fn lang(&self) -> &str {
        self.language.prompts.lang()
    }
}
