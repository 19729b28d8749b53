use super::*;
use chrono_tz::Europe::Madrid;

fn policy() -> EscalationConfig {
    crate::testing::demo_config().escalation
}
fn utc(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}
fn local(t: DateTime<Utc>) -> String {
    t.with_timezone(&Madrid).format("%a %d %H:%M").to_string()
}
fn facts(starts: &str, sent: &str) -> Facts {
    Facts {
        status: AppointmentStatus::Booked,
        starts_at: utc(starts),
        reminder_sent_at: Some(utc(sent)),
        replied: false,
        contact_consent: true,
        attempts: vec![],
    }
}
fn no_holidays() -> BTreeSet<NaiveDate> {
    BTreeSet::new()
}
fn call_at(d: Decision) -> DateTime<Utc> {
    match d {
        Decision::CallAt(t) => t,
        other => panic!("expected a call, got {other:?}"),
    }
}

#[test]
fn waits_for_the_reply_window_then_calls_inside_calling_hours() {
    // Reminder Monday 23 Nov 10:00 Madrid; appointment Wednesday 25 Nov 10:00.
    let f = facts("2026-11-25T09:00:00Z", "2026-11-23T09:00:00Z");
    // Monday evening: nothing yet (24 h to reply).
    let t = call_at(decide(&policy(), Madrid, &no_holidays(), &f, utc("2026-11-23T19:00:00Z")));
    assert_eq!(local(t), "Tue 24 10:00", "24 h after the reminder, inside the window");
    // Asked late on Tuesday night: the next window is Wednesday 09:00, too close? min lead 2 h → 08:00 deadline.
    let d = decide(&policy(), Madrid, &no_holidays(), &f, utc("2026-11-24T21:00:00Z"));
    assert_eq!(d, Decision::Stop(StopReason::TooLate));
}

#[test]
fn never_calls_before_the_horizon_or_at_night_or_on_sundays() {
    // Appointment Tuesday 1 Dec 12:00; reminder long ago. Horizon 72 h → from Sat 28 Nov 12:00.
    let f = facts("2026-12-01T11:00:00Z", "2026-11-20T09:00:00Z");
    let t = call_at(decide(&policy(), Madrid, &no_holidays(), &f, utc("2026-11-23T08:00:00Z")));
    assert_eq!(local(t), "Sat 28 12:00");
    // Asked Saturday 15:00 (after the 10-14 window): Sunday is closed, Monday 09:00.
    let t = call_at(decide(&policy(), Madrid, &no_holidays(), &f, utc("2026-11-28T14:00:00Z")));
    assert_eq!(local(t), "Mon 30 09:00");
}

#[test]
fn holidays_are_skipped() {
    // Appointment Wednesday 9 Dec 18:00; Tuesday 8 Dec is a holiday.
    let f = facts("2026-12-09T17:00:00Z", "2026-12-06T19:00:00Z");
    let holidays: BTreeSet<_> = [NaiveDate::from_ymd_opt(2026, 12, 8).unwrap()].into();
    let t = call_at(decide(&policy(), Madrid, &holidays, &f, utc("2026-12-07T20:00:00Z")));
    assert_eq!(local(t), "Wed 09 09:00");
    let t = call_at(decide(&policy(), Madrid, &no_holidays(), &f, utc("2026-12-07T20:00:00Z")));
    assert_eq!(local(t), "Tue 08 09:00", "without the holiday, Tuesday");
}

#[test]
fn retries_are_spaced_and_move_to_another_part_of_the_day() {
    let mut f = facts("2026-11-26T16:00:00Z", "2026-11-23T09:00:00Z");
    f.attempts = vec![utc("2026-11-24T09:00:00Z")]; // Tue 10:00, no answer
    let t = call_at(decide(&policy(), Madrid, &no_holidays(), &f, utc("2026-11-24T09:05:00Z")));
    assert_eq!(local(t), "Tue 24 14:00", "the afternoon, at least 3 h later");
    f.attempts.push(utc("2026-11-24T14:00:00Z")); // Tue 15:00
    let t = call_at(decide(&policy(), Madrid, &no_holidays(), &f, utc("2026-11-24T14:05:00Z")));
    assert_eq!(local(t), "Wed 25 09:00", "back to a morning");
    f.attempts.push(t);
    assert_eq!(decide(&policy(), Madrid, &no_holidays(), &f, t), Decision::Stop(StopReason::AttemptsExhausted));
}

#[test]
fn stops_on_reply_change_or_opt_out() {
    let base = facts("2026-11-25T09:00:00Z", "2026-11-23T09:00:00Z");
    let now = utc("2026-11-24T10:00:00Z");
    let check = |f: Facts, why| assert_eq!(decide(&policy(), Madrid, &no_holidays(), &f, now), Decision::Stop(why));
    check(Facts { replied: true, ..base.clone() }, StopReason::Replied);
    check(Facts { status: AppointmentStatus::Confirmed, ..base.clone() }, StopReason::NotPending);
    check(Facts { status: AppointmentStatus::Cancelled, ..base.clone() }, StopReason::NotPending);
    check(Facts { contact_consent: false, ..base.clone() }, StopReason::OptedOut);
    check(Facts { reminder_sent_at: None, ..base.clone() }, StopReason::NoReminder);
    let off = EscalationConfig { enabled: false, ..policy() };
    assert_eq!(decide(&off, Madrid, &no_holidays(), &base, now), Decision::Stop(StopReason::Disabled));
}

#[test]
fn windows_follow_local_time_across_the_dst_change() {
    // Clocks go back on Sunday 25 Oct 2026. Appointment Tuesday 27 Oct 18:00 local.
    let f = facts("2026-10-27T17:00:00Z", "2026-10-23T08:00:00Z");
    // Asked Saturday 24 Oct 15:00 CEST (window 10-14 passed): Monday 26 Oct 09:00 CET = 08:00Z.
    let t = call_at(decide(&policy(), Madrid, &no_holidays(), &f, utc("2026-10-24T13:00:00Z")));
    assert_eq!(t, utc("2026-10-26T08:00:00Z"));
    // In spring: Monday 30 Mar 2026 09:00 CEST = 07:00Z.
    let f = facts("2026-03-31T16:00:00Z", "2026-03-27T08:00:00Z");
    let t = call_at(decide(&policy(), Madrid, &no_holidays(), &f, utc("2026-03-28T13:00:00Z")));
    assert_eq!(t, utc("2026-03-30T07:00:00Z"));
}
