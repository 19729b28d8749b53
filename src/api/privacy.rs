//! Data-subject rights over the API — a patient's export and erasure, and
//! the access log — and the middleware that writes that log: every
//! successful read of a patient's data records which token read what, and
//! when. Reading the log itself and erasing need a `write` token.
//!
//! The access audit sits in one layer rather than in each handler so that a
//! new read route is audited without anyone remembering to: it finds the
//! patients a response is about from the route (`/patients/{id}…`) or from
//! the `patient_id` fields of the JSON it returns. A read that cannot be
//! logged is not answered (500): no unaudited access.

use std::io::Write;

use axum::body::{to_bytes, Body};
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use super::auth::Caller;
use super::{ApiQuery, AppState, Problem};
use crate::config::Scope;
use crate::store::{AccessEntry, Actor, ErasureReport, SubjectExport};

/// Largest response body the access audit reads to find patient ids.
const MAX_AUDITED_BODY: usize = 64 << 20;
/// Reads that are about no patient, or about reads (the log itself).
const NOT_PATIENT_DATA: [&str; 5] =
    ["/api/v1/openapi.json", "/api/v1/specialties", "/api/v1/providers", "/api/v1/slots", "/api/v1/patients/{id}/access-log"];

#[derive(Debug, Deserialize, IntoParams)]
pub struct ExportQuery {
    /// `json` (default): the document, recordings listed with their paths;
    /// `zip`: `export.json` and the recordings as `recordings/<call id>.wav`.
    format: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/patients/{id}/export", tag = "patients", params(ExportQuery),
    responses((status = 200, description = "everything held about the patient (GDPR Art. 15, 20)", body = SubjectExport),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 410, body = Problem)))]
pub async fn export(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Response, Problem> {
    require_write(&caller)?;
    let zip = match q.format.as_deref() {
        None | Some("json") => false,
        Some("zip") => true,
        Some(_) => return Err(Problem::invalid("format", "must be json or zip")),
    };
    let doc = s.store.export_patient(&id, s.clock.now()).await?;
    if !zip {
        return Ok(Json(doc).into_response());
    }
    let bytes = tokio::task::spawn_blocking(move || zip_export(&doc)).await.map_err(|e| {
        tracing::error!(error = %e, "the export task failed");
        Problem::internal()
    })?;
    let bytes = bytes.map_err(|e| {
        tracing::error!(error = %e, "could not build an export archive");
        Problem::internal()
    })?;
    let disposition = format!("attachment; filename=\"patient-{}.zip\"", id.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', ""));
    Ok(([(header::CONTENT_TYPE, "application/zip".to_string()), (header::CONTENT_DISPOSITION, disposition)], bytes).into_response())
}

#[utoipa::path(post, path = "/api/v1/patients/{id}/erase", tag = "patients",
    responses((status = 200, description = "erased (GDPR Art. 17); counts only", body = ErasureReport),
        (status = 404, body = Problem), (status = 410, description = "already erased", body = Problem)))]
pub async fn erase(State(s): State<AppState>, actor: Actor, Path(id): Path<String>) -> Result<Json<ErasureReport>, Problem> {
    let report = s.store.erase_patient(&id, &actor, s.clock.now()).await?;
    // Which patient is in the audit log; the service log names no one.
    tracing::info!(by = %actor.name, cancelled = report.appointments_cancelled, "a patient was erased");
    if !report.residual.is_empty() {
        tracing::warn!(columns = report.residual.len(), "text elsewhere still holds an erased patient's identifiers (see the answer)");
    }
    Ok(Json(report))
}

#[utoipa::path(get, path = "/api/v1/patients/{id}/access-log", tag = "patients",
    responses((status = 200, description = "API reads of the patient's data, oldest first", body = Vec<AccessEntry>),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn access_log(
    State(s): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Vec<AccessEntry>>, Problem> {
    require_write(&caller)?;
    Ok(Json(s.store.access_log_of(&id).await?))
}

fn require_write(caller: &Caller) -> Result<(), Problem> {
    if caller.scope < Scope::Write {
        return Err(Problem::forbidden());
    }
    Ok(())
}

/// The access audit (see the module comment). Runs inside `require_token`.
pub async fn access_audit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::GET {
        return next.run(req).await;
    }
    let (Some(route), Some(caller)) =
        (req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()), req.extensions().get::<Caller>().cloned())
    else {
        return next.run(req).await;
    };
    if NOT_PATIENT_DATA.contains(&route.as_str()) {
        return next.run(req).await;
    }
    let path = req.uri().path().to_string();
    let action = action(&route, req.uri().query());
    // The record a `{id}` route names: a patient, call, appointment, job…
    let path_id = route_id(&route, &path);
    let response = next.run(req).await;
    if !response.status().is_success() {
        return response;
    }
    let now = state.clock.now();
    let (response, reads) = if route.starts_with("/api/v1/patients/{id}") {
        let Some(patient) = path_id.clone() else { return response };
        (response, vec![(patient, None)])
    } else if route == "/api/v1/appointments/{id}/history" {
        let Some(aid) = path_id.clone() else { return response };
        match state.store.appointment(&aid).await {
            Ok(a) => (response, vec![(a.patient_id, Some(aid))]),
            Err(e) => return Problem::from(e).into_response(),
        }
    } else {
        let (parts, body) = response.into_parts();
        let Ok(bytes) = to_bytes(body, MAX_AUDITED_BODY).await else {
            tracing::error!(route = %route, "a response too large to audit was withheld");
            return Problem::internal().into_response();
        };
        let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let mut patients = Vec::new();
        if route == "/api/v1/patients" {
            // A search by phone answers patient records: their `id`s.
            for p in json.as_array().into_iter().flatten() {
                patients.extend(p.get("id").and_then(Value::as_str).map(str::to_string));
            }
        } else {
            patient_ids(&json, &mut patients);
        }
        patients.sort();
        patients.dedup();
        let reads = patients.into_iter().map(|p| (p, path_id.clone())).collect();
        (Response::from_parts(parts, Body::from(bytes)), reads)
    };
    match state.store.record_access(&caller.name, &action, &reads, now).await {
        Ok(()) => response,
        Err(e) => {
            tracing::error!(error = %e, "could not record an access: the read is refused");
            Problem::internal().into_response()
        }
    }
}

/// `GET /patients/{id}`, or `GET /appointments?date` for a list: the route
/// template and the query's parameter names, never their values (a phone
/// number searched for is personal data).
fn action(route: &str, query: Option<&str>) -> String {
    let route = route.strip_prefix("/api/v1").unwrap_or(route);
    let mut names: Vec<String> = form_urlencoded::parse(query.unwrap_or("").as_bytes()).map(|(k, _)| k.into_owned()).collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        format!("GET {route}")
    } else {
        format!("GET {route}?{}", names.join("&"))
    }
}

/// The value of the route's `{id}` segment in the request's path.
fn route_id(route: &str, path: &str) -> Option<String> {
    let at = route.split('/').position(|s| s == "{id}")?;
    let raw = path.split('/').nth(at)?;
    Some(percent_decode(raw))
}

fn percent_decode(s: &str) -> String {
    form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

/// Every `"patient_id": "<id>"` anywhere in a JSON document.
fn patient_ids(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("patient_id", Value::String(id)) => out.push(id.clone()),
                    _ => patient_ids(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| patient_ids(v, out)),
        _ => {}
    }
}

/// `export.json` and each recording still on disk, as a zip archive.
fn zip_export(doc: &SubjectExport) -> std::io::Result<Vec<u8>> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let json = serde_json::to_vec_pretty(doc).map_err(std::io::Error::other)?;
    zip.start_file("export.json", options).map_err(std::io::Error::other)?;
    zip.write_all(&json)?;
    for c in &doc.calls {
        let Some(path) = &c.call.recording_path else { continue };
        let audio = match std::fs::read(path) {
            Ok(a) => a,
            // Listed in export.json; the file went with the retention purge.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        zip.start_file(format!("recordings/{}.wav", c.call.id), options).map_err(std::io::Error::other)?;
        zip.write_all(&audio)?;
    }
    Ok(zip.finish().map_err(std::io::Error::other)?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_name_routes_and_parameters_but_no_values() {
        assert_eq!(action("/api/v1/patients", Some("phone=%2B34600111222&limit=5")), "GET /patients?limit&phone");
        assert_eq!(action("/api/v1/calls/{id}", None), "GET /calls/{id}");
    }

    #[test]
    fn route_ids_and_nested_patient_ids() {
        assert_eq!(route_id("/api/v1/calls/{id}", "/api/v1/calls/abc%2Dd").as_deref(), Some("abc-d"));
        assert_eq!(route_id("/api/v1/calls", "/api/v1/calls"), None);
        let mut out = Vec::new();
        patient_ids(&serde_json::json!([{"patient_id": "a", "x": {"patient_id": "b"}}, {"patient_id": null}]), &mut out);
        assert_eq!(out, ["a", "b"]);
    }
}
