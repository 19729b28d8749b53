//! Specialties, providers, free slots and holds.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::Uri;
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::bounds::{self, MAX_CODE};
use super::page::Page;
use super::{ApiJson, ApiQuery, AppState, Problem};
use crate::store::availability::PartOfDay;
use crate::store::{Hold, Provider, Slot, SlotQuery, Specialty};

#[derive(Debug, Deserialize, IntoParams)]
pub struct ProviderQuery {
    specialty: Option<String>,
    /// At most this many (default 100, at most 500).
    limit: Option<i64>,
    /// Skip this many first (default 0).
    offset: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct SpecialtyQuery {
    /// At most this many (default 100, at most 500).
    limit: Option<i64>,
    /// Skip this many first (default 0).
    offset: Option<i64>,
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

// Specialties and providers come from the configuration, so their lists
// are bounded by it: read whole, paged in memory.
#[utoipa::path(get, path = "/api/v1/specialties", tag = "clinic", params(SpecialtyQuery),
    responses((status = 200, body = Vec<Specialty>, headers(("link" = String, description = "rel=\"next\": the next page, while there is one"))), (status = 422, body = Problem)))]
pub async fn specialties(State(s): State<AppState>, uri: Uri, ApiQuery(q): ApiQuery<SpecialtyQuery>) -> Result<Response, Problem> {
    let page = Page::parse(q.limit, q.offset)?;
    Ok(page.respond(&uri, page.slice(s.store.specialties().await?)))
}

#[utoipa::path(get, path = "/api/v1/providers", tag = "clinic", params(ProviderQuery),
    responses((status = 200, body = Vec<Provider>, headers(("link" = String, description = "rel=\"next\": the next page, while there is one"))), (status = 422, body = Problem)))]
pub async fn providers(State(s): State<AppState>, uri: Uri, ApiQuery(q): ApiQuery<ProviderQuery>) -> Result<Response, Problem> {
    let page = Page::parse(q.limit, q.offset)?;
    Ok(page.respond(&uri, page.slice(s.store.providers(q.specialty.as_deref()).await?)))
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
    bounds::line("provider_id", &b.provider_id, MAX_CODE)?;
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
