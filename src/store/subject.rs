//! Data-subject rights (GDPR Art. 15 access and portability, Art. 17
//! erasure) and the access audit: who read whose data, and when.
//!
//! "The patient's data" is one definition shared by export and erasure: the
//! patient record and phones; their appointments with reminders, jobs and
//! history; calls linked to them or to their appointments, or from one of
//! their numbers when nobody was identified and no other patient has that
//! number (a shared landline stays the other patient's too); callback
//! requests linked to them, to those calls, or left from their numbers;
//! waiting-list entries and refill offers.
//!
//! Erasure keeps what the clinic's figures count (calls, appointments and
//! their outcomes, job attempts) as anonymous rows and removes every
//! identifier: the patient row is emptied rather than deleted because past
//! appointments and calls point to it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;

use super::appointments::check_changeable;
use super::{
    ts, Actor, Appointment, AuditEntry, Backend, CallDetail, CallbackRequest, Job, JobAttempt, Patient, Reminder, Result, Store,
    StoreError, WaitlistEntry,
};

/// Everything the clinic holds about one patient (`GET /patients/{id}/export`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubjectExport {
    pub exported_at: DateTime<Utc>,
    pub patient: Patient,
    /// Oldest first, each with its history.
    pub appointments: Vec<ExportedAppointment>,
    pub reminders: Vec<Reminder>,
    /// With transcripts and the path of each recording.
    pub calls: Vec<CallDetail>,
    pub jobs: Vec<ExportedJob>,
    pub callbacks: Vec<CallbackRequest>,
    pub waitlist: Vec<ExportedWaitlistEntry>,
    pub refill_offers: Vec<RefillOffer>,
    /// Changes to the patient record, their callback requests and waiting-list entries.
    pub audit: Vec<AuditRecord>,
    /// Every API read of their data.
    pub access_log: Vec<AccessEntry>,
    /// When a caller failed the phone identity check against them (kept
    /// only while it counts towards a lockout).
    pub failed_identity_checks: Vec<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExportedAppointment {
    #[serde(flatten)]
    pub appointment: Appointment,
    pub history: Vec<AuditEntry>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExportedJob {
    #[serde(flatten)]
    pub job: Job,
    pub attempts: Vec<JobAttempt>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ExportedWaitlistEntry {
    #[serde(flatten)]
    pub entry: WaitlistEntry,
    /// active, removed or fulfilled.
    pub status: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RefillOffer {
    pub job_id: String,
    pub waitlist_id: String,
    pub offered_at: DateTime<Utc>,
    pub outcome: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditRecord {
    pub entity: String,
    pub entity_id: String,
    #[serde(flatten)]
    pub entry: AuditEntry,
}

/// One API read of a patient's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AccessEntry {
    pub at: DateTime<Utc>,
    /// The API token's configured name (`cli` for the command line).
    pub actor: String,
    /// The route read, as a template: `GET /patients/{id}`, `GET /patients?phone`.
    pub action: String,
    /// The record read (a call, an appointment…), when the route names one.
    pub resource_id: Option<String>,
}

/// What an erasure did, in counts: nothing here identifies the patient.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct ErasureReport {
    pub patient_id: String,
    pub erased_at: DateTime<Utc>,
    pub appointments_cancelled: u64,
    /// Past or already settled appointments, kept without notes for the figures.
    pub appointments_kept: u64,
    pub calls_anonymised: u64,
    pub recordings_deleted: u64,
    pub callbacks_anonymised: u64,
    pub waitlist_entries_removed: u64,
    pub jobs_cancelled: u64,
    pub audit_snapshots_cleared: u64,
    pub idempotency_responses_cleared: u64,
    /// Text columns elsewhere that still hold one of the patient's
    /// identifiers (a name typed into another record's notes…): for a
    /// person to review. Empty in the usual case.
    pub residual: Vec<TextHit>,
}

/// Rows of one text column holding a searched string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TextHit {
    pub table: String,
    pub column: String,
    pub rows: i64,
}

/// What a replayed idempotent request about an erased patient answers.
const GONE_BODY: &str = r#"{"type":"/problems/gone","title":"Gone","status":410,"detail":"patient was erased"}"#;
/// Placeholder for the NOT NULL date of birth of an erased patient.
const ERASED_BIRTH: &str = "0001-01-01";

/// The patient's calls (see the module comment); `$1` is the patient id.
const CALLS_OF: &str = "SELECT id FROM calls WHERE patient_id = $1 \
     OR appointment_id IN (SELECT id FROM appointments WHERE patient_id = $1) \
     OR id IN (SELECT call_id FROM callback_requests WHERE patient_id = $1 AND call_id IS NOT NULL) \
     OR (patient_id IS NULL AND remote_number IN (SELECT phone FROM patient_phones WHERE patient_id = $1) \
         AND NOT EXISTS (SELECT 1 FROM patient_phones o WHERE o.phone = calls.remote_number AND o.patient_id <> $1)) \
     ORDER BY started_at, id";

/// The patient's callback requests linked to them or left from one of their
/// numbers (as in `CALLS_OF`); those taken in their calls are added apart.
const CALLBACKS_OF: &str = "SELECT id FROM callback_requests WHERE patient_id = $1 \
     OR (patient_id IS NULL AND phone IN (SELECT phone FROM patient_phones WHERE patient_id = $1) \
         AND NOT EXISTS (SELECT 1 FROM patient_phones o WHERE o.phone = callback_requests.phone AND o.patient_id <> $1)) \
     ORDER BY created_at, id";

impl Store {
    /// Records reads of patients' data by `actor` (one row per patient).
    pub async fn record_access(&self, actor: &str, action: &str, reads: &[(String, Option<String>)], now: DateTime<Utc>) -> Result<()> {
        if reads.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for (patient_id, resource_id) in reads {
            sqlx::query("INSERT INTO access_log (at, actor, patient_id, action, resource_id) VALUES ($1, $2, $3, $4, $5)")
                .bind(now.timestamp())
                .bind(actor)
                .bind(patient_id)
                .bind(action)
                .bind(resource_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Reads of a patient's data, oldest first. Kept after an erasure:
    /// it names no one but the readers.
    pub async fn access_log_of(&self, patient_id: &str) -> Result<Vec<AccessEntry>> {
        let exists: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM patients WHERE id = $1").bind(patient_id).fetch_one(&self.pool).await?;
        if exists == 0 {
            return Err(StoreError::NotFound("patient"));
        }
        let rows = sqlx::query("SELECT at, actor, action, resource_id FROM access_log WHERE patient_id = $1 ORDER BY id")
            .bind(patient_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AccessEntry {
                    at: ts(r.try_get("at")?)?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    resource_id: r.try_get("resource_id")?,
                })
            })
            .collect()
    }

    /// Everything held about a patient, as one document.
    pub async fn export_patient(&self, id: &str, now: DateTime<Utc>) -> Result<SubjectExport> {
        let patient = self.patient(id).await?;
        let mut appointments = Vec::new();
        for a in self.appointments_for_patient(id, false, now).await? {
            let history = self.audit_log("appointment", &a.id).await?;
            appointments.push(ExportedAppointment { appointment: a, history });
        }
        let mut reminders = Vec::new();
        for rid in self.ids(
            "SELECT r.id FROM reminders r JOIN appointments a ON a.id = r.appointment_id WHERE a.patient_id = $1 ORDER BY r.sent_at, r.id",
            id,
        )
        .await?
        {
            reminders.push(self.reminder(&rid).await?);
        }
        let mut calls = Vec::new();
        for cid in self.ids(CALLS_OF, id).await? {
            calls.push(self.call(&cid).await?);
        }
        let mut jobs = Vec::new();
        for jid in self
            .ids(
                "SELECT id FROM jobs WHERE patient_id = $1 OR appointment_id IN (SELECT id FROM appointments WHERE patient_id = $1) \
                 ORDER BY created_at, id",
                id,
            )
            .await?
        {
            jobs.push(ExportedJob { job: self.job(&jid).await?, attempts: self.job_attempts(&jid).await? });
        }
        let call_ids: Vec<String> = calls.iter().map(|c| c.call.id.clone()).collect();
        let mut callbacks = Vec::new();
        for cb in self.callback_ids(id, &call_ids).await? {
            callbacks.push(self.callback(&cb).await?);
        }
        let waitlist = self.waitlist_of(id).await?;
        let offers =
            sqlx::query("SELECT job_id, waitlist_id, offered_at, outcome FROM refill_offers WHERE patient_id = $1 ORDER BY offered_at")
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
        let refill_offers = offers
            .iter()
            .map(|r| {
                Ok(RefillOffer {
                    job_id: r.try_get("job_id")?,
                    waitlist_id: r.try_get("waitlist_id")?,
                    offered_at: ts(r.try_get("offered_at")?)?,
                    outcome: r.try_get("outcome")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut audit = Vec::new();
        let entities = std::iter::once(("patient", id.to_string()))
            .chain(callbacks.iter().map(|c| ("callback_request", c.id.clone())))
            .chain(waitlist.iter().map(|w| ("waitlist", w.entry.id.clone())));
        for (entity, entity_id) in entities {
            for entry in self.audit_log(entity, &entity_id).await? {
                audit.push(AuditRecord { entity: entity.to_string(), entity_id: entity_id.clone(), entry });
            }
        }
        audit.sort_by_key(|a| a.entry.at);
        Ok(SubjectExport {
            exported_at: now,
            patient,
            appointments,
            reminders,
            calls,
            jobs,
            callbacks,
            waitlist,
            refill_offers,
            audit,
            access_log: self.access_log_of(id).await?,
            failed_identity_checks: self.identity_failures_of(id).await?,
        })
    }

    /// Erases a patient irreversibly, in one transaction (see the module
    /// comment for what goes and what stays). Their recordings are deleted
    /// from disk before the commit: a failure to delete one aborts the
    /// erasure (retry it), so no recording outlives its database row.
    /// A second erasure is `Gone`, an unknown id `NotFound`.
    pub async fn erase_patient(&self, id: &str, actor: &Actor, now: DateTime<Utc>) -> Result<ErasureReport> {
        let mut tx = self.pool.begin().await?;
        // A write first: on SQLite it takes the write lock before any read.
        let touched = sqlx::query("UPDATE patients SET updated_at = $1 WHERE id = $2 AND erased_at IS NULL")
            .bind(now.timestamp())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if touched.rows_affected() == 0 {
            let known: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM patients WHERE id = $1").bind(id).fetch_one(&mut *tx).await?;
            return Err(if known > 0 { StoreError::Gone("patient") } else { StoreError::NotFound("patient") });
        }
        let row = sqlx::query("SELECT name, date_of_birth, national_id FROM patients WHERE id = $1").bind(id).fetch_one(&mut *tx).await?;
        let name: String = row.try_get("name")?;
        let birth: String = row.try_get("date_of_birth")?;
        let national_id: Option<String> = row.try_get("national_id")?;
        let phones: Vec<String> =
            sqlx::query_scalar("SELECT phone FROM patient_phones WHERE patient_id = $1").bind(id).fetch_all(&mut *tx).await?;
        let mut r = ErasureReport { patient_id: id.to_string(), erased_at: now, ..Default::default() };

        // Future appointments are cancelled under the usual rules, so their
        // slots free up (and the waiting list may be offered them).
        let appointments = ids_in(&mut tx, "SELECT id FROM appointments WHERE patient_id = $1 ORDER BY starts_at", id).await?;
        for aid in &appointments {
            let a: Appointment = self.fetch_appointment(&mut tx, aid).await?;
            if check_changeable(&a, now).is_err() {
                r.appointments_kept += 1;
                continue;
            }
            sqlx::query(
                "UPDATE appointments SET status = 'cancelled', updated_by = $1, updated_channel = $2, updated_at = $3 WHERE id = $4",
            )
            .bind(&actor.name)
            .bind(actor.channel.as_str())
            .bind(now.timestamp())
            .bind(aid)
            .execute(&mut *tx)
            .await?;
            Store::audit(&mut tx, now, actor, "appointment", aid, "cancel", None, None).await?;
            let after = self.fetch_appointment(&mut tx, aid).await?;
            self.emit(&mut tx, now, super::Event::appointment(super::EventType::AppointmentCancelled, &after, actor, None)).await?;
            r.appointments_cancelled += 1;
        }
        sqlx::query("UPDATE appointments SET notes = NULL WHERE patient_id = $1").bind(id).execute(&mut *tx).await?;
        sqlx::query("UPDATE reminders SET reply_text = NULL WHERE appointment_id IN (SELECT id FROM appointments WHERE patient_id = $1)")
            .bind(id)
            .execute(&mut *tx)
            .await?;

        // Calls that would phone them stop; refill jobs for slots they freed
        // go on (they call other patients). A running attempt is closed so
        // the figures show no call in progress forever.
        let open_jobs =
            ids_in(&mut tx, "SELECT id FROM jobs WHERE patient_id = $1 AND kind <> 'refill' AND status IN ('pending', 'running')", id)
                .await?;
        for jid in &open_jobs {
            sqlx::query(
                "UPDATE jobs SET status = 'cancelled', last_outcome = 'patient_erased', lease_owner = NULL, lease_expires_at = NULL, \
                 updated_at = $1 WHERE id = $2",
            )
            .bind(now.timestamp())
            .bind(jid)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE job_attempts SET ended_at = $1, outcome = 'patient_erased' WHERE job_id = $2 AND ended_at IS NULL")
                .bind(now.timestamp())
                .bind(jid)
                .execute(&mut *tx)
                .await?;
        }
        r.jobs_cancelled = open_jobs.len() as u64;

        // Calls: the record stays (outcome, times, links) for the figures.
        let calls = ids_in(&mut tx, CALLS_OF, id).await?;
        let mut recordings = Vec::new();
        for cid in &calls {
            let path: Option<String> =
                sqlx::query_scalar("SELECT recording_path FROM calls WHERE id = $1").bind(cid).fetch_one(&mut *tx).await?;
            recordings.extend(path);
            sqlx::query("DELETE FROM call_turns WHERE call_id = $1").bind(cid).execute(&mut *tx).await?;
            sqlx::query("UPDATE calls SET remote_number = '', summary = NULL, recording_path = NULL WHERE id = $1")
                .bind(cid)
                .execute(&mut *tx)
                .await?;
        }
        r.calls_anonymised = calls.len() as u64;

        let callbacks = callback_ids_in(&mut tx, id, &calls).await?;
        for cb in &callbacks {
            // Nobody can be called back without a number: it is settled.
            sqlx::query(
                "UPDATE callback_requests SET name = '', phone = '', reason = '', status = 'done', \
                 done_at = COALESCE(done_at, $1), done_by = COALESCE(done_by, $2) WHERE id = $3",
            )
            .bind(now.timestamp())
            .bind(&actor.name)
            .bind(cb)
            .execute(&mut *tx)
            .await?;
        }
        r.callbacks_anonymised = callbacks.len() as u64;

        let waitlist = ids_in(&mut tx, "SELECT id FROM waitlist WHERE patient_id = $1", id).await?;

        // Audit snapshots of their records, and any other snapshot naming them.
        let mut owned: Vec<(&str, &String)> = vec![("patient", &r.patient_id)];
        owned.extend(appointments.iter().map(|a| ("appointment", a)));
        owned.extend(callbacks.iter().map(|c| ("callback_request", c)));
        owned.extend(waitlist.iter().map(|w| ("waitlist", w)));
        for (entity, entity_id) in owned {
            let done = sqlx::query(
                "UPDATE audit_log SET before = NULL, after = NULL WHERE entity = $1 AND entity_id = $2 \
                 AND (before IS NOT NULL OR after IS NOT NULL)",
            )
            .bind(entity)
            .bind(entity_id)
            .execute(&mut *tx)
            .await?;
            r.audit_snapshots_cleared += done.rows_affected();
        }
        // In JSON snapshots and bodies the name appears as `"name":"…"`;
        // matching it so keeps another patient's similar name untouched.
        let mut in_json = vec![id.to_string()];
        in_json.extend(phones.iter().cloned());
        in_json.extend(national_id.iter().filter(|n| !n.trim().is_empty()).cloned());
        if let Ok(quoted) = serde_json::to_string(&name) {
            in_json.push(format!("\"name\":{quoted}"));
        }
        for needle in &in_json {
            let pattern = like_pattern(needle);
            let done = sqlx::query(
                "UPDATE audit_log SET before = NULL, after = NULL WHERE before LIKE $1 ESCAPE '\\' OR after LIKE $1 ESCAPE '\\'",
            )
            .bind(&pattern)
            .execute(&mut *tx)
            .await?;
            r.audit_snapshots_cleared += done.rows_affected();
            // A replay of a request about them answers 410 instead of their data.
            let done = sqlx::query("UPDATE idempotency_keys SET status = 410, body = $1 WHERE body LIKE $2 ESCAPE '\\'")
                .bind(GONE_BODY)
                .bind(&pattern)
                .execute(&mut *tx)
                .await?;
            r.idempotency_responses_cleared += done.rows_affected();
        }

        // Refill offers point at the waiting-list entries (a foreign key).
        sqlx::query("DELETE FROM refill_offers WHERE patient_id = $1").bind(id).execute(&mut *tx).await?;
        for w in &waitlist {
            sqlx::query("DELETE FROM refill_offers WHERE waitlist_id = $1").bind(w).execute(&mut *tx).await?;
        }
        r.waitlist_entries_removed =
            sqlx::query("DELETE FROM waitlist WHERE patient_id = $1").bind(id).execute(&mut *tx).await?.rows_affected();

        for subject in super::identity::subjects_of(id, &phones) {
            sqlx::query("DELETE FROM identity_failures WHERE subject = $1").bind(subject).execute(&mut *tx).await?;
        }
        sqlx::query("DELETE FROM patient_phones WHERE patient_id = $1").bind(id).execute(&mut *tx).await?;
        sqlx::query(
            "UPDATE patients SET name = '', date_of_birth = $1, national_id = NULL, contact_consent = 0, erased_at = $2, updated_at = $2 \
             WHERE id = $3",
        )
        .bind(ERASED_BIRTH)
        .bind(now.timestamp())
        .bind(id)
        .execute(&mut *tx)
        .await?;

        let mut needles = vec![name, birth];
        needles.extend(phones);
        needles.extend(national_id);
        r.residual = find_text_in(&mut tx, self.backend, &needles).await?;

        for path in &recordings {
            match std::fs::remove_file(path) {
                Ok(()) => r.recordings_deleted += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                // Dropping `tx` rolls the erasure back; the caller retries.
                Err(e) => return Err(StoreError::Io(e)),
            }
        }
        // The erasure's own entry: who, when, what in counts; no snapshot.
        let after = serde_json::to_string(&ErasureReport { residual: Vec::new(), ..r.clone() }).ok();
        Store::audit(&mut tx, now, actor, "patient", id, "erase", None, after).await?;
        tx.commit().await?;
        if self.backend == Backend::Sqlite {
            // The WAL still holds the pages as they were before: copy the new
            // ones into the database and empty it. Best effort: a busy reader
            // delays it to SQLite's next automatic checkpoint.
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await {
                tracing::warn!(error = %e, "checkpoint after an erasure failed");
            }
        }
        Ok(r)
    }

    /// Text columns, in every table, holding any of `needles` (empty ones
    /// are skipped): how an operator, or a test, checks that an erasure
    /// left nothing behind.
    pub async fn find_text(&self, needles: &[String]) -> Result<Vec<TextHit>> {
        let mut conn = self.pool.acquire().await?;
        find_text_in(&mut conn, self.backend, needles).await
    }

    async fn ids(&self, sql: &str, id: &str) -> Result<Vec<String>> {
        let mut conn = self.pool.acquire().await?;
        ids_in(&mut conn, sql, id).await
    }

    async fn callback_ids(&self, id: &str, calls: &[String]) -> Result<Vec<String>> {
        let mut conn = self.pool.acquire().await?;
        callback_ids_in(&mut conn, id, calls).await
    }

    async fn waitlist_of(&self, id: &str) -> Result<Vec<ExportedWaitlistEntry>> {
        let rows = sqlx::query(
            "SELECT id, patient_id, specialty_id, provider_id, earliest, latest, notes, status, created_at FROM waitlist \
             WHERE patient_id = $1 ORDER BY created_at, id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(ExportedWaitlistEntry { entry: super::waitlist::from_row(r)?, status: r.try_get("status")? })).collect()
    }
}

async fn ids_in(conn: &mut sqlx::AnyConnection, sql: &str, id: &str) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(sql).bind(id).fetch_all(conn).await?)
}

/// The patient's callback requests: `CALLBACKS_OF`, and those taken in
/// one of their calls unless another patient was identified in it.
async fn callback_ids_in(conn: &mut sqlx::AnyConnection, id: &str, calls: &[String]) -> Result<Vec<String>> {
    let mut out = ids_in(&mut *conn, CALLBACKS_OF, id).await?;
    for call in calls {
        let taken: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM callback_requests WHERE call_id = $1 AND (patient_id IS NULL OR patient_id = $2) ORDER BY created_at, id",
        )
        .bind(call)
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
        for cb in taken {
            if !out.contains(&cb) {
                out.push(cb);
            }
        }
    }
    Ok(out)
}

async fn find_text_in(conn: &mut sqlx::AnyConnection, backend: Backend, needles: &[String]) -> Result<Vec<TextHit>> {
    let needles: Vec<String> = needles.iter().filter(|n| !n.trim().is_empty()).map(|n| like_pattern(n)).collect();
    if needles.is_empty() {
        return Ok(Vec::new());
    }
    let catalog = match backend {
        Backend::Sqlite => {
            "SELECT m.name AS t, p.name AS c FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND m.name NOT LIKE '\\_sqlx%' ESCAPE '\\' \
             AND upper(p.type) LIKE '%TEXT%' ORDER BY m.name, p.cid"
        }
        Backend::Postgres => {
            "SELECT CAST(table_name AS TEXT) AS t, CAST(column_name AS TEXT) AS c FROM information_schema.columns \
             WHERE table_schema = current_schema() AND data_type IN ('text', 'character varying') \
             AND table_name NOT LIKE '\\_sqlx%' ESCAPE '\\' ORDER BY table_name, ordinal_position"
        }
    };
    let columns = sqlx::query(catalog).fetch_all(&mut *conn).await?;
    let mut hits = Vec::new();
    for row in columns {
        let (table, column): (String, String) = (row.try_get("t")?, row.try_get("c")?);
        // Names come from the catalogue, not from input; quoted for `key`, `before`…
        let any = (1..=needles.len()).map(|i| format!("\"{column}\" LIKE ${i} ESCAPE '\\'")).collect::<Vec<_>>().join(" OR ");
        let sql = format!("SELECT COUNT(*) FROM \"{table}\" WHERE {any}");
        let mut q = sqlx::query_scalar::<_, i64>(&sql);
        for n in &needles {
            q = q.bind(n);
        }
        let rows = q.fetch_one(&mut *conn).await?;
        if rows > 0 {
            hits.push(TextHit { table, column, rows });
        }
    }
    Ok(hits)
}

/// `%needle%` with LIKE's wildcards in the needle escaped.
fn like_pattern(needle: &str) -> String {
    let escaped = needle.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(super::like_pattern("a_b%c\\"), "%a\\_b\\%c\\\\%");
    }
}
