//! The outbound flow with a fake store. Above all the disclosure rule:
//! until the patient is on the line and verified, nothing but the clinic's
//! name and the patient's name is said.

use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};

use super::*;
use crate::conversation::{Action, Context, Conversation, Direction, Language, StoreReply, StoreRequest};
use crate::store::{AppointmentStatus, Channel};

fn t0() -> DateTime<Utc> {
    // Monday 23 November 2026, 10:00 in Madrid.
    "2026-11-23T09:00:00Z".parse().unwrap()
}

fn ctx(lang: &str) -> Context {
    let config = crate::testing::demo_config();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
    Context {
        language: Arc::new(Language::load(&dir, lang).unwrap()),
        vocabulary: Arc::new(crate::conversation::nlu::Vocabulary::from_config(&config)),
        config: Arc::new(config),
        direction: Direction::Inbound,
        caller: None,
    }
}

fn maria() -> Patient {
    Patient {
        id: "p-maria".into(),
        name: "María López García".into(),
        phones: vec!["+34600111222".into()],
        date_of_birth: NaiveDate::from_ymd_opt(1948, 3, 14).unwrap(),
        national_id: None,
        preferred_language: "es".into(),
        contact_consent: true,
        created_at: t0(),
        updated_at: t0(),
    }
}

/// Dermatology with Dr. Pablo Sánchez, Wednesday 25 November at 9:00 Madrid.
fn appointment(status: AppointmentStatus) -> Appointment {
    let starts_at: DateTime<Utc> = "2026-11-25T08:00:00Z".parse().unwrap();
    Appointment {
        id: "a-1".into(),
        patient_id: "p-maria".into(),
        provider_id: "dr-sanchez".into(),
        specialty_id: "dermatology".into(),
        starts_at,
        ends_at: starts_at + Duration::minutes(20),
        starts_at_local: "2026-11-25T09:00:00+01:00".into(),
        status,
        notes: None,
        created_by: "api".into(),
        created_channel: Channel::Api,
        updated_by: "api".into(),
        updated_channel: Channel::Api,
        created_at: t0(),
        updated_at: t0(),
    }
}

fn confirm_call() -> Outreach {
    Outreach::Confirm { patient: maria(), appointment: appointment(AppointmentStatus::Booked) }
}

fn offer_call() -> Outreach {
    let starts_at: DateTime<Utc> = "2026-11-24T10:00:00Z".parse().unwrap();
    Outreach::Offer {
        patient: maria(),
        hold: Hold { token: "h-1".into(), provider_id: "dr-sanchez".into(), starts_at, expires_at: starts_at },
        entry: WaitlistEntry {
            id: "w-1".into(),
            patient_id: "p-maria".into(),
            specialty_id: "dermatology".into(),
            provider_id: None,
            earliest: NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
            latest: NaiveDate::from_ymd_opt(2026, 12, 23).unwrap(),
            notes: None,
            created_at: t0(),
        },
    }
}

// drain/said/asks: the conversation tests' helpers.
use crate::conversation::tests::{asks, drain, said};

/// Words that would give the appointment (or the clinic's line of work) away.
fn assert_discloses_nothing(text: &str) {
    let lower = text.to_lowercase();
    for word in
        ["dermat", "sánchez", "pablo", "miércoles", "25", "noviembre", "9:00", "cita", "appointment", "lista de espera", "martes", "24"]
    {
        assert!(!lower.contains(word), "disclosed {word:?} in: {text}");
    }
}

/// Runs one caller turn; returns everything the conversation did.
fn turn(c: &mut Conversation, at: i64, text: &str) -> Vec<Action> {
    c.handle_utterance(t0() + Duration::seconds(at), text, 0.9);
    drain(c)
}

#[test]
fn greets_with_the_clinic_and_asks_for_the_patient_by_name_only() {
    let mut c = Conversation::new_outreach(ctx("es"), t0(), confirm_call());
    let out = drain(&mut c);
    let text = said(&out);
    assert!(text.starts_with("Buenos días, le llamamos de Clínica San Rafael."), "{text}");
    assert!(text.contains("¿Hablo con María López?"), "{text}");
    assert_discloses_nothing(&text);
    let started = out.iter().any(|a| {
        matches!(a, Action::Store(StoreRequest::StartCall { direction: Direction::Outbound, remote_number, .. }) if remote_number == "+34600111222")
    });
    assert!(started, "{out:#?}");
    assert_eq!(c.outreach_result(), None);
}

#[test]
fn a_bare_hello_is_answered_with_the_question_again() {
    let mut c = Conversation::new_outreach(ctx("es"), t0(), confirm_call());
    drain(&mut c);
    let again = said(&turn(&mut c, 3, "¿Diga?"));
    assert_eq!(again, "¿Hablo con María López? Diga sí o pulse 1; si no, diga no o pulse 2.");
    assert!(said(&turn(&mut c, 6, "sí")).contains("fecha de nacimiento"));
}

#[test]
fn wrong_person_who_cannot_fetch_the_patient_hears_nothing() {
    let mut c = Conversation::new_outreach(ctx("es"), t0(), confirm_call());
    let mut all = drain(&mut c);
    all.extend(turn(&mut c, 5, "no, soy su hija"));
    assert!(said(&all).contains("¿Podría ponerse María López al teléfono?"), "{}", said(&all));
    let last = turn(&mut c, 10, "no, ahora no está");
    assert!(said(&last).contains("Volveremos a llamar más tarde"), "{}", said(&last));
    assert!(last.contains(&Action::Hangup));
    all.extend(last);
    assert_discloses_nothing(&said(&all));
    assert!(c.is_ended());
    assert_eq!(c.outreach_result(), Some(OutreachResult::Reminder(CallOutcome::WrongPerson)));
    // The call record is not linked to anyone: nobody was verified.
    let finish = all.iter().find_map(|a| match a {
        Action::Store(StoreRequest::FinishCall { patient_id, .. }) => Some(patient_id.clone()),
        _ => None,
    });
    assert_eq!(finish, Some(None));
}

#[test]
fn failed_verification_discloses_nothing() {
    let mut c = Conversation::new_outreach(ctx("es"), t0(), confirm_call());
    let mut all = drain(&mut c);
    all.extend(turn(&mut c, 5, "sí, soy yo"));
    assert!(said(&all).contains("fecha de nacimiento"), "{}", said(&all));
    let miss = turn(&mut c, 10, "uno de enero de mil novecientos cincuenta");
    assert!(said(&miss).contains("no coincide"), "{}", said(&miss));
    all.extend(miss);
    // Second wrong date, by keypad this time.
    for (i, k) in "02021950".chars().enumerate() {
        c.handle_dtmf(t0() + Duration::seconds(20 + i as i64), k);
        all.extend(drain(&mut c));
    }
    assert!(said(&all).contains("no puedo verificar sus datos"), "{}", said(&all));
    assert!(all.contains(&Action::Hangup));
    assert_discloses_nothing(&said(&all));
    assert_eq!(c.outreach_result(), Some(OutreachResult::Reminder(CallOutcome::WrongPerson)));
}

#[test]
fn an_inbound_wish_from_an_unverified_person_starts_nothing() {
    let mut c = Conversation::new_outreach(ctx("es"), t0(), confirm_call());
    let mut all = drain(&mut c);
    all.extend(turn(&mut c, 5, "quiero cancelar la cita"));
    all.extend(turn(&mut c, 10, "cuándo tengo la cita"));
    assert!(asks(&all).is_empty(), "{all:#?}");
    assert_discloses_nothing(&said(&all));
    assert!(c.is_ended());
    assert_eq!(c.outreach_result(), Some(OutreachResult::Reminder(CallOutcome::NoAnswer)));
}

#[test]
fn verified_by_keypad_then_confirms() {
    let mut c = Conversation::new_outreach(ctx("es"), t0(), confirm_call());
    drain(&mut c);
    turn(&mut c, 5, "sí");
    let mut out = Vec::new();
    for (i, k) in "14031948".chars().enumerate() {
        c.handle_dtmf(t0() + Duration::seconds(10 + i as i64), k);
        out.extend(drain(&mut c));
    }
    let text = said(&out);
    assert!(text.contains("Gracias, María."), "{text}");
    assert!(text.contains("dermatología del miércoles 25 de noviembre a las 9:00 con Dr. Pablo Sánchez"), "{text}");
    c.handle_dtmf(t0() + Duration::seconds(30), '1');
    let out = drain(&mut c);
    assert_eq!(asks(&out), vec![StoreRequest::Confirm { appointment_id: "a-1".into() }]);
    assert_eq!(c.outreach_result(), None, "not decided before the store answers");
    c.handle_store_reply(StoreReply::Appointment(appointment(AppointmentStatus::Confirmed)));
    assert!(said(&drain(&mut c)).contains("queda confirmada"));
    assert_eq!(c.outreach_result(), Some(OutreachResult::Reminder(CallOutcome::Confirmed)));
    let bye = turn(&mut c, 40, "no, gracias");
    assert!(said(&bye).contains("Gracias por atendernos"), "{}", said(&bye));
    assert_eq!(c.outreach_result(), Some(OutreachResult::Reminder(CallOutcome::Confirmed)));
}

#[test]
fn the_patient_fetched_to_the_phone_is_asked_again() {
    let mut c = Conversation::new_outreach(ctx("es"), t0(), confirm_call());
    drain(&mut c);
    turn(&mut c, 5, "no");
    assert!(said(&turn(&mut c, 10, "sí, un momento")).contains("espero"));
    // Silence while they go and fetch her is no reason to speak.
    for i in 0..3 {
        c.handle_silence(t0() + Duration::seconds(20 + 8 * i));
        assert!(drain(&mut c).iter().all(|a| !matches!(a, Action::Say { .. } | Action::Hangup)));
    }
    let again = turn(&mut c, 50, "¿sí? ¿dígame?");
    assert!(said(&again).contains("¿Hablo con María López?"), "{}", said(&again));
    assert!(said(&turn(&mut c, 55, "sí, soy yo")).contains("fecha de nacimiento"));
    let out = turn(&mut c, 60, "catorce de marzo de mil novecientos cuarenta y ocho");
    assert!(said(&out).contains("dermatología"), "{}", said(&out));
}

#[test]
fn nobody_comes_to_the_phone() {
    let mut c = Conversation::new_outreach(ctx("es"), t0(), confirm_call());
    let mut all = drain(&mut c);
    all.extend(turn(&mut c, 5, "no"));
    all.extend(turn(&mut c, 10, "sí, ahora se pone"));
    for i in 0..4 {
        c.handle_silence(t0() + Duration::seconds(20 + 8 * i));
        all.extend(drain(&mut c));
    }
    assert!(said(&all).ends_with("Volveremos a llamar más tarde. Gracias, adiós."), "{}", said(&all));
    assert_discloses_nothing(&said(&all));
    assert_eq!(c.outreach_result(), Some(OutreachResult::Reminder(CallOutcome::NoAnswer)));
}

#[test]
fn offer_declined_and_accepted() {
    let mut c = Conversation::new_outreach(ctx("es"), t0(), offer_call());
    drain(&mut c);
    turn(&mut c, 5, "sí");
    let out = turn(&mut c, 10, "14 de marzo de 1948");
    assert!(said(&out).contains("se ha liberado una cita el martes 24 de noviembre a las 11:00 con Dr. Pablo Sánchez"), "{}", said(&out));
    let no = turn(&mut c, 15, "no, gracias");
    assert!(no.contains(&Action::Hangup));
    assert_eq!(c.outreach_result(), Some(OutreachResult::Offer(OfferOutcome::Declined)));

    let mut c = Conversation::new_outreach(ctx("es"), t0(), offer_call());
    drain(&mut c);
    turn(&mut c, 5, "sí");
    turn(&mut c, 10, "14 de marzo de 1948");
    let yes = turn(&mut c, 15, "sí, la quiero");
    assert_eq!(asks(&yes), vec![StoreRequest::UpcomingAppointments { patient_id: "p-maria".into() }]);
    // A later dermatology appointment moves into the freed slot.
    c.handle_store_reply(StoreReply::Appointments(vec![appointment(AppointmentStatus::Booked)]));
    let out = drain(&mut c);
    let starts_at: DateTime<Utc> = "2026-11-24T10:00:00Z".parse().unwrap();
    let want = StoreRequest::Reschedule {
        appointment_id: "a-1".into(),
        provider_id: "dr-sanchez".into(),
        starts_at,
        hold_token: Some("h-1".into()),
    };
    assert_eq!(asks(&out), vec![want]);
    let mut moved = appointment(AppointmentStatus::Booked);
    moved.starts_at = starts_at;
    c.handle_store_reply(StoreReply::Appointment(moved));
    assert!(said(&drain(&mut c)).contains("es ahora el martes 24 de noviembre a las 11:00"));
    assert_eq!(c.outreach_result(), Some(OutreachResult::Offer(OfferOutcome::Accepted)));
}

#[test]
fn hanging_up_before_anything_is_decided_is_no_answer() {
    let mut c = Conversation::new_outreach(ctx("en"), t0(), offer_call());
    let text = said(&drain(&mut c));
    assert!(text.contains("Good morning, this is Clínica San Rafael calling."), "{text}");
    c.handle_hangup(t0() + Duration::seconds(3));
    assert_eq!(c.outreach_result(), Some(OutreachResult::Offer(OfferOutcome::NoAnswer)));
    let inbound = Conversation::new(ctx("es"), t0());
    assert_eq!(inbound.outreach_result(), None);
}

#[test]
fn the_patients_language_is_used_when_the_clinic_speaks_it() {
    let config = crate::testing::demo_config();
    let mut call = confirm_call();
    assert_eq!(call.language_for(&config), "es");
    if let Outreach::Confirm { patient, .. } = &mut call {
        patient.preferred_language = "it".into();
    }
    assert_eq!(call.language_for(&config), "it");
    if let Outreach::Confirm { patient, .. } = &mut call {
        patient.preferred_language = "de".into();
    }
    assert_eq!(call.language_for(&config), config.clinic.languages[0]);
}

#[test]
fn voicemail_gives_the_clinic_and_its_number_only() {
    for lang in ["es", "en", "it"] {
        let text = voicemail_message(&ctx(lang));
        assert!(text.contains("Clínica San Rafael") && text.contains("3 4, 9 1 1, 2 3 4, 5 6 7"), "{lang}: {text}");
        assert_discloses_nothing(&text);
    }
    assert_eq!(
        voicemail_message(&ctx("en")),
        "Hello, this is Clínica San Rafael. Please call us back at 3 4, 9 1 1, 2 3 4, 5 6 7. Thank you."
    );
}
