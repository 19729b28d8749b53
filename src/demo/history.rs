//! A clinic's past, for a newcomer's console and for checking its figures:
//! `clinivox demo --history-days N` writes N days of calls (with
//! transcripts and waits), bookings through every channel, reminders and
//! their replies, escalation calls for the unanswered ones, callback
//! requests and their closing, and freed slots refilled from the waiting
//! list — through the store's own operations (so the audit log and the
//! outbox are as the live service writes them), from a fixed seed, so the
//! same N gives the same history.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::store::{
    Actor, Channel, NewAppointment, NewCall, NewCallback, NewReminder, NewTurn, PastCall, Patient, ReminderChannel, ReplyKind, SlotQuery,
    Store, StoreError,
};

/// What was written.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct History {
    pub calls: usize,
    pub appointments: usize,
    pub reminders: usize,
    pub escalation_calls: usize,
    pub callbacks: usize,
    pub refills: usize,
}

/// Inbound outcomes, with their weights: a clinic whose assistant resolves
/// about two calls in three.
const OUTCOMES: [(&str, u32); 9] = [
    ("booked", 24),
    ("confirmed", 10),
    ("cancelled", 7),
    ("rescheduled", 7),
    ("info", 16),
    ("transferred", 14),
    ("callback", 6),
    ("abandoned", 11),
    ("busy", 5),
];
const LANGUAGES: [(&str, u32); 4] = [("es", 70), ("en", 12), ("it", 9), ("pt", 9)];
const TRANSFER_WANTS: [&str; 5] = ["book dermatology", "cancel", "reschedule", "speak to a person", "possible emergency"];

fn pick<'a>(rng: &mut StdRng, choices: &[(&'a str, u32)]) -> &'a str {
    let total: u32 = choices.iter().map(|c| c.1).sum();
    let mut n = rng.gen_range(0..total);
    for (v, w) in choices {
        if n < *w {
            return v;
        }
        n -= w;
    }
    choices[0].0
}

/// Writes `days` days of history ending yesterday (clinic time) into a
/// store holding the demo clinic (its patients seeded).
pub async fn seed_history(store: &Store, patients: &[Patient], days: i64, now: DateTime<Utc>) -> Result<History, StoreError> {
    let mut rng = StdRng::seed_from_u64(20_261_123);
    let tz = store.timezone();
    let today = now.with_timezone(&tz).date_naive();
    let mut h = History::default();
    if patients.is_empty() {
        return Ok(h);
    }
    let at = |d: NaiveDate, minutes: i64| {
        let local = d.and_hms_opt(8, 0, 0).unwrap_or_default() + Duration::minutes(minutes);
        tz.from_local_datetime(&local).earliest().map_or_else(|| local.and_utc(), |t| t.with_timezone(&Utc))
    };
    for back in (1..=days).rev() {
        let day = today - Duration::days(back);
        let weekend = matches!(day.weekday(), Weekday::Sat | Weekday::Sun);
        let n_calls = if weekend { rng.gen_range(2..6) } else { rng.gen_range(18..34) };
        let mut calls = Vec::with_capacity(n_calls);
        let mut callbacks = Vec::new();
        for _ in 0..n_calls {
            let started = at(day, rng.gen_range(0..600));
            let p = &patients[rng.gen_range(0..patients.len())];
            let known = rng.gen_bool(0.8);
            let language = pick(&mut rng, &LANGUAGES);
            let outcome = pick(&mut rng, &OUTCOMES);
            let call = NewCall {
                direction: "inbound".into(),
                remote_number: p.phones.first().cloned().unwrap_or_default(),
                patient_id: known.then(|| p.id.clone()),
                language: Some(language.into()),
                appointment_id: None,
            };
            let mut turns = Vec::new();
            let mut t = started;
            if outcome != "busy" {
                for k in 0..rng.gen_range(2..7) {
                    t += Duration::seconds(rng.gen_range(4..15));
                    let (speaker, latency) = if k % 2 == 0 { ("assistant", Some(rng.gen_range(650..2600))) } else { ("caller", None) };
                    let text = if speaker == "assistant" {
                        "Clínica San Rafael, ¿en qué puedo ayudarle?"
                    } else {
                        "Quería una cita, por favor."
                    };
                    turns.push((
                        t,
                        NewTurn { speaker: speaker.into(), text: text.into(), confidence: Some(0.9), intent: None, latency_ms: latency },
                    ));
                }
            }
            let transfer = (outcome == "transferred").then(|| TRANSFER_WANTS[rng.gen_range(0..TRANSFER_WANTS.len())]);
            let summary =
                transfer.map(|w| format!("wants: {w}; caller: not identified, {}", p.phones.first().cloned().unwrap_or_default()));
            if outcome == "callback" {
                callbacks.push((started, p.clone(), language));
            }
            calls.push(PastCall {
                call,
                started_at: started,
                ended_at: t + Duration::seconds(5),
                outcome: outcome.into(),
                transfer_target: transfer.map(|_| "reception".into()),
                summary,
                turns,
            });
        }
        let ids = store.import_calls(&calls).await?;
        h.calls += ids.len();
        for (started, p, language) in callbacks {
            let new = NewCallback {
                call_id: None,
                patient_id: Some(p.id.clone()),
                name: p.name.clone(),
                phone: p.phones.first().cloned().unwrap_or_default(),
                reason: "quiere hablar con recepción".into(),
                language: language.into(),
                promised: at(day, 480).with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string(),
            };
            let cb = store.create_callback(new, &Actor::new("assistant", Channel::Phone), started).await?;
            h.callbacks += 1;
            if rng.gen_bool(0.85) {
                let done = started + Duration::minutes(rng.gen_range(20..400));
                store.callback_done(&cb.id, &Actor::new("console:recepcion", Channel::Staff), done).await?;
            }
        }
        // Bookings of the day, by channel, for the coming week; each gets
        // a reminder two days before, and the unanswered ones an escalation call.
        if !weekend {
            for _ in 0..rng.gen_range(3..8) {
                let booked_at = at(day, rng.gen_range(0..540));
                let p = &patients[rng.gen_range(0..patients.len())];
                let specialty = ["general", "dermatology", "cardiology", "pediatrics", "dentistry"][rng.gen_range(0..5)];
                let q = SlotQuery {
                    specialty: Some(specialty.into()),
                    from: Some(day + Duration::days(rng.gen_range(3..9))),
                    limit: Some(5),
                    ..Default::default()
                };
                let slots = store.free_slots(&q, booked_at).await?;
                let Some(slot) = slots.get(rng.gen_range(0..slots.len().max(1))).cloned() else { continue };
                let channel = *[Channel::Phone, Channel::Phone, Channel::Staff, Channel::Api, Channel::Web]
                    .get(rng.gen_range(0..5))
                    .unwrap_or(&Channel::Phone);
                let actor = Actor::new(if channel == Channel::Phone { "assistant" } else { "demo" }, channel);
                let new = NewAppointment {
                    patient_id: p.id.clone(),
                    provider_id: slot.provider_id,
                    starts_at: slot.starts_at,
                    hold_token: None,
                    notes: None,
                };
                let a = match store.book(new, &actor, booked_at).await {
                    Ok(a) => a,
                    Err(StoreError::Conflict(_)) => continue,
                    Err(e) => return Err(e),
                };
                h.appointments += 1;
                let sent = a.starts_at - Duration::days(2);
                if sent >= now {
                    continue;
                }
                let (r, _) = store
                    .record_reminder(
                        NewReminder { appointment_id: a.id.clone(), channel: ReminderChannel::Sms, sent_at: sent, external_id: None },
                        sent,
                    )
                    .await?;
                h.reminders += 1;
                let roll = rng.gen_range(0..100);
                if roll < 60 {
                    store.record_reply(&r.id, ReplyKind::Confirmed, None, sent + Duration::hours(2)).await?;
                } else if roll < 68 {
                    store.record_reply(&r.id, ReplyKind::Cancelled, None, sent + Duration::hours(3)).await?;
                    refill(store, &a.id, &a.patient_id, sent + Duration::hours(3), &mut h).await?;
                } else {
                    // No answer: the escalation call, the next day.
                    let due = sent + Duration::hours(24);
                    if due >= now {
                        continue;
                    }
                    if store.enqueue_job("escalation", &a.id, &a.patient_id, due, due).await?.is_none() {
                        continue;
                    }
                    let Some(job) = store.claim_job("escalation", "demo", Duration::minutes(5), due).await? else { continue };
                    let outcome =
                        *["confirmed", "confirmed", "cancelled", "no_answer", "voicemail"].get(rng.gen_range(0..5)).unwrap_or(&"no_answer");
                    let phone = Actor::new("escalation", Channel::Phone);
                    match outcome {
                        "confirmed" => drop(store.confirm(&a.id, &phone, due + Duration::minutes(2)).await?),
                        "cancelled" => drop(store.cancel(&a.id, &phone, due + Duration::minutes(2)).await?),
                        _ => {}
                    }
                    store.finish_attempt(&job.id, "demo", outcome, None, due + Duration::minutes(3)).await?;
                    h.escalation_calls += 1;
                }
            }
        }
    }
    Ok(h)
}

/// A freed slot offered to the waiting list: half the time someone takes it.
async fn refill(store: &Store, appointment: &str, patient: &str, at: DateTime<Utc>, h: &mut History) -> Result<(), StoreError> {
    if store.enqueue_job("refill", appointment, patient, at, at).await?.is_none() {
        return Ok(());
    }
    let Some(job) = store.claim_job("refill", "demo", Duration::minutes(5), at).await? else { return Ok(()) };
    let outcome = if h.appointments % 2 == 0 { "accepted" } else { "declined" };
    store.finish_attempt(&job.id, "demo", outcome, None, at + Duration::minutes(10)).await?;
    h.refills += usize::from(outcome == "accepted");
    Ok(())
}
