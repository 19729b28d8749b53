//! The recognition pool with real models (CLINIVOX_TEST_MODELS=1; models
//! come from the same cache as tests/real_model.rs). Needs espeak-ng.
#![cfg(feature = "whisper")]

use std::path::PathBuf;
use std::time::Duration;

use clinivox::speech::fair_queue::CallKey;
use clinivox::speech::guard::Dropped;
use clinivox::speech::pool::{PoolConfig, PoolError, RecognitionPool, Request};
use clinivox::speech::tts::{Espeak, EspeakConfig, SpeechEngine};

fn model(name: &str) -> PathBuf {
    let root =
        std::env::var_os("CLINIVOX_TEST_CACHE").map(PathBuf::from).unwrap_or_else(|| std::env::temp_dir().join("clinivox-speech-test"));
    let (cache, models_dir) = (root.join("cache"), root.join("models"));
    clinivox::speech::models::fetch(name, &cache, &models_dir, &mut |_| {}).unwrap()
}

fn cfg(name: &str, workers: usize) -> PoolConfig {
    PoolConfig {
        model: model(name),
        workers,
        threads_per_worker: 1,
        max_queued: 8,
        guard: Default::default(),
        languages: ["es", "en", "it", "pt"].map(String::from).to_vec(),
    }
}

fn req(call: u64, pcm: Vec<i16>, lang: Option<&str>) -> Request {
    Request {
        call: CallKey(call),
        pcm,
        language: lang.map(str::to_string),
        initial_prompt: Some("Clínica San Rafael. Cardiología, dermatología, traumatología. Dra. Ruiz, Dr. Okafor.".into()),
        detect: false,
    }
}

#[test]
#[cfg_attr(not(clinivox_test_models), ignore = "set CLINIVOX_TEST_MODELS=1")]
fn pool_detects_language_gates_silence_and_serves_async() {
    let pool = RecognitionPool::start(cfg("base", 2)).unwrap();
    assert!(pool.is_multilingual());
    let tts = Espeak::new(EspeakConfig::default());
    let es = tts.synthesize("Quiero una cita con la doctora Ruiz en cardiología.", "es").unwrap();

    // First utterance of a call: detect the language, then lock it.
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let r = rt.block_on(pool.recognize(req(1, es.clone(), None))).unwrap();
    eprintln!("{r:?}");
    assert_eq!(r.language.as_deref(), Some("es"));
    let text = r.text.to_lowercase();
    assert!(text.contains("cita") && text.contains("cardiolog"), "{text}");

    // A call greeted in Spanish whose caller answers in English: decoded in
    // Spanish first, the detector is sure it is English, decoded again.
    let en = tts.synthesize("I would like to book an appointment with the dermatologist.", "en").unwrap();
    let r = rt.block_on(pool.recognize(Request { detect: true, ..req(1, en, Some("es")) })).unwrap();
    eprintln!("{r:?}");
    assert_eq!(r.language.as_deref(), Some("en"), "{r:?}");
    assert!(r.language_prob.is_some_and(|p| p >= 0.5), "{r:?}");
    assert!(r.text.to_lowercase().contains("appointment"), "{r:?}");
    // The same check on Spanish speech keeps Spanish.
    let r = rt.block_on(pool.recognize(Request { detect: true, ..req(1, es.clone(), Some("es")) })).unwrap();
    assert_eq!(r.language.as_deref(), Some("es"), "{r:?}");

    // Silence never reaches Whisper.
    let r = rt.block_on(pool.recognize(req(1, vec![0; 16_000], Some("es")))).unwrap();
    assert_eq!(r.dropped, Some(Dropped::NotSpeech));
    assert_eq!(r.decoding, Duration::ZERO);

    // Bad input is an error, not a panic.
    let e = rt.block_on(pool.recognize(req(1, es.clone(), Some("xx\0")))).unwrap_err();
    assert!(matches!(e, PoolError::Stt(_)), "{e}");
}

#[test]
#[cfg_attr(not(clinivox_test_models), ignore = "set CLINIVOX_TEST_MODELS=1")]
fn round_robin_serves_a_second_call_before_a_long_callers_backlog() {
    // One worker, so the order of completion is the order of service.
    let pool = RecognitionPool::start(cfg("tiny.en", 1)).unwrap();
    let tts = Espeak::new(EspeakConfig::default());
    let long = tts.synthesize("I would like to book an appointment with the cardiologist next Tuesday.", "en").unwrap();
    let short = tts.synthesize("Cancel my appointment.", "en").unwrap();
    // Calls 1 and 3 queue two long turns each (a call's share), then call 2 one.
    let mut a: Vec<_> = [1, 1, 3, 3].iter().map(|&c| pool.submit(req(c, long.clone(), Some("en"))).unwrap()).collect();
    let b = pool.submit(req(2, short, Some("en"))).unwrap();
    let b = b.blocking_recv().unwrap().unwrap();
    // By the time call 2 is answered, at most three of the four long turns
    // ran: the one the worker may have taken at once, then one turn of each
    // call ahead in the round — never the whole backlog.
    let done: Vec<bool> = a.iter_mut().map(|rx| rx.try_recv().is_ok()).collect();
    let done_before_b = done.iter().filter(|&&d| d).count();
    assert!(done_before_b <= 3, "{done_before_b} long turns ran first");
    assert!(b.text.to_lowercase().contains("appointment"), "{b:?}");
    for (rx, d) in a.into_iter().zip(done) {
        if !d {
            let _ = rx.blocking_recv();
        }
    }
    // A call over its share (two): its oldest waiting turn gives way to the
    // newest, whichever of the first two the worker has taken already.
    let c5: Vec<_> = (0..3).map(|_| pool.submit(req(5, long.clone(), Some("en"))).unwrap()).collect();
    let results: Vec<_> = c5.into_iter().map(|rx| rx.blocking_recv().unwrap()).collect();
    let superseded = results.iter().filter(|r| matches!(r, Err(PoolError::Superseded))).count();
    assert_eq!(superseded, 1, "{results:?}");
    assert!(results[2].is_ok(), "the newest is recognised: {results:?}");
    // A bounded queue refuses rather than grows (one turn from each of many calls).
    let mut held = Vec::new();
    let mut busy = false;
    for call in 10..30 {
        match pool.submit(req(call, long.clone(), Some("en"))) {
            Ok(rx) => held.push(rx),
            Err(PoolError::Busy(n)) => {
                busy = n >= 8;
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(busy);
    let cancelled: usize = (10..30).map(|c| pool.cancel_call(CallKey(c))).sum();
    assert!(cancelled >= 7, "{cancelled}");
    // English-only model: other languages are refused.
    let e = pool.submit(req(4, vec![1000; 8_000], Some("es"))).unwrap().blocking_recv().unwrap();
    assert!(e.is_err() || e.unwrap().dropped.is_some());
}
