//! Ties the policy to the job queue: plans a call for every unanswered
//! reminder, claims due jobs (re-checking the policy at claim time, since the
//! patient may have replied or the appointment moved), and records each
//! attempt's outcome with the next attempt's time. [`Scheduler::run`] is the
//! thin driver; everything else takes `now` and is tested with fake time.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use super::policy::{decide, Decision, Facts};
use crate::clock::Clock;
use crate::config::Config;
use crate::store::{Job, Store, StoreError};

pub const KIND: &str = "escalation";

/// A claimed call that is due within this much of `now` is placed now.
const SLACK_SECONDS: i64 = 60;

/// How an escalation call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Confirmed,
    Cancelled,
    Rescheduled,
    /// The person who answered was not the patient, or could not verify.
    WrongPerson,
    NoAnswer,
    Busy,
    Rejected,
    /// A short message with no medical details was left.
    Voicemail,
    /// Whoever answered asked not to be called again (consent withdrawn).
    OptedOut,
    Failed,
}

impl CallOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Confirmed => "confirmed",
            CallOutcome::Cancelled => "cancelled",
            CallOutcome::Rescheduled => "rescheduled",
            CallOutcome::WrongPerson => "wrong_person",
            CallOutcome::NoAnswer => "no_answer",
            CallOutcome::Busy => "busy",
            CallOutcome::Rejected => "rejected",
            CallOutcome::Voicemail => "voicemail",
            CallOutcome::OptedOut => "opted_out",
            CallOutcome::Failed => "failed",
        }
    }
    /// Whether the escalation is over after this outcome.
    fn settles(self) -> bool {
        matches!(
            self,
            CallOutcome::Confirmed | CallOutcome::Cancelled | CallOutcome::Rescheduled | CallOutcome::WrongPerson | CallOutcome::OptedOut
        )
    }
}

/// Places one escalation call and reports how it ended (the call layer).
#[async_trait::async_trait]
pub trait Dialer: Send + Sync + 'static {
    async fn call(&self, job: Job) -> CallOutcome;
}

pub struct Scheduler {
    store: Store,
    config: Arc<Config>,
    instance: String,
    lease: Duration,
}

impl Scheduler {
    /// `instance` names this Clinivox process in leases (unique per instance).
    pub fn new(store: Store, config: Arc<Config>, instance: impl Into<String>, lease: Duration) -> Scheduler {
        Scheduler { store, config, instance: instance.into(), lease }
    }

    /// Queues a job for every appointment whose reminder went unanswered and
    /// that the policy says to call about. Returns how many were queued.
    pub async fn plan(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let p = &self.config.escalation;
        if !p.enabled {
            return Ok(0);
        }
        let mut queued = 0;
        for (appointment, patient) in self.store.escalation_candidates(now, now + p.horizon + Duration::days(1)).await? {
            if let Decision::CallAt(t) = self.decide(&appointment, now, false).await? {
                if self.store.enqueue_job(KIND, &appointment, &patient, t, now).await?.is_some() {
                    queued += 1;
                }
            }
        }
        Ok(queued)
    }

    /// Claims the next job that should be called now. Jobs the policy stops
    /// are closed; jobs whose time moved later are put back.
    pub async fn claim(&self, now: DateTime<Utc>) -> Result<Option<Job>, StoreError> {
        while let Some(job) = self.store.claim_job(KIND, &self.instance, self.lease, now).await? {
            match self.decide(&job.appointment_id, now, true).await? {
                Decision::CallAt(t) if t <= now + Duration::seconds(SLACK_SECONDS) => return Ok(Some(job)),
                Decision::CallAt(t) => {
                    self.store.finish_attempt(&job.id, &self.instance, "deferred", Some(t), now).await?;
                }
                Decision::Stop(why) => {
                    self.store.finish_attempt(&job.id, &self.instance, &format!("stopped: {}", why.as_str()), None, now).await?;
                }
            }
        }
        Ok(None)
    }

    /// Records how a call ended and when to try again, if at all.
    pub async fn record(&self, job: &Job, outcome: CallOutcome, now: DateTime<Utc>) -> Result<Job, StoreError> {
        let retry = if outcome.settles() {
            None
        } else {
            match self.decide(&job.appointment_id, now, false).await? {
                Decision::CallAt(t) => Some(t),
                Decision::Stop(_) => None,
            }
        };
        self.store.finish_attempt(&job.id, &self.instance, outcome.as_str(), retry, now).await
    }

    /// The policy's decision for an appointment as the store sees it now.
    /// `in_attempt`: the latest recorded attempt is the one just claimed and
    /// must not count as a past call.
    async fn decide(&self, appointment_id: &str, now: DateTime<Utc>, in_attempt: bool) -> Result<Decision, StoreError> {
        let a = self.store.appointment(appointment_id).await?;
        let patient = self.store.patient(&a.patient_id).await?;
        let reminder = self.store.latest_reminder(appointment_id).await?;
        let mut attempts = self.store.attempt_starts(KIND, appointment_id).await?;
        if in_attempt {
            attempts.pop();
        }
        let facts = Facts {
            status: a.status,
            starts_at: a.starts_at,
            reminder_sent_at: reminder.as_ref().map(|r| r.sent_at),
            replied: reminder.as_ref().is_some_and(|r| r.reply.is_some()),
            contact_consent: patient.contact_consent,
            attempts,
        };
        let c = &self.config;
        Ok(decide(&c.escalation, c.clinic.timezone, &c.clinic.holidays, &facts, now))
    }

    /// Places the call, renewing the job's lease every third of it while
    /// the call lasts: a call longer than the lease (a patient who talks
    /// for twenty minutes) must not let another node claim the job and
    /// phone the patient a second time.
    async fn call_keeping_the_lease(&self, dialer: &dyn Dialer, job: &Job, clock: &dyn Clock) -> CallOutcome {
        let every = (self.lease / 3).to_std().unwrap_or(std::time::Duration::from_secs(60)).max(std::time::Duration::from_secs(1));
        let call = dialer.call(job.clone());
        tokio::pin!(call);
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                outcome = &mut call => return outcome,
                _ = renew.tick() => {
                    if let Err(e) = self.store.renew_lease(&job.id, &self.instance, self.lease, clock.now()).await {
                        tracing::warn!(job = %job.id, error = %e, "could not renew an escalation call's lease");
                    }
                }
            }
        }
    }

    /// The driver: every `tick`, plan and place due calls, at most
    /// `max_concurrent_calls` at once, until `shutdown` completes.
    pub async fn run(
        self: Arc<Self>,
        dialer: Arc<dyn Dialer>,
        clock: Arc<dyn Clock>,
        tick: std::time::Duration,
        shutdown: impl Future<Output = ()>,
    ) {
        let active = Arc::new(AtomicUsize::new(0));
        let limit = self.config.escalation.max_concurrent_calls as usize;
        tokio::pin!(shutdown);
        let mut interval = tokio::time::interval(tick);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = interval.tick() => {}
            }
            let now = clock.now();
            if let Err(e) = self.plan(now).await {
                tracing::warn!(error = %e, "escalation planning failed");
            }
            while active.load(Ordering::SeqCst) < limit {
                let job = match self.claim(now).await {
                    Ok(Some(job)) => job,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming an escalation job failed");
                        break;
                    }
                };
                let slot = CallSlot::take(&active);
                let (this, dialer, clock) = (self.clone(), dialer.clone(), clock.clone());
                tokio::spawn(async move {
                    // Held until this task ends, however it ends: a call
                    // task that panics gives its slot back as it unwinds.
                    let _slot = slot;
                    let outcome = this.call_keeping_the_lease(dialer.as_ref(), &job, clock.as_ref()).await;
                    if let Err(e) = this.record(&job, outcome, clock.now()).await {
                        tracing::warn!(job = %job.id, error = %e, "recording an escalation outcome failed");
                    }
                });
            }
        }
    }
}

/// One of the scheduler's `max_concurrent_calls`, given back on drop.
struct CallSlot(Arc<AtomicUsize>);

impl CallSlot {
    fn take(active: &Arc<AtomicUsize>) -> CallSlot {
        active.fetch_add(1, Ordering::SeqCst);
        CallSlot(active.clone())
    }
}

impl Drop for CallSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
