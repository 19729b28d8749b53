//! Pure slot arithmetic: a provider's weekly template, minus holidays and
//! absences, turned into concrete UTC intervals. No SQL here, so it can be
//! tested exhaustively (DST included) without a database.
//!
//! Shifts are wall-clock ranges in the clinic's zone. Slots are cut in *real*
//! time from the shift's start instant to its end instant, so a night shift
//! on the day clocks go back really lasts an hour longer, and a wall-clock time
//! that does not exist (the spring gap) is never offered.

use chrono::{DateTime, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// One working range of a weekly template, in minutes after local midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shift {
    pub weekday: u32, // 0 = Monday
    pub start_minute: u32,
    pub end_minute: u32,
}

/// Inclusive range of local dates when a provider (or the clinic) is away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closure {
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interval {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Interval {
    pub fn overlaps(&self, other: &Interval) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// Part of the day a caller asks for, judged on the slot's local start time.
/// Ranges overlap on purpose: "por la tarde" in Spain runs into the evening.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PartOfDay {
    /// Starts before 14:00.
    Morning,
    /// Starts 14:00–19:59.
    Afternoon,
    /// Starts 18:00 or later.
    Evening,
}

impl PartOfDay {
    pub fn contains(self, local: NaiveTime) -> bool {
        let h = |h| NaiveTime::from_hms_opt(h, 0, 0).expect("valid hour");
        match self {
            PartOfDay::Morning => local < h(14),
            PartOfDay::Afternoon => local >= h(14) && local < h(20),
            PartOfDay::Evening => local >= h(18),
        }
    }
}

/// Every slot of `slot_minutes` the template yields on local dates
/// `from..=to`, skipping closures. Sorted by start.
pub fn template_slots(shifts: &[Shift], closures: &[Closure], tz: Tz, slot_minutes: i64, from: NaiveDate, to: NaiveDate) -> Vec<Interval> {
    let mut out = Vec::new();
    if slot_minutes <= 0 {
        return out;
    }
    let len = Duration::minutes(slot_minutes);
    for date in from.iter_days().take_while(|d| *d <= to) {
        if closures.iter().any(|c| c.starts_on <= date && date <= c.ends_on) {
            continue;
        }
        let weekday = chrono::Datelike::weekday(&date).num_days_from_monday();
        for shift in shifts.iter().filter(|s| s.weekday == weekday) {
            let (Some(start), Some(end)) =
                (local_instant(tz, date, shift.start_minute, Edge::Start), local_instant(tz, date, shift.end_minute, Edge::End))
            else {
                continue;
            };
            let mut t = start;
            while t + len <= end {
                out.push(Interval { start: t, end: t + len });
                t += len;
            }
        }
    }
    out.sort();
    out
}

/// The real-time interval a wall-clock range covers on one local date (DST
/// aware, as for shifts), or `None` when it does not happen that day.
pub fn local_range(tz: Tz, date: NaiveDate, start_minute: u32, end_minute: u32) -> Option<Interval> {
    let start = local_instant(tz, date, start_minute, Edge::Start)?;
    let end = local_instant(tz, date, end_minute, Edge::End)?;
    (start < end).then_some(Interval { start, end })
}

#[derive(Clone, Copy)]
enum Edge {
    Start,
    End,
}

/// The instant a wall-clock time happens. In the spring gap the time does not
/// exist: move to the first instant after the gap. In the autumn overlap a
/// shift starts at the earlier instant and ends at the later one.
fn local_instant(tz: Tz, date: NaiveDate, minute: u32, edge: Edge) -> Option<DateTime<Utc>> {
    let naive = if minute >= 24 * 60 { date.succ_opt()?.and_hms_opt(0, 0, 0)? } else { date.and_hms_opt(minute / 60, minute % 60, 0)? };
    resolve(tz, naive, edge)
}

fn resolve(tz: Tz, naive: NaiveDateTime, edge: Edge) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => Some(
            match edge {
                Edge::Start => a.min(b),
                Edge::End => a.max(b),
            }
            .with_timezone(&Utc),
        ),
        LocalResult::None => {
            // Gaps are at most a few hours; the first existing minute after it.
            (1..=240).find_map(|m| match tz.from_local_datetime(&(naive + Duration::minutes(m))) {
                LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
                LocalResult::Ambiguous(a, _) => Some(a.with_timezone(&Utc)),
                LocalResult::None => None,
            })
        }
    }
}

/// Local calendar date of an instant in the clinic's zone.
pub fn local_date(tz: Tz, t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&tz).date_naive()
}

/// The instant a clinic-local day starts (its midnight; read as UTC in a
/// zone that skips that midnight).
pub fn day_start(tz: Tz, d: NaiveDate) -> DateTime<Utc> {
    let midnight = d.and_time(NaiveTime::MIN);
    tz.from_local_datetime(&midnight).earliest().map_or_else(|| midnight.and_utc(), |t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Europe::Madrid;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }
    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }
    fn every_day(start: u32, end: u32) -> Vec<Shift> {
        (0..7).map(|weekday| Shift { weekday, start_minute: start, end_minute: end }).collect()
    }

    #[test]
    fn morning_shift_on_spring_forward_sunday_is_in_summer_time() {
        // 2026-03-29 is the last Sunday of March: CET (+1) becomes CEST (+2) at 02:00.
        let slots = template_slots(&every_day(9 * 60, 10 * 60), &[], Madrid, 30, d("2026-03-28"), d("2026-03-29"));
        let starts: Vec<_> = slots.iter().map(|s| s.start).collect();
        assert_eq!(
            starts,
            vec![utc("2026-03-28T08:00:00Z"), utc("2026-03-28T08:30:00Z"), utc("2026-03-29T07:00:00Z"), utc("2026-03-29T07:30:00Z")]
        );
    }

    #[test]
    fn night_shift_across_the_spring_gap_skips_the_missing_hour() {
        let slots = template_slots(&every_day(60, 4 * 60), &[], Madrid, 30, d("2026-03-29"), d("2026-03-29"));
        let local: Vec<String> = slots.iter().map(|s| s.start.with_timezone(&Madrid).format("%H:%M%z").to_string()).collect();
        assert_eq!(local, ["01:00+0100", "01:30+0100", "03:00+0200", "03:30+0200"]);
    }

    #[test]
    fn night_shift_across_the_autumn_overlap_lasts_an_hour_longer() {
        // 2026-10-25 is the last Sunday of October: 03:00 CEST becomes 02:00 CET.
        let slots = template_slots(&every_day(60, 4 * 60), &[], Madrid, 30, d("2026-10-25"), d("2026-10-25"));
        let local: Vec<String> = slots.iter().map(|s| s.start.with_timezone(&Madrid).format("%H:%M%z").to_string()).collect();
        assert_eq!(local, ["01:00+0200", "01:30+0200", "02:00+0200", "02:30+0200", "02:00+0100", "02:30+0100", "03:00+0100", "03:30+0100"]);
        // and the day shift that Sunday is in winter time
        let day = template_slots(&every_day(9 * 60, 9 * 60 + 30), &[], Madrid, 30, d("2026-10-25"), d("2026-10-25"));
        assert_eq!(day[0].start, utc("2026-10-25T08:00:00Z"));
    }

    #[test]
    fn closures_remove_whole_days_and_weekdays_follow_the_template() {
        let shifts = [Shift { weekday: 0, start_minute: 9 * 60, end_minute: 10 * 60 }];
        let closures = [Closure { starts_on: d("2026-11-30"), ends_on: d("2026-11-30") }];
        // Mondays 23 Nov, 30 Nov (closed), 7 Dec.
        let slots = template_slots(&shifts, &closures, Madrid, 20, d("2026-11-23"), d("2026-12-07"));
        assert_eq!(slots.len(), 6);
        assert_eq!(local_date(Madrid, slots[3].start), d("2026-12-07"));
    }

    #[test]
    fn a_slot_that_would_overrun_the_shift_is_not_offered() {
        let shifts = [Shift { weekday: 0, start_minute: 9 * 60, end_minute: 9 * 60 + 50 }];
        assert_eq!(template_slots(&shifts, &[], Madrid, 20, d("2026-11-23"), d("2026-11-23")).len(), 2);
    }

    #[test]
    fn parts_of_day() {
        let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
        assert!(PartOfDay::Morning.contains(t(13, 45)));
        assert!(!PartOfDay::Morning.contains(t(14, 0)));
        assert!(PartOfDay::Afternoon.contains(t(18, 30)) && PartOfDay::Evening.contains(t(18, 30)));
        assert!(!PartOfDay::Afternoon.contains(t(20, 0)));
    }
}
