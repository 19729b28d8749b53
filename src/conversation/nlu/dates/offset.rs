//! Offsets from today or from another day: "en dos semanas", "dentro de
//! tres días", "tra due settimane", "daqui a um mês", "two weeks from
//! now", "a week from Friday", "three weeks from tomorrow".

use chrono::{Duration, Months, NaiveDate};

use super::super::lexicon::Unit;
use super::super::matcher::Ctx;
use super::super::numbers::cardinal;
use super::{next_weekday, Said};

/// Largest count an offset may have ("en 400 días" is not a booking).
const MAX_COUNT: u32 = 366;

/// An offset starting at `i`: (the day, end).
pub(super) fn at(cx: &Ctx, i: usize, today: NaiveDate) -> Option<(Said, usize)> {
    let spans = &cx.lex.spans;
    // "dentro de dos semanas", "in a week", "tra 3 giorni".
    if let Some((_, j)) = cx.match_any_at(&spans.offset_before, i) {
        if let Some((n, unit, e)) = amount(cx, j) {
            return Some((Said::Day(add(today, n, unit)?), e));
        }
    }
    // "two weeks from now", "a week from Friday".
    let (n, unit, e) = amount(cx, i)?;
    if let Some((_, e2)) = cx.match_any_at(&spans.offset_after, e) {
        return Some((Said::Day(add(today, n, unit)?), e2));
    }
    let (_, j) = cx.match_any_at(&spans.offset_from, e)?;
    let (anchor, e2) = anchor(cx, j, today)?;
    Some((Said::Day(add(anchor, n, unit)?), e2))
}

/// "dos semanas", "a week", "un mes", "semana" (one): (count, unit, end).
fn amount(cx: &Ctx, i: usize) -> Option<(u32, Unit, usize)> {
    let spans = &cx.lex.spans;
    let (n, j) = match cardinal(cx, i) {
        Some((n, j)) => (n, j),
        None if cx.word(i).is_some_and(|w| spans.offset_articles.contains(w)) => (1, i + 1),
        None => (1, i),
    };
    if n == 0 || n > MAX_COUNT {
        return None;
    }
    let (unit, e) = cx.match_any_at_pairs(&spans.units, j)?;
    Some((n, unit, e))
}

/// The day an offset counts from: "tomorrow", "Friday", "today".
fn anchor(cx: &Ctx, j: usize, today: NaiveDate) -> Option<(NaiveDate, usize)> {
    let lex = cx.lex;
    if let Some((off, e)) = cx.match_any_at_pairs(&lex.relative, j) {
        return Some((today + Duration::days(off), e));
    }
    let j = cx.match_any_at(&lex.next_words, j).map_or(j, |(_, e)| e);
    let (wd, e) = cx.match_any_at_pairs(&lex.weekdays, j)?;
    Some((next_weekday(today, wd), e))
}

fn add(from: NaiveDate, n: u32, unit: Unit) -> Option<NaiveDate> {
    match unit {
        Unit::Day => from.checked_add_signed(Duration::days(i64::from(n))),
        Unit::Week => from.checked_add_signed(Duration::weeks(i64::from(n))),
        Unit::Month => from.checked_add_months(Months::new(n)),
    }
}
