//! The HTTP API in-process (tower `oneshot`), on SQLite and on PostgreSQL:
//! auth and scopes, problem JSON, 422s naming the field, idempotency, the
//! booking race through HTTP, and the OpenAPI document. Then the protections
//! for a public address: pagination, input bounds, the `/metrics` token and
//! cache, and the real listener on loopback (header and request timeouts,
//! the connection limit).

#[macro_use]
mod support;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use chrono::{DateTime, Utc};
use clinivox::api::{router, AppState};
use clinivox::clock::ManualClock;
use clinivox::config::Config;
use clinivox::store::Store;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

const READ: &str = "demo-read-token";
const WRITE: &str = "demo-write-token";

fn now() -> DateTime<Utc> {
    "2026-11-23T08:00:00Z".parse().unwrap()
}

on_both_engines!(
    auth_and_scopes,
    bad_input_is_a_problem_naming_the_field,
    idempotency_keys,
    booking_race_over_http,
    appointment_lifecycle,
    openapi_document_is_generated,
    lists_and_lookups,
    reminders_and_replies,
    callback_requests,
    live_metrics,
    call_records_show_links_recordings_and_refusals,
    lists_are_paginated,
    input_is_bounded,
    metrics_need_a_token_and_are_cached,
    subject_rights_and_the_access_log,
    calendar_feeds,
    fhir_scheduling_round_trip,
    console_logins_and_sessions,
    console_pages_show_the_day_and_log_who_saw_it,
    console_kpis_count_what_the_store_holds,
    console_record_pages,
    console_calls_in_progress_and_accounts,
    console_kpis_match_a_seeded_history,
);

fn app(store: Store, config: Config) -> Router {
    app_with(store, config, clinivox::metrics::Metrics::new())
}

fn app_with(store: Store, config: Config, metrics: Arc<clinivox::metrics::Metrics>) -> Router {
    router(AppState::new(store, Arc::new(config), Arc::new(ManualClock::new(now())), metrics))
}

/// The app and its clock, to move time on.
fn app_and_clock(store: Store, config: Config) -> (Router, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(now()));
    let state = AppState::new(store, Arc::new(config), clock.clone(), clinivox::metrics::Metrics::new());
    (router(state), clock)
}

struct Reply {
    status: StatusCode,
    content_type: String,
    headers: axum::http::HeaderMap,
    json: Value,
}

async fn call(app: &Router, method: &str, uri: &str, token: Option<&str>, body: Option<Value>, extra: &[(&str, &str)]) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let req = match body {
        Some(b) => req.header(header::CONTENT_TYPE, "application/json").body(Body::from(b.to_string())).unwrap(),
        None => req.body(Body::empty()).unwrap(),
    };
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
    Reply { status, content_type, headers, json }
}

fn assert_problem(r: &Reply, status: u16) {
    assert_eq!(r.status.as_u16(), status, "{}", r.json);
    assert_eq!(r.content_type, "application/problem+json");
    assert_eq!(r.json["status"], status);
    assert!(r.json["type"].as_str().unwrap().starts_with("/problems/"));
    assert!(r.json["title"].is_string());
}

fn field(r: &Reply) -> &str {
    r.json["errors"][0]["field"].as_str().unwrap_or("")
}

async fn new_patient(app: &Router, name: &str, phone: &str) -> String {
    let body = json!({"name": name, "phones": [phone], "date_of_birth": "1950-05-03"});
    let r = call(app, "POST", "/api/v1/patients", Some(WRITE), Some(body), &[]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    r.json["id"].as_str().unwrap().to_string()
}

/// Tuesday 24 November 2026, 09:00 in Madrid: a slot of Dra. García.
const SLOT: &str = "2026-11-24T08:00:00Z";

async fn auth_and_scopes(store: Store, config: Config) {
    let app = app(store, config);
    assert_eq!(call(&app, "GET", "/healthz", None, None, &[]).await.status, StatusCode::OK);
    assert_eq!(call(&app, "GET", "/readyz", None, None, &[]).await.status, StatusCode::OK);
    let r = call(&app, "GET", "/api/v1/specialties", None, None, &[]).await;
    assert_problem(&r, 401);
    assert_eq!(r.headers.get(header::WWW_AUTHENTICATE).unwrap(), "Bearer");
    assert_problem(&call(&app, "GET", "/api/v1/specialties", Some("not-a-token"), None, &[]).await, 401);
    assert_problem(&call(&app, "GET", "/api/v1/openapi.json", None, None, &[]).await, 401);
    let r = call(&app, "GET", "/api/v1/specialties", Some(READ), None, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json.as_array().unwrap().len(), 8);
    // A read-only token may not write.
    let body = json!({"name": "Ana", "phones": ["+34600111222"], "date_of_birth": "1950-05-03"});
    assert_problem(&call(&app, "POST", "/api/v1/patients", Some(READ), Some(body.clone()), &[]).await, 403);
    assert_eq!(call(&app, "POST", "/api/v1/patients", Some(WRITE), Some(body), &[]).await.status, StatusCode::CREATED);
    assert_problem(&call(&app, "GET", "/api/v1/nothing-here", Some(READ), None, &[]).await, 404);
}

async fn bad_input_is_a_problem_naming_the_field(store: Store, config: Config) {
    let app = app(store, config);
    let post = |body: Value| call(&app, "POST", "/api/v1/patients", Some(WRITE), Some(body), &[]);
    let r = post(json!({"phones": ["+34600111222"], "date_of_birth": "1950-05-03"})).await;
    assert_problem(&r, 422);
    assert_eq!(field(&r), "name");
    let r = post(json!({"name": "Ana", "phones": ["600 11 12 22"], "date_of_birth": "1950-05-03"})).await;
    assert_problem(&r, 422);
    assert_eq!(field(&r), "phones[0]");
    let r = post(json!({"name": "Ana", "phones": ["+34600111222"], "date_of_birth": "3 de mayo"})).await;
    assert_problem(&r, 422);
    assert_eq!(field(&r), "date_of_birth");
    let r = post(json!({"name": "Ana", "phones": ["+34600111222"], "date_of_birth": "2090-01-01"})).await;
    assert_eq!(field(&r), "date_of_birth");
    let r = post(json!({"name": "Ana", "phones": ["+34600111222"], "date_of_birth": "1950-05-03", "preferred_language": "klingon"})).await;
    assert_eq!(field(&r), "preferred_language");
    let r = post(json!({"name": "Ana", "phones": ["+34600111222"], "date_of_birth": "1950-05-03", "shoe_size": 38})).await;
    assert_problem(&r, 422);

    // Not JSON at all: 400; not declared as JSON: 415.
    let req = Request::post("/api/v1/patients")
        .header(header::AUTHORIZATION, format!("Bearer {WRITE}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"name\": "))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let req =
        Request::post("/api/v1/patients").header(header::AUTHORIZATION, format!("Bearer {WRITE}")).body(Body::from("name=Ana")).unwrap();
    assert_eq!(app.clone().oneshot(req).await.unwrap().status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Query strings too.
    let r = call(&app, "GET", "/api/v1/slots?specialty=general&from=yesterday", Some(READ), None, &[]).await;
    assert_problem(&r, 422);
    assert_eq!(field(&r), "from");
    let r = call(&app, "GET", "/api/v1/slots?specialty=general&part_of_day=night", Some(READ), None, &[]).await;
    assert_eq!(field(&r), "part_of_day");
    assert_eq!(field(&call(&app, "GET", "/api/v1/slots", Some(READ), None, &[]).await), "specialty");
    assert_problem(&call(&app, "GET", "/api/v1/slots?specialty=astrology", Some(READ), None, &[]).await, 404);
    let r = call(&app, "GET", "/api/v1/patients?phone=12345", Some(READ), None, &[]).await;
    assert_eq!(field(&r), "phone");

    // Booking something that is not a slot, or for nobody.
    let patient = new_patient(&app, "Ana Pérez", "+34600111222").await;
    let book = |body: Value| call(&app, "POST", "/api/v1/appointments", Some(WRITE), Some(body), &[]);
    let r = book(json!({"patient_id": patient, "provider_id": "dr-garcia", "starts_at": "2026-11-24T08:07:00Z"})).await;
    assert_eq!(field(&r), "starts_at");
    let r = book(json!({"patient_id": "nobody", "provider_id": "dr-garcia", "starts_at": SLOT})).await;
    assert_eq!(field(&r), "patient_id");
    let r = book(json!({"patient_id": patient, "provider_id": "dr-garcia", "starts_at": "tomorrow at nine"})).await;
    assert_eq!(field(&r), "starts_at");
    let r = call(&app, "POST", "/api/v1/appointments", Some(WRITE), Some(json!({})), &[("X-Clinivox-Channel", "pigeon")]).await;
    assert_problem(&r, 422);
}

async fn idempotency_keys(store: Store, config: Config) {
    let app = app(store, config);
    let patient = new_patient(&app, "Ana Pérez", "+34600111222").await;
    let body = json!({"patient_id": patient, "provider_id": "dr-garcia", "starts_at": SLOT});
    let key = [("Idempotency-Key", "book-ana-1")];
    let first = call(&app, "POST", "/api/v1/appointments", Some(WRITE), Some(body.clone()), &key).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let retry = call(&app, "POST", "/api/v1/appointments", Some(WRITE), Some(body.clone()), &key).await;
    assert_eq!(retry.status, StatusCode::CREATED);
    assert_eq!(retry.json, first.json, "the retry gets the first answer");
    assert_eq!(retry.headers.get("idempotent-replayed").unwrap(), "true");
    let list = call(&app, "GET", &format!("/api/v1/appointments?patient_id={patient}"), Some(READ), None, &[]).await;
    assert_eq!(list.json.as_array().unwrap().len(), 1, "booked once");
    // Without the key, the same request is a new booking attempt: the slot is taken.
    assert_problem(&call(&app, "POST", "/api/v1/appointments", Some(WRITE), Some(body.clone()), &[]).await, 409);
    // The key reused for another request is refused.
    let other = json!({"patient_id": patient, "provider_id": "dr-garcia", "starts_at": "2026-11-24T08:15:00Z"});
    let r = call(&app, "POST", "/api/v1/appointments", Some(WRITE), Some(other), &key).await;
    assert_problem(&r, 422);
    assert_eq!(field(&r), "Idempotency-Key");
    // Replays cover errors too: a repeated conflicting request gets the same 409.
    let k2 = [("Idempotency-Key", "book-ana-2")];
    let c1 = call(&app, "POST", "/api/v1/appointments", Some(WRITE), Some(body.clone()), &k2).await;
    let c2 = call(&app, "POST", "/api/v1/appointments", Some(WRITE), Some(body), &k2).await;
    assert_problem(&c1, 409);
    assert_problem(&c2, 409);
}

async fn booking_race_over_http(store: Store, config: Config) {
    let app = app(store, config);
    let mut patients = Vec::new();
    for i in 0..100 {
        patients.push(new_patient(&app, &format!("Paciente {i}"), &format!("+3461000{i:04}")).await);
    }
    let tasks: Vec<_> = patients
        .into_iter()
        .map(|p| {
            let app = app.clone();
            tokio::spawn(async move {
                let body = json!({"patient_id": p, "provider_id": "dr-garcia", "starts_at": SLOT});
                let r = call(&app, "POST", "/api/v1/appointments", Some(WRITE), Some(body), &[]).await;
                if r.status == StatusCode::CONFLICT {
                    assert_problem(&r, 409);
                }
                r.status.as_u16()
            })
        })
        .collect();
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    assert_eq!(codes.iter().filter(|c| **c == 201).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 409).count(), 99, "{codes:?}");
}

async fn appointment_lifecycle(store: Store, config: Config) {
    let app = app(store, config);
    let patient = new_patient(&app, "Ana Pérez", "+34600111222").await;
    let slots = call(
        &app,
        "GET",
        "/api/v1/slots?specialty=dermatology&from=2026-11-30&to=2026-11-30&part_of_day=afternoon&limit=3",
        Some(READ),
        None,
        &[],
    )
    .await;
    let slots = slots.json.as_array().unwrap().clone();
    assert_eq!(slots.len(), 3);
    assert_eq!(slots[0]["starts_at_local"], "2026-11-30T16:00:00+01:00");
    let hold = call(
        &app,
        "POST",
        "/api/v1/holds",
        Some(WRITE),
        Some(json!({"provider_id": "dr-sanchez", "starts_at": slots[0]["starts_at"]})),
        &[],
    )
    .await;
    assert_eq!(hold.status, StatusCode::CREATED, "{}", hold.json);
    let token = hold.json["token"].as_str().unwrap();
    // Someone else cannot take the held slot…
    let other = new_patient(&app, "Luis Gómez", "+34600333444").await;
    let steal = json!({"patient_id": other, "provider_id": "dr-sanchez", "starts_at": slots[0]["starts_at"]});
    assert_problem(&call(&app, "POST", "/api/v1/appointments", Some(WRITE), Some(steal), &[]).await, 409);
    // …the holder can.
    let body = json!({"patient_id": patient, "provider_id": "dr-sanchez", "starts_at": slots[0]["starts_at"], "hold_token": token, "notes": "mole check"});
    let booked = call(&app, "POST", "/api/v1/appointments", Some(WRITE), Some(body), &[("X-Clinivox-Channel", "phone")]).await;
    assert_eq!(booked.status, StatusCode::CREATED);
    assert_eq!(booked.json["created_channel"], "phone");
    let id = booked.json["id"].as_str().unwrap().to_string();
    let confirmed =
        call(&app, "POST", &format!("/api/v1/appointments/{id}/confirm"), Some(WRITE), None, &[("X-Clinivox-Channel", "sms")]).await;
    assert_eq!(confirmed.json["status"], "confirmed");
    let moved = call(
        &app,
        "POST",
        &format!("/api/v1/appointments/{id}/reschedule"),
        Some(WRITE),
        Some(json!({"starts_at": slots[1]["starts_at"]})),
        &[],
    )
    .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.json);
    assert_eq!(moved.json["starts_at"], slots[1]["starts_at"]);
    let cancelled = call(&app, "POST", &format!("/api/v1/appointments/{id}/cancel"), Some(WRITE), None, &[]).await;
    assert_eq!(cancelled.json["status"], "cancelled");
    assert_problem(&call(&app, "POST", &format!("/api/v1/appointments/{id}/cancel"), Some(WRITE), None, &[]).await, 409);
    assert_problem(&call(&app, "POST", "/api/v1/appointments/missing/confirm", Some(WRITE), None, &[]).await, 404);
    let history = call(&app, "GET", &format!("/api/v1/appointments/{id}/history"), Some(READ), None, &[]).await;
    let actions: Vec<_> = history
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap().to_string(), e["channel"].as_str().unwrap().to_string()))
        .collect();
    let expect = [("book", "phone"), ("confirm", "sms"), ("reschedule", "api"), ("cancel", "api")];
    assert_eq!(actions, expect.map(|(a, c)| (a.to_string(), c.to_string())));
    let day = call(&app, "GET", "/api/v1/appointments?date=2026-11-30", Some(READ), None, &[]).await;
    assert_eq!(day.json.as_array().unwrap().len(), 1);
}

async fn openapi_document_is_generated(store: Store, config: Config) {
    let app = app(store, config);
    let r = call(&app, "GET", "/api/v1/openapi.json", Some(READ), None, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.json;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/reminders",
        "/api/v1/reminders/{id}/reply",
        "/api/v1/jobs",
        "/api/v1/patients",
        "/api/v1/patients/{id}",
        "/api/v1/slots",
        "/api/v1/appointments",
        "/api/v1/appointments/{id}/reschedule",
        "/api/v1/waitlist",
        "/api/v1/calls/{id}",
        "/api/v1/callbacks",
        "/api/v1/callbacks/{id}/done",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing from the OpenAPI document");
    }
    assert!(doc["paths"]["/api/v1/appointments"]["post"]["responses"]["409"].is_object());
    for schema in ["Appointment", "Patient", "Slot", "Problem", "BookRequest"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "schema {schema} missing");
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
}

async fn lists_and_lookups(store: Store, config: Config) {
    let app = app(store, config);
    let patient = new_patient(&app, "Ana Pérez", "+34600111222").await;
    let found = call(&app, "GET", "/api/v1/patients?phone=%2B34%20600%20111%20222", Some(READ), None, &[]).await;
    assert_eq!(found.json[0]["id"], patient.as_str());
    let patched = call(
        &app,
        "PATCH",
        &format!("/api/v1/patients/{patient}"),
        Some(WRITE),
        Some(json!({"national_id": "12345678Z", "preferred_language": "en"})),
        &[],
    )
    .await;
    assert_eq!((patched.json["national_id"].as_str(), patched.json["preferred_language"].as_str()), (Some("12345678Z"), Some("en")));
    let cleared = call(&app, "PATCH", &format!("/api/v1/patients/{patient}"), Some(WRITE), Some(json!({"national_id": null})), &[]).await;
    assert!(cleared.json["national_id"].is_null());
    assert_problem(&call(&app, "GET", "/api/v1/patients/nobody", Some(READ), None, &[]).await, 404);
    let providers = call(&app, "GET", "/api/v1/providers?specialty=general", Some(READ), None, &[]).await;
    assert_eq!(providers.json.as_array().unwrap().len(), 2);

    let entry = json!({"patient_id": patient, "specialty_id": "dermatology", "earliest": "2026-11-24", "latest": "2026-12-04"});
    let added = call(&app, "POST", "/api/v1/waitlist", Some(WRITE), Some(entry), &[]).await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.json);
    let id = added.json["id"].as_str().unwrap();
    assert_eq!(call(&app, "GET", "/api/v1/waitlist?specialty=dermatology", Some(READ), None, &[]).await.json.as_array().unwrap().len(), 1);
    assert_eq!(call(&app, "DELETE", &format!("/api/v1/waitlist/{id}"), Some(WRITE), None, &[]).await.status, StatusCode::NO_CONTENT);
    assert_problem(&call(&app, "DELETE", &format!("/api/v1/waitlist/{id}"), Some(WRITE), None, &[]).await, 404);
    let bad = json!({"patient_id": patient, "specialty_id": "dermatology", "earliest": "2026-12-24", "latest": "2026-12-04"});
    assert_eq!(field(&call(&app, "POST", "/api/v1/waitlist", Some(WRITE), Some(bad), &[]).await), "latest");

    assert_eq!(call(&app, "GET", "/api/v1/calls", Some(READ), None, &[]).await.json, json!([]));
    assert_problem(&call(&app, "GET", "/api/v1/calls/none", Some(READ), None, &[]).await, 404);
}

async fn reminders_and_replies(store: Store, config: Config) {
    let app = app(store, config);
    let patient = new_patient(&app, "Ana Pérez", "+34600111222").await;
    let body = json!({"patient_id": patient, "provider_id": "dr-garcia", "starts_at": SLOT});
    let id = call(&app, "POST", "/api/v1/appointments", Some(WRITE), Some(body), &[]).await.json["id"].as_str().unwrap().to_string();
    let reminder = json!({"appointment_id": id, "channel": "sms", "sent_at": "2026-11-23T07:00:00Z", "external_id": "sms-991"});
    let first = call(&app, "POST", "/api/v1/reminders", Some(WRITE), Some(reminder.clone()), &[]).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.json);
    let again = call(&app, "POST", "/api/v1/reminders", Some(WRITE), Some(reminder), &[]).await;
    assert_eq!((again.status, &again.json["id"]), (StatusCode::OK, &first.json["id"]));
    let bad = json!({"appointment_id": id, "channel": "pigeon", "sent_at": "2026-11-23T07:00:00Z"});
    assert_eq!(field(&call(&app, "POST", "/api/v1/reminders", Some(WRITE), Some(bad), &[]).await), "channel");
    let rid = first.json["id"].as_str().unwrap();
    let reply =
        call(&app, "POST", &format!("/api/v1/reminders/{rid}/reply"), Some(WRITE), Some(json!({"reply": "confirmed", "text": "OK"})), &[])
            .await;
    assert_eq!(reply.json["reply"], "confirmed", "{}", reply.json);
    let a = call(&app, "GET", &format!("/api/v1/appointments/{id}"), Some(READ), None, &[]).await;
    assert_eq!((a.json["status"].as_str(), a.json["updated_channel"].as_str()), (Some("confirmed"), Some("sms")));
    assert_problem(&call(&app, "POST", "/api/v1/reminders/nope/reply", Some(WRITE), Some(json!({"reply": "cancelled"})), &[]).await, 404);
    assert_eq!(call(&app, "GET", "/api/v1/jobs?status=pending", Some(READ), None, &[]).await.json, json!([]));
    let metrics = call(&app, "GET", "/metrics", Some(READ), None, &[]).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.json.as_str().unwrap().to_string();
    assert!(text.contains("# TYPE clinivox_appointments gauge"), "{text}");
    assert!(text.contains("clinivox_appointments{status=\"confirmed\"} 1"), "{text}");
    assert!(!text.contains("Ana"), "no patient data in metrics");
    assert_eq!(field(&call(&app, "GET", "/api/v1/jobs?status=weird", Some(READ), None, &[]).await), "status");
}

async fn callback_requests(store: Store, config: Config) {
    use clinivox::store::{Actor, Channel, NewCallback};
    let app = app(store.clone(), config);
    let assistant = Actor::new("assistant", Channel::Phone);
    let new = |name: &str| NewCallback {
        call_id: None,
        patient_id: None,
        name: name.into(),
        phone: "+34600111222".into(),
        reason: "quiere cambiar su cita".into(),
        language: "es".into(),
        promised: "2026-11-24 08:00".into(),
    };
    let first = store.create_callback(new("Ana Pérez"), &assistant, now()).await.unwrap();
    let second = store.create_callback(new("Luis Gómez"), &assistant, now() + chrono::Duration::minutes(5)).await.unwrap();
    let bad = NewCallback { reason: " ".into(), ..new("X") };
    assert!(matches!(
        store.create_callback(bad, &assistant, now()).await,
        Err(clinivox::store::StoreError::Invalid { field: "reason", .. })
    ));

    let open = call(&app, "GET", "/api/v1/callbacks?status=open", Some(READ), None, &[]).await;
    assert_eq!(open.status, StatusCode::OK, "{}", open.json);
    let names: Vec<&str> = open.json.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Ana Pérez", "Luis Gómez"], "oldest first");
    assert_eq!(open.json[0]["status"], "open");
    assert_eq!(open.json[0]["promised"], "2026-11-24 08:00");
    assert_eq!(open.json[0]["phone"], "+34600111222");

    let done_uri = format!("/api/v1/callbacks/{}/done", first.id);
    assert_problem(&call(&app, "POST", &done_uri, Some(READ), None, &[]).await, 403);
    let done = call(&app, "POST", &done_uri, Some(WRITE), None, &[]).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.json);
    assert_eq!((done.json["status"].as_str(), done.json["done_by"].as_str()), (Some("done"), Some("demo-reception")));
    assert_eq!(done.json["done_at"], "2026-11-23T08:00:00Z");
    // Idempotent: again is the same answer, and one audit entry only.
    let again = call(&app, "POST", &done_uri, Some(WRITE), None, &[]).await;
    assert_eq!((again.status, &again.json), (StatusCode::OK, &done.json));
    let audit = store.audit_log("callback_request", &first.id).await.unwrap();
    assert_eq!(audit.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(), ["create", "done"]);

    let open = call(&app, "GET", "/api/v1/callbacks?status=open", Some(READ), None, &[]).await;
    assert_eq!(open.json.as_array().unwrap().len(), 1);
    assert_eq!(open.json[0]["id"], second.id.as_str());
    let closed = call(&app, "GET", "/api/v1/callbacks?status=done", Some(READ), None, &[]).await;
    assert_eq!(closed.json[0]["id"], first.id.as_str());
    assert_eq!(call(&app, "GET", "/api/v1/callbacks", Some(READ), None, &[]).await.json.as_array().unwrap().len(), 2);

    let r = call(&app, "GET", "/api/v1/callbacks?status=pending", Some(READ), None, &[]).await;
    assert_problem(&r, 422);
    assert_eq!(field(&r), "status");
    assert_problem(&call(&app, "POST", "/api/v1/callbacks/nope/done", Some(WRITE), None, &[]).await, 404);
    assert_problem(&call(&app, "GET", "/api/v1/callbacks", None, None, &[]).await, 401);
}

async fn live_metrics(store: Store, mut config: Config) {
    use clinivox::metrics::{Metrics, TransferResult};
    use std::time::Duration;
    // Several nodes behind one address: each labels its own live series.
    config.node.id = "node-a".into();
    let metrics = Metrics::new();
    let app = app_with(store, config, metrics.clone());
    let _first = metrics.call_started(std::time::Instant::now());
    let second = metrics.call_started(std::time::Instant::now());
    let _third = metrics.call_started(std::time::Instant::now());
    drop(second);
    metrics.transfer(TransferResult::Answered);
    metrics.transfer(TransferResult::Failed);
    metrics.transfer(TransferResult::Failed);
    metrics.set_recognition_queue(4);
    metrics.observe_recognition(Duration::from_millis(400));
    for ms in [200, 900, 1100, 1400, 2500, 7000] {
        metrics.observe_turn_latency(Duration::from_millis(ms));
    }
    let r = call(&app, "GET", "/metrics", Some(READ), None, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let text = r.json.as_str().unwrap().to_string();
    for line in [
        "# TYPE clinivox_active_calls gauge",
        "clinivox_active_calls{node=\"node-a\"} 2",
        "# TYPE clinivox_transfers_total counter",
        "clinivox_transfers_total{node=\"node-a\",result=\"answered\"} 1",
        "clinivox_transfers_total{node=\"node-a\",result=\"failed\"} 2",
        "clinivox_transfers_total{node=\"node-a\",result=\"unreachable\"} 0",
        "clinivox_recognition_queue_depth{node=\"node-a\"} 4",
        "clinivox_recognition_seconds_bucket{node=\"node-a\",le=\"0.25\"} 0",
        "clinivox_recognition_seconds_bucket{node=\"node-a\",le=\"0.5\"} 1",
        "clinivox_recognition_seconds_count{node=\"node-a\"} 1",
        "# TYPE clinivox_turn_latency_seconds histogram",
        "clinivox_turn_latency_seconds_bucket{node=\"node-a\",le=\"0.25\"} 1",
        "clinivox_turn_latency_seconds_bucket{node=\"node-a\",le=\"1\"} 2",
        "clinivox_turn_latency_seconds_bucket{node=\"node-a\",le=\"1.5\"} 4",
        "clinivox_turn_latency_seconds_bucket{node=\"node-a\",le=\"3\"} 5",
        "clinivox_turn_latency_seconds_bucket{node=\"node-a\",le=\"5\"} 5",
        "clinivox_turn_latency_seconds_bucket{node=\"node-a\",le=\"+Inf\"} 6",
        "clinivox_turn_latency_seconds_count{node=\"node-a\"} 6",
        "clinivox_turn_latency_seconds_sum{node=\"node-a\"} 13.1",
        // The database's counts are still there.
        "# TYPE clinivox_calls_total counter",
    ] {
        assert!(text.lines().any(|l| l == line), "no line {line:?} in\n{text}");
    }
}

/// A call's detail shows its recording and appointment; a busy refusal is
/// counted by outcome in /metrics; the OpenAPI document describes both.
async fn call_records_show_links_recordings_and_refusals(store: Store, config: Config) {
    use clinivox::store::NewCall;
    let app = app(store.clone(), config);
    let inbound = |remote: &str| NewCall {
        direction: "inbound".into(),
        remote_number: remote.into(),
        patient_id: None,
        language: Some("es".into()),
        appointment_id: None,
    };
    let recorded = store.start_call(inbound("+34600111222"), now()).await.unwrap();
    store.set_call_recording(&recorded.id, "recordings/x.wav").await.unwrap();
    store.finish_call(&recorded.id, "info", None, None, None, now()).await.unwrap();
    store.record_unanswered_call(inbound("+34600333444"), "busy", now(), now()).await.unwrap();

    let detail = call(&app, "GET", &format!("/api/v1/calls/{}", recorded.id), Some(READ), None, &[]).await;
    assert_eq!(detail.status, StatusCode::OK);
    assert_eq!(detail.json["recording_path"], "recordings/x.wav");
    assert!(detail.json["appointment_id"].is_null());
    let list = call(&app, "GET", "/api/v1/calls", Some(READ), None, &[]).await.json;
    let busy: Vec<&Value> = list.as_array().unwrap().iter().filter(|c| c["outcome"] == "busy").collect();
    assert_eq!(busy.len(), 1, "{list}");
    assert!(busy[0]["ended_at"].is_string() && busy[0]["recording_path"].is_null());

    let text = call(&app, "GET", "/metrics", Some(READ), None, &[]).await.json.as_str().unwrap().to_string();
    assert!(text.contains("clinivox_calls_total{direction=\"inbound\",outcome=\"busy\"} 1"), "{text}");
    let doc = call(&app, "GET", "/api/v1/openapi.json", Some(READ), None, &[]).await.json;
    let schema = &doc["components"]["schemas"]["Call"];
    assert!(schema["properties"]["recording_path"].is_object() && schema["properties"]["appointment_id"].is_object(), "{schema}");
    assert!(schema["properties"]["outcome"]["description"].as_str().is_some_and(|d| d.contains("busy")), "{schema}");
}

/// Every list endpoint takes `limit` (at most 500) and `offset`, and names
/// the next page in a `Link` header; the OpenAPI document says so.
async fn lists_are_paginated(store: Store, config: Config) {
    use clinivox::store::{Actor, Channel, NewCallback};
    let app = app(store.clone(), config);
    let assistant = Actor::new("assistant", Channel::Phone);
    for i in 0..5 {
        let new = NewCallback {
            call_id: None,
            patient_id: None,
            name: format!("Paciente {i}"),
            phone: "+34600111222".into(),
            reason: "quiere cambiar su cita".into(),
            language: "es".into(),
            promised: "2026-11-24 08:00".into(),
        };
        store.create_callback(new, &assistant, now() + chrono::Duration::minutes(i)).await.unwrap();
    }
    // Walk the pages by their Link headers.
    let mut uri = "/api/v1/callbacks?status=open&limit=2".to_string();
    let mut names = Vec::new();
    let mut pages = 0;
    loop {
        let r = call(&app, "GET", &uri, Some(READ), None, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        let page = r.json.as_array().unwrap();
        assert!(page.len() <= 2, "{page:?}");
        names.extend(page.iter().map(|c| c["name"].as_str().unwrap().to_string()));
        pages += 1;
        let Some(link) = r.headers.get(header::LINK) else { break };
        let link = link.to_str().unwrap();
        assert!(link.ends_with(">; rel=\"next\"") && link.contains("status=open"), "{link}");
        uri = link.trim_start_matches('<').split('>').next().unwrap().to_string();
        assert!(pages < 10, "the pages never end");
    }
    assert_eq!(pages, 3);
    assert_eq!(names, (0..5).map(|i| format!("Paciente {i}")).collect::<Vec<_>>(), "each once, oldest first");
    let r = call(&app, "GET", "/api/v1/callbacks?offset=4&limit=2", Some(READ), None, &[]).await;
    assert_eq!(r.json.as_array().unwrap().len(), 1);
    assert!(r.headers.get(header::LINK).is_none());

    // The same parameters everywhere, bounded.
    let patient = new_patient(&app, "Ana Pérez", "+34600111222").await;
    for list in [
        "/api/v1/callbacks?",
        "/api/v1/waitlist?",
        "/api/v1/calls?",
        "/api/v1/jobs?",
        "/api/v1/specialties?",
        "/api/v1/providers?",
        "/api/v1/patients?phone=%2B34600111222&",
        &format!("/api/v1/appointments?patient_id={patient}&"),
        "/api/v1/appointments?date=2026-11-24&",
    ] {
        let r = call(&app, "GET", &format!("{list}limit=501"), Some(READ), None, &[]).await;
        assert_problem(&r, 422);
        assert_eq!(field(&r), "limit", "{list}");
        assert_eq!(field(&call(&app, "GET", &format!("{list}offset=-1"), Some(READ), None, &[]).await), "offset", "{list}");
        let r = call(&app, "GET", &format!("{list}limit=500"), Some(READ), None, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{list}: {}", r.json);
    }
    let specialties = call(&app, "GET", "/api/v1/specialties?limit=3&offset=6", Some(READ), None, &[]).await;
    assert_eq!(specialties.json.as_array().unwrap().len(), 2, "8 specialties: the last page has 2");

    let doc = call(&app, "GET", "/api/v1/openapi.json", Some(READ), None, &[]).await.json;
    for path in [
        "/api/v1/callbacks",
        "/api/v1/waitlist",
        "/api/v1/calls",
        "/api/v1/jobs",
        "/api/v1/specialties",
        "/api/v1/providers",
        "/api/v1/patients",
        "/api/v1/appointments",
        "/api/v1/appointments/{id}/history",
    ] {
        let params: Vec<&str> =
            doc["paths"][path]["get"]["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert!(params.contains(&"limit") && params.contains(&"offset"), "{path}: {params:?}");
        assert!(doc["paths"][path]["get"]["responses"]["200"]["headers"]["link"].is_object(), "{path}: no Link header documented");
    }
}

/// Names and free text without control characters, at most 5 phones, and a
/// body over the limit is a 413; nothing refused is stored.
async fn input_is_bounded(store: Store, config: Config) {
    let app = app(store.clone(), config);
    let post = |body: Value| call(&app, "POST", "/api/v1/patients", Some(WRITE), Some(body), &[]);
    let r = post(json!({"name": "Ana\u{0}Pérez", "phones": ["+34600111222"], "date_of_birth": "1950-05-03"})).await;
    assert_problem(&r, 422);
    assert_eq!(field(&r), "name");
    let r = post(json!({"name": "Ana\u{1b}[2J", "phones": ["+34600111222"], "date_of_birth": "1950-05-03"})).await;
    assert_eq!(field(&r), "name");
    let r = post(json!({"name": "Ana", "phones": ["+34600111222"], "date_of_birth": "1950-05-03", "national_id": "1\u{0}"})).await;
    assert_eq!(field(&r), "national_id");
    let six: Vec<String> = (0..6).map(|i| format!("+3460011122{i}")).collect();
    let r = post(json!({"name": "Ana", "phones": six, "date_of_birth": "1950-05-03"})).await;
    assert_problem(&r, 422);
    assert_eq!(field(&r), "phones");
    let many: Vec<String> = (0..10_000).map(|i| format!("+346{i:08}")).collect();
    let r = post(json!({"name": "Ana", "phones": many, "date_of_birth": "1950-05-03"})).await;
    assert_eq!(field(&r), "phones");
    let phone = clinivox::phone::E164::parse("+34600111222").unwrap();
    assert!(store.patients_by_phone(&phone).await.unwrap().is_empty(), "nothing refused was stored");

    // Five is fine; the same bounds on a change.
    let five: Vec<String> = (0..5).map(|i| format!("+3460011122{i}")).collect();
    let r = post(json!({"name": "Ana Pérez", "phones": five, "date_of_birth": "1950-05-03"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let id = r.json["id"].as_str().unwrap().to_string();
    let uri = format!("/api/v1/patients/{id}");
    let patch = |body: Value| call(&app, "PATCH", &uri, Some(WRITE), Some(body), &[]);
    assert_eq!(field(&patch(json!({"name": "\u{0}"})).await), "name");
    let six: Vec<String> = (0..6).map(|i| format!("+3460011122{i}")).collect();
    assert_eq!(field(&patch(json!({"phones": six})).await), "phones");
    assert_eq!(field(&patch(json!({"name": "x".repeat(201)})).await), "name");
    assert_eq!(store.patient(&id).await.unwrap().name, "Ana Pérez");

    // Free text: lines are fine, NUL is not.
    let book = |notes: &str| {
        let body = json!({"patient_id": id, "provider_id": "dr-garcia", "starts_at": SLOT, "notes": notes});
        call(&app, "POST", "/api/v1/appointments", Some(WRITE), Some(body), &[])
    };
    assert_eq!(field(&book("mole\u{0}check").await), "notes");
    assert_eq!(book("mole check\nleft arm").await.status, StatusCode::CREATED);
    let waitlist =
        json!({"patient_id": id, "specialty_id": "dermatology", "earliest": "2026-11-24", "latest": "2026-12-04", "notes": "\u{7}"});
    assert_eq!(field(&call(&app, "POST", "/api/v1/waitlist", Some(WRITE), Some(waitlist), &[]).await), "notes");

    // Over the body limit: 413 as problem JSON, with or without an Idempotency-Key.
    let huge = json!({"name": "A".repeat(clinivox::api::MAX_BODY), "phones": ["+34600999888"], "date_of_birth": "1950-05-03"});
    assert_problem(&post(huge.clone()).await, 413);
    let r = call(&app, "POST", "/api/v1/patients", Some(WRITE), Some(huge), &[("Idempotency-Key", "huge-1")]).await;
    assert_problem(&r, 413);
}

/// `/metrics` needs a token (a `metrics` one may do nothing else), and the
/// database's counts are read at most every 15 s.
async fn metrics_need_a_token_and_are_cached(store: Store, mut config: Config) {
    use sha2::{Digest, Sha256};
    config.api.tokens.push(clinivox::config::ApiToken {
        name: "prometheus".into(),
        sha256: Sha256::digest(b"scrape-token").into(),
        scope: clinivox::config::Scope::Metrics,
    });
    let (app, clock) = app_and_clock(store, config);
    assert_problem(&call(&app, "GET", "/metrics", None, None, &[]).await, 401);
    assert_problem(&call(&app, "GET", "/metrics", Some("not-a-token"), None, &[]).await, 401);
    let scrape = || async { call(&app, "GET", "/metrics", Some("scrape-token"), None, &[]).await };
    let first = scrape().await;
    assert_eq!(first.status, StatusCode::OK);
    let text = first.json.as_str().unwrap().to_string();
    assert!(text.contains("# TYPE clinivox_appointments gauge"), "{text}");
    let booked = |text: &str| text.lines().any(|l| l == "clinivox_appointments{status=\"booked\"} 1");
    assert!(!booked(&text), "{text}");
    // The metrics token reads nothing else.
    assert_problem(&call(&app, "GET", "/api/v1/specialties", Some("scrape-token"), None, &[]).await, 403);

    let patient = new_patient(&app, "Ana Pérez", "+34600111222").await;
    let body = json!({"patient_id": patient, "provider_id": "dr-garcia", "starts_at": SLOT});
    assert_eq!(call(&app, "POST", "/api/v1/appointments", Some(WRITE), Some(body), &[]).await.status, StatusCode::CREATED);
    clock.advance(chrono::Duration::seconds(14));
    let cached = scrape().await.json.as_str().unwrap().to_string();
    assert!(!booked(&cached), "within 15 s the stored counts come from the cache:\n{cached}");
    clock.advance(chrono::Duration::seconds(2));
    let fresh = scrape().await.json.as_str().unwrap().to_string();
    assert!(booked(&fresh), "after 15 s they are read again:\n{fresh}");
}

/// The real listener on loopback with the given limits; dropping the sender stops it.
mod listener {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use clinivox::config::HttpConfig;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    pub struct Server {
        pub addr: SocketAddr,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<std::io::Result<()>>,
        _dir: tempfile::TempDir,
    }

    impl Server {
        pub async fn start(limits: impl FnOnce(&mut HttpConfig)) -> Server {
            let dir = tempfile::tempdir().unwrap();
            let mut config = clinivox::testing::demo_config();
            limits(&mut config.http);
            let store = clinivox::testing::sqlite_store(dir.path(), &config).await.unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let http = config.http.clone();
            let app = super::app(store, config);
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(async move {
                clinivox::api::server::serve(listener, app, &http, async move {
                    let _ = stopped.await;
                })
                .await
            });
            Server { addr, stop: Some(stop), task, _dir: dir }
        }

        /// Shuts down and waits (bounded) for the listener to finish.
        pub async fn stop(mut self) {
            drop(self.stop.take());
            let done = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
            done.expect("the server stops promptly").unwrap().unwrap();
        }
    }

    /// Everything the server sends until it closes, or None after `within`.
    pub async fn read_until_closed(s: &mut TcpStream, within: Duration) -> Option<String> {
        let mut out = Vec::new();
        match tokio::time::timeout(within, s.read_to_end(&mut out)).await {
            Ok(_) => Some(String::from_utf8_lossy(&out).into_owned()),
            Err(_) => None,
        }
    }

    pub async fn get_healthz(addr: SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        read_until_closed(&mut s, Duration::from_secs(5)).await.expect("an answer")
    }

    fn write_pair(dir: &std::path::Path, name: &str) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string(), "127.0.0.1".to_string()]).unwrap().self_signed(&key).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.ca.pem")), cert.pem()).unwrap();
        cert.der().to_vec()
    }

    /// GET /healthz over TLS trusting `ca`: (status line, the certificate the server showed).
    async fn get_healthz_tls(addr: SocketAddr, ca: &std::path::Path) -> Result<(String, Vec<u8>), String> {
        let trust = clinivox::tls::PeerTrust { ca: Some(ca.to_path_buf()), ..Default::default() };
        let cfg = clinivox::tls::client_config(&trust).map_err(|e| e.to_string())?;
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut s = tokio_rustls::TlsConnector::from(cfg).connect(addr.ip().into(), tcp).await.map_err(|e| e.to_string())?;
        let shown = s.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec()).unwrap_or_default();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        let text = String::from_utf8_lossy(&out).into_owned();
        Ok((text.lines().next().unwrap_or_default().to_string(), shown))
    }

    /// Issue 14: with `tls_cert`/`tls_key` the API is HTTPS with that
    /// certificate; plaintext HTTP gets nothing; a renewed certificate
    /// written over the files is served from the next connection on,
    /// without a restart.
    #[tokio::test]
    async fn https_with_the_configured_certificate_reloaded_when_it_changes() {
        let certs = tempfile::tempdir().unwrap();
        let first = write_pair(certs.path(), "first.example");
        let files = clinivox::tls::TlsFiles { cert: certs.path().join("cert.pem"), key: certs.path().join("key.pem") };
        let server = Server::start(move |h| h.tls = Some(files)).await;
        let (status, shown) = get_healthz_tls(server.addr, &certs.path().join("first.example.ca.pem")).await.expect("HTTPS");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert_eq!(shown, first, "the configured certificate");
        // Plain HTTP to the HTTPS port: no HTTP answer.
        let mut plain = TcpStream::connect(server.addr).await.unwrap();
        plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let answer = read_until_closed(&mut plain, Duration::from_secs(12)).await.unwrap_or_default();
        assert!(!answer.starts_with("HTTP/1.1 200"), "plaintext was served: {answer:?}");
        // Renewal: new files; the check runs at most once a second.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let second = write_pair(certs.path(), "second.example");
        let (status, shown) = get_healthz_tls(server.addr, &certs.path().join("second.example.ca.pem")).await.expect("HTTPS after renewal");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert_eq!(shown, second, "the renewed certificate, without a restart");
        assert!(get_healthz_tls(server.addr, &certs.path().join("first.example.ca.pem")).await.is_err(), "the old certificate is gone");
        server.stop().await;
    }

    /// A client that never finishes its headers (slow-loris), and one that
    /// sends nothing, are cut off after the header timeout; others are served.
    #[tokio::test]
    async fn slow_headers_are_cut_off() {
        let server = Server::start(|h| h.header_read_timeout = Duration::from_millis(300)).await;
        let start = Instant::now();
        let mut slow = TcpStream::connect(server.addr).await.unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Never-Ends: aaaa").await.unwrap();
        let mut silent = TcpStream::connect(server.addr).await.unwrap();
        assert!(read_until_closed(&mut slow, Duration::from_secs(5)).await.is_some(), "the slow client was never cut off");
        assert!(read_until_closed(&mut silent, Duration::from_secs(5)).await.is_some(), "the silent client was never cut off");
        assert!(start.elapsed() >= Duration::from_millis(250), "cut off after the timeout, not before: {:?}", start.elapsed());
        assert!(get_healthz(server.addr).await.starts_with("HTTP/1.1 200"));
        server.stop().await;
    }

    /// A body that never arrives gets a 408 problem after the request timeout.
    #[tokio::test]
    async fn slow_body_gets_408() {
        let server = Server::start(|h| h.request_timeout = Duration::from_millis(300)).await;
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        let head = format!(
            "POST /api/v1/patients HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"na",
            super::WRITE
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let answer = read_until_closed(&mut s, Duration::from_secs(5)).await.expect("the request was never timed out");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("application/problem+json"), "{answer}");
        server.stop().await;
    }

    /// Past `max_connections` nothing more is accepted until a connection
    /// ends; then the waiting client is served. Shutdown still works.
    #[tokio::test]
    async fn connections_are_limited() {
        let server = Server::start(|h| {
            h.max_connections = 2;
            h.header_read_timeout = Duration::from_secs(30);
        })
        .await;
        let first = TcpStream::connect(server.addr).await.unwrap();
        let _second = TcpStream::connect(server.addr).await.unwrap();
        // Both are accepted and now hold the two slots.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut third = TcpStream::connect(server.addr).await.unwrap();
        third.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        assert_eq!(read_until_closed(&mut third, Duration::from_millis(700)).await, None, "a third connection was served");
        drop(first);
        let answer = read_until_closed(&mut third, Duration::from_secs(5)).await.expect("served once a slot is free");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        server.stop().await;
    }
}

/// Reads of a patient's data are logged with the token's name (never the
/// phone searched for); the access log and the export need a write token;
/// the export holds the call with its transcript and recording (the zip
/// carries the WAV); erasure leaves no identifier in any table, deletes the
/// recording, and a second erasure is a 410.
async fn subject_rights_and_the_access_log(store: Store, config: Config) {
    use clinivox::store::{NewCall, NewTurn};
    let app = app(store.clone(), config);
    let (name, phone) = ("Leonor Olvido Sanz", "+34622000111");
    let body = json!({"name": name, "phones": [phone], "date_of_birth": "1944-08-09", "national_id": "87654321X"});
    let r = call(&app, "POST", "/api/v1/patients", Some(WRITE), Some(body), &[]).await;
    let id = r.json["id"].as_str().unwrap().to_string();
    let other = new_patient(&app, "Marta Sigue Aquí", "+34622000999").await;
    let booked = json!({"patient_id": id, "provider_id": "dr-garcia", "starts_at": SLOT});
    assert_eq!(call(&app, "POST", "/api/v1/appointments", Some(WRITE), Some(booked), &[]).await.status, StatusCode::CREATED);
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("c.wav");
    std::fs::write(&wav, b"RIFF-leonor").unwrap();
    let new = NewCall {
        direction: "inbound".into(),
        remote_number: phone.into(),
        patient_id: Some(id.clone()),
        language: None,
        appointment_id: None,
    };
    let c = store.start_call(new, now()).await.unwrap();
    let turn = NewTurn { speaker: "caller".into(), text: format!("Soy {name}"), confidence: None, intent: None, latency_ms: None };
    store.add_turn(&c.id, turn, now()).await.unwrap();
    store.finish_call(&c.id, "booked", Some(&id), None, None, now()).await.unwrap();
    store.set_call_recording(&c.id, &wav.display().to_string()).await.unwrap();

    let encoded = phone.replace('+', "%2B");
    for uri in [
        format!("/api/v1/patients/{id}"),
        format!("/api/v1/patients?phone={encoded}"),
        format!("/api/v1/appointments?patient_id={id}"),
        format!("/api/v1/calls/{}", c.id),
    ] {
        assert_eq!(call(&app, "GET", &uri, Some(READ), None, &[]).await.status, StatusCode::OK, "{uri}");
    }
    assert_eq!(call(&app, "GET", &format!("/api/v1/patients/{other}"), Some(WRITE), None, &[]).await.status, StatusCode::OK);
    let log_uri = format!("/api/v1/patients/{id}/access-log");
    assert_problem(&call(&app, "GET", &log_uri, Some(READ), None, &[]).await, 403);
    let log = call(&app, "GET", &log_uri, Some(WRITE), None, &[]).await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.json);
    let seen: Vec<(&str, &str)> =
        log.json.as_array().unwrap().iter().map(|e| (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap())).collect();
    assert_eq!(
        seen,
        [
            ("demo-reader", "GET /patients/{id}"),
            ("demo-reader", "GET /patients?phone"),
            ("demo-reader", "GET /appointments?patient_id"),
            ("demo-reader", "GET /calls/{id}"),
        ],
        "{}",
        log.json
    );
    assert_eq!(log.json[3]["resource_id"], c.id.as_str());
    assert!(!log.json.to_string().contains(&phone[1..]), "no searched number in the log");

    let export_uri = format!("/api/v1/patients/{id}/export");
    assert_problem(&call(&app, "GET", &export_uri, Some(READ), None, &[]).await, 403);
    let doc = call(&app, "GET", &export_uri, Some(WRITE), None, &[]).await;
    assert_eq!(doc.status, StatusCode::OK, "{}", doc.json);
    assert_eq!((doc.json["patient"]["name"].as_str(), doc.json["appointments"].as_array().unwrap().len()), (Some(name), 1));
    assert_eq!(doc.json["calls"][0]["turns"][0]["text"], format!("Soy {name}"));
    assert_eq!(doc.json["calls"][0]["recording_path"], wav.display().to_string());
    assert_eq!(doc.json["access_log"].as_array().unwrap().len(), 4);
    let zip = Request::builder()
        .uri(format!("{export_uri}?format=zip"))
        .header(header::AUTHORIZATION, format!("Bearer {WRITE}"))
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(zip).await.unwrap();
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/zip");
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let mut audio = Vec::new();
    std::io::Read::read_to_end(&mut archive.by_name(&format!("recordings/{}.wav", c.id)).unwrap(), &mut audio).unwrap();
    assert_eq!(audio, b"RIFF-leonor");
    assert!(archive.by_name("export.json").is_ok());
    let log = call(&app, "GET", &log_uri, Some(WRITE), None, &[]).await.json;
    let exports: Vec<&str> = log.as_array().unwrap().iter().skip(4).map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(exports, ["GET /patients/{id}/export", "GET /patients/{id}/export?format"], "{log}");

    let erase_uri = format!("/api/v1/patients/{id}/erase");
    assert_problem(&call(&app, "POST", &erase_uri, Some(READ), None, &[]).await, 403);
    let erased = call(&app, "POST", &erase_uri, Some(WRITE), None, &[]).await;
    assert_eq!(erased.status, StatusCode::OK, "{}", erased.json);
    assert_eq!((erased.json["appointments_cancelled"].as_u64(), erased.json["recordings_deleted"].as_u64()), (Some(1), Some(1)));
    assert!(!erased.json.to_string().contains(name));
    assert!(!wav.exists());
    let needles = [name, phone, "1944-08-09", "87654321X"].map(String::from);
    assert_eq!(store.find_text(&needles).await.unwrap(), Vec::new());
    assert_problem(&call(&app, "POST", &erase_uri, Some(WRITE), None, &[]).await, 410);
    assert_problem(&call(&app, "POST", "/api/v1/patients/nobody/erase", Some(WRITE), None, &[]).await, 404);
    assert_problem(&call(&app, "GET", &format!("/api/v1/patients/{id}"), Some(READ), None, &[]).await, 410);
    assert_problem(&call(&app, "GET", &export_uri, Some(WRITE), None, &[]).await, 410);
    assert_eq!(call(&app, "GET", &log_uri, Some(WRITE), None, &[]).await.status, StatusCode::OK, "the log outlives the erasure");
    let slots = call(&app, "GET", "/api/v1/slots?provider=dr-garcia&from=2026-11-24&to=2026-11-24", Some(READ), None, &[]).await.json;
    assert!(slots.as_array().unwrap().iter().any(|s| s["starts_at"] == "2026-11-24T08:00:00Z"), "the slot is free again");
}

#[path = "api/fhir.rs"]
mod fhir;
use fhir::fhir_scheduling_round_trip;

#[path = "api/console.rs"]
mod console;
use console::{
    console_calls_in_progress_and_accounts, console_kpis_count_what_the_store_holds, console_kpis_match_a_seeded_history,
    console_logins_and_sessions, console_pages_show_the_day_and_log_who_saw_it, console_record_pages,
};

#[path = "api/crash.rs"]
mod crash;

#[path = "api/browser.rs"]
mod browser;

/// A baresip softphone, for the browser test's live call.
#[path = "support/phone.rs"]
#[allow(dead_code)]
mod phone;

/// A provider's feed at its secret URL: the same 404 for feeds off, a
/// wrong token or another provider's token; events without the patient
/// unless the clinic allows names, and then the read is in the access log.
async fn calendar_feeds(store: Store, mut config: Config) {
    use clinivox::api::calendar::feed_path;
    let key = "a calendar key of at least 32 characters".to_string();
    let path = feed_path(&key, "dr-garcia");
    let off = app(store.clone(), config.clone());
    assert_problem(&call(&off, "GET", &path, None, None, &[]).await, 404);

    config.calendar = Some(clinivox::config::CalendarConfig { key: key.clone(), patient_names: false, days_back: 14, days_ahead: 120 });
    let app_plain = app(store.clone(), config.clone());
    let patient = new_patient(&app_plain, "Rosalía Calendario Ruiz", "+34622000333").await;
    let body = json!({"patient_id": patient, "provider_id": "dr-garcia", "starts_at": SLOT});
    let booked = call(&app_plain, "POST", "/api/v1/appointments", Some(WRITE), Some(body), &[]).await;
    assert_eq!(booked.status, StatusCode::CREATED, "{}", booked.json);
    let id = booked.json["id"].as_str().unwrap().to_string();

    let wrong = path.replace(".ics", "0.ics");
    assert_problem(&call(&app_plain, "GET", &wrong, None, None, &[]).await, 404);
    let borrowed = feed_path(&key, "dr-sanchez").replace("dr-sanchez", "dr-garcia");
    assert_problem(&call(&app_plain, "GET", &borrowed, None, None, &[]).await, 404);
    assert_problem(&call(&app_plain, "GET", &feed_path(&key, "dr-nobody"), None, None, &[]).await, 404);

    let feed = call(&app_plain, "GET", &path, None, None, &[]).await;
    assert_eq!(feed.status, StatusCode::OK);
    assert_eq!(feed.content_type, "text/calendar; charset=utf-8");
    let text = feed.json.as_str().expect("text").to_string();
    assert!(text.contains(&format!("UID:{id}@clinivox")) && text.contains("DTSTART:20261124T080000Z"), "{text}");
    assert!(!text.contains("Rosalía"), "no patient name unless allowed: {text}");
    // Read back by a parser: exactly the provider's appointments.
    use icalendar::{CalendarComponent, CalendarDateTime, Component, DatePerhapsTime};
    let parsed: icalendar::Calendar = text.parse().expect("the feed parses as iCalendar");
    let events: Vec<_> = parsed
        .components
        .iter()
        .filter_map(|c| match c {
            CalendarComponent::Event(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(events.len(), 1, "{text}");
    assert_eq!(events[0].get_uid(), Some(format!("{id}@clinivox").as_str()));
    let start: DateTime<Utc> = SLOT.parse().unwrap();
    assert_eq!(events[0].get_start(), Some(DatePerhapsTime::DateTime(CalendarDateTime::Utc(start))));
    let log = call(&app_plain, "GET", &format!("/api/v1/patients/{patient}/access-log"), Some(WRITE), None, &[]).await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.json);
    assert!(!log.json.to_string().contains("calendar"), "no patient data read: {}", log.json);

    config.calendar.as_mut().unwrap().patient_names = true;
    let app_names = app(store.clone(), config);
    let feed = call(&app_names, "GET", &path, None, None, &[]).await;
    assert!(feed.json.as_str().expect("text").contains("Rosalía Calendario Ruiz"), "{}", feed.json);
    let log = call(&app_names, "GET", &format!("/api/v1/patients/{patient}/access-log"), Some(WRITE), None, &[]).await;
    assert!(log.json.to_string().contains("calendar:dr-garcia"), "the feed's read is logged: {}", log.json);
}
