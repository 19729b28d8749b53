//! Phrase matching over normalised tokens, with a "used" mask so that each
//! word feeds at most one slot.

use super::lexicon::{Lexicon, PWord, Phrase};
use super::normalize::Tok;

/// Longest gap a `*` in a phrase may skip.
const MAX_GAP: usize = 3;

/// Extraction state for one utterance.
pub(super) struct Ctx<'a> {
    pub toks: &'a [Tok],
    pub used: Vec<bool>,
    pub lex: &'a Lexicon,
}

impl<'a> Ctx<'a> {
    pub fn new(toks: &'a [Tok], lex: &'a Lexicon) -> Self {
        Ctx { toks, used: vec![false; toks.len()], lex }
    }

    pub fn len(&self) -> usize {
        self.toks.len()
    }

    /// Normalised word at `i` if it exists and is still free.
    pub fn word(&self, i: usize) -> Option<&'a str> {
        match (self.toks.get(i), self.used.get(i)) {
            (Some(t), Some(false)) => Some(t.norm.as_str()),
            _ => None,
        }
    }

    pub fn mark(&mut self, from: usize, to: usize) {
        for u in self.used.iter_mut().take(to).skip(from) {
            *u = true;
        }
    }

    /// End (exclusive) of `phrase` matched starting exactly at `i`.
    pub fn match_at(&self, phrase: &Phrase, i: usize) -> Option<usize> {
        match phrase.first() {
            Some(PWord::W(_)) => self.match_from(phrase, 0, i),
            _ => None,
        }
    }

    fn match_from(&self, phrase: &Phrase, p: usize, i: usize) -> Option<usize> {
        let Some(pw) = phrase.get(p) else {
            return Some(i);
        };
        match pw {
            PWord::W(w) => {
                if self.word(i)? == w {
                    self.match_from(phrase, p + 1, i + 1)
                } else {
                    None
                }
            }
            PWord::Gap => (0..=MAX_GAP).find_map(|g| {
                if (i..i + g).all(|k| self.word(k).is_some()) {
                    self.match_from(phrase, p + 1, i + g)
                } else {
                    None
                }
            }),
        }
    }

    /// First of `phrases` (sorted longest first) matching at `i`: (index, end).
    pub fn match_any_at(&self, phrases: &[Phrase], i: usize) -> Option<(usize, usize)> {
        phrases.iter().enumerate().find_map(|(k, p)| self.match_at(p, i).map(|e| (k, e)))
    }

    /// Leftmost occurrence of any phrase: (start, end).
    pub fn find_any(&self, phrases: &[Phrase]) -> Option<(usize, usize)> {
        (0..self.len()).find_map(|i| self.match_any_at(phrases, i).map(|(_, e)| (i, e)))
    }

    /// Marks every occurrence of every phrase as used.
    pub fn mark_all(&mut self, phrases: &[Phrase]) {
        let mut i = 0;
        while i < self.len() {
            if let Some((_, e)) = self.match_any_at(phrases, i) {
                self.mark(i, e);
                i = e.max(i + 1);
            } else {
                i += 1;
            }
        }
    }

    /// Indices of tokens nobody used.
    pub fn free(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len()).filter(|&i| !self.used[i])
    }
}
