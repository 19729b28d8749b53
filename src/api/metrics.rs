//! `/metrics` in the Prometheus text format. Counts only — never patient data.
//! Stored counts come from the database at scrape time; live ones (calls in
//! progress, transfers, recognition, turn latency) from [`crate::metrics::Metrics`].

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;

const HELP: [(&str, &str, &str); 5] = [
    ("clinivox_appointments", "gauge", "Appointments by status."),
    ("clinivox_jobs", "gauge", "Escalation and refill jobs by kind and status."),
    ("clinivox_job_attempts_total", "counter", "Call attempts of jobs by kind and outcome."),
    ("clinivox_calls_total", "counter", "Calls by direction and outcome."),
    ("clinivox_waitlist_active", "gauge", "Patients on the waiting list."),
];

pub async fn metrics(State(s): State<AppState>) -> Response {
    let samples = match s.store.metric_samples().await {
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
    text.push_str(&s.metrics.render());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
