//! The assistant's call records for what happens around a conversation, in
//! process: the real call task (`call::spawn`, its RTP socket on loopback)
//! answered by the real `Assistant` (Whisper base, espeak-ng), with this
//! test as the caller's RTP end. No SIP: the call's media is set up as the
//! SIP layer would after an INVITE, and the caller's BYE is the SIP layer's
//! `Ended(RemoteBye)` signal.
//!
//! - `[calls] record_audio`: the caller hears the recording notice (it is
//!   in the transcript, right after the greeting); the WAV stored on the
//!   call record holds the caller's known tone sequence on the left channel
//!   (found by correlation) and the assistant's speech on the right.
//! - saturated (`max_active` reached): the caller hears "all lines are
//!   busy" and the refusal is an inbound call record with outcome `busy`,
//!   counted by `/metrics`' `clinivox_calls_total`.
//!
//! Needs the Whisper base model (CLINIVOX_TEST_MODELS=1) and espeak-ng.
#![cfg(feature = "whisper")]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clinivox::call::assistant::Assistant;
use clinivox::call::CallSignal;
use clinivox::config::Config;
use clinivox::media::g711::{ulaw_decode, ulaw_encode, Codec, FRAME_SAMPLES};
use clinivox::media::sdp::{Direction, Negotiated};
use clinivox::metrics::Metrics;
use clinivox::sip::config::SipConfig;
use clinivox::sip::endpoint::{CallId, EndReason};
use clinivox::store::Store;
use tokio::net::UdpSocket;

const CALLER: &str = "sip:+34600222333@127.0.0.1";

#[path = "sip/common.rs"]
mod common;
use common::{cache_root, provision_models};

/// The demo clinic answered by the assistant, with `vars` on top.
fn config(dir: &Path, vars: &[(&str, String)]) -> Config {
    let root = cache_root();
    let mut all = vec![
        ("CLINIVOX_CALLS__APP".to_string(), "assistant".to_string()),
        ("CLINIVOX_SPEECH__MODELS_DIR".to_string(), root.join("models").display().to_string()),
        ("CLINIVOX_DATABASE__URL".to_string(), format!("sqlite://{}", dir.join("t.db").display())),
    ];
    all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let config = clinivox::config::from_toml(clinivox::config::DEMO_TOML, "test", all).expect("test configuration is valid");
    provision_models(&config, &[]);
    config
}

async fn assistant(config: Config, dir: &Path) -> (Arc<Assistant>, Store, Arc<Metrics>) {
    let config = Arc::new(config);
    let store = clinivox::testing::sqlite_store(dir, &config).await.unwrap();
    let metrics = Metrics::new();
    let prompts = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
    let a = Assistant::start(config, store.clone(), &prompts, metrics.clone()).await.expect("assistant starts");
    (Arc::new(a), store, metrics)
}

/// The caller's end of one call: what it sends (paced 20 ms RTP, µ-law)
/// and everything it hears.
struct Caller {
    heard: Arc<Mutex<Vec<i16>>>,
    signals: tokio::sync::mpsc::UnboundedSender<CallSignal>,
    answered: tokio::task::JoinHandle<()>,
}

/// Sets up a call as the SIP layer would after an INVITE from `CALLER`
/// and hands it to the assistant; the caller plays `pcm`, then silence.
async fn call(assistant: Arc<Assistant>, pcm: Vec<i16>) -> Caller {
    let ours = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let theirs = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let media = Negotiated {
        codec: Codec::Pcmu,
        codec_pt: 0,
        dtmf_pt: None,
        remote: theirs.local_addr().unwrap(),
        direction: Direction::SendRecv,
        ptime: 20,
        srtp: None,
    };
    let to: SocketAddr = ours.local_addr().unwrap();
    let (sip_tx, mut sip_rx) = tokio::sync::mpsc::channel(16);
    // The SIP side's commands (hang-up, REFER) have nowhere to go here.
    tokio::spawn(async move { while sip_rx.recv().await.is_some() {} });
    let (handle, signals) = clinivox::call::spawn(CallId(1), ours, Some(media), &SipConfig::default(), Default::default(), sip_tx);
    // As the SIP task does when the caller's ACK arrives: media may flow.
    let _ = signals.send(CallSignal::Confirmed);
    let report: clinivox::call::apps::Report = Arc::new(|line| println!("{line}"));
    let answered = tokio::spawn(assistant.answer(handle, CALLER.to_string(), None, report));

    let sender = theirs.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let frames = pcm.chunks(FRAME_SAMPLES).map(<[i16]>::to_vec).chain(std::iter::repeat(vec![0i16; FRAME_SAMPLES]));
        for (n, f) in frames.enumerate().take(120 * 50) {
            tick.tick().await;
            let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78];
            p[2..4].copy_from_slice(&(n as u16).to_be_bytes());
            p[4..8].copy_from_slice(&((n * FRAME_SAMPLES) as u32).to_be_bytes());
            p.extend(f.iter().map(|&s| ulaw_encode(s)));
            p.resize(12 + FRAME_SAMPLES, ulaw_encode(0));
            if sender.send_to(&p, to).await.is_err() {
                return;
            }
        }
    });
    let heard = Arc::new(Mutex::new(Vec::new()));
    let sink = heard.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, _)) = theirs.recv_from(&mut buf).await {
            if n > 12 && buf[1] & 0x7f == 0 {
                sink.lock().unwrap().extend(buf[12..n].iter().map(|&b| ulaw_decode(b)));
            }
        }
    });
    Caller { heard, signals, answered }
}

impl Caller {
    /// The caller hangs up (BYE); waits for the assistant to finish the call.
    async fn hang_up(self) -> Vec<i16> {
        let _ = self.signals.send(CallSignal::Ended(EndReason::RemoteBye));
        tokio::time::timeout(Duration::from_secs(60), self.answered).await.expect("the assistant ends the call").unwrap();
        let heard = self.heard.lock().unwrap().clone();
        heard
    }
}

fn rms(pcm: &[i16]) -> f64 {
    if pcm.is_empty() {
        return 0.0;
    }
    (pcm.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / pcm.len() as f64).sqrt()
}

/// 400, 700, 1100 and 1700 Hz, 250 ms each: distinctive, and far from the
/// assistant's voice on the other channel anyway.
fn tones() -> Vec<i16> {
    let mut v = Vec::new();
    for f in [400.0f64, 700.0, 1100.0, 1700.0] {
        v.extend((0..2000).map(|n| ((2.0 * std::f64::consts::PI * f * n as f64 / 8000.0).sin() * 9000.0) as i16));
    }
    v
}

/// The best normalized correlation of `needle` anywhere in `hay`.
fn best_correlation(hay: &[i16], needle: &[i16]) -> (f64, usize) {
    let n: Vec<f64> = needle.iter().map(|&s| f64::from(s)).collect();
    let n_energy = n.iter().map(|x| x * x).sum::<f64>().sqrt();
    let mut best = (0.0, 0);
    for lag in 0..hay.len().saturating_sub(n.len()) {
        let w = &hay[lag..lag + n.len()];
        let w_energy = w.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
        if w_energy == 0.0 {
            continue;
        }
        let dot: f64 = w.iter().zip(&n).map(|(&a, b)| f64::from(a) * b).sum();
        let c = dot / (w_energy * n_energy);
        if c > best.0 {
            best = (c, lag);
        }
    }
    best
}

/// One test at a time looks at the process's log: each starts with it empty.
fn fresh_log() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    let guard = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    common::log_capture().lock().unwrap_or_else(|p| p.into_inner()).clear();
    guard
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
#[cfg_attr(not(clinivox_test_models), ignore = "set CLINIVOX_TEST_MODELS=1")]
fn a_recorded_call_is_announced_and_its_wav_holds_the_caller() {
    let _log = fresh_log();
    let dir = tempfile::tempdir().unwrap();
    let recordings = dir.path().join("recordings");
    // Transcripts logged, as a clinic may choose: the log check below must see them.
    let vars = [
        ("CLINIVOX_CALLS__RECORD_AUDIO", "true".to_string()),
        ("CLINIVOX_CALLS__RECORDINGS_DIR", recordings.display().to_string()),
        ("CLINIVOX_LOGGING__TRANSCRIPTS", "true".to_string()),
    ];
    let config = config(dir.path(), &vars);
    runtime().block_on(async {
        let (assistant, store, _) = assistant(config, dir.path()).await;
        assert!(recordings.is_dir(), "the assistant creates the recordings directory");
        // One second of silence, the tones, then silence while the greeting plays on.
        let mut pcm = vec![0i16; 8000];
        pcm.extend(tones());
        let caller = call(assistant, pcm).await;
        tokio::time::sleep(Duration::from_secs(6)).await;
        let heard = caller.hang_up().await;
        assert!(rms(&heard) > 300.0, "the caller heard the greeting (rms {:.0})", rms(&heard));

        let calls = store.calls(10).await.unwrap();
        assert_eq!(calls.len(), 1, "{calls:?}");
        let path = calls[0].recording_path.clone().expect("the record names its recording");
        assert!(Path::new(&path).starts_with(&recordings), "{path}");

        let mut wav = hound::WavReader::open(&path).expect("a complete WAV");
        let spec = wav.spec();
        assert_eq!((spec.channels, spec.sample_rate, spec.bits_per_sample), (2, 8000, 16));
        let samples: Vec<i16> = wav.samples::<i16>().map(Result::unwrap).collect();
        let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
        let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
        // About the 6 s the call lasted (the first frames come once RTP flows).
        let seconds = left.len() as f64 / 8000.0;
        assert!((4.0..=9.0).contains(&seconds), "{seconds:.1} s recorded");
        // The caller's tones, through G.711 and the jitter buffer, on the left.
        let (c, lag) = best_correlation(&left, &tones());
        println!("tones found at {:.2} s, correlation {c:.3}", lag as f64 / 8000.0);
        assert!(c > 0.9, "the caller's tones are on the left channel (best correlation {c:.3} at sample {lag})");
        assert!((0.5..=2.5).contains(&(lag as f64 / 8000.0)), "the tones start about 1 s into the call: {lag}");
        // Not on the right, which carries the assistant's greeting.
        let (c_right, _) = best_correlation(&right, &tones());
        assert!(c_right < 0.5, "the tones leaked into the assistant's channel ({c_right:.3})");
        assert!(rms(&right) > 300.0, "the assistant's speech is on the right channel (rms {:.0})", rms(&right));

        // The notice was said (and stored) right after the greeting.
        let language = clinivox::conversation::Language::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/prompts")), "es").unwrap();
        let notice = language.prompts.say("recording_notice", &[]);
        let turns = store.call(&calls[0].id).await.unwrap().turns;
        let said: Vec<&str> = turns.iter().filter(|t| t.speaker == "assistant").map(|t| t.text.as_str()).collect();
        assert!(said.len() >= 2 && said[0].contains("San Rafael") && said[1] == notice, "{said:?}");

        // Owner-only: the recording holds a patient's voice.
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(Path::new(&path)), mode(&recordings)), (0o600, 0o700));
        assert_eq!(mode(&dir.path().join("clinivox-test.db")), 0o600, "the database too");

        // `[logging] transcripts = true`: what the assistant said is in the
        // log, and the check that guards the default finds it.
        let leaks = common::personal_data_in_log(&common::captured_log(), &["San Rafael"]);
        assert!(!leaks.is_empty(), "with transcripts on, the greeting is logged");
    });
}

#[test]
#[cfg_attr(not(clinivox_test_models), ignore = "set CLINIVOX_TEST_MODELS=1")]
fn a_caller_turned_away_when_lines_are_busy_is_recorded_and_counted() {
    let _log = fresh_log();
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &[("CLINIVOX_CALLS__MAX_ACTIVE", "1".to_string())]);
    runtime().block_on(async {
        let (assistant, store, metrics) = assistant(config, dir.path()).await;
        // One call in progress fills the only line.
        let in_progress = metrics.call_started(std::time::Instant::now());
        let caller = call(assistant, Vec::new()).await;
        // The busy message is about 6 s; the caller hears some of it and hangs up.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let heard = caller.hang_up().await;
        drop(in_progress);
        assert!(rms(&heard) > 300.0, "the caller heard the busy message (rms {:.0})", rms(&heard));

        let calls = store.calls(10).await.unwrap();
        assert_eq!(calls.len(), 1, "{calls:?}");
        let c = &calls[0];
        assert_eq!((c.direction.as_str(), c.remote_number.as_str(), c.outcome.as_deref()), ("inbound", "+34600222333", Some("busy")));
        assert_eq!(c.language.as_deref(), Some("es"));
        let ended = c.ended_at.expect("the refusal is a closed record");
        assert!(ended >= c.started_at && ended - c.started_at <= chrono::Duration::seconds(30), "{c:?}");
        assert!(store.call(&c.id).await.unwrap().turns.is_empty());

        let counted = store.metric_samples().await.unwrap().into_iter().find(|(name, labels, _)| {
            *name == "clinivox_calls_total"
                && labels.contains(&("direction", "inbound".into()))
                && labels.contains(&("outcome", "busy".into()))
        });
        assert_eq!(counted.map(|s| s.2), Some(1));
        let live = metrics.render("n1");
        assert!(live.contains("clinivox_calls_busy_total{node=\"n1\"} 1"), "the live counter of refusals too:\n{live}");
        let leaks = common::personal_data_in_log(&common::captured_log(), &[]);
        assert!(leaks.is_empty(), "by default the log names no caller:\n{}", leaks.join("\n"));
    });
}

/// A service whose assistant cannot start (here: its model is not
/// installed) stops at once with that error and never opens its SIP port,
/// so a caller's INVITE meets a closed port (ICMP "port unreachable", which
/// carriers fail over on) instead of ringing into silence for a minute.
/// Needs no model: that is the point.
#[test]
fn a_service_whose_assistant_cannot_start_stops_and_leaves_no_caller_waiting() {
    let _log = fresh_log();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let text = clinivox::config::DEMO_TOML.replace(
        "listen = [\n  { transport = \"udp\", addr = \"127.0.0.1:5060\" },\n  { transport = \"tcp\", addr = \"127.0.0.1:5060\" },\n]",
        &format!("listen = [ {{ transport = \"udp\", addr = \"127.0.0.1:{port}\" }} ]"),
    );
    assert!(text.contains(&format!("127.0.0.1:{port}")), "the demo's [sip] listen line changed; update this test");
    let vars = [
        ("CLINIVOX_CALLS__APP".to_string(), "assistant".to_string()),
        ("CLINIVOX_SPEECH__MODELS_DIR".to_string(), dir.path().join("no-models").display().to_string()),
        ("CLINIVOX_DATABASE__URL".to_string(), format!("sqlite://{}", dir.path().join("t.db").display())),
    ];
    let config = Arc::new(clinivox::config::from_toml(&text, "test", vars).expect("test configuration is valid"));
    runtime().block_on(async {
        let store = clinivox::testing::sqlite_store(dir.path(), &config).await.unwrap();
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let clock: Arc<dyn clinivox::clock::Clock> = Arc::new(clinivox::clock::SystemClock);
        let run = clinivox::app::run(config.clone(), store, clock, http, std::future::pending());
        let outcome = tokio::time::timeout(Duration::from_secs(30), run).await.expect("app::run stops instead of serving");
        let error = outcome.expect_err("no model, no service").to_string();
        assert!(error.contains("not installed") && error.contains("models fetch"), "the error says what to do: {error}");

        // A caller's OPTIONS (an INVITE would fare the same) is refused by the
        // kernel at once: nothing holds the port.
        let probe = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let sip: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        probe.connect(sip).await.unwrap();
        let options = format!(
            "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKdead\r\nMax-Forwards: 70\r\n\
             From: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: dead@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        probe.send(options.as_bytes()).await.unwrap();
        let mut buf = [0u8; 2048];
        let answer = tokio::time::timeout(Duration::from_secs(2), probe.recv(&mut buf)).await.expect("an answer at once, not silence");
        assert_eq!(answer.map_err(|e| e.kind()), Err(std::io::ErrorKind::ConnectionRefused), "the SIP port is closed");
        let log = common::captured_log();
        assert!(
            log.lines().any(|l| l.contains("ERROR") && l.contains("voice assistant cannot start") && l.contains("not installed")),
            "the log says why the service stopped:\n{log}"
        );
    });
}
