//! Callback requests the assistant took: staff list the open ones and mark
//! each done once they have phoned the patient.

use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::page::Page;
use super::{ApiQuery, AppState, Problem};
use crate::store::{Actor, CallbackRequest, CallbackStatus};

#[derive(Debug, Deserialize, IntoParams)]
pub struct CallbacksQuery {
    /// open or done; all when absent.
    status: Option<String>,
    /// At most this many (default 100, at most 500).
    limit: Option<i64>,
    /// Skip this many first (default 0).
    offset: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/callbacks", tag = "callbacks", params(CallbacksQuery),
    responses((status = 200, description = "oldest first", body = Vec<CallbackRequest>, headers(("link" = String, description = "rel=\"next\": the next page, while there is one"))), (status = 422, body = Problem)))]
pub async fn list(State(s): State<AppState>, uri: Uri, ApiQuery(q): ApiQuery<CallbacksQuery>) -> Result<Response, Problem> {
    let page = Page::parse(q.limit, q.offset)?;
    let status = match q.status.as_deref() {
        None => None,
        Some("open") => Some(CallbackStatus::Open),
        Some("done") => Some(CallbackStatus::Done),
        Some(_) => return Err(Problem::invalid("status", "must be open or done")),
    };
    Ok(page.respond(&uri, s.store.callbacks_page(status, page.fetch()).await?))
}

#[utoipa::path(post, path = "/api/v1/callbacks/{id}/done", tag = "callbacks",
    responses((status = 200, description = "done (again: unchanged)", body = CallbackRequest), (status = 404, body = Problem)))]
pub async fn done(State(s): State<AppState>, actor: Actor, Path(id): Path<String>) -> Result<Json<CallbackRequest>, Problem> {
    Ok(Json(s.store.callback_done(&id, &actor, s.clock.now()).await?))
}
