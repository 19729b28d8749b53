//! The only part of the conversation that touches the store: a [`Session`]
//! feeds caller events to a [`Conversation`], carries out each
//! [`StoreRequest`] against the real [`Store`] and hands the reply back,
//! until the conversation needs the caller again. What is left (speech,
//! transfers, hang-ups) is returned to whoever owns the call: the call task,
//! `clinivox chat`, or a test.

use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};

use super::action::{Action, StoreReply, StoreRequest};
use super::context::Context;
use super::machine::Conversation;
use super::outreach::Outreach;
use crate::phone::E164;
use crate::store::{
    Actor, Channel, NewAppointment, NewCall, NewCallback, NewPatient, NewTurn, NewWaitlistEntry, Reschedule, SlotQuery, Store, StoreError,
};

/// Most patients a failed check is counted against when found by name.
const NAMED_LIKE_LIMIT: usize = 10;

/// Most free slots fetched per search; the conversation offers three.
const SEARCH_LIMIT: usize = 200;

/// One call's conversation wired to the store.
pub struct Session {
    store: Store,
    conversation: Conversation,
    call_id: Option<String>,
    hold_ttl: Duration,
    actor: Actor,
    /// Wall time spent waiting on the store, for benchmarks.
    store_time: StdDuration,
}

impl Session {
    /// Starts the conversation and runs it until it first waits for the caller.
    pub async fn start(store: Store, ctx: Context, now: DateTime<Utc>) -> (Session, Vec<Action>) {
        let hold_ttl = Duration::seconds(ctx.config.store.hold_seconds);
        Session::begin(store, Conversation::new(ctx, now), hold_ttl, now).await
    }

    /// Starts an outbound call for `outreach` (see [`Conversation::new_outreach`])
    /// and runs it until it first waits for the person who answered.
    pub async fn start_outreach(store: Store, ctx: Context, now: DateTime<Utc>, outreach: Outreach) -> (Session, Vec<Action>) {
        let hold_ttl = Duration::seconds(ctx.config.store.hold_seconds);
        Session::begin(store, Conversation::new_outreach(ctx, now, outreach), hold_ttl, now).await
    }

    async fn begin(store: Store, conversation: Conversation, hold_ttl: Duration, now: DateTime<Utc>) -> (Session, Vec<Action>) {
        let mut s = Session {
            store,
            conversation,
            call_id: None,
            hold_ttl,
            actor: Actor::new("assistant", Channel::Phone),
            store_time: StdDuration::ZERO,
        };
        let out = s.run(now).await;
        (s, out)
    }

    pub async fn utterance(&mut self, now: DateTime<Utc>, text: &str, confidence: f64) -> Vec<Action> {
        self.conversation.handle_utterance(now, text, confidence);
        self.run(now).await
    }

    /// Each character of `keys` is one key press.
    pub async fn dtmf(&mut self, now: DateTime<Utc>, keys: &str) -> Vec<Action> {
        let mut out = Vec::new();
        for k in keys.chars().filter(|c| !c.is_whitespace()) {
            self.conversation.handle_dtmf(now, k);
            out.extend(self.run(now).await);
        }
        out
    }

    pub async fn silence(&mut self, now: DateTime<Utc>) -> Vec<Action> {
        self.conversation.handle_silence(now);
        self.run(now).await
    }

    /// The call layer could not put the caller through to staff.
    pub async fn transfer_failed(&mut self, now: DateTime<Utc>) -> Vec<Action> {
        self.conversation.handle_transfer_failed(now);
        self.run(now).await
    }

    pub async fn hangup(&mut self, now: DateTime<Utc>) -> Vec<Action> {
        self.conversation.handle_hangup(now);
        self.run(now).await
    }

    /// Stores the timings of the latest assistant turn (end of the caller's
    /// speech → transcript, → first reply audio) in the background, so the
    /// call never waits on it.
    pub fn record_timings(&self, transcript: StdDuration, first_audio: StdDuration) {
        let Some(id) = self.call_id.clone() else { return };
        let store = self.store.clone();
        let ms = |d: StdDuration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let (transcript, first_audio) = (ms(transcript), ms(first_audio));
        tokio::spawn(async move {
            if let Err(e) = store.set_turn_timings(&id, transcript, first_audio).await {
                tracing::warn!(error = %e, "could not record turn timings");
            }
        });
    }

    /// Goes on in another of the clinic's languages (the caller answered in
    /// it); the call record is updated.
    pub async fn switch_language(&mut self, language: std::sync::Arc<super::context::Language>) {
        let code = language.prompts.lang().to_string();
        self.conversation.switch_language(language);
        if let Some(id) = &self.call_id {
            if let Err(e) = self.store.set_call_language(id, &code).await {
                tracing::warn!(error = %e, "could not record the call's language");
            }
        }
    }

    pub fn conversation(&self) -> &Conversation {
        &self.conversation
    }

    /// The call record's id, once the store has created it.
    pub fn call_id(&self) -> Option<&str> {
        self.call_id.as_deref()
    }

    /// Total time spent in store requests so far.
    pub fn store_time(&self) -> StdDuration {
        self.store_time
    }

    async fn run(&mut self, now: DateTime<Utc>) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some(action) = self.conversation.poll_action() {
            match action {
                Action::Store(req) => {
                    let wants_reply = req.expects_reply();
                    let started = Instant::now();
                    let reply = self.execute(req, now).await;
                    self.store_time += started.elapsed();
                    if wants_reply {
                        self.conversation.handle_store_reply(reply);
                    }
                }
                other => out.push(other),
            }
        }
        out
    }

    async fn execute(&mut self, req: StoreRequest, now: DateTime<Utc>) -> StoreReply {
        match self.try_execute(req, now).await {
            Ok(reply) => reply,
            Err(StoreError::Conflict(_)) => StoreReply::Conflict,
            Err(e) => StoreReply::Failed(e.to_string()),
        }
    }

    async fn try_execute(&mut self, req: StoreRequest, now: DateTime<Utc>) -> Result<StoreReply, StoreError> {
        let store = &self.store;
        let actor = &self.actor;
        Ok(match req {
            StoreRequest::StartCall { direction, remote_number, language } => {
                let call = store
                    .start_call(
                        NewCall {
                            direction: direction.as_str().into(),
                            remote_number,
                            patient_id: None,
                            language: Some(language),
                            appointment_id: None,
                        },
                        now,
                    )
                    .await;
                match call {
                    Ok(c) => self.call_id = Some(c.id),
                    // The call goes on without a transcript rather than not at all.
                    Err(e) => tracing::warn!(error = %e, "could not record the call"),
                }
                StoreReply::Done
            }
            StoreRequest::RecordTurn { speaker, text, intent, confidence } => {
                if let Some(id) = &self.call_id {
                    // Text the assistant wrote itself, and keys, are exact:
                    // confidence 1. (A NULL here would also make sqlx's Any
                    // driver prepare the insert with a FLOAT4 parameter on
                    // PostgreSQL, after which real confidences fail to bind.)
                    let confidence = Some(confidence.unwrap_or(1.0));
                    let turn = NewTurn { speaker: speaker.as_str().into(), text, confidence, intent, latency_ms: None };
                    if let Err(e) = store.add_turn(id, turn, now).await {
                        tracing::warn!(error = %e, "could not record a turn");
                    }
                }
                StoreReply::Done
            }
            StoreRequest::FinishCall { outcome, patient_id, transfer_target, summary } => {
                if let Some(id) = &self.call_id {
                    let done = store
                        .finish_call(id, outcome.as_str(), patient_id.as_deref(), transfer_target.as_deref(), summary.as_deref(), now)
                        .await;
                    if let Err(e) = done {
                        tracing::warn!(error = %e, "could not close the call record");
                    }
                }
                StoreReply::Done
            }
            StoreRequest::PatientsByPhone { phone } => match E164::parse(&phone) {
                Ok(p) => StoreReply::Patients(store.patients_by_phone(&p).await?),
                Err(_) => StoreReply::Patients(Vec::new()),
            },
            StoreRequest::PatientsBornOn { date } => StoreReply::Patients(store.patients_born_on(date).await?),
            StoreRequest::CheckIdentity { matched, name, phone, may_be_new } => {
                let limits = self.conversation.ctx.config.verification;
                StoreReply::Locked(check_identity(store, limits, matched, name, phone, may_be_new, now).await?)
            }
            StoreRequest::CreatePatient { name, date_of_birth, phone, language } => {
                let phones = phone.and_then(|p| E164::parse(&p).ok()).into_iter().collect();
                let new =
                    NewPatient { name, phones, date_of_birth, national_id: None, preferred_language: language, contact_consent: false };
                StoreReply::Patient(store.create_patient(new, actor, now).await?)
            }
            StoreRequest::FreeSlots { specialty, provider, from, to, part_of_day } => {
                let q = SlotQuery {
                    specialty,
                    provider,
                    from: Some(from),
                    to: Some(to),
                    part_of_day,
                    hold_token: None,
                    limit: Some(SEARCH_LIMIT),
                };
                StoreReply::Slots(store.free_slots(&q, now).await?)
            }
            StoreRequest::HoldSlots { slots } => {
                let mut held = Vec::with_capacity(slots.len());
                for slot in slots {
                    match store.hold_slot(&slot.provider_id, slot.starts_at, self.hold_ttl, now).await {
                        Ok(h) => held.push((slot, h)),
                        // Another caller got it first: offer the rest.
                        Err(StoreError::Conflict(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                StoreReply::Held(held)
            }
            StoreRequest::ReleaseHolds { tokens } => {
                for t in tokens {
                    // A hold that outlived its use expires by itself anyway.
                    if let Err(e) = store.release_hold(&t).await {
                        tracing::warn!(error = %e, "could not release a hold");
                    }
                }
                StoreReply::Done
            }
            StoreRequest::Book { patient_id, provider_id, starts_at, hold_token } => {
                let new = NewAppointment { patient_id, provider_id, starts_at, hold_token, notes: None };
                StoreReply::Appointment(store.book(new, actor, now).await?)
            }
            StoreRequest::UpcomingAppointments { patient_id } => {
                StoreReply::Appointments(store.appointments_for_patient(&patient_id, true, now).await?)
            }
            StoreRequest::Confirm { appointment_id } => StoreReply::Appointment(store.confirm(&appointment_id, actor, now).await?),
            StoreRequest::Cancel { appointment_id } => StoreReply::Appointment(store.cancel(&appointment_id, actor, now).await?),
            StoreRequest::Reschedule { appointment_id, provider_id, starts_at, hold_token } => {
                let to = Reschedule { provider_id: Some(provider_id), starts_at, hold_token };
                StoreReply::Appointment(store.reschedule(&appointment_id, to, actor, now).await?)
            }
            StoreRequest::WaitlistAdd { patient_id, specialty_id, provider_id, earliest, latest } => {
                let new = NewWaitlistEntry {
                    patient_id,
                    specialty_id,
                    provider_id,
                    earliest,
                    latest,
                    notes: Some("added by the phone assistant".into()),
                };
                store.waitlist_add(new, actor, now).await?;
                StoreReply::Done
            }
            StoreRequest::OptOut { patient_id } => {
                let patch = crate::store::PatientPatch { contact_consent: Some(false), ..Default::default() };
                store.update_patient(&patient_id, patch, actor, now).await?;
                StoreReply::Done
            }
            StoreRequest::SaveCallback { patient_id, name, phone, reason, language, promised } => {
                let new = NewCallback { call_id: self.call_id.clone(), patient_id, name, phone, reason, language, promised };
                store.create_callback(new, actor, now).await?;
                StoreReply::Done
            }
        })
    }
}

/// Whether identity checks are locked for the patient the caller matched,
/// the patients named like them, or their number, after `max_failures`
/// failed checks within the window; a failed check (nothing matched) is
/// then counted against all of those.
async fn check_identity(
    store: &Store,
    limits: crate::config::Verification,
    matched: Option<String>,
    name: Option<String>,
    phone: Option<String>,
    may_be_new: bool,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let phone = phone.and_then(|p| E164::parse(&p).ok());
    let failed = matched.is_none();
    let mut patients: Vec<String> = matched.into_iter().collect();
    if let (true, Some(name)) = (failed, &name) {
        patients.extend(patients_named(store, name).await?);
    }
    // A new patient booking is no wrong guess at anyone.
    let counted = failed && !(may_be_new && patients.is_empty());
    let subjects = crate::store::identity_subjects(&patients, phone.as_ref());
    // Failures before this check: `max_failures` wrong answers are allowed.
    let failures = store.identity_failures_since(&subjects, now - limits.window).await?;
    let locked = failures >= i64::from(limits.max_failures);
    if counted {
        store.record_identity_failure(&subjects, now).await?;
    }
    if counted || locked {
        // Ids and counts only: who it was about stays out of the log.
        tracing::info!(failures, locked, patients = patients.len(), "phone identity check failed or locked");
    }
    Ok(locked)
}

/// Patients whose name is the one the caller gave, heard loosely: a store
/// search by each of its two longest words, then the conversation's match.
async fn patients_named(store: &Store, name: &str) -> Result<Vec<String>, StoreError> {
    let mut words: Vec<&str> = name.split_whitespace().collect();
    words.sort_by_key(|w| std::cmp::Reverse(w.chars().count()));
    let mut out = Vec::new();
    for word in words.into_iter().take(2) {
        for (id, recorded) in store.patients_with_name_like(word).await? {
            if out.len() < NAMED_LIKE_LIMIT && !out.contains(&id) && super::identify::same_person(name, &recorded) {
                out.push(id);
            }
        }
    }
    Ok(out)
}
