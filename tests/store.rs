//! The appointment store against SQLite and PostgreSQL: every scenario runs on
//! both engines (PostgreSQL at CLINIVOX_TEST_PG_URL, default 127.0.0.1:5432/test).

#[macro_use]
mod support;

use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use clinivox::config::Config;
use clinivox::phone::E164;
use clinivox::store::*;
use clinivox::testing;

/// Monday 23 November 2026, 09:00 in Madrid.
fn now() -> DateTime<Utc> {
    "2026-11-23T08:00:00Z".parse().unwrap()
}
fn utc(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}
fn staff() -> Actor {
    Actor::new("test-reception", Channel::Staff)
}

on_both_engines!(
    booking_race_has_exactly_one_winner,
    holds_reserve_a_slot_until_they_expire,
    reschedule_is_atomic,
    cancelling_frees_the_slot_and_everything_is_audited,
    slots_follow_templates_holidays_and_absences,
    patients_by_phone_and_updates,
    calls_keep_their_transcript,
    idempotency_keys_replay_and_detect_mismatch,
    waitlist_add_list_remove,
    dst_sundays_on_a_sunday_clinic,
    assistant_turns_carry_their_timings,
    unanswered_calls_are_recorded_whole,
    retention_removes_what_is_past_its_period_and_nothing_younger,
    an_abandoned_booking_is_answered_on_retry_and_never_booked_twice,
    subject_export_and_erasure,
    identity_failures_count_per_subject_in_a_window,
    webhooks_deliver_every_event_once_signed,
    webhooks_survive_a_receiver_down_and_a_dead_node,
    webhooks_give_up_after_a_day,
    webhooks_tell_of_an_erasures_cancellations,
    webhooks_two_nodes_send_each_event_once,
);

#[path = "store/subject.rs"]
mod subject;
use subject::subject_export_and_erasure;

#[path = "store/webhooks.rs"]
mod webhooks;
use webhooks::*;

/// `[privacy]` retention with simulated time: data older than its period
/// goes (recordings from disk too), younger data and the call records
/// themselves stay; a dry run counts the same and changes nothing.
async fn retention_removes_what_is_past_its_period_and_nothing_younger(store: Store, _: Config) {
    let dir = tempfile::tempdir().unwrap();
    let old = now() - Duration::days(40);
    let young = now() - Duration::days(5);
    let p = store
        .create_patient(
            NewPatient {
                name: "Retención Antigua".into(),
                phones: vec![E164::parse("+34600777111").unwrap()],
                date_of_birth: NaiveDate::from_ymd_opt(1950, 1, 2).unwrap(),
                national_id: Some("99999999R".into()),
                preferred_language: "es".into(),
                contact_consent: true,
            },
            &staff(),
            old,
        )
        .await
        .unwrap();
    store
        .update_patient(&p.id, PatientPatch { preferred_language: Some("en".into()), ..Default::default() }, &staff(), young)
        .await
        .unwrap();

    let mut calls = Vec::new();
    for (at, name) in [(old, "old"), (young, "young")] {
        let new = NewCall {
            direction: "inbound".into(),
            remote_number: "+34600777111".into(),
            patient_id: Some(p.id.clone()),
            language: None,
            appointment_id: None,
        };
        let call = store.start_call(new, at).await.unwrap();
        let turn = NewTurn { speaker: "caller".into(), text: format!("mi cita {name}"), confidence: None, intent: None, latency_ms: None };
        store.add_turn(&call.id, turn, at).await.unwrap();
        store.finish_call(&call.id, "transferred", Some(&p.id), Some("reception"), Some("dermatología, urgente"), at).await.unwrap();
        let wav = dir.path().join(format!("{name}.wav"));
        std::fs::write(&wav, b"RIFF").unwrap();
        store.set_call_recording(&call.id, &wav.display().to_string()).await.unwrap();
        calls.push((call.id, wav));
    }
    for (at, key) in [(now() - Duration::days(2), "old-key"), (now() - Duration::hours(1), "young-key")] {
        assert!(matches!(store.idempotency_start("api", key, "h", at).await.unwrap(), IdempotencyStart::Proceed));
        store.idempotency_finish("api", key, 201, "{\"patient\":\"…\"}").await.unwrap();
    }
    for (at, hour) in [(old, "09"), (young, "10")] {
        let a = store
            .book(
                NewAppointment {
                    patient_id: p.id.clone(),
                    provider_id: "dr-sanchez".into(),
                    starts_at: utc(&format!("2026-12-07T{hour}:00:00Z")),
                    hold_token: None,
                    notes: None,
                },
                &staff(),
                at,
            )
            .await
            .unwrap();
        store.enqueue_job("escalation", &a.id, &p.id, at, at).await.unwrap().expect("a new job");
        let job = store.claim_job("escalation", "node-a", Duration::minutes(15), at).await.unwrap().expect("due");
        store.finish_attempt(&job.id, "node-a", "confirmed", None, at).await.unwrap();
        let new = NewCallback {
            call_id: None,
            patient_id: Some(p.id.clone()),
            name: "Retención".into(),
            phone: "+34600777111".into(),
            reason: "r".into(),
            language: "es".into(),
            promised: "2026-10-14 09:00".into(),
        };
        let cb = store.create_callback(new, &staff(), at).await.unwrap();
        store.callback_done(&cb.id, &staff(), at).await.unwrap();
    }
    let open = NewCallback {
        call_id: None,
        patient_id: Some(p.id.clone()),
        name: "Abierta".into(),
        phone: "+34600777111".into(),
        reason: "r".into(),
        language: "es".into(),
        promised: "2026-10-14 09:00".into(),
    };
    store.create_callback(open, &staff(), old).await.unwrap();
    let subjects = clinivox::store::identity_subjects(&[p.id.clone()], Some(&E164::parse("+34600777111").unwrap()));
    store.record_identity_failure(&subjects, now() - Duration::hours(30)).await.unwrap();
    store.record_identity_failure(&subjects, now() - Duration::hours(2)).await.unwrap();

    let keep = Retention {
        transcripts: Duration::days(30),
        recordings: Duration::days(30),
        audit_snapshots: Duration::days(30),
        idempotency: Duration::days(1),
        finished_jobs: Duration::days(30),
        callbacks: Duration::days(30),
        identity_failures: Duration::hours(24),
        webhook_log: Duration::days(30),
    };
    let expected = PurgeReport {
        transcript_turns: 1,
        call_summaries: 1,
        recordings: 1,
        audit_snapshots: 0,
        idempotency_keys: 1,
        finished_jobs: 1,
        callbacks: 1,
        identity_failures: 2,
        webhook_deliveries: 0,
    };
    let dry = store.purge(&keep, now(), true).await.unwrap();
    // Audit entries: the patient's creation, the old booking and the old callback's writes.
    assert!(dry.audit_snapshots >= 2, "{dry:?}");
    assert_eq!(PurgeReport { audit_snapshots: 0, ..dry.clone() }, expected);
    assert_eq!(store.purge(&keep, now(), true).await.unwrap(), dry, "a dry run changes nothing");
    assert!(calls[0].1.exists());

    let done = store.purge(&keep, now(), false).await.unwrap();
    assert_eq!(done, dry, "the purge removes what the dry run counted");
    assert_eq!(store.purge(&keep, now(), false).await.unwrap(), PurgeReport::default(), "and a second run finds nothing");

    let (old_call, young_call) = (store.call(&calls[0].0).await.unwrap(), store.call(&calls[1].0).await.unwrap());
    assert!(old_call.turns.is_empty() && old_call.call.summary.is_none() && old_call.call.recording_path.is_none(), "{old_call:?}");
    assert_eq!(old_call.call.outcome.as_deref(), Some("transferred"), "the call record stays for the KPIs");
    assert!(!calls[0].1.exists(), "the old recording is deleted from disk");
    assert_eq!(young_call.turns.len(), 1);
    assert!(young_call.call.summary.is_some() && young_call.call.recording_path.is_some() && calls[1].1.exists());

    let audit = store.audit_log("patient", &p.id).await.unwrap();
    assert_eq!(audit.len(), 2, "entries stay: who did what, when");
    assert!(audit.iter().filter(|e| e.at < now() - Duration::days(30)).all(|e| e.before.is_none() && e.after.is_none()), "{audit:?}");
    assert!(audit.iter().any(|e| e.at == young && e.after.is_some()), "the young snapshot stays");

    assert!(matches!(store.idempotency_start("api", "old-key", "h", now()).await.unwrap(), IdempotencyStart::Proceed), "old key forgotten");
    assert!(matches!(store.idempotency_start("api", "young-key", "h", now()).await.unwrap(), IdempotencyStart::Replay { .. }));
    let jobs = store.jobs(None, 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].due_at, young);
    let callbacks = store.callbacks(None).await.unwrap();
    assert_eq!(callbacks.len(), 2, "the young done one and the open one: {callbacks:?}");
    assert!(callbacks.iter().any(|c| c.status == CallbackStatus::Open));
    assert_eq!(store.identity_failures_since(&subjects, now() - Duration::days(365)).await.unwrap(), 1, "the young failure stays");
}

async fn patient(store: &Store, name: &str, phone: &str) -> Patient {
    store
        .create_patient(
            NewPatient {
                name: name.into(),
                phones: vec![E164::parse(phone).unwrap()],
                date_of_birth: NaiveDate::from_ymd_opt(1950, 5, 3).unwrap(),
                national_id: None,
                preferred_language: "es".into(),
                contact_consent: true,
            },
            &staff(),
            now(),
        )
        .await
        .unwrap()
}

fn book_at(patient: &Patient, provider: &str, at: DateTime<Utc>) -> NewAppointment {
    NewAppointment { patient_id: patient.id.clone(), provider_id: provider.into(), starts_at: at, hold_token: None, notes: None }
}

async fn booking_race_has_exactly_one_winner(store: Store, _: Config) {
    let mut patients = Vec::new();
    for i in 0..100 {
        patients.push(patient(&store, &format!("Paciente {i}"), &format!("+3460000{i:04}")).await);
    }
    // Tuesday 24 November 09:00 Madrid, Dra. García.
    let slot = utc("2026-11-24T08:00:00Z");
    let store = Arc::new(store);
    let attempts: Vec<_> = patients
        .into_iter()
        .map(|p| {
            let store = store.clone();
            tokio::spawn(async move { store.book(book_at(&p, "dr-garcia", slot), &staff(), now()).await })
        })
        .collect();
    let (mut ok, mut conflicts) = (0, 0);
    for a in attempts {
        match a.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::Conflict(_)) => conflicts += 1,
            Err(e) => panic!("a racing booking failed with something other than a conflict: {e}"),
        }
    }
    assert_eq!((ok, conflicts), (1, 99));
    let day = store.appointments_on(NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()).await.unwrap();
    assert_eq!(day.iter().filter(|a| a.starts_at == slot && a.status.is_live()).count(), 1);
}

async fn holds_reserve_a_slot_until_they_expire(store: Store, _: Config) {
    let ana = patient(&store, "Ana Pérez", "+34600111222").await;
    let luis = patient(&store, "Luis Gómez", "+34600333444").await;
    let slot = utc("2026-11-24T08:15:00Z");
    let hold = store.hold_slot("dr-garcia", slot, Duration::seconds(180), now()).await.unwrap();

    // Another caller can neither hold nor book it, nor see it as free.
    assert!(matches!(store.hold_slot("dr-garcia", slot, Duration::seconds(180), now()).await, Err(StoreError::Conflict(_))));
    assert!(matches!(store.book(book_at(&luis, "dr-garcia", slot), &staff(), now()).await, Err(StoreError::Conflict(_))));
    let q = SlotQuery {
        provider: Some("dr-garcia".into()),
        from: NaiveDate::from_ymd_opt(2026, 11, 24),
        to: NaiveDate::from_ymd_opt(2026, 11, 24),
        ..Default::default()
    };
    assert!(!store.free_slots(&q, now()).await.unwrap().iter().any(|s| s.starts_at == slot));
    // The holder still sees it.
    let mine = SlotQuery { hold_token: Some(hold.token.clone()), ..q.clone() };
    assert!(store.free_slots(&mine, now()).await.unwrap().iter().any(|s| s.starts_at == slot));

    // Once the hold has expired, it is free again without anyone cleaning up.
    let later = now() + Duration::seconds(181);
    assert!(store.free_slots(&q, later).await.unwrap().iter().any(|s| s.starts_at == slot));
    let booked = store.book(book_at(&luis, "dr-garcia", slot), &staff(), later).await.unwrap();
    assert_eq!(booked.patient_id, luis.id);
    // The old holder's token no longer wins the slot.
    let with_old_token = NewAppointment { hold_token: Some(hold.token), ..book_at(&ana, "dr-garcia", slot) };
    assert!(matches!(store.book(with_old_token, &staff(), later).await, Err(StoreError::Conflict(_))));

    // A live hold lets its holder book.
    let slot2 = utc("2026-11-24T08:30:00Z");
    let hold2 = store.hold_slot("dr-garcia", slot2, Duration::seconds(180), now()).await.unwrap();
    let b = NewAppointment { hold_token: Some(hold2.token), ..book_at(&ana, "dr-garcia", slot2) };
    assert_eq!(store.book(b, &staff(), now() + Duration::seconds(100)).await.unwrap().status, AppointmentStatus::Booked);
}

async fn reschedule_is_atomic(store: Store, _: Config) {
    let ana = patient(&store, "Ana Pérez", "+34600111222").await;
    let luis = patient(&store, "Luis Gómez", "+34600333444").await;
    let a = store.book(book_at(&ana, "dr-garcia", utc("2026-11-24T08:00:00Z")), &staff(), now()).await.unwrap();
    let taken = store.book(book_at(&luis, "dr-garcia", utc("2026-11-24T09:00:00Z")), &staff(), now()).await.unwrap();

    // Into a taken slot: refused, and the original is untouched.
    let into_taken = Reschedule { provider_id: None, starts_at: taken.starts_at, hold_token: None };
    assert!(matches!(store.reschedule(&a.id, into_taken, &staff(), now()).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.appointment(&a.id).await.unwrap().starts_at, a.starts_at);

    // Moving back and forth while readers watch: always exactly one live appointment.
    let store = Arc::new(store);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (store, stop, id) = (store.clone(), stop.clone(), ana.id.clone());
        tokio::spawn(async move {
            let mut seen = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let live = store.appointments_for_patient(&id, true, now()).await.unwrap();
                assert_eq!(live.len(), 1, "the patient had {} live appointments mid-reschedule", live.len());
                seen += 1;
            }
            seen
        })
    };
    let targets = ["2026-11-25T08:00:00Z", "2026-11-26T10:00:00Z", "2026-11-24T08:00:00Z", "2026-11-27T12:45:00Z"];
    for i in 0..20 {
        let to = Reschedule { provider_id: None, starts_at: utc(targets[i % targets.len()]), hold_token: None };
        store.reschedule(&a.id, to, &staff(), now()).await.unwrap();
    }
    // To another provider of the same specialty.
    let to = Reschedule { provider_id: Some("dr-martin".into()), starts_at: utc("2026-11-24T14:00:00Z"), hold_token: None };
    let moved = store.reschedule(&a.id, to, &staff(), now()).await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.await.unwrap() > 0);
    assert_eq!((moved.provider_id.as_str(), moved.id.as_str()), ("dr-martin", a.id.as_str()));
    // Not to a provider of another specialty.
    let wrong = Reschedule { provider_id: Some("dr-ruiz".into()), starts_at: utc("2026-11-24T08:00:00Z"), hold_token: None };
    assert!(matches!(store.reschedule(&a.id, wrong, &staff(), now()).await, Err(StoreError::Invalid { field: "provider_id", .. })));
}

async fn cancelling_frees_the_slot_and_everything_is_audited(store: Store, _: Config) {
    let ana = patient(&store, "Ana Pérez", "+34600111222").await;
    let luis = patient(&store, "Luis Gómez", "+34600333444").await;
    let slot = utc("2026-11-24T10:00:00Z");
    let a = store.book(book_at(&ana, "dr-garcia", slot), &staff(), now()).await.unwrap();
    let phone = Actor::new("assistant", Channel::Phone);
    assert_eq!(store.confirm(&a.id, &phone, now()).await.unwrap().status, AppointmentStatus::Confirmed);
    let cancelled = store.cancel(&a.id, &phone, now()).await.unwrap();
    assert_eq!((cancelled.status, cancelled.updated_channel), (AppointmentStatus::Cancelled, Channel::Phone));
    assert!(matches!(store.cancel(&a.id, &phone, now()).await, Err(StoreError::Conflict(_))));
    // The slot is bookable again at once.
    store.book(book_at(&luis, "dr-garcia", slot), &staff(), now()).await.unwrap();

    let log = store.audit_log("appointment", &a.id).await.unwrap();
    let actions: Vec<_> = log.iter().map(|e| (e.action.as_str(), e.channel.as_str())).collect();
    assert_eq!(actions, [("book", "staff"), ("confirm", "phone"), ("cancel", "phone")]);
    assert!(log[2].before.as_deref().unwrap().contains("\"confirmed\""));
    assert!(log[2].after.as_deref().unwrap().contains("\"cancelled\""));
    assert_eq!(store.audit_log("patient", &ana.id).await.unwrap().len(), 1);
}

async fn slots_follow_templates_holidays_and_absences(store: Store, _: Config) {
    let day = |d| NaiveDate::from_ymd_opt(2026, 12, d);
    let q = SlotQuery { provider: Some("dr-sanchez".into()), from: day(7), to: day(9), ..Default::default() };
    let slots = store.free_slots(&q, now()).await.unwrap();
    // Monday 7th: 09-13 and 16-19 in 20-minute slots; Tuesday 8th is a holiday; Wednesday 9th: 09-13.
    assert_eq!(slots.len(), 12 + 9 + 12);
    assert_eq!(slots[0].starts_at_local, "2026-12-07T09:00:00+01:00");
    assert!(!slots.iter().any(|s| s.starts_at_local.starts_with("2026-12-08")));
    let afternoon = SlotQuery { part_of_day: Some(availability::PartOfDay::Afternoon), ..q.clone() };
    assert_eq!(store.free_slots(&afternoon, now()).await.unwrap().len(), 9);
    store.add_absence("dr-sanchez", day(9).unwrap(), day(9).unwrap(), "congress").await.unwrap();
    assert_eq!(store.free_slots(&q, now()).await.unwrap().len(), 21);
    // By specialty: every provider of it; past slots are never offered.
    let general = SlotQuery {
        specialty: Some("general".into()),
        from: NaiveDate::from_ymd_opt(2026, 11, 23),
        to: NaiveDate::from_ymd_opt(2026, 11, 23),
        ..Default::default()
    };
    let today = store.free_slots(&general, now()).await.unwrap();
    assert!(today.iter().all(|s| s.starts_at > now()));
    assert!(today.iter().any(|s| s.provider_id == "dr-garcia") && today.iter().any(|s| s.provider_id == "dr-martin"));
    // Bad queries are errors, not empty answers.
    let unknown = SlotQuery { specialty: Some("astrology".into()), ..Default::default() };
    assert!(matches!(store.free_slots(&unknown, now()).await, Err(StoreError::NotFound(_))));
    let huge = SlotQuery { to: NaiveDate::from_ymd_opt(2027, 6, 1), ..q };
    assert!(matches!(store.free_slots(&huge, now()).await, Err(StoreError::Invalid { field: "to", .. })));
    // A time that is not a slot cannot be booked.
    let ana = patient(&store, "Ana Pérez", "+34600111222").await;
    let odd = book_at(&ana, "dr-sanchez", utc("2026-12-07T08:07:00Z"));
    assert!(matches!(store.book(odd, &staff(), now()).await, Err(StoreError::Invalid { field: "starts_at", .. })));
}

async fn patients_by_phone_and_updates(store: Store, _: Config) {
    let ana = patient(&store, "Ana Pérez", "+34600111222").await;
    let _son = patient(&store, "Pablo Pérez", "+34600111222").await;
    let found = store.patients_by_phone(&E164::parse("+34 600 111 222").unwrap()).await.unwrap();
    assert_eq!(found.len(), 2, "a family line finds every patient on it");
    let patch = PatientPatch {
        phones: Some(vec![E164::parse("+34699000111").unwrap(), E164::parse("+34600111222").unwrap()]),
        contact_consent: Some(false),
        ..Default::default()
    };
    let updated = store.update_patient(&ana.id, patch, &staff(), now()).await.unwrap();
    assert_eq!(updated.phones, ["+34699000111", "+34600111222"]);
    assert!(!updated.contact_consent);
    assert_eq!(updated.name, "Ana Pérez");
    assert!(matches!(store.patient("nope").await, Err(StoreError::NotFound(_))));
    let bad = PatientPatch { name: Some("  ".into()), ..Default::default() };
    assert!(matches!(store.update_patient(&ana.id, bad, &staff(), now()).await, Err(StoreError::Invalid { field: "name", .. })));
}

async fn calls_keep_their_transcript(store: Store, _: Config) {
    let call = store
        .start_call(
            NewCall {
                direction: "inbound".into(),
                remote_number: "+34600111222".into(),
                patient_id: None,
                language: Some("es".into()),
                appointment_id: None,
            },
            now(),
        )
        .await
        .unwrap();
    let turn = |speaker: &str, text: &str| NewTurn {
        speaker: speaker.into(),
        text: text.into(),
        confidence: Some(0.9),
        intent: None,
        latency_ms: Some(640),
    };
    store.add_turn(&call.id, turn("assistant", "Clínica San Rafael, ¿en qué puedo ayudarle?"), now()).await.unwrap();
    store.add_turn(&call.id, turn("caller", "quiero una cita"), now()).await.unwrap();
    // A turn without a confidence, then with one again (a NULL float must not
    // break later inserts on PostgreSQL).
    for _ in 0..3 {
        store.add_turn(&call.id, NewTurn { confidence: None, ..turn("assistant", "¿Para qué especialidad?") }, now()).await.unwrap();
        store.add_turn(&call.id, turn("caller", "dermatología"), now()).await.unwrap();
    }
    store.finish_call(&call.id, "transferred", None, Some("reception"), Some("wants an appointment"), now()).await.unwrap();
    let detail = store.call(&call.id).await.unwrap();
    assert_eq!(detail.turns.iter().map(|t| t.seq).collect::<Vec<_>>(), (1..=8).collect::<Vec<i64>>());
    assert_eq!(detail.turns[2].confidence, None);
    assert_eq!(detail.turns[3].confidence, Some(0.9));
    assert_eq!(detail.call.outcome.as_deref(), Some("transferred"));
    assert_eq!(store.calls(10).await.unwrap().len(), 1);
    assert!(matches!(store.add_turn("missing", turn("caller", "x"), now()).await, Err(StoreError::NotFound(_))));
}

async fn idempotency_keys_replay_and_detect_mismatch(store: Store, _: Config) {
    assert_eq!(store.idempotency_start("t", "k1", "h1", now()).await.unwrap(), IdempotencyStart::Proceed);
    assert_eq!(store.idempotency_start("t", "k1", "h1", now()).await.unwrap(), IdempotencyStart::InFlight);
    store.idempotency_finish("t", "k1", 201, "{\"id\":1}").await.unwrap();
    assert_eq!(
        store.idempotency_start("t", "k1", "h1", now()).await.unwrap(),
        IdempotencyStart::Replay { status: 201, body: "{\"id\":1}".into() }
    );
    assert_eq!(store.idempotency_start("t", "k1", "h2", now()).await.unwrap(), IdempotencyStart::Mismatch);
    // Keys are per client.
    assert_eq!(store.idempotency_start("other", "k1", "h2", now()).await.unwrap(), IdempotencyStart::Proceed);
    store.idempotency_abandon("other", "k1").await.unwrap();
    assert_eq!(store.idempotency_start("other", "k1", "h2", now()).await.unwrap(), IdempotencyStart::Proceed);
}

/// The process dies between a booking's commit and its answer: the claim
/// stays "in flight". Once that is older than any request runs, the
/// client's retry takes it over (one retry, not two) and runs again; the
/// booking it repeats answers with the appointment already made.
async fn an_abandoned_booking_is_answered_on_retry_and_never_booked_twice(store: Store, _: Config) {
    let ana = patient(&store, "Ana Pérez", "+34600111222").await;
    let new = || NewAppointment {
        patient_id: ana.id.clone(),
        provider_id: "dr-sanchez".into(),
        starts_at: utc("2026-11-25T09:00:00Z"),
        hold_token: None,
        notes: None,
    };
    assert_eq!(store.idempotency_start("t", "book-1", "h", now()).await.unwrap(), IdempotencyStart::Proceed);
    let first = store.book(new(), &staff(), now()).await.unwrap();
    // … killed here: no idempotency_finish.
    let soon = now() + Duration::seconds(10);
    assert_eq!(store.idempotency_start("t", "book-1", "h", soon).await.unwrap(), IdempotencyStart::InFlight, "maybe still running");
    let later = now() + IN_FLIGHT_LIMIT + Duration::seconds(1);
    assert_eq!(store.idempotency_start("t", "book-1", "h", later).await.unwrap(), IdempotencyStart::Resume, "abandoned: taken over");
    assert_eq!(store.idempotency_start("t", "book-1", "h", later).await.unwrap(), IdempotencyStart::InFlight, "by one retry only");
    assert!(matches!(store.book(new(), &staff(), later).await, Err(StoreError::Conflict(_))), "a plain booking is refused");
    let again = store.book_retry(new(), &staff(), later).await.unwrap();
    assert_eq!(again.id, first.id, "the retry learns of the booking that was made");
    assert_eq!(store.appointments_for_patient(&ana.id, true, now()).await.unwrap().len(), 1, "and nothing is booked twice");
    let other = patient(&store, "Luis Gil", "+34600111333").await;
    let theirs = NewAppointment { patient_id: other.id, ..new() };
    assert!(matches!(store.book(theirs, &staff(), later).await, Err(StoreError::Conflict(_))), "the slot is still taken for others");
}

async fn waitlist_add_list_remove(store: Store, _: Config) {
    let ana = patient(&store, "Ana Pérez", "+34600111222").await;
    let d = |m, d| NaiveDate::from_ymd_opt(2026, m, d).unwrap();
    let entry = NewWaitlistEntry {
        patient_id: ana.id.clone(),
        specialty_id: "dermatology".into(),
        provider_id: Some("dr-sanchez".into()),
        earliest: d(11, 24),
        latest: d(12, 4),
        notes: None,
    };
    let e = store.waitlist_add(entry.clone(), &staff(), now()).await.unwrap();
    assert_eq!(store.waitlist(Some("dermatology")).await.unwrap(), [e.clone()]);
    assert!(store.waitlist(Some("cardiology")).await.unwrap().is_empty());
    let wrong = NewWaitlistEntry { provider_id: Some("dr-ruiz".into()), ..entry.clone() };
    assert!(matches!(store.waitlist_add(wrong, &staff(), now()).await, Err(StoreError::Invalid { field: "provider_id", .. })));
    let backwards = NewWaitlistEntry { latest: d(11, 1), ..entry };
    assert!(matches!(store.waitlist_add(backwards, &staff(), now()).await, Err(StoreError::Invalid { field: "latest", .. })));
    store.waitlist_remove(&e.id, &staff(), now()).await.unwrap();
    assert!(store.waitlist(None).await.unwrap().is_empty());
    assert!(matches!(store.waitlist_remove(&e.id, &staff(), now()).await, Err(StoreError::NotFound(_))));
}

/// A clinic open on Sundays (the DST changes in Europe fall on Sundays).
async fn dst_sundays_on_a_sunday_clinic(store: Store, mut config: Config) {
    let sunday = config.providers[0].schedule.0[0].clone(); // Dra. García's Monday 08:00-14:00
    config.providers[0].schedule.0[6] = sunday;
    config.clinic.holidays.clear();
    store.sync_clinic(&config).await.unwrap();
    let before_march: DateTime<Utc> = utc("2026-03-20T08:00:00Z");
    let on = |d: NaiveDate| SlotQuery { provider: Some("dr-garcia".into()), from: Some(d), to: Some(d), ..Default::default() };
    let march = store.free_slots(&on(NaiveDate::from_ymd_opt(2026, 3, 29).unwrap()), before_march).await.unwrap();
    assert_eq!(march.len(), 24);
    assert_eq!(march[0].starts_at, utc("2026-03-29T06:00:00Z"), "08:00 CEST");
    assert_eq!(march[0].starts_at_local, "2026-03-29T08:00:00+02:00");
    let before_oct: DateTime<Utc> = utc("2026-10-20T08:00:00Z");
    let october = store.free_slots(&on(NaiveDate::from_ymd_opt(2026, 10, 25).unwrap()), before_oct).await.unwrap();
    assert_eq!(october.len(), 24);
    assert_eq!(october[0].starts_at, utc("2026-10-25T07:00:00Z"), "08:00 CET");
    assert_eq!(october.last().unwrap().ends_at, utc("2026-10-25T13:00:00Z"), "14:00 CET");
}

#[tokio::test]
async fn sqlite_file_is_created_on_first_run_in_wal_mode() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new-clinic.db");
    assert!(!path.exists());
    let config = testing::demo_config();
    let store = Store::connect(&format!("sqlite://{}", path.display()), 2, config.clinic.timezone).await.unwrap();
    store.sync_clinic(&config).await.unwrap();
    assert!(path.exists());
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut conn).await.unwrap();
    assert_eq!(mode, "wal");
    // Opening again applies no migration twice and keeps the data.
    drop(store);
    let again = Store::connect(&format!("sqlite://{}", path.display()), 2, config.clinic.timezone).await.unwrap();
    assert_eq!(again.specialties().await.unwrap().len(), 8);
}

async fn assistant_turns_carry_their_timings(store: Store, _: Config) {
    let call = store
        .start_call(
            NewCall {
                direction: "inbound".into(),
                remote_number: "+34600111222".into(),
                patient_id: None,
                language: None,
                appointment_id: None,
            },
            now(),
        )
        .await
        .unwrap();
    let turn = |speaker: &str, text: &str| NewTurn {
        speaker: speaker.into(),
        text: text.into(),
        confidence: Some(1.0),
        intent: None,
        latency_ms: None,
    };
    assert!(!store.set_turn_timings(&call.id, 300, 900).await.unwrap(), "no assistant turn yet");
    store.add_turn(&call.id, turn("assistant", "Hola"), now()).await.unwrap();
    store.add_turn(&call.id, turn("caller", "quiero una cita"), now()).await.unwrap();
    store.add_turn(&call.id, turn("assistant", "¿Con qué especialidad?"), now()).await.unwrap();
    assert!(store.set_turn_timings(&call.id, 420, 1130).await.unwrap());
    let turns = store.call(&call.id).await.unwrap().turns;
    let timings: Vec<(Option<i64>, Option<i64>)> = turns.iter().map(|t| (t.transcript_ms, t.latency_ms)).collect();
    assert_eq!(timings, [(None, None), (None, None), (Some(420), Some(1130))], "only the latest assistant turn");
    assert!(!store.set_turn_timings("no-such-call", 1, 2).await.unwrap());
}

/// Calls that end before any conversation (an outbound attempt nobody
/// answered, an inbound caller turned away because every line was busy)
/// are stored closed, linked to the patient and appointment, and counted by
/// outcome; a conversation's record can be linked and given its recording.
async fn unanswered_calls_are_recorded_whole(store: Store, _: Config) {
    let ana = patient(&store, "Ana Pérez", "+34600111222").await;
    let appt = store.book(book_at(&ana, "dr-garcia", utc("2026-11-26T09:00:00Z")), &staff(), now()).await.unwrap();
    let outbound = NewCall {
        direction: "outbound".into(),
        remote_number: "+34600111222".into(),
        patient_id: Some(ana.id.clone()),
        language: None,
        appointment_id: Some(appt.id.clone()),
    };
    let rang = store.record_unanswered_call(outbound.clone(), "busy", now(), now() + Duration::seconds(4)).await.unwrap();
    assert_eq!(rang.direction, "outbound");
    assert_eq!(rang.outcome.as_deref(), Some("busy"));
    assert_eq!((rang.started_at, rang.ended_at), (now(), Some(now() + Duration::seconds(4))));
    assert_eq!(rang.patient_id.as_deref(), Some(ana.id.as_str()));
    assert_eq!(rang.appointment_id.as_deref(), Some(appt.id.as_str()));
    assert!(store.call(&rang.id).await.unwrap().turns.is_empty());
    store.record_unanswered_call(outbound.clone(), "no_answer", now(), now() + Duration::seconds(60)).await.unwrap();
    let refused =
        NewCall { direction: "inbound".into(), patient_id: None, appointment_id: None, language: Some("es".into()), ..outbound.clone() };
    // An end before the start (clocks) is stored as the start.
    let busy = store.record_unanswered_call(refused, "busy", now(), now() - Duration::seconds(1)).await.unwrap();
    assert_eq!(busy.ended_at, Some(now()));
    assert!(matches!(
        store.record_unanswered_call(outbound.clone(), " ", now(), now()).await,
        Err(StoreError::Invalid { field: "outcome", .. })
    ));
    let sideways = NewCall { direction: "sideways".into(), ..outbound.clone() };
    assert!(matches!(
        store.record_unanswered_call(sideways, "busy", now(), now()).await,
        Err(StoreError::Invalid { field: "direction", .. })
    ));

    let samples = store.metric_samples().await.unwrap();
    let count = |direction: &str, outcome: &str| {
        samples
            .iter()
            .find(|(name, labels, _)| {
                *name == "clinivox_calls_total"
                    && labels.contains(&("direction", direction.to_string()))
                    && labels.contains(&("outcome", outcome.to_string()))
            })
            .map(|s| s.2)
    };
    assert_eq!(count("outbound", "busy"), Some(1));
    assert_eq!(count("outbound", "no_answer"), Some(1));
    assert_eq!(count("inbound", "busy"), Some(1));

    // An answered call, opened by the conversation, linked afterwards.
    let answered = store.start_call(NewCall { appointment_id: None, ..outbound }, now()).await.unwrap();
    assert_eq!((answered.outcome, answered.appointment_id, answered.recording_path), (None, None, None));
    store.set_call_appointment(&answered.id, &appt.id).await.unwrap();
    store.set_call_recording(&answered.id, "/var/lib/clinivox/recordings/x.wav").await.unwrap();
    let call = store.call(&answered.id).await.unwrap().call;
    assert_eq!(call.appointment_id.as_deref(), Some(appt.id.as_str()));
    assert_eq!(call.recording_path.as_deref(), Some("/var/lib/clinivox/recordings/x.wav"));
    assert!(matches!(store.set_call_recording("no-such-call", "x.wav").await, Err(StoreError::NotFound(_))));
    assert!(matches!(store.set_call_appointment("no-such-call", &appt.id).await, Err(StoreError::NotFound(_))));
    assert_eq!(store.calls(10).await.unwrap().len(), 4);
}

/// Failed identity checks: counted per subject (patient, number) within a
/// window, numbers kept only as digests; the name search the conversation
/// uses to find whom a failure was about ignores vowels, accents and case.
async fn identity_failures_count_per_subject_in_a_window(store: Store, _: Config) {
    let maria = patient(&store, "María López García", "+34600111999").await;
    let other = patient(&store, "Pedro Sanz", "+34600222999").await;
    let number = E164::parse("+34699000000").unwrap();
    let both = identity_subjects(&[maria.id.clone()], Some(&number));
    let day_ago = now() - Duration::hours(24);
    for h in [30, 3, 2] {
        store.record_identity_failure(&both, now() - Duration::hours(h)).await.unwrap();
    }
    assert_eq!(store.identity_failures_since(&both, day_ago).await.unwrap(), 2, "the 30-hour-old one is outside the window");
    assert_eq!(store.identity_failures_since(&identity_subjects(&[other.id.clone()], None), day_ago).await.unwrap(), 0);
    // Another number against the same patient still counts for the patient.
    let fresh = identity_subjects(&[maria.id.clone()], Some(&E164::parse("+34699000001").unwrap()));
    store.record_identity_failure(&fresh, now()).await.unwrap();
    assert_eq!(store.identity_failures_since(&fresh, day_ago).await.unwrap(), 3);
    assert_eq!(store.identity_failures_since(&identity_subjects(&[], Some(&number)), day_ago).await.unwrap(), 2);
    // Numbers are kept as digests: the plain number is no subject.
    let plain = ["phone:+34699000000".to_string(), "+34699000000".to_string()];
    assert_eq!(store.identity_failures_since(&plain, day_ago).await.unwrap(), 0);
    assert_eq!(store.identity_failures_of(&maria.id).await.unwrap().len(), 4);

    assert_eq!(like(&store, "Lopez").await, vec![maria.id.clone()]);
    assert_eq!(like(&store, "GARCIA").await, vec![maria.id.clone()]);
    assert_eq!(like(&store, "sanz").await, vec![other.id.clone()]);
    assert!(like(&store, "%").await.is_empty());
    assert!(like(&store, "Ruiz").await.is_empty());

    // Erasing the patient forgets the failures counted against them and their numbers.
    store.erase_patient(&maria.id, &staff(), now()).await.unwrap();
    assert!(store.identity_failures_of(&maria.id).await.unwrap().is_empty());
    assert!(like(&store, "Lopez").await.is_empty(), "erased patients are not found");
}

/// The ids a name search finds.
async fn like(store: &Store, word: &str) -> Vec<String> {
    store.patients_with_name_like(word).await.unwrap().into_iter().map(|(id, _)| id).collect()
}
