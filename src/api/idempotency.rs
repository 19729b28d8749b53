//! `Idempotency-Key` on writes: a retried request (same client, same key,
//! same method, path and body) gets the first response again and changes
//! nothing; the same key on a different request is refused.

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::auth::Caller;
use super::{AppState, Problem, MAX_BODY};
use crate::store::IdempotencyStart;

pub const HEADER: &str = "idempotency-key";

/// On a request that retries an abandoned first attempt (see
/// `IdempotencyStart::Resume`): handlers whose write may already have
/// happened answer with what it made.
#[derive(Debug, Clone, Copy)]
pub struct Resumed;

pub async fn idempotent_writes(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get(HEADER) else { return next.run(req).await };
    let key = match key.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= 255 => k.to_string(),
        _ => return Problem::invalid("Idempotency-Key", "must be 1 to 255 visible ASCII characters").into_response(),
    };
    let Some(caller) = req.extensions().get::<Caller>().cloned() else { return Problem::unauthorized().into_response() };
    let (mut parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
        return Problem::too_large().into_response();
    };
    let mut h = Sha256::new();
    h.update(parts.method.as_str());
    h.update([0]);
    h.update(parts.uri.to_string());
    h.update([0]);
    h.update(&bytes);
    let hash = hex::encode(h.finalize());

    let store = &state.store;
    match store.idempotency_start(&caller.name, &key, &hash, state.clock.now()).await {
        Err(e) => return Problem::from(e).into_response(),
        Ok(IdempotencyStart::Mismatch) => {
            return Problem::invalid("Idempotency-Key", "was already used for a different request").into_response();
        }
        Ok(IdempotencyStart::InFlight) => {
            return Problem::conflict("a request with this Idempotency-Key is still in progress").into_response();
        }
        Ok(IdempotencyStart::Replay { status, body }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let kind = if status.is_success() { "application/json" } else { "application/problem+json" };
            let mut r = (status, [(header::CONTENT_TYPE, kind)], body).into_response();
            r.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            return r;
        }
        Ok(IdempotencyStart::Proceed) => {}
        Ok(IdempotencyStart::Resume) => {
            parts.extensions.insert(Resumed);
        }
    }
    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    let (parts, body) = response.into_parts();
    let bytes = to_bytes(body, MAX_BODY).await.unwrap_or_default();
    let outcome = if parts.status.is_server_error() {
        // A failure on our side is not an answer: let the client's retry run.
        store.idempotency_abandon(&caller.name, &key).await
    } else {
        store.idempotency_finish(&caller.name, &key, parts.status.as_u16(), &String::from_utf8_lossy(&bytes)).await
    };
    if let Err(e) = outcome {
        tracing::error!(error = %e, "could not record an idempotency key");
    }
    Response::from_parts(parts, Body::from(bytes))
}
