//! The recognition pool: a fixed set of blocking worker threads, each
//! owning a loaded Whisper model, serving requests from async code.
//!
//! Whisper runs for hundreds of milliseconds per utterance and uses every
//! thread it is given; on a tokio worker it would stall every call's RTP.
//! So requests go into a [`FairQueue`] (FIFO per call, round-robin across
//! calls) under a mutex, workers take them in turn, and each answer comes
//! back through a tokio oneshot the call task awaits. The queue is bounded:
//! when it is full, [`RecognitionPool::submit`] says so at once, and the
//! conversation can ask the caller to repeat rather than wait unboundedly.
//!
//! Each worker resamples 8 kHz phone audio to 16 kHz and applies the
//! [`super::guard`]s itself, so no audio processing happens on the runtime.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::fair_queue::{CallKey, FairQueue};
use super::guard::{self, Dropped, GuardConfig};
use super::resample::phone_to_asr;
use super::stt::{SttError, TranscribeOptions, Transcriber};

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub model: PathBuf,
    /// Worker threads, each with its own copy of the model in memory.
    pub workers: usize,
    /// Threads whisper.cpp uses inside one worker.
    pub threads_per_worker: i32,
    /// Requests waiting (not running) before `submit` refuses more.
    pub max_queued: usize,
    pub guard: GuardConfig,
    /// Languages the clinic serves; detection picks among them.
    pub languages: Vec<String>,
}

/// One utterance to recognise.
#[derive(Debug, Clone)]
pub struct Request {
    pub call: CallKey,
    /// 8 kHz mono phone audio, as the endpointer cut it.
    pub pcm: Vec<i16>,
    /// ISO code; `None` detects it (do that once per call, then lock it:
    /// detection doubles the encoder cost).
    pub language: Option<String>,
    /// The clinic's vocabulary: specialties, provider and clinic names.
    pub initial_prompt: Option<String>,
    /// With a `language`: also run the language detector over the pool's
    /// languages, and decode again (without the prompt) in another one it
    /// is sure of ([`SWITCH_PROB`]). For a call's first words, when the
    /// caller may not speak the language they were greeted in.
    pub detect: bool,
}

/// Least detector probability for `Request::detect` to decode in another language.
/// 0.5 moved a Spanish caller ("Llamo para confirmar mi cita…", espeak at
/// 8 kHz) to Italian; English answers to a Spanish greeting scored 0.80.
pub const SWITCH_PROB: f32 = 0.75;

#[derive(Debug, Clone)]
pub struct Recognition {
    /// Empty when `dropped` is set.
    pub text: String,
    /// Decoded (or detected) language.
    pub language: Option<String>,
    /// How sure the detection was, when the request left the language open.
    pub language_prob: Option<f32>,
    pub dropped: Option<Dropped>,
    pub no_speech_prob: f32,
    pub audio_ctx: i32,
    /// Time in the queue and time decoding.
    pub waited: Duration,
    pub decoding: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("recognition queue is full ({0} waiting)")]
    Busy(usize),
    #[error("recognition pool has shut down")]
    Closed,
    /// A newer request of the same call took this one's place.
    #[error("a newer utterance of the same call replaced this one")]
    Superseded,
    #[error("this call already has {MAX_IN_FLIGHT_PER_CALL} recognitions running")]
    CallBusy,
    #[error("starting a worker thread: {0}")]
    Spawn(std::io::Error),
    #[error("no workers configured")]
    NoWorkers,
    #[error(transparent)]
    Stt(#[from] SttError),
}

type Reply = oneshot::Sender<Result<Recognition, PoolError>>;

struct Job {
    req: Request,
    queued: Instant,
    reply: Reply,
}

#[derive(Default)]
struct Queue {
    jobs: FairQueue<Job>,
    /// Requests being recognised now, per call.
    running: std::collections::HashMap<CallKey, usize>,
    closed: bool,
}

impl Queue {
    fn in_flight(&self, call: CallKey) -> usize {
        self.jobs.pending_for(call) + self.running.get(&call).copied().unwrap_or(0)
    }
}

/// Recognitions one call may have waiting or running at once: its early
/// (speculative) request and the final one. A caller who keeps talking
/// cannot fill the queue that every other call shares.
pub const MAX_IN_FLIGHT_PER_CALL: usize = 2;

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Workers never panic while holding the lock (they only push/pop),
        // so a poisoned queue is still consistent.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct RecognitionPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    max_queued: usize,
    multilingual: bool,
}

impl RecognitionPool {
    /// Starts the workers and waits until each has loaded its model, so a
    /// bad model path fails here, at start-up, not on the first caller.
    pub fn start(cfg: PoolConfig) -> Result<Self, PoolError> {
        if cfg.workers == 0 {
            return Err(PoolError::NoWorkers);
        }
        let shared = Arc::new(Shared { queue: Mutex::new(Queue::default()), ready: Condvar::new() });
        let mut workers = Vec::new();
        let mut multilingual = false;
        for i in 0..cfg.workers {
            let (loaded_tx, loaded_rx) = std::sync::mpsc::channel();
            let (shared2, cfg2) = (shared.clone(), cfg.clone());
            let handle = std::thread::Builder::new()
                .name(format!("whisper-{i}"))
                .spawn(move || {
                    // The model is loaded on the worker's own thread: the
                    // context never crosses threads.
                    match Transcriber::load(&cfg2.model) {
                        Ok(t) => {
                            let _ = loaded_tx.send(Ok(t.is_multilingual()));
                            worker(&shared2, &t, &cfg2);
                        }
                        Err(e) => {
                            let _ = loaded_tx.send(Err(e));
                        }
                    }
                })
                .map_err(PoolError::Spawn)?;
            workers.push(handle);
            match loaded_rx.recv() {
                Ok(Ok(m)) => multilingual = m,
                Ok(Err(e)) => {
                    shutdown(&shared, std::mem::take(&mut workers));
                    return Err(e.into());
                }
                Err(_) => {
                    shutdown(&shared, std::mem::take(&mut workers));
                    return Err(PoolError::Closed);
                }
            }
        }
        Ok(Self { shared, workers, max_queued: cfg.max_queued, multilingual })
    }

    pub fn is_multilingual(&self) -> bool {
        self.multilingual
    }

    /// Queues a request; the receiver yields the result. Never blocks.
    pub fn submit(&self, req: Request) -> Result<oneshot::Receiver<Result<Recognition, PoolError>>, PoolError> {
        let (tx, rx) = oneshot::channel();
        let mut q = self.shared.lock();
        if q.closed {
            return Err(PoolError::Closed);
        }
        let call = req.call;
        // Over its share, a call's oldest waiting request gives way to the
        // new one (what was just said matters more); with none waiting, both
        // of its requests are being recognised, and the new one is refused.
        if q.in_flight(call) >= MAX_IN_FLIGHT_PER_CALL {
            match q.jobs.pop_oldest_of(call) {
                Some(old) => {
                    let _ = old.reply.send(Err(PoolError::Superseded));
                }
                None => return Err(PoolError::CallBusy),
            }
        }
        if q.jobs.len() >= self.max_queued {
            return Err(PoolError::Busy(q.jobs.len()));
        }
        q.jobs.push(call, Job { req, queued: Instant::now(), reply: tx });
        drop(q);
        self.shared.ready.notify_one();
        Ok(rx)
    }

    /// Queues a request and awaits the answer.
    pub async fn recognize(&self, req: Request) -> Result<Recognition, PoolError> {
        self.submit(req)?.await.map_err(|_| PoolError::Closed)?
    }

    /// The call hung up: drop its waiting requests (running ones finish).
    pub fn cancel_call(&self, call: CallKey) -> usize {
        self.shared.lock().jobs.remove_call(call)
    }

    pub fn queued(&self) -> usize {
        self.shared.lock().jobs.len()
    }
}

impl Drop for RecognitionPool {
    fn drop(&mut self) {
        shutdown(&self.shared, std::mem::take(&mut self.workers));
    }
}

fn shutdown(shared: &Shared, workers: Vec<JoinHandle<()>>) {
    shared.lock().closed = true;
    shared.ready.notify_all();
    for w in workers {
        let _ = w.join();
    }
}

fn worker(shared: &Shared, model: &Transcriber, cfg: &PoolConfig) {
    loop {
        let (call, job) = {
            let mut q = shared.lock();
            loop {
                if let Some((call, job)) = q.jobs.pop() {
                    // Counted as running before the lock is let go, so a
                    // submit in between sees the call's share right.
                    *q.running.entry(call).or_default() += 1;
                    break (call, job);
                }
                if q.closed {
                    return;
                }
                q = shared.ready.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        // The caller may have gone (hang-up, timeout): skip the work.
        if !job.reply.is_closed() {
            let waited = job.queued.elapsed();
            let result = run(model, &job.req, cfg).map(|mut r| {
                r.waited = waited;
                r
            });
            let _ = job.reply.send(result);
        }
        let mut q = shared.lock();
        if let Some(n) = q.running.get_mut(&call) {
            *n -= 1;
            if *n == 0 {
                q.running.remove(&call);
            }
        }
    }
}

fn run(model: &Transcriber, req: &Request, cfg: &PoolConfig) -> Result<Recognition, PoolError> {
    let stats = guard::audio_stats(&req.pcm);
    let mut out = Recognition {
        text: String::new(),
        language: req.language.clone(),
        language_prob: None,
        dropped: None,
        no_speech_prob: 0.0,
        audio_ctx: 0,
        waited: Duration::ZERO,
        decoding: Duration::ZERO,
    };
    if let Some(d) = guard::gate(&stats, &cfg.guard) {
        out.dropped = Some(d);
        return Ok(out);
    }
    let pcm = phone_to_asr(&req.pcm);
    let opts = TranscribeOptions {
        language: req.language.clone(),
        threads: cfg.threads_per_worker,
        audio_ctx: None,
        initial_prompt: req.initial_prompt.clone(),
        candidates: cfg.languages.clone(),
        switch_language: req.detect.then_some(SWITCH_PROB),
    };
    let t = model.transcribe(&pcm, &opts)?;
    out.language = t.language.or(out.language);
    out.language_prob = t.language_prob;
    out.no_speech_prob = t.no_speech_prob;
    out.audio_ctx = t.audio_ctx;
    out.decoding = t.elapsed;
    out.dropped = guard::check(&t.text, t.no_speech_prob, &stats, &cfg.guard);
    if out.dropped.is_none() {
        out.text = t.text;
    }
    Ok(out)
}
