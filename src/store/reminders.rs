//! Reminders the clinic's messaging tool sent (SMS, WhatsApp, e-mail) and the
//! patients' replies. A reply acts on the appointment at once and stops any
//! escalation call that was planned for it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;
use utoipa::ToSchema;

use super::{is_unique_violation, new_id, ts, Actor, AppointmentStatus, Result, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReminderChannel {
    Sms,
    Whatsapp,
    Email,
}

impl ReminderChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            ReminderChannel::Sms => "sms",
            ReminderChannel::Whatsapp => "whatsapp",
            ReminderChannel::Email => "email",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        [Self::Sms, Self::Whatsapp, Self::Email].into_iter().find(|c| c.as_str() == s)
    }
    fn channel(self) -> super::Channel {
        match self {
            ReminderChannel::Sms => super::Channel::Sms,
            ReminderChannel::Whatsapp => super::Channel::Whatsapp,
            ReminderChannel::Email => super::Channel::Email,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    Confirmed,
    Cancelled,
    /// The patient wants another time; staff or a callback arranges it.
    RescheduleRequest,
    /// Anything else the patient wrote.
    Other,
}

impl ReplyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyKind::Confirmed => "confirmed",
            ReplyKind::Cancelled => "cancelled",
            ReplyKind::RescheduleRequest => "reschedule_request",
            ReplyKind::Other => "other",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        [Self::Confirmed, Self::Cancelled, Self::RescheduleRequest, Self::Other].into_iter().find(|c| c.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Reminder {
    pub id: String,
    pub appointment_id: String,
    pub channel: ReminderChannel,
    pub sent_at: DateTime<Utc>,
    pub external_id: Option<String>,
    pub reply: Option<ReplyKind>,
    pub reply_text: Option<String>,
    pub replied_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct NewReminder {
    pub appointment_id: String,
    pub channel: ReminderChannel,
    pub sent_at: DateTime<Utc>,
    pub external_id: Option<String>,
}

const COLUMNS: &str = "id, appointment_id, channel, sent_at, external_id, reply, reply_text, replied_at";

impl Store {
    /// Records a sent reminder. With an `external_id` the call is idempotent:
    /// the same (channel, external_id) returns the first record and `false`.
    pub async fn record_reminder(&self, new: NewReminder, now: DateTime<Utc>) -> Result<(Reminder, bool)> {
        self.appointment(&new.appointment_id).await.map_err(|_| StoreError::invalid("appointment_id", "no such appointment"))?;
        if new.sent_at > now + chrono::Duration::minutes(5) {
            return Err(StoreError::invalid("sent_at", "is in the future"));
        }
        if let Some(existing) = self.reminder_by_external(new.channel, new.external_id.as_deref()).await? {
            return same_appointment(existing, &new.appointment_id);
        }
        let id = new_id();
        let inserted = sqlx::query(
            "INSERT INTO reminders (id, appointment_id, channel, sent_at, external_id, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(&new.appointment_id)
        .bind(new.channel.as_str())
        .bind(new.sent_at.timestamp())
        .bind(&new.external_id)
        .bind(now.timestamp())
        .execute(&self.pool)
        .await;
        match inserted {
            // A racing duplicate of the same notification got there first.
            Err(e) if is_unique_violation(&e) => {
                let existing =
                    self.reminder_by_external(new.channel, new.external_id.as_deref()).await?.ok_or(StoreError::NotFound("reminder"))?;
                return same_appointment(existing, &new.appointment_id);
            }
            other => other?,
        };
        Ok((self.reminder(&id).await?, true))
    }

    pub async fn reminder(&self, id: &str) -> Result<Reminder> {
        let sql = format!("SELECT {COLUMNS} FROM reminders WHERE id = $1");
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?.ok_or(StoreError::NotFound("reminder"))?;
        from_row(&row)
    }

    /// Records the patient's reply and acts on it: `confirmed` confirms the
    /// appointment, `cancelled` cancels it (freeing the slot), and any reply
    /// stops planned escalation calls. Repeating the same reply changes nothing.
    pub async fn record_reply(&self, id: &str, reply: ReplyKind, text: Option<String>, now: DateTime<Utc>) -> Result<Reminder> {
        let before = self.reminder(id).await?;
        if before.reply == Some(reply) && before.reply_text == text {
            return Ok(before);
        }
        sqlx::query("UPDATE reminders SET reply = $1, reply_text = $2, replied_at = $3 WHERE id = $4")
            .bind(reply.as_str())
            .bind(&text)
            .bind(now.timestamp())
            .bind(id)
            .execute(&self.pool)
            .await?;
        let actor = Actor::new("patient", before.channel.channel());
        let appointment = self.appointment(&before.appointment_id).await?;
        let acted = match reply {
            ReplyKind::Confirmed => self.confirm(&appointment.id, &actor, now).await.map(drop),
            ReplyKind::Cancelled => self.cancel(&appointment.id, &actor, now).await.map(drop),
            ReplyKind::RescheduleRequest | ReplyKind::Other => Ok(()),
        };
        match acted {
            // Already settled (cancelled, or past): the reply is recorded, nothing more to do.
            Err(StoreError::Conflict(_)) if appointment.status != AppointmentStatus::Booked || appointment.starts_at <= now => {}
            other => other?,
        }
        self.cancel_jobs(&appointment.id, "replied", now).await?;
        self.reminder(id).await
    }

    async fn reminder_by_external(&self, channel: ReminderChannel, external: Option<&str>) -> Result<Option<Reminder>> {
        let Some(external) = external else { return Ok(None) };
        let sql = format!("SELECT {COLUMNS} FROM reminders WHERE channel = $1 AND external_id = $2");
        let row = sqlx::query(&sql).bind(channel.as_str()).bind(external).fetch_optional(&self.pool).await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The latest reminder of an appointment.
    pub async fn latest_reminder(&self, appointment_id: &str) -> Result<Option<Reminder>> {
        let sql = format!("SELECT {COLUMNS} FROM reminders WHERE appointment_id = $1 ORDER BY sent_at DESC, id LIMIT 1");
        let row = sqlx::query(&sql).bind(appointment_id).fetch_optional(&self.pool).await?;
        row.as_ref().map(from_row).transpose()
    }

    /// A patient's reminders, newest first, each with its appointment's start.
    pub async fn reminders_of_patient(&self, patient_id: &str, limit: i64) -> Result<Vec<(DateTime<Utc>, Reminder)>> {
        let columns: Vec<String> = COLUMNS.split(", ").map(|c| format!("r.{c}")).collect();
        let sql = format!(
            "SELECT {}, a.starts_at AS appointment_starts_at FROM reminders r JOIN appointments a ON a.id = r.appointment_id \
             WHERE a.patient_id = $1 ORDER BY r.sent_at DESC, r.id LIMIT $2",
            columns.join(", ")
        );
        let rows = sqlx::query(&sql).bind(patient_id).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok((ts(r.try_get("appointment_starts_at")?)?, from_row(r)?))).collect()
    }
}

fn same_appointment(existing: Reminder, appointment_id: &str) -> Result<(Reminder, bool)> {
    if existing.appointment_id != appointment_id {
        return Err(StoreError::Conflict("external_id was already used for another appointment".into()));
    }
    Ok((existing, false))
}

fn from_row(r: &AnyRow) -> Result<Reminder> {
    let channel: String = r.try_get("channel")?;
    let reply: Option<String> = r.try_get("reply")?;
    let replied: Option<i64> = r.try_get("replied_at")?;
    Ok(Reminder {
        id: r.try_get("id")?,
        appointment_id: r.try_get("appointment_id")?,
        channel: ReminderChannel::parse(&channel).ok_or_else(|| StoreError::Corrupt(format!("channel {channel:?}")))?,
        sent_at: ts(r.try_get("sent_at")?)?,
        external_id: r.try_get("external_id")?,
        reply: reply.map(|s| ReplyKind::parse(&s).ok_or_else(|| StoreError::Corrupt(format!("reply {s:?}")))).transpose()?,
        reply_text: r.try_get("reply_text")?,
        replied_at: replied.map(ts).transpose()?,
    })
}
