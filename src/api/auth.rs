//! Bearer-token authentication and scopes. Tokens live in configuration only
//! as SHA-256 hashes; a request's token is hashed and compared in constant
//! time. Reads need a `read` or `write` token, writes a `write` token;
//! `/metrics` takes any token, so a scraper's `metrics` token can do nothing else.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::{AppState, Problem};
use crate::config::{ApiToken, Scope};
use crate::store::{Actor, Channel};

/// The authenticated client, put in the request's extensions.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub scope: Scope,
}

/// Header naming the channel a change came through (an SMS tool sends `sms`).
pub const CHANNEL_HEADER: &str = "x-clinivox-channel";

pub async fn require_token(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(caller) = caller(&state, &req) else {
        return Problem::unauthorized().into_response();
    };
    if caller.scope < Scope::Read {
        return Problem::new(
            axum::http::StatusCode::FORBIDDEN,
            "forbidden",
            "This token may not do that",
            "the token may only read /metrics".to_string(),
        )
        .into_response();
    }
    let reading = matches!(*req.method(), Method::GET | Method::HEAD);
    if !reading && caller.scope < Scope::Write {
        return Problem::forbidden().into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// `/metrics`: any valid token. Counts are not patient data, but they tell
/// an outsider how busy the clinic is, and each scrape used to query the database.
pub async fn require_metrics_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match caller(&state, &req) {
        Some(_) => next.run(req).await,
        None => Problem::unauthorized().into_response(),
    }
}

fn caller(state: &AppState, req: &Request) -> Option<Caller> {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)?;
    find(&state.config.api.tokens, token)
}

fn find(tokens: &[ApiToken], presented: &str) -> Option<Caller> {
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    // Compare against every token without early exit: timing tells nothing.
    let mut found = None;
    for t in tokens {
        let same = t.sha256.iter().zip(digest.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if same {
            found = Some(Caller { name: t.name.clone(), scope: t.scope });
        }
    }
    found
}

/// The actor of a write: the token's name and the channel header (`api` when absent).
impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Actor, Problem> {
        let caller = parts.extensions.get::<Caller>().ok_or_else(Problem::unauthorized)?;
        let channel = match parts.headers.get(CHANNEL_HEADER) {
            None => Channel::Api,
            Some(v) => v.to_str().ok().and_then(Channel::parse).ok_or_else(|| {
                Problem::invalid("X-Clinivox-Channel", "must be one of api, phone, sms, whatsapp, email, web, staff, system")
            })?,
        };
        Ok(Actor::new(caller.name.clone(), channel))
    }
}
