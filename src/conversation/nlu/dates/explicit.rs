//! Dates said with a day number: "3 de diciembre de 2027", "3/5/1950",
//! "december 3rd", "2 11 52", "dos del once del cincuenta y dos",
//! "el día 15", "el 15", "the 15th", "el 20 del mes que viene".

use chrono::{Datelike, NaiveDate};

use super::super::matcher::Ctx;
use super::super::numbers::{cardinal, digits_value, ordinal};
use super::{day_of_month, month_start, Said};

/// Highest number a bare article + number ("el dos", "the second") may
/// have and still be an option choice rather than a day of the month.
const MAX_OPTION: u32 = 3;

/// Years ahead a two-digit year may point to for an appointment.
const YEARS_AHEAD: i32 = 10;

/// An explicit date starting at `i`: (what was said, end).
pub(super) fn at(cx: &Ctx, i: usize, today: NaiveDate, birth: bool) -> Option<(Said, usize)> {
    let w = cx.word(i)?;
    if let Some((d, m, y)) = numeric(cx, w, today, birth) {
        return Some((Said::Dmy(d, m, y), i + 1));
    }
    if let Some(found) = digit_triple(cx, i, today, birth) {
        return Some(found);
    }
    let lex = cx.lex;
    // "el día 15 (de diciembre)" / "il giorno 15" / "on the 15th".
    if let Some((_, j)) = cx.match_any_at(&lex.day_words, i) {
        if let Some((d, k)) = day_number(cx, j) {
            return after_day(cx, d, k, today, birth).or_else(|| bare_day(d, k, today));
        }
    }
    // "el 15", "the 15th", "il ventidue": a day unless it may be an option.
    if lex.spans.articles.contains(w) {
        if let Some((d, k)) = day_number(cx, i + 1) {
            if let Some(found) = after_day(cx, d, k, today, birth) {
                return Some(found);
            }
            if d > MAX_OPTION && !(d <= 12 && looks_like_time(cx, k)) {
                return bare_day(d, k, today);
            }
            return None;
        }
    }
    // Day first: "3 de diciembre", "il primo maggio", "the 3rd of May".
    if let Some((d, j)) = day_number(cx, i) {
        if let Some(found) = after_day(cx, d, j, today, birth) {
            return Some(found);
        }
    }
    // Month first: "december 3rd, 2027".
    if let Some((m, j)) = cx.match_any_at_pairs(&lex.months, i) {
        let j = cx.skip_links(j);
        if let Some((d, k)) = day_number(cx, j) {
            let (y, end) = year(cx, k, today, birth);
            return Some((Said::Dmy(d, m + 1, y), end));
        }
    }
    None
}

/// The day `d` of this month, or next month's once past.
fn bare_day(d: u32, k: usize, today: NaiveDate) -> Option<(Said, usize)> {
    Some((Said::Day(day_of_month(today, d)?), k))
}

/// An hour rather than a day: "el 5 de la tarde", "the 10 o'clock".
fn looks_like_time(cx: &Ctx, k: usize) -> bool {
    let t = &cx.lex.time;
    cx.match_any_at(&t.pm, k).is_some()
        || cx.match_any_at(&t.am, k).is_some()
        || cx.match_any_at(&t.oclock, k).is_some()
        || cx.word(k).is_some_and(|w| t.hour_marks.contains(w) || t.connectors.contains(w))
}

/// After a day number: [link] month [[link] year], "del mes que viene",
/// or a month as a number when a year follows ("dos del once del 52").
pub(super) fn after_day(cx: &Ctx, d: u32, j: usize, today: NaiveDate, birth: bool) -> Option<(Said, usize)> {
    let k0 = cx.skip_links(j);
    let spans = &cx.lex.spans;
    if let Some((m, k)) = cx.match_any_at_pairs(&cx.lex.months, k0) {
        let (y, end) = year(cx, k, today, birth);
        return Some((Said::Dmy(d, m + 1, y), end));
    }
    if k0 > j {
        if let Some((_, k)) = cx.match_any_at(&spans.next_month, k0) {
            let date = month_start(today, 1)?.with_day(d)?;
            return Some((Said::Day(date), k));
        }
        if let Some((_, k)) = cx.match_any_at(&spans.this_month, k0) {
            return Some((Said::Day(day_of_month(today, d)?), k));
        }
        // "dos del once de mil novecientos…": the month as a number.
        let month = cx.word(k0).and_then(|w| digits_value(w).or_else(|| cx.lex.num.values.get(w).copied()));
        if let Some((m, k)) = month.filter(|m| (1..=12).contains(m)).map(|m| (m, k0 + 1)) {
            if let (Some(y), end) = year(cx, k, today, birth) {
                return Some((Said::Dmy(d, m, Some(y)), end));
            }
        }
    }
    None
}

/// Optional year after a month: "de 2027", "del cincuenta", "nineteen
/// fifty", "48".
fn year(cx: &Ctx, k: usize, today: NaiveDate, birth: bool) -> (Option<i32>, usize) {
    let j = cx.skip_links(k);
    let linked = j > k;
    let Some((y, e)) = cardinal(cx, j) else {
        return (None, k);
    };
    if (1900..=2100).contains(&y) {
        return (Some(y as i32), e);
    }
    // Pairs: "nineteen fifty", "twenty twenty six", "19 52".
    if (19..=20).contains(&y) {
        if let Some((lo, e2)) = cardinal(cx, e).filter(|(lo, _)| *lo < 100) {
            return (Some((y * 100 + lo) as i32), e2);
        }
    }
    // "del 52", or a bare "48" that cannot be an hour or minutes.
    if y < 100 && (linked || y >= 25) {
        return (Some(two_digit_year(y, today, birth)), e);
    }
    (None, k)
}

/// "del 27" → 2027 for an appointment (up to ten years ahead), "del
/// cincuenta" → 1950; always past after a birth cue.
fn two_digit_year(y: u32, today: NaiveDate, birth: bool) -> i32 {
    let century = today.year() / 100 * 100;
    let candidate = century + y as i32;
    let ahead = candidate - today.year();
    if birth {
        if candidate > today.year() {
            candidate - 100
        } else {
            candidate
        }
    } else if ahead > YEARS_AHEAD {
        candidate - 100
    } else if ahead < -(100 - YEARS_AHEAD) {
        candidate + 100
    } else {
        candidate
    }
}

/// Day of month as ordinal or cardinal, 1..=31.
pub(super) fn day_number(cx: &Ctx, i: usize) -> Option<(u32, usize)> {
    ordinal(cx, i).or_else(|| cardinal(cx, i)).filter(|(d, _)| (1..=31).contains(d))
}

/// "2 11 52", "2 11 1952": three digit groups as day, month and year.
fn digit_triple(cx: &Ctx, i: usize, today: NaiveDate, birth: bool) -> Option<(Said, usize)> {
    let d = digits_value(cx.word(i)?)?;
    let m = digits_value(cx.word(i + 1)?)?;
    let yw = cx.word(i + 2)?;
    let y = digits_value(yw)?;
    if cx.word(i + 3).is_some_and(|w| digits_value(w).is_some()) || !(1..=31).contains(&d) || !(1..=12).contains(&m) {
        return None;
    }
    let (d, m) = if cx.lex.numeric_mdy { (m, d) } else { (d, m) };
    let y = match yw.len() {
        2 => two_digit_year(y, today, birth),
        4 if (1900..=2100).contains(&y) => y as i32,
        _ => return None,
    };
    Some((Said::Dmy(d, m, Some(y)), i + 3))
}

/// "3/5/1950", "3-5-1950", "3.5.1950", "3/12".
fn numeric(cx: &Ctx, w: &str, today: NaiveDate, birth: bool) -> Option<(u32, u32, Option<i32>)> {
    let dots = w.matches('.').count();
    let sep = if w.contains('/') {
        '/'
    } else if w.contains('-') {
        '-'
    } else if dots == 2 {
        '.'
    } else {
        return None;
    };
    let parts: Vec<u32> = w.split(sep).map(digits_value).collect::<Option<_>>()?;
    let (a, b) = (*parts.first()?, *parts.get(1)?);
    let (d, m) = if cx.lex.numeric_mdy { (b, a) } else { (a, b) };
    if !(1..=31).contains(&d) || !(1..=12).contains(&m) {
        return None;
    }
    let y = match parts.get(2) {
        None => None,
        Some(&y) if y < 100 && parts[2..].len() == 1 => Some(two_digit_year(y, today, birth)),
        Some(&y) if (1900..=2100).contains(&y) && parts.len() == 3 => Some(y as i32),
        Some(_) => return None,
    };
    Some((d, m, y))
}
