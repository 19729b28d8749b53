//! Calendar dates: explicit ("3 de diciembre de 2027", "3/5/1950",
//! "december 3rd"), relative ("mañana", "pasado mañana") and weekdays.
//!
//! Resolution rules (documented in `understand`): no year → this year or
//! next if already past; weekday → next occurrence strictly after today;
//! a dated day in the past, or any date after a birth cue, is a birth date.

use chrono::{Datelike, Duration, NaiveDate};

use super::matcher::Ctx;
use super::numbers::{cardinal, digits_value, ordinal};
use super::Slots;

/// Explicit dates and birth dates. Runs before times so that "3 de mayo"
/// is not read as an hour.
pub(super) fn extract(cx: &mut Ctx, today: NaiveDate, slots: &mut Slots) {
    let birth = match cx.find_any(&cx.lex.dob_cues) {
        Some((s, e)) => {
            cx.mark(s, e);
            true
        }
        None => false,
    };
    let mut i = 0;
    while i < cx.len() {
        let Some((ymd, end)) = explicit_at(cx, i, today) else {
            i += 1;
            continue;
        };
        cx.mark(i, end);
        i = end;
        let (d, m, year) = ymd;
        match year {
            Some(y) => {
                let Some(date) = NaiveDate::from_ymd_opt(y, m, d) else {
                    continue;
                };
                if birth || date < today {
                    slots.date_of_birth.get_or_insert_with(|| fmt(date));
                } else {
                    slots.date.get_or_insert_with(|| fmt(date));
                }
            }
            // A birthday without a year is not a usable birth date.
            None if birth => {}
            None => {
                if let Some(date) = upcoming(today, m, d) {
                    slots.date.get_or_insert_with(|| fmt(date));
                }
            }
        }
    }
}

/// Part of day, relative days and weekdays; runs after times so that
/// "de la mañana" after an hour is already taken as a meridiem.
pub(super) fn extract_relative(cx: &mut Ctx, today: NaiveDate, slots: &mut Slots) {
    let lex = cx.lex;
    // "esta tarde" = today + afternoon; must run before "mañana".
    for i in 0..cx.len() {
        if let Some((k, e)) = cx.match_any_at_pairs(&lex.today_parts, i) {
            cx.mark(i, e);
            slots.date.get_or_insert_with(|| fmt(today));
            slots.part_of_day.get_or_insert_with(|| k.as_str().to_string());
        }
    }
    for i in 0..cx.len() {
        if let Some((k, e)) = cx.match_any_at_pairs(&lex.parts, i) {
            cx.mark(i, e);
            slots.part_of_day.get_or_insert_with(|| k.as_str().to_string());
        }
    }
    for i in 0..cx.len() {
        if let Some((off, e)) = cx.match_any_at_pairs(&lex.relative, i) {
            cx.mark(i, e);
            let date = today + Duration::days(off);
            slots.date.get_or_insert_with(|| fmt(date));
        }
    }
    for i in 0..cx.len() {
        let Some((wd, e)) = cx.match_any_at_pairs(&lex.weekdays, i) else {
            continue;
        };
        cx.mark(i, e);
        // "que viene" / "prossimo" after, "next" / "próximo" before.
        if let Some((_, e2)) = cx.match_any_at(&lex.next_words, e) {
            cx.mark(e, e2);
        }
        for s in i.saturating_sub(2)..i {
            if cx.match_any_at(&lex.next_words, s).is_some_and(|(_, e2)| e2 == i) {
                cx.mark(s, i);
            }
        }
        slots.date.get_or_insert_with(|| fmt(next_weekday(today, wd)));
    }
}

/// Next date strictly after `today` falling on weekday `wd` (0 = Monday).
pub(super) fn next_weekday(today: NaiveDate, wd: u32) -> NaiveDate {
    let cur = today.weekday().num_days_from_monday();
    let ahead = (wd + 7 - cur) % 7;
    let ahead = if ahead == 0 { 7 } else { ahead };
    today + Duration::days(i64::from(ahead))
}

/// Day/month this year, or next year if it already passed.
pub(super) fn upcoming(today: NaiveDate, m: u32, d: u32) -> Option<NaiveDate> {
    match NaiveDate::from_ymd_opt(today.year(), m, d) {
        Some(date) if date >= today => Some(date),
        _ => NaiveDate::from_ymd_opt(today.year() + 1, m, d),
    }
}

pub(super) fn fmt(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

type Dmy = (u32, u32, Option<i32>);

/// An explicit date starting at `i`: ((day, month, year?), end).
fn explicit_at(cx: &Ctx, i: usize, today: NaiveDate) -> Option<(Dmy, usize)> {
    let w = cx.word(i)?;
    if let Some(dmy) = numeric(cx, w, today) {
        return Some((dmy, i + 1));
    }
    let lex = cx.lex;
    // "el día 15 (de diciembre)" / "il giorno 15".
    if let Some((_, j)) = cx.match_any_at(&lex.day_words, i) {
        if let Some((d, k)) = day_number(cx, j) {
            if let Some(found) = after_day(cx, d, k, today) {
                return Some(found);
            }
            let date = NaiveDate::from_ymd_opt(today.year(), today.month(), d).filter(|x| *x >= today).or_else(|| {
                let (y, m) = if today.month() == 12 { (today.year() + 1, 1) } else { (today.year(), today.month() + 1) };
                NaiveDate::from_ymd_opt(y, m, d)
            })?;
            return Some(((date.day(), date.month(), Some(date.year())), k));
        }
    }
    // Day first: "3 de diciembre", "il primo maggio", "the 3rd of May".
    if let Some((d, j)) = day_number(cx, i) {
        if let Some(found) = after_day(cx, d, j, today) {
            return Some(found);
        }
    }
    // Month first: "december 3rd, 2027".
    if let Some((m, j)) = cx.match_any_at_pairs(&lex.months, i) {
        let j = skip_links(cx, j);
        if let Some((d, k)) = day_number(cx, j) {
            let (y, end) = year(cx, k, today);
            return Some(((d, m + 1, y), end));
        }
    }
    None
}

/// After a day number: [link] month [[link] year].
fn after_day(cx: &Ctx, d: u32, j: usize, today: NaiveDate) -> Option<(Dmy, usize)> {
    let j = skip_links(cx, j);
    let (m, k) = cx.match_any_at_pairs(&cx.lex.months, j)?;
    let (y, end) = year(cx, k, today);
    Some(((d, m + 1, y), end))
}

fn skip_links(cx: &Ctx, mut j: usize) -> usize {
    for _ in 0..2 {
        match cx.word(j) {
            Some(w) if cx.lex.date_links.contains(w) => j += 1,
            _ => break,
        }
    }
    j
}

/// Optional year after a month: "de 2027", "del cincuenta", "nineteen fifty".
fn year(cx: &Ctx, k: usize, today: NaiveDate) -> (Option<i32>, usize) {
    let j = skip_links(cx, k);
    let linked = j > k;
    let Some((y, e)) = cardinal(cx, j) else {
        return (None, k);
    };
    if (1900..=2100).contains(&y) {
        return (Some(y as i32), e);
    }
    // English pairs: "nineteen fifty", "twenty twenty six".
    if (19..=20).contains(&y) {
        if let Some((lo, e2)) = cardinal(cx, e).filter(|(lo, _)| *lo < 100) {
            return (Some((y * 100 + lo) as i32), e2);
        }
    }
    if linked && y < 100 {
        return (Some(two_digit_year(y, today)), e);
    }
    (None, k)
}

/// "del cincuenta" → 1950, "del veinte" → 2020 (today's century unless future).
fn two_digit_year(y: u32, today: NaiveDate) -> i32 {
    let century = today.year() / 100 * 100;
    let candidate = century + y as i32;
    if candidate > today.year() {
        candidate - 100
    } else {
        candidate
    }
}

/// Day of month as ordinal or cardinal, 1..=31.
fn day_number(cx: &Ctx, i: usize) -> Option<(u32, usize)> {
    ordinal(cx, i).or_else(|| cardinal(cx, i)).filter(|(d, _)| (1..=31).contains(d))
}

/// "3/5/1950", "3-5-1950", "3.5.1950", "3/12".
fn numeric(cx: &Ctx, w: &str, today: NaiveDate) -> Option<Dmy> {
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
        Some(&y) if y < 100 && parts[2..].len() == 1 => Some(two_digit_year(y, today)),
        Some(&y) if (1900..=2100).contains(&y) && parts.len() == 3 => Some(y as i32),
        Some(_) => return None,
    };
    Some((d, m, y))
}

impl Ctx<'_> {
    /// Like `match_any_at` over (phrase, value) tables.
    pub fn match_any_at_pairs<T: Copy>(&self, table: &[(super::lexicon::Phrase, T)], i: usize) -> Option<(T, usize)> {
        table.iter().find_map(|(p, v)| self.match_at(p, i).map(|e| (*v, e)))
    }
}
