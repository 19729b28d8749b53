//! Retention: what the store keeps about patients, and for how long
//! (`[privacy]`, GDPR Art. 5(1)(e), storage limitation). Each kind of data
//! has its own period; older data goes, the rest is untouched. Call records
//! themselves stay (anonymous counts for the KPIs), stripped of what was said.
//!
//! Every statement is idempotent, so the purge runs on every node at once
//! without coordination: a row deleted twice, or a recording already gone,
//! is simply nothing to do.

use chrono::{DateTime, Duration, Utc};
use sqlx::Row;

use super::{Result, Store};

/// How long each kind of data is kept (`[privacy]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// What callers said and were told (`call_turns`, the call's summary).
    pub transcripts: Duration,
    /// Call recordings (the WAV files and their paths).
    pub recordings: Duration,
    /// Before/after snapshots in the audit log (whole patient records);
    /// the entries themselves — who did what, when — stay.
    pub audit_snapshots: Duration,
    /// Idempotency keys with the response bodies they replay.
    pub idempotency: Duration,
    /// Escalation and refill jobs that ended, with their attempts and offers.
    pub finished_jobs: Duration,
    /// Callback requests staff marked done.
    pub callbacks: Duration,
    /// Failed identity checks: kept as long as they count towards a
    /// lockout (`[privacy] verify_window_hours`), not a moment longer.
    pub identity_failures: Duration,
    /// The webhooks' delivery log: delivered and given-up deliveries, with
    /// their events (ids and times of appointments and calls).
    pub webhook_log: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            transcripts: Duration::days(30),
            recordings: Duration::days(30),
            audit_snapshots: Duration::days(365),
            idempotency: Duration::days(1),
            finished_jobs: Duration::days(90),
            callbacks: Duration::days(90),
            identity_failures: Duration::hours(24),
            webhook_log: Duration::days(30),
        }
    }
}

/// What a purge removed (or, dry, would remove), per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub transcript_turns: u64,
    pub call_summaries: u64,
    pub recordings: u64,
    pub audit_snapshots: u64,
    pub idempotency_keys: u64,
    pub finished_jobs: u64,
    pub callbacks: u64,
    pub identity_failures: u64,
    pub webhook_deliveries: u64,
}

impl PurgeReport {
    /// One row per kind, for the CLI and the log.
    pub fn rows(&self) -> [(&'static str, u64); 9] {
        [
            ("call transcript turns", self.transcript_turns),
            ("call summaries", self.call_summaries),
            ("call recordings", self.recordings),
            ("audit snapshots", self.audit_snapshots),
            ("idempotency keys", self.idempotency_keys),
            ("finished jobs", self.finished_jobs),
            ("done callbacks", self.callbacks),
            ("failed identity checks", self.identity_failures),
            ("settled webhook deliveries", self.webhook_deliveries),
        ]
    }
}

impl Store {
    /// Removes everything older than its retention period at `now`; with
    /// `dry_run`, only counts it. Recordings are deleted from disk before
    /// their path is cleared, so a crash in between leaves a path to a
    /// missing file (harmless, cleared next time), never a forgotten file.
    pub async fn purge(&self, keep: &Retention, now: DateTime<Utc>, dry_run: bool) -> Result<PurgeReport> {
        let before = |d: Duration| (now - d).timestamp();
        let mut r = PurgeReport::default();

        let t = before(keep.transcripts);
        let old_calls = "SELECT id FROM calls WHERE started_at < $1";
        r.transcript_turns = self.count_or_run(dry_run, &format!("call_turns WHERE call_id IN ({old_calls})"), t, "DELETE FROM").await?;
        r.call_summaries = self.clear_or_count(dry_run, "calls", "summary", "started_at", t).await?;

        let t = before(keep.recordings);
        let rows = sqlx::query("SELECT id, recording_path FROM calls WHERE recording_path IS NOT NULL AND started_at < $1")
            .bind(t)
            .fetch_all(&self.pool)
            .await?;
        r.recordings = rows.len() as u64;
        if !dry_run {
            for row in rows {
                let (id, path): (String, String) = (row.try_get("id")?, row.try_get("recording_path")?);
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    // Kept, with its path, for the next run: never forgotten on disk.
                    Err(e) => {
                        tracing::warn!(call = %id, error = %e, "a recording past its retention could not be deleted");
                        continue;
                    }
                }
                sqlx::query("UPDATE calls SET recording_path = NULL WHERE id = $1").bind(&id).execute(&self.pool).await?;
            }
        }

        let t = before(keep.audit_snapshots);
        r.audit_snapshots = if dry_run {
            self.count("audit_log WHERE at < $1 AND (before IS NOT NULL OR after IS NOT NULL)", t).await?
        } else {
            let done =
                sqlx::query("UPDATE audit_log SET before = NULL, after = NULL WHERE at < $1 AND (before IS NOT NULL OR after IS NOT NULL)")
                    .bind(t)
                    .execute(&self.pool)
                    .await?;
            done.rows_affected()
        };

        let t = before(keep.idempotency);
        r.idempotency_keys = self.count_or_run(dry_run, "idempotency_keys WHERE created_at < $1", t, "DELETE FROM").await?;

        let t = before(keep.finished_jobs);
        let finished = "SELECT id FROM jobs WHERE status IN ('done', 'cancelled') AND updated_at < $1";
        if !dry_run {
            // Children first: PostgreSQL enforces the foreign keys.
            for child in ["refill_offers", "job_attempts"] {
                sqlx::query(&format!("DELETE FROM {child} WHERE job_id IN ({finished})")).bind(t).execute(&self.pool).await?;
            }
        }
        r.finished_jobs =
            self.count_or_run(dry_run, "jobs WHERE status IN ('done', 'cancelled') AND updated_at < $1", t, "DELETE FROM").await?;

        let t = before(keep.callbacks);
        r.callbacks = self.count_or_run(dry_run, "callback_requests WHERE status = 'done' AND done_at < $1", t, "DELETE FROM").await?;

        r.identity_failures = self.purge_identity_failures(keep.identity_failures, now, dry_run).await?;

        let t = before(keep.webhook_log);
        r.webhook_deliveries =
            self.count_or_run(dry_run, "webhook_deliveries WHERE status <> 'pending' AND updated_at < $1", t, "DELETE FROM").await?;
        if !dry_run {
            // Events whose every delivery is gone.
            sqlx::query(
                "DELETE FROM webhook_events WHERE created_at < $1 AND NOT EXISTS \
                 (SELECT 1 FROM webhook_deliveries d WHERE d.event_seq = webhook_events.seq)",
            )
            .bind(t)
            .execute(&self.pool)
            .await?;
        }
        Ok(r)
    }

    /// `SELECT COUNT(*) FROM <from_where>` with one bound timestamp.
    async fn count(&self, from_where: &str, t: i64) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {from_where}")).bind(t).fetch_one(&self.pool).await?;
        Ok(n as u64)
    }

    /// Counts the rows of `from_where`, or deletes them (`verb` = "DELETE FROM").
    async fn count_or_run(&self, dry_run: bool, from_where: &str, t: i64, verb: &str) -> Result<u64> {
        if dry_run {
            return self.count(from_where, t).await;
        }
        Ok(sqlx::query(&format!("{verb} {from_where}")).bind(t).execute(&self.pool).await?.rows_affected())
    }

    /// Clears `column` (sets NULL) where `at_column < t`, or counts those rows.
    async fn clear_or_count(&self, dry_run: bool, table: &str, column: &str, at_column: &str, t: i64) -> Result<u64> {
        let rows = format!("{table} WHERE {column} IS NOT NULL AND {at_column} < $1");
        if dry_run {
            return self.count(&rows, t).await;
        }
        let sql = format!("UPDATE {table} SET {column} = NULL WHERE {column} IS NOT NULL AND {at_column} < $1");
        Ok(sqlx::query(&sql).bind(t).execute(&self.pool).await?.rows_affected())
    }
}
