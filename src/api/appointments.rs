//! `/api/v1/appointments`: book, list, confirm, cancel, reschedule, history.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

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
}

#[utoipa::path(post, path = "/api/v1/appointments", tag = "appointments", request_body = BookRequest,
    responses((status = 201, body = Appointment), (status = 409, description = "slot taken", body = Problem), (status = 422, body = Problem)))]
pub async fn book(
    State(s): State<AppState>,
    actor: Actor,
    resumed: Option<axum::Extension<super::idempotency::Resumed>>,
    ApiJson(b): ApiJson<BookRequest>,
) -> Result<(StatusCode, Json<Appointment>), Problem> {
    if b.notes.as_ref().is_some_and(|n| n.chars().count() > 2000) {
        return Err(Problem::invalid("notes", "at most 2000 characters"));
    }
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
    Ok((StatusCode::CREATED, Json(booked)))
}

#[utoipa::path(get, path = "/api/v1/appointments", tag = "appointments", params(ListQuery),
    responses((status = 200, body = Vec<Appointment>), (status = 422, body = Problem)))]
pub async fn list(State(s): State<AppState>, ApiQuery(q): ApiQuery<ListQuery>) -> Result<Json<Vec<Appointment>>, Problem> {
    match (q.patient_id, q.date) {
        (Some(p), None) => {
            s.store.patient(&p).await?;
            Ok(Json(s.store.appointments_for_patient(&p, q.upcoming, s.clock.now()).await?))
        }
        (None, Some(d)) => Ok(Json(s.store.appointments_on(d).await?)),
        _ => Err(Problem::invalid("patient_id", "give exactly one of patient_id or date")),
    }
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
    let to = Reschedule { provider_id: b.provider_id, starts_at: b.starts_at, hold_token: b.hold_token };
    Ok(Json(s.store.reschedule(&id, to, &actor, s.clock.now()).await?))
}

#[utoipa::path(get, path = "/api/v1/appointments/{id}/history", tag = "appointments",
    responses((status = 200, description = "every change, oldest first", body = Vec<AuditEntry>), (status = 404, body = Problem)))]
pub async fn history(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Vec<AuditEntry>>, Problem> {
    s.store.appointment(&id).await?;
    Ok(Json(s.store.audit_log("appointment", &id).await?))
}
