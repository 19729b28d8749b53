//! Weekdays and spans: "el lunes 21", "el primer viernes de julio", "el
//! domingo de la semana que viene", "la semana que viene", "a finales de
//! mes".

use chrono::{Datelike, Duration, NaiveDate};

use super::super::matcher::Ctx;
use super::explicit::{after_day, day_number};
use super::{day_of_month, monday_of, month_end, month_start, next_weekday, Said};

/// Days in "a principios de…" (the first days of a span).
const EARLY_DAYS: i64 = 3;
/// Days in "a finales de mes".
const LATE_MONTH_DAYS: i64 = 7;

/// A weekday with a day number: "el lunes 21", "Friday the 26th",
/// "sexta-feira dia 13", "el martes 3 de marzo". Both must agree.
pub(super) fn weekday_day_at(cx: &Ctx, i: usize, today: NaiveDate, birth: bool) -> Option<(Said, usize)> {
    let lex = cx.lex;
    let (wd, e) = cx.match_any_at_pairs(&lex.weekdays, i)?;
    let j = match cx.match_any_at(&lex.day_words, e) {
        Some((_, j)) => j,
        None if cx.word(e).is_some_and(|w| lex.spans.articles.contains(w) || lex.date_links.contains(w)) => e + 1,
        None => e,
    };
    // "na segunda segunda-feira", "giovedì prima delle dieci": no day number.
    let t = &lex.time;
    let bound = [&t.after, &t.before, &t.between].iter().any(|b| cx.match_any_at(b, j).is_some());
    if bound || cx.match_any_at_pairs(&lex.weekdays, j).is_some() {
        return None;
    }
    let (d, k) = day_number(cx, j)?;
    // "na segunda segunda-feira": an ordinal weekday follows, not a day.
    if cx.match_any_at_pairs(&lex.weekdays, k).is_some() || (d <= 12 && looks_like_hour(cx, k)) {
        return None;
    }
    let (day, end) = match after_day(cx, d, k, today, birth) {
        Some((Said::Dmy(d, m, y), end)) => {
            let date = match y {
                Some(y) => NaiveDate::from_ymd_opt(y, m, d)?,
                None => super::upcoming(today, m, d)?,
            };
            (date, end)
        }
        Some((Said::Day(date), end)) => (date, end),
        Some(_) => return None,
        None => (day_of_month(today, d)?, k),
    };
    if day.weekday().num_days_from_monday() == wd {
        return Some((Said::Day(day), end));
    }
    // The said weekday nearest to that day, not before today.
    let back = (day.weekday().num_days_from_monday() + 7 - wd) % 7;
    let mut other = day - Duration::days(i64::from(back));
    if back > 3 || other < today {
        other += Duration::days(7);
    }
    Some((Said::Conflict(day, other), end))
}

fn looks_like_hour(cx: &Ctx, k: usize) -> bool {
    let t = &cx.lex.time;
    cx.match_any_at(&t.pm, k).is_some() || cx.match_any_at(&t.am, k).is_some() || cx.match_any_at(&t.oclock, k).is_some()
}

/// "el primer viernes de julio", "the second Monday of next month",
/// "l'ultimo venerdì del mese".
pub(super) fn ordinal_weekday_at(cx: &Ctx, i: usize, today: NaiveDate) -> Option<(Said, usize)> {
    let lex = cx.lex;
    let (nth, j) = match cx.match_any_at(&lex.spans.last, i) {
        Some((_, j)) => (None, j),
        None => {
            let (n, j) = super::super::numbers::ordinal(cx, i).filter(|(n, _)| (1..=5).contains(n))?;
            (Some(n), j)
        }
    };
    let (wd, e) = cx.match_any_at_pairs(&lex.weekdays, j)?;
    let k = cx.skip_links(e);
    let (month, end, fixed) = month_ref(cx, k, today)?;
    let pick = |first: NaiveDate| nth_weekday(first, wd, nth);
    let mut date = pick(month)?;
    if date < today {
        // A named month already past is next year's; "del mes" is next month's.
        let later = if fixed { month.with_year(month.year() + 1)? } else { month.checked_add_months(chrono::Months::new(1))? };
        date = pick(later)?;
    }
    Some((Said::Day(date), end))
}

/// A month after a link: a month name, "del mes que viene", "del mes".
/// (first day, end, named month).
fn month_ref(cx: &Ctx, k: usize, today: NaiveDate) -> Option<(NaiveDate, usize, bool)> {
    let spans = &cx.lex.spans;
    if let Some((m, e)) = cx.match_any_at_pairs(&cx.lex.months, k) {
        return Some((NaiveDate::from_ymd_opt(today.year(), m + 1, 1)?, e, true));
    }
    if let Some((_, e)) = cx.match_any_at(&spans.next_month, k) {
        return Some((month_start(today, 1)?, e, false));
    }
    let (_, e) = cx.match_any_at(&spans.this_month, k)?;
    Some((month_start(today, 0)?, e, false))
}

/// The `nth` (1-based; None = last) weekday `wd` of the month of `first`.
fn nth_weekday(first: NaiveDate, wd: u32, nth: Option<u32>) -> Option<NaiveDate> {
    let ahead = (wd + 7 - first.weekday().num_days_from_monday()) % 7;
    let first_wd = first + Duration::days(i64::from(ahead));
    let last = month_end(first)?;
    let date = match nth {
        Some(n) => first_wd + Duration::weeks(i64::from(n - 1)),
        None => first_wd + Duration::weeks((last - first_wd).num_days() / 7),
    };
    (date <= last).then_some(date)
}

/// A weekday with what qualifies it: "el viernes", "el próximo lunes",
/// "el domingo de la semana que viene", "Friday this week".
pub(super) fn weekday_at(cx: &Ctx, i: usize, today: NaiveDate) -> Option<(NaiveDate, usize)> {
    let lex = cx.lex;
    let (wd, e) = cx.match_any_at_pairs(&lex.weekdays, i)?;
    let k = cx.skip_links(e);
    let k = if cx.word(k).is_some_and(|w| lex.spans.articles.contains(w)) { k + 1 } else { k };
    if let Some((_, e2)) = cx.match_any_at(&lex.spans.next_week, k).or_else(|| cx.match_any_at(&lex.spans.next_week, cx.skip_links(e))) {
        let date = monday_of(today) + Duration::days(7 + i64::from(wd));
        return Some((date, e2));
    }
    if let Some((_, e2)) = cx.match_any_at(&lex.spans.this_week, k).or_else(|| cx.match_any_at(&lex.spans.this_week, cx.skip_links(e))) {
        let date = monday_of(today) + Duration::days(i64::from(wd));
        let date = if date < today { date + Duration::days(7) } else { date };
        return Some((date, e2));
    }
    // "que viene" / "prossimo" after, "next" / "próximo" before: the coming one.
    let end = cx.match_any_at(&lex.next_words, e).map_or(e, |(_, e2)| e2);
    Some((next_weekday(today, wd), end))
}

/// "la semana que viene", "a principios de la semana que viene", "a
/// finales de mes", "el mes que viene": (span, end).
pub(super) fn period_at(cx: &Ctx, i: usize, today: NaiveDate) -> Option<(Said, usize)> {
    let spans = &cx.lex.spans;
    let (edge, j) = if let Some((_, j)) = cx.match_any_at(&spans.early, i) {
        (Some(true), j)
    } else if let Some((_, j)) = cx.match_any_at(&spans.late, i) {
        (Some(false), j)
    } else {
        (None, i)
    };
    let j = cx.skip_links(j);
    let (from, to, e, is_month) = if let Some((_, e)) = cx.match_any_at(&spans.next_week, j) {
        let mon = monday_of(today) + Duration::days(7);
        (mon, mon + Duration::days(6), e, false)
    } else if let Some((_, e)) = cx.match_any_at(&spans.this_week, j) {
        (today, monday_of(today) + Duration::days(6), e, false)
    } else if let Some((_, e)) = cx.match_any_at(&spans.next_month, j) {
        let first = month_start(today, 1)?;
        (first, month_end(first)?, e, true)
    } else if edge.is_some() {
        let (_, e) = cx.match_any_at(&spans.this_month, j)?;
        (today, month_end(month_start(today, 0)?)?, e, true)
    } else {
        return None;
    };
    let (from, to) = match edge {
        None => (from, to),
        Some(true) => {
            let start = if is_month { month_start(from, 0)? } else { monday_of(from) };
            (from, (start + Duration::days(EARLY_DAYS - 1)).max(from))
        }
        Some(false) => {
            let days = if is_month { LATE_MONTH_DAYS } else { EARLY_DAYS + 1 };
            ((to - Duration::days(days - 1)).max(from), to)
        }
    };
    Some((Said::Span(from, to.max(from)), e))
}
