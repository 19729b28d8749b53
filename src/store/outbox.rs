//! The webhooks' outbox (issue 20): events written in the transaction of
//! the change they tell of, one delivery per webhook that wants them, and
//! the queries the sender (`crate::webhooks`) claims and settles them with.
//!
//! Deliveries are leased, as escalation jobs are: several nodes on one
//! PostgreSQL never send the same delivery at once (`FOR UPDATE SKIP
//! LOCKED`), and a node that dies mid-send leaves a lease that expires.
//! Per webhook, a delivery waits while an earlier one for the same
//! appointment (call, callback) is still pending, so a receiver sees an
//! appointment booked before it sees it cancelled.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;

use super::models::{Actor, Appointment};
use super::{new_id, ts, Backend, Page, Result, Store, StoreError};

/// What a webhook can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    AppointmentBooked,
    AppointmentConfirmed,
    AppointmentCancelled,
    AppointmentRescheduled,
    CallEnded,
    CallbackRequested,
    EscalationFinished,
    WaitlistSlotFilled,
}

impl EventType {
    pub const ALL: [EventType; 8] = [
        EventType::AppointmentBooked,
        EventType::AppointmentConfirmed,
        EventType::AppointmentCancelled,
        EventType::AppointmentRescheduled,
        EventType::CallEnded,
        EventType::CallbackRequested,
        EventType::EscalationFinished,
        EventType::WaitlistSlotFilled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::AppointmentBooked => "appointment.booked",
            EventType::AppointmentConfirmed => "appointment.confirmed",
            EventType::AppointmentCancelled => "appointment.cancelled",
            EventType::AppointmentRescheduled => "appointment.rescheduled",
            EventType::CallEnded => "call.ended",
            EventType::CallbackRequested => "callback.requested",
            EventType::EscalationFinished => "escalation.finished",
            EventType::WaitlistSlotFilled => "waitlist.slot_filled",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// A configured webhook as the store sees it: its name and what it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub name: String,
    pub events: Vec<EventType>,
}

/// One event, before it is written.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventType,
    /// What deliveries are ordered by.
    pub order_key: String,
    /// The `data` object: ids, times, outcomes; nothing that names a patient.
    pub data: serde_json::Value,
}

impl Event {
    /// An appointment event, with who changed it and through which channel.
    pub fn appointment(kind: EventType, a: &Appointment, actor: &Actor, previous: Option<&Appointment>) -> Event {
        let mut data = serde_json::json!({
            "appointment_id": a.id,
            "patient_id": a.patient_id,
            "provider_id": a.provider_id,
            "specialty_id": a.specialty_id,
            "starts_at": a.starts_at,
            "ends_at": a.ends_at,
            "status": a.status,
            "channel": actor.channel,
            "by": actor.name,
        });
        if let Some(p) = previous {
            data["previous_starts_at"] = serde_json::json!(p.starts_at);
            data["previous_provider_id"] = serde_json::json!(p.provider_id);
        }
        Event { kind, order_key: a.id.clone(), data }
    }
}

/// One delivery, as the sender and the API see it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Delivery {
    pub id: String,
    pub webhook: String,
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// pending, delivered or failed (gave up after a day of retries).
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: DateTime<Utc>,
    /// The receiver's last HTTP status, if it answered.
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The body sent (the Standard Webhooks envelope).
    #[serde(skip)]
    pub body: String,
    /// The event's place in the outbox.
    #[serde(skip)]
    pub seq: i64,
}

const COLUMNS: &str = "d.id, d.webhook, d.status, d.attempts, d.next_attempt_at, d.last_status, d.last_error, d.delivered_at, \
                       d.created_at, e.id AS event_id, e.type AS event_type, e.payload, e.seq";

/// A settling UPDATE that matched nothing: another node holds the lease now.
fn lease_held(rows: u64) -> Result<()> {
    if rows == 0 {
        return Err(StoreError::Conflict("the delivery's lease was lost".into()));
    }
    Ok(())
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<Delivery> {
    let opt_ts = |v: Option<i64>| v.map(ts).transpose();
    Ok(Delivery {
        id: r.try_get("id")?,
        webhook: r.try_get("webhook")?,
        event_id: r.try_get("event_id")?,
        event_type: r.try_get("event_type")?,
        status: r.try_get("status")?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: ts(r.try_get("next_attempt_at")?)?,
        last_status: r.try_get("last_status")?,
        last_error: r.try_get("last_error")?,
        delivered_at: opt_ts(r.try_get("delivered_at")?)?,
        created_at: ts(r.try_get("created_at")?)?,
        body: r.try_get("payload")?,
        seq: r.try_get("seq")?,
    })
}

impl Store {
    /// The webhooks events are written for (none by default: no outbox rows).
    pub fn with_webhooks(mut self, subscriptions: Vec<Subscription>) -> Store {
        self.webhooks = subscriptions.into();
        self
    }

    /// Writes `event` inside the caller's transaction, with a delivery for
    /// each webhook that wants it; nothing when none does.
    pub(super) async fn emit(&self, conn: &mut sqlx::AnyConnection, now: DateTime<Utc>, event: Event) -> Result<()> {
        let wanted: Vec<&Subscription> = self.webhooks.iter().filter(|s| s.events.contains(&event.kind)).collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let id = format!("evt_{}", new_id());
        // The Standard Webhooks envelope; the id travels in `webhook-id`.
        let body = serde_json::json!({"type": event.kind.as_str(), "timestamp": now, "data": event.data}).to_string();
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO webhook_events (id, type, order_key, payload, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING seq",
        )
        .bind(&id)
        .bind(event.kind.as_str())
        .bind(&event.order_key)
        .bind(&body)
        .bind(now.timestamp())
        .fetch_one(&mut *conn)
        .await?;
        for s in wanted {
            sqlx::query(
                "INSERT INTO webhook_deliveries (id, event_seq, webhook, order_key, status, attempts, next_attempt_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5, $5)",
            )
            .bind(format!("dlv_{}", new_id()))
            .bind(seq)
            .bind(&s.name)
            .bind(&event.order_key)
            .bind(now.timestamp())
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }

    /// Claims up to `limit` deliveries due for `webhook` for `owner` until
    /// `lease_until`: pending and due (or leased by a node whose lease ran
    /// out), and the first still pending of their appointment (call,
    /// callback) for this webhook.
    pub async fn claim_deliveries(
        &self,
        webhook: &str,
        owner: &str,
        lease_until: DateTime<Utc>,
        limit: i64,
        now: DateTime<Utc>,
    ) -> Result<Vec<Delivery>> {
        let lock = match self.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE webhook_deliveries SET lease_owner = $1, lease_expires_at = $2, updated_at = $3 \
             WHERE id IN (SELECT d.id FROM webhook_deliveries d WHERE d.webhook = $4 AND d.status = 'pending' \
               AND d.next_attempt_at <= $3 AND (d.lease_expires_at IS NULL OR d.lease_expires_at <= $3) \
               AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p WHERE p.webhook = d.webhook AND p.order_key = d.order_key \
                               AND p.status = 'pending' AND p.event_seq < d.event_seq) \
               ORDER BY d.event_seq LIMIT $5 {lock}) \
             RETURNING id"
        );
        let mut tx = self.pool.begin().await?;
        let ids: Vec<String> = sqlx::query_scalar(&sql)
            .bind(owner)
            .bind(lease_until.timestamp())
            .bind(now.timestamp())
            .bind(webhook)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.delivery(&id).await?);
        }
        out.sort_by_key(|d| d.seq);
        Ok(out)
    }

    /// The receiver took it (a 2xx).
    pub async fn delivery_succeeded(&self, id: &str, owner: &str, status: u16, now: DateTime<Utc>) -> Result<()> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, last_status = $1, last_error = NULL, \
             delivered_at = $2, lease_owner = NULL, lease_expires_at = NULL, updated_at = $2 \
             WHERE id = $3 AND lease_owner = $4 AND status = 'pending'",
        )
        .bind(i64::from(status))
        .bind(now.timestamp())
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        lease_held(done.rows_affected())
    }

    /// An attempt failed: due again at `retry_at`, or given up (`None`).
    pub async fn delivery_failed(
        &self,
        id: &str,
        owner: &str,
        status: Option<u16>,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, last_status = $2, last_error = $3, \
             next_attempt_at = COALESCE($4, next_attempt_at), lease_owner = NULL, lease_expires_at = NULL, updated_at = $5 \
             WHERE id = $6 AND lease_owner = $7 AND status = 'pending'",
        )
        .bind(if retry_at.is_some() { "pending" } else { "failed" })
        .bind(status.map(i64::from))
        .bind(error)
        .bind(retry_at.map(|t| t.timestamp()))
        .bind(now.timestamp())
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        lease_held(done.rows_affected())
    }

    pub async fn delivery(&self, id: &str) -> Result<Delivery> {
        let sql = format!("SELECT {COLUMNS} FROM webhook_deliveries d JOIN webhook_events e ON e.seq = d.event_seq WHERE d.id = $1");
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?.ok_or(StoreError::NotFound("delivery"))?;
        from_row(&row)
    }

    /// The delivery log, newest first, optionally one status only.
    pub async fn deliveries_page(&self, status: Option<&str>, page: Page) -> Result<Vec<Delivery>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM webhook_deliveries d JOIN webhook_events e ON e.seq = d.event_seq \
             WHERE ($1 IS NULL OR d.status = $1) ORDER BY d.event_seq DESC, d.id LIMIT $2 OFFSET $3"
        );
        let rows = sqlx::query(&sql).bind(status).bind(page.limit).bind(page.offset).fetch_all(&self.pool).await?;
        rows.iter().map(from_row).collect()
    }

    /// Sends a delivery again (the admin's manual re-send): pending and due
    /// now, whatever it was; the receiver de-duplicates by the event id.
    pub async fn resend_delivery(&self, id: &str, actor: &Actor, now: DateTime<Utc>) -> Result<Delivery> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $1, lease_owner = NULL, lease_expires_at = NULL, \
             delivered_at = NULL, updated_at = $1 WHERE id = $2",
        )
        .bind(now.timestamp())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("delivery"));
        }
        Store::audit(&mut tx, now, actor, "webhook_delivery", id, "resend", None, None).await?;
        tx.commit().await?;
        self.delivery(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event is part of its change's transaction: rolled back with it,
    /// committed with it.
    #[tokio::test]
    async fn an_event_rolls_back_with_its_change() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::testing::demo_config();
        let store = crate::testing::sqlite_store(dir.path(), &config).await.unwrap();
        let store = store.with_webhooks(vec![Subscription { name: "pms".into(), events: vec![EventType::CallEnded] }]);
        let now = Utc::now();
        let event = || Event { kind: EventType::CallEnded, order_key: "c1".into(), data: serde_json::json!({"call_id": "c1"}) };
        let count = |store: Store| async move {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries").fetch_one(&store.pool).await.unwrap();
            n
        };
        let mut tx = store.pool.begin().await.unwrap();
        store.emit(&mut tx, now, event()).await.unwrap();
        tx.rollback().await.unwrap();
        assert_eq!(count(store.clone()).await, 0);
        let mut tx = store.pool.begin().await.unwrap();
        store.emit(&mut tx, now, event()).await.unwrap();
        // Not subscribed: nothing written.
        store.emit(&mut tx, now, Event { kind: EventType::AppointmentBooked, ..event() }).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(count(store.clone()).await, 1);
    }
}
