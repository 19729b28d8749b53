//! Look-ups the phone conversation needs beyond the HTTP API's: finding a
//! caller by date of birth (their name is then matched, fuzzily, by the
//! conversation, because speech recognition spells names loosely) and
//! counting live holds, which tests use to prove offered slots are given back.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row;

use super::{Patient, Result, Store};

impl Store {
    /// Patients born on `date`, oldest record first.
    pub async fn patients_born_on(&self, date: NaiveDate) -> Result<Vec<Patient>> {
        let rows = sqlx::query("SELECT id FROM patients WHERE date_of_birth = $1 ORDER BY created_at, id")
            .bind(date.format("%Y-%m-%d").to_string())
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: String = r.try_get("id")?;
            out.push(self.patient(&id).await?);
        }
        Ok(out)
    }

    /// Holds that have not expired at `now` (offered slots still reserved).
    pub async fn live_holds(&self, now: DateTime<Utc>) -> Result<i64> {
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM slot_holds WHERE expires_at > $1").bind(now.timestamp()).fetch_one(&self.pool).await?;
        Ok(row.try_get("n")?)
    }
}
