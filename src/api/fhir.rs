//! HL7 FHIR R4 facade (issue 20) under `/fhir/r4`: the scheduling
//! resources a hospital or practice system speaks, mapped onto the same
//! store and rules as `/api/v1` (bearer tokens and their scopes, the
//! booking rules, 409 on a taken slot, the access log for patient reads).
//!
//! The resources are built by hand as JSON, not from a FHIR model crate:
//! the Rust ones on the registry (`fhirbolt`, `fhir-sdk`) cover R4 but are
//! large generated trees that would dominate the build for the eight
//! resource types used here, and the tests validate what is produced with
//! the reference Python models (`fhir.resources`) instead.
//!
//! Mapping. Patient ↔ patient (identifier `urn:clinivox:patient|<id>`),
//! Practitioner and Schedule ↔ provider, HealthcareService ↔ specialty,
//! Slot ↔ a free slot or a booked one (`<provider>.<unix start>`),
//! Appointment ↔ appointment: `booked` with the patient's participation
//! `needs-action`, or `accepted` once the patient confirmed; `cancelled`,
//! `noshow`, `fulfilled`. A PUT of an Appointment may change its status
//! (cancel), the patient's participation (confirm) or its start (move).

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::{json, Value};

use super::AppState;
use crate::store::{
    Actor, Appointment, AppointmentStatus, NewAppointment, Patient, Provider, Reschedule, SlotQuery, Specialty, StoreError,
};

const CONTENT_TYPE: &str = "application/fhir+json";
const PATIENT_SYSTEM: &str = "urn:clinivox:patient";
/// Most entries in one search answer.
const MAX_COUNT: usize = 500;
/// Slot searches without dates look this far ahead.
const DEFAULT_DAYS: i64 = 14;

/// The routes; the caller adds authentication.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/fhir/r4/Patient", get(patient_search))
        .route("/fhir/r4/Patient/{id}", get(patient_read))
        .route("/fhir/r4/Practitioner", get(practitioner_search))
        .route("/fhir/r4/Practitioner/{id}", get(practitioner_read))
        .route("/fhir/r4/HealthcareService", get(service_search))
        .route("/fhir/r4/HealthcareService/{id}", get(service_read))
        .route("/fhir/r4/Schedule", get(schedule_search))
        .route("/fhir/r4/Schedule/{id}", get(schedule_read))
        .route("/fhir/r4/Slot", get(slot_search))
        .route("/fhir/r4/Appointment", get(appointment_search).post(appointment_create))
        .route("/fhir/r4/Appointment/{id}", get(appointment_read).put(appointment_update))
}

/// The API's own refusals (no token, a read-only token writing, a body too
/// large) said as FHIR says errors: an OperationOutcome.
pub async fn as_outcomes(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let r = next.run(req).await;
    let problem = r.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !problem {
        return r;
    }
    let status = r.status();
    let (mut parts, body) = r.into_parts();
    let detail = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(b) => serde_json::from_slice::<Value>(&b).ok().and_then(|v| v["detail"].as_str().map(str::to_string)).unwrap_or_default(),
        Err(_) => String::new(),
    };
    let code = match status {
        StatusCode::UNAUTHORIZED => "login",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::PAYLOAD_TOO_LARGE => "too-costly",
        StatusCode::NOT_FOUND => "not-found",
        _ => "processing",
    };
    let body = json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": detail}]});
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body.to_string()))
}

/// `GET /fhir/r4/metadata` (unauthenticated, as FHIR clients expect):
/// exactly what [`routes`] implements.
pub async fn metadata(State(s): State<AppState>) -> Response {
    let search = |names: &[(&str, &str)]| -> Value { names.iter().map(|(n, t)| json!({"name": n, "type": t})).collect::<Vec<_>>().into() };
    let read = json!([{"code": "read"}, {"code": "search-type"}]);
    let resources = json!([
        {"type": "Patient", "interaction": read, "searchParam": search(&[("identifier", "token"), ("telecom", "token"), ("birthdate", "date")])},
        {"type": "Practitioner", "interaction": read, "searchParam": search(&[])},
        {"type": "HealthcareService", "interaction": read, "searchParam": search(&[])},
        {"type": "Schedule", "interaction": read, "searchParam": search(&[("actor", "reference")])},
        {"type": "Slot", "interaction": [{"code": "search-type"}],
         "searchParam": search(&[("schedule", "reference"), ("service-type", "token"), ("start", "date"), ("status", "token")])},
        {"type": "Appointment", "interaction": [{"code": "read"}, {"code": "search-type"}, {"code": "create"}, {"code": "update"}],
         "searchParam": search(&[("patient", "reference"), ("practitioner", "reference"), ("date", "date")])},
    ]);
    fhir(
        StatusCode::OK,
        json!({
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": s.clock.now().format("%Y-%m-%d").to_string(),
            "kind": "instance",
            "software": {"name": "Clinivox"},
            "implementation": {"description": format!("Clinivox at {}", s.config.clinic.name)},
            "fhirVersion": "4.0.1",
            "format": ["json"],
            "rest": [{
                "mode": "server",
                "security": {"description": "Bearer tokens of the Clinivox API (read, write)."},
                "resource": resources,
            }],
        }),
    )
}

/// A FHIR error: an OperationOutcome with the HTTP status.
pub struct Outcome(StatusCode, &'static str, String);

impl IntoResponse for Outcome {
    fn into_response(self) -> Response {
        let Outcome(status, code, text) = self;
        fhir(status, json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]}))
    }
}

impl From<StoreError> for Outcome {
    fn from(e: StoreError) -> Outcome {
        match e {
            StoreError::NotFound(what) => Outcome(StatusCode::NOT_FOUND, "not-found", format!("no such {what}")),
            StoreError::Gone(what) => Outcome(StatusCode::GONE, "deleted", format!("{what} was erased")),
            StoreError::Conflict(detail) => Outcome(StatusCode::CONFLICT, "conflict", detail),
            StoreError::Invalid { field, message } => Outcome(StatusCode::UNPROCESSABLE_ENTITY, "invalid", format!("{field}: {message}")),
            other => {
                tracing::error!(error = %other, "store error");
                Outcome(StatusCode::INTERNAL_SERVER_ERROR, "exception", "internal error".into())
            }
        }
    }
}

fn invalid(text: impl Into<String>) -> Outcome {
    Outcome(StatusCode::UNPROCESSABLE_ENTITY, "invalid", text.into())
}

fn fhir(status: StatusCode, body: Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    r
}

fn bundle(resources: Vec<Value>) -> Response {
    let entry: Vec<Value> = resources.into_iter().map(|r| json!({"resource": r, "search": {"mode": "match"}})).collect();
    fhir(StatusCode::OK, json!({"resourceType": "Bundle", "type": "searchset", "total": entry.len(), "entry": entry}))
}

/// The query's parameters, repeated ones kept (`start=ge…&start=lt…`).
fn params(raw: Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

fn count(p: &[(String, String)]) -> Result<usize, Outcome> {
    match p.iter().find(|(k, _)| k == "_count") {
        None => Ok(100),
        Some((_, v)) => {
            v.parse::<usize>().ok().filter(|n| (1..=MAX_COUNT).contains(n)).ok_or_else(|| invalid(format!("_count must be 1–{MAX_COUNT}")))
        }
    }
}

/// Parameters this server does not know are an error, not silently ignored
/// (a client filtering by one would otherwise get everything).
fn only(p: &[(String, String)], known: &[&str]) -> Result<(), Outcome> {
    match p.iter().find(|(k, _)| !known.contains(&k.as_str()) && k != "_count" && k != "_format") {
        Some((k, _)) => Err(invalid(format!("unsupported search parameter {k:?}"))),
        None => Ok(()),
    }
}

/// `Type/id` of a reference, or the bare id.
fn reference<'a>(v: &'a str, kind: &str) -> &'a str {
    v.strip_prefix(kind).and_then(|r| r.strip_prefix('/')).unwrap_or(v)
}

async fn record(s: &AppState, actor: &Actor, action: &str, reads: Vec<(String, Option<String>)>) -> Result<(), Outcome> {
    if reads.is_empty() {
        return Ok(());
    }
    s.store.record_access(&actor.name, action, &reads, s.clock.now()).await.map_err(|e| {
        tracing::error!(error = %e, "could not record an access: the read is refused");
        Outcome(StatusCode::INTERNAL_SERVER_ERROR, "exception", "internal error".into())
    })
}

// ---- Patient ----

fn patient(p: &Patient) -> Value {
    // Spanish and Portuguese names put the surnames last: the first word is given.
    let (family, given) = match p.name.split_once(' ') {
        Some((given, family)) => (Some(family.to_string()), Some(given.to_string())),
        None => (Some(p.name.clone()), None),
    };
    let mut name = json!({"text": p.name});
    if let Some(f) = family {
        name["family"] = json!(f);
    }
    if let Some(g) = given {
        name["given"] = json!([g]);
    }
    let telecom: Vec<Value> = p.phones.iter().enumerate().map(|(i, n)| json!({"system": "phone", "value": n, "rank": i + 1})).collect();
    json!({
        "resourceType": "Patient",
        "id": p.id,
        "identifier": [{"system": PATIENT_SYSTEM, "value": p.id}],
        "name": [name],
        "telecom": telecom,
        "birthDate": p.date_of_birth.to_string(),
        "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": p.preferred_language}]}, "preferred": true}],
    })
}

async fn patient_read(State(s): State<AppState>, actor: Actor, Path(id): Path<String>) -> Result<Response, Outcome> {
    let p = s.store.patient(&id).await?;
    record(&s, &actor, "GET /fhir/r4/Patient/{id}", vec![(p.id.clone(), None)]).await?;
    Ok(fhir(StatusCode::OK, patient(&p)))
}

async fn patient_search(State(s): State<AppState>, actor: Actor, RawQuery(q): RawQuery) -> Result<Response, Outcome> {
    let p = params(q);
    only(&p, &["identifier", "telecom", "birthdate"])?;
    let limit = count(&p)?;
    let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let mut found: Option<Vec<Patient>> = None;
    let mut narrow = |list: Vec<Patient>| {
        found = Some(match found.take() {
            None => list,
            Some(prev) => prev.into_iter().filter(|p| list.iter().any(|q| q.id == p.id)).collect(),
        })
    };
    if let Some(v) = get("identifier") {
        let id = v.strip_prefix(&format!("{PATIENT_SYSTEM}|")).unwrap_or(v);
        narrow(match s.store.patient(id).await {
            Ok(p) => vec![p],
            Err(StoreError::NotFound(_) | StoreError::Gone(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        });
    }
    if let Some(v) = get("telecom") {
        let number = v.strip_prefix("phone|").unwrap_or(v);
        let e164 = crate::phone::E164::parse(number).map_err(|_| invalid("telecom must be an E.164 number (phone|+34…)"))?;
        narrow(s.store.patients_by_phone(&e164).await?);
    }
    if let Some(v) = get("birthdate") {
        let day = v.strip_prefix("eq").unwrap_or(v).parse::<NaiveDate>().map_err(|_| invalid("birthdate must be a date (YYYY-MM-DD)"))?;
        narrow(s.store.patients_born_on(day).await?);
    }
    // No criterion: no list of every patient.
    let Some(mut list) = found else { return Err(invalid("search patients by identifier, telecom or birthdate")) };
    list.truncate(limit);
    let action = format!("GET /fhir/r4/Patient?{}", p.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join("&"));
    record(&s, &actor, &action, list.iter().map(|p| (p.id.clone(), None)).collect()).await?;
    Ok(bundle(list.iter().map(patient).collect()))
}

// ---- Practitioner, HealthcareService, Schedule ----

fn practitioner(p: &Provider) -> Value {
    json!({"resourceType": "Practitioner", "id": p.id, "active": true, "name": [{"text": p.name}]})
}

fn service(sp: &Specialty, clinic: &str) -> Value {
    let name = sp.names.get("en").or_else(|| sp.names.values().next()).and_then(|n| n.first()).cloned().unwrap_or_else(|| sp.id.clone());
    json!({
        "resourceType": "HealthcareService", "id": sp.id, "active": true, "name": name,
        "type": [{"coding": [{"system": "urn:clinivox:specialty", "code": sp.id}], "text": name}],
        "providedBy": {"display": clinic},
    })
}

fn schedule(p: &Provider) -> Value {
    json!({
        "resourceType": "Schedule", "id": p.id, "active": true,
        "serviceType": [{"coding": [{"system": "urn:clinivox:specialty", "code": p.specialty_id}]}],
        "actor": [{"reference": format!("Practitioner/{}", p.id), "display": p.name}],
        "comment": format!("{} minutes per slot", p.slot_minutes),
    })
}

async fn practitioner_read(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, Outcome> {
    Ok(fhir(StatusCode::OK, practitioner(&s.store.provider(&id).await?)))
}

async fn practitioner_search(State(s): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, Outcome> {
    only(&params(q), &[])?;
    Ok(bundle(s.store.providers(None).await?.iter().map(practitioner).collect()))
}

async fn service_read(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, Outcome> {
    let all = s.store.specialties().await?;
    let sp = all.iter().find(|sp| sp.id == id).ok_or(StoreError::NotFound("HealthcareService"))?;
    Ok(fhir(StatusCode::OK, service(sp, &s.config.clinic.name)))
}

async fn service_search(State(s): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, Outcome> {
    only(&params(q), &[])?;
    Ok(bundle(s.store.specialties().await?.iter().map(|sp| service(sp, &s.config.clinic.name)).collect()))
}

async fn schedule_read(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, Outcome> {
    Ok(fhir(StatusCode::OK, schedule(&s.store.provider(&id).await?)))
}

async fn schedule_search(State(s): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, Outcome> {
    let p = params(q);
    only(&p, &["actor"])?;
    let mut all = s.store.providers(None).await?;
    if let Some((_, a)) = p.iter().find(|(k, _)| k == "actor") {
        let id = reference(a, "Practitioner");
        all.retain(|pr| pr.id == id);
    }
    Ok(bundle(all.iter().map(schedule).collect()))
}

// ---- Slot ----

fn slot_id(provider: &str, start: DateTime<Utc>) -> String {
    format!("{provider}.{}", start.timestamp())
}

fn slot(provider: &str, specialty: &str, start: DateTime<Utc>, end: DateTime<Utc>, busy: bool) -> Value {
    json!({
        "resourceType": "Slot", "id": slot_id(provider, start),
        "serviceType": [{"coding": [{"system": "urn:clinivox:specialty", "code": specialty}]}],
        "schedule": {"reference": format!("Schedule/{provider}")},
        "status": if busy { "busy" } else { "free" },
        "start": start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "end": end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
}

/// `start=2026-12-01` (that day), or `ge`/`gt`/`le`/`lt` bounds, as clinic-local dates.
fn date_range(p: &[(String, String)], name: &str, today: NaiveDate) -> Result<(NaiveDate, NaiveDate), Outcome> {
    let (mut from, mut to) = (None, None);
    for (_, v) in p.iter().filter(|(k, _)| k == name) {
        let (prefix, date) = if v.len() > 2 && v.as_bytes()[0].is_ascii_alphabetic() { v.split_at(2) } else { ("eq", v.as_str()) };
        let d = date.get(..10).and_then(|d| d.parse::<NaiveDate>().ok()).ok_or_else(|| invalid(format!("{name} must be a date")))?;
        match prefix {
            "eq" => (from, to) = (Some(d), Some(d)),
            "ge" => from = Some(d),
            "gt" => from = d.succ_opt(),
            "le" => to = Some(d),
            "lt" => to = d.pred_opt(),
            _ => return Err(invalid(format!("{name}: prefix {prefix:?} is not supported"))),
        }
    }
    let from = from.unwrap_or(today);
    let to = to.unwrap_or(from + Duration::days(DEFAULT_DAYS));
    if to < from || to - from > Duration::days(92) {
        return Err(invalid(format!("{name}: at most 92 days at once")));
    }
    Ok((from, to))
}

async fn slot_search(State(s): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, Outcome> {
    let p = params(q);
    only(&p, &["schedule", "service-type", "start", "status"])?;
    let limit = count(&p)?;
    let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let now = s.clock.now();
    let tz = s.store.timezone();
    let (from, to) = date_range(&p, "start", now.with_timezone(&tz).date_naive())?;
    let provider = get("schedule").map(|v| reference(v, "Schedule").to_string());
    let specialty = get("service-type").map(|v| v.rsplit('|').next().unwrap_or(v).to_string());
    let status = get("status").unwrap_or("free");
    let mut out = Vec::new();
    match status {
        "free" => {
            let q = SlotQuery { specialty, provider, from: Some(from), to: Some(to), limit: Some(limit), ..Default::default() };
            for sl in s.store.free_slots(&q, now).await? {
                out.push(slot(&sl.provider_id, &sl.specialty_id, sl.starts_at, sl.ends_at, false));
            }
        }
        "busy" => {
            let providers = s.store.providers(specialty.as_deref()).await?;
            for pr in providers.iter().filter(|pr| provider.as_deref().is_none_or(|id| id == pr.id)) {
                let start = local_midnight(tz, from);
                let end = local_midnight(tz, to + Duration::days(1));
                for a in s.store.appointments_for_provider(&pr.id, start, end, limit as i64).await? {
                    if matches!(a.status, AppointmentStatus::Booked | AppointmentStatus::Confirmed) {
                        out.push(slot(&a.provider_id, &a.specialty_id, a.starts_at, a.ends_at, true));
                    }
                }
            }
            out.truncate(limit);
        }
        _ => return Err(invalid("status must be free or busy")),
    }
    Ok(bundle(out))
}

/// The instant a clinic-local day starts (the first valid local time of
/// it, for a day whose midnight a clock change skips).
fn local_midnight(tz: chrono_tz::Tz, day: NaiveDate) -> DateTime<Utc> {
    use chrono::TimeZone;
    (0..3)
        .find_map(|h| tz.from_local_datetime(&day.and_hms_opt(h, 0, 0)?).earliest())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
}

// ---- Appointment ----

fn appointment(a: &Appointment) -> Value {
    let (status, patient_part) = match a.status {
        AppointmentStatus::Booked => ("booked", "needs-action"),
        AppointmentStatus::Confirmed => ("booked", "accepted"),
        AppointmentStatus::Cancelled => ("cancelled", "declined"),
        AppointmentStatus::NoShow => ("noshow", "accepted"),
        AppointmentStatus::Completed => ("fulfilled", "accepted"),
    };
    let mut v = json!({
        "resourceType": "Appointment", "id": a.id, "status": status,
        "serviceType": [{"coding": [{"system": "urn:clinivox:specialty", "code": a.specialty_id}]}],
        "start": a.starts_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "end": a.ends_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "created": a.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "slot": [{"reference": format!("Slot/{}", slot_id(&a.provider_id, a.starts_at))}],
        "participant": [
            {"actor": {"reference": format!("Patient/{}", a.patient_id)}, "required": "required", "status": patient_part},
            {"actor": {"reference": format!("Practitioner/{}", a.provider_id)}, "required": "required", "status": "accepted"},
        ],
    });
    if let Some(n) = &a.notes {
        v["comment"] = json!(n);
    }
    v
}

async fn appointment_read(State(s): State<AppState>, actor: Actor, Path(id): Path<String>) -> Result<Response, Outcome> {
    let a = s.store.appointment(&id).await?;
    record(&s, &actor, "GET /fhir/r4/Appointment/{id}", vec![(a.patient_id.clone(), Some(a.id.clone()))]).await?;
    Ok(fhir(StatusCode::OK, appointment(&a)))
}

async fn appointment_search(State(s): State<AppState>, actor: Actor, RawQuery(q): RawQuery) -> Result<Response, Outcome> {
    let p = params(q);
    only(&p, &["patient", "practitioner", "date"])?;
    let limit = count(&p)?;
    let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let now = s.clock.now();
    let tz = s.store.timezone();
    let mut list = match (get("patient"), get("practitioner")) {
        (Some(pt), _) => s.store.appointments_for_patient(reference(pt, "Patient"), false, now).await?,
        (None, Some(pr)) => {
            let (from, to) = date_range(&p, "date", now.with_timezone(&tz).date_naive())?;
            let (start, end) = (local_midnight(tz, from), local_midnight(tz, to + Duration::days(1)));
            s.store.appointments_for_provider(reference(pr, "Practitioner"), start, end, limit as i64).await?
        }
        (None, None) => return Err(invalid("search appointments by patient or practitioner")),
    };
    if get("patient").is_some() && get("date").is_some() {
        let (from, to) = date_range(&p, "date", now.with_timezone(&tz).date_naive())?;
        list.retain(|a| (from..=to).contains(&a.starts_at.with_timezone(&tz).date_naive()));
    }
    list.truncate(limit);
    let action = format!("GET /fhir/r4/Appointment?{}", p.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join("&"));
    record(&s, &actor, &action, list.iter().map(|a| (a.patient_id.clone(), Some(a.id.clone()))).collect()).await?;
    Ok(bundle(list.iter().map(appointment).collect()))
}

/// What a posted or put Appointment asks for.
struct Wanted {
    patient: Option<String>,
    practitioner: Option<String>,
    start: Option<DateTime<Utc>>,
    status: Option<String>,
    patient_status: Option<String>,
    comment: Option<String>,
}

fn wanted(body: &Value) -> Result<Wanted, Outcome> {
    if body.get("resourceType").and_then(Value::as_str) != Some("Appointment") {
        return Err(invalid("the body must be an Appointment resource"));
    }
    let mut w = Wanted { patient: None, practitioner: None, start: None, status: None, patient_status: None, comment: None };
    for p in body.get("participant").and_then(Value::as_array).into_iter().flatten() {
        let r = p.pointer("/actor/reference").and_then(Value::as_str).unwrap_or("");
        if let Some(id) = r.strip_prefix("Patient/") {
            w.patient = Some(id.to_string());
            w.patient_status = p.get("status").and_then(Value::as_str).map(str::to_string);
        } else if let Some(id) = r.strip_prefix("Practitioner/") {
            w.practitioner = Some(id.to_string());
        }
    }
    // A Slot reference names the practitioner and the start at once.
    if let Some(sl) = body.pointer("/slot/0/reference").and_then(Value::as_str) {
        let id = reference(sl, "Slot");
        let (pr, t) = id.rsplit_once('.').ok_or_else(|| invalid("slot: not a slot of this server"))?;
        let t =
            t.parse::<i64>().ok().and_then(|t| DateTime::from_timestamp(t, 0)).ok_or_else(|| invalid("slot: not a slot of this server"))?;
        w.practitioner.get_or_insert_with(|| pr.to_string());
        w.start.get_or_insert(t);
    }
    if let Some(st) = body.get("start").and_then(Value::as_str) {
        w.start = Some(DateTime::parse_from_rfc3339(st).map_err(|_| invalid("start must be an instant"))?.with_timezone(&Utc));
    }
    w.status = body.get("status").and_then(Value::as_str).map(str::to_string);
    w.comment = body.get("comment").and_then(Value::as_str).map(str::to_string);
    Ok(w)
}

async fn appointment_create(State(s): State<AppState>, actor: Actor, body: axum::body::Bytes) -> Result<Response, Outcome> {
    let body: Value =
        serde_json::from_slice(&body).map_err(|_| Outcome(StatusCode::BAD_REQUEST, "structure", "the body is not JSON".into()))?;
    let w = wanted(&body)?;
    if w.status.as_deref().is_some_and(|st| st != "booked") {
        return Err(invalid("a new appointment is booked (status \"booked\")"));
    }
    let (Some(patient_id), Some(provider_id), Some(starts_at)) = (w.patient, w.practitioner, w.start) else {
        return Err(invalid("an Appointment needs a Patient and a Practitioner participant and a start (or a Slot)"));
    };
    // The API's bounds on notes: refused, not cut.
    super::bounds::opt_text("comment", w.comment.as_deref(), super::bounds::MAX_TEXT)
        .map_err(|_| invalid(format!("comment: at most {} characters, no control characters", super::bounds::MAX_TEXT)))?;
    let notes = w.comment;
    let a = s.store.book(NewAppointment { patient_id, provider_id, starts_at, hold_token: None, notes }, &actor, s.clock.now()).await?;
    let mut r = fhir(StatusCode::CREATED, appointment(&a));
    if let Ok(v) = HeaderValue::from_str(&format!("Appointment/{}", a.id)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

async fn appointment_update(
    State(s): State<AppState>,
    actor: Actor,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, Outcome> {
    let body: Value =
        serde_json::from_slice(&body).map_err(|_| Outcome(StatusCode::BAD_REQUEST, "structure", "the body is not JSON".into()))?;
    if body.get("id").and_then(Value::as_str).is_some_and(|b| b != id) {
        return Err(invalid("the body's id is not the URL's"));
    }
    let w = wanted(&body)?;
    let now = s.clock.now();
    let mut a = s.store.appointment(&id).await?;
    if w.patient.as_deref().is_some_and(|p| p != a.patient_id) {
        return Err(invalid("an appointment's patient cannot change"));
    }
    let moved = w.start.is_some_and(|t| t != a.starts_at) || w.practitioner.as_deref().is_some_and(|p| p != a.provider_id);
    match w.status.as_deref() {
        Some("cancelled") if a.status != AppointmentStatus::Cancelled => a = s.store.cancel(&id, &actor, now).await?,
        Some("cancelled") | Some("booked") | None => {}
        Some(other) => return Err(invalid(format!("status {other:?} cannot be set here (booked or cancelled)"))),
    }
    if a.status != AppointmentStatus::Cancelled && moved {
        let to = Reschedule { provider_id: w.practitioner.clone(), starts_at: w.start.unwrap_or(a.starts_at), hold_token: None };
        a = s.store.reschedule(&id, to, &actor, now).await?;
    }
    if a.status == AppointmentStatus::Booked && w.patient_status.as_deref() == Some("accepted") {
        a = s.store.confirm(&id, &actor, now).await?;
    }
    Ok(fhir(StatusCode::OK, appointment(&a)))
}
