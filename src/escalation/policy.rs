//! When to call a patient who has not answered a reminder — or not to.
//! Pure: the caller gathers the facts, passes `now`, and gets a decision.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Timelike, Utc};
use chrono_tz::Tz;

use crate::config::EscalationConfig;
use crate::store::availability::{local_range, Interval};
use crate::store::AppointmentStatus;

/// What the store knows about one appointment's reminder and past attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub status: AppointmentStatus,
    pub starts_at: DateTime<Utc>,
    pub reminder_sent_at: Option<DateTime<Utc>>,
    pub replied: bool,
    pub contact_consent: bool,
    /// Start times of earlier call attempts, oldest first.
    pub attempts: Vec<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    CallAt(DateTime<Utc>),
    Stop(StopReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Disabled,
    NoReminder,
    Replied,
    /// Confirmed, cancelled or otherwise settled already.
    NotPending,
    OptedOut,
    AttemptsExhausted,
    /// No calling window is left before the appointment.
    TooLate,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Disabled => "disabled",
            StopReason::NoReminder => "no_reminder",
            StopReason::Replied => "replied",
            StopReason::NotPending => "not_pending",
            StopReason::OptedOut => "opted_out",
            StopReason::AttemptsExhausted => "attempts_exhausted",
            StopReason::TooLate => "too_late",
        }
    }
}

/// The furthest ahead the search for a calling window looks.
const SEARCH_DAYS: i64 = 31;
/// Retries move between the morning and the afternoon: people who did not
/// answer at 10:00 may well answer at 17:00.
const AFTERNOON: u32 = 14;

pub fn decide(p: &EscalationConfig, tz: Tz, holidays: &BTreeSet<NaiveDate>, f: &Facts, now: DateTime<Utc>) -> Decision {
    let stop = Decision::Stop;
    if !p.enabled {
        return stop(StopReason::Disabled);
    }
    let Some(sent) = f.reminder_sent_at else { return stop(StopReason::NoReminder) };
    if f.replied {
        return stop(StopReason::Replied);
    }
    if f.status != AppointmentStatus::Booked {
        return stop(StopReason::NotPending);
    }
    if !f.contact_consent {
        return stop(StopReason::OptedOut);
    }
    if f.attempts.len() >= p.max_attempts as usize {
        return stop(StopReason::AttemptsExhausted);
    }
    let mut earliest = now.max(sent + p.reply_within).max(f.starts_at - p.horizon);
    let last = f.attempts.last().copied();
    if let Some(last) = last {
        earliest = earliest.max(last + p.spacing);
    }
    let deadline = f.starts_at - p.min_lead;
    let windows = windows(p, tz, holidays, earliest, deadline);
    let first_in = |want: Option<bool>| {
        windows.iter().find_map(|w| {
            let t = earliest.max(w.start);
            let fits = t < w.end && want.is_none_or(|afternoon| is_afternoon(tz, t) == afternoon);
            fits.then_some(t)
        })
    };
    let choice = match last {
        Some(last) => first_in(Some(!is_afternoon(tz, last))).or_else(|| first_in(None)),
        None => first_in(None),
    };
    match choice {
        Some(t) => Decision::CallAt(t),
        None => stop(StopReason::TooLate),
    }
}

fn is_afternoon(tz: Tz, t: DateTime<Utc>) -> bool {
    t.with_timezone(&tz).hour() >= AFTERNOON
}

/// Calling windows between `from` and `to`, split at the afternoon boundary
/// so each piece lies in one part of the day, skipping holidays.
fn windows(p: &EscalationConfig, tz: Tz, holidays: &BTreeSet<NaiveDate>, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Interval> {
    let mut out = Vec::new();
    let first = from.with_timezone(&tz).date_naive();
    let last = to.with_timezone(&tz).date_naive().min(first + Duration::days(SEARCH_DAYS));
    let noon_split = AFTERNOON * 60;
    for date in first.iter_days().take_while(|d| *d <= last) {
        if holidays.contains(&date) {
            continue;
        }
        for r in p.calling_windows.on(chrono::Datelike::weekday(&date)) {
            let (s, e) = (minutes(r.start), minutes(r.end));
            let pieces = if s < noon_split && noon_split < e { vec![(s, noon_split), (noon_split, e)] } else { vec![(s, e)] };
            for (a, b) in pieces {
                if let Some(mut w) = local_range(tz, date, a, b) {
                    w.end = w.end.min(to);
                    if w.start < w.end && w.end > from {
                        out.push(w);
                    }
                }
            }
        }
    }
    out
}

fn minutes(t: NaiveTime) -> u32 {
    t.hour() * 60 + t.minute()
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
