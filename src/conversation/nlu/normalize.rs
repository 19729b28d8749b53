//! Text normalisation shared by utterances and lexicon phrases.
//!
//! Both sides go through the same function so that a phrase written with
//! accents in the TOML file matches ASR output that lost them.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// One normalised word of an utterance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tok {
    /// Lowercase, accent-free form used for matching.
    pub norm: String,
    /// Original surface form (kept for names, which we return as spoken).
    pub raw: String,
    /// True when punctuation separated this token from the previous one;
    /// used to stop names and numbers at commas.
    pub brk: bool,
    /// True when nothing separated this token from the previous one: it
    /// was split off at a letter/digit boundary ("3rd", "1ª"). Only such
    /// a token is an ordinal suffix: in "el día 14 a la tarde" the "a"
    /// is a word of its own.
    pub glued: bool,
}

/// Lowercases, strips diacritics, maps punctuation to separators.
///
/// Digit groups joined by `:`, `/`, `-` or `.` (e.g. `10:30`, `3/5/1950`)
/// stay one token because their meaning depends on the separator.
/// Letters glued to digits (`10am`, `3rd`) are split apart.
pub fn tokenize(text: &str) -> Vec<Tok> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut raw = String::new();
    let mut brk = false;
    let mut glued = false;
    let mut i = 0;
    let flush = |raw: &mut String, brk: &mut bool, glued: &mut bool, out: &mut Vec<Tok>| {
        if !raw.is_empty() {
            let norm = fold(raw);
            if !norm.is_empty() {
                out.push(Tok { norm, raw: std::mem::take(raw), brk: *brk, glued: *glued });
                *brk = false;
            }
            raw.clear();
        }
        *glued = false;
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() {
            // Split at letter/digit boundaries ("10am" -> "10", "am").
            if let Some(prev) = raw.chars().last() {
                if prev.is_alphanumeric() && prev.is_ascii_digit() != c.is_ascii_digit() {
                    flush(&mut raw, &mut brk, &mut glued, &mut out);
                    glued = true;
                }
            }
            raw.push(c);
        } else if matches!(c, ':' | '/' | '-' | '.')
            && raw.chars().last().is_some_and(|p| p.is_ascii_digit())
            && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit())
        {
            raw.push(c);
        } else if c == '.'
            && raw.chars().last().is_some_and(|p| p.is_ascii_digit())
            && matches!(chars.get(i + 1), Some('\u{00BA}' | '\u{00AA}'))
        {
            // "1.º": the dot belongs to the ordinal indicator.
        } else if c == '\u{00BA}' || c == '\u{00AA}' || c == '\u{00B0}' {
            // Ordinal indicators: "1º", "1ª", "1°" -> separate suffix token.
            flush(&mut raw, &mut brk, &mut glued, &mut out);
            raw.push(if c == '\u{00AA}' { 'a' } else { 'o' });
            glued = true;
            flush(&mut raw, &mut brk, &mut glued, &mut out);
        } else {
            flush(&mut raw, &mut brk, &mut glued, &mut out);
            if !c.is_whitespace() && c != '\'' && c != '\u{2019}' && c != '-' {
                brk = true;
            }
        }
        i += 1;
    }
    flush(&mut raw, &mut brk, &mut glued, &mut out);
    out
}

/// Normalises a lexicon phrase into its token strings.
pub fn phrase_words(text: &str) -> Vec<String> {
    tokenize(text).into_iter().map(|t| t.norm).collect()
}

/// Lowercase + compatibility decomposition + drop combining marks.
pub fn fold(s: &str) -> String {
    s.nfkd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .filter(|c| c.is_alphanumeric() || matches!(c, ':' | '/' | '-' | '.'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norms(s: &str) -> Vec<String> {
        tokenize(s).into_iter().map(|t| t.norm).collect()
    }

    #[test]
    fn a_suffix_is_glued_and_a_word_is_not() {
        let glued = |s: &str| tokenize(s).into_iter().map(|t| t.glued).collect::<Vec<_>>();
        assert_eq!(glued("15th 1ª 1.º"), [false, true, false, true, false, true]);
        assert_eq!(glued("día 14 a la tarde"), [false, false, false, false, false]);
    }

    #[test]
    fn strips_accents_and_punctuation() {
        assert_eq!(norms("¿Mañana, a las 10:30?"), ["manana", "a", "las", "10:30"]);
        assert_eq!(norms("Lunedì all'una"), ["lunedi", "all", "una"]);
        assert_eq!(norms("10am 3rd 1ª"), ["10", "am", "3", "rd", "1", "a"]);
        assert_eq!(norms("3/5/1950."), ["3/5/1950"]);
        assert_eq!(norms("  😀 !! "), Vec::<String>::new());
    }

    #[test]
    fn marks_breaks() {
        let t = tokenize("Ana Pérez, quiero");
        assert!(!t[1].brk && t[2].brk);
        assert_eq!(t[1].raw, "Pérez");
    }
}
