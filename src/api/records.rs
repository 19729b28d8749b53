//! The waiting list and call records.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::NaiveDate;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

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
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct CallsQuery {
    /// Most recent first; default 100, at most 1000.
    limit: Option<i64>,
}

#[utoipa::path(post, path = "/api/v1/waitlist", tag = "waitlist", request_body = WaitlistRequest,
    responses((status = 201, body = WaitlistEntry), (status = 422, body = Problem)))]
pub async fn waitlist_add(
    State(s): State<AppState>,
    actor: Actor,
    ApiJson(b): ApiJson<WaitlistRequest>,
) -> Result<(StatusCode, Json<WaitlistEntry>), Problem> {
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

#[utoipa::path(get, path = "/api/v1/waitlist", tag = "waitlist", params(WaitlistQuery), responses((status = 200, body = Vec<WaitlistEntry>)))]
pub async fn waitlist_list(State(s): State<AppState>, ApiQuery(q): ApiQuery<WaitlistQuery>) -> Result<Json<Vec<WaitlistEntry>>, Problem> {
    Ok(Json(s.store.waitlist(q.specialty.as_deref()).await?))
}

#[utoipa::path(delete, path = "/api/v1/waitlist/{id}", tag = "waitlist", responses((status = 204), (status = 404, body = Problem)))]
pub async fn waitlist_remove(State(s): State<AppState>, actor: Actor, Path(id): Path<String>) -> Result<StatusCode, Problem> {
    s.store.waitlist_remove(&id, &actor, s.clock.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/calls", tag = "calls", params(CallsQuery), responses((status = 200, body = Vec<Call>)))]
pub async fn calls(State(s): State<AppState>, ApiQuery(q): ApiQuery<CallsQuery>) -> Result<Json<Vec<Call>>, Problem> {
    Ok(Json(s.store.calls(q.limit.unwrap_or(100)).await?))
}

#[utoipa::path(get, path = "/api/v1/calls/{id}", tag = "calls", responses((status = 200, body = CallDetail), (status = 404, body = Problem)))]
pub async fn call(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<CallDetail>, Problem> {
    Ok(Json(s.store.call(&id).await?))
}
