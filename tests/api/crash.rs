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

struct Service {
    child: Child,
    /// Lines the service wrote to stderr, as they come.
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Service {
    fn start(dir: &Path, addr: SocketAddr, fault: Option<&str>) -> Service {
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
    async fn ready(&mut self, addr: SocketAddr) {
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
    let mut s = TcpStream::connect(addr).await?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let key = key.map(|k| format!("Idempotency-Key: {k}\r\n")).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {WRITE}\r\nContent-Type: application/json\r\n\
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

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_a_bookings_commit_and_its_answer_the_retry_gets_a_definite_answer_and_one_booking() {
    let root = std::env::var_os("CLINIVOX_TEST_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("clinivox-speech-test"));
    // `serve` loads the configured speech model; fetched (or found) first.
    clinivox::speech::models::fetch(clinivox::speech::models::DEFAULT_MODEL, &root.join("cache"), &root.join("models"), &mut |_| {})
        .expect("model in the test cache");
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
