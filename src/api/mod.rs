//! The HTTP API for clinic staff and the clinic's other systems (reminder
//! tools, practice software): JSON under `/api/v1`, bearer-token auth,
//! RFC 9457 errors, `Idempotency-Key` on writes, and an OpenAPI document
//! generated from the handlers' annotations (utoipa), served at
//! `/api/v1/openapi.json`. Handlers are thin: parse, call the store, shape.

mod appointments;
pub mod auth;
mod bounds;
pub mod calendar;
mod callbacks;
mod catalog;
mod fhir;
mod idempotency;
mod metrics;
mod page;
mod patients;
mod privacy;
mod problem;
mod records;
mod reminders;
pub mod server;
mod webhooks;

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use metrics::{StoredSamples, STORED_TTL};
pub use problem::{ApiJson, FieldProblem, Problem, MAX_BODY};

use crate::clock::Clock;
use crate::config::Config;
use crate::store::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<Config>,
    pub clock: Arc<dyn Clock>,
    /// Live counters shared with the voice assistant, rendered at `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The database's counts for `/metrics`, read at most every 15 s.
    pub metrics_cache: Arc<StoredSamples>,
    /// The console's click-to-call, when telephony is on.
    pub click_to_call: Option<crate::call::click::ClickToCall>,
}

impl AppState {
    pub fn new(store: Store, config: Arc<Config>, clock: Arc<dyn Clock>, metrics: Arc<crate::metrics::Metrics>) -> AppState {
        AppState { store, config, clock, metrics, metrics_cache: Arc::default(), click_to_call: None }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Clinivox API", description = "Appointments, patients and calls of a Clinivox clinic."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(Problem, FieldProblem))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The API's routes and its OpenAPI document, built from the same list.
pub fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(patients::create, patients::find_by_phone))
        .routes(routes!(patients::get_one, patients::update))
        .routes(routes!(privacy::export))
        .routes(routes!(privacy::erase))
        .routes(routes!(privacy::access_log))
        .routes(routes!(catalog::specialties))
        .routes(routes!(catalog::providers))
        .routes(routes!(catalog::slots))
        .routes(routes!(catalog::hold))
        .routes(routes!(catalog::release))
        .routes(routes!(appointments::book, appointments::list))
        .routes(routes!(appointments::get_one))
        .routes(routes!(appointments::confirm))
        .routes(routes!(appointments::cancel))
        .routes(routes!(appointments::reschedule))
        .routes(routes!(appointments::history))
        .routes(routes!(records::waitlist_add, records::waitlist_list))
        .routes(routes!(records::waitlist_remove))
        .routes(routes!(records::calls))
        .routes(routes!(records::call))
        .routes(routes!(reminders::record))
        .routes(routes!(reminders::reply))
        .routes(routes!(reminders::jobs))
        .routes(routes!(reminders::job))
        .routes(routes!(callbacks::list))
        .routes(routes!(callbacks::done))
        .routes(routes!(webhooks::list))
        .routes(routes!(webhooks::resend))
        .split_for_parts()
}

/// The whole HTTP application: health probes, then the authenticated API.
pub fn router(state: AppState) -> Router {
    let (api, doc) = routes();
    let doc = Arc::new(doc);
    let api = api
        .route("/api/v1/openapi.json", get(move || async move { Json(doc.as_ref().clone()) }))
        .layer(axum::middleware::from_fn_with_state(state.clone(), privacy::access_audit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), idempotency::idempotent_writes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token));
    let metrics = Router::new()
        .route("/metrics", get(metrics::metrics))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_metrics_token));
    // FHIR R4: the same tokens; patient reads are logged by its handlers.
    let fhir = fhir::routes()
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token))
        .layer(axum::middleware::from_fn(fhir::as_outcomes));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/fhir/r4/metadata", get(fhir::metadata))
        .merge(fhir)
        .route("/readyz", get(readyz))
        // Calendar apps send no token: the URL is the secret.
        .route("/calendar/{provider}/{file}", get(calendar::feed))
        .merge(metrics)
        .merge(api)
        // The staff console: its own sessions (src/console).
        .merge(crate::console::routes())
        .fallback(|| async { Problem::not_found("route") })
        // One limit for every body, answered 413 by `ApiJson` and the idempotency layer.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// The OpenAPI document as JSON text (for `clinivox openapi`).
pub fn openapi_json() -> String {
    routes().1.to_pretty_json().unwrap_or_default()
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "database not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

/// Query-string extractor whose errors are 422s naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(query));
        serde_path_to_error::deserialize(de).map(ApiQuery).map_err(|e| {
            let field = e.path().to_string();
            let message = e.into_inner().to_string();
            let field = if field == "." {
                message.strip_prefix("missing field `").and_then(|r| r.split('`').next()).unwrap_or("query").to_string()
            } else {
                field
            };
            Problem::invalid(field, message)
        })
    }
}

fn form_urlencoded_parse(q: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(q.as_bytes())
}
