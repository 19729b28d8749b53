//! The feed's text and tokens, without a server.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::store::Channel;

fn config(patient_names: bool) -> (Config, CalendarConfig) {
    let config = crate::testing::demo_config();
    let cal = CalendarConfig { key: "k".repeat(32), patient_names, days_back: 14, days_ahead: 120 };
    (config, cal)
}

fn appointment(id: &str, status: AppointmentStatus, at: DateTime<Utc>) -> Appointment {
    Appointment {
        id: id.into(),
        patient_id: "p-1".into(),
        provider_id: "dr-sanchez".into(),
        specialty_id: "dermatology".into(),
        starts_at: at,
        ends_at: at + Duration::minutes(20),
        starts_at_local: String::new(),
        status,
        notes: Some("a private note".into()),
        created_by: "assistant".into(),
        created_channel: Channel::Phone,
        updated_by: "assistant".into(),
        updated_channel: Channel::Phone,
        created_at: at - Duration::days(3),
        updated_at: at - Duration::days(2),
    }
}

#[test]
fn each_provider_has_its_own_unguessable_token() {
    let key = "k".repeat(32);
    let a = feed_token(&key, "dr-sanchez");
    assert_eq!(a.len(), 32);
    assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(a, feed_token(&key, "dr-sanchez"), "stable");
    assert_ne!(a, feed_token(&key, "dr-garcia"));
    assert_ne!(a, feed_token(&"j".repeat(32), "dr-sanchez"), "a new key, new URLs");
    assert_eq!(feed_path(&key, "dr-sanchez"), format!("/calendar/dr-sanchez/{a}.ics"));
}

#[test]
fn events_name_the_specialty_not_the_patient_and_keep_cancelled_ones() {
    let (config, cal) = config(false);
    let at: DateTime<Utc> = "2026-11-30T15:00:00Z".parse().unwrap();
    let now: DateTime<Utc> = "2026-11-23T08:00:00Z".parse().unwrap();
    let list =
        [appointment("a1", AppointmentStatus::Confirmed, at), appointment("a2", AppointmentStatus::Cancelled, at + Duration::hours(1))];
    let names = HashMap::from([("p-1".to_string(), "María López García".to_string())]);
    let text = render(&config, &cal, "dr-sanchez", &list, &names, now);
    assert!(text.starts_with("BEGIN:VCALENDAR\r\n") && text.ends_with("END:VCALENDAR\r\n"), "{text}");
    assert!(text.contains("UID:a1@clinivox\r\n") && text.contains("UID:a2@clinivox\r\n"), "{text}");
    assert!(text.contains("DTSTART:20261130T150000Z\r\n") && text.contains("DTEND:20261130T152000Z\r\n"), "{text}");
    assert!(text.contains("DTSTAMP:20261123T080000Z\r\n"), "fixed, not the wall clock: {text}");
    assert!(text.contains("STATUS:CONFIRMED\r\n") && text.contains("STATUS:CANCELLED\r\n"), "{text}");
    assert!(text.contains("SUMMARY:Dermatología\r\n"), "{text}");
    assert!(!text.contains("María") && !text.contains("private note"), "no patient, no notes: {text}");
    assert!(text.lines().all(|l| l.len() <= 75), "folded at 75 octets: {text}");
}

#[test]
fn names_only_where_the_clinic_allows_them() {
    let (config, cal) = config(true);
    let at: DateTime<Utc> = "2026-11-30T15:00:00Z".parse().unwrap();
    let names = HashMap::from([("p-1".to_string(), "María López García".to_string())]);
    let text = render(&config, &cal, "dr-sanchez", &[appointment("a1", AppointmentStatus::Booked, at)], &names, at);
    assert!(text.contains("SUMMARY:Dermatología: María López García\r\n"), "{text}");
    assert!(text.contains("STATUS:TENTATIVE\r\n"), "{text}");
}
