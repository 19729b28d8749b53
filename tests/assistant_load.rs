//! Ten callers at once, in-process (`clinivox::bench::service`): ten new
//! patients, each phoning from their own number, all asking with the
//! keypad for the first free general-medicine slot at the same moment.
//! Every call must end booked, one appointment per patient, and no
//! provider may have two appointments that overlap.
//!
//! Keys only, so Whisper has nothing to recognise, but the service still
//! loads the base model (CLINIVOX_TEST_MODELS=1, cached like
//! tests/assistant_e2e.rs) and speaks with espeak-ng.
#![cfg(feature = "whisper")]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use clinivox::bench::caller::{Caller, Dial};
use clinivox::bench::service::{Service, ServiceOptions};
use clinivox::phone::E164;
use clinivox::store::{Actor, Appointment, AppointmentStatus, Channel, NewPatient, Store};

const CALLERS: usize = 10;
const CLINIC_NUMBER: &str = "+34911234567";
/// Generous: ten calls share two cores with whatever else runs.
const LIMIT: Duration = Duration::from_secs(90);

fn cache_root() -> PathBuf {
    std::env::var_os("CLINIVOX_TEST_CACHE").map(PathBuf::from).unwrap_or_else(|| std::env::temp_dir().join("clinivox-speech-test"))
}

#[derive(Clone)]
struct Patient {
    id: String,
    phone: String,
    /// The date of birth as the keypad takes it: DDMMYYYY.
    dob_keys: String,
}

async fn new_patients(store: &Store) -> Vec<Patient> {
    let names = [
        "Ana Beltrán",
        "Luis Cano",
        "Marta Díaz",
        "Pedro Esteban",
        "Rosa Fuentes",
        "Jorge Gil",
        "Elena Hidalgo",
        "Raúl Iglesias",
        "Sara Jiménez",
        "Iván Lorenzo",
    ];
    let actor = Actor::new("load-test", Channel::Staff);
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate().take(CALLERS) {
        let phone = format!("+3460077{:04}", 7000 + i);
        let dob = NaiveDate::from_ymd_opt(1960 + i as i32, 1 + i as u32, 10 + i as u32).expect("valid date");
        let new = NewPatient {
            name: name.to_string(),
            phones: vec![E164::parse(&phone).expect("valid E.164")],
            date_of_birth: dob,
            national_id: None,
            preferred_language: "es".into(),
            contact_consent: true,
        };
        let p = store.create_patient(new, &actor, chrono::Utc::now()).await.expect("patient created");
        out.push(Patient { id: p.id, phone, dob_keys: dob.format("%d%m%Y").to_string() });
    }
    out
}

/// One caller's whole call, as in tests/assistant_e2e.rs but hearing every
/// prompt out before pressing (robust when ten calls share two cores): the
/// greeting, 1 = book, the date of birth, 1 = general medicine, 1 = the
/// first free slot, 1 = the first offer, 1 = yes; then hang up after
/// "anything else?".
async fn book_by_keypad(service: std::net::SocketAddr, p: Patient, n: usize) -> Result<(), String> {
    let dial = Dial {
        service,
        from: p.phone.clone(),
        to: CLINIC_NUMBER.into(),
        call_id: format!("load-{n}"),
        answer_within: Duration::from_secs(120),
    };
    let mut c = Caller::call(dial).await.map_err(|e| format!("caller {n}: {e}"))?;
    c.reply_started(0, LIMIT).await.map_err(|e| format!("caller {n}, greeting: {e}"))?;
    c.reply(0, Duration::from_millis(1500), LIMIT).await;
    for (keys, what) in
        [("1", "book"), (p.dob_keys.as_str(), "date of birth"), ("1", "specialty"), ("1", "when"), ("1", "offer"), ("1", "yes")]
    {
        let mark = c.heard_len();
        c.keys(keys).map_err(|e| format!("caller {n}, {what}: {e}"))?;
        c.reply_started(mark, LIMIT).await.map_err(|e| format!("caller {n}, {what}: {e}"))?;
        c.reply(mark, Duration::from_millis(1200), LIMIT).await;
    }
    if !c.hung_up() {
        c.bye().await.map_err(|e| format!("caller {n}, bye: {e}"))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(clinivox_test_models), ignore = "set CLINIVOX_TEST_MODELS=1")]
async fn ten_simultaneous_keypad_callers_all_book_and_no_slot_is_booked_twice() {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "clinivox=warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    let root = cache_root();
    let options = ServiceOptions {
        model: clinivox::speech::models::DEFAULT_MODEL.into(),
        models_dir: root.join("models"),
        cache_dir: root.join("cache"),
        language: None,
        // Room for all ten: this test is about booking, not admission.
        max_active: CALLERS + 2,
        max_recognition_queue: 16,
        rtp_ports: (34000, 34999),
    };
    let service = Service::start(&options).await.expect("service starts");
    let store = service.store.clone();
    let patients = new_patients(&store).await;
    let began = Instant::now();

    let calls: Vec<_> = patients.iter().enumerate().map(|(n, p)| tokio::spawn(book_by_keypad(service.sip, p.clone(), n))).collect();
    let mut results = Vec::new();
    for c in calls {
        results.push(c.await.expect("caller task"));
    }
    eprintln!("{CALLERS} calls took {:?}", began.elapsed());
    tokio::time::sleep(Duration::from_millis(1500)).await; // the last call records end

    let calls = store.calls(100).await.expect("calls listed");
    let mut booked_by = BTreeMap::new();
    for (p, r) in patients.iter().zip(&results) {
        let call = calls.iter().find(|c| c.remote_number == p.phone).unwrap_or_else(|| panic!("no call recorded from {}: {r:?}", p.phone));
        let d = store.call(&call.id).await.expect("call detail");
        if d.call.outcome.as_deref() != Some("booked") {
            for t in &d.turns {
                eprintln!("  {} {:>3} {:<9} {:?}", p.phone, t.seq, t.speaker, t.text);
            }
        }
        assert_eq!(d.call.outcome.as_deref(), Some("booked"), "{}: {r:?} {:?}", p.phone, d.call);
        // All of them, not only upcoming: the first free slot may start while this test runs.
        let mine: Vec<Appointment> = store
            .appointments_for_patient(&p.id, false, chrono::Utc::now())
            .await
            .expect("appointments")
            .into_iter()
            .filter(|a| matches!(a.status, AppointmentStatus::Booked | AppointmentStatus::Confirmed))
            .collect();
        assert_eq!(mine.len(), 1, "one appointment for {}: {mine:?}", p.phone);
        booked_by.insert(p.id.clone(), mine[0].clone());
    }

    // No provider has two live appointments that overlap, among everything
    // on the days these bookings fell on (the demo's own appointments too).
    let mut days: Vec<NaiveDate> =
        booked_by.values().map(|a| a.starts_at.with_timezone(&service.config.clinic.timezone).date_naive()).collect();
    days.sort();
    days.dedup();
    let mut live: Vec<Appointment> = Vec::new();
    for d in days {
        live.extend(
            store
                .appointments_on(d)
                .await
                .expect("appointments on the day")
                .into_iter()
                .filter(|a| matches!(a.status, AppointmentStatus::Booked | AppointmentStatus::Confirmed)),
        );
    }
    for (i, a) in live.iter().enumerate() {
        for b in &live[i + 1..] {
            let overlap = a.provider_id == b.provider_id && a.starts_at < b.ends_at && b.starts_at < a.ends_at;
            assert!(!overlap, "two appointments overlap for {}: {a:?} and {b:?}", a.provider_id);
        }
    }
    let mut slots: Vec<String> = booked_by.values().map(|a| format!("{} {}", a.provider_id, a.starts_at_local)).collect();
    slots.sort();
    eprintln!("booked: {slots:#?}");
    assert_eq!(slots.len(), CALLERS);
    service.stop().await.expect("service stops");
}
