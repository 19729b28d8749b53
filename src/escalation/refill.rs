//! Refilling freed slots: when an appointment is cancelled (through any
//! channel) far enough ahead, the slot is offered by phone to waiting-list
//! patients one at a time. Each offer holds the slot for the offer's time box,
//! so nobody else can book it mid-offer; the first to accept gets it (as a new
//! booking, or by moving their later appointment earlier) and the others are
//! never called. Jobs of kind `refill` in the same leased queue as escalations.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::config::Config;
use crate::store::{Actor, Channel, Hold, Job, NewAppointment, Reschedule, Store, StoreError, WaitlistEntry};

pub const KIND: &str = "refill";

/// One offer being made: call `entry.patient_id` about `job`'s freed slot.
#[derive(Debug, Clone)]
pub struct Offer {
    pub job: Job,
    pub entry: WaitlistEntry,
    pub hold: Hold,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferOutcome {
    Accepted,
    Declined,
    NoAnswer,
}

impl OfferOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            OfferOutcome::Accepted => "accepted",
            OfferOutcome::Declined => "declined",
            OfferOutcome::NoAnswer => "no_answer",
        }
    }
}

pub struct Refill {
    store: Store,
    config: Arc<Config>,
    instance: String,
    lease: Duration,
}

impl Refill {
    pub fn new(store: Store, config: Arc<Config>, instance: impl Into<String>, lease: Duration) -> Refill {
        Refill { store, config, instance: instance.into(), lease }
    }

    /// Queues a refill job for each recent cancellation worth offering.
    pub async fn plan(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let p = &self.config.escalation;
        if !p.refill_enabled {
            return Ok(0);
        }
        let mut queued = 0;
        for (appointment, patient) in self.store.refill_candidates(now + p.refill_min_lead).await? {
            if self.store.enqueue_job(KIND, &appointment, &patient, now, now).await?.is_some() {
                queued += 1;
            }
        }
        Ok(queued)
    }

    /// Claims a refill job and prepares the next offer: the slot held for the
    /// offer's time box for the first matching waiting-list patient. Jobs with
    /// nobody left to offer to, or whose slot was booked meanwhile, are closed.
    pub async fn next_offer(&self, now: DateTime<Utc>) -> Result<Option<Offer>, StoreError> {
        while let Some(job) = self.store.claim_job(KIND, &self.instance, self.lease, now).await? {
            let freed = self.store.appointment(&job.appointment_id).await?;
            let matches = self.store.refill_matches(&freed, &job.id, now).await?;
            let Some(entry) = matches.into_iter().next() else {
                self.store.finish_attempt(&job.id, &self.instance, "no_candidates", None, now).await?;
                continue;
            };
            match self.store.hold_slot(&freed.provider_id, freed.starts_at, self.config.escalation.refill_offer, now).await {
                Ok(hold) => {
                    self.store.record_offer(&job.id, &entry, now).await?;
                    return Ok(Some(Offer { job, entry, hold }));
                }
                Err(StoreError::Conflict(_) | StoreError::Invalid { .. }) => {
                    self.store.finish_attempt(&job.id, &self.instance, "slot_gone", None, now).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Settles an offer. Accepted: the patient gets the slot (their later
    /// appointment of the same specialty is moved, else a new one is booked)
    /// and leaves the waiting list. The phone conversation
    /// (`conversation::Outreach::Offer`) books the slot itself with the
    /// offer's hold; that booking is recognised here and not made twice.
    /// Otherwise the slot is released and the job is due again at once for
    /// the next patient.
    pub async fn resolve(&self, offer: &Offer, outcome: OfferOutcome, now: DateTime<Utc>) -> Result<Job, StoreError> {
        let store = &self.store;
        store.resolve_offer(&offer.job.id, &offer.entry.id, outcome.as_str()).await?;
        if outcome != OfferOutcome::Accepted {
            store.release_hold(&offer.hold.token).await?;
            return store.finish_attempt(&offer.job.id, &self.instance, outcome.as_str(), Some(now), now).await;
        }
        let freed = store.appointment(&offer.job.appointment_id).await?;
        let actor = Actor::new("refill", Channel::Phone);
        let theirs = store.appointments_for_patient(&offer.entry.patient_id, true, now).await?;
        if let Some(a) = theirs.iter().find(|a| a.provider_id == freed.provider_id && a.starts_at == freed.starts_at) {
            store.waitlist_fulfil(&offer.entry.id, &a.id, &offer.job.appointment_id, now).await?;
            return store.finish_attempt(&offer.job.id, &self.instance, "accepted", None, now).await;
        }
        let later = theirs.into_iter().find(|a| a.specialty_id == freed.specialty_id && a.starts_at > freed.starts_at);
        let taken = match later {
            Some(a) => {
                let to = Reschedule {
                    provider_id: Some(freed.provider_id.clone()),
                    starts_at: freed.starts_at,
                    hold_token: Some(offer.hold.token.clone()),
                };
                store.reschedule(&a.id, to, &actor, now).await
            }
            None => {
                let new = NewAppointment {
                    patient_id: offer.entry.patient_id.clone(),
                    provider_id: freed.provider_id.clone(),
                    starts_at: freed.starts_at,
                    hold_token: Some(offer.hold.token.clone()),
                    notes: Some("from the waiting list".into()),
                };
                store.book(new, &actor, now).await
            }
        };
        match taken {
            Ok(a) => {
                store.waitlist_fulfil(&offer.entry.id, &a.id, &offer.job.appointment_id, now).await?;
                store.finish_attempt(&offer.job.id, &self.instance, "accepted", None, now).await
            }
            // The hold expired and someone else booked: nothing left to offer.
            Err(StoreError::Conflict(_)) => store.finish_attempt(&offer.job.id, &self.instance, "slot_gone", None, now).await,
            Err(e) => Err(e),
        }
    }
}
