//! RFC 9457 problem details: every error the API returns, and the JSON body
//! extractor that turns malformed input into 400/422 naming the field.
//! Internal errors are logged with their cause and answered with a generic
//! 500: nothing internal leaks to the client.

use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

/// The largest request body accepted (1 MiB); larger ones get a 413.
pub const MAX_BODY: usize = 1 << 20;

/// Problem details (RFC 9457).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Which inputs were wrong (422).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldProblem>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldProblem {
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, title: &str, detail: impl Into<Option<String>>) -> Problem {
        Problem {
            kind: format!("/problems/{kind}"),
            title: title.into(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
        }
    }
    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "bad-request", "The request is malformed", detail.into())
    }
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Problem {
        let (field, message) = (field.into(), message.into());
        let mut p = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-input", "Some input is invalid", format!("{field}: {message}"));
        p.errors.push(FieldProblem { field, message });
        p
    }
    pub fn not_found(what: &str) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found", format!("{what} not found"))
    }
    pub fn conflict(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::CONFLICT, "conflict", "Conflict", detail.into())
    }
    pub fn unauthorized() -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", "A valid bearer token is required", None)
    }
    pub fn forbidden() -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", "This token may not do that", "the token's scope is read-only".to_string())
    }
    pub fn too_large() -> Problem {
        let detail = format!("the body is larger than {} KiB", MAX_BODY / 1024);
        Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", "The body is too large", detail)
    }
    pub fn internal() -> Problem {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error", "the error was logged".to_string())
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_string(&self).unwrap_or_default();
        let mut response = (status, [(header::CONTENT_TYPE, "application/problem+json")], body).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Problem {
        match e {
            StoreError::NotFound(what) => Problem::not_found(what),
            StoreError::Gone(what) => Problem::new(StatusCode::GONE, "gone", "Gone", format!("{what} was erased")),
            StoreError::Conflict(detail) => Problem::conflict(detail),
            StoreError::Invalid { field, message } => Problem::invalid(field, message),
            other => {
                tracing::error!(error = %other, "store error");
                Problem::internal()
            }
        }
    }
}

/// JSON body extractor: a body that is not JSON is a 400; JSON of the wrong
/// shape is a 422 naming the offending field (via serde_path_to_error).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json") || v.contains("+json"));
        if !is_json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Send JSON",
                "Content-Type must be application/json".to_string(),
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|e| {
            // The limit (DefaultBodyLimit) surfaces here as a 413 rejection.
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::too_large()
            } else {
                Problem::bad_request(e.body_text())
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize(de) {
        Ok(v) => Ok(v),
        Err(e) => {
            let field = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                return Err(Problem::bad_request(format!("the body is not valid JSON: {inner}")));
            }
            // serde's message ends with "at line L column C"; the field is what matters.
            let message = inner.to_string();
            let message = message.split(" at line ").next().unwrap_or(&message).to_string();
            let field = if field == "." { missing_field(&message).unwrap_or(field) } else { field };
            Err(Problem::invalid(field, message))
        }
    }
}

/// serde reports a missing field at the parent's path; pull its name out.
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_string())
}
