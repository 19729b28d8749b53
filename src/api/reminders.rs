//! Reminder events from the clinic's messaging tool, and the escalation jobs
//! they lead to.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::Uri;
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::bounds::{self, MAX_CODE, MAX_TEXT};
use super::page::Page;
use super::{ApiJson, ApiQuery, AppState, Problem};
use crate::store::{Job, JobAttempt, NewReminder, Reminder, ReminderChannel, ReplyKind};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReminderRequest {
    appointment_id: String,
    channel: ReminderChannel,
    sent_at: DateTime<Utc>,
    /// The sending tool's own message id; repeating it is a no-op.
    external_id: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyRequest {
    reply: ReplyKind,
    /// What the patient wrote.
    text: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct JobsQuery {
    /// pending, running, done or cancelled.
    status: Option<String>,
    /// Most recent first; at most this many (default 100, at most 500).
    limit: Option<i64>,
    /// Skip this many first (default 0).
    offset: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobDetail {
    #[serde(flatten)]
    job: Job,
    attempts_detail: Vec<JobAttempt>,
}

#[utoipa::path(post, path = "/api/v1/reminders", tag = "reminders", request_body = ReminderRequest,
    responses((status = 201, body = Reminder), (status = 200, description = "already recorded (same external_id)", body = Reminder), (status = 422, body = Problem)))]
pub async fn record(State(s): State<AppState>, ApiJson(b): ApiJson<ReminderRequest>) -> Result<(StatusCode, Json<Reminder>), Problem> {
    bounds::line("appointment_id", &b.appointment_id, MAX_CODE)?;
    if b.external_id.as_ref().is_some_and(|x| x.is_empty()) {
        return Err(Problem::invalid("external_id", "must be 1 to 200 characters"));
    }
    bounds::opt_line("external_id", b.external_id.as_deref(), MAX_CODE)?;
    let new = NewReminder { appointment_id: b.appointment_id, channel: b.channel, sent_at: b.sent_at, external_id: b.external_id };
    let (reminder, created) = s.store.record_reminder(new, s.clock.now()).await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(reminder)))
}

#[utoipa::path(post, path = "/api/v1/reminders/{id}/reply", tag = "reminders", request_body = ReplyRequest,
    responses((status = 200, description = "recorded and acted on: confirmed confirms, cancelled cancels", body = Reminder), (status = 404, body = Problem)))]
pub async fn reply(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<ReplyRequest>,
) -> Result<Json<Reminder>, Problem> {
    bounds::opt_text("text", b.text.as_deref(), MAX_TEXT)?;
    Ok(Json(s.store.record_reply(&id, b.reply, b.text, s.clock.now()).await?))
}

#[utoipa::path(get, path = "/api/v1/jobs", tag = "reminders", params(JobsQuery),
    responses((status = 200, body = Vec<Job>, headers(("link" = String, description = "rel=\"next\": the next page, while there is one"))), (status = 422, body = Problem)))]
pub async fn jobs(State(s): State<AppState>, uri: Uri, ApiQuery(q): ApiQuery<JobsQuery>) -> Result<Response, Problem> {
    let page = Page::parse(q.limit, q.offset)?;
    if let Some(st) = &q.status {
        if !["pending", "running", "done", "cancelled"].contains(&st.as_str()) {
            return Err(Problem::invalid("status", "must be pending, running, done or cancelled"));
        }
    }
    let rows: Vec<Job> = s.store.jobs_page(q.status.as_deref(), page.fetch()).await?;
    Ok(page.respond(&uri, rows))
}

#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "reminders", responses((status = 200, body = JobDetail), (status = 404, body = Problem)))]
pub async fn job(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<JobDetail>, Problem> {
    let job = s.store.job(&id).await?;
    let attempts_detail = s.store.job_attempts(&id).await?;
    Ok(Json(JobDetail { job, attempts_detail }))
}
