//! Counts for `/metrics`, read from the database at scrape time: they are
//! right after a restart and agree across instances sharing one database.

use sqlx::Row;

use super::{Result, Store};

/// One Prometheus sample: metric name, label pairs, value.
pub type Sample = (&'static str, Vec<(&'static str, String)>, i64);

impl Store {
    pub async fn metric_samples(&self) -> Result<Vec<Sample>> {
        let mut out = Vec::new();
        let grouped: [(&'static str, &'static str, &[&'static str]); 5] = [
            ("clinivox_appointments", "SELECT status, COUNT(*) AS n FROM appointments GROUP BY status", &["status"]),
            ("clinivox_jobs", "SELECT kind, status, COUNT(*) AS n FROM jobs GROUP BY kind, status", &["kind", "status"]),
            (
                "clinivox_job_attempts_total",
                "SELECT j.kind, COALESCE(a.outcome, 'in_progress') AS outcome, COUNT(*) AS n FROM job_attempts a \
                 JOIN jobs j ON j.id = a.job_id GROUP BY j.kind, COALESCE(a.outcome, 'in_progress')",
                &["kind", "outcome"],
            ),
            (
                "clinivox_calls_total",
                "SELECT direction, COALESCE(outcome, 'in_progress') AS outcome, COUNT(*) AS n FROM calls GROUP BY direction, COALESCE(outcome, 'in_progress')",
                &["direction", "outcome"],
            ),
            (
                "clinivox_webhook_deliveries",
                "SELECT webhook, status, COUNT(*) AS n FROM webhook_deliveries GROUP BY webhook, status",
                &["webhook", "status"],
            ),
        ];
        for (name, sql, labels) in grouped {
            for r in sqlx::query(sql).fetch_all(&self.pool).await? {
                let mut l = Vec::with_capacity(labels.len());
                for (i, label) in labels.iter().enumerate() {
                    l.push((*label, r.try_get::<String, _>(i)?));
                }
                out.push((name, l, r.try_get::<i64, _>("n")?));
            }
        }
        let waiting: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM waitlist WHERE status = 'active'").fetch_one(&self.pool).await?;
        out.push(("clinivox_waitlist_active", Vec::new(), waiting));
        Ok(out)
    }
}
