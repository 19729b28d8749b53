//! The webhooks' delivery log and the manual re-send (issue 20).

use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::page::Page;
use super::{ApiQuery, AppState, Problem};
use crate::store::{Actor, Delivery};

#[derive(Debug, Deserialize, IntoParams)]
pub struct DeliveriesQuery {
    /// pending, delivered or failed; all when absent.
    status: Option<String>,
    /// At most this many (default 100, at most 500).
    limit: Option<i64>,
    /// Skip this many first (default 0).
    offset: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/webhooks/deliveries", tag = "webhooks", params(DeliveriesQuery),
    responses((status = 200, description = "newest event first", body = Vec<Delivery>, headers(("link" = String, description = "rel=\"next\": the next page, while there is one"))), (status = 422, body = Problem)))]
pub async fn list(State(s): State<AppState>, uri: Uri, ApiQuery(q): ApiQuery<DeliveriesQuery>) -> Result<Response, Problem> {
    let page = Page::parse(q.limit, q.offset)?;
    let status = match q.status.as_deref() {
        None => None,
        Some(v @ ("pending" | "delivered" | "failed")) => Some(v),
        Some(_) => return Err(Problem::invalid("status", "must be pending, delivered or failed")),
    };
    Ok(page.respond(&uri, s.store.deliveries_page(status, page.fetch()).await?))
}

#[utoipa::path(post, path = "/api/v1/webhooks/deliveries/{id}/resend", tag = "webhooks",
    responses((status = 200, description = "pending again, due now (the event id is the same: receivers de-duplicate)", body = Delivery), (status = 404, body = Problem)))]
pub async fn resend(State(s): State<AppState>, actor: Actor, Path(id): Path<String>) -> Result<Json<Delivery>, Problem> {
    Ok(Json(s.store.resend_delivery(&id, &actor, s.clock.now()).await?))
}
