//! Person name, clinic vocabulary (specialties, providers), option choice
//! and spoken digit strings.
//!
//! Specialty and provider names are matched fuzzily (edit distance relative
//! to word length) because ASR often garbles them ("dermatolojo", "Garsia").

use super::lexicon::PWord;
use super::matcher::Ctx;
use super::normalize::phrase_words;
use super::numbers::{cardinal, digit_word, ordinal};
use super::{Slots, Vocabulary};

/// Most words a stated name may have.
const MAX_NAME_WORDS: usize = 4;

/// "me llamo Ana Pérez", "my name is John Smith", "mi chiamo Marco Rossi".
pub(super) fn extract_name(cx: &mut Ctx, slots: &mut Slots) {
    let lex = cx.lex;
    let clause_start = |i: usize| i == 0 || cx.toks[i].brk || cx.used[i - 1];
    let start_cue = (0..cx.len()).filter(|&i| clause_start(i)).find_map(|i| cx.match_any_at(&lex.name_start_cues, i).map(|(_, e)| (i, e)));
    let Some((s, e)) = cx.find_any(&lex.name_cues).or(start_cue) else {
        return;
    };
    let mut j = e;
    while cx.word(j).is_some_and(|w| lex.name_skip.contains(w)) {
        j += 1;
    }
    let start = j;
    let mut words = Vec::new();
    while let Some(w) = cx.word(j) {
        let tok = &cx.toks[j];
        let stop = (j > start && tok.brk)
            || lex.name_stop.contains(w)
            || lex.titles.contains(w)
            || !w.chars().all(char::is_alphabetic)
            || cardinal(cx, j).is_some()
            || words.len() == MAX_NAME_WORDS;
        if stop {
            break;
        }
        words.push(capitalize(&tok.raw));
        j += 1;
    }
    if !words.is_empty() {
        cx.mark(s, j);
        slots.name = Some(words.join(" "));
    }
}

/// Specialty and provider mentioned by the caller.
pub(super) fn extract_vocab(cx: &mut Ctx, vocab: &Vocabulary, slots: &mut Slots) {
    let lex = cx.lex;
    // Provider first: "la doctora García" must not leave "doctora" behind.
    'outer: for i in 0..cx.len() {
        let Some(w) = cx.word(i) else { continue };
        let titled = lex.titles.contains(w);
        for p in &vocab.providers {
            let words: Vec<String> = phrase_words(&p.name).into_iter().filter(|t| !lex.titles.contains(t)).collect();
            let Some(surname) = words.last() else {
                continue;
            };
            if titled {
                // After a title, one or two fuzzy words: first name or surname.
                let mut k = i + 1;
                let mut hit = false;
                while k <= i + 2 && cx.word(k).is_some_and(|t| words.iter().any(|n| similar(n, t))) {
                    hit = true;
                    k += 1;
                }
                if hit {
                    cx.mark(i, k);
                    slots.provider = Some(p.id.clone());
                    break 'outer;
                }
            } else if w == surname {
                cx.mark(i, i + 1);
                slots.provider = Some(p.id.clone());
                break 'outer;
            }
        }
    }
    // Earliest mention wins; on a tie the longer phrase.
    let mut found: Option<(usize, usize, String)> = None;
    let mut consider = |words: &[&str], id: &str| {
        for i in 0..cx.len() {
            if found.as_ref().is_some_and(|(s, _, _)| i > *s) {
                break;
            }
            if let Some(e) = fuzzy_at(cx, words, i) {
                let better = match &found {
                    None => true,
                    Some((s, fe, _)) => i < *s || e > *fe,
                };
                if better {
                    found = Some((i, e, id.to_string()));
                }
                break;
            }
        }
    };
    for term in &vocab.specialties {
        for name in term.names.get(lex.lang()).into_iter().flatten() {
            let words = phrase_words(name);
            let refs: Vec<&str> = words.iter().map(String::as_str).collect();
            consider(&refs, &term.id);
        }
    }
    for (id, phrase) in &lex.specialty_aliases {
        let refs: Vec<&str> = phrase
            .iter()
            .filter_map(|p| match p {
                PWord::W(w) => Some(w.as_str()),
                PWord::Gap => None,
            })
            .collect();
        consider(&refs, id);
    }
    if let Some((s, e, id)) = found {
        cx.mark(s, e);
        slots.specialty = Some(id);
    }
}

/// Option picked from an offer: "la segunda", "opción dos", "the second one".
/// A bare number ("dos") counts only when nothing else was said.
pub(super) fn extract_choice(cx: &mut Ctx, slots: &mut Slots) {
    let lex = cx.lex;
    for i in 0..cx.len() {
        if let Some((_, j)) = cx.match_any_at(&lex.option_words, i) {
            if let Some((n, e)) = ordinal(cx, j).or_else(|| cardinal(cx, j)) {
                if (1..=20).contains(&n) {
                    cx.mark(i, e);
                    slots.choice = Some(n);
                    return;
                }
            }
        }
    }
    for i in 0..cx.len() {
        let Some((n, e)) = ordinal(cx, i).filter(|(n, _)| (1..=20).contains(n)) else {
            continue;
        };
        let after_blocked = (e..e + 2).any(|k| cx.word(k).is_some_and(|w| lex.choice_blockers.contains(w)));
        let before_blocked = i > 0 && cx.word(i - 1).is_some_and(|w| lex.choice_not_after.contains(w));
        if !after_blocked && !before_blocked {
            cx.mark(i, e);
            slots.choice = Some(n);
            return;
        }
    }
    // Bare "dos" / "la dos": only when nothing else was said.
    let rest: Vec<usize> = cx.free().filter(|&i| !lex.choice_allowed.contains(&cx.toks[i].norm)).collect();
    if let [i] = rest[..] {
        if let Some((n, e)) = cardinal(cx, i).filter(|(n, e)| (1..=9).contains(n) && *e == i + 1) {
            cx.mark(i, e);
            slots.choice = Some(n);
        }
    }
}

/// Phone or id digits: "seis cero cero uno uno", "600 112 233".
pub(super) fn extract_digits(cx: &mut Ctx, slots: &mut Slots) {
    let mut i = 0;
    while i < cx.len() {
        let start = i;
        let mut out = String::new();
        let mut parts = 0;
        while let Some(w) = cx.word(i) {
            if let Some(d) = digit_group(w) {
                out.push_str(&d);
                i += 1;
            } else if let Some((n, e)) = cardinal(cx, i) {
                out.push_str(&n.to_string());
                i = e;
            } else if let Some(d) = digit_word(cx, w) {
                out.push_str(&d.to_string());
                i += 1;
            } else {
                break;
            }
            parts += 1;
        }
        if parts >= 3 || (out.len() >= 5 && parts >= 1) {
            cx.mark(start, i);
            slots.digits.get_or_insert(out);
        }
        i = i.max(start + 1);
    }
}

/// Digits of a token like "600", "600-112-233" or "600.112".
fn digit_group(w: &str) -> Option<String> {
    let digits: String = w.chars().filter(char::is_ascii_digit).collect();
    let ok = !digits.is_empty() && digits.len() <= 20 && w.chars().all(|c| c.is_ascii_digit() || c == '-' || c == '.');
    ok.then_some(digits)
}

/// End of `words` matched fuzzily at `i`.
fn fuzzy_at(cx: &Ctx, words: &[&str], i: usize) -> Option<usize> {
    if words.is_empty() {
        return None;
    }
    for (k, w) in words.iter().enumerate() {
        if !similar(w, cx.word(i + k)?) {
            return None;
        }
    }
    Some(i + words.len())
}

/// Edit distance allowed grows with word length: short words must match
/// exactly, long ones tolerate two ASR slips.
fn similar(expected: &str, heard: &str) -> bool {
    if expected == heard {
        return true;
    }
    let n = expected.chars().count();
    let max = match n {
        0..=4 => return false,
        5..=7 => 1,
        _ => 2,
    };
    let m = heard.chars().count();
    if n.abs_diff(m) > max {
        return false;
    }
    strsim::osa_distance(expected, heard) <= max
}

fn capitalize(raw: &str) -> String {
    if raw.chars().any(char::is_uppercase) {
        return raw.to_string();
    }
    let mut c = raw.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
