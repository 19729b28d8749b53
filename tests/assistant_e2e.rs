//! The assistant end to end, in-process: `app::run` with the demo clinic
//! on a temporary SQLite store and `[calls] app = "assistant"`, and this
//! test as the caller — a raw SIP UAC over UDP and a real-time RTP stream
//! (G.711 µ-law, 20 ms packets, RFC 4733 keys) carrying speech synthesized
//! by the product's own TTS. The assistant's audio is recorded and
//! transcribed; the call record is checked in the store.
//!
//! Needs the Whisper base model (CLINIVOX_TEST_MODELS=1, cached like
//! tests/pool_real.rs) and espeak-ng.
#![cfg(feature = "whisper")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clinivox::bench::caller::{Caller, Dial};
use clinivox::clock::{Clock, SystemClock};
use clinivox::speech::fair_queue::CallKey;
use clinivox::speech::pool::{PoolConfig, RecognitionPool, Request};
use clinivox::speech::tts::{Espeak, EspeakConfig, SpeechEngine};
use clinivox::store::Store;

const CALLER: &str = "+34600222333"; // José Martínez Ruiz, born 1952-11-02 (demo patient)
const CLINIC_NUMBER: &str = "+34911234567";

#[path = "sip/common.rs"]
mod common;
use common::{cache_root, provision_models};

fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
    s.local_addr().expect("bound socket has an address").port()
}

/// The demo clinic, listening on loopback only, answered by the assistant.
fn config(dir: &std::path::Path, sip_port: u16) -> clinivox::config::Config {
    let root = cache_root();
    let text = clinivox::config::DEMO_TOML
        .replace(
            "listen = [\n  { transport = \"udp\", addr = \"127.0.0.1:5060\" },\n  { transport = \"tcp\", addr = \"127.0.0.1:5060\" },\n]",
            &format!("listen = [ {{ transport = \"udp\", addr = \"127.0.0.1:{sip_port}\" }} ]"),
        )
        .replace(
            "bindings_file = \"sip-bindings.json\"",
            // SIPp (the desk phone) answers only the first challenge, and only MD5.
            &format!("bindings_file = {:?}\ndigest_algorithms = [\"MD5\", \"SHA-256\"]", dir.join("bindings.json").display().to_string()),
        )
        .replace("min = 20000", "min = 33000")
        .replace("max = 20999", "max = 33999");
    assert!(text.contains(&format!("127.0.0.1:{sip_port}")), "the demo's [sip] listen line changed; update this test");
    let vars = [
        ("CLINIVOX_CALLS__APP".to_string(), "assistant".to_string()),
        ("CLINIVOX_SPEECH__MODELS_DIR".to_string(), root.join("models").display().to_string()),
        ("CLINIVOX_DATABASE__URL".to_string(), format!("sqlite://{}", dir.join("e2e.db").display())),
    ];
    let mut c = clinivox::config::from_toml(&text, "e2e", vars).expect("test configuration is valid");
    c.demo = true; // seed the demo patients

    // Open all day, every day: out of hours a request for a person becomes a
    // callback request without any transfer, and this test runs at any hour.
    let all_day = clinivox::config::TimeRange { start: chrono::NaiveTime::MIN, end: chrono::NaiveTime::from_hms_opt(23, 59, 59).unwrap() };
    c.clinic.opening_hours = clinivox::config::WeeklyHours(std::array::from_fn(|_| vec![all_day]));
    c.clinic.holidays.clear();
    // The model the demo names, and f16 base, which transcribes what the caller heard.
    provision_models(&c, &["base"]);
    c
}

fn dial(service: SocketAddr, call_id: &str) -> Dial {
    Dial { service, from: CALLER.into(), to: CLINIC_NUMBER.into(), call_id: call_id.into(), answer_within: Duration::from_secs(60) }
}

/// The caller speaks `text`, synthesized by the product's engine (already at the phone's 8 kHz).
fn say(caller: &mut Caller, tts: &Espeak, text: &str) {
    caller.say(&tts.synthesize(text, "es").expect("espeak-ng installed"));
}

fn transcribe(pool: &RecognitionPool, pcm: Vec<i16>) -> String {
    let req = Request { call: CallKey(999), pcm, language: Some("es".into()), initial_prompt: None, detect: false };
    let rx = pool.submit(req).expect("pool accepts");
    rx.blocking_recv().expect("pool answers").map(|r| r.text).unwrap_or_default().to_lowercase()
}

async fn call_detail(store: &Store, number: &str, nth_newest: usize) -> clinivox::store::CallDetail {
    let calls: Vec<_> = store.calls(20).await.unwrap().into_iter().filter(|c| c.remote_number == number).collect();
    let c = calls.get(nth_newest).expect("call recorded");
    store.call(&c.id).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(clinivox_test_models), ignore = "set CLINIVOX_TEST_MODELS=1")]
async fn keypad_booking_and_a_spoken_no_through_sip_and_rtp() {
    common::log_capture();
    let dir = tempfile::tempdir().unwrap();
    let sip_port = free_udp_port();
    let config = Arc::new(config(dir.path(), sip_port));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = clinivox::app::open_store(&config, clock.as_ref()).await.unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(clinivox::app::run(config.clone(), store.clone(), clock, http, async {
        let _ = stop_rx.await;
    }));
    let root = cache_root();
    let pool_cfg = PoolConfig {
        model: clinivox::speech::models::installed_path(&root.join("models"), "base").unwrap(),
        workers: 1,
        threads_per_worker: 2,
        max_queued: 4,
        guard: Default::default(),
        languages: vec!["es".into()],
    };
    let pool = Arc::new(tokio::task::spawn_blocking(move || RecognitionPool::start(pool_cfg).unwrap()).await.unwrap());
    let tts = Espeak::new(EspeakConfig::default());
    let phone = clinivox::phone::E164::parse(CALLER).unwrap();
    let patient = store.patients_by_phone(&phone).await.unwrap().first().expect("demo patient").id.clone();
    let before = store.appointments_for_patient(&patient, true, chrono::Utc::now()).await.unwrap().len();
    let began = Instant::now();
    let addr: SocketAddr = format!("127.0.0.1:{sip_port}").parse().unwrap();

    // 1. The greeting is heard (transcribed by Whisper).
    let mut caller = Caller::call(dial(addr, "e2e-book")).await.expect("the assistant answers");
    let greeting = caller.reply(0, Duration::from_millis(1500), Duration::from_secs(45)).await;
    assert!(greeting.len() > 8000 * 3, "greeting too short: {} samples", greeting.len());
    let first_loud = greeting.iter().position(|s| s.unsigned_abs() > 2000).unwrap_or(0);
    eprintln!("greeting: {:.1} s of audio, speech from {:.2} s", greeting.len() as f32 / 8000.0, first_loud as f32 / 8000.0);
    // Transcribed meanwhile: on a loaded machine Whisper can take longer
    // than the assistant waits in silence before saying goodbye.
    let p = pool.clone();
    let greeting_text = tokio::task::spawn_blocking(move || transcribe(&p, greeting));

    // 2. Keypad: 1 = book; the date of birth as eight digits.
    let mark = caller.heard_len();
    caller.keys("1").expect("telephone keys");
    caller.reply(mark, Duration::from_millis(1200), Duration::from_secs(30)).await;
    let mark = caller.heard_len();
    caller.keys("02111952").expect("telephone keys");
    // The specialty menu is long: press 1 (general medicine) as soon as it
    // starts, which also cuts the prompt short.
    caller.reply_started(mark, Duration::from_secs(30)).await.expect("the assistant answers");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mark = caller.heard_len();
    caller.keys("1").expect("telephone keys");
    // "When?" → 1 = the first free slot; then the offer list → 1; then the read-back → 1 = yes.
    caller.reply_started(mark, Duration::from_secs(30)).await.expect("the assistant answers");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mark = caller.heard_len();
    caller.keys("1").expect("telephone keys");
    caller.reply_started(mark, Duration::from_secs(30)).await.expect("the assistant answers");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mark = caller.heard_len();
    caller.keys("1").expect("telephone keys");
    caller.reply(mark, Duration::from_millis(1200), Duration::from_secs(30)).await;
    let mark = caller.heard_len();
    caller.keys("1").expect("telephone keys");
    // "Done … anything else?"
    caller.reply(mark, Duration::from_millis(1200), Duration::from_secs(30)).await;

    // 3. A spoken "no": the assistant says goodbye and hangs up. Whisper
    // on espeak audio is not reliable enough to insist on it, so if the
    // assistant did not take it as "no", the caller hangs up instead; the
    // booking keeps the call's outcome either way.
    let mark = caller.heard_len();
    say(&mut caller, &tts, "No, muchas gracias, eso es todo.");
    // Generous: Whisper may still be busy with the greeting transcript above.
    caller.reply(mark, Duration::from_millis(2000), Duration::from_secs(90)).await;
    for _ in 0..30 {
        if caller.hung_up() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let spoken_no_worked = caller.hung_up();
    if !spoken_no_worked {
        caller.bye().await.expect("BYE sent");
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let text = greeting_text.await.unwrap();
    eprintln!("greeting heard as: {text:?}");
    assert!(["rafael", "clínica", "clinica", "asistente", "llamado"].iter().any(|w| text.contains(w)), "greeting not heard: {text:?}");

    let d = call_detail(&store, CALLER, 0).await;
    for t in &d.turns {
        eprintln!("{:>3} {:<9} {:?} intent={:?}", t.seq, t.speaker, t.text, t.intent);
    }
    eprintln!("spoken no understood: {spoken_no_worked}; call took {:?}", began.elapsed());
    assert_eq!(d.call.outcome.as_deref(), Some("booked"), "{:?}", d.call);
    assert!(d.call.ended_at.is_some());
    assert!(d.call.patient_id.is_some(), "the caller was identified");
    assert!(d.turns.iter().filter(|t| t.speaker == "caller" && t.text.starts_with("DTMF")).count() >= 12, "keys reached the transcript");
    assert!(d.turns.iter().any(|t| t.speaker == "assistant" && t.text.contains("José")), "greeted by name after the date of birth");
    assert!(d.turns.iter().any(|t| t.speaker == "caller" && !t.text.starts_with("DTMF")), "the spoken answer reached the transcript");
    let upcoming = store.appointments_for_patient(&patient, true, chrono::Utc::now()).await.unwrap();
    assert_eq!(upcoming.len(), before + 1, "one appointment booked: {upcoming:?}");

    // 4. A caller who hangs up mid-greeting still leaves a complete record.
    let mut caller2 = Caller::call(dial(addr, "e2e-hangup")).await.expect("the assistant answers");
    caller2.reply_started(0, Duration::from_secs(20)).await.expect("the assistant answers");
    tokio::time::sleep(Duration::from_secs(2)).await;
    caller2.bye().await.expect("BYE sent");
    let mut d2 = call_detail(&store, CALLER, 0).await;
    for _ in 0..50 {
        if d2.call.ended_at.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        d2 = call_detail(&store, CALLER, 0).await;
    }
    assert_ne!(d2.call.id, d.call.id);
    assert_eq!(d2.call.outcome.as_deref(), Some("abandoned"), "{:?}", d2.call);

    // 5. 0 = "a person, please", pressed during the greeting (a notice
    // that is heard whole: the reply follows it). The demo's staff have no
    // SIP URI, so the conversation hears the transfer failed and starts a
    // callback request; the caller says nothing, hears the reprompt and the
    // silence goodbye, and the call ends, recorded as transferred to reception.
    let caller3 = Caller::call(dial(addr, "e2e-transfer")).await.expect("the assistant answers");
    caller3.reply_started(0, Duration::from_secs(20)).await.expect("the assistant answers");
    tokio::time::sleep(Duration::from_secs(2)).await;
    caller3.keys("0").expect("telephone keys");
    for _ in 0..900 {
        if caller3.hung_up() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(caller3.hung_up(), "the assistant ends a call it cannot transfer");
    let heard = caller3.heard_len() as f32 / 8000.0;
    // Greeting (~15 s) whole, the transfer notice, the callback questions, the goodbye.
    assert!(heard > 25.0, "greeting and the callback questions: {heard:.1} s");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let d3 = call_detail(&store, CALLER, 0).await;
    assert_ne!(d3.call.id, d2.call.id);
    assert_eq!(d3.call.outcome.as_deref(), Some("transferred"), "{:?}", d3.call);
    assert_eq!(d3.call.transfer_target.as_deref(), Some("reception"));

    // 6. Bridged transfer: a desk phone (SIPp) registers as extension 201;
    // the caller asks for a person; the desk phone rings with the call's
    // context in headers, answers, hears the briefing, and is joined to the
    // caller. It sends back what it hears, so the caller hears their own words.
    if sipp_installed() {
        bridged_transfer_to_a_registered_desk_phone(addr, http_addr, &tts, &store).await;
    }

    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), service).await;
    eprintln!("total {:?}", began.elapsed());

    // 7. The log a clinic keeps (info and above) holds none of it: not José's
    // name, number or date of birth, not what he said, not what he was told.
    let said = ["muchas gracias", "cambiar la hora", "San Rafael", "Martínez"];
    let leaks = common::personal_data_in_log(&common::captured_log(), &said);
    assert!(leaks.is_empty(), "personal data in the log:\n{}", leaks.join("\n"));
}

fn sipp_installed() -> bool {
    let ok = std::process::Command::new("sipp").arg("-v").output().is_ok();
    if !ok {
        eprintln!("SKIPPED bridged transfer: sipp not found (apt-get install sip-tester)");
    }
    ok
}

fn scenario(name: &str) -> String {
    format!("{}/tests/sip/scenarios/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Best normalised correlation of `needle` anywhere in `hay`.
fn best_correlation(hay: &[i16], needle: &[i16]) -> f64 {
    let n: Vec<f64> = needle.iter().map(|&x| f64::from(x)).collect();
    let nn = n.iter().map(|x| x * x).sum::<f64>().sqrt();
    let mut best = 0.0f64;
    for lag in (0..hay.len().saturating_sub(n.len())).step_by(2) {
        let h = &hay[lag..lag + n.len()];
        let hh = h.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
        if hh < 1.0 {
            continue;
        }
        let dot: f64 = h.iter().zip(&n).map(|(&a, b)| f64::from(a) * b).sum();
        best = best.max(dot / (hh * nn));
    }
    best
}

/// One HTTP/1.1 request on its own connection: status, headers, body.
async fn http(addr: SocketAddr, method: &str, path: &str, cookie: &str, form: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nCookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// The `name=value` of a Set-Cookie in `head`.
fn set_cookie(head: &str, name: &str) -> String {
    head.lines()
        .filter_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: ")))
        .find(|c| c.starts_with(&format!("{name}=")))
        .and_then(|c| c.split(';').next())
        .unwrap_or_default()
        .to_string()
}

/// A receptionist's console session on the running service (its cookie).
async fn console_session(http_addr: SocketAddr, store: &Store) -> String {
    use clinivox::store::{Actor, Channel, NewStaffUser, Role};
    let password = "recepcion-e2e-2026";
    let hash = clinivox::console::password::hash("rita", password).unwrap();
    let new = NewStaffUser {
        username: "rita".into(),
        display_name: "Rita".into(),
        role: Role::Reception,
        language: None,
        password_hash: hash,
        extension: None,
    };
    store.create_staff_user(new, &Actor::new("test", Channel::System), chrono::Utc::now()).await.unwrap();
    let (_, head, body) = http(http_addr, "GET", "/console/login", "", "").await;
    let login = set_cookie(&head, "clinivox_login");
    let csrf = login.trim_start_matches("clinivox_login=").to_string();
    assert!(body.contains(&csrf), "the login form carries its token");
    let form = format!("csrf={csrf}&username=rita&password={password}");
    let (status, head, _) = http(http_addr, "POST", "/console/login", &login, &form).await;
    assert_eq!(status, 303, "{head}");
    set_cookie(&head, "clinivox_session")
}

/// Polls the console's Today figures until a call in progress is `doing` that.
async fn console_shows(http_addr: SocketAddr, session: &str, doing: &str, limit: Duration) {
    let until = Instant::now() + limit;
    loop {
        let (status, _, body) = http(http_addr, "GET", "/console/today/live", session, "").await;
        assert_eq!(status, 200, "{body}");
        let live: serde_json::Value = serde_json::from_str(&body).unwrap();
        if live["in_progress"].as_array().is_some_and(|a| a.iter().any(|c| c["doing"] == doing)) {
            return;
        }
        assert!(Instant::now() < until, "no call {doing:?} on the console within {limit:?}: {live}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn bridged_transfer_to_a_registered_desk_phone(addr: SocketAddr, http_addr: SocketAddr, tts: &Espeak, store: &Store) {
    // Reception watches the console's Today page meanwhile.
    let session = console_session(http_addr, store).await;
    let desk = tempfile::tempdir().unwrap();
    let desk_port = free_udp_port();
    let register = std::fs::read_to_string(scenario("uac_register.xml")).unwrap().replace("EXPECT", "200");
    std::fs::write(desk.path().join("register.xml"), register).unwrap();
    let sipp = |args: &[&str]| {
        let mut c = std::process::Command::new("sipp");
        c.arg(addr.to_string())
            .args(["-i", "127.0.0.1", "-p", &desk_port.to_string(), "-mi", "127.0.0.1", "-t", "u1", "-nd", "-m", "1"])
            .args(args)
            .current_dir(desk.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c
    };
    let reg = sipp(&["-sf", "register.xml", "-s", "201", "-au", "201", "-ap", "demo-201-secret", "-timeout", "10s", "-timeout_error"])
        .status()
        .unwrap();
    assert!(reg.success(), "extension 201 registers");
    let mut phone = common::Peer::spawn(
        &mut sipp(&[
            "-sf",
            &scenario("uas_desk.xml"),
            "-rtp_echo",
            "-trace_msg",
            "-message_file",
            "desk.log",
            "-timeout",
            "120s",
            "-timeout_error",
        ]),
        "sipp (the desk phone)",
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut caller = Caller::call(dial(addr, "e2e-bridge")).await.expect("the assistant answers");
    caller.reply_started(0, Duration::from_secs(20)).await.expect("the assistant answers");
    tokio::time::sleep(Duration::from_secs(2)).await;
    caller.keys("0").expect("telephone keys");
    // The console sees the call being transferred (ringing, then the briefing)...
    console_shows(http_addr, &session, "transfiriéndose", Duration::from_secs(30)).await;
    let log = desk.path().join("desk.log");
    let answered = async {
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("SIP/2.0 200 OK") {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let invite = tokio::time::timeout(Duration::from_secs(90), answered).await.expect("the desk phone rang and answered");
    // (No patient id: 0 was pressed before the caller was identified.)
    for h in ["X-Clinivox-Group: reception", "X-Clinivox-Intent: speak to a person", "X-Clinivox-Summary: ", "X-Clinivox-Call-Id: "] {
        assert!(invite.contains(h), "the staff leg carries {h:?}:\n{invite}");
    }
    // Briefing (a few seconds) then the legs are joined; the console says so.
    console_shows(http_addr, &session, "con el personal", Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let words = tts.synthesize("Hola, quería cambiar la hora de mi cita.", "es").unwrap();
    let mark = caller.heard_len();
    say(&mut caller, tts, "Hola, quería cambiar la hora de mi cita.");
    tokio::time::sleep(Duration::from_millis(words.len() as u64 / 8 + 1500)).await;
    let heard = caller.heard()[mark..].to_vec();
    // One second from the middle of what the caller said.
    let probe = &words[words.len() / 2 - 4000..words.len() / 2 + 4000];
    let c = best_correlation(&heard, probe);
    eprintln!("caller's words back through the desk phone: correlation {c:.3}");
    assert!(c > 0.8, "the desk phone did not get the caller's audio (correlation {c:.3})");
    caller.bye().await.expect("BYE sent");
    let status = tokio::task::spawn_blocking(move || phone.wait()).await.unwrap().unwrap();
    assert!(status.success(), "the desk phone's call ended cleanly (BYE relayed)");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let d = call_detail(store, CALLER, 0).await;
    assert_eq!(d.call.outcome.as_deref(), Some("transferred"), "{:?}", d.call);
}
