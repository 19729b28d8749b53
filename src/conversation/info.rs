//! Opening hours and location, spoken from the clinic's configuration:
//! weekdays with the same hours are grouped ("lunes a jueves, de 8:00 a
//! 20:00"), then whether the clinic is open right now, today's or the next
//! holiday.

use chrono::{Datelike, Duration};

use super::action::Outcome;
use super::machine::Conversation;
use crate::config::TimeRange;

/// Holidays announced when they fall within this many days.
const HOLIDAY_NOTICE_DAYS: i64 = 21;

impl Conversation {
    pub(super) fn say_hours(&mut self) {
        let text = self.hours_text();
        self.record_action("told the opening hours".into());
        self.set_outcome(Outcome::Info);
        self.say(text);
    }

    pub(super) fn say_location(&mut self) {
        let clinic = &self.ctx.config.clinic;
        let text = self.p("location", &[("address", &clinic.address.clone()), ("phone", &super::callback::spoken_digits(&clinic.phone))]);
        self.record_action("told the address".into());
        self.set_outcome(Outcome::Info);
        self.say(text);
    }

    fn hours_text(&self) -> String {
        let prompts = &self.ctx.language.prompts;
        let clinic = &self.ctx.config.clinic;
        let week = &clinic.opening_hours.0;
        // Runs of consecutive weekdays with identical, non-empty hours.
        let mut groups: Vec<(usize, usize)> = Vec::new();
        for day in 0..7 {
            if week[day].is_empty() {
                continue;
            }
            match groups.last_mut() {
                Some((_, last)) if *last + 1 == day && week[*last] == week[day] => *last = day,
                _ => groups.push((day, day)),
            }
        }
        let mut parts = vec![prompts.say("hours_intro", &[])];
        let lines: Vec<String> = groups
            .iter()
            .map(|&(first, last)| {
                let days = if first == last {
                    prompts.weekday(first).to_string()
                } else {
                    prompts.say("hours_span", &[("first", prompts.weekday(first)), ("last", prompts.weekday(last))])
                };
                let ranges: Vec<String> = week[first].iter().map(|r| self.range(r)).collect();
                prompts.say("hours_day", &[("days", &days), ("ranges", &prompts.join(&ranges))])
            })
            .collect();
        parts.push(format!("{}.", lines.join("; ")));
        parts.push(prompts.say("hours_closed_rest", &[]));

        let now = self.local_now();
        let today = now.date();
        if clinic.holidays.contains(&today) {
            parts.push(prompts.say("hours_holiday_today", &[]));
        } else {
            let open = clinic.opening_hours.on(today.weekday()).iter().find(|r| r.start <= now.time() && now.time() < r.end);
            match open {
                Some(r) => parts.push(prompts.say("hours_open_now", &[("until", &prompts.time(r.end))])),
                None => parts.push(prompts.say("hours_closed_now", &[])),
            }
        }
        let soon = clinic.holidays.range(today.succ_opt().unwrap_or(today)..=today + Duration::days(HOLIDAY_NOTICE_DAYS)).next();
        if let Some(h) = soon {
            parts.push(prompts.say("hours_next_holiday", &[("date", &prompts.date(*h))]));
        }
        parts.join(" ")
    }

    fn range(&self, r: &TimeRange) -> String {
        let prompts = &self.ctx.language.prompts;
        prompts.say("hours_range", &[("from", &prompts.time(r.start)), ("to", &prompts.time(r.end))])
    }
}
