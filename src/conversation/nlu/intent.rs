//! Intent decision: phrase intents by priority, then choice, then a bare
//! specialty/provider (a booking wish), then yes/no.

use super::matcher::Ctx;
use super::{Intent, Slots};

/// Intents spotted by phrase before slot extraction.
#[derive(Debug, Clone, Copy)]
pub(super) struct Found {
    pub phrase: Option<Intent>,
    pub yes_no: Option<Intent>,
}

/// Utterances up to this many words count as short answers, where
/// "sí"/"no" may appear anywhere ("pues claro que sí").
const SHORT: usize = 4;

pub(super) fn spot(cx: &Ctx) -> Found {
    let lex = cx.lex;
    let phrase = lex.intents.iter().find(|(_, phrases)| cx.find_any(phrases).is_some()).map(|(i, _)| *i);
    let free: Vec<usize> = cx.free().collect();
    let first = free.first().copied();
    let short = free.len() <= SHORT;
    let mut best: Option<(usize, Intent)> = None;
    for (intent, phrases) in [(Intent::Yes, &lex.yes), (Intent::No, &lex.no)] {
        if let Some((s, _)) = cx.find_any(phrases) {
            if (short || Some(s) == first) && best.is_none_or(|(b, _)| s < b) {
                best = Some((s, intent));
            }
        }
    }
    Found { phrase, yes_no: best.map(|(_, i)| i) }
}

pub(super) fn decide(found: Found, slots: &Slots) -> Intent {
    if let Some(i) = found.phrase {
        return i;
    }
    if slots.choice.is_some() {
        return Intent::Choose;
    }
    if slots.specialty.is_some() || slots.provider.is_some() {
        return Intent::Book;
    }
    found.yes_no.unwrap_or(Intent::Unknown)
}
