//! Shared helpers for integration tests: an in-process server on loopback
//! port 0, raw SIP clients, peer-binary checks and `unshare -n` runs.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clinivox::sip::config::{SipConfig, Transport};
use clinivox::sip::driver::{IncomingCall, SipHandle, SipServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};

/// Shared test data lives beside the repository (`../shared/testdata`), read
/// at run time; `CLINIVOX_TESTDATA` points elsewhere.
pub fn testdata() -> PathBuf {
    std::env::var_os("CLINIVOX_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata"))
}

pub const BASE_CONFIG: &str = r#"
listen = [
  { transport = "udp", addr = "127.0.0.1:0" },
  { transport = "tcp", addr = "127.0.0.1:0" },
  { transport = "udp", addr = "[::1]:0" },
  { transport = "tcp", addr = "[::1]:0" },
]
numbers = ["1000"]
nonce_secret = "test"
[rtp]
min = 30000
max = 30999
[[trunks]]
name = "loop"
cidrs = ["127.0.0.0/8", "::1/128"]
[[extensions]]
number = "201"
password = "desk-201-secret"
"#;

pub struct Running {
    pub addrs: Vec<(Transport, SocketAddr)>,
    pub incoming: mpsc::Receiver<IncomingCall>,
    pub handle: SipHandle,
    _stop: oneshot::Sender<()>,
}

impl Running {
    pub fn addr(&self, t: Transport, v6: bool) -> SocketAddr {
        self.addrs.iter().find(|(tt, a)| *tt == t && a.is_ipv6() == v6).map(|(_, a)| *a).expect("listen address configured in BASE_CONFIG")
    }
}

pub async fn start(cfg_text: &str) -> Running {
    let cfg: SipConfig = toml::from_str(cfg_text).expect("test config parses");
    let server = SipServer::bind(cfg).await.expect("bind on loopback");
    let addrs = server.local_addrs.clone();
    let handle = server.handle();
    let (tx, incoming) = mpsc::channel(64);
    let (stop, rx) = oneshot::channel();
    tokio::spawn(server.run(tx, rx));
    Running { addrs, incoming, handle, _stop: stop }
}

/// Send one datagram; return the first response's status line, if any.
pub async fn udp_exchange(to: SocketAddr, msg: &[u8], wait: Duration) -> Option<String> {
    let bind: SocketAddr = if to.is_ipv6() { "[::1]:0" } else { "127.0.0.1:0" }.parse().ok()?;
    let s = UdpSocket::bind(bind).await.ok()?;
    s.send_to(msg, to).await.ok()?;
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(wait, s.recv_from(&mut buf)).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    text.lines().next().map(str::to_string)
}

/// Same over a fresh TCP connection.
pub async fn tcp_exchange(to: SocketAddr, msg: &[u8], wait: Duration) -> Option<String> {
    let mut s = TcpStream::connect(to).await.ok()?;
    s.write_all(msg).await.ok()?;
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(wait, s.read(&mut buf)).await.ok()?.ok()?;
    if n == 0 {
        return None;
    }
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    text.lines().next().map(str::to_string)
}

pub fn options(to: SocketAddr, transport: &str, n: u32) -> Vec<u8> {
    let host = match to {
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        SocketAddr::V4(a) => a.to_string(),
    };
    format!(
        "OPTIONS sip:{host} SIP/2.0\r\nVia: SIP/2.0/{transport} {host};branch=z9hG4bKopt{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@{host}>;tag=p{n}\r\nTo: <sip:{host}>\r\n\
         Call-ID: opt{n}@test\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Whether a peer binary is installed; prints how to get it if not.
pub fn have(bin: &str, package: &str) -> bool {
    let ok =
        std::process::Command::new("sh").arg("-c").arg(format!("command -v {bin}")).output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        eprintln!("SKIPPED: `{bin}` not found. Install it with: apt-get update && apt-get install -y {package}");
    }
    ok
}

/// The command that runs a test application: `clinivox sip-app`.
pub fn interop_bin() -> String {
    format!("{} sip-app", env!("CARGO_BIN_EXE_clinivox"))
}

/// Where the speech tests keep Whisper's weights: `CLINIVOX_TEST_CACHE`
/// (`cache/` for downloads, `models/` for converted models).
pub fn cache_root() -> PathBuf {
    std::env::var_os("CLINIVOX_TEST_CACHE").map(PathBuf::from).unwrap_or_else(|| std::env::temp_dir().join("clinivox-speech-test"))
}

/// Fetches (or finds in the test cache) the Whisper model `config` will
/// load, and each of `extra` (models a test itself uses, e.g. to transcribe
/// what a phone heard). Every test that runs a configuration calls this, so
/// it passes alone, on a fresh machine, in any order: the model a
/// configuration names is never assumed to be there because another test
/// fetched it. Inside `unshare -n` (no network) it finds them cached.
pub fn provision_models(config: &clinivox::config::Config, extra: &[&str]) {
    let root = cache_root();
    let configured = config.speech.as_ref().map(|s| (s.model.clone(), s.models_dir.clone()));
    let wanted = configured.into_iter().chain(extra.iter().map(|m| (m.to_string(), root.join("models"))));
    for (model, models_dir) in wanted {
        clinivox::speech::models::fetch(&model, &root.join("cache"), &models_dir, &mut |_| {})
            .unwrap_or_else(|e| panic!("model {model} in the test cache {}: {e}", root.display()));
    }
}

/// Runs `test` (a test of the calling binary) again inside `unshare -n`
/// with the environment variable `inside` set, which tells the copy to run
/// the test's body. The default model (which the demo clinic uses) and f16
/// base (which tests use to transcribe what phones heard) are fetched (or
/// found cached) first, here, because the namespace has no network. Panics, with the copy's output,
/// unless that one test passed within `timeout_s`.
pub fn rerun_isolated(inside: &str, test: &str, timeout_s: u64) {
    let root = cache_root();
    for model in [clinivox::speech::models::DEFAULT_MODEL, "base"] {
        clinivox::speech::models::fetch(model, &root.join("cache"), &root.join("models"), &mut |_| {}).expect("model in the test cache");
    }
    let exe = std::env::current_exe().expect("test binary path");
    let script = format!("cd {} && {inside}=1 {} --exact {test} --nocapture --test-threads=1", env!("CARGO_MANIFEST_DIR"), exe.display());
    let (ok, out) = run_isolated(&script, timeout_s);
    println!("{out}");
    assert!(ok && out.contains("test result: ok. 1 passed"), "the isolated run of {test} failed:\n{out}");
    // Whatever the call did, the log a clinic keeps names no patient.
    let leaks = personal_data_in_log(&out, &[]);
    assert!(leaks.is_empty(), "personal data in the log of {test}:\n{}", leaks.join("\n"));
}

/// The demo clinic's TOML for a whole service inside a namespace: SIP on
/// UDP 127.0.0.1:5060 only, its bindings file in `dir`.
pub fn demo_toml_on_udp(dir: &std::path::Path) -> String {
    let text = clinivox::config::DEMO_TOML
        .replace(
            "listen = [\n  { transport = \"udp\", addr = \"127.0.0.1:5060\" },\n  { transport = \"tcp\", addr = \"127.0.0.1:5060\" },\n]",
            "listen = [ { transport = \"udp\", addr = \"127.0.0.1:5060\" } ]",
        )
        .replace(
            "bindings_file = \"sip-bindings.json\"",
            &format!("bindings_file = {:?}", dir.join("bindings.json").display().to_string()),
        );
    assert!(text.contains("listen = [ { transport = \"udp\""), "the demo's [sip] listen line changed; update the tests");
    text
}

/// `text` as the configuration of the assistant service: models from the
/// test cache, a fresh SQLite file in `dir`.
pub fn assistant_config(text: &str, dir: &std::path::Path) -> clinivox::config::Config {
    let vars = [
        ("CLINIVOX_CALLS__APP".to_string(), "assistant".to_string()),
        ("CLINIVOX_SPEECH__MODELS_DIR".to_string(), cache_root().join("models").display().to_string()),
        ("CLINIVOX_DATABASE__URL".to_string(), format!("sqlite://{}", dir.join("e2e.db").display())),
    ];
    let config = clinivox::config::from_toml(text, "e2e", vars).expect("test configuration is valid");
    provision_models(&config, &[]);
    config
}

/// The clinic open all day, every day, no holidays: tests run at any hour.
pub fn open_all_day(c: &mut clinivox::config::Config) {
    let all_day = clinivox::config::TimeRange { start: chrono::NaiveTime::MIN, end: chrono::NaiveTime::from_hms_opt(23, 59, 59).unwrap() };
    c.clinic.opening_hours = clinivox::config::WeeklyHours(std::array::from_fn(|_| vec![all_day]));
    c.clinic.holidays.clear();
}

/// `unshare` with a loopback-only network namespace and a PID namespace of
/// its own: the script's shell is the namespace's init, so when it ends (or
/// `timeout` ends `unshare`, which `--kill-child` passes on) the kernel kills
/// every process still in it. A daemon a test forgot can never outlive the run.
const UNSHARE: [&str; 5] = ["unshare", "--net", "--pid", "--fork", "--kill-child"];

/// Run a bash script inside a fresh loopback-only network namespace
/// (`unshare -n`): nothing it does can leave the machine, and nothing it
/// starts outlives it.
pub fn run_isolated(script: &str, timeout_s: u64) -> (bool, String) {
    let full = format!("set -u\nip link set lo up\n{script}");
    let out = std::process::Command::new("timeout")
        .arg(timeout_s.to_string())
        .args(UNSHARE)
        .args(["--mount-proc", "bash", "-c", &full])
        .output()
        .expect("unshare/timeout available");
    let text = format!("{}\n--- stderr ---\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Like [`run_isolated`], with its own `/etc/hosts` (a private mount
/// namespace too), so that DNS names resolve to loopback addresses.
pub fn run_isolated_with_hosts(script: &str, hosts: &str, timeout_s: u64) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("hosts");
    std::fs::write(&file, hosts).expect("write hosts");
    let full = format!("set -u\nip link set lo up\nmount --bind {} /etc/hosts\n{script}", file.display());
    let out = std::process::Command::new("timeout")
        .arg(timeout_s.to_string())
        .args(UNSHARE)
        .args(["--mount", "--mount-proc", "bash", "-c", &full])
        .output()
        .expect("unshare/timeout available");
    let text = format!("{}\n--- stderr ---\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// A peer program a test started (SIPp, kamailio), in a process group of
/// its own. Dropping it — at the end of the test, or while an assertion
/// unwinds — kills the whole group, so a daemon's forked workers (kamailio
/// forks a dozen) never outlive the test that started them.
pub struct Peer(std::process::Child);

impl Peer {
    pub fn spawn(cmd: &mut std::process::Command, what: &str) -> Peer {
        use std::os::unix::process::CommandExt;
        Peer(cmd.process_group(0).spawn().unwrap_or_else(|e| panic!("{what} starts: {e}")))
    }
}

impl std::ops::Deref for Peer {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Peer {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // The group's id is the leader's pid (process_group(0)); the group
        // may outlive a leader that already exited, so it is killed anyway.
        let group = format!("-{}", self.0.id());
        let _ = std::process::Command::new("kill").args(["-KILL", "--", &group]).stderr(std::process::Stdio::null()).status();
        let _ = self.0.wait();
    }
}

/// The log lines a clinic would keep (INFO, WARN, ERROR) that hold any of
/// the demo patients' identifiers (`clinivox::demo::identifiers`) or any of
/// `also` (what a test's caller said, what the assistant answered). Colour
/// codes are ignored; DEBUG and TRACE lines and a test's own prints are not
/// log lines a clinic keeps, and are not looked at.
pub fn personal_data_in_log(log: &str, also: &[&str]) -> Vec<String> {
    let mut needles = clinivox::demo::identifiers();
    needles.extend(also.iter().map(|s| s.to_string()));
    let mut found = Vec::new();
    for raw in log.lines() {
        let line = strip_ansi(raw);
        let level = line.split_whitespace().nth(1).unwrap_or("");
        if !matches!(level, "INFO" | "WARN" | "ERROR") {
            continue;
        }
        if let Some(n) = needles.iter().find(|n| line.contains(n.as_str())) {
            found.push(format!("{n:?} in: {line}"));
        }
    }
    found
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters… final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Everything the service logs in this test process, at the level a
/// clinic runs (`info`, or RUST_LOG), also echoed to the test's output.
/// Installed once per test binary as the global subscriber.
pub fn log_capture() -> &'static std::sync::Mutex<Vec<u8>> {
    static BUFFER: std::sync::OnceLock<&'static std::sync::Mutex<Vec<u8>>> = std::sync::OnceLock::new();
    BUFFER.get_or_init(|| {
        let buffer: &'static std::sync::Mutex<Vec<u8>> = Box::leak(Box::new(std::sync::Mutex::new(Vec::new())));
        let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_writer(move || CaptureWriter(buffer)).try_init();
        buffer
    })
}

/// The captured log so far, as text.
pub fn captured_log() -> String {
    String::from_utf8_lossy(&log_capture().lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

struct CaptureWriter(&'static std::sync::Mutex<Vec<u8>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        eprint!("{}", String::from_utf8_lossy(buf));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A certificate for `names` (IP addresses or DNS names) and its key, as
/// PEM files `<dir>/<stem>.crt` and `.key`; signed by `ca` when given
/// (else self-signed). `expired` dates it in 2020. Returns the DER too.
pub fn tls_pair(dir: &std::path::Path, stem: &str, names: &[&str], ca: Option<&TestCa>, expired: bool) -> (PathBuf, PathBuf, Vec<u8>) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut p = rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
    if expired {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = match ca {
        Some(ca) => p.signed_by(&key, &ca.cert, &ca.key).expect("sign"),
        None => p.self_signed(&key).expect("self-sign"),
    };
    let (c, k) = (dir.join(format!("{stem}.crt")), dir.join(format!("{stem}.key")));
    std::fs::write(&c, cert.pem()).expect("write cert");
    std::fs::write(&k, key.serialize_pem()).expect("write key");
    (c, k, cert.der().to_vec())
}

/// A test certificate authority.
pub struct TestCa {
    pub cert: rcgen::Certificate,
    pub key: rcgen::KeyPair,
    pub pem: PathBuf,
}

impl TestCa {
    pub fn new(dir: &std::path::Path, stem: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(rcgen::DnType::CommonName, format!("Clinivox test CA {stem}"));
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = p.self_signed(&key).expect("self-sign");
        let pem = dir.join(format!("{stem}.pem"));
        std::fs::write(&pem, cert.pem()).expect("write CA");
        TestCa { cert, key, pem }
    }
}

/// A rustls client that trusts `ca` (a PEM file), for talking SIP or HTTPS
/// to the server under test over TLS.
pub async fn tls_connect(to: SocketAddr, ca: &std::path::Path) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let trust = clinivox::tls::PeerTrust { ca: Some(ca.to_path_buf()), ..Default::default() };
    let cfg = clinivox::tls::client_config(&trust).map_err(std::io::Error::other)?;
    let s = TcpStream::connect(to).await?;
    tokio_rustls::TlsConnector::from(cfg).connect(to.ip().into(), s).await
}
