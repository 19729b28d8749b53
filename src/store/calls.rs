//! Call records with their turn-by-turn transcript. The call layer writes
//! them as a call goes; the API reads them.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{new_id, ts, Call, CallDetail, CallTurn, Event, EventType, Page, Result, Store, StoreError};

#[derive(Debug, Clone)]
pub struct NewCall {
    /// "inbound" or "outbound".
    pub direction: String,
    pub remote_number: String,
    pub patient_id: Option<String>,
    pub language: Option<String>,
    /// The appointment an outbound call is about (escalation calls).
    pub appointment_id: Option<String>,
}

/// Which calls [`Store::calls_filtered`] lists.
#[derive(Debug, Clone)]
pub struct CallFilter {
    /// Started at or after…
    pub from: DateTime<Utc>,
    /// …and before.
    pub until: DateTime<Utc>,
    /// "inbound" or "outbound"; or one kind of outbound call: "escalation"
    /// (about the patient's own appointment, which the call record names)
    /// or "offer" (a freed slot offered from the waiting list: no
    /// appointment of the patient's yet, see `Outreach::appointment_id`).
    pub direction: Option<String>,
    pub outcome: Option<String>,
    pub language: Option<String>,
    pub transferred: Option<bool>,
}

/// A call that is over, with its transcript, for [`Store::import_calls`].
#[derive(Debug, Clone)]
pub struct PastCall {
    pub call: NewCall,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub outcome: String,
    pub transfer_target: Option<String>,
    pub summary: Option<String>,
    /// Each turn with when it was said.
    pub turns: Vec<(DateTime<Utc>, NewTurn)>,
}

#[derive(Debug, Clone)]
pub struct NewTurn {
    pub speaker: String,
    pub text: String,
    pub confidence: Option<f64>,
    pub intent: Option<String>,
    pub latency_ms: Option<i64>,
}

const COLUMNS: &str =
    "id, direction, remote_number, patient_id, started_at, ended_at, language, outcome, transfer_target, summary, appointment_id, recording_path";

impl Store {
    pub async fn start_call(&self, new: NewCall, now: DateTime<Utc>) -> Result<Call> {
        let mut conn = self.pool.acquire().await?;
        let id = self.insert_call(&mut conn, &new, now, None).await?;
        drop(conn);
        Ok(self.call(&id).await?.call)
    }

    /// A call that is over before any conversation: an inbound caller
    /// turned away because every line was busy (`busy`), or an outbound
    /// attempt nobody answered (`no_answer`, `busy`, `rejected`, `failed`).
    /// Stored whole, with no transcript.
    pub async fn record_unanswered_call(&self, new: NewCall, outcome: &str, started: DateTime<Utc>, ended: DateTime<Utc>) -> Result<Call> {
        if outcome.trim().is_empty() {
            return Err(StoreError::invalid("outcome", "must not be empty"));
        }
        let mut tx = self.pool.begin().await?;
        let id = self.insert_call(&mut tx, &new, started, Some((outcome, ended.max(started)))).await?;
        let call = fetch_call(&mut tx, &id).await?;
        self.emit(&mut tx, ended, call_ended(&call)).await?;
        tx.commit().await?;
        Ok(call)
    }

    async fn insert_call(
        &self,
        conn: &mut sqlx::AnyConnection,
        new: &NewCall,
        started: DateTime<Utc>,
        ended: Option<(&str, DateTime<Utc>)>,
    ) -> Result<String> {
        if new.direction != "inbound" && new.direction != "outbound" {
            return Err(StoreError::invalid("direction", "must be inbound or outbound"));
        }
        let id = new_id();
        sqlx::query(
            "INSERT INTO calls (id, direction, remote_number, patient_id, started_at, language, appointment_id, outcome, ended_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&id)
        .bind(&new.direction)
        .bind(&new.remote_number)
        .bind(&new.patient_id)
        .bind(started.timestamp())
        .bind(&new.language)
        .bind(&new.appointment_id)
        .bind(ended.map(|(o, _)| o))
        .bind(ended.map(|(_, t)| t.timestamp()))
        .execute(conn)
        .await?;
        Ok(id)
    }

    /// Links the call to the appointment it was about (an answered
    /// escalation call, whose record the conversation opened).
    pub async fn set_call_appointment(&self, call_id: &str, appointment_id: &str) -> Result<()> {
        self.set_call_column(call_id, "UPDATE calls SET appointment_id = $1 WHERE id = $2", appointment_id).await
    }

    /// Overrides a finished call's outcome with what the call layer knows
    /// better (an outbound call that reached an answering machine: `voicemail`).
    pub async fn set_call_outcome(&self, call_id: &str, outcome: &str) -> Result<()> {
        if outcome.trim().is_empty() {
            return Err(StoreError::invalid("outcome", "must not be empty"));
        }
        self.set_call_column(call_id, "UPDATE calls SET outcome = $1 WHERE id = $2", outcome).await
    }

    /// Where the call's audio is being recorded (`[calls] record_audio`).
    pub async fn set_call_recording(&self, call_id: &str, path: &str) -> Result<()> {
        self.set_call_column(call_id, "UPDATE calls SET recording_path = $1 WHERE id = $2", path).await
    }

    async fn set_call_column(&self, call_id: &str, sql: &str, value: &str) -> Result<()> {
        let done = sqlx::query(sql).bind(value).bind(call_id).execute(&self.pool).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("call"));
        }
        Ok(())
    }

    /// Appends a turn; its sequence number is the next one of the call.
    pub async fn add_turn(&self, call_id: &str, turn: NewTurn, now: DateTime<Utc>) -> Result<CallTurn> {
        let mut tx = self.pool.begin().await?;
        // Writing first keeps SQLite from a read-then-upgrade deadlock.
        let touched = sqlx::query("UPDATE calls SET started_at = started_at WHERE id = $1").bind(call_id).execute(&mut *tx).await?;
        if touched.rows_affected() == 0 {
            return Err(StoreError::NotFound("call"));
        }
        let seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) + 1 FROM call_turns WHERE call_id = $1")
            .bind(call_id)
            .fetch_one(&mut *tx)
            .await?;
        // sqlx's Any driver sends a NULL f64 to PostgreSQL typed FLOAT4, which
        // then poisons the cached statement for real values: write NULL as a
        // literal in its own statement instead of binding it.
        let sql = if turn.confidence.is_some() {
            "INSERT INTO call_turns (call_id, seq, at, speaker, text, intent, latency_ms, confidence) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        } else {
            "INSERT INTO call_turns (call_id, seq, at, speaker, text, intent, latency_ms, confidence) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)"
        };
        let mut insert = sqlx::query(sql)
            .bind(call_id)
            .bind(seq)
            .bind(now.timestamp())
            .bind(&turn.speaker)
            .bind(&turn.text)
            .bind(&turn.intent)
            .bind(turn.latency_ms);
        if let Some(c) = turn.confidence {
            insert = insert.bind(c);
        }
        insert.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(CallTurn {
            seq,
            at: ts(now.timestamp())?,
            speaker: turn.speaker,
            text: turn.text,
            confidence: turn.confidence,
            intent: turn.intent,
            latency_ms: turn.latency_ms,
            transcript_ms: None,
        })
    }

    /// Timings of the call's latest assistant turn, measured by the call
    /// task once its first audio is sent: end of the caller's speech →
    /// transcript, and → first reply audio. False when the call has no
    /// assistant turn yet.
    pub async fn set_turn_timings(&self, call_id: &str, transcript_ms: i64, latency_ms: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE call_turns SET transcript_ms = $1, latency_ms = $2 WHERE call_id = $3 AND seq = \
             (SELECT MAX(seq) FROM call_turns WHERE call_id = $3 AND speaker = 'assistant')",
        )
        .bind(transcript_ms)
        .bind(latency_ms)
        .bind(call_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The caller turned out to speak another language: the record says
    /// which one the call went on in.
    pub async fn set_call_language(&self, call_id: &str, language: &str) -> Result<()> {
        sqlx::query("UPDATE calls SET language = $1 WHERE id = $2").bind(language).bind(call_id).execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the record with its outcome.
    pub async fn finish_call(
        &self,
        call_id: &str,
        outcome: &str,
        patient_id: Option<&str>,
        transfer_target: Option<&str>,
        summary: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE calls SET ended_at = $1, outcome = $2, patient_id = COALESCE($3, patient_id), transfer_target = $4, summary = $5 WHERE id = $6",
        )
        .bind(now.timestamp())
        .bind(outcome)
        .bind(patient_id)
        .bind(transfer_target)
        .bind(summary)
        .bind(call_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("call"));
        }
        let call = fetch_call(&mut tx, call_id).await?;
        self.emit(&mut tx, now, call_ended(&call)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Most recent calls first.
    pub async fn calls(&self, limit: i64) -> Result<Vec<Call>> {
        self.calls_page(Page { limit: limit.clamp(1, 1000), offset: 0 }).await
    }

    /// Most recent first.
    pub async fn calls_page(&self, page: Page) -> Result<Vec<Call>> {
        let sql = format!("SELECT {COLUMNS} FROM calls ORDER BY started_at DESC, id LIMIT $1 OFFSET $2");
        let rows = sqlx::query(&sql).bind(page.limit).bind(page.offset).fetch_all(&self.pool).await?;
        rows.iter().map(call_from_row).collect()
    }

    /// Calls matching `f`, most recent first (the staff console's list).
    pub async fn calls_filtered(&self, f: &CallFilter, page: Page) -> Result<Vec<Call>> {
        let mut sql = format!("SELECT {COLUMNS} FROM calls WHERE started_at >= $1 AND started_at < $2");
        let mut texts: Vec<&str> = Vec::new();
        let direction = match f.direction.as_deref() {
            Some("escalation") => {
                sql.push_str(" AND direction = 'outbound' AND appointment_id IS NOT NULL");
                &None
            }
            Some("offer") => {
                sql.push_str(" AND direction = 'outbound' AND appointment_id IS NULL");
                &None
            }
            _ => &f.direction,
        };
        for (column, value) in [("direction", direction), ("outcome", &f.outcome), ("language", &f.language)] {
            if let Some(v) = value {
                texts.push(v);
                sql.push_str(&format!(" AND {column} = ${}", texts.len() + 2));
            }
        }
        match f.transferred {
            Some(true) => sql.push_str(" AND (transfer_target IS NOT NULL OR outcome = 'transferred')"),
            Some(false) => sql.push_str(" AND transfer_target IS NULL AND (outcome IS NULL OR outcome <> 'transferred')"),
            None => {}
        }
        let n = texts.len();
        sql.push_str(&format!(" ORDER BY started_at DESC, id LIMIT ${} OFFSET ${}", n + 3, n + 4));
        let mut q = sqlx::query(&sql).bind(f.from.timestamp()).bind(f.until.timestamp());
        for t in texts {
            q = q.bind(t);
        }
        let rows = q.bind(page.limit).bind(page.offset).fetch_all(&self.pool).await?;
        rows.iter().map(call_from_row).collect()
    }

    /// Finished calls with their transcripts, written in one transaction
    /// (the demo's history and benchmarks; the live path is `start_call`,
    /// `add_turn`, `finish_call`). Answers their ids.
    pub async fn import_calls(&self, calls: &[PastCall]) -> Result<Vec<String>> {
        let mut tx = self.pool.begin().await?;
        let mut ids = Vec::with_capacity(calls.len());
        for c in calls {
            let id = self.insert_call(&mut *tx, &c.call, c.started_at, Some((&c.outcome, c.ended_at))).await?;
            sqlx::query("UPDATE calls SET transfer_target = $2, summary = $3 WHERE id = $1")
                .bind(&id)
                .bind(&c.transfer_target)
                .bind(&c.summary)
                .execute(&mut *tx)
                .await?;
            for (seq, (at, t)) in c.turns.iter().enumerate() {
                // Always a confidence: see `add_turn` on sqlx's NULL floats.
                sqlx::query(
                    "INSERT INTO call_turns (call_id, seq, at, speaker, text, intent, latency_ms, confidence) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&id)
                .bind(seq as i64 + 1)
                .bind(at.timestamp())
                .bind(&t.speaker)
                .bind(&t.text)
                .bind(&t.intent)
                .bind(t.latency_ms)
                .bind(t.confidence.unwrap_or(1.0))
                .execute(&mut *tx)
                .await?;
            }
            ids.push(id);
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// These calls (at most 500 ids are read), in no particular order; an
    /// unknown id is skipped.
    pub async fn calls_by_ids(&self, ids: &[String]) -> Result<Vec<Call>> {
        let ids = &ids[..ids.len().min(500)];
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let marks: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!("SELECT {COLUMNS} FROM calls WHERE id IN ({})", marks.join(", "));
        let mut q = sqlx::query(&sql);
        for id in ids {
            q = q.bind(id);
        }
        q.fetch_all(&self.pool).await?.iter().map(call_from_row).collect()
    }

    /// A patient's calls, most recent first.
    pub async fn calls_of_patient(&self, patient_id: &str, limit: i64) -> Result<Vec<Call>> {
        let sql = format!("SELECT {COLUMNS} FROM calls WHERE patient_id = $1 ORDER BY started_at DESC, id LIMIT $2");
        let rows = sqlx::query(&sql).bind(patient_id).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(call_from_row).collect()
    }

    pub async fn call(&self, id: &str) -> Result<CallDetail> {
        let sql = format!("SELECT {COLUMNS} FROM calls WHERE id = $1");
        let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?.ok_or(StoreError::NotFound("call"))?;
        let call = call_from_row(&row)?;
        let rows = sqlx::query(
            "SELECT seq, at, speaker, text, confidence, intent, latency_ms, transcript_ms FROM call_turns WHERE call_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let turns = rows
            .iter()
            .map(|r| {
                Ok(CallTurn {
                    seq: r.try_get("seq")?,
                    at: ts(r.try_get("at")?)?,
                    speaker: r.try_get("speaker")?,
                    text: r.try_get("text")?,
                    confidence: r.try_get("confidence")?,
                    intent: r.try_get("intent")?,
                    latency_ms: r.try_get("latency_ms")?,
                    transcript_ms: r.try_get("transcript_ms")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(CallDetail { call, turns })
    }
}

async fn fetch_call(conn: &mut sqlx::AnyConnection, id: &str) -> Result<Call> {
    let sql = format!("SELECT {COLUMNS} FROM calls WHERE id = $1");
    call_from_row(&sqlx::query(&sql).bind(id).fetch_one(conn).await?)
}

/// `call.ended`: the outcome and whether staff took it over; no transcript,
/// summary or number.
fn call_ended(c: &Call) -> Event {
    let data = serde_json::json!({
        "call_id": c.id,
        "direction": c.direction,
        "outcome": c.outcome,
        "transferred": c.transfer_target.is_some() || c.outcome.as_deref() == Some("transferred"),
        "patient_id": c.patient_id,
        "appointment_id": c.appointment_id,
        "language": c.language,
        "started_at": c.started_at,
        "ended_at": c.ended_at,
    });
    Event { kind: EventType::CallEnded, order_key: c.id.clone(), data }
}

fn call_from_row(r: &AnyRow) -> Result<Call> {
    let ended: Option<i64> = r.try_get("ended_at")?;
    Ok(Call {
        id: r.try_get("id")?,
        direction: r.try_get("direction")?,
        remote_number: r.try_get("remote_number")?,
        patient_id: r.try_get("patient_id")?,
        started_at: ts(r.try_get("started_at")?)?,
        ended_at: ended.map(ts).transpose()?,
        language: r.try_get("language")?,
        outcome: r.try_get("outcome")?,
        transfer_target: r.try_get("transfer_target")?,
        summary: r.try_get("summary")?,
        appointment_id: r.try_get("appointment_id")?,
        recording_path: r.try_get("recording_path")?,
    })
}
