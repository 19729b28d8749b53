//! Data-subject rights in the store: a patient with every kind of record is
//! exported whole, then erased; afterwards no text column in any table and
//! no file holds their identifiers, their recordings are gone, future
//! appointments are cancelled (slot free again), and the clinic's figures
//! count the same calls, appointments and attempts. Another patient's data
//! is untouched throughout.

use std::path::Path;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use clinivox::config::Config;
use clinivox::phone::E164;
use clinivox::store::*;

use super::{now, staff};

const NAME: &str = "Erasmo Borrado Quintanilla";
const PHONE_1: &str = "+34611222333";
const PHONE_2: &str = "+34611222444";
const BIRTH: &str = "1961-03-14";
const NATIONAL_ID: &str = "12345678Z";
const OTHER_NAME: &str = "Otilia Permanente Ruiz";
const OTHER_PHONE: &str = "+34699888777";

fn identifiers() -> Vec<String> {
    [NAME, PHONE_1, PHONE_2, BIRTH, NATIONAL_ID].map(String::from).to_vec()
}

/// What the scenario created, for the checks.
pub struct Seeded {
    pub patient: String,
    pub other: String,
    past: Appointment,
    future: Appointment,
    recording: std::path::PathBuf,
    other_recording: std::path::PathBuf,
    other_call: String,
    future_job: String,
    /// When the erasure runs: after the past appointment, before the future one.
    pub erase_at: DateTime<Utc>,
}

async fn slot(store: &Store, day: &str) -> Slot {
    let day = NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap();
    let q = SlotQuery { provider: Some("dr-sanchez".into()), from: Some(day), to: Some(day + Duration::days(6)), ..Default::default() };
    store.free_slots(&q, now()).await.unwrap().into_iter().next().expect("a free slot of dr-sanchez")
}

async fn call(store: &Store, from: &str, patient: Option<&str>, lines: &[&str], outcome: &str, recording: Option<&Path>) -> String {
    let new = NewCall {
        direction: "inbound".into(),
        remote_number: from.into(),
        patient_id: patient.map(str::to_string),
        language: Some("es".into()),
        appointment_id: None,
    };
    let c = store.start_call(new, now()).await.unwrap();
    for (i, text) in lines.iter().enumerate() {
        let speaker = if i % 2 == 0 { "caller" } else { "assistant" };
        let turn = NewTurn { speaker: speaker.into(), text: text.to_string(), confidence: Some(0.9), intent: None, latency_ms: None };
        store.add_turn(&c.id, turn, now()).await.unwrap();
    }
    store.finish_call(&c.id, outcome, patient, None, Some(&format!("resumen: {}", lines[0])), now()).await.unwrap();
    if let Some(path) = recording {
        std::fs::write(path, format!("RIFF…{}", lines[0])).unwrap();
        store.set_call_recording(&c.id, &path.display().to_string()).await.unwrap();
    }
    c.id
}

/// A demo-like patient with calls (turns, a recording), reminders, jobs,
/// callbacks, a waiting-list entry with a refill offer, audit entries, an
/// idempotent response and an access-log entry; and another patient.
pub async fn seed(store: &Store, recordings: &Path) -> Seeded {
    let new = |name: &str, phones: &[&str], nid: Option<&str>| NewPatient {
        name: name.into(),
        phones: phones.iter().map(|p| E164::parse(p).unwrap()).collect(),
        date_of_birth: NaiveDate::parse_from_str(BIRTH, "%Y-%m-%d").unwrap() + Duration::days(i64::from(nid.is_none()) * 400),
        national_id: nid.map(str::to_string),
        preferred_language: "es".into(),
        contact_consent: true,
    };
    let p = store.create_patient(new(NAME, &[PHONE_1], Some(NATIONAL_ID)), &staff(), now()).await.unwrap();
    let patch = PatientPatch { phones: Some(vec![E164::parse(PHONE_1).unwrap(), E164::parse(PHONE_2).unwrap()]), ..Default::default() };
    store.update_patient(&p.id, patch, &staff(), now()).await.unwrap();
    let q = store.create_patient(new(OTHER_NAME, &[OTHER_PHONE], None), &staff(), now()).await.unwrap();

    let book = |patient: &str, s: &Slot, notes: Option<&str>| NewAppointment {
        patient_id: patient.into(),
        provider_id: s.provider_id.clone(),
        starts_at: s.starts_at,
        hold_token: None,
        notes: notes.map(str::to_string),
    };
    let past_slot = slot(store, "2026-11-24").await;
    let past = store.book(book(&p.id, &past_slot, Some(&format!("{NAME} trae informes"))), &staff(), now()).await.unwrap();
    store.confirm(&past.id, &staff(), now()).await.unwrap();
    let future_slot = slot(store, "2026-12-14").await;
    let future = store.book(book(&p.id, &future_slot, None), &staff(), now()).await.unwrap();
    let freed_slot = slot(store, "2026-12-21").await;
    let freed = store.book(book(&q.id, &freed_slot, None), &staff(), now()).await.unwrap();
    store.cancel(&freed.id, &staff(), now()).await.unwrap();

    let reminder = NewReminder { appointment_id: future.id.clone(), channel: ReminderChannel::Sms, sent_at: now(), external_id: None };
    let (reminder, _) = store.record_reminder(reminder, now()).await.unwrap();
    store.record_reply(&reminder.id, ReplyKind::Other, Some(format!("Soy {NAME}, ¿me llaman al {PHONE_2}?")), now()).await.unwrap();

    // A finished escalation call about the past appointment, a pending one about the future.
    store.enqueue_job("escalation", &past.id, &p.id, now(), now()).await.unwrap().expect("new job");
    let job = store.claim_job("escalation", "node-a", Duration::minutes(15), now()).await.unwrap().expect("due");
    store.finish_attempt(&job.id, "node-a", "confirmed", None, now()).await.unwrap();
    let future_job = store.enqueue_job("escalation", &future.id, &p.id, now() + Duration::days(10), now()).await.unwrap().expect("new");
    let attempt = NewCall {
        direction: "outbound".into(),
        remote_number: PHONE_1.into(),
        patient_id: Some(p.id.clone()),
        language: Some("es".into()),
        appointment_id: Some(past.id.clone()),
    };
    store.record_unanswered_call(attempt, "no_answer", now(), now()).await.unwrap();

    let recording = recordings.join("erasmo.wav");
    let said = format!("Hola, soy {NAME}, nací el 14 de marzo, DNI {NATIONAL_ID}");
    call(store, PHONE_1, Some(&p.id), &[&said, "Le doy cita"], "booked", Some(&recording)).await;
    // Unidentified, from their second number: theirs too.
    let anonymous = call(store, PHONE_2, None, &["Quiero hablar con el médico", "Le llamarán"], "callback", None).await;
    let cb = |call: Option<String>, patient: Option<&str>, name: &str, phone: &str| NewCallback {
        call_id: call,
        patient_id: patient.map(str::to_string),
        name: name.into(),
        phone: phone.into(),
        reason: format!("llamar a {name}"),
        language: "es".into(),
        promised: "2026-11-23 16:00".into(),
    };
    store.create_callback(cb(Some(anonymous), None, "Erasmo B.", PHONE_2), &staff(), now()).await.unwrap();
    store.create_callback(cb(None, Some(&p.id), NAME, PHONE_1), &staff(), now()).await.unwrap();

    let other_recording = recordings.join("otilia.wav");
    let other_call = call(store, OTHER_PHONE, Some(&q.id), &[&format!("Soy {OTHER_NAME}"), "Dígame"], "info", Some(&other_recording)).await;
    store.create_callback(cb(None, Some(&q.id), OTHER_NAME, OTHER_PHONE), &staff(), now()).await.unwrap();

    let entry = NewWaitlistEntry {
        patient_id: p.id.clone(),
        specialty_id: past.specialty_id.clone(),
        provider_id: None,
        earliest: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
        latest: NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
        notes: Some(format!("{NAME} prefiere mañanas")),
    };
    let entry = store.waitlist_add(entry, &staff(), now()).await.unwrap();
    let refill = store.enqueue_job("refill", &freed.id, &q.id, now(), now()).await.unwrap().expect("new");
    store.record_offer(&refill.id, &entry, now()).await.unwrap();

    assert!(matches!(store.idempotency_start("demo-write", "k-p", "h", now()).await.unwrap(), IdempotencyStart::Proceed));
    store
        .idempotency_finish("demo-write", "k-p", 201, &serde_json::to_string(&store.patient(&p.id).await.unwrap()).unwrap())
        .await
        .unwrap();
    assert!(matches!(store.idempotency_start("demo-write", "k-q", "h", now()).await.unwrap(), IdempotencyStart::Proceed));
    store.idempotency_finish("demo-write", "k-q", 201, &serde_json::to_string(&q).unwrap()).await.unwrap();
    store.record_access("reception-app", "GET /patients/{id}", &[(p.id.clone(), None)], now()).await.unwrap();

    Seeded {
        patient: p.id,
        other: q.id,
        erase_at: past.starts_at + Duration::days(1),
        past,
        future,
        recording,
        other_recording,
        other_call,
        future_job: future_job.id,
    }
}

/// The store's counts for `/metrics`, less what an erasure is meant to move:
/// live → cancelled appointments, open → cancelled jobs, the waiting list.
fn figures(samples: Vec<Sample>) -> Vec<String> {
    let mut out: Vec<String> = samples
        .into_iter()
        .filter(|(name, labels, _)| match *name {
            "clinivox_appointments" => !labels.iter().any(|(_, v)| ["booked", "confirmed", "cancelled"].contains(&v.as_str())),
            "clinivox_jobs" | "clinivox_waitlist_active" => false,
            _ => true,
        })
        .map(|(name, labels, n)| format!("{name}{labels:?} {n}"))
        .collect();
    out.sort();
    out
}

fn count(samples: &[Sample], metric: &str, label: Option<&str>) -> i64 {
    samples.iter().filter(|(n, l, _)| *n == metric && label.is_none_or(|x| l.iter().any(|(_, v)| v == x))).map(|s| s.2).sum()
}

pub async fn subject_export_and_erasure(store: Store, _: Config) {
    let dir = tempfile::tempdir().unwrap();
    let s = seed(&store, dir.path()).await;
    check_export_and_erasure(&store, &s).await;
}

/// The export holds every kind of record; erasure then leaves nothing.
pub async fn check_export_and_erasure(store: &Store, s: &Seeded) {
    let doc = store.export_patient(&s.patient, now()).await.unwrap();
    assert_eq!((doc.patient.name.as_str(), doc.patient.phones.len()), (NAME, 2));
    assert_eq!(doc.appointments.len(), 2);
    assert!(doc.appointments.iter().all(|a| !a.history.is_empty()), "each appointment with its history");
    assert_eq!(doc.reminders.len(), 1);
    assert!(doc.reminders[0].reply_text.as_deref().is_some_and(|t| t.contains(NAME)));
    assert_eq!(doc.calls.len(), 3, "their call, the unidentified one from their number, the escalation attempt");
    assert!(doc.calls.iter().all(|c| c.call.id != s.other_call));
    let recorded = doc.calls.iter().find(|c| c.call.recording_path.is_some()).expect("the recorded call");
    assert_eq!(recorded.call.recording_path.as_deref(), Some(s.recording.display().to_string().as_str()));
    assert!(recorded.turns.iter().any(|t| t.text.contains(NATIONAL_ID)));
    assert_eq!(doc.jobs.len(), 2);
    assert_eq!(doc.jobs.iter().map(|j| j.attempts.len()).sum::<usize>(), 1);
    assert_eq!(doc.callbacks.len(), 2);
    assert_eq!((doc.waitlist.len(), doc.refill_offers.len()), (1, 1));
    let audited: Vec<(&str, &str)> = doc.audit.iter().map(|a| (a.entity.as_str(), a.entry.action.as_str())).collect();
    for expected in [("patient", "create"), ("patient", "update"), ("callback_request", "create"), ("waitlist", "add")] {
        assert!(audited.contains(&expected), "{expected:?} in {audited:?}");
    }
    assert_eq!(doc.access_log.len(), 1);
    assert_eq!(doc.access_log[0].actor, "reception-app");
    let whole = serde_json::to_string(&doc).unwrap();
    assert!(!whole.contains(OTHER_NAME) && !whole.contains(OTHER_PHONE), "nothing of another patient");

    // The scan finds the identifiers where they are, so "none after" means something.
    let before: Vec<String> =
        store.find_text(&identifiers()).await.unwrap().into_iter().map(|h| format!("{}.{}", h.table, h.column)).collect();
    for place in [
        "patients.name",
        "patient_phones.phone",
        "callback_requests.name",
        "callback_requests.phone",
        "calls.remote_number",
        "calls.summary",
        "call_turns.text",
        "audit_log.after",
        "idempotency_keys.body",
        "reminders.reply_text",
        "appointments.notes",
        "waitlist.notes",
    ] {
        assert!(before.iter().any(|b| b == place), "{place} in {before:?}");
    }
    let figures_before = store.metric_samples().await.unwrap();

    let erasing = Actor::new("dpo-token", Channel::Api);
    let r = store.erase_patient(&s.patient, &erasing, s.erase_at).await.unwrap();
    assert_eq!((r.appointments_cancelled, r.appointments_kept), (1, 1));
    assert_eq!((r.calls_anonymised, r.recordings_deleted, r.callbacks_anonymised), (3, 1, 2));
    assert_eq!((r.waitlist_entries_removed, r.jobs_cancelled), (1, 1));
    assert!(r.idempotency_responses_cleared >= 1);
    assert_eq!(r.residual, Vec::<TextHit>::new());

    assert_eq!(store.find_text(&identifiers()).await.unwrap(), Vec::<TextHit>::new(), "no table holds an identifier");
    assert!(!s.recording.exists(), "their recording is deleted");
    assert!(s.other_recording.exists(), "another patient's recording stays");
    assert!(matches!(store.patient(&s.patient).await, Err(StoreError::Gone(_))));
    assert!(matches!(store.erase_patient(&s.patient, &erasing, s.erase_at).await, Err(StoreError::Gone(_))));
    assert!(matches!(store.erase_patient("no-such-patient", &erasing, s.erase_at).await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.export_patient(&s.patient, s.erase_at).await, Err(StoreError::Gone(_))));

    // The figures count the same calls, attempts and appointments.
    let after = store.metric_samples().await.unwrap();
    assert_eq!(figures(after.clone()), figures(figures_before.clone()));
    assert_eq!(count(&after, "clinivox_appointments", None), count(&figures_before, "clinivox_appointments", None));
    assert_eq!(
        count(&after, "clinivox_appointments", Some("cancelled")),
        count(&figures_before, "clinivox_appointments", Some("cancelled")) + 1
    );
    assert_eq!(count(&after, "clinivox_jobs", None), count(&figures_before, "clinivox_jobs", None));
    assert_eq!(count(&after, "clinivox_calls_total", None), count(&figures_before, "clinivox_calls_total", None));
    let past = store.appointment(&s.past.id).await.unwrap();
    assert_eq!((past.status, past.notes), (AppointmentStatus::Confirmed, None), "the past appointment stays, anonymous");
    assert_eq!(store.appointment(&s.future.id).await.unwrap().status, AppointmentStatus::Cancelled);
    assert_eq!(store.job(&s.future_job).await.unwrap().status, "cancelled");
    // The freed slot can be booked again.
    let rebook = NewAppointment {
        patient_id: s.other.clone(),
        provider_id: s.future.provider_id.clone(),
        starts_at: s.future.starts_at,
        hold_token: None,
        notes: None,
    };
    store.book(rebook, &staff(), s.erase_at).await.expect("the slot is free again");

    // The erasure is audited, without personal data.
    let history = store.audit_log("patient", &s.patient).await.unwrap();
    let last = history.last().unwrap();
    assert_eq!((last.action.as_str(), last.actor.as_str(), last.before.as_deref()), ("erase", "dpo-token", None));
    assert!(history.iter().all(|h| h.before.is_none() && h.after.as_deref().is_none_or(|a| !a.contains(NAME))));
    // The other patient is untouched, and their access log outlives erasures.
    assert_eq!(store.patient(&s.other).await.unwrap().name, OTHER_NAME);
    assert_eq!(store.call(&s.other_call).await.unwrap().turns.len(), 2);
    assert!(store.find_text(&[OTHER_NAME.to_string()]).await.unwrap().len() >= 3, "their data stays");
    assert_eq!(store.access_log_of(&s.patient).await.unwrap().len(), 1);
}

/// SQLite only: the database files themselves (database and WAL) hold none
/// of the patient's identifiers once erased: nothing in free pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_files_keep_nothing_of_an_erased_patient() {
    let dir = tempfile::tempdir().unwrap();
    let config = clinivox::testing::demo_config();
    let store = clinivox::testing::sqlite_store(dir.path(), &config).await.unwrap();
    let s = seed(&store, dir.path()).await;
    let before = files_holding(dir.path(), NAME);
    assert!(!before.is_empty(), "the scan finds the name before");
    store.erase_patient(&s.patient, &staff(), s.erase_at).await.unwrap();
    for needle in identifiers() {
        assert_eq!(files_holding(dir.path(), &needle), Vec::<String>::new(), "{needle}");
    }
    store.close().await;
}

fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            out.push(path.display().to_string());
        }
    }
    out
}
