//! The FHIR R4 facade (issue 20): a scheduling system's round trip — find a
//! free Slot, create an Appointment on it, see the Slot busy, be refused a
//! second one with 409 and an OperationOutcome, confirm, move and cancel
//! through PUT — and every resource it answered validated with the
//! reference Python models (`fhir.resources`, R4B), installed from PyPI
//! into the test cache on first use.

use std::path::PathBuf;
use std::process::Command;

use axum::http::StatusCode;
use clinivox::config::Config;
use clinivox::store::Store;
use serde_json::{json, Value};

use super::{app, call, new_patient, Reply, READ, WRITE};

const FHIR: &str = "application/fhir+json";

fn resources(r: &Reply, out: &mut Vec<Value>) {
    assert_eq!(r.content_type, FHIR, "{}", r.json);
    if r.json["resourceType"] == "Bundle" {
        for e in r.json["entry"].as_array().into_iter().flatten() {
            out.push(e["resource"].clone());
        }
    }
    out.push(r.json.clone());
}

fn outcome(r: &Reply, status: u16) {
    assert_eq!(r.status.as_u16(), status, "{}", r.json);
    assert_eq!(r.json["resourceType"], "OperationOutcome", "{}", r.json);
    assert_eq!(r.content_type, FHIR);
}

pub async fn fhir_scheduling_round_trip(store: Store, config: Config) {
    let app = app(store, config);
    let mut seen = Vec::new();
    // What the server says it does, exactly.
    let meta = call(&app, "GET", "/fhir/r4/metadata", None, None, &[]).await;
    assert_eq!(meta.status, StatusCode::OK);
    resources(&meta, &mut seen);
    let types: Vec<&str> = meta.json["rest"][0]["resource"].as_array().unwrap().iter().map(|r| r["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["Patient", "Practitioner", "HealthcareService", "Schedule", "Slot", "Appointment"]);
    // Tokens as on /api/v1.
    outcome(&call(&app, "GET", "/fhir/r4/Practitioner", None, None, &[]).await, 401);
    for path in [
        "/fhir/r4/Practitioner",
        "/fhir/r4/Practitioner/dr-garcia",
        "/fhir/r4/HealthcareService",
        "/fhir/r4/Schedule?actor=Practitioner/dr-garcia",
    ] {
        let r = call(&app, "GET", path, Some(READ), None, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.json);
        resources(&r, &mut seen);
    }
    outcome(&call(&app, "GET", "/fhir/r4/Practitioner/dr-nobody", Some(READ), None, &[]).await, 404);
    outcome(&call(&app, "GET", "/fhir/r4/Slot?colour=blue", Some(READ), None, &[]).await, 422);

    let patient = new_patient(&app, "Rosa Fhir", "+34600555101").await;
    let other = new_patient(&app, "Tomás Fhir", "+34600555102").await;
    for q in ["telecom=phone%7C%2B34600555101", "birthdate=1950-05-03", &format!("identifier=urn:clinivox:patient%7C{patient}")] {
        let r = call(&app, "GET", &format!("/fhir/r4/Patient?{q}"), Some(READ), None, &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.json);
        let ids: Vec<&str> = r.json["entry"].as_array().unwrap().iter().map(|e| e["resource"]["id"].as_str().unwrap()).collect();
        assert!(ids.contains(&patient.as_str()), "{q}: {ids:?}");
        resources(&r, &mut seen);
    }
    outcome(&call(&app, "GET", "/fhir/r4/Patient", Some(READ), None, &[]).await, 422);

    // A free slot of Dra. García on Tuesday.
    let free =
        call(&app, "GET", "/fhir/r4/Slot?schedule=Schedule/dr-garcia&start=2026-11-24&status=free&_count=3", Some(READ), None, &[]).await;
    assert_eq!(free.status, StatusCode::OK, "{}", free.json);
    resources(&free, &mut seen);
    let slot = free.json["entry"][0]["resource"].clone();
    assert_eq!(slot["status"], "free");
    let slot_ref = format!("Slot/{}", slot["id"].as_str().unwrap());
    let book = |who: &str| {
        json!({"resourceType": "Appointment", "status": "booked", "slot": [{"reference": slot_ref}],
               "participant": [{"actor": {"reference": format!("Patient/{who}")}, "status": "needs-action"}]})
    };
    outcome(&call(&app, "POST", "/fhir/r4/Appointment", Some(READ), Some(book(&patient)), &[]).await, 403);
    let created = call(&app, "POST", "/fhir/r4/Appointment", Some(WRITE), Some(book(&patient)), &[]).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    resources(&created, &mut seen);
    let id = created.json["id"].as_str().unwrap().to_string();
    assert_eq!(created.headers["location"], format!("Appointment/{id}").as_str());
    assert_eq!((created.json["start"].clone(), created.json["status"].clone()), (slot["start"].clone(), json!("booked")));
    // The slot is busy now, and not free.
    let busy = call(&app, "GET", "/fhir/r4/Slot?schedule=Schedule/dr-garcia&start=2026-11-24&status=busy", Some(READ), None, &[]).await;
    resources(&busy, &mut seen);
    assert!(busy.json["entry"].as_array().unwrap().iter().any(|e| e["resource"]["id"] == slot["id"]), "{}", busy.json);
    let again = call(&app, "GET", "/fhir/r4/Slot?schedule=Schedule/dr-garcia&start=2026-11-24&status=free", Some(READ), None, &[]).await;
    assert!(!again.json["entry"].as_array().unwrap().iter().any(|e| e["resource"]["id"] == slot["id"]));
    // A second booking of it: 409.
    let second = call(&app, "POST", "/fhir/r4/Appointment", Some(WRITE), Some(book(&other)), &[]).await;
    outcome(&second, 409);
    resources(&second, &mut seen);

    // Confirm (the patient accepts), move to the next free slot, cancel.
    let mut a = call(&app, "GET", &format!("/fhir/r4/Appointment/{id}"), Some(READ), None, &[]).await.json;
    a["participant"][0]["status"] = json!("accepted");
    let confirmed = call(&app, "PUT", &format!("/fhir/r4/Appointment/{id}"), Some(WRITE), Some(a.clone()), &[]).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.json);
    assert_eq!(confirmed.json["participant"][0]["status"], "accepted");
    let next = free.json["entry"][1]["resource"]["start"].clone();
    let mut moved = confirmed.json.clone();
    moved["start"] = next.clone();
    moved.as_object_mut().unwrap().remove("slot");
    let moved = call(&app, "PUT", &format!("/fhir/r4/Appointment/{id}"), Some(WRITE), Some(moved), &[]).await;
    assert_eq!((moved.status, moved.json["start"].clone()), (StatusCode::OK, next), "{}", moved.json);
    let mut cancel = moved.json.clone();
    cancel["status"] = json!("cancelled");
    let cancelled = call(&app, "PUT", &format!("/fhir/r4/Appointment/{id}"), Some(WRITE), Some(cancel), &[]).await;
    assert_eq!(cancelled.json["status"], "cancelled", "{}", cancelled.json);
    resources(&cancelled, &mut seen);
    let mine = call(&app, "GET", &format!("/fhir/r4/Appointment?patient=Patient/{patient}"), Some(READ), None, &[]).await;
    assert_eq!(mine.json["total"], 1);
    resources(&mine, &mut seen);
    let read = call(&app, "GET", &format!("/fhir/r4/Patient/{patient}"), Some(READ), None, &[]).await;
    resources(&read, &mut seen);
    // Patient reads through FHIR are in the patient's access log.
    let log = call(&app, "GET", &format!("/api/v1/patients/{patient}/access-log"), Some(WRITE), None, &[]).await;
    let actions: Vec<&str> = log.json.as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.iter().any(|a| a.starts_with("GET /fhir/r4/Patient")), "{actions:?}");
    assert!(actions.iter().any(|a| a.starts_with("GET /fhir/r4/Appointment")), "{actions:?}");

    validate(&seen);
}

/// Every resource through `fhir.resources`' R4B models.
fn validate(resources: &[Value]) {
    let cache = std::env::var_os("CLINIVOX_TEST_CACHE").map(PathBuf::from).unwrap_or_else(|| std::env::temp_dir().join("clinivox-test"));
    let lib = cache.join("python-fhir-8.0.0");
    if !lib.join("fhir").join("resources").exists() {
        let out = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target"])
            .arg(&lib)
            .arg("fhir.resources==8.0.0")
            .output()
            .expect("python3 runs");
        assert!(out.status.success(), "installing fhir.resources from PyPI: {}", String::from_utf8_lossy(&out.stderr));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("resources.json");
    std::fs::write(&file, serde_json::to_string(resources).unwrap()).unwrap();
    let script = r#"
import json, sys
from fhir.resources.R4B import get_fhir_model_class
bad = 0
kinds = set()
for r in json.load(open(sys.argv[1])):
    kinds.add(r["resourceType"])
    try:
        get_fhir_model_class(r["resourceType"]).model_validate(r)
    except Exception as e:
        bad += 1
        print(r["resourceType"], r.get("id"), e)
print(" ".join(sorted(kinds)))
sys.exit(1 if bad else 0)
"#;
    let out = Command::new("python3").arg("-c").arg(script).arg(&file).env("PYTHONPATH", &lib).output().expect("python3 runs");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "FHIR validation failed:\n{said}{}", String::from_utf8_lossy(&out.stderr));
    for kind in [
        "Appointment",
        "Bundle",
        "CapabilityStatement",
        "HealthcareService",
        "OperationOutcome",
        "Patient",
        "Practitioner",
        "Schedule",
        "Slot",
    ] {
        assert!(said.contains(kind), "{kind} was validated: {said}");
    }
}
