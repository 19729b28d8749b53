//! Patients and their phone numbers. A number may belong to several patients
//! (a family's landline), so looking up by caller ID can return many.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{new_id, ts, Actor, Page, Patient, Result, Store, StoreError};
use crate::phone::E164;

#[derive(Debug, Clone)]
pub struct NewPatient {
    pub name: String,
    pub phones: Vec<E164>,
    pub date_of_birth: NaiveDate,
    pub national_id: Option<String>,
    pub preferred_language: String,
    pub contact_consent: bool,
}

/// Fields to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct PatientPatch {
    pub name: Option<String>,
    pub phones: Option<Vec<E164>>,
    pub date_of_birth: Option<NaiveDate>,
    pub national_id: Option<Option<String>>,
    pub preferred_language: Option<String>,
    pub contact_consent: Option<bool>,
}

impl Store {
    pub async fn create_patient(&self, new: NewPatient, actor: &Actor, now: DateTime<Utc>) -> Result<Patient> {
        check_name(&new.name)?;
        let id = new_id();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO patients (id, name, date_of_birth, national_id, preferred_language, contact_consent, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(&id)
        .bind(new.name.trim())
        .bind(new.date_of_birth.format("%Y-%m-%d").to_string())
        .bind(&new.national_id)
        .bind(&new.preferred_language)
        .bind(i64::from(new.contact_consent))
        .bind(now.timestamp())
        .execute(&mut *tx)
        .await?;
        set_phones(&mut tx, &id, &new.phones).await?;
        let patient = fetch(&mut tx, &id).await?;
        let after = serde_json::to_string(&patient).ok();
        Store::audit(&mut tx, now, actor, "patient", &id, "create", None, after).await?;
        tx.commit().await?;
        Ok(patient)
    }

    pub async fn update_patient(&self, id: &str, patch: PatientPatch, actor: &Actor, now: DateTime<Utc>) -> Result<Patient> {
        if let Some(name) = &patch.name {
            check_name(name)?;
        }
        let mut tx = self.pool.begin().await?;
        // Touch the row first: on SQLite this takes the write lock up front.
        let touched =
            sqlx::query("UPDATE patients SET updated_at = $1 WHERE id = $2").bind(now.timestamp()).bind(id).execute(&mut *tx).await?;
        if touched.rows_affected() == 0 {
            return Err(StoreError::NotFound("patient"));
        }
        let before = fetch(&mut tx, id).await?;
        sqlx::query(
            "UPDATE patients SET name = $1, date_of_birth = $2, national_id = $3, preferred_language = $4, contact_consent = $5 \
             WHERE id = $6",
        )
        .bind(patch.name.as_deref().map(str::trim).unwrap_or(&before.name))
        .bind(patch.date_of_birth.unwrap_or(before.date_of_birth).format("%Y-%m-%d").to_string())
        .bind(patch.national_id.clone().unwrap_or(before.national_id.clone()))
        .bind(patch.preferred_language.as_deref().unwrap_or(&before.preferred_language))
        .bind(i64::from(patch.contact_consent.unwrap_or(before.contact_consent)))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if let Some(phones) = &patch.phones {
            sqlx::query("DELETE FROM patient_phones WHERE patient_id = $1").bind(id).execute(&mut *tx).await?;
            set_phones(&mut tx, id, phones).await?;
        }
        let after = fetch(&mut tx, id).await?;
        Store::audit(&mut tx, now, actor, "patient", id, "update", serde_json::to_string(&before).ok(), serde_json::to_string(&after).ok())
            .await?;
        tx.commit().await?;
        Ok(after)
    }

    pub async fn patient(&self, id: &str) -> Result<Patient> {
        let mut conn = self.pool.acquire().await?;
        fetch(&mut conn, id).await
    }

    /// The names of the patients in `ids` that are not erased, in one query
    /// per 500 ids (a calendar feed names every patient of a provider's
    /// months).
    pub async fn patient_names(&self, ids: &[String]) -> Result<std::collections::HashMap<String, String>> {
        let mut names = std::collections::HashMap::new();
        for chunk in ids.chunks(500) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!("SELECT id, name FROM patients WHERE erased_at IS NULL AND id IN ({})", marks.join(", "));
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            for row in q.fetch_all(&self.pool).await? {
                names.insert(row.try_get("id")?, row.try_get("name")?);
            }
        }
        Ok(names)
    }

    /// Patients reachable at `phone` (caller ID lookup), oldest record first.
    pub async fn patients_by_phone(&self, phone: &E164) -> Result<Vec<Patient>> {
        self.patients_by_phone_page(phone, Page::ALL).await
    }

    pub async fn patients_by_phone_page(&self, phone: &E164, page: Page) -> Result<Vec<Patient>> {
        let mut conn = self.pool.acquire().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT p.id FROM patients p JOIN patient_phones f ON f.patient_id = p.id WHERE f.phone = $1 \
             ORDER BY p.created_at, p.id LIMIT $2 OFFSET $3",
        )
        .bind(phone.as_str())
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(&mut *conn)
        .await?;
        fetch_each(&mut conn, &ids).await
    }

    /// Patients whose name contains `text` (case-insensitive for ASCII
    /// letters), by name; erased patients are not found.
    pub async fn patients_by_name(&self, text: &str, limit: i64) -> Result<Vec<Patient>> {
        let text = text.trim();
        if text.is_empty() || text.chars().count() > 100 || text.chars().any(char::is_control) {
            return Err(StoreError::invalid("name", "1 to 100 characters"));
        }
        // LIKE's own wildcards in the text are taken literally.
        let pattern = format!("%{}%", text.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        let mut conn = self.pool.acquire().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM patients WHERE erased_at IS NULL AND LOWER(name) LIKE $1 ESCAPE '\\' ORDER BY name, id LIMIT $2",
        )
        .bind(pattern)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
        fetch_each(&mut conn, &ids).await
    }

    /// Number of patients; used by the demo seeder to run once.
    pub async fn patient_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM patients").fetch_one(&self.pool).await?)
    }
}

fn check_name(name: &str) -> Result<()> {
    let n = name.trim().chars().count();
    if n == 0 || n > 200 {
        return Err(StoreError::invalid("name", "must be 1 to 200 characters"));
    }
    Ok(())
}

async fn set_phones(conn: &mut sqlx::AnyConnection, id: &str, phones: &[E164]) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, phone) in phones.iter().enumerate() {
        if !seen.insert(phone.as_str()) {
            continue;
        }
        sqlx::query("INSERT INTO patient_phones (patient_id, phone, position) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(phone.as_str())
            .bind(i as i64)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The patients with these ids, in this order.
async fn fetch_each(conn: &mut sqlx::AnyConnection, ids: &[String]) -> Result<Vec<Patient>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(fetch(conn, id).await?);
    }
    Ok(out)
}

async fn fetch(conn: &mut sqlx::AnyConnection, id: &str) -> Result<Patient> {
    let row = sqlx::query(
        "SELECT id, name, date_of_birth, national_id, preferred_language, contact_consent, created_at, updated_at, erased_at \
         FROM patients WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(StoreError::NotFound("patient"))?;
    // An erased patient's row only keeps their past appointments counted.
    if row.try_get::<Option<i64>, _>("erased_at")?.is_some() {
        return Err(StoreError::Gone("patient"));
    }
    let phones: Vec<String> = sqlx::query_scalar("SELECT phone FROM patient_phones WHERE patient_id = $1 ORDER BY position")
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
    from_row(&row, phones)
}

fn from_row(r: &AnyRow, phones: Vec<String>) -> Result<Patient> {
    let dob: String = r.try_get("date_of_birth")?;
    Ok(Patient {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        phones,
        date_of_birth: NaiveDate::parse_from_str(&dob, "%Y-%m-%d").map_err(|_| StoreError::Corrupt(format!("date {dob:?}")))?,
        national_id: r.try_get("national_id")?,
        preferred_language: r.try_get("preferred_language")?,
        contact_consent: r.try_get::<i64, _>("contact_consent")? != 0,
        created_at: ts(r.try_get("created_at")?)?,
        updated_at: ts(r.try_get("updated_at")?)?,
    })
}
