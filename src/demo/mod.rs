//! The demo clinic's patients and appointments, seeded once into an empty
//! database so a newcomer can call, query and book right away.

pub mod history;

use chrono::{DateTime, Duration, NaiveDate, Utc};

use crate::phone::E164;
use crate::store::{Actor, Appointment, Channel, NewAppointment, NewPatient, Patient, SlotQuery, Store, StoreError};

/// (name, phone, date of birth, language, national id)
const PATIENTS: [(&str, &str, &str, &str, Option<&str>); 20] = [
    ("María López García", "+34600111222", "1948-03-14", "es", Some("12345678Z")),
    ("José Martínez Ruiz", "+34600222333", "1952-11-02", "es", None),
    ("Carmen Sánchez Díaz", "+34611333444", "1939-07-21", "es", Some("23456789D")),
    ("Antonio Gómez Navarro", "+34622444555", "1961-01-30", "es", None),
    ("Lucía Fernández Moreno", "+34633555666", "1987-05-09", "es", None),
    ("Manuel Jiménez Romero", "+34644666777", "1944-09-17", "es", None),
    ("Isabel Álvarez Torres", "+34655777888", "1975-12-03", "es", Some("34567890V")),
    ("Francisco Muñoz Gil", "+34666888999", "1958-04-25", "es", None),
    ("Pilar Romero Vázquez", "+34677999000", "1941-08-11", "es", None),
    ("Javier Ortega Serrano", "+34688000111", "1993-02-19", "es", None),
    ("Daniel Castro Molina", "+34699111000", "2016-06-01", "es", None),
    ("Elena Rubio Ramos", "+34699111000", "2019-10-12", "es", None),
    ("Sophie Turner", "+447700900123", "1980-03-08", "en", None),
    ("James Wilson", "+447700900456", "1955-12-24", "en", None),
    ("Giulia Rossi", "+393331234567", "1968-07-07", "it", None),
    ("Marco Bianchi", "+393479876543", "1947-01-15", "it", None),
    ("Ana Sousa", "+351912345678", "1972-09-29", "pt", None),
    ("João Ferreira", "+351936543210", "1950-04-04", "pt", None),
    ("Rosa Delgado Prieto", "+34910223344", "1936-11-30", "es", None),
    ("Miguel Herrera Cano", "+34600999888", "1999-08-16", "es", None),
];

/// (patient index, specialty, days ahead, confirmed)
const APPOINTMENTS: [(usize, &str, i64, bool); 8] = [
    (0, "dermatology", 1, false),
    (0, "cardiology", 8, true),
    (1, "general", 2, false),
    (2, "ophthalmology", 3, true),
    (10, "pediatrics", 1, false),
    (12, "general", 4, false),
    (14, "dentistry", 2, false),
    (16, "gynecology", 5, false),
];

/// What identifies the demo patients — full names, surnames, phone numbers
/// (national digits), dates of birth as said, keyed and stored, national
/// ids — for tests that check the log holds none of it.
pub fn identifiers() -> Vec<String> {
    let mut out = Vec::new();
    for (name, phone, dob, _, nid) in PATIENTS {
        out.push(name.to_string());
        out.extend(name.split_whitespace().skip(1).map(str::to_string));
        let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
        out.push(digits[digits.len().saturating_sub(9)..].to_string());
        if let Ok(d) = NaiveDate::parse_from_str(dob, "%Y-%m-%d") {
            out.push(dob.to_string());
            out.push(d.format("%d%m%Y").to_string());
            out.push(d.format("%d/%m/%Y").to_string());
        }
        out.extend(nid.map(str::to_string));
    }
    out.sort();
    out.dedup();
    out
}

#[derive(Debug, Default)]
pub struct Seeded {
    pub patients: Vec<Patient>,
    pub appointments: Vec<Appointment>,
}

/// Seeds the demo patients and appointments unless patients already exist.
pub async fn seed(store: &Store, now: DateTime<Utc>) -> Result<Seeded, StoreError> {
    if store.patient_count().await? > 0 {
        return Ok(Seeded::default());
    }
    let actor = Actor::new("demo", Channel::System);
    let mut seeded = Seeded::default();
    for (name, phone, dob, lang, nid) in PATIENTS {
        let new = NewPatient {
            name: name.into(),
            phones: vec![E164::parse(phone).map_err(|e| StoreError::Corrupt(e.to_string()))?],
            date_of_birth: NaiveDate::parse_from_str(dob, "%Y-%m-%d").map_err(|e| StoreError::Corrupt(e.to_string()))?,
            national_id: nid.map(str::to_string),
            preferred_language: lang.into(),
            contact_consent: true,
        };
        seeded.patients.push(store.create_patient(new, &actor, now).await?);
    }
    let today = crate::store::availability::local_date(store.timezone(), now);
    for (patient, specialty, days, confirmed) in APPOINTMENTS {
        // The first free slot on or after the target day, within a week.
        let from = today + Duration::days(days);
        let q = SlotQuery {
            specialty: Some(specialty.into()),
            from: Some(from),
            to: Some(from + Duration::days(7)),
            limit: Some(1),
            ..Default::default()
        };
        let Some(slot) = store.free_slots(&q, now).await?.into_iter().next() else { continue };
        let new = NewAppointment {
            patient_id: seeded.patients[patient].id.clone(),
            provider_id: slot.provider_id,
            starts_at: slot.starts_at,
            hold_token: None,
            notes: None,
        };
        let mut a = store.book(new, &actor, now).await?;
        if confirmed {
            a = store.confirm(&a.id, &actor, now).await?;
        }
        seeded.appointments.push(a);
    }
    Ok(seeded)
}
