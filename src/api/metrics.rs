//! `/metrics` in the Prometheus text format. Counts only — never patient data.
//! Stored counts come from the database, live ones (calls in progress,
//! transfers, recognition, turn latency) from [`crate::metrics::Metrics`].
//! A bearer token is needed (any scope; `metrics` tokens can do nothing
//! else), and the stored counts are cached for [`STORED_TTL`]: they are
//! full-table aggregates on the pool the calls use, so scrapes, however
//! frequent, cost at most one set of queries per period.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use tokio::sync::Mutex;

use super::AppState;
use crate::store::Sample;

/// How long stored counts are served from the cache.
pub const STORED_TTL: chrono::Duration = chrono::Duration::seconds(15);

const HELP: [(&str, &str, &str); 6] = [
    ("clinivox_appointments", "gauge", "Appointments by status."),
    ("clinivox_jobs", "gauge", "Escalation and refill jobs by kind and status."),
    ("clinivox_job_attempts_total", "counter", "Call attempts of jobs by kind and outcome."),
    ("clinivox_calls_total", "counter", "Calls by direction and outcome."),
    ("clinivox_waitlist_active", "gauge", "Patients on the waiting list."),
    ("clinivox_webhook_deliveries", "gauge", "Webhook deliveries in the log by receiver and status (pending, delivered, failed)."),
];

/// The last stored samples and when they were read.
#[derive(Default)]
pub struct StoredSamples(Mutex<Option<(DateTime<Utc>, Arc<Vec<Sample>>)>>);

impl StoredSamples {
    /// The cached samples while fresh, else one read of the store. The lock
    /// is held across the read, so scrapes arriving meanwhile wait for it
    /// instead of each running the aggregates.
    async fn get(&self, state: &AppState) -> Result<Arc<Vec<Sample>>, crate::store::StoreError> {
        let now = state.clock.now();
        let mut cached = self.0.lock().await;
        if let Some((at, samples)) = cached.as_ref() {
            // A clock set back counts as stale rather than fresh for longer.
            if *at <= now && now - *at < STORED_TTL {
                return Ok(samples.clone());
            }
        }
        let samples = Arc::new(state.store.metric_samples().await?);
        *cached = Some((now, samples.clone()));
        Ok(samples)
    }
}

pub async fn metrics(State(s): State<AppState>) -> Response {
    let samples = match s.metrics_cache.get(&s).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "metrics unavailable");
            return (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response();
        }
    };
    let mut text = String::new();
    for (name, kind, help) in HELP {
        text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (_, labels, value) in samples.iter().filter(|s| s.0 == name) {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            let labels = if labels.is_empty() { String::new() } else { format!("{{{}}}", labels.join(",")) };
            text.push_str(&format!("{name}{labels} {value}\n"));
        }
    }
    text.push_str(&s.metrics.render(&s.config.node.id));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
