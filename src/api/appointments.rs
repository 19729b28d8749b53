//! `/api/v1/appointments`: book, list, confirm, cancel, reschedule, history.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::Uri;
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::bounds::{self, MAX_CODE, MAX_TEXT};
use super::page::Page;
use super::{ApiJson, ApiQuery, AppState, Problem};
use crate::store::{Actor, Appointment, AuditEntry, NewAppointment, Reschedule};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BookRequest {
    patient_id: String,
    provider_id: String,
    /// A slot's start, as returned by GET /api/v1/slots.
    starts_at: DateTime<Utc>,
    /// Token of a hold on this slot, if one was taken.
    hold_token: Option<String>,
    notes: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RescheduleRequest {
    /// Another provider of the same specialty; the same provider when absent.
    provider_id: Option<String>,
    starts_at: DateTime<Utc>,
    hold_token: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// One patient's appointments…
    patient_id: Option<String>,
    /// …or every appointment on a clinic-local date.
    date: Option<NaiveDate>,
    /// With patient_id: only live appointments still to come.
    #[serde(default)]
    upcoming: bool,
    /// At most this many (default 100, at most 500).
    limit: Option<i64>,
    /// Skip this many first (default 0).
    offset: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// At most this many (default 100, at most 500).
    limit: Option<i64>,
    /// Skip this many first (default 0).
    offset: Option<i64>,
}

#[utoipa::path(post, path = "/api/v1/appointments", tag = "appointments", request_body = BookRequest,
    responses((status = 201, body = Appointment), (status = 409, description = "slot taken", body = Problem), (status = 422, body = Problem)))]
pub async fn book(
    State(s): State<AppState>,
    actor: Actor,
    resumed: Option<axum::Extension<super::idempotency::Resumed>>,
    ApiJson(b): ApiJson<BookRequest>,
) -> Result<(StatusCode, Json<Appointment>), Problem> {
    bounds::line("patient_id", &b.patient_id, MAX_CODE)?;
    bounds::line("provider_id", &b.provider_id, MAX_CODE)?;
    bounds::opt_line("hold_token", b.hold_token.as_deref(), MAX_CODE)?;
    bounds::opt_text("notes", b.notes.as_deref(), MAX_TEXT)?;
    let new = NewAppointment {
        patient_id: b.patient_id,
        provider_id: b.provider_id,
        starts_at: b.starts_at,
        hold_token: b.hold_token,
        notes: b.notes,
    };
    let booked = if resumed.is_some() {
        s.store.book_retry(new, &actor, s.clock.now()).await
    } else {
        s.store.book(new, &actor, s.clock.now()).await
    };
    let booked = booked.map_err(|e| match e {
        crate::store::StoreError::NotFound(what) => {
            Problem::invalid(if what == "patient" { "patient_id" } else { "provider_id" }, format!("no such {what}"))
        }
        other => other.into(),
    })?;
    crate::testing::fault_point("after_booking_commit").await;
    Ok((StatusCode::CREATED, Json(booked)))
}

#[utoipa::path(get, path = "/api/v1/appointments", tag = "appointments", params(ListQuery),
    responses((status = 200, body = Vec<Appointment>, headers(("link" = String, description = "rel=\"next\": the next page, while there is one"))), (status = 422, body = Problem)))]
pub async fn list(State(s): State<AppState>, uri: Uri, ApiQuery(q): ApiQuery<ListQuery>) -> Result<Response, Problem> {
    let page = Page::parse(q.limit, q.offset)?;
    let rows = match (q.patient_id, q.date) {
        (Some(p), None) => {
            s.store.patient(&p).await?;
            s.store.appointments_for_patient_page(&p, q.upcoming, s.clock.now(), page.fetch()).await?
        }
        (None, Some(d)) => s.store.appointments_on_page(d, page.fetch()).await?,
        _ => return Err(Problem::invalid("patient_id", "give exactly one of patient_id or date")),
    };
    Ok(page.respond(&uri, rows))
}

#[utoipa::path(get, path = "/api/v1/appointments/{id}", tag = "appointments",
    responses((status = 200, body = Appointment), (status = 404, body = Problem)))]
pub async fn get_one(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Appointment>, Problem> {
    Ok(Json(s.store.appointment(&id).await?))
}

#[utoipa::path(post, path = "/api/v1/appointments/{id}/confirm", tag = "appointments",
    responses((status = 200, body = Appointment), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn confirm(State(s): State<AppState>, actor: Actor, Path(id): Path<String>) -> Result<Json<Appointment>, Problem> {
    Ok(Json(s.store.confirm(&id, &actor, s.clock.now()).await?))
}

#[utoipa::path(post, path = "/api/v1/appointments/{id}/cancel", tag = "appointments",
    responses((status = 200, body = Appointment), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn cancel(State(s): State<AppState>, actor: Actor, Path(id): Path<String>) -> Result<Json<Appointment>, Problem> {
    Ok(Json(s.store.cancel(&id, &actor, s.clock.now()).await?))
}

#[utoipa::path(post, path = "/api/v1/appointments/{id}/reschedule", tag = "appointments", request_body = RescheduleRequest,
    responses((status = 200, body = Appointment), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn reschedule(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<RescheduleRequest>,
) -> Result<Json<Appointment>, Problem> {
    bounds::opt_line("provider_id", b.provider_id.as_deref(), MAX_CODE)?;
    bounds::opt_line("hold_token", b.hold_token.as_deref(), MAX_CODE)?;
    let to = Reschedule { provider_id: b.provider_id, starts_at: b.starts_at, hold_token: b.hold_token };
    Ok(Json(s.store.reschedule(&id, to, &actor, s.clock.now()).await?))
}

#[utoipa::path(get, path = "/api/v1/appointments/{id}/history", tag = "appointments", params(HistoryQuery),
    responses((status = 200, description = "every change, oldest first", body = Vec<AuditEntry>, headers(("link" = String, description = "rel=\"next\": the next page, while there is one"))),
        (status = 404, body = Problem)))]
pub async fn history(
    State(s): State<AppState>,
    uri: Uri,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Response, Problem> {
    let page = Page::parse(q.limit, q.offset)?;
    s.store.appointment(&id).await?;
    let rows: Vec<AuditEntry> = s.store.audit_log_page("appointment", &id, page.fetch()).await?;
    Ok(page.respond(&uri, rows))
}
