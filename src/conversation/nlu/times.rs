//! Clock times: "a las once y media", "half past eleven", "10 am",
//! "alle quattro del pomeriggio", "10:30", "10h30", "mediodía".
//!
//! Hours without am/pm are resolved late, once the part of day is known:
//! afternoon/evening → pm; otherwise the reading that falls within the
//! clinic's opening hours (for the day said, or any day when none was),
//! and when both or neither do, 1–7 → pm (clinics do not open at 3 am)
//! and 8–12 stay as said.

use super::matcher::Ctx;
use super::numbers::{cardinal, digits_value};

/// A parsed time before am/pm disambiguation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Clock {
    pub h: u32,
    pub m: u32,
    /// Some(true) = pm said, Some(false) = am said, None = ambiguous.
    pub pm: Option<bool>,
}

impl Clock {
    /// "HH:MM" using an explicit meridiem, else the part of day, else the
    /// clinic's opening hours (`open(h, m)`: whether the clinic is open
    /// then; `None` when it has no hours), else the clinic-hours heuristic.
    pub fn resolve(self, part_of_day: Option<&str>, open: &dyn Fn(u32, u32) -> Option<bool>) -> String {
        let pm = match self.pm {
            Some(pm) => pm,
            None if self.h >= 12 => false,
            None => match part_of_day {
                Some("afternoon") | Some("evening") => true,
                Some(_) => false,
                None => match (open(self.h, self.m), open(self.h + 12, self.m)) {
                    (Some(true), Some(false)) => false,
                    (Some(false), Some(true)) => true,
                    _ => (1..=7).contains(&self.h),
                },
            },
        };
        let h = match (pm, self.h) {
            (true, h) if h < 12 => h + 12,
            (false, 12) if self.pm == Some(false) => 0,
            (_, 24) => 0,
            (_, h) => h,
        };
        format!("{h:02}:{:02}", self.m)
    }
}

/// First time expression in the utterance; its tokens are marked used.
pub(super) fn extract(cx: &mut Ctx) -> Option<Clock> {
    for i in 0..cx.len() {
        if let Some((c, end)) = time_at(cx, i) {
            cx.mark(i, end);
            return Some(c);
        }
    }
    None
}

/// Bounds: "después de las cinco", "antes de las diez", "entre las diez y
/// las doce", "from 3 to 5". Runs before [`extract`].
pub(super) fn extract_bounds(cx: &mut Ctx) -> (Option<Clock>, Option<Clock>) {
    let t = &cx.lex.time;
    let (mut after, mut before) = (None, None);
    for i in 0..cx.len() {
        // "ten after five" is a clock time, not a bound.
        if i > 0 && cardinal(cx, i - 1).is_some() {
            continue;
        }
        let (lower, j) = if let Some((_, j)) = cx.match_any_at(&t.between, i) {
            (true, j)
        } else if let Some((_, j)) = cx.match_any_at(&t.after, i) {
            (true, j)
        } else if let Some((_, j)) = cx.match_any_at(&t.before, i) {
            (false, j)
        } else {
            continue;
        };
        let Some((c, mut end)) = clock_at(cx, j) else {
            continue;
        };
        if lower {
            after = after.or(Some(c));
            if let Some((_, k)) = cx.match_any_at(&t.range_and, end) {
                if let Some((c2, e2)) = clock_at(cx, k) {
                    before = before.or(Some(c2));
                    end = e2;
                }
            }
        } else {
            before = before.or(Some(c));
        }
        cx.mark(i, end);
    }
    (after, before)
}

/// A clock time right at `j` (after an introducer or a bound word).
fn clock_at(cx: &Ctx, j: usize) -> Option<(Clock, usize)> {
    let t = &cx.lex.time;
    let j = cx.match_any_at(&t.introducers, j).map_or(j, |(_, e)| e);
    if let Some(w) = cx.word(j) {
        if let Some((h, m)) = colon(w) {
            let (pm, end) = meridiem(cx, j + 1);
            return Some((Clock { h, m, pm }, end));
        }
    }
    if let Some((_, e)) = cx.match_any_at(&t.noon, j) {
        return Some((Clock { h: 12, m: 0, pm: None }, e));
    }
    english_prefix(cx, j).or_else(|| hour_and_rest(cx, j).map(|(c, e, _)| (c, e)))
}

fn time_at(cx: &Ctx, i: usize) -> Option<(Clock, usize)> {
    let t = &cx.lex.time;
    let w = cx.word(i)?;
    // "10:30" / "10.30"
    if let Some((h, m)) = colon(w) {
        let (pm, end) = meridiem(cx, i + 1);
        return Some((Clock { h, m, pm }, end));
    }
    if let Some((_, e)) = cx.match_any_at(&t.noon, i) {
        // "ao meio-dia e quinze"
        let (m, e) = minutes(cx, e).filter(|(m, _)| *m > 0).map_or((0, e), |(m, e)| (m as u32, e));
        return Some((Clock { h: 12, m, pm: None }, e));
    }
    if let Some(found) = english_prefix(cx, i) {
        return Some(found);
    }
    // "a las diez …": an introducer makes any hour a time.
    if let Some((_, j)) = cx.match_any_at(&t.introducers, i) {
        if let Some(found) = clock_at(cx, j) {
            return Some(found);
        }
    }
    // "10 am", "ten o'clock", "10h30": a bare hour needs a time marker.
    match hour_and_rest(cx, i) {
        Some((c, e, true)) => Some((c, e)),
        _ => None,
    }
}

/// Hour at `j` then minutes, "o'clock" and am/pm: (clock, end, had_marker).
fn hour_and_rest(cx: &Ctx, j: usize) -> Option<(Clock, usize, bool)> {
    let t = &cx.lex.time;
    let (h, mut k) = cardinal(cx, j).filter(|(h, _)| *h <= 24)?;
    let mut marker = false;
    if cx.word(k).is_some_and(|w| t.hour_marks.contains(w)) {
        k += 1;
        marker = true;
    }
    let (delta, k2) = minutes(cx, k).unwrap_or((0, k));
    // "nueve y media", "nine thirty": minutes make a bare hour a time.
    marker |= k2 > k && said_minutes(cx, j, k, k2, delta);
    k = k2;
    if let Some((_, e)) = cx.match_any_at(&t.oclock, k) {
        k = e;
        marker = true;
    }
    let (pm, end) = meridiem(cx, k);
    marker |= pm.is_some();
    let (h, m) = if delta < 0 {
        // "las doce menos cuarto" = 11:45
        // "la una menos cuarto" is 12:45 (around noon), not 00:45.
        let prev = match h {
            0 => 23,
            1 => 12,
            h => h - 1,
        };
        (prev, (60 + delta) as u32)
    } else {
        (h, delta as u32)
    };
    Some((Clock { h, m, pm }, end, marker))
}

/// Minutes after an hour: "y media", "e un quarto", "menos cuarto", "treinta".
fn minutes(cx: &Ctx, k: usize) -> Option<(i32, usize)> {
    let t = &cx.lex.time;
    let w = cx.word(k)?;
    if t.connectors.contains(w) {
        if let Some((_, e)) = cx.match_any_at(&t.half, k + 1) {
            return Some((30, e));
        }
        if let Some((_, e)) = cx.match_any_at(&t.quarter, k + 1) {
            return Some((15, e));
        }
        let (n, e) = cardinal(cx, k + 1).filter(|(n, _)| (1..60).contains(n))?;
        return Some((n as i32, skip_minute_word(cx, e)));
    }
    if let Some((_, j)) = cx.match_any_at(&t.minus, k) {
        if let Some((_, e)) = cx.match_any_at(&t.quarter, j) {
            return Some((-15, e));
        }
        let (n, e) = cardinal(cx, j).filter(|(n, _)| (1..60).contains(n))?;
        return Some((-(n as i32), skip_minute_word(cx, e)));
    }
    if cx.toks.get(k).is_some_and(|t| t.brk) {
        return None;
    }
    let (n, e) = cardinal(cx, k).filter(|(n, _)| *n < 60)?;
    Some((n as i32, skip_minute_word(cx, e)))
}

/// Minutes that make a bare hour a time: "y media", "menos cuarto", or
/// a round word number with nothing numeric after it ("nine thirty"),
/// so that spoken digit strings ("cuatro cinco seis") stay digits.
fn said_minutes(cx: &Ctx, j: usize, k: usize, k2: usize, delta: i32) -> bool {
    let words = digits_value(cx.toks[j].norm.as_str()).is_none();
    let linked = cx.word(k).is_some_and(|w| cx.lex.time.connectors.contains(w) || cx.match_any_at(&cx.lex.time.minus, k).is_some());
    let round = delta >= 10 && delta % 5 == 0;
    words && delta != 0 && (linked || round) && cardinal(cx, k2).is_none()
}

fn skip_minute_word(cx: &Ctx, e: usize) -> usize {
    cx.match_any_at(&cx.lex.time.minute_words, e).map_or(e, |(_, e2)| e2)
}

/// "half past eleven", "quarter to ten", "twenty past nine".
fn english_prefix(cx: &Ctx, i: usize) -> Option<(Clock, usize)> {
    let t = &cx.lex.time;
    let (mins, j) = if let Some((_, e)) = cx.match_any_at(&t.half, i) {
        (30, e)
    } else if let Some((_, e)) = cx.match_any_at(&t.quarter, i) {
        (15, e)
    } else {
        let (n, e) = cardinal(cx, i).filter(|(n, _)| (1..60).contains(n))?;
        (n, skip_minute_word(cx, e))
    };
    let (before, k) = if let Some((_, e)) = cx.match_any_at(&t.past, j) {
        (false, e)
    } else if let Some((_, e)) = cx.match_any_at(&t.to, j) {
        (true, e)
    } else if mins == 15 {
        (true, cx.match_any_at(&t.quarter_to, j)?.1)
    } else {
        return None;
    };
    let (h, e) = cardinal(cx, k).filter(|(h, _)| (1..=12).contains(h))?;
    let (pm, end) = meridiem(cx, e);
    let (h, m) = if before { ((h + 11) % 12 + if h == 1 { 12 } else { 0 }, 60 - mins) } else { (h, mins) };
    let h = if h == 0 { 12 } else { h };
    Some((Clock { h, m, pm }, end))
}

/// Optional am/pm phrase at `k`: (Some(pm), end) or (None, k).
fn meridiem(cx: &Ctx, k: usize) -> (Option<bool>, usize) {
    let t = &cx.lex.time;
    if let Some((_, e)) = cx.match_any_at(&t.pm, k) {
        (Some(true), e)
    } else if let Some((_, e)) = cx.match_any_at(&t.am, k) {
        (Some(false), e)
    } else {
        (None, k)
    }
}

/// "10:30" or "10.30" as (hour, minute).
fn colon(w: &str) -> Option<(u32, u32)> {
    let sep = if w.contains(':') { ':' } else { '.' };
    let mut it = w.split(sep);
    let (a, b) = (it.next()?, it.next()?);
    if it.next().is_some() || b.len() != 2 {
        return None;
    }
    let (h, m) = (digits_value(a)?, digits_value(b)?);
    (h <= 24 && m < 60).then_some((h, m))
}
