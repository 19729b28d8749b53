//! Blind transfer by REFER, end to end, inside a loopback-only network
//! namespace (`unshare -n`: this test binary runs itself again in one):
//! the whole service (`app::run`, demo clinic, temporary SQLite store, the
//! voice assistant with the Whisper base model) whose reception group is
//! `transfer = "refer"`, and SIPp as the caller
//! (`uac_asks_for_reception.xml`): it lets the greeting play, presses 0
//! (SIP INFO), receives the REFER to the group's URI, answers 202 and
//! reports the transfer's progress by NOTIFY (100, then 200); Clinivox
//! leaves the call with BYE. The call record says `transferred`.
//!
//! Needs sipp, `unshare -n` and CLINIVOX_TEST_MODELS=1.
#![cfg(feature = "whisper")]

#[path = "sip/common.rs"]
mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clinivox::clock::{Clock, SystemClock};
use common::{assistant_config, demo_toml_on_udp, have, open_all_day, rerun_isolated};

/// Set in the copy of this binary that runs inside the namespace.
const INSIDE: &str = "CLINIVOX_REFER_E2E_INSIDE";
/// Where the reception group sends callers (what the scenario checks).
const REFER_TO: &str = "sip:reception@192.0.2.50";

fn scenario(name: &str) -> String {
    format!("{}/tests/sip/scenarios/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The demo clinic on 127.0.0.1:5060 (UDP), reception reached by REFER,
/// open all day (out of hours a request for a person becomes a callback
/// request, with no transfer).
fn config(dir: &Path) -> clinivox::config::Config {
    let text = demo_toml_on_udp(dir).replace(
        "[[groups]]\nname = \"reception\"\nmembers = [\"201\", \"202\"]\nstrategy = \"all\"\nring_timeout_s = 20\n",
        &format!("[[groups]]\nname = \"reception\"\ntransfer = \"refer\"\nrefer_to = \"{REFER_TO}\"\n"),
    );
    assert!(text.contains("transfer = \"refer\""), "the demo's reception group changed; update this test");
    let mut c = assistant_config(&text, dir);
    open_all_day(&mut c);
    c
}

/// What SIPp streams to keep the RTP flowing: silence (µ-law).
fn caller_wav(path: &Path) {
    let rate = clinivox::speech::tts::RATE;
    clinivox::speech::wav::write_ulaw(path, rate, &vec![0i16; 60 * rate as usize]).unwrap();
}

#[test]
#[cfg_attr(not(clinivox_test_models), ignore = "set CLINIVOX_TEST_MODELS=1")]
fn a_caller_asking_for_reception_is_referred_to_the_groups_uri() {
    if std::env::var_os(INSIDE).is_none() {
        if !have("sipp", "sip-tester") {
            return;
        }
        rerun_isolated(INSIDE, "a_caller_asking_for_reception_is_referred_to_the_groups_uri", 300);
        return;
    }
    let _ = tracing_subscriber::fmt().with_env_filter("info,clinivox::calls=debug").with_test_writer().try_init();
    let dir = tempfile::tempdir().unwrap();
    caller_wav(&dir.path().join("caller.wav"));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let config = Arc::new(config(dir.path()));
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = clinivox::app::open_store(&config, clock.as_ref()).await.unwrap();
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let service = tokio::spawn(clinivox::app::run(config.clone(), store.clone(), clock.clone(), http, async move {
            let _ = stop_rx.await;
        }));
        // The assistant loads Whisper before the SIP side listens: wait for
        // an answer to OPTIONS.
        let options = "OPTIONS sip:+34911234567@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKready\r\n\
                       From: <sip:probe@127.0.0.1:5071>;tag=1\r\nTo: <sip:+34911234567@127.0.0.1:5060>\r\nCall-ID: ready@test\r\n\
                       CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let target = "127.0.0.1:5060".parse().unwrap();
        let waited = Instant::now();
        while common::udp_exchange(target, options.as_bytes(), Duration::from_millis(500)).await.is_none() {
            assert!(waited.elapsed() < Duration::from_secs(90), "the service never answered OPTIONS");
            assert!(!service.is_finished(), "the service stopped early");
        }

        let log = std::fs::File::create(dir.path().join("sipp.log")).unwrap();
        let mut sipp = common::Peer::spawn(
            std::process::Command::new("sipp")
                .args(["127.0.0.1:5060", "-sf", &scenario("uac_asks_for_reception.xml"), "-s", "+34911234567"])
                .args(["-i", "127.0.0.1", "-p", "5070", "-mi", "127.0.0.1", "-m", "1", "-nd", "-trace_err", "-trace_msg", "-trace_logs"])
                .args(["-timeout", "120s", "-timeout_error"])
                .current_dir(dir.path())
                .stdout(log.try_clone().unwrap())
                .stderr(log),
            "sipp",
        );
        let started = Instant::now();
        let sipp_ok = loop {
            if let Some(status) = sipp.try_wait().unwrap() {
                break status.success();
            }
            if started.elapsed() > Duration::from_secs(150) {
                let _ = sipp.kill();
                break false;
            }
            assert!(!service.is_finished(), "the service stopped early");
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        // The call record is closed by the conversation (transferred) when it
        // hands over; wait for the BYE's aftermath to settle.
        let mut calls = Vec::new();
        for _ in 0..50 {
            calls = store.calls(10).await.unwrap();
            if calls.iter().all(|c| c.ended_at.is_some()) && !calls.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let turns = match calls.first() {
            Some(c) => store.call(&c.id).await.unwrap().turns,
            None => Vec::new(),
        };
        // Stopping the service closes the store.
        let _ = stop_tx.send(());
        service.await.unwrap().unwrap();
        if !sipp_ok {
            for f in std::fs::read_dir(dir.path()).unwrap().flatten().filter(|f| f.path().extension().is_some_and(|e| e == "log")) {
                println!("--- {} ---\n{}", f.path().display(), std::fs::read_to_string(f.path()).unwrap_or_default());
            }
        }
        assert!(sipp_ok, "SIPp saw a failed call (no REFER, a wrong Refer-To, or an unexpected message)");

        assert_eq!(calls.len(), 1, "{calls:?}");
        let call = &calls[0];
        assert_eq!((call.direction.as_str(), call.remote_number.as_str()), ("inbound", "+34600222333"));
        assert_eq!(call.outcome.as_deref(), Some("transferred"), "{call:?}");
        assert_eq!(call.transfer_target.as_deref(), Some("reception"), "{call:?}");
        assert!(turns.iter().any(|t| t.speaker == "caller" && t.text == "DTMF 0"), "{turns:?}");
    });
}
