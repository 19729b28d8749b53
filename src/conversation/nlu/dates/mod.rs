//! Calendar dates: explicit ("3 de diciembre de 2027", "3/5/1950",
//! "december 3rd"), bare days ("el 15"), weekdays with a day number
//! ("el lunes 21"), ordinal weekdays ("el primer viernes de julio"),
//! offsets ("en dos semanas"), spans ("la semana que viene") and relative
//! days ("mañana", "pasado mañana").
//!
//! Resolution rules (documented in `understand`): no year → this year or
//! next if already past; weekday → next occurrence strictly after today;
//! a dated day in the past, or any date after a birth cue, is a birth date.

mod explicit;
mod offset;
mod span;

use chrono::{Datelike, Duration, NaiveDate};

use super::matcher::Ctx;
use super::{DateConflict, Slots};

/// What one date expression said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Said {
    /// Day, month and maybe a year, still to be placed in time.
    Dmy(u32, u32, Option<i32>),
    /// A resolved day.
    Day(NaiveDate),
    /// First and last day of a span.
    Span(NaiveDate, NaiveDate),
    /// A weekday and a day number that disagree: (by day, by weekday).
    Conflict(NaiveDate, NaiveDate),
}

/// Explicit dates, birth dates, offsets and weekdays with a number. Runs
/// before times so that "3 de mayo" is not read as an hour.
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
        let found = explicit::at(cx, i, today, birth)
            .or_else(|| offset::at(cx, i, today))
            .or_else(|| span::ordinal_weekday_at(cx, i, today))
            .or_else(|| span::weekday_day_at(cx, i, today, birth));
        let Some((said, end)) = found else {
            i += 1;
            continue;
        };
        cx.mark(i, end);
        i = end;
        record(said, birth, today, slots);
    }
}

fn record(said: Said, birth: bool, today: NaiveDate, slots: &mut Slots) {
    match said {
        Said::Dmy(d, m, Some(y)) => {
            let Some(date) = NaiveDate::from_ymd_opt(y, m, d) else {
                return;
            };
            if birth || date < today {
                slots.date_of_birth.get_or_insert_with(|| fmt(date));
            } else {
                slots.date.get_or_insert_with(|| fmt(date));
            }
        }
        // A birthday without a year is not a usable birth date.
        Said::Dmy(..) if birth => {}
        Said::Dmy(d, m, None) => {
            if let Some(date) = upcoming(today, m, d) {
                slots.date.get_or_insert_with(|| fmt(date));
            }
        }
        Said::Day(date) => {
            slots.date.get_or_insert_with(|| fmt(date));
        }
        Said::Span(from, to) => set_span(slots, from, to),
        Said::Conflict(by_day, by_weekday) => {
            if slots.date.is_none() {
                slots.date_conflict.get_or_insert_with(|| DateConflict { by_day: fmt(by_day), by_weekday: fmt(by_weekday) });
            }
        }
    }
}

fn set_span(slots: &mut Slots, from: NaiveDate, to: NaiveDate) {
    if slots.date.is_none() {
        slots.date = Some(fmt(from));
        if to > from {
            slots.date_to = Some(fmt(to));
        }
    }
}

/// Part of day, relative days, weekdays and spans; runs after times so
/// that "de la mañana" after an hour is already taken as a meridiem.
/// `following_week`: "next Friday" is next week's (a clinic setting).
pub(super) fn extract_relative(cx: &mut Ctx, today: NaiveDate, following_week: bool, slots: &mut Slots) {
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
        // "early next week" is a span, not the morning.
        if span::period_at(cx, i, today).is_some() {
            continue;
        }
        if let Some((k, e)) = cx.match_any_at_pairs(&lex.parts, i) {
            cx.mark(i, e);
            slots.part_of_day.get_or_insert_with(|| k.as_str().to_string());
        }
    }
    for i in 0..cx.len() {
        // "the day after tomorrow" is not "the day after" and a word.
        let longer = |e: usize| cx.match_any_at_pairs(&lex.relative, i).is_some_and(|(_, r)| r > e);
        if let Some((_, e)) = cx.match_any_at(&lex.after_discussed, i).filter(|(_, e)| !longer(*e)) {
            cx.mark(i, e);
            if slots.date.is_none() {
                slots.date = Some(fmt(today + Duration::days(1)));
                slots.after_discussed = true;
            }
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
        let Some((mut date, e)) = span::weekday_at(cx, i, today) else {
            continue;
        };
        // "el próximo viernes" said while this week's Friday is ahead.
        let strict = (i.saturating_sub(2)..i).any(|s| cx.match_any_at(&lex.next_strict, s).is_some_and(|(_, e2)| e2 == i));
        if strict && following_week && date < monday_of(today) + Duration::days(7) {
            date += Duration::days(7);
        }
        cx.mark(i, e);
        // "next" / "próximo" before the weekday.
        for s in i.saturating_sub(2)..i {
            if cx.match_any_at(&lex.next_words, s).is_some_and(|(_, e2)| e2 == i) {
                cx.mark(s, i);
            }
        }
        slots.date.get_or_insert_with(|| fmt(date));
    }
    for i in 0..cx.len() {
        if let Some((Said::Span(from, to), e)) = span::period_at(cx, i, today) {
            cx.mark(i, e);
            set_span(slots, from, to);
        }
    }
}

/// Next date strictly after `today` falling on weekday `wd` (0 = Monday).
pub(super) fn next_weekday(today: NaiveDate, wd: u32) -> NaiveDate {
    let cur = today.weekday().num_days_from_monday();
    let ahead = (wd + 7 - cur) % 7;
    let ahead = if ahead == 0 { 7 } else { ahead };
    today + Duration::days(i64::from(ahead))
}

/// Monday of the week holding `d`.
pub(super) fn monday_of(d: NaiveDate) -> NaiveDate {
    d - Duration::days(i64::from(d.weekday().num_days_from_monday()))
}

/// Day/month this year, or next year if it already passed.
pub(super) fn upcoming(today: NaiveDate, m: u32, d: u32) -> Option<NaiveDate> {
    match NaiveDate::from_ymd_opt(today.year(), m, d) {
        Some(date) if date >= today => Some(date),
        _ => NaiveDate::from_ymd_opt(today.year() + 1, m, d),
    }
}

/// First day of the month `n` months after `today`'s.
pub(super) fn month_start(today: NaiveDate, n: u32) -> Option<NaiveDate> {
    let first = NaiveDate::from_ymd_opt(today.year(), today.month(), 1)?;
    first.checked_add_months(chrono::Months::new(n))
}

/// Last day of the month holding `first`.
pub(super) fn month_end(first: NaiveDate) -> Option<NaiveDate> {
    first.checked_add_months(chrono::Months::new(1))?.pred_opt()
}

/// Day `d` of this month if still ahead (or today), else of a later month.
pub(super) fn day_of_month(today: NaiveDate, d: u32) -> Option<NaiveDate> {
    (0..3).find_map(|n| month_start(today, n).and_then(|f| f.with_day(d)).filter(|x| *x >= today))
}

pub(super) fn fmt(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

impl Ctx<'_> {
    /// Like `match_any_at` over (phrase, value) tables.
    pub fn match_any_at_pairs<T: Copy>(&self, table: &[(super::lexicon::Phrase, T)], i: usize) -> Option<(T, usize)> {
        table.iter().find_map(|(p, v)| self.match_at(p, i).map(|e| (*v, e)))
    }

    /// Skips up to two date links ("de", "del", "of") from `j`.
    pub fn skip_links(&self, mut j: usize) -> usize {
        for _ in 0..2 {
            match self.word(j) {
                Some(w) if self.lex.date_links.contains(w) => j += 1,
                _ => break,
            }
        }
        j
    }
}
