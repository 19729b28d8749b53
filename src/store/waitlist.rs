//! The waiting list: patients who want an earlier slot than the store could
//! offer. Removal is a status change so the history stays.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{new_id, ts, Actor, Page, Result, Store, StoreError, WaitlistEntry};

#[derive(Debug, Clone)]
pub struct NewWaitlistEntry {
    pub patient_id: String,
    pub specialty_id: String,
    pub provider_id: Option<String>,
    pub earliest: NaiveDate,
    pub latest: NaiveDate,
    pub notes: Option<String>,
}

const COLUMNS: &str = "id, patient_id, specialty_id, provider_id, earliest, latest, notes, created_at";

impl Store {
    pub async fn waitlist_add(&self, new: NewWaitlistEntry, actor: &Actor, now: DateTime<Utc>) -> Result<WaitlistEntry> {
        if new.latest < new.earliest {
            return Err(StoreError::invalid("latest", "is before earliest"));
        }
        self.patient(&new.patient_id).await?;
        if !self.specialties().await?.iter().any(|s| s.id == new.specialty_id) {
            return Err(StoreError::invalid("specialty_id", "is not a specialty of this clinic"));
        }
        if let Some(p) = &new.provider_id {
            let provider = self.provider(p).await.map_err(|_| StoreError::invalid("provider_id", "is not a provider of this clinic"))?;
            if provider.specialty_id != new.specialty_id {
                return Err(StoreError::invalid("provider_id", "belongs to another specialty"));
            }
        }
        let id = new_id();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO waitlist (id, patient_id, specialty_id, provider_id, earliest, latest, notes, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8)",
        )
        .bind(&id)
        .bind(&new.patient_id)
        .bind(&new.specialty_id)
        .bind(&new.provider_id)
        .bind(new.earliest.format("%Y-%m-%d").to_string())
        .bind(new.latest.format("%Y-%m-%d").to_string())
        .bind(&new.notes)
        .bind(now.timestamp())
        .execute(&mut *tx)
        .await?;
        let sql = format!("SELECT {COLUMNS} FROM waitlist WHERE id = $1");
        let entry = from_row(&sqlx::query(&sql).bind(&id).fetch_one(&mut *tx).await?)?;
        Store::audit(&mut tx, now, actor, "waitlist", &id, "add", None, serde_json::to_string(&entry).ok()).await?;
        tx.commit().await?;
        Ok(entry)
    }

    /// Active entries, optionally for one specialty, oldest first (first come, first served).
    pub async fn waitlist(&self, specialty: Option<&str>) -> Result<Vec<WaitlistEntry>> {
        self.waitlist_page(specialty, Page::ALL).await
    }

    pub async fn waitlist_page(&self, specialty: Option<&str>, page: Page) -> Result<Vec<WaitlistEntry>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM waitlist WHERE status = 'active' AND ($1 IS NULL OR specialty_id = $1) \
             ORDER BY created_at, id LIMIT $2 OFFSET $3"
        );
        let rows = sqlx::query(&sql).bind(specialty).bind(page.limit).bind(page.offset).fetch_all(&self.pool).await?;
        rows.iter().map(from_row).collect()
    }

    pub async fn waitlist_remove(&self, id: &str, actor: &Actor, now: DateTime<Utc>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let done =
            sqlx::query("UPDATE waitlist SET status = 'removed' WHERE id = $1 AND status = 'active'").bind(id).execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("waitlist entry"));
        }
        Store::audit(&mut tx, now, actor, "waitlist", id, "remove", None, None).await?;
        tx.commit().await?;
        Ok(())
    }
}

pub(super) fn from_row(r: &AnyRow) -> Result<WaitlistEntry> {
    let date = |c: &str| -> Result<NaiveDate> {
        let s: String = r.try_get(c)?;
        NaiveDate::parse_from_str(&s, "%Y-%m-%d").map_err(|_| StoreError::Corrupt(format!("date {s:?}")))
    };
    Ok(WaitlistEntry {
        id: r.try_get("id")?,
        patient_id: r.try_get("patient_id")?,
        specialty_id: r.try_get("specialty_id")?,
        provider_id: r.try_get("provider_id")?,
        earliest: date("earliest")?,
        latest: date("latest")?,
        notes: r.try_get("notes")?,
        created_at: ts(r.try_get("created_at")?)?,
    })
}
