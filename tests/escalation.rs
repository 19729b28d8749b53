//! Reminders, their replies, and the escalation scheduler with simulated
//! time, on SQLite and PostgreSQL.

#[macro_use]
mod support;

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use clinivox::config::Config;
use clinivox::escalation::scheduler::{CallOutcome, Scheduler, KIND};
use clinivox::phone::E164;
use clinivox::store::*;

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}
/// Monday 23 November 2026, 10:00 in Madrid.
fn monday() -> DateTime<Utc> {
    utc("2026-11-23T09:00:00Z")
}
fn staff() -> Actor {
    Actor::new("reception", Channel::Staff)
}

on_both_engines!(
    replies_act_on_the_appointment,
    a_silent_patient_is_called_and_retried_per_policy,
    two_instances_never_claim_the_same_job,
    a_job_whose_instance_died_is_retried_once,
    a_call_longer_than_its_lease_is_placed_once,
);

/// A call that lasts until the test hangs it up; counts the calls placed.
#[derive(Default)]
struct LongCall {
    placed: std::sync::atomic::AtomicUsize,
    hang_up: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl clinivox::escalation::scheduler::Dialer for LongCall {
    async fn call(&self, _job: Job) -> CallOutcome {
        self.placed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.hang_up.notified().await;
        CallOutcome::Confirmed
    }
}

/// Two nodes, and a patient who talks for twice the job's lease: the node
/// on the call keeps renewing the lease, so the other never calls the
/// patient a second time.
async fn a_call_longer_than_its_lease_is_placed_once(store: Store, config: Config) {
    use clinivox::clock::{Clock, ManualClock};
    use std::sync::atomic::Ordering::SeqCst;
    let config = Arc::new(config);
    let a = appointment(&store, 1, "dr-garcia", "2026-11-26T09:00:00Z").await;
    remind(&store, &a, monday()).await;
    let clock = Arc::new(ManualClock::new(utc("2026-11-24T09:00:00Z")));
    // Seconds, not minutes, so that the test runs in a few.
    let lease = Duration::seconds(3);
    let tick = std::time::Duration::from_millis(100);
    let (on_call, other) = (Arc::new(LongCall::default()), Arc::new(LongCall::default()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let node = |name: &'static str| Arc::new(Scheduler::new(store.clone(), config.clone(), name, lease));
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    tokio::spawn(node("node-a").run(on_call.clone(), dyn_clock.clone(), tick, stopped(stop_rx.clone())));
    let started = std::time::Instant::now();
    while on_call.placed.load(SeqCst) == 0 {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "node A never called");
        tokio::time::sleep(tick).await;
    }
    tokio::spawn(node("node-b").run(other.clone(), dyn_clock, tick, stopped(stop_rx.clone())));
    for _ in 0..6 {
        clock.advance(Duration::seconds(1));
        tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    }
    assert_eq!(other.placed.load(SeqCst), 0, "the second node called the patient during the first node's call");
    on_call.hang_up.notify_one();
    let job = loop {
        let job = store.jobs(None, 10).await.unwrap().remove(0);
        if job.status == "done" {
            break job;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "the call's outcome was never recorded: {job:?}");
        tokio::time::sleep(tick).await;
    };
    let _ = stop_tx.send(true);
    assert_eq!((job.attempts, job.last_outcome.as_deref()), (1, Some("confirmed")));
    assert_eq!((on_call.placed.load(SeqCst), other.placed.load(SeqCst)), (1, 0), "the patient was called once");
}

async fn patient(store: &Store, i: usize) -> Patient {
    let new = NewPatient {
        name: format!("Paciente {i}"),
        phones: vec![E164::parse(&format!("+3460055{i:04}")).unwrap()],
        date_of_birth: NaiveDate::from_ymd_opt(1950, 5, 3).unwrap(),
        national_id: None,
        preferred_language: "es".into(),
        contact_consent: true,
    };
    store.create_patient(new, &staff(), monday()).await.unwrap()
}

async fn appointment(store: &Store, i: usize, provider: &str, at: &str) -> Appointment {
    let p = patient(store, i).await;
    let new = NewAppointment { patient_id: p.id, provider_id: provider.into(), starts_at: utc(at), hold_token: None, notes: None };
    store.book(new, &staff(), monday()).await.unwrap()
}

async fn remind(store: &Store, a: &Appointment, sent: DateTime<Utc>) -> Reminder {
    let new = NewReminder {
        appointment_id: a.id.clone(),
        channel: ReminderChannel::Whatsapp,
        sent_at: sent,
        external_id: Some(format!("wa-{}", a.id)),
    };
    store.record_reminder(new, sent).await.unwrap().0
}

async fn replies_act_on_the_appointment(store: Store, _: Config) {
    // Wednesday 25 Nov 10:00 and 10:15 with Dra. García.
    let a = appointment(&store, 1, "dr-garcia", "2026-11-25T09:00:00Z").await;
    let b = appointment(&store, 2, "dr-garcia", "2026-11-25T09:15:00Z").await;
    let ra = remind(&store, &a, monday()).await;
    // The same notification twice is one reminder.
    let again = NewReminder {
        appointment_id: a.id.clone(),
        channel: ReminderChannel::Whatsapp,
        sent_at: monday(),
        external_id: Some(format!("wa-{}", a.id)),
    };
    let (dup, created) = store.record_reminder(again, monday()).await.unwrap();
    assert_eq!((dup.id.as_str(), created), (ra.id.as_str(), false));

    let r = store.record_reply(&ra.id, ReplyKind::Confirmed, Some("Sí, allí estaré".into()), monday() + Duration::hours(1)).await.unwrap();
    assert_eq!(r.reply, Some(ReplyKind::Confirmed));
    let a_now = store.appointment(&a.id).await.unwrap();
    assert_eq!((a_now.status, a_now.updated_channel), (AppointmentStatus::Confirmed, Channel::Whatsapp));
    // Repeating the reply changes nothing.
    store.record_reply(&ra.id, ReplyKind::Confirmed, Some("Sí, allí estaré".into()), monday() + Duration::hours(2)).await.unwrap();
    assert_eq!(store.audit_log("appointment", &a.id).await.unwrap().len(), 2);

    // A planned escalation call is cancelled by a reply that cancels.
    let rb = remind(&store, &b, monday()).await;
    let job = store.enqueue_job(KIND, &b.id, &b.patient_id, monday() + Duration::hours(24), monday()).await.unwrap().unwrap();
    store.record_reply(&rb.id, ReplyKind::Cancelled, None, monday() + Duration::hours(3)).await.unwrap();
    assert_eq!(store.appointment(&b.id).await.unwrap().status, AppointmentStatus::Cancelled);
    assert_eq!(store.job(&job.id).await.unwrap().status, "cancelled");
    // …and the slot is free again.
    let q = SlotQuery {
        provider: Some("dr-garcia".into()),
        from: NaiveDate::from_ymd_opt(2026, 11, 25),
        to: NaiveDate::from_ymd_opt(2026, 11, 25),
        ..Default::default()
    };
    assert!(store.free_slots(&q, monday()).await.unwrap().iter().any(|s| s.starts_at == b.starts_at));
}

async fn a_silent_patient_is_called_and_retried_per_policy(store: Store, config: Config) {
    let config = Arc::new(config);
    let scheduler = Scheduler::new(store.clone(), config.clone(), "instance-a", Duration::minutes(15));
    // Appointment Thursday 26 Nov 10:00 local; WhatsApp reminder Monday 10:00.
    let a = appointment(&store, 1, "dr-garcia", "2026-11-26T09:00:00Z").await;
    let untouched = appointment(&store, 2, "dr-garcia", "2026-11-26T09:15:00Z").await; // no reminder: never called
    remind(&store, &a, monday()).await;
    assert_eq!(scheduler.plan(monday()).await.unwrap(), 1);
    assert_eq!(scheduler.plan(monday()).await.unwrap(), 0, "planning twice queues nothing twice");
    let job = &store.jobs(None, 10).await.unwrap()[0];
    assert_eq!(job.due_at, utc("2026-11-24T09:00:00Z"), "24 h without a reply, inside the calling window");
    assert_ne!(job.appointment_id, untouched.id);

    assert!(scheduler.claim(utc("2026-11-24T08:59:00Z") - Duration::minutes(2)).await.unwrap().is_none(), "not due yet");
    let t1 = utc("2026-11-24T09:00:00Z");
    let claimed = scheduler.claim(t1).await.unwrap().expect("due");
    let after = scheduler.record(&claimed, CallOutcome::NoAnswer, t1 + Duration::minutes(1)).await.unwrap();
    assert_eq!(after.status, "pending");
    assert_eq!(after.due_at, utc("2026-11-24T13:00:00Z"), "retry in the afternoon (14:00 local), 3 h later at least");

    // Second attempt: voicemail → a third in the morning.
    let t2 = after.due_at;
    let claimed = scheduler.claim(t2).await.unwrap().expect("due again");
    let after = scheduler.record(&claimed, CallOutcome::Voicemail, t2 + Duration::minutes(1)).await.unwrap();
    assert_eq!(after.due_at, utc("2026-11-25T08:00:00Z"));

    // The patient replies before the third call: the job stops and nobody is called.
    let reminder = store.latest_reminder(&a.id).await.unwrap().unwrap();
    store.record_reply(&reminder.id, ReplyKind::Other, Some("¿Puedo ir más tarde?".into()), utc("2026-11-24T20:00:00Z")).await.unwrap();
    assert!(scheduler.claim(utc("2026-11-25T08:00:00Z")).await.unwrap().is_none());
    let job = store.job(&after.id).await.unwrap();
    assert_eq!((job.status.as_str(), job.last_outcome.as_deref()), ("cancelled", Some("replied")));
    let history = store.audit_log("appointment", &a.id).await.unwrap();
    let calls: Vec<_> = history.iter().filter(|e| e.action == "escalation_call").collect();
    assert_eq!(calls.len(), 2, "each attempt is in the appointment's history");
    assert!(calls[1].after.as_deref().unwrap().contains("voicemail"));
}

async fn two_instances_never_claim_the_same_job(store: Store, _: Config) {
    // 60 appointments (a morning of three providers), each with a due job.
    let mut n = 0;
    for provider in ["dr-garcia", "dr-navarro", "dr-ruiz"] {
        let q = SlotQuery {
            provider: Some(provider.into()),
            from: NaiveDate::from_ymd_opt(2026, 12, 1),
            to: NaiveDate::from_ymd_opt(2026, 12, 1),
            limit: Some(20),
            ..Default::default()
        };
        for slot in store.free_slots(&q, monday()).await.unwrap() {
            let p = patient(&store, n).await;
            n += 1;
            let new = NewAppointment {
                patient_id: p.id.clone(),
                provider_id: slot.provider_id,
                starts_at: slot.starts_at,
                hold_token: None,
                notes: None,
            };
            let a = store.book(new, &staff(), monday()).await.unwrap();
            store.enqueue_job(KIND, &a.id, &p.id, monday(), monday()).await.unwrap().unwrap();
        }
    }
    let claimer = |instance: &'static str| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(job) = store.claim_job(KIND, instance, Duration::minutes(10), monday()).await.unwrap() {
                mine.push(job.id);
                tokio::task::yield_now().await;
            }
            mine
        })
    };
    let (a, b) = (claimer("a"), claimer("b"));
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    let all: HashSet<_> = a.iter().chain(b.iter()).collect();
    assert_eq!(a.len() + b.len(), n, "every job claimed");
    assert_eq!(all.len(), n, "no job claimed twice");
}

async fn a_job_whose_instance_died_is_retried_once(store: Store, _: Config) {
    let a = appointment(&store, 1, "dr-garcia", "2026-11-26T09:00:00Z").await;
    let job = store.enqueue_job(KIND, &a.id, &a.patient_id, monday(), monday()).await.unwrap().unwrap();
    let lease = Duration::minutes(10);
    let claimed = store.claim_job(KIND, "dies", lease, monday()).await.unwrap().unwrap();
    assert_eq!(claimed.attempts, 1);
    // While the lease holds, nobody else takes it.
    assert!(store.claim_job(KIND, "survivor", lease, monday() + Duration::minutes(9)).await.unwrap().is_none());
    // After it expires, exactly one other instance does.
    let later = monday() + Duration::minutes(11);
    let retried = store.claim_job(KIND, "survivor", lease, later).await.unwrap().unwrap();
    assert_eq!((retried.id.as_str(), retried.attempts), (job.id.as_str(), 2));
    assert!(store.claim_job(KIND, "third", lease, later).await.unwrap().is_none());
    // The presumed-dead instance cannot overwrite the result.
    assert!(matches!(store.finish_attempt(&job.id, "dies", "confirmed", None, later).await, Err(StoreError::Conflict(_))));
    store.finish_attempt(&job.id, "survivor", "confirmed", None, later + Duration::minutes(2)).await.unwrap();
    assert!(store.claim_job(KIND, "third", lease, later + Duration::hours(5)).await.unwrap().is_none(), "done means done");
    let attempts = store.job_attempts(&job.id).await.unwrap();
    let outcomes: Vec<_> = attempts.iter().map(|a| (a.instance.as_str(), a.outcome.as_deref())).collect();
    assert_eq!(outcomes, [("dies", Some("lease_expired")), ("survivor", Some("confirmed"))]);
}

mod refill {
    use super::*;
    use clinivox::escalation::refill::{OfferOutcome, Refill};

    on_both_engines!(
        a_freed_slot_goes_to_the_first_waiting_patient_who_accepts,
        an_offer_booked_on_the_phone_is_not_booked_twice,
        a_waiting_patient_without_contact_consent_is_never_called,
    );

    /// A place on the waiting list is no consent to be phoned: the patient
    /// who withdrew `contact_consent` is skipped, the next one is offered.
    async fn a_waiting_patient_without_contact_consent_is_never_called(store: Store, config: Config) {
        let refill = Refill::new(store.clone(), Arc::new(config), "instance-a", Duration::minutes(15));
        let a = appointment(&store, 1, "dr-sanchez", "2026-12-07T08:00:00Z").await;
        let (opted_out, _) = waitlisted(&store, 3, 1, 31).await;
        let (willing, e2) = waitlisted(&store, 4, 1, 31).await;
        let patch = PatientPatch { contact_consent: Some(false), ..Default::default() };
        store.update_patient(&opted_out.id, patch, &staff(), monday()).await.unwrap();
        store.cancel(&a.id, &Actor::new("reception", Channel::Api), monday()).await.unwrap();
        assert_eq!(refill.plan(monday()).await.unwrap(), 1);
        let offer = refill.next_offer(monday()).await.unwrap().expect("an offer to the patient who agreed to calls");
        assert_eq!((offer.entry.id.as_str(), offer.entry.patient_id.as_str()), (e2.id.as_str(), willing.id.as_str()));
        refill.resolve(&offer, OfferOutcome::Declined, monday() + Duration::minutes(3)).await.unwrap();
        assert!(refill.next_offer(monday() + Duration::minutes(4)).await.unwrap().is_none(), "the opted-out patient is never offered");
    }

    async fn an_offer_booked_on_the_phone_is_not_booked_twice(store: Store, config: Config) {
        let refill = Refill::new(store.clone(), Arc::new(config), "instance-a", Duration::minutes(15));
        let a = appointment(&store, 1, "dr-sanchez", "2026-12-07T08:00:00Z").await;
        let (p, e) = waitlisted(&store, 3, 1, 31).await;
        store.cancel(&a.id, &Actor::new("reception", Channel::Api), monday()).await.unwrap();
        assert_eq!(refill.plan(monday()).await.unwrap(), 1);
        let offer = refill.next_offer(monday()).await.unwrap().expect("an offer");
        // The outbound conversation books the held slot when the patient says yes.
        let phone = NewAppointment {
            patient_id: p.id.clone(),
            provider_id: "dr-sanchez".into(),
            starts_at: a.starts_at,
            hold_token: Some(offer.hold.token.clone()),
            notes: None,
        };
        store.book(phone, &Actor::new("assistant", Channel::Phone), monday() + Duration::minutes(1)).await.unwrap();
        let job = refill.resolve(&offer, OfferOutcome::Accepted, monday() + Duration::minutes(2)).await.unwrap();
        assert_eq!((job.status.as_str(), job.last_outcome.as_deref()), ("done", Some("accepted")));
        assert_eq!(store.appointments_for_patient(&p.id, true, monday()).await.unwrap().len(), 1);
        assert!(store.waitlist(Some("dermatology")).await.unwrap().iter().all(|w| w.id != e.id));
    }

    async fn waitlisted(store: &Store, i: usize, earliest: u32, latest: u32) -> (Patient, WaitlistEntry) {
        let p = patient(store, i).await;
        let d = |day| NaiveDate::from_ymd_opt(2026, 12, day).unwrap();
        let new = NewWaitlistEntry {
            patient_id: p.id.clone(),
            specialty_id: "dermatology".into(),
            provider_id: None,
            earliest: d(earliest),
            latest: d(latest),
            notes: None,
        };
        let e = store.waitlist_add(new, &staff(), monday() + Duration::seconds(i as i64)).await.unwrap();
        (p, e)
    }

    async fn a_freed_slot_goes_to_the_first_waiting_patient_who_accepts(store: Store, config: Config) {
        let refill = Refill::new(store.clone(), Arc::new(config), "instance-a", Duration::minutes(15));
        // Monday 7 Dec 09:00 with Dr. Sánchez, cancelled by the API.
        let a = appointment(&store, 1, "dr-sanchez", "2026-12-07T08:00:00Z").await;
        let (_, too_late) = waitlisted(&store, 2, 9, 20).await; // only from the 9th
        let (first, e1) = waitlisted(&store, 3, 1, 31).await;
        let (second, e2) = waitlisted(&store, 4, 1, 31).await;
        let (third, _) = waitlisted(&store, 5, 1, 31).await;
        // The third already has a later dermatology appointment: it would be moved earlier.
        let later = NewAppointment {
            patient_id: third.id.clone(),
            provider_id: "dr-sanchez".into(),
            starts_at: utc("2026-12-14T08:00:00Z"),
            hold_token: None,
            notes: None,
        };
        let later = store.book(later, &staff(), monday()).await.unwrap();

        assert_eq!(refill.plan(monday()).await.unwrap(), 0, "nothing cancelled yet");
        store.cancel(&a.id, &Actor::new("reception", Channel::Api), monday()).await.unwrap();
        assert_eq!(refill.plan(monday()).await.unwrap(), 1);
        assert_eq!(refill.plan(monday()).await.unwrap(), 0);

        // First offer: the oldest matching entry; the slot is held meanwhile.
        let offer = refill.next_offer(monday()).await.unwrap().expect("an offer");
        assert_eq!(offer.entry.id, e1.id);
        assert_ne!(offer.entry.id, too_late.id);
        let intruder = NewAppointment {
            patient_id: second.id.clone(),
            provider_id: "dr-sanchez".into(),
            starts_at: a.starts_at,
            hold_token: None,
            notes: None,
        };
        assert!(matches!(store.book(intruder, &staff(), monday()).await, Err(StoreError::Conflict(_))));
        refill.resolve(&offer, OfferOutcome::Declined, monday() + Duration::minutes(3)).await.unwrap();

        // Second offer goes to the next in line, who accepts.
        let t = monday() + Duration::minutes(4);
        let offer = refill.next_offer(t).await.unwrap().expect("a second offer");
        assert_eq!(offer.entry.id, e2.id);
        let job = refill.resolve(&offer, OfferOutcome::Accepted, t + Duration::minutes(2)).await.unwrap();
        assert_eq!((job.status.as_str(), job.last_outcome.as_deref()), ("done", Some("accepted")));
        let booked = store.appointments_for_patient(&second.id, true, t).await.unwrap();
        assert_eq!(booked.len(), 1);
        assert_eq!(booked[0].starts_at, a.starts_at);
        assert!(store.waitlist(Some("dermatology")).await.unwrap().iter().all(|e| e.id != e2.id), "served entries leave the list");
        // Nobody else is called.
        assert!(refill.next_offer(t + Duration::minutes(10)).await.unwrap().is_none());
        let offers = store.offers(&job.id).await.unwrap();
        assert_eq!(offers.iter().map(|o| o.1.as_str()).collect::<Vec<_>>(), [first.id.as_str(), second.id.as_str()]);
        assert_eq!(store.appointment(&later.id).await.unwrap().starts_at, later.starts_at, "the third patient was not touched");
    }
}
