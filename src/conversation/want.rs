//! The caller's booking wish as it builds up over the turns: which day
//! (or span of days), part of day, time or time bounds, and a weekday and
//! day number that disagreed and must be asked about.

use chrono::{Datelike, NaiveDate, NaiveTime};

use super::nlu::Slots;
use crate::store::availability::PartOfDay;
use crate::store::Appointment;

/// When the caller would like the appointment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum When {
    #[default]
    Unknown,
    /// The first free slot, whenever.
    Earliest,
    On(NaiveDate),
    /// "Other days, please": strictly after this date.
    After(NaiveDate),
}

/// The booking wish as it builds up over the turns.
#[derive(Debug, Clone, Default)]
pub(super) struct Want {
    pub specialty: Option<String>,
    pub provider: Option<String>,
    pub when: When,
    pub part: Option<PartOfDay>,
    pub time: Option<NaiveTime>,
    /// Last day of a span ("la semana que viene") starting at `When::On`.
    pub until: Option<NaiveDate>,
    /// "después de las cinco": slots starting at or after this time.
    pub after: Option<NaiveTime>,
    /// "antes de las diez": slots starting before this time.
    pub before: Option<NaiveTime>,
    /// A weekday and day number that disagreed: (by day, by weekday),
    /// asked about before any search.
    pub conflict: Option<(NaiveDate, NaiveDate)>,
    /// Set when this search moves an existing appointment.
    pub moving: Option<Appointment>,
}

impl Want {
    pub(super) fn from_slots(s: &Slots, today: NaiveDate) -> Want {
        let mut want = Want { specialty: s.specialty.clone(), provider: s.provider.clone(), ..Want::default() };
        want.update(s, today);
        want
    }

    /// "Lo antes posible" said along with the wish itself.
    pub(super) fn earliest_if_said(&mut self, text: &str, prompts: &super::prompts::Prompts) {
        if self.when == When::Unknown && prompts.means_earliest(text) {
            self.when = When::Earliest;
        }
    }

    /// Takes the day, part of day and time the caller just said.
    pub(super) fn update(&mut self, s: &Slots, today: NaiveDate) {
        if let Some(d) = s.date.as_deref().and_then(date) {
            self.when = if d >= today { When::On(d) } else { When::Earliest };
            self.until = s.date_to.as_deref().and_then(date).filter(|u| *u > d);
            self.conflict = None;
        } else if let Some(c) = &s.date_conflict {
            if let (Some(a), Some(b)) = (date(&c.by_day), date(&c.by_weekday)) {
                self.conflict = Some((a, b));
                self.when = When::Unknown;
            }
        }
        if let Some(p) = s.part_of_day.as_deref().and_then(part_of_day) {
            self.part = Some(p);
        }
        if let Some(t) = s.time.as_deref().and_then(clock) {
            self.time = Some(t);
        }
        if let Some(t) = s.time_after.as_deref().and_then(clock) {
            self.after = Some(t);
        }
        if let Some(t) = s.time_before.as_deref().and_then(clock) {
            self.before = Some(t);
        }
        let some_time = self.part.is_some() || self.time.is_some() || self.after.is_some() || self.before.is_some();
        if self.when == When::Unknown && self.conflict.is_none() && some_time {
            self.when = When::Earliest;
        }
    }

    /// Settles a pending weekday/day-number conflict from the answer:
    /// "el lunes", "el 21", "el martes 21", "la primera" (key 1 / 2).
    pub(super) fn settle_conflict(&mut self, choice: Option<usize>, s: Option<&Slots>) -> bool {
        let Some((by_day, by_weekday)) = self.conflict else {
            return false;
        };
        let both = [by_day, by_weekday];
        let picked = match (choice, s.and_then(|s| s.date.as_deref()).and_then(date)) {
            (_, Some(d)) => both
                .iter()
                .find(|o| **o == d)
                .or_else(|| both.iter().find(|o| o.weekday() == d.weekday()))
                .or_else(|| both.iter().find(|o| o.day() == d.day()))
                .copied(),
            (Some(n), None) => n.checked_sub(1).and_then(|i| both.get(i)).copied(),
            (None, None) => None,
        };
        let Some(d) = picked else {
            return false;
        };
        self.when = When::On(d);
        self.until = None;
        self.conflict = None;
        true
    }

    /// Whether a slot starting at `t` fits the said time bounds.
    pub(super) fn fits(&self, t: NaiveTime) -> bool {
        self.after.is_none_or(|a| t >= a) && self.before.is_none_or(|b| t < b)
    }
}

fn date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

fn clock(s: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(s, "%H:%M").ok()
}

fn part_of_day(s: &str) -> Option<PartOfDay> {
    match s {
        "morning" => Some(PartOfDay::Morning),
        "afternoon" => Some(PartOfDay::Afternoon),
        "evening" => Some(PartOfDay::Evening),
        _ => None,
    }
}
