//! Escalation calls end to end, inside a loopback-only network namespace
//! (`unshare -n`: this test binary runs itself again in one): the whole
//! service (`app::run`, demo clinic, temporary SQLite store, the voice
//! assistant with the Whisper base model) with a [`ManualClock`] for the
//! scheduler, and SIPp on 127.0.0.1:5080 as the carrier trunk, demanding
//! digest authentication before it passes the call to the "patient".
//!
//! - busy: the trunk answers 486; the attempt is stored as `busy` and the
//!   next one planned at the policy's time (the afternoon, 3 h later at least).
//! - confirms: the patient answers (SIPp streams silence) and replies on the
//!   keypad (SIP INFO): it is them, their
//!   date of birth, 1 to confirm; the appointment becomes confirmed, the job
//!   is done and the call is recorded as outbound. Spoken answers are not
//!   used: Whisper base on espeak audio misheard "Sí, soy yo" ("C. Soy López,
//!   Dr. Sergio."), "¿Sí?" ("C C C …"), and took 10–15 s per turn on a
//!   loaded machine.
//!
//! - voicemail: an answering machine's long greeting and beep (espeak-ng and
//!   a 1 kHz tone); the conversation stops, a short message is left after the
//!   beep, the attempt is stored as `voicemail` and retried in the afternoon.
//!
//! - by voice, with real peers: kamailio as the trunk and baresip as the
//!   patient's phone, answering with synthesized Spanish.
//!
//! Needs sipp, espeak-ng, `unshare -n` and CLINIVOX_TEST_MODELS=1 (and
//! kamailio and baresip for the spoken test).
#![cfg(feature = "whisper")]

#[path = "support/call_record.rs"]
mod call_record;
#[path = "sip/common.rs"]
mod common;
#[path = "support/phone.rs"]
mod phone;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Europe::Madrid;
use clinivox::clock::{Clock, ManualClock};
use clinivox::phone::E164;
use clinivox::speech::fair_queue::CallKey;
use clinivox::speech::pool::{PoolConfig, RecognitionPool, Request};
use clinivox::speech::tts::{Espeak, EspeakConfig, SpeechEngine, RATE};
use clinivox::store::*;
use common::{assistant_config, cache_root, demo_toml_on_udp, have, rerun_isolated, Peer};
use phone::{utterance, Phone};

/// Set in the copy of this binary that runs inside the namespace.
const INSIDE: &str = "CLINIVOX_ESCALATION_E2E_INSIDE";
const PATIENT_PHONE: &str = "+34600999888";

fn scenario(name: &str) -> String {
    format!("{}/tests/sip/scenarios/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `test` (this file's test of that name) again inside `unshare -n`.
fn isolated(test: &str) {
    rerun_isolated(INSIDE, test, 400);
}

/// The demo clinic on 127.0.0.1:5060, its trunk's proxy SIPp on :5080.
fn config(dir: &Path) -> clinivox::config::Config {
    let text = demo_toml_on_udp(dir).replace(
        "cidrs = [\"127.0.0.0/8\", \"::1/128\"]",
        "cidrs = [\"127.0.0.0/8\", \"::1/128\"]\nproxy = \"127.0.0.1:5080\"\nusername = \"clinic\"\npassword = \"trunkpw\"",
    );
    assert!(text.contains("proxy = \"127.0.0.1:5080\""), "the demo's trunk changed; update this test");
    assistant_config(&text, dir)
}

fn local(d: NaiveDate, h: u32) -> DateTime<Utc> {
    Madrid.from_local_datetime(&d.and_hms_opt(h, 0, 0).unwrap()).single().expect("not a DST gap").with_timezone(&Utc)
}

/// Next Monday (after today), 10:00 in Madrid: the scheduler's "now".
fn next_monday() -> NaiveDate {
    let mut d = Utc::now().date_naive().succ_opt().unwrap();
    while d.weekday() != Weekday::Mon {
        d = d.succ_opt().unwrap();
    }
    d
}

/// José, an appointment that Thursday at 10:00 with Dra. García, and a
/// WhatsApp reminder sent 25 h before `now` with no reply.
async fn seed(store: &Store, monday: NaiveDate, now: DateTime<Utc>) -> Appointment {
    let staff = Actor::new("reception", Channel::Staff);
    let new = NewPatient {
        name: "José Martínez Ruiz".into(),
        phones: vec![E164::parse(PATIENT_PHONE).unwrap()],
        date_of_birth: NaiveDate::from_ymd_opt(1952, 11, 2).unwrap(),
        national_id: None,
        preferred_language: "es".into(),
        contact_consent: true,
    };
    let p = store.create_patient(new, &staff, now).await.unwrap();
    let at = local(monday + Duration::days(3), 10);
    let new = NewAppointment { patient_id: p.id, provider_id: "dr-garcia".into(), starts_at: at, hold_token: None, notes: None };
    let a = store.book(new, &staff, now).await.unwrap();
    let sent = now - Duration::hours(25);
    let r = NewReminder { appointment_id: a.id.clone(), channel: ReminderChannel::Whatsapp, sent_at: sent, external_id: None };
    store.record_reminder(r, sent).await.unwrap();
    a
}

/// Another patient's appointment that Thursday at 10:00 with Dra. García,
/// cancelled at `now`; José on the general medicine waiting list for the
/// next ten days. Returns the cancelled appointment.
async fn seed_cancellation(store: &Store, monday: NaiveDate, now: DateTime<Utc>) -> Appointment {
    let staff = Actor::new("reception", Channel::Staff);
    let patient = |name: &str, phone: &str, dob: NaiveDate| NewPatient {
        name: name.into(),
        phones: vec![E164::parse(phone).unwrap()],
        date_of_birth: dob,
        national_id: None,
        preferred_language: "es".into(),
        contact_consent: true,
    };
    let other = store
        .create_patient(patient("Ana Torres", "+34600111222", NaiveDate::from_ymd_opt(1980, 1, 1).unwrap()), &staff, now)
        .await
        .unwrap();
    let jose = patient("José Martínez Ruiz", PATIENT_PHONE, NaiveDate::from_ymd_opt(1952, 11, 2).unwrap());
    let jose = store.create_patient(jose, &staff, now).await.unwrap();
    let at = local(monday + Duration::days(3), 10);
    let new = NewAppointment { patient_id: other.id, provider_id: "dr-garcia".into(), starts_at: at, hold_token: None, notes: None };
    let a = store.book(new, &staff, now).await.unwrap();
    let entry = NewWaitlistEntry {
        patient_id: jose.id,
        specialty_id: "general".into(),
        provider_id: None,
        earliest: monday,
        latest: monday + Duration::days(10),
        notes: None,
    };
    store.waitlist_add(entry, &staff, now).await.unwrap();
    store.cancel(&a.id, &staff, now).await.unwrap()
}

/// The service with the scheduler on `clock`, and SIPp playing `scn` as the
/// trunk; returns the job once an attempt's outcome is recorded.
async fn escalate(dir: &Path, scn: &str, limit: StdDuration) -> (Store, Appointment, Job, DateTime<Utc>) {
    run_service(dir, scn, limit, Seed::UnansweredReminder).await
}

/// What the store holds when the service starts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seed {
    /// [`seed`]: José's appointment, reminded, no reply.
    UnansweredReminder,
    /// [`seed_cancellation`]: a cancelled slot, José on the waiting list.
    Cancellation,
}

async fn run_service(dir: &Path, scn: &str, limit: StdDuration, what: Seed) -> (Store, Appointment, Job, DateTime<Utc>) {
    let _ = tracing_subscriber::fmt().with_env_filter("info,clinivox::calls=debug").with_test_writer().try_init();
    let config = Arc::new(config(dir));
    let monday = next_monday();
    let now = local(monday, 10);
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(now));
    let store = clinivox::app::open_store(&config, clock.as_ref()).await.unwrap();
    let appointment = match what {
        Seed::UnansweredReminder => seed(&store, monday, now).await,
        Seed::Cancellation => seed_cancellation(&store, monday, now).await,
    };

    let log = std::fs::File::create(dir.join("sipp.log")).unwrap();
    let mut sipp = Peer::spawn(
        std::process::Command::new("sipp")
            .args([
                "-sf",
                &scenario(scn),
                "-i",
                "127.0.0.1",
                "-p",
                "5080",
                "-mi",
                "127.0.0.1",
                "-m",
                "1",
                "-nd",
                "-trace_err",
                "-trace_msg",
            ])
            .args(["-timeout", "200s", "-timeout_error"])
            .current_dir(dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log),
        "sipp",
    );

    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(clinivox::app::run(config.clone(), store.clone(), clock.clone(), http, async move {
        let _ = stop_rx.await;
    }));
    let started = Instant::now();
    let job = loop {
        assert!(started.elapsed() < limit, "no escalation outcome within {limit:?}");
        assert!(!service.is_finished(), "the service stopped early");
        tokio::time::sleep(StdDuration::from_millis(300)).await;
        if let Some(job) = store.jobs(None, 10).await.unwrap().into_iter().find(|j| j.last_outcome.is_some()) {
            break job;
        }
    };
    // The trunk's scenario ends with the call.
    let sipp_ok = tokio::task::spawn_blocking(move || {
        let until = Instant::now() + StdDuration::from_secs(10);
        loop {
            if let Some(status) = sipp.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > until {
                let _ = sipp.kill();
                return false;
            }
            std::thread::sleep(StdDuration::from_millis(100));
        }
    })
    .await
    .unwrap();
    let _ = stop_tx.send(());
    service.await.unwrap().unwrap();
    println!("--- sipp ---\n{}", std::fs::read_to_string(dir.join("sipp.log")).unwrap_or_default());
    if !sipp_ok {
        // SIPp's traces (messages, errors) sit beside the WAV.
        for f in std::fs::read_dir(dir).unwrap().flatten().filter(|f| f.path().extension().is_some_and(|e| e == "log")) {
            println!("--- {} ---\n{}", f.path().display(), std::fs::read_to_string(f.path()).unwrap_or_default());
        }
    }
    assert!(sipp_ok, "SIPp saw a failed call (digest refused, or an unexpected message)");
    let store = clinivox::app::open_store(&config, clock.as_ref()).await.unwrap();
    (store, appointment, job, now)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Busy → stored as `busy`, the second attempt planned at 14:00 local the
/// same day (3 h spacing from 10:00 lands in the morning; retries move to
/// the other part of the day).
#[test]
#[cfg_attr(not(clinivox_test_models), ignore = "set CLINIVOX_TEST_MODELS=1")]
fn a_busy_patient_is_called_again_in_the_afternoon() {
    if std::env::var_os(INSIDE).is_none() {
        if have("sipp", "sip-tester") {
            isolated("a_busy_patient_is_called_again_in_the_afternoon");
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let (store, appointment, job, now) = escalate(dir.path(), "uas_patient_busy.xml", StdDuration::from_secs(120)).await;
        assert_eq!(job.appointment_id, appointment.id);
        assert_eq!(job.last_outcome.as_deref(), Some("busy"), "{job:?}");
        assert_eq!(job.status, "pending", "retried per policy: {job:?}");
        let monday = now.with_timezone(&Madrid).date_naive();
        assert_eq!(job.due_at, local(monday, 14), "the second attempt: 14:00 local the same day");
        let attempts = store.job_attempts(&job.id).await.unwrap();
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].outcome.as_deref(), Some("busy"));
        assert_eq!(store.appointment(&appointment.id).await.unwrap().status, AppointmentStatus::Booked);
        // The attempt is in the call history too, linked to José and the appointment.
        let calls = store.calls(10).await.unwrap();
        assert_eq!(calls.len(), 1, "{calls:?}");
        let c = &calls[0];
        assert_eq!((c.direction.as_str(), c.remote_number.as_str(), c.outcome.as_deref()), ("outbound", PATIENT_PHONE, Some("busy")));
        assert_eq!(
            (c.patient_id.as_deref(), c.appointment_id.as_deref()),
            (Some(appointment.patient_id.as_str()), Some(appointment.id.as_str()))
        );
        assert!(c.ended_at.is_some(), "{c:?}");
    });
}

/// What SIPp streams from the answer: silence (µ-law, it keeps the RTP
/// flowing) while the patient answers on the keypad (the scenario's SIP
/// INFOs). A spoken "¿Sí?" first was heard by Whisper as "C C C C …" and
/// counted as a misunderstanding.
fn patient_wav(path: &Path) {
    let pcm = vec![0i16; 90 * RATE as usize];
    clinivox::speech::wav::write_ulaw(path, RATE, &pcm).unwrap();
}

#[test]
#[cfg_attr(not(clinivox_test_models), ignore = "set CLINIVOX_TEST_MODELS=1")]
fn a_patient_who_answers_confirms_the_appointment() {
    if std::env::var_os(INSIDE).is_none() {
        if have("sipp", "sip-tester") {
            isolated("a_patient_who_answers_confirms_the_appointment");
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    patient_wav(&dir.path().join("patient.wav"));
    runtime().block_on(async {
        let (store, appointment, job, _) = escalate(dir.path(), "uas_patient_answers.xml", StdDuration::from_secs(200)).await;
        assert_eq!(job.last_outcome.as_deref(), Some("confirmed"), "{job:?}");
        assert_eq!(job.status, "done", "{job:?}");
        assert_eq!(store.appointment(&appointment.id).await.unwrap().status, AppointmentStatus::Confirmed);
        let calls = store.calls(10).await.unwrap();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!((calls[0].direction.as_str(), calls[0].remote_number.as_str()), ("outbound", PATIENT_PHONE));
        assert_eq!(calls[0].patient_id.as_deref(), Some(appointment.patient_id.as_str()));
        assert_eq!(calls[0].appointment_id.as_deref(), Some(appointment.id.as_str()));
    });
}

/// An answering machine: a greeting far longer than a person's "¿Sí?",
/// a beep, then it records (silence).
fn machine_wav(path: &Path) {
    let tts = Espeak::new(EspeakConfig::default());
    let mut pcm = vec![0i16; RATE as usize * 3 / 10];
    let greeting =
        "Hola, ha llamado al buzón de voz de José Martínez. En este momento no puedo atenderle. Deje su mensaje después de la señal.";
    pcm.extend(tts.synthesize(greeting, "es").expect("espeak-ng installed"));
    pcm.extend(std::iter::repeat_n(0i16, RATE as usize * 4 / 10));
    let beep = (0..RATE as usize * 6 / 10).map(|n| ((2.0 * std::f32::consts::PI * 1000.0 * n as f32 / RATE as f32).sin() * 8000.0) as i16);
    pcm.extend(beep);
    pcm.extend(std::iter::repeat_n(0i16, 60 * RATE as usize));
    clinivox::speech::wav::write_ulaw(path, RATE, &pcm).unwrap();
}

#[test]
#[cfg_attr(not(clinivox_test_models), ignore = "set CLINIVOX_TEST_MODELS=1")]
fn an_answering_machine_gets_a_short_message_and_a_retry() {
    if std::env::var_os(INSIDE).is_none() {
        if have("sipp", "sip-tester") && have("espeak-ng", "espeak-ng") {
            isolated("an_answering_machine_gets_a_short_message_and_a_retry");
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    machine_wav(&dir.path().join("patient.wav"));
    runtime().block_on(async {
        let (store, appointment, job, now) = escalate(dir.path(), "uas_patient_voicemail.xml", StdDuration::from_secs(120)).await;
        assert_eq!(job.last_outcome.as_deref(), Some("voicemail"), "{job:?}");
        assert_eq!(job.status, "pending", "retried per policy: {job:?}");
        let monday = now.with_timezone(&Madrid).date_naive();
        assert_eq!(job.due_at, local(monday, 14));
        assert_eq!(store.appointment(&appointment.id).await.unwrap().status, AppointmentStatus::Booked);
        let calls = store.calls(10).await.unwrap();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0].direction, "outbound");
        assert_eq!((calls[0].outcome.as_deref(), calls[0].appointment_id.as_deref()), (Some("voicemail"), Some(appointment.id.as_str())));
    });
}

/// A cancellation frees Thursday 10:00; José, on the waiting list, is
/// called, verifies on the keypad and accepts (the same keys as the
/// confirmation: 1, date of birth, 1, 2): the slot is booked for him, he
/// leaves the waiting list, the refill job is done.
#[test]
#[cfg_attr(not(clinivox_test_models), ignore = "set CLINIVOX_TEST_MODELS=1")]
fn a_freed_slot_is_offered_and_accepted_by_phone() {
    if std::env::var_os(INSIDE).is_none() {
        if have("sipp", "sip-tester") {
            isolated("a_freed_slot_is_offered_and_accepted_by_phone");
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    patient_wav(&dir.path().join("patient.wav"));
    runtime().block_on(async {
        let (store, freed, job, now) =
            run_service(dir.path(), "uas_patient_answers.xml", StdDuration::from_secs(200), Seed::Cancellation).await;
        assert_eq!((job.kind.as_str(), job.appointment_id.as_str()), ("refill", freed.id.as_str()));
        assert_eq!(job.last_outcome.as_deref(), Some("accepted"), "{job:?}");
        assert_eq!(job.status, "done", "{job:?}");
        let calls = store.calls(10).await.unwrap();
        assert_eq!(calls.len(), 1, "{calls:?}");
        let jose = calls[0].patient_id.clone().expect("the call knows José");
        let his = store.appointments_for_patient(&jose, true, now - Duration::days(1)).await.unwrap();
        assert!(
            his.iter()
                .any(|a| a.starts_at == freed.starts_at && a.provider_id == freed.provider_id && a.status == AppointmentStatus::Booked),
            "the freed slot is José's: {his:?}"
        );
        assert!(store.waitlist(Some("general")).await.unwrap().iter().all(|e| e.patient_id != jose), "José left the waiting list");
    });
}

/// What the assistant said since the callee's last turn, from its record
/// of the (only) call.
#[allow(dead_code)] // kept for debugging a failing run
async fn assistant_said(store: &Store) -> String {
    call_record::said_last(&call_record::turns(store).await)
}

async fn print_call(store: &Store) {
    let Some(c) = store.calls(1).await.unwrap().into_iter().next() else { return println!("no call recorded") };
    let d = store.call(&c.id).await.unwrap();
    println!("call {} {} outcome {:?}", d.call.id, d.call.direction, d.call.outcome);
    for t in &d.turns {
        println!("{:>3} {:<9} {:?} latency_ms={:?}", t.seq, t.speaker, t.text, t.latency_ms);
    }
}

/// The patient's phone says `text` (synthesized by `clinivox say`) and
/// waits for the whole reply; true when the assistant's answer contains one
/// of `expect`. Returns the reply's audio too.
async fn answer(phone: &mut Phone, store: &Store, dir: &Path, n: usize, text: &str, expect: &[&str]) -> (bool, Vec<i16>) {
    let (wav, _) = utterance(dir, &format!("say{n}"), "es", text);
    let since = call_record::turns(store).await.len();
    let mark = phone.mark();
    phone.play(&wav);
    // Whisper on a loaded 2-core machine has taken 60 s for one turn.
    let said = call_record::answer_after(store, since, expect, StdDuration::from_secs(120)).await;
    let reply = phone.reply(mark, StdDuration::from_millis(1500), StdDuration::from_secs(60)).await.unwrap_or_default();
    println!("patient said {text:?}; assistant answered {said:?}");
    (expect.iter().any(|e| said.contains(e)), reply)
}

/// The patient's phone presses `keys`; true when the assistant's answer
/// contains one of `expect`.
async fn keys(phone: &mut Phone, store: &Store, keys: &str, expect: &[&str]) -> bool {
    let since = call_record::turns(store).await.len();
    let mark = phone.mark();
    phone.keys(keys).await;
    let said = call_record::answer_after(store, since, expect, StdDuration::from_secs(60)).await;
    phone.reply(mark, StdDuration::from_millis(1500), StdDuration::from_secs(60)).await;
    println!("patient pressed {keys}; assistant answered {said:?}");
    expect.iter().any(|e| said.contains(e))
}

/// Issue 7 with real peers: kamailio as the carrier trunk (it challenges
/// the INVITE for digest credentials, then relays the call and stays in its
/// path) and baresip as José's phone, which answers by itself and speaks
/// (`clinivox say`): "Sí, soy yo", his date of birth (keyed), "Sí, confirmo". The
/// appointment becomes confirmed; the confirmation is in what his phone
/// recorded, transcribed by Whisper.
#[test]
#[cfg_attr(not(clinivox_test_models), ignore = "set CLINIVOX_TEST_MODELS=1")]
fn a_patient_who_answers_by_voice_through_kamailio_confirms() {
    if std::env::var_os(INSIDE).is_none() {
        if have("kamailio", "kamailio") && have("baresip", "baresip-core") && have("espeak-ng", "espeak-ng") {
            isolated("a_patient_who_answers_by_voice_through_kamailio_confirms");
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    runtime().block_on(async {
        let _ = tracing_subscriber::fmt().with_env_filter("info,clinivox::calls=debug").with_test_writer().try_init();
        let config = Arc::new(config(d));
        let monday = next_monday();
        let now = local(monday, 10);
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(now));
        let store = clinivox::app::open_store(&config, clock.as_ref()).await.unwrap();
        let appointment = seed(&store, monday, now).await;

        let kamailio_cfg = format!("{}/tests/sip/kamailio/trunk.cfg", env!("CARGO_MANIFEST_DIR"));
        std::fs::create_dir_all(d.join("kamailio")).unwrap();
        let log = std::fs::File::create(d.join("kamailio.log")).unwrap();
        let kamailio = Peer::spawn(
            std::process::Command::new("kamailio")
                .args(["-f", &kamailio_cfg, "-DD", "-E", "-Y"])
                .arg(d.join("kamailio"))
                .arg("-P")
                .arg(d.join("kamailio/kamailio.pid"))
                .stdout(log.try_clone().unwrap())
                .stderr(log),
            "kamailio",
        );
        let account = format!("<sip:{PATIENT_PHONE}@127.0.0.1:5090>;regint=0;answermode=auto");
        let mut phone = Phone::start(d, "patient", 5090, &account);

        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let service = tokio::spawn(clinivox::app::run(config.clone(), store.clone(), clock.clone(), http, async move {
            let _ = stop_rx.await;
        }));
        let kamailio_log = || std::fs::read_to_string(d.join("kamailio.log")).unwrap_or_default();
        let started = Instant::now();
        while !phone.established() {
            assert!(started.elapsed() < StdDuration::from_secs(120), "José's phone never rang:\n{}\n{}", phone.log(), kamailio_log());
            assert!(!service.is_finished(), "the service stopped early");
            tokio::time::sleep(StdDuration::from_millis(200)).await;
        }
        // "Buenas …, le llamamos de …. ¿Hablo con José Martínez?"
        let asked = phone.reply(0, StdDuration::from_millis(1500), StdDuration::from_secs(60)).await;
        assert!(asked.is_some(), "the clinic said nothing:\n{}", phone.log());
        let mut ok = false;
        // "Sí, soy yo" alone has been heard as "C, soy López, Dr. Sergio." (another
        // person) three times out of three: the prompt's plain "sí" first.
        for (n, text) in ["Sí.", "Sí, soy yo."].into_iter().enumerate() {
            (ok, _) = answer(&mut phone, &store, d, n, text, &["fecha de nacimiento"]).await;
            if ok {
                break;
            }
        }
        let mut confirmed = Vec::new();
        if ok {
            // Keyed in, as the prompt offers: Whisper base has never
            // understood espeak's spoken dates ("La sielmos de noviembre
            // de 1990"), and identity is not what this test is about.
            ok = keys(&mut phone, &store, "02111952", &["¿Podrá venir?"]).await;
        }
        if ok {
            (ok, confirmed) = answer(&mut phone, &store, d, 3, "Sí, confirmo.", &["queda confirmada"]).await;
        }
        if ok {
            // "¿Puedo ayudarle en algo más? Pulse 1 para sí o 2 para no."
            keys(&mut phone, &store, "2", &["Adiós"]).await;
        }
        // The outcome is stored when the call ends.
        let t = Instant::now();
        let job = loop {
            if let Some(job) = store.jobs(None, 10).await.unwrap().into_iter().find(|j| j.last_outcome.is_some()) {
                break Some(job);
            }
            if t.elapsed() > StdDuration::from_secs(30) {
                break None;
            }
            if t.elapsed() > StdDuration::from_secs(15) && !phone.call_ended() {
                phone.hangup();
            }
            tokio::time::sleep(StdDuration::from_millis(300)).await;
        };
        print_call(&store).await;
        let status = store.appointment(&appointment.id).await.unwrap().status;
        let _ = stop_tx.send(());
        let _ = tokio::time::timeout(StdDuration::from_secs(10), service).await;
        drop(kamailio); // the whole group: kamailio's forked workers too
        let trunk = kamailio_log();
        println!("--- kamailio ---\n{}", trunk.lines().filter(|l| l.contains("TRUNK")).collect::<Vec<_>>().join("\n"));
        assert!(trunk.contains("TRUNK challenge INVITE"), "the trunk challenged the INVITE:\n{trunk}");
        assert!(trunk.contains("TRUNK authenticated clinic"), "Clinivox answered the challenge:\n{trunk}");
        assert!(ok, "the spoken conversation went off track (see the call above)");
        let job = job.expect("an attempt's outcome is recorded");
        assert_eq!(job.last_outcome.as_deref(), Some("confirmed"), "{job:?}");
        assert_eq!(status, AppointmentStatus::Confirmed);

        // What José heard, transcribed by a recognizer of our own.
        let pool_cfg = PoolConfig {
            model: clinivox::speech::models::installed_path(&cache_root().join("models"), "base").unwrap(),
            workers: 1,
            threads_per_worker: 2,
            max_queued: 4,
            guard: Default::default(),
            languages: vec!["es".into()],
        };
        let pool = tokio::task::spawn_blocking(move || RecognitionPool::start(pool_cfg).unwrap()).await.unwrap();
        let req = Request { call: CallKey(999), pcm: confirmed, language: Some("es".into()), initial_prompt: None, detect: false };
        let heard = pool.submit(req).unwrap().await.unwrap().map(|r| r.text.to_lowercase()).unwrap_or_default();
        println!("José heard: {heard:?}");
        // Whisper base garbles much of it ("su tita nemenitía general, él fue
        // después nemenitiembre … compilman"): any of the appointment's words.
        let words = ["confirm", "general", "diciembre", "garcía"];
        assert!(words.iter().any(|w| heard.contains(w)), "the confirmation is not in his phone's recording: {heard:?}");
        println!("--- phone ---\n{}", phone.quit());
    });
}
