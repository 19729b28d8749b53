//! The facts behind the clinic's figures (the console's KPI page): the
//! rows of a period, few columns each, read in one pass per table. Sums,
//! rates and percentiles are made from them by `console::kpis`, a pure
//! function tested without a database.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{ts, Result, Store};

/// One call.
#[derive(Debug, Clone, PartialEq)]
pub struct CallFact {
    pub started_at: DateTime<Utc>,
    pub direction: String,
    pub language: Option<String>,
    pub outcome: Option<String>,
    /// Where it was transferred (a ring group), if it was.
    pub transfer_target: Option<String>,
    /// A transferred call's summary ("wants: cancel; caller: …"): its reason.
    pub transfer_summary: Option<String>,
}

/// The wait before one of the assistant's replies, on the phone.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyFact {
    pub call_started_at: DateTime<Utc>,
    pub language: Option<String>,
    pub latency_ms: i64,
}

/// A booking, confirmation, cancellation or move, by whom it came.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeFact {
    pub at: DateTime<Utc>,
    /// book, confirm, cancel, reschedule.
    pub action: String,
    /// phone, sms, whatsapp, api, staff… (`Channel`).
    pub channel: String,
}

/// A reminder sent, and the patient's reply if any.
#[derive(Debug, Clone, PartialEq)]
pub struct ReminderFact {
    pub sent_at: DateTime<Utc>,
    pub reply: Option<String>,
}

/// An escalation or refill job that ended.
#[derive(Debug, Clone, PartialEq)]
pub struct JobFact {
    /// escalation or refill.
    pub kind: String,
    pub ended_at: DateTime<Utc>,
    pub outcome: Option<String>,
}

/// A callback request.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackFact {
    pub created_at: DateTime<Utc>,
    pub language: String,
    pub done_at: Option<DateTime<Utc>>,
}

/// Everything of a period the figures are made of.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KpiFacts {
    pub calls: Vec<CallFact>,
    pub latencies: Vec<LatencyFact>,
    pub changes: Vec<ChangeFact>,
    pub reminders: Vec<ReminderFact>,
    pub jobs: Vec<JobFact>,
    /// Appointments whose patient did not come, by when they were due.
    pub no_shows: Vec<DateTime<Utc>>,
    pub callbacks: Vec<CallbackFact>,
}

impl Store {
    /// The facts of `[from, until)`: calls by when they started, changes,
    /// reminders and callbacks by when they happened, jobs by when they
    /// ended, no-shows by when the appointment was.
    pub async fn kpi_facts(&self, from: DateTime<Utc>, until: DateTime<Utc>) -> Result<KpiFacts> {
        let (a, b) = (from.timestamp(), until.timestamp());
        let mut f = KpiFacts::default();
        let rows = sqlx::query(
            "SELECT started_at, direction, language, outcome, transfer_target, \
             CASE WHEN transfer_target IS NOT NULL THEN summary END AS transfer_summary \
             FROM calls WHERE started_at >= $1 AND started_at < $2",
        )
        .bind(a)
        .bind(b)
        .fetch_all(&self.pool)
        .await?;
        for r in &rows {
            f.calls.push(CallFact {
                started_at: ts(r.try_get("started_at")?)?,
                direction: r.try_get("direction")?,
                language: r.try_get("language")?,
                outcome: r.try_get("outcome")?,
                transfer_target: r.try_get("transfer_target")?,
                transfer_summary: r.try_get("transfer_summary")?,
            });
        }
        let rows = sqlx::query(
            "SELECT c.started_at, c.language, t.latency_ms FROM call_turns t JOIN calls c ON c.id = t.call_id \
             WHERE c.started_at >= $1 AND c.started_at < $2 AND t.latency_ms IS NOT NULL",
        )
        .bind(a)
        .bind(b)
        .fetch_all(&self.pool)
        .await?;
        for r in &rows {
            f.latencies.push(LatencyFact {
                call_started_at: ts(r.try_get("started_at")?)?,
                language: r.try_get("language")?,
                latency_ms: r.try_get("latency_ms")?,
            });
        }
        let rows = sqlx::query(
            "SELECT at, action, channel FROM audit_log WHERE entity = 'appointment' \
             AND action IN ('book', 'confirm', 'cancel', 'reschedule') AND at >= $1 AND at < $2",
        )
        .bind(a)
        .bind(b)
        .fetch_all(&self.pool)
        .await?;
        for r in &rows {
            f.changes.push(ChangeFact { at: ts(r.try_get("at")?)?, action: r.try_get("action")?, channel: r.try_get("channel")? });
        }
        let rows = sqlx::query("SELECT sent_at, reply FROM reminders WHERE sent_at >= $1 AND sent_at < $2")
            .bind(a)
            .bind(b)
            .fetch_all(&self.pool)
            .await?;
        for r in &rows {
            f.reminders.push(ReminderFact { sent_at: ts(r.try_get("sent_at")?)?, reply: r.try_get("reply")? });
        }
        let rows = sqlx::query(
            "SELECT kind, updated_at, last_outcome FROM jobs WHERE status IN ('done', 'cancelled') AND updated_at >= $1 AND updated_at < $2",
        )
        .bind(a)
        .bind(b)
        .fetch_all(&self.pool)
        .await?;
        for r in &rows {
            f.jobs.push(JobFact { kind: r.try_get("kind")?, ended_at: ts(r.try_get("updated_at")?)?, outcome: r.try_get("last_outcome")? });
        }
        let rows = sqlx::query("SELECT starts_at FROM appointments WHERE status = 'no_show' AND starts_at >= $1 AND starts_at < $2")
            .bind(a)
            .bind(b)
            .fetch_all(&self.pool)
            .await?;
        for r in &rows {
            f.no_shows.push(ts(r.try_get("starts_at")?)?);
        }
        let rows = sqlx::query("SELECT created_at, language, done_at FROM callback_requests WHERE created_at >= $1 AND created_at < $2")
            .bind(a)
            .bind(b)
            .fetch_all(&self.pool)
            .await?;
        for r in &rows {
            f.callbacks.push(CallbackFact {
                created_at: ts(r.try_get("created_at")?)?,
                language: r.try_get("language")?,
                done_at: r.try_get::<Option<i64>, _>("done_at")?.map(ts).transpose()?,
            });
        }
        Ok(f)
    }
}
