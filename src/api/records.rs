//! The waiting list and call records.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::Uri;
use axum::response::Response;
use axum::Json;
use chrono::NaiveDate;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::bounds::{self, MAX_CODE, MAX_TEXT};
use super::page::Page;
use super::{ApiJson, ApiQuery, AppState, Problem};
use crate::store::{Actor, Call, CallDetail, NewWaitlistEntry, WaitlistEntry};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitlistRequest {
    patient_id: String,
    specialty_id: String,
    provider_id: Option<String>,
    /// Earliest acceptable clinic-local date.
    earliest: NaiveDate,
    /// Latest acceptable clinic-local date.
    latest: NaiveDate,
    notes: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct WaitlistQuery {
    specialty: Option<String>,
    /// At most this many (default 100, at most 500).
    limit: Option<i64>,
    /// Skip this many first (default 0).
    offset: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct CallsQuery {
    /// Most recent first; at most this many (default 100, at most 500).
    limit: Option<i64>,
    /// Skip this many first (default 0).
    offset: Option<i64>,
}

#[utoipa::path(post, path = "/api/v1/waitlist", tag = "waitlist", request_body = WaitlistRequest,
    responses((status = 201, body = WaitlistEntry), (status = 422, body = Problem)))]
pub async fn waitlist_add(
    State(s): State<AppState>,
    actor: Actor,
    ApiJson(b): ApiJson<WaitlistRequest>,
) -> Result<(StatusCode, Json<WaitlistEntry>), Problem> {
    bounds::line("patient_id", &b.patient_id, MAX_CODE)?;
    bounds::line("specialty_id", &b.specialty_id, MAX_CODE)?;
    bounds::opt_line("provider_id", b.provider_id.as_deref(), MAX_CODE)?;
    bounds::opt_text("notes", b.notes.as_deref(), MAX_TEXT)?;
    let new = NewWaitlistEntry {
        patient_id: b.patient_id,
        specialty_id: b.specialty_id,
        provider_id: b.provider_id,
        earliest: b.earliest,
        latest: b.latest,
        notes: b.notes,
    };
    let entry = s.store.waitlist_add(new, &actor, s.clock.now()).await.map_err(|e| match e {
        crate::store::StoreError::NotFound("patient") => Problem::invalid("patient_id", "no such patient"),
        other => other.into(),
    })?;
    Ok((StatusCode::CREATED, Json(entry)))
}

#[utoipa::path(get, path = "/api/v1/waitlist", tag = "waitlist", params(WaitlistQuery),
    responses((status = 200, description = "oldest first", body = Vec<WaitlistEntry>, headers(("link" = String, description = "rel=\"next\": the next page, while there is one"))), (status = 422, body = Problem)))]
pub async fn waitlist_list(State(s): State<AppState>, uri: Uri, ApiQuery(q): ApiQuery<WaitlistQuery>) -> Result<Response, Problem> {
    let page = Page::parse(q.limit, q.offset)?;
    Ok(page.respond(&uri, s.store.waitlist_page(q.specialty.as_deref(), page.fetch()).await?))
}

#[utoipa::path(delete, path = "/api/v1/waitlist/{id}", tag = "waitlist", responses((status = 204), (status = 404, body = Problem)))]
pub async fn waitlist_remove(State(s): State<AppState>, actor: Actor, Path(id): Path<String>) -> Result<StatusCode, Problem> {
    s.store.waitlist_remove(&id, &actor, s.clock.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/calls", tag = "calls", params(CallsQuery),
    responses((status = 200, body = Vec<Call>, headers(("link" = String, description = "rel=\"next\": the next page, while there is one"))), (status = 422, body = Problem)))]
pub async fn calls(State(s): State<AppState>, uri: Uri, ApiQuery(q): ApiQuery<CallsQuery>) -> Result<Response, Problem> {
    let page = Page::parse(q.limit, q.offset)?;
    let rows: Vec<Call> = s.store.calls_page(page.fetch()).await?;
    Ok(page.respond(&uri, rows))
}

#[utoipa::path(get, path = "/api/v1/calls/{id}", tag = "calls", responses((status = 200, body = CallDetail), (status = 404, body = Problem)))]
pub async fn call(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<CallDetail>, Problem> {
    Ok(Json(s.store.call(&id).await?))
}
