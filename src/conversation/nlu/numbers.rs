//! Cardinal and ordinal numbers spoken as words or digits.
//!
//! Number words are plain lexicon data (`[nlu.numbers]`); composition is
//! generic: values add up while each new part is smaller than the last
//! ("treinta y dos", "dos mil veintiséis"), multipliers scale what came
//! before ("two hundred", "duemila"). Italian agglutinated numerals are
//! split into known morphemes when `compound = true`.

use super::matcher::Ctx;

/// Parses a cardinal starting at free token `i`: (value, end).
/// A digit token is a number on its own and never combines with words.
pub(super) fn cardinal(cx: &Ctx, i: usize) -> Option<(u32, usize)> {
    let first = cx.word(i)?;
    if let Some(v) = digits_value(first) {
        return Some((v, i + 1));
    }
    let mut acc = Acc::default();
    let mut end = i;
    let mut j = i;
    while let Some(w) = cx.word(j) {
        if j > i && cx.toks[j].brk {
            break;
        }
        // A connector ("y", "and") only counts if a compatible number follows.
        if j > i && cx.lex.num.connectors.contains(w) {
            match cx.word(j + 1).and_then(|n| morphemes(cx, n)) {
                Some(parts) if !cx.toks[j + 1].brk && acc.try_all(&parts) => {
                    j += 2;
                    end = j;
                    continue;
                }
                _ => break,
            }
        }
        match morphemes(cx, w) {
            Some(parts) if acc.try_all(&parts) => {
                j += 1;
                end = j;
            }
            _ => break,
        }
    }
    if end == i {
        None
    } else {
        u32::try_from(acc.value()).ok().map(|v| (v, end))
    }
}

/// Parses an ordinal at `i` ("segunda", "3rd", "twenty first"): (n, end).
pub(super) fn ordinal(cx: &Ctx, i: usize) -> Option<(u32, usize)> {
    let w = cx.word(i)?;
    if let Some(&n) = cx.lex.ordinals.get(w) {
        // "vigésimo segundo": a tens ordinal and a unit ordinal.
        if n >= 20 && n % 10 == 0 {
            if let Some(&u) = cx.word(i + 1).and_then(|u| cx.lex.ordinals.get(u)).filter(|u| **u < 10) {
                return Some((n + u, i + 2));
            }
        }
        return Some((n, i + 1));
    }
    if let Some(n) = digits_value(w) {
        let suffix = cx.word(i + 1)?;
        if cx.lex.ordinal_suffixes.contains(suffix) && cx.toks[i + 1].glued {
            return Some((n, i + 2));
        }
        return None;
    }
    // Tens word + ordinal unit: "twenty first", "trentesimo"-style is data.
    let tens = *cx.lex.num.values.get(w)?;
    if tens >= 20 && tens % 10 == 0 && tens < 100 {
        let unit = *cx.lex.ordinals.get(cx.word(i + 1)?)?;
        if unit < 10 {
            return Some((tens + unit, i + 2));
        }
    }
    None
}

/// Single digit value of a word inside a spoken digit string.
pub(super) fn digit_word(cx: &Ctx, w: &str) -> Option<u32> {
    match cx.lex.num.values.get(w).or_else(|| cx.lex.num.digit_only.get(w)) {
        Some(&v) if v < 10 => Some(v),
        _ => None,
    }
}

/// Value of an all-digit token (at most 9 digits, so it fits in u32).
pub(super) fn digits_value(w: &str) -> Option<u32> {
    if !w.is_empty() && w.len() <= 9 && w.bytes().all(|b| b.is_ascii_digit()) {
        w.parse().ok()
    } else {
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    Value(u32),
    Mult(u32),
}

/// The number parts of one word, splitting compounds when enabled.
fn morphemes(cx: &Ctx, w: &str) -> Option<Vec<Part>> {
    let num = &cx.lex.num;
    if let Some(&v) = num.values.get(w) {
        return Some(vec![Part::Value(v)]);
    }
    if let Some(&m) = num.multipliers.get(w) {
        return Some(vec![Part::Mult(m)]);
    }
    if num.compound && w.len() <= 40 && w.chars().all(|c| c.is_ascii_alphabetic()) {
        let mut out = Vec::new();
        if split(cx, w, &mut out) && out.len() > 1 {
            let mut acc = Acc::default();
            if acc.try_all(&out) {
                return Some(out);
            }
        }
    }
    None
}

/// Longest-prefix-first split of an agglutinated numeral, with backtracking.
fn split(cx: &Ctx, rest: &str, out: &mut Vec<Part>) -> bool {
    if rest.is_empty() {
        return true;
    }
    let num = &cx.lex.num;
    for cut in (2..=rest.len()).rev() {
        let Some(head) = rest.get(..cut) else {
            continue;
        };
        let part = match (num.values.get(head), num.multipliers.get(head)) {
            (Some(&v), _) => Part::Value(v),
            (None, Some(&m)) => Part::Mult(m),
            _ => continue,
        };
        out.push(part);
        if split(cx, &rest[cut..], out) {
            return true;
        }
        out.pop();
    }
    false
}

/// Running total of a spoken number.
#[derive(Debug, Default, Clone, Copy)]
struct Acc {
    total: u64,
    current: u64,
    parts: u32,
    last_scale: bool,
    zero: bool,
}

impl Acc {
    fn value(&self) -> u64 {
        self.total + self.current
    }

    /// Applies all parts, or none if any is not compatible.
    fn try_all(&mut self, parts: &[Part]) -> bool {
        let mut next = *self;
        for p in parts {
            if !next.push(*p) {
                return false;
            }
        }
        *self = next;
        true
    }

    fn push(&mut self, p: Part) -> bool {
        // "cero" stands alone: "seis cero" is two digits, not a number.
        if self.zero || self.value() > 1_000_000_000 {
            return false;
        }
        match p {
            Part::Value(0) => {
                if self.parts > 0 {
                    return false;
                }
                self.zero = true;
            }
            Part::Value(v) => {
                let v = u64::from(v);
                let fits = self.current == 0 || (self.current > v && self.current.is_multiple_of(pow10(v)));
                if !fits {
                    return false;
                }
                self.current += v;
                self.last_scale = false;
            }
            Part::Mult(m) if m < 1000 => {
                if self.current >= 10 || (self.current == 0 && self.parts > 0 && !self.last_scale) {
                    return false;
                }
                self.current = self.current.max(1) * u64::from(m);
                self.last_scale = false;
            }
            Part::Mult(m) => {
                if self.last_scale || u64::from(m) <= self.total {
                    return false;
                }
                self.total = (self.total + self.current.max(1)) * u64::from(m);
                self.current = 0;
                self.last_scale = true;
            }
        }
        self.parts += 1;
        true
    }
}

/// Smallest power of ten strictly greater than `v` ("23" -> 100).
fn pow10(v: u64) -> u64 {
    let mut p = 10;
    while p <= v {
        p *= 10;
    }
    p
}
