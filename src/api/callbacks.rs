//! Callback requests the assistant took: staff list the open ones and mark
//! each done once they have phoned the patient.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ApiQuery, AppState, Problem};
use crate::store::{Actor, CallbackRequest, CallbackStatus};

#[derive(Debug, Deserialize, IntoParams)]
pub struct CallbacksQuery {
    /// open or done; all when absent.
    status: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/callbacks", tag = "callbacks", params(CallbacksQuery),
    responses((status = 200, description = "oldest first", body = Vec<CallbackRequest>), (status = 422, body = Problem)))]
pub async fn list(State(s): State<AppState>, ApiQuery(q): ApiQuery<CallbacksQuery>) -> Result<Json<Vec<CallbackRequest>>, Problem> {
    let status = match q.status.as_deref() {
        None => None,
        Some("open") => Some(CallbackStatus::Open),
        Some("done") => Some(CallbackStatus::Done),
        Some(_) => return Err(Problem::invalid("status", "must be open or done")),
    };
    Ok(Json(s.store.callbacks(status).await?))
}

#[utoipa::path(post, path = "/api/v1/callbacks/{id}/done", tag = "callbacks",
    responses((status = 200, description = "done (again: unchanged)", body = CallbackRequest), (status = 404, body = Problem)))]
pub async fn done(State(s): State<AppState>, actor: Actor, Path(id): Path<String>) -> Result<Json<CallbackRequest>, Problem> {
    Ok(Json(s.store.callback_done(&id, &actor, s.clock.now()).await?))
}
