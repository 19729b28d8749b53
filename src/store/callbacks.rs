//! Callback requests: a caller the clinic promised to phone back, taken by
//! the assistant when nobody could answer (out of hours, or a transfer that
//! was not picked up). Staff list the open ones and mark them done; marking
//! twice is a no-op.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;
use utoipa::ToSchema;

use super::{new_id, ts, Actor, Page, Result, Store, StoreError};

/// Longest name, reason or number accepted (a request is read by a person).
const MAX_TEXT: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallbackStatus {
    Open,
    Done,
}

impl CallbackStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackStatus::Open => "open",
            CallbackStatus::Done => "done",
        }
    }

    fn parse(s: &str) -> Result<CallbackStatus> {
        match s {
            "open" => Ok(CallbackStatus::Open),
            "done" => Ok(CallbackStatus::Done),
            other => Err(StoreError::Corrupt(format!("callback status {other:?}"))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CallbackRequest {
    pub id: String,
    /// The call the request was taken in.
    pub call_id: Option<String>,
    /// The patient, when the caller was identified.
    pub patient_id: Option<String>,
    pub name: String,
    /// The number to call back, as confirmed or typed by the caller.
    pub phone: String,
    /// The caller's own words.
    pub reason: String,
    /// Language of the call (es, en, …).
    pub language: String,
    pub created_at: DateTime<Utc>,
    /// Clinic-local "YYYY-MM-DD HH:MM" from which the caller was told to expect the call.
    pub promised: String,
    pub status: CallbackStatus,
    pub done_at: Option<DateTime<Utc>>,
    /// Name of the API token (or actor) who marked it done.
    pub done_by: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewCallback {
    pub call_id: Option<String>,
    pub patient_id: Option<String>,
    pub name: String,
    pub phone: String,
    pub reason: String,
    pub language: String,
    pub promised: String,
}

const COLUMNS: &str = "id, call_id, patient_id, name, phone, reason, language, created_at, promised, status, done_at, done_by";

impl Store {
    /// Records a callback request (status open), with its audit entry.
    pub async fn create_callback(&self, new: NewCallback, actor: &Actor, now: DateTime<Utc>) -> Result<CallbackRequest> {
        for (field, value) in [("name", &new.name), ("phone", &new.phone), ("reason", &new.reason), ("promised", &new.promised)] {
            if value.trim().is_empty() {
                return Err(StoreError::invalid(field, "must not be empty"));
            }
            if value.chars().count() > MAX_TEXT {
                return Err(StoreError::invalid(field, format!("at most {MAX_TEXT} characters")));
            }
        }
        let id = new_id();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO callback_requests (id, call_id, patient_id, name, phone, reason, language, created_at, promised, status) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'open')",
        )
        .bind(&id)
        .bind(&new.call_id)
        .bind(&new.patient_id)
        .bind(new.name.trim())
        .bind(new.phone.trim())
        .bind(new.reason.trim())
        .bind(&new.language)
        .bind(now.timestamp())
        .bind(&new.promised)
        .execute(&mut *tx)
        .await?;
        let sql = format!("SELECT {COLUMNS} FROM callback_requests WHERE id = $1");
        let created = from_row(&sqlx::query(&sql).bind(&id).fetch_one(&mut *tx).await?)?;
        Store::audit(&mut tx, now, actor, "callback_request", &id, "create", None, serde_json::to_string(&created).ok()).await?;
        // Not the reason, name or number: the receiver reads those through the API.
        let data = serde_json::json!({
            "callback_id": created.id,
            "call_id": created.call_id,
            "patient_id": created.patient_id,
            "language": created.language,
            "created_at": created.created_at,
            "channel": actor.channel,
            "by": actor.name,
        });
        self.emit(&mut tx, now, super::Event { kind: super::EventType::CallbackRequested, order_key: id.clone(), data }).await?;
        tx.commit().await?;
        Ok(created)
    }

    /// Requests with `status` (all when `None`), oldest first: first promised, first called.
    pub async fn callbacks(&self, status: Option<CallbackStatus>) -> Result<Vec<CallbackRequest>> {
        self.callbacks_page(status, Page::ALL).await
    }

    pub async fn callbacks_page(&self, status: Option<CallbackStatus>, page: Page) -> Result<Vec<CallbackRequest>> {
        let sql =
            format!("SELECT {COLUMNS} FROM callback_requests WHERE ($1 IS NULL OR status = $1) ORDER BY created_at, id LIMIT $2 OFFSET $3");
        let rows =
            sqlx::query(&sql).bind(status.map(CallbackStatus::as_str)).bind(page.limit).bind(page.offset).fetch_all(&self.pool).await?;
        rows.iter().map(from_row).collect()
    }

    /// The requests done most recently, newest first.
    pub async fn callbacks_done_recently(&self, limit: i64) -> Result<Vec<CallbackRequest>> {
        let sql = format!("SELECT {COLUMNS} FROM callback_requests WHERE status = 'done' ORDER BY done_at DESC, id LIMIT $1");
        let rows = sqlx::query(&sql).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(from_row).collect()
    }

    /// How many requests are open (the console's Today page asks every 5 s).
    pub async fn open_callback_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM callback_requests WHERE status = 'open'").fetch_one(&self.pool).await?)
    }

    pub async fn callback(&self, id: &str) -> Result<CallbackRequest> {
        let sql = format!("SELECT {COLUMNS} FROM callback_requests WHERE id = $1");
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?.ok_or(StoreError::NotFound("callback request"))?;
        from_row(&row)
    }

    /// Marks a request done. Idempotent: a request already done is returned
    /// unchanged (who and when stay those of the first time), with no new
    /// audit entry.
    pub async fn callback_done(&self, id: &str, actor: &Actor, now: DateTime<Utc>) -> Result<CallbackRequest> {
        let mut tx = self.pool.begin().await?;
        let done =
            sqlx::query("UPDATE callback_requests SET status = 'done', done_at = $1, done_by = $2 WHERE id = $3 AND status = 'open'")
                .bind(now.timestamp())
                .bind(&actor.name)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        let sql = format!("SELECT {COLUMNS} FROM callback_requests WHERE id = $1");
        let row = sqlx::query(&sql).bind(id).fetch_optional(&mut *tx).await?.ok_or(StoreError::NotFound("callback request"))?;
        let request = from_row(&row)?;
        if done.rows_affected() > 0 {
            Store::audit(&mut tx, now, actor, "callback_request", id, "done", None, None).await?;
        }
        tx.commit().await?;
        Ok(request)
    }
}

fn from_row(r: &AnyRow) -> Result<CallbackRequest> {
    let done_at: Option<i64> = r.try_get("done_at")?;
    let status: String = r.try_get("status")?;
    Ok(CallbackRequest {
        id: r.try_get("id")?,
        call_id: r.try_get("call_id")?,
        patient_id: r.try_get("patient_id")?,
        name: r.try_get("name")?,
        phone: r.try_get("phone")?,
        reason: r.try_get("reason")?,
        language: r.try_get("language")?,
        created_at: ts(r.try_get("created_at")?)?,
        promised: r.try_get("promised")?,
        status: CallbackStatus::parse(&status)?,
        done_at: done_at.map(ts).transpose()?,
        done_by: r.try_get("done_by")?,
    })
}
