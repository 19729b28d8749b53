//! Specialties, providers, free slots and holds.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{ApiJson, ApiQuery, AppState, Problem};
use crate::store::availability::PartOfDay;
use crate::store::{Hold, Provider, Slot, SlotQuery, Specialty};

#[derive(Debug, Deserialize, IntoParams)]
pub struct ProviderQuery {
    specialty: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SlotParams {
    /// A specialty id (every provider of it), or…
    specialty: Option<String>,
    /// …one provider.
    provider: Option<String>,
    /// First clinic-local date (default today).
    from: Option<NaiveDate>,
    /// Last clinic-local date, inclusive (default from + 13 days; at most 62 days).
    to: Option<NaiveDate>,
    part_of_day: Option<PartOfDay>,
    /// At most this many slots (default 50).
    limit: Option<usize>,
    /// Slots held under this token count as free.
    hold_token: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    provider_id: String,
    starts_at: DateTime<Utc>,
    /// Default: the configured hold time.
    seconds: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/specialties", tag = "clinic", responses((status = 200, body = Vec<Specialty>)))]
pub async fn specialties(State(s): State<AppState>) -> Result<Json<Vec<Specialty>>, Problem> {
    Ok(Json(s.store.specialties().await?))
}

#[utoipa::path(get, path = "/api/v1/providers", tag = "clinic", params(ProviderQuery), responses((status = 200, body = Vec<Provider>)))]
pub async fn providers(State(s): State<AppState>, ApiQuery(q): ApiQuery<ProviderQuery>) -> Result<Json<Vec<Provider>>, Problem> {
    Ok(Json(s.store.providers(q.specialty.as_deref()).await?))
}

#[utoipa::path(get, path = "/api/v1/slots", tag = "appointments", params(SlotParams),
    responses((status = 200, body = Vec<Slot>), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn slots(State(s): State<AppState>, ApiQuery(q): ApiQuery<SlotParams>) -> Result<Json<Vec<Slot>>, Problem> {
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > 500 {
        return Err(Problem::invalid("limit", "must be between 1 and 500"));
    }
    let query = SlotQuery {
        specialty: q.specialty,
        provider: q.provider,
        from: q.from,
        to: q.to,
        part_of_day: q.part_of_day,
        hold_token: q.hold_token,
        limit: Some(limit),
    };
    Ok(Json(s.store.free_slots(&query, s.clock.now()).await?))
}

#[utoipa::path(post, path = "/api/v1/holds", tag = "appointments", request_body = HoldRequest,
    responses((status = 201, body = Hold), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn hold(State(s): State<AppState>, ApiJson(b): ApiJson<HoldRequest>) -> Result<(StatusCode, Json<Hold>), Problem> {
    let seconds = b.seconds.unwrap_or(s.config.store.hold_seconds);
    if !(10..=3600).contains(&seconds) {
        return Err(Problem::invalid("seconds", "must be between 10 and 3600"));
    }
    let hold = s.store.hold_slot(&b.provider_id, b.starts_at, Duration::seconds(seconds), s.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(hold)))
}

#[utoipa::path(delete, path = "/api/v1/holds/{token}", tag = "appointments", responses((status = 204)))]
pub async fn release(State(s): State<AppState>, Path(token): Path<String>) -> Result<StatusCode, Problem> {
    s.store.release_hold(&token).await?;
    Ok(StatusCode::NO_CONTENT)
}
