//! Queries behind refilling freed slots from the waiting list: which
//! cancellations to offer, to whom, and what was offered already.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Appointment, Result, Store, WaitlistEntry};

impl Store {
    /// Cancelled appointments starting after `earliest` whose slot is still
    /// free and for which no refill job exists yet.
    pub async fn refill_candidates(&self, earliest: DateTime<Utc>) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT c.id, c.patient_id FROM appointments c WHERE c.status = 'cancelled' AND c.starts_at > $1 \
             AND NOT EXISTS (SELECT 1 FROM appointments l WHERE l.provider_id = c.provider_id AND l.starts_at = c.starts_at \
                             AND l.status IN ('booked', 'confirmed')) \
             AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.appointment_id = c.id AND j.kind = 'refill') ORDER BY c.starts_at",
        )
        .bind(earliest.timestamp())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("id")?, r.try_get("patient_id")?))).collect()
    }

    /// Waiting-list entries the freed slot of `freed` suits, first come first
    /// served: same specialty (and provider, if they asked for one), the date
    /// inside their range, not the patient who cancelled, not offered yet in
    /// this job, earlier than any appointment they already hold for it, and
    /// only patients who agreed to be called (`contact_consent`, GDPR Art. 6/21:
    /// a waiting-list entry is no consent to be phoned).
    pub async fn refill_matches(&self, freed: &Appointment, job_id: &str, now: DateTime<Utc>) -> Result<Vec<WaitlistEntry>> {
        let day = super::availability::local_date(self.tz, freed.starts_at);
        let mut out = Vec::new();
        for entry in self.waitlist(Some(&freed.specialty_id)).await? {
            if entry.patient_id == freed.patient_id
                || entry.provider_id.as_ref().is_some_and(|p| *p != freed.provider_id)
                || day < entry.earliest
                || day > entry.latest
            {
                continue;
            }
            let offered: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM refill_offers WHERE job_id = $1 AND waitlist_id = $2")
                .bind(job_id)
                .bind(&entry.id)
                .fetch_one(&self.pool)
                .await?;
            if offered > 0 {
                continue;
            }
            let consent: Option<i64> = sqlx::query_scalar("SELECT contact_consent FROM patients WHERE id = $1")
                .bind(&entry.patient_id)
                .fetch_optional(&self.pool)
                .await?;
            if consent != Some(1) {
                continue;
            }
            let held = self.appointments_for_patient(&entry.patient_id, true, now).await?;
            if held.iter().any(|a| a.specialty_id == freed.specialty_id && a.starts_at <= freed.starts_at) {
                continue;
            }
            out.push(entry);
        }
        Ok(out)
    }

    pub async fn record_offer(&self, job_id: &str, entry: &WaitlistEntry, now: DateTime<Utc>) -> Result<()> {
        sqlx::query("INSERT INTO refill_offers (job_id, waitlist_id, patient_id, offered_at) VALUES ($1, $2, $3, $4)")
            .bind(job_id)
            .bind(&entry.id)
            .bind(&entry.patient_id)
            .bind(now.timestamp())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn resolve_offer(&self, job_id: &str, waitlist_id: &str, outcome: &str) -> Result<()> {
        sqlx::query("UPDATE refill_offers SET outcome = $1 WHERE job_id = $2 AND waitlist_id = $3")
            .bind(outcome)
            .bind(job_id)
            .bind(waitlist_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// (waitlist id, patient id, outcome) of every offer made in a job, in order.
    pub async fn offers(&self, job_id: &str) -> Result<Vec<(String, String, Option<String>)>> {
        let rows =
            sqlx::query("SELECT waitlist_id, patient_id, outcome FROM refill_offers WHERE job_id = $1 ORDER BY offered_at, waitlist_id")
                .bind(job_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|r| Ok((r.try_get("waitlist_id")?, r.try_get("patient_id")?, r.try_get("outcome")?))).collect()
    }

    /// Marks a waiting-list entry as served by `appointment_id`, which took
    /// the slot `freed_appointment_id` left.
    pub async fn waitlist_fulfil(&self, id: &str, appointment_id: &str, freed_appointment_id: &str, now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let done =
            sqlx::query("UPDATE waitlist SET status = 'fulfilled' WHERE id = $1 AND status = 'active'").bind(id).execute(&mut *tx).await?;
        if done.rows_affected() > 0 {
            let data = serde_json::json!({
                "waitlist_id": id,
                "appointment_id": appointment_id,
                "freed_appointment_id": freed_appointment_id,
                "filled_at": now,
            });
            let event = super::Event { kind: super::EventType::WaitlistSlotFilled, order_key: freed_appointment_id.to_string(), data };
            self.emit(&mut tx, now, event).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
