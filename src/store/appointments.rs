//! Free slots, holds, and the appointment lifecycle: book, confirm, cancel,
//! reschedule. Every write to a slot runs in one transaction that first
//! upserts the slot's `slot_holds` row (a row lock on PostgreSQL, the write
//! lock on SQLite), then relies on the `appointments_live_slot` unique index
//! as the final word: of N racing bookings exactly one commits.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::availability::{template_slots, Interval, PartOfDay};
use super::{
    is_unique_violation, new_id, ts, Actor, Appointment, AppointmentStatus, Channel, Event, EventType, Hold, Page, Provider, Result, Slot,
    Store, StoreError,
};

/// Longest date range one slot search may cover.
const MAX_SEARCH_DAYS: i64 = 62;
/// How long the lock row taken by a booking without a hold lives if the
/// transaction dies mid-way (it is deleted on commit).
const BOOKING_LOCK_SECONDS: i64 = 60;

#[derive(Debug, Clone, Default)]
pub struct SlotQuery {
    pub specialty: Option<String>,
    pub provider: Option<String>,
    /// Clinic-local dates, inclusive.
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub part_of_day: Option<PartOfDay>,
    /// Slots held under this token still count as free (the holder's own).
    pub hold_token: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct NewAppointment {
    pub patient_id: String,
    pub provider_id: String,
    pub starts_at: DateTime<Utc>,
    pub hold_token: Option<String>,
    pub notes: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Reschedule {
    /// Another provider of the same specialty, or the same one when `None`.
    pub provider_id: Option<String>,
    pub starts_at: DateTime<Utc>,
    pub hold_token: Option<String>,
}

const COLUMNS: &str = "id, patient_id, provider_id, specialty_id, starts_at, ends_at, status, notes, created_by, \
                       created_channel, updated_by, updated_channel, created_at, updated_at";

impl Store {
    /// Free slots: the providers' templates minus closures, live appointments
    /// and other callers' unexpired holds, from `now` on, sorted by start.
    pub async fn free_slots(&self, q: &SlotQuery, now: DateTime<Utc>) -> Result<Vec<Slot>> {
        let today = super::availability::local_date(self.tz, now);
        let from = q.from.unwrap_or(today).max(today);
        let to = q.to.unwrap_or(from + Duration::days(13));
        if to < from {
            return Err(StoreError::invalid("to", "is before from (or before today)"));
        }
        if (to - from).num_days() >= MAX_SEARCH_DAYS {
            return Err(StoreError::invalid("to", format!("a search covers at most {MAX_SEARCH_DAYS} days")));
        }
        let providers = match (&q.provider, &q.specialty) {
            (Some(p), specialty) => {
                let p = self.provider(p).await?;
                if specialty.as_ref().is_some_and(|s| *s != p.specialty_id) {
                    return Ok(Vec::new());
                }
                vec![p]
            }
            (None, Some(s)) => {
                let list = self.providers(Some(s)).await?;
                if list.is_empty() && !self.specialties().await?.iter().any(|x| x.id == *s) {
                    return Err(StoreError::NotFound("specialty"));
                }
                list
            }
            (None, None) => return Err(StoreError::invalid("specialty", "give a specialty or a provider")),
        };
        let mut out = Vec::new();
        for p in &providers {
            let candidates = self.template_for(p, from, to).await?;
            let (Some(first), Some(last)) = (candidates.first(), candidates.last()) else { continue };
            let busy = self.busy(&p.id, first.start, last.end, now, q.hold_token.as_deref()).await?;
            for c in candidates {
                let local = c.start.with_timezone(&self.tz);
                if c.start <= now || q.part_of_day.is_some_and(|pd| !pd.contains(local.time())) || busy.iter().any(|b| b.overlaps(&c)) {
                    continue;
                }
                out.push(self.slot(p, c));
            }
        }
        out.sort_by(|a, b| a.starts_at.cmp(&b.starts_at).then_with(|| a.provider_id.cmp(&b.provider_id)));
        if let Some(limit) = q.limit {
            out.truncate(limit);
        }
        Ok(out)
    }

    /// Reserves a slot for `ttl` under a new token. A caller who was offered
    /// the slot on the phone keeps it while they answer.
    pub async fn hold_slot(&self, provider_id: &str, starts_at: DateTime<Utc>, ttl: Duration, now: DateTime<Utc>) -> Result<Hold> {
        let provider = self.provider(provider_id).await?;
        self.check_bookable(&provider, starts_at, now).await?;
        let token = new_id();
        let expires_at = now + ttl;
        let mut tx = self.pool.begin().await?;
        if !lock_slot(&mut tx, provider_id, starts_at, &token, expires_at, now).await? {
            return Err(StoreError::Conflict("the slot is being offered to another caller".into()));
        }
        let end = starts_at + Duration::minutes(provider.slot_minutes);
        if overlapping_live(&mut tx, provider_id, starts_at, end, None).await? {
            return Err(StoreError::Conflict("the slot is already booked".into()));
        }
        tx.commit().await?;
        Ok(Hold { token, provider_id: provider_id.to_string(), starts_at, expires_at })
    }

    /// Gives a hold back early (the caller chose another slot or hung up).
    pub async fn release_hold(&self, token: &str) -> Result<()> {
        sqlx::query("DELETE FROM slot_holds WHERE token = $1").bind(token).execute(&self.pool).await?;
        Ok(())
    }

    pub async fn book(&self, new: NewAppointment, actor: &Actor, now: DateTime<Utc>) -> Result<Appointment> {
        self.book_inner(new, actor, now, false).await
    }

    /// [`Store::book`] for the retry of a request whose first run may have
    /// committed before its answer was lost (the API's abandoned
    /// `Idempotency-Key` claims): if the patient already holds exactly this
    /// slot, that appointment is the answer, instead of "the slot is taken".
    pub async fn book_retry(&self, new: NewAppointment, actor: &Actor, now: DateTime<Utc>) -> Result<Appointment> {
        self.book_inner(new, actor, now, true).await
    }

    async fn book_inner(&self, new: NewAppointment, actor: &Actor, now: DateTime<Utc>, retry: bool) -> Result<Appointment> {
        self.patient(&new.patient_id).await?;
        let provider = self.provider(&new.provider_id).await?;
        self.check_bookable(&provider, new.starts_at, now).await?;
        let ends_at = new.starts_at + Duration::minutes(provider.slot_minutes);
        let existing: Option<String> = if !retry {
            None
        } else {
            sqlx::query_scalar(
            "SELECT id FROM appointments WHERE patient_id = $1 AND provider_id = $2 AND starts_at = $3 AND status IN ('booked', 'confirmed')",
        )
        .bind(&new.patient_id)
        .bind(&provider.id)
            .bind(new.starts_at.timestamp())
            .fetch_optional(&self.pool)
            .await?
        };
        if let Some(id) = existing {
            return self.appointment(&id).await;
        }
        let id = new_id();
        let mut tx = self.pool.begin().await?;
        self.take_slot(&mut tx, &provider.id, new.starts_at, ends_at, new.hold_token.as_deref(), None, now).await?;
        let inserted = sqlx::query(
            "INSERT INTO appointments (id, patient_id, provider_id, specialty_id, starts_at, ends_at, status, notes, \
             created_by, created_channel, updated_by, updated_channel, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'booked', $7, $8, $9, $8, $9, $10, $10)",
        )
        .bind(&id)
        .bind(&new.patient_id)
        .bind(&provider.id)
        .bind(&provider.specialty_id)
        .bind(new.starts_at.timestamp())
        .bind(ends_at.timestamp())
        .bind(&new.notes)
        .bind(&actor.name)
        .bind(actor.channel.as_str())
        .bind(now.timestamp())
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => return Err(StoreError::Conflict("the slot is already booked".into())),
            other => other?,
        };
        release_lock(&mut tx, &provider.id, new.starts_at).await?;
        let appointment = self.fetch_appointment(&mut tx, &id).await?;
        Store::audit(&mut tx, now, actor, "appointment", &id, "book", None, serde_json::to_string(&appointment).ok()).await?;
        self.emit(&mut tx, now, Event::appointment(EventType::AppointmentBooked, &appointment, actor, None)).await?;
        tx.commit().await?;
        Ok(appointment)
    }

    pub async fn confirm(&self, id: &str, actor: &Actor, now: DateTime<Utc>) -> Result<Appointment> {
        self.transition(id, AppointmentStatus::Confirmed, "confirm", actor, now).await
    }

    /// Cancels; the slot is free again the moment this commits.
    pub async fn cancel(&self, id: &str, actor: &Actor, now: DateTime<Utc>) -> Result<Appointment> {
        self.transition(id, AppointmentStatus::Cancelled, "cancel", actor, now).await
    }

    /// Moves a live appointment in one UPDATE: at no instant does the patient
    /// hold zero or two appointments, and the new slot is taken under the
    /// same rules as a booking.
    pub async fn reschedule(&self, id: &str, to: Reschedule, actor: &Actor, now: DateTime<Utc>) -> Result<Appointment> {
        let current = self.appointment(id).await?;
        let provider_id = to.provider_id.clone().unwrap_or_else(|| current.provider_id.clone());
        let provider = self.provider(&provider_id).await?;
        if provider.specialty_id != current.specialty_id {
            return Err(StoreError::invalid("provider_id", "belongs to another specialty"));
        }
        self.check_bookable(&provider, to.starts_at, now).await?;
        let ends_at = to.starts_at + Duration::minutes(provider.slot_minutes);
        let mut tx = self.pool.begin().await?;
        self.take_slot(&mut tx, &provider.id, to.starts_at, ends_at, to.hold_token.as_deref(), Some(id), now).await?;
        let before = self.fetch_appointment(&mut tx, id).await?;
        check_changeable(&before, now)?;
        let updated = sqlx::query(
            "UPDATE appointments SET provider_id = $1, starts_at = $2, ends_at = $3, status = 'booked', \
             updated_by = $4, updated_channel = $5, updated_at = $6 WHERE id = $7",
        )
        .bind(&provider.id)
        .bind(to.starts_at.timestamp())
        .bind(ends_at.timestamp())
        .bind(&actor.name)
        .bind(actor.channel.as_str())
        .bind(now.timestamp())
        .bind(id)
        .execute(&mut *tx)
        .await;
        match updated {
            Err(e) if is_unique_violation(&e) => return Err(StoreError::Conflict("the new slot is already booked".into())),
            other => other?,
        };
        release_lock(&mut tx, &provider.id, to.starts_at).await?;
        let after = self.fetch_appointment(&mut tx, id).await?;
        Store::audit(
            &mut tx,
            now,
            actor,
            "appointment",
            id,
            "reschedule",
            serde_json::to_string(&before).ok(),
            serde_json::to_string(&after).ok(),
        )
        .await?;
        self.emit(&mut tx, now, Event::appointment(EventType::AppointmentRescheduled, &after, actor, Some(&before))).await?;
        tx.commit().await?;
        Ok(after)
    }

    pub async fn appointment(&self, id: &str) -> Result<Appointment> {
        let mut conn = self.pool.acquire().await?;
        self.fetch_appointment(&mut conn, id).await
    }

    /// A patient's appointments, oldest first; `upcoming_only` keeps live ones
    /// that have not started by `now`.
    pub async fn appointments_for_patient(&self, patient_id: &str, upcoming_only: bool, now: DateTime<Utc>) -> Result<Vec<Appointment>> {
        self.appointments_for_patient_page(patient_id, upcoming_only, now, Page::ALL).await
    }

    pub async fn appointments_for_patient_page(
        &self,
        patient_id: &str,
        upcoming_only: bool,
        now: DateTime<Utc>,
        page: Page,
    ) -> Result<Vec<Appointment>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM appointments WHERE patient_id = $1 \
             AND ($2 = 0 OR (starts_at > $3 AND status IN ('booked', 'confirmed'))) ORDER BY starts_at, id LIMIT $4 OFFSET $5"
        );
        let rows = sqlx::query(&sql)
            .bind(patient_id)
            .bind(i64::from(upcoming_only))
            .bind(now.timestamp())
            .bind(page.limit)
            .bind(page.offset)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| self.appointment_from_row(r)).collect()
    }

    /// A provider's appointments starting in `[from, to)`, by start time,
    /// at most `limit` (a calendar feed).
    pub async fn appointments_for_provider(
        &self,
        provider_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Appointment>> {
        let sql = format!("SELECT {COLUMNS} FROM appointments WHERE provider_id = $1 AND starts_at >= $2 AND starts_at < $3 ORDER BY starts_at, id LIMIT $4");
        let rows =
            sqlx::query(&sql).bind(provider_id).bind(from.timestamp()).bind(to.timestamp()).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(|r| self.appointment_from_row(r)).collect()
    }

    /// Every appointment starting on a clinic-local date, by start time.
    pub async fn appointments_on(&self, date: NaiveDate) -> Result<Vec<Appointment>> {
        self.appointments_on_page(date, Page::ALL).await
    }

    pub async fn appointments_on_page(&self, date: NaiveDate, page: Page) -> Result<Vec<Appointment>> {
        // A local day is 23, 24 or 25 hours; bound it by the next local midnight.
        let next = date.succ_opt().ok_or_else(|| StoreError::invalid("date", "out of range"))?;
        let (Some(from), Some(to)) = (day_start(self.tz, date), day_start(self.tz, next)) else {
            return Err(StoreError::invalid("date", "out of range"));
        };
        let sql = format!("SELECT {COLUMNS} FROM appointments WHERE starts_at >= $1 AND starts_at < $2 ORDER BY starts_at, provider_id, id LIMIT $3 OFFSET $4");
        let rows =
            sqlx::query(&sql).bind(from.timestamp()).bind(to.timestamp()).bind(page.limit).bind(page.offset).fetch_all(&self.pool).await?;
        rows.iter().map(|r| self.appointment_from_row(r)).collect()
    }

    async fn transition(&self, id: &str, to: AppointmentStatus, action: &str, actor: &Actor, now: DateTime<Utc>) -> Result<Appointment> {
        let mut tx = self.pool.begin().await?;
        // A write first, so SQLite takes its write lock before we read.
        let touched = sqlx::query("UPDATE appointments SET updated_at = updated_at WHERE id = $1").bind(id).execute(&mut *tx).await?;
        if touched.rows_affected() == 0 {
            return Err(StoreError::NotFound("appointment"));
        }
        let before = self.fetch_appointment(&mut tx, id).await?;
        check_changeable(&before, now)?;
        if before.status == to {
            return Ok(before); // confirming a confirmed appointment changes nothing
        }
        sqlx::query("UPDATE appointments SET status = $1, updated_by = $2, updated_channel = $3, updated_at = $4 WHERE id = $5")
            .bind(to.as_str())
            .bind(&actor.name)
            .bind(actor.channel.as_str())
            .bind(now.timestamp())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let after = self.fetch_appointment(&mut tx, id).await?;
        Store::audit(
            &mut tx,
            now,
            actor,
            "appointment",
            id,
            action,
            serde_json::to_string(&before).ok(),
            serde_json::to_string(&after).ok(),
        )
        .await?;
        let kind = match to {
            AppointmentStatus::Confirmed => Some(EventType::AppointmentConfirmed),
            AppointmentStatus::Cancelled => Some(EventType::AppointmentCancelled),
            _ => None,
        };
        if let Some(kind) = kind {
            self.emit(&mut tx, now, Event::appointment(kind, &after, actor, None)).await?;
        }
        tx.commit().await?;
        Ok(after)
    }

    /// Takes the slot's lock row for this transaction, honouring holds:
    /// the holder's token passes, anyone else's unexpired hold is a conflict.
    #[allow(clippy::too_many_arguments)]
    async fn take_slot(
        &self,
        tx: &mut sqlx::AnyConnection,
        provider_id: &str,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        hold_token: Option<&str>,
        moving: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let token = hold_token.map(str::to_string).unwrap_or_else(new_id);
        if !lock_slot(tx, provider_id, starts_at, &token, now + Duration::seconds(BOOKING_LOCK_SECONDS), now).await? {
            return Err(StoreError::Conflict("the slot is being offered to another caller".into()));
        }
        if overlapping_live(tx, provider_id, starts_at, ends_at, moving).await? {
            return Err(StoreError::Conflict("the slot is already booked".into()));
        }
        Ok(())
    }

    /// The slot must be one the provider's template yields, and in the future.
    async fn check_bookable(&self, provider: &Provider, starts_at: DateTime<Utc>, now: DateTime<Utc>) -> Result<()> {
        if starts_at <= now {
            return Err(StoreError::invalid("starts_at", "is in the past"));
        }
        let day = super::availability::local_date(self.tz, starts_at);
        let slots = self.template_for(provider, day - Duration::days(1), day + Duration::days(1)).await?;
        if !slots.iter().any(|s| s.start == starts_at) {
            return Err(StoreError::invalid("starts_at", format!("is not a slot of {} (see GET /api/v1/slots)", provider.id)));
        }
        Ok(())
    }

    async fn template_for(&self, p: &Provider, from: NaiveDate, to: NaiveDate) -> Result<Vec<Interval>> {
        let shifts = self.shifts(&p.id).await?;
        let closures = self.closures(&p.id).await?;
        Ok(template_slots(&shifts, &closures, self.tz, p.slot_minutes, from, to))
    }

    /// Live appointments and other callers' unexpired holds in a window.
    async fn busy(
        &self,
        provider_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
        own_token: Option<&str>,
    ) -> Result<Vec<Interval>> {
        let rows = sqlx::query(
            "SELECT starts_at, ends_at FROM appointments WHERE provider_id = $1 AND status IN ('booked', 'confirmed') \
             AND starts_at < $2 AND ends_at > $3",
        )
        .bind(provider_id)
        .bind(to.timestamp())
        .bind(from.timestamp())
        .fetch_all(&self.pool)
        .await?;
        let mut busy = Vec::with_capacity(rows.len());
        for r in &rows {
            busy.push(Interval { start: ts(r.try_get("starts_at")?)?, end: ts(r.try_get("ends_at")?)? });
        }
        let holds = sqlx::query(
            "SELECT starts_at FROM slot_holds WHERE provider_id = $1 AND expires_at > $2 AND starts_at >= $3 AND starts_at < $4 AND token <> $5",
        )
        .bind(provider_id)
        .bind(now.timestamp())
        .bind(from.timestamp())
        .bind(to.timestamp())
        .bind(own_token.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        for r in &holds {
            let t = ts(r.try_get("starts_at")?)?;
            busy.push(Interval { start: t, end: t + Duration::seconds(1) });
        }
        Ok(busy)
    }

    fn slot(&self, p: &Provider, i: Interval) -> Slot {
        Slot {
            provider_id: p.id.clone(),
            specialty_id: p.specialty_id.clone(),
            starts_at: i.start,
            ends_at: i.end,
            starts_at_local: i.start.with_timezone(&self.tz).to_rfc3339(),
        }
    }

    pub(super) async fn fetch_appointment(&self, conn: &mut sqlx::AnyConnection, id: &str) -> Result<Appointment> {
        let sql = format!("SELECT {COLUMNS} FROM appointments WHERE id = $1");
        let row = sqlx::query(&sql).bind(id).fetch_optional(conn).await?.ok_or(StoreError::NotFound("appointment"))?;
        self.appointment_from_row(&row)
    }

    fn appointment_from_row(&self, r: &AnyRow) -> Result<Appointment> {
        let status: String = r.try_get("status")?;
        let channel = |c: &str| -> Result<Channel> {
            let s: String = r.try_get(c)?;
            Channel::parse(&s).ok_or_else(|| StoreError::Corrupt(format!("channel {s:?}")))
        };
        let starts_at = ts(r.try_get("starts_at")?)?;
        Ok(Appointment {
            id: r.try_get("id")?,
            patient_id: r.try_get("patient_id")?,
            provider_id: r.try_get("provider_id")?,
            specialty_id: r.try_get("specialty_id")?,
            starts_at,
            ends_at: ts(r.try_get("ends_at")?)?,
            starts_at_local: starts_at.with_timezone(&self.tz).to_rfc3339(),
            status: AppointmentStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("status {status:?}")))?,
            notes: r.try_get("notes")?,
            created_by: r.try_get("created_by")?,
            created_channel: channel("created_channel")?,
            updated_by: r.try_get("updated_by")?,
            updated_channel: channel("updated_channel")?,
            created_at: ts(r.try_get("created_at")?)?,
            updated_at: ts(r.try_get("updated_at")?)?,
        })
    }
}

pub(super) fn check_changeable(a: &Appointment, now: DateTime<Utc>) -> Result<()> {
    if !a.status.is_live() {
        return Err(StoreError::Conflict(format!("the appointment is {}", a.status.as_str())));
    }
    if a.starts_at <= now {
        return Err(StoreError::Conflict("the appointment has already started".into()));
    }
    Ok(())
}

fn day_start(tz: chrono_tz::Tz, date: NaiveDate) -> Option<DateTime<Utc>> {
    use chrono::TimeZone;
    let midnight = date.and_hms_opt(0, 0, 0)?;
    tz.from_local_datetime(&midnight).earliest().map(|t| t.with_timezone(&Utc))
}

/// Upserts the slot's lock row: succeeds when the slot is unheld, its hold has
/// expired, or the hold is ours (`token`). Returns false when someone else
/// holds it. On PostgreSQL the upsert waits for a racing writer's commit.
async fn lock_slot(
    conn: &mut sqlx::AnyConnection,
    provider_id: &str,
    starts_at: DateTime<Utc>,
    token: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO slot_holds (provider_id, starts_at, token, expires_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (provider_id, starts_at) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at \
         WHERE slot_holds.expires_at <= $5 OR slot_holds.token = excluded.token",
    )
    .bind(provider_id)
    .bind(starts_at.timestamp())
    .bind(token)
    .bind(expires_at.timestamp())
    .bind(now.timestamp())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

async fn release_lock(conn: &mut sqlx::AnyConnection, provider_id: &str, starts_at: DateTime<Utc>) -> Result<()> {
    sqlx::query("DELETE FROM slot_holds WHERE provider_id = $1 AND starts_at = $2")
        .bind(provider_id)
        .bind(starts_at.timestamp())
        .execute(conn)
        .await?;
    Ok(())
}

/// A live appointment other than `except` overlapping [start, end).
async fn overlapping_live(
    conn: &mut sqlx::AnyConnection,
    provider_id: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    except: Option<&str>,
) -> Result<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM appointments WHERE provider_id = $1 AND status IN ('booked', 'confirmed') \
         AND starts_at < $2 AND ends_at > $3 AND id <> $4",
    )
    .bind(provider_id)
    .bind(end.timestamp())
    .bind(start.timestamp())
    .bind(except.unwrap_or(""))
    .fetch_one(conn)
    .await?;
    Ok(n > 0)
}
