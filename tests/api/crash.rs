//! Issue 15: the service is killed (SIGKILL) between a booking's commit and
//! its HTTP answer. The client's retry with the same `Idempotency-Key`, to
//! the restarted service on the same database, gets a definite answer within
//! a minute — the booking it made — and the patient is booked once.
//!
//! The real binary (`clinivox serve`, the demo clinic on a temporary
//! database), stopped at the fault point `after_booking_commit`
//! (`CLINIVOX_FAULT`, debug builds only) so the kill lands exactly there.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WRITE: &str = "demo-write-token";
/// The HTTP request timeout the service runs with here: a claim is taken
/// over 15 s after it, so the test waits ~20 s instead of the default 45.
const REQUEST_TIMEOUT_S: u64 = 5;

pub(super) struct Service {
    child: Child,
    /// Lines the service wrote to stderr, as they come.
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Service {
    pub(super) fn start(dir: &Path, addr: SocketAddr, fault: Option<&str>) -> Service {
        Service::start_with(dir, addr, fault, &[])
    }

    /// The same with more `CLINIVOX_…` settings.
    pub(super) fn start_with(dir: &Path, addr: SocketAddr, fault: Option<&str>, env: &[(&str, String)]) -> Service {
        let cache = std::env::var_os("CLINIVOX_TEST_CACHE")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("clinivox-speech-test"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_clinivox"));
        cmd.arg("serve")
            .current_dir(dir)
            .env_remove("CLINIVOX_CONFIG")
            .env("CLINIVOX_DATABASE__URL", format!("sqlite://{}", dir.join("clinic.db").display()))
            .env("CLINIVOX_HTTP__LISTEN", addr.to_string())
            .env("CLINIVOX_HTTP__REQUEST_TIMEOUT_S", REQUEST_TIMEOUT_S.to_string())
            .env("CLINIVOX_SIP__LISTEN", r#"[{ transport = "udp", addr = "127.0.0.1:0" }]"#)
            .env("CLINIVOX_CALLS__APP", "echo")
            .env("CLINIVOX_ESCALATION__ENABLED", "false")
            .env("CLINIVOX_ESCALATION__REFILL_ENABLED", "false")
            .env("CLINIVOX_SPEECH__MODELS_DIR", cache.join("models"))
            .env("CLINIVOX_SPEECH__CACHE_DIR", cache.join("cache"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        match fault {
            Some(f) => cmd.env("CLINIVOX_FAULT", f),
            None => cmd.env_remove("CLINIVOX_FAULT"),
        };
        let mut child = cmd.spawn().expect("clinivox serve starts");
        let err = child.stderr.take().expect("stderr piped");
        let (tx, stderr) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Service { child, stderr }
    }

    /// Waits until /healthz answers (the database is migrated, the listener up).
    pub(super) async fn ready(&mut self, addr: SocketAddr) {
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            if let Ok(Some((200, _))) = request(addr, "GET", "/healthz", None, None).await {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let said: Vec<String> = self.stderr.try_iter().collect();
                panic!("the service exited with {status}:\n{}", said.join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("the service did not become ready within 60 s");
    }

    /// `kill -9`.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request on its own connection: `Ok(None)` when the
/// connection closed without an answer, else (status, JSON body).
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    key: Option<&str>,
) -> std::io::Result<Option<(u16, Value)>> {
    request_as(WRITE, addr, method, path, body, key).await
}

/// [`request`] with another bearer token.
async fn request_as(
    token: &str,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    key: Option<&str>,
) -> std::io::Result<Option<(u16, Value)>> {
    let mut s = TcpStream::connect(addr).await?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let key = key.map(|k| format!("Idempotency-Key: {k}\r\n")).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n{key}Connection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body.as_bytes()).await?;
    let mut raw = Vec::new();
    // A killed server resets the connection: no answer, like an EOF.
    if s.read_to_end(&mut raw).await.is_err() || raw.is_empty() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok(Some((status, serde_json::from_str(body).unwrap_or(Value::String(body.to_string())))))
}

/// `serve` loads the configured speech model: fetched (or found) first.
pub(super) fn model_in_cache() {
    let root = std::env::var_os("CLINIVOX_TEST_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("clinivox-speech-test"));
    clinivox::speech::models::fetch(clinivox::speech::models::DEFAULT_MODEL, &root.join("cache"), &root.join("models"), &mut |_| {})
        .expect("model in the test cache");
}

pub(super) fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_a_bookings_commit_and_its_answer_the_retry_gets_a_definite_answer_and_one_booking() {
    model_in_cache();
    let dir = tempfile::tempdir().unwrap();
    let addr = free_port();

    let mut service = Service::start(dir.path(), addr, Some("after_booking_commit"));
    service.ready(addr).await;
    let patient = json!({"name": "Inés Crash", "phones": ["+34600999111"], "date_of_birth": "1961-02-03", "preferred_language": "es"});
    let (status, created) = request(addr, "POST", "/api/v1/patients", Some(&patient), None).await.unwrap().expect("an answer");
    assert_eq!(status, 201, "{created}");
    let patient_id = created["id"].as_str().unwrap().to_string();
    let (status, slots) =
        request(addr, "GET", "/api/v1/slots?specialty=dermatology&limit=1", None, None).await.unwrap().expect("an answer");
    assert_eq!(status, 200, "{slots}");
    let slot =
        slots.get("items").and_then(|i| i.get(0)).or_else(|| slots.get(0)).cloned().unwrap_or_else(|| panic!("a free slot: {slots}"));
    let booking = json!({"patient_id": patient_id, "provider_id": slot["provider_id"], "starts_at": slot["starts_at"]});

    // The booking commits, then the process stops at the fault point…
    let first = tokio::spawn(async move { request(addr, "POST", "/api/v1/appointments", Some(&booking), Some("crash-key-1")).await });
    let reached = service.stderr.recv_timeout(Duration::from_secs(30));
    let mut seen = Vec::new();
    let mut line = reached;
    while let Ok(l) = &line {
        if l.contains("CLINIVOX_FAULT: reached after_booking_commit") {
            break;
        }
        seen.push(l.clone());
        line = service.stderr.recv_timeout(Duration::from_secs(30));
    }
    assert!(line.is_ok(), "the fault point was never reached:\n{}", seen.join("\n"));
    // …and is killed there: the client never gets its answer.
    service.kill();
    let lost = first.await.unwrap();
    assert!(matches!(lost, Ok(None) | Err(_)), "no answer from a killed service: {lost:?}");

    let mut service = Service::start(dir.path(), addr, None);
    service.ready(addr).await;
    let booking = json!({"patient_id": patient_id, "provider_id": slot["provider_id"], "starts_at": slot["starts_at"]});
    let started = Instant::now();
    let mut answers = Vec::new();
    let (status, appointment) = loop {
        assert!(started.elapsed() < Duration::from_secs(60), "no definite answer within a minute: {answers:?}");
        match request(addr, "POST", "/api/v1/appointments", Some(&booking), Some("crash-key-1")).await {
            // Still "in progress" until the claim is known abandoned.
            Ok(Some((409, _))) => answers.push(409),
            Ok(Some((status, body))) => break (status, body),
            other => panic!("the restarted service answers: {other:?}"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    assert_eq!(status, 201, "the retry is answered with the booking the first request made: {appointment}");
    assert_eq!(appointment["patient_id"], patient_id);
    assert_eq!(appointment["starts_at"], slot["starts_at"]);
    assert!(started.elapsed() < Duration::from_secs(60));

    // One booking, and a further retry replays the same answer.
    let (status, list) =
        request(addr, "GET", &format!("/api/v1/appointments?patient_id={patient_id}"), None, None).await.unwrap().expect("an answer");
    assert_eq!(status, 200, "{list}");
    let items = list.get("items").cloned().unwrap_or(list.clone());
    let items = items.as_array().unwrap_or_else(|| panic!("a list: {list}"));
    assert_eq!(items.len(), 1, "booked once: {list}");
    assert_eq!(items[0]["id"], appointment["id"]);
    let (status, again) =
        request(addr, "POST", "/api/v1/appointments", Some(&booking), Some("crash-key-1")).await.unwrap().expect("an answer");
    assert_eq!((status, &again["id"]), (201, &appointment["id"]));
    drop(service);
}

/// Issue 20: the service is killed after a booking committed and before
/// its webhook went out (the receiver was down); restarted, it delivers
/// the event, signed, once the receiver is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_before_a_bookings_webhook_went_out_the_restarted_service_delivers_it() {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    model_in_cache();
    let dir = tempfile::tempdir().unwrap();
    let (addr, receiver) = (free_port(), free_port());
    // The demo clinic from a file (with credentials of its own, as a
    // clinic's file must have), a receiver added.
    const OWN: &str = "a-write-token-of-the-clinics-own";
    use clinivox::config::hash_token;
    let demo = clinivox::config::DEMO_TOML
        .replace(&hash_token("demo-read-token"), &hash_token("a-read-token-of-the-clinics-own"))
        .replace(&hash_token("demo-write-token"), &hash_token(OWN))
        .replace("demo-201-secret", "correct-horse-201")
        .replace("demo-202-secret", "battery-staple-202");
    let config = dir.path().join("clinivox.toml");
    let hooks = format!(
        "\n[[webhooks]]\nname = \"pms\"\nurl = \"http://{receiver}/hooks\"\nsecret = \"{SECRET}\"\nevents = [\"appointment.booked\"]\n"
    );
    std::fs::write(&config, format!("{demo}{hooks}")).unwrap();
    let env = [("CLINIVOX_CONFIG", config.display().to_string())];

    let mut service = Service::start_with(dir.path(), addr, Some("after_booking_commit"), &env);
    service.ready(addr).await;
    let patient = json!({"name": "Inés Webhook", "phones": ["+34600999222"], "date_of_birth": "1961-02-03", "preferred_language": "es"});
    let (status, created) = request_as(OWN, addr, "POST", "/api/v1/patients", Some(&patient), None).await.unwrap().expect("an answer");
    assert_eq!(status, 201, "{created}");
    let (_, slots) =
        request_as(OWN, addr, "GET", "/api/v1/slots?specialty=dermatology&limit=1", None, None).await.unwrap().expect("an answer");
    let slot = slots.get("items").and_then(|i| i.get(0)).or_else(|| slots.get(0)).cloned().expect("a free slot");
    let booking = json!({"patient_id": created["id"], "provider_id": slot["provider_id"], "starts_at": slot["starts_at"]});
    let first = tokio::spawn(async move { request_as(OWN, addr, "POST", "/api/v1/appointments", Some(&booking), None).await });
    loop {
        let line = service.stderr.recv_timeout(Duration::from_secs(30)).expect("the fault point is reached");
        if line.contains("CLINIVOX_FAULT: reached after_booking_commit") {
            break;
        }
    }
    service.kill();
    let _ = first.await;

    // The receiver comes up; the service comes back.
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, String, bool)>::new()));
    let app = {
        let got = got.clone();
        axum::Router::new().route(
            "/hooks",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let got = got.clone();
                async move {
                    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    let signed = h("webhook-timestamp")
                        .parse()
                        .is_ok_and(|t| clinivox::webhooks::verify(SECRET, &h("webhook-id"), t, &body, &h("webhook-signature")));
                    got.lock().unwrap().push((h("webhook-id"), body, signed));
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind(receiver).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut service = Service::start_with(dir.path(), addr, None, &env);
    service.ready(addr).await;
    let until = Instant::now() + Duration::from_secs(30);
    while got.lock().unwrap().is_empty() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "delivered once after the restart: {got:?}");
    let (_, body, signed) = &got[0];
    assert!(signed, "signed: {body}");
    let event: Value = serde_json::from_str(body).unwrap();
    assert_eq!(event["type"], "appointment.booked");
    assert_eq!(event["data"]["patient_id"], created["id"]);
    assert_eq!(event["data"]["starts_at"], slot["starts_at"]);
    assert!(!body.contains("Webhook") && !body.contains("600999222"), "ids and times only: {body}");
    service.kill();
}
