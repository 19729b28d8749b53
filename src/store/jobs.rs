//! The job queue behind escalation calls. Jobs live in the database; an
//! instance *claims* a due job with a lease (PostgreSQL: `FOR UPDATE SKIP
//! LOCKED`, so several instances on one database never take the same job;
//! SQLite: a single writer makes the claim atomic). A job whose instance died
//! is claimed again once its lease expires; finishing is fenced by the lease,
//! so a late, presumed-dead instance cannot overwrite the new owner's result.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use utoipa::ToSchema;

use super::{is_unique_violation, new_id, ts, Actor, Backend, Channel, Page, Result, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Job {
    pub id: String,
    /// "escalation" (call back about a reminder) or "refill" (offer a freed slot).
    pub kind: String,
    pub appointment_id: String,
    pub patient_id: String,
    pub due_at: DateTime<Utc>,
    /// pending, running, done or cancelled.
    pub status: String,
    pub attempts: i64,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub last_outcome: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct JobAttempt {
    pub attempt: i64,
    pub instance: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub outcome: Option<String>,
}

const COLUMNS: &str = "id, kind, appointment_id, patient_id, due_at, status, attempts, lease_owner, lease_expires_at, last_outcome";

impl Store {
    /// Queues a job unless one of the same kind is already open for the
    /// appointment (then `None`).
    pub async fn enqueue_job(
        &self,
        kind: &str,
        appointment_id: &str,
        patient_id: &str,
        due_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<Job>> {
        let id = new_id();
        let inserted = sqlx::query(
            "INSERT INTO jobs (id, kind, appointment_id, patient_id, due_at, status, attempts, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6)",
        )
        .bind(&id)
        .bind(kind)
        .bind(appointment_id)
        .bind(patient_id)
        .bind(due_at.timestamp())
        .bind(now.timestamp())
        .execute(&self.pool)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(e.into()),
            Ok(_) => Ok(Some(self.job(&id).await?)),
        }
    }

    /// Claims the most overdue job of `kind` — pending and due, or running
    /// with an expired lease — for `instance` until `now + lease`.
    pub async fn claim_job(&self, kind: &str, instance: &str, lease: Duration, now: DateTime<Utc>) -> Result<Option<Job>> {
        let lock = match self.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE jobs SET status = 'running', lease_owner = $1, lease_expires_at = $2, attempts = attempts + 1, updated_at = $3 \
             WHERE id = (SELECT id FROM jobs WHERE kind = $4 AND ((status = 'pending' AND due_at <= $3) \
                         OR (status = 'running' AND lease_expires_at <= $3)) ORDER BY due_at, id LIMIT 1 {lock}) \
             RETURNING {COLUMNS}"
        );
        let mut tx = self.pool.begin().await?;
        let Some(row) = sqlx::query(&sql)
            .bind(instance)
            .bind((now + lease).timestamp())
            .bind(now.timestamp())
            .bind(kind)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let job = from_row(&row)?;
        // An earlier attempt still open means its instance died mid-call.
        sqlx::query("UPDATE job_attempts SET ended_at = $1, outcome = 'lease_expired' WHERE job_id = $2 AND ended_at IS NULL")
            .bind(now.timestamp())
            .bind(&job.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO job_attempts (job_id, attempt, instance, started_at) VALUES ($1, $2, $3, $4)")
            .bind(&job.id)
            .bind(job.attempts)
            .bind(instance)
            .bind(now.timestamp())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(job))
    }

    /// Extends a lease while a call goes on; fails if the lease was lost.
    pub async fn renew_lease(&self, job_id: &str, instance: &str, lease: Duration, now: DateTime<Utc>) -> Result<()> {
        let done = sqlx::query("UPDATE jobs SET lease_expires_at = $1 WHERE id = $2 AND status = 'running' AND lease_owner = $3")
            .bind((now + lease).timestamp())
            .bind(job_id)
            .bind(instance)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict("the job's lease was lost".into()));
        }
        Ok(())
    }

    /// Ends the current attempt with `outcome`: the job is due again at
    /// `retry_at`, or done. Recorded on the job and in the appointment's history.
    pub async fn finish_attempt(
        &self,
        job_id: &str,
        instance: &str,
        outcome: &str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Job> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE jobs SET status = $1, due_at = COALESCE($2, due_at), lease_owner = NULL, lease_expires_at = NULL, \
             last_outcome = $3, updated_at = $4 WHERE id = $5 AND status = 'running' AND lease_owner = $6",
        )
        .bind(if retry_at.is_some() { "pending" } else { "done" })
        .bind(retry_at.map(|t| t.timestamp()))
        .bind(outcome)
        .bind(now.timestamp())
        .bind(job_id)
        .bind(instance)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict("the job's lease was lost".into()));
        }
        sqlx::query("UPDATE job_attempts SET ended_at = $1, outcome = $2 WHERE job_id = $3 AND ended_at IS NULL")
            .bind(now.timestamp())
            .bind(outcome)
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = $1");
        let job = from_row(&sqlx::query(&sql).bind(job_id).fetch_one(&mut *tx).await?)?;
        let after = serde_json::json!({"job": job.id, "kind": job.kind, "attempt": job.attempts, "outcome": outcome}).to_string();
        let actor = Actor::new(instance, Channel::Phone);
        Store::audit(&mut tx, now, &actor, "appointment", &job.appointment_id, &format!("{}_call", job.kind), None, Some(after)).await?;
        if retry_at.is_none() && job.kind == "escalation" {
            let data = serde_json::json!({
                "job_id": job.id,
                "appointment_id": job.appointment_id,
                "patient_id": job.patient_id,
                "attempts": job.attempts,
                "outcome": outcome,
                "finished_at": now,
            });
            let event = super::Event { kind: super::EventType::EscalationFinished, order_key: job.appointment_id.clone(), data };
            self.emit(&mut tx, now, event).await?;
        }
        tx.commit().await?;
        Ok(job)
    }

    /// Cancels the open jobs of an appointment (a reply came, it changed…).
    pub async fn cancel_jobs(&self, appointment_id: &str, reason: &str, now: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE jobs SET status = 'cancelled', last_outcome = $1, updated_at = $2 WHERE appointment_id = $3 AND status = 'pending'",
        )
        .bind(reason)
        .bind(now.timestamp())
        .bind(appointment_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn job(&self, id: &str) -> Result<Job> {
        let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = $1");
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?.ok_or(StoreError::NotFound("job"))?;
        from_row(&row)
    }

    /// Jobs, newest first, optionally of one status.
    pub async fn jobs(&self, status: Option<&str>, limit: i64) -> Result<Vec<Job>> {
        self.jobs_page(status, Page { limit: limit.clamp(1, 1000), offset: 0 }).await
    }

    /// Most recent first.
    pub async fn jobs_page(&self, status: Option<&str>, page: Page) -> Result<Vec<Job>> {
        let sql = format!("SELECT {COLUMNS} FROM jobs WHERE ($1 IS NULL OR status = $1) ORDER BY created_at DESC, id LIMIT $2 OFFSET $3");
        let rows = sqlx::query(&sql).bind(status).bind(page.limit).bind(page.offset).fetch_all(&self.pool).await?;
        rows.iter().map(from_row).collect()
    }

    pub async fn job_attempts(&self, job_id: &str) -> Result<Vec<JobAttempt>> {
        let rows =
            sqlx::query("SELECT attempt, instance, started_at, ended_at, outcome FROM job_attempts WHERE job_id = $1 ORDER BY attempt")
                .bind(job_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(attempt_from_row).collect()
    }

    /// The attempts of several jobs in one read per 500 jobs, each job's in
    /// order; a job with none is absent.
    pub async fn attempts_of_jobs(&self, job_ids: &[String]) -> Result<std::collections::HashMap<String, Vec<JobAttempt>>> {
        let mut out: std::collections::HashMap<String, Vec<JobAttempt>> = std::collections::HashMap::new();
        for chunk in job_ids.chunks(500) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT job_id, attempt, instance, started_at, ended_at, outcome FROM job_attempts WHERE job_id IN ({}) \
                 ORDER BY job_id, attempt",
                marks.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            for row in q.fetch_all(&self.pool).await? {
                out.entry(row.try_get("job_id")?).or_default().push(attempt_from_row(&row)?);
            }
        }
        Ok(out)
    }

    /// Open (pending or running) jobs, of any kind, due before `until`.
    pub async fn open_jobs_due(&self, until: DateTime<Utc>) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE status IN ('pending', 'running') AND due_at < $1")
            .bind(until.timestamp())
            .fetch_one(&self.pool)
            .await?)
    }

    /// Start times of every call attempt of `kind` about an appointment.
    pub async fn attempt_starts(&self, kind: &str, appointment_id: &str) -> Result<Vec<DateTime<Utc>>> {
        let starts: Vec<i64> = sqlx::query_scalar(
            "SELECT a.started_at FROM job_attempts a JOIN jobs j ON j.id = a.job_id WHERE j.kind = $1 AND j.appointment_id = $2 \
             AND (a.outcome IS NULL OR a.outcome NOT LIKE 'deferred%') ORDER BY a.started_at",
        )
        .bind(kind)
        .bind(appointment_id)
        .fetch_all(&self.pool)
        .await?;
        starts.into_iter().map(ts).collect()
    }

    /// Booked appointments starting in `(now, until]` that had a reminder and
    /// never had an escalation job: the candidates to plan calls for.
    pub async fn escalation_candidates(&self, now: DateTime<Utc>, until: DateTime<Utc>) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT a.id, a.patient_id FROM appointments a WHERE a.status = 'booked' AND a.starts_at > $1 AND a.starts_at <= $2 \
             AND EXISTS (SELECT 1 FROM reminders r WHERE r.appointment_id = a.id AND r.reply IS NULL) \
             AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.appointment_id = a.id AND j.kind = 'escalation') ORDER BY a.starts_at",
        )
        .bind(now.timestamp())
        .bind(until.timestamp())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("id")?, r.try_get("patient_id")?))).collect()
    }
}

fn from_row(r: &AnyRow) -> Result<Job> {
    let lease: Option<i64> = r.try_get("lease_expires_at")?;
    Ok(Job {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        appointment_id: r.try_get("appointment_id")?,
        patient_id: r.try_get("patient_id")?,
        due_at: ts(r.try_get("due_at")?)?,
        status: r.try_get("status")?,
        attempts: r.try_get("attempts")?,
        lease_owner: r.try_get("lease_owner")?,
        lease_expires_at: lease.map(ts).transpose()?,
        last_outcome: r.try_get("last_outcome")?,
    })
}

fn attempt_from_row(r: &AnyRow) -> Result<JobAttempt> {
    let ended: Option<i64> = r.try_get("ended_at")?;
    Ok(JobAttempt {
        attempt: r.try_get("attempt")?,
        instance: r.try_get("instance")?,
        started_at: ts(r.try_get("started_at")?)?,
        ended_at: ended.map(ts).transpose()?,
        outcome: r.try_get("outcome")?,
    })
}
