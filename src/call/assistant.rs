//! `[calls] app = "assistant"`: the voice assistant on the phone line. One
//! task per inbound call joins the layers: caller audio goes through the
//! [`Endpointer`] into the shared [`RecognitionPool`], transcripts and key
//! presses go to a conversation [`Session`] (which talks to the store), and
//! each `Say` is synthesized sentence by sentence on a blocking thread and
//! played back while the rest is still being rendered.
//!
//! The task is one loop over one closed [`Input`] enum: call events,
//! results coming back from recognition and synthesis, and a single
//! silence deadline. Everything it decides is kept in [`Line`].
//!
//! Transfers are bridged (`super::transfer`): once the hand-over message
//! has been played, the caller hears a ring-back tone while the staff
//! phones ring with the call's context in `X-Clinivox-*` headers; whoever
//! answers first hears a one-line spoken briefing, then the two legs are
//! joined and this task only relays hang-ups. Nobody answers, or nobody
//! can be rung: the conversation hears it (`Session::transfer_failed`)
//! and takes a callback request. Without a SIP handle (no `[sip]`
//! driver), a REFER to the first `[[staff]]` entry with a `uri`.
//!
//! Turn latency (end of the caller's speech → transcript → first reply
//! audio sent) is logged per turn and, once the first audio is sent,
//! written to the assistant's turn (`transcript_ms`, `latency_ms`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use tokio::sync::{mpsc, oneshot};

use super::admission::{admit, Admission, CallerLedger, Limits, Load};
use super::apps::Report;
use super::records;
use super::transfer::{self, Rung};
use super::{CallCommand, CallEvent, CallHandle};
use crate::config::Config;
use crate::conversation::driver::Session;
use crate::conversation::nlu::Vocabulary;
use crate::conversation::{voicemail_message, Outreach, OutreachResult};
use crate::conversation::{Action, Context, Direction, Language, LanguageError, Patience, TransferGroup};
use crate::escalation::refill::OfferOutcome;
use crate::escalation::scheduler::CallOutcome;
use crate::metrics::{ActiveCall, Metrics, TransferResult};
use crate::phone::E164;
use crate::sip::driver::SipHandle;
use crate::sip::endpoint::DialTarget;
use crate::speech::endpoint::{EndpointConfig, EndpointEvent, Endpointer, Prompt};
use crate::speech::fair_queue::CallKey;
use crate::speech::pool::{PoolConfig, PoolError, Recognition, RecognitionPool, Request};
use crate::speech::tts::{self, Espeak, EspeakConfig, SpeechEngine, TtsError, Voice};
use crate::speech::tts_cache::CachedEngine;
use crate::speech::vad::WebRtcVad;
use crate::speech::voicemail::{self, Verdict, VoicemailDetector};
use crate::store::Store;

#[path = "assistant_transfer.rs"]
mod handover;
#[path = "assistant_hearing.rs"]
mod hearing;
#[path = "assistant_outbound.rs"]
mod outbound;
use handover::staff_event;
use outbound::{Outbound, Screening};

/// How long the caller may stay silent after a prompt before the
/// conversation hears about it.
const SILENCE_TIMEOUT: Duration = Duration::from_secs(8);
/// Hang-over while the caller dictates a date of birth or spells a name
/// (they pause between day, month and year).
const DOB_PATIENCE: Duration = Duration::from_millis(2000);
const NAME_PATIENCE: Duration = Duration::from_millis(1500);
/// How long staff phones ring when the group does not say.
const RING_TIMEOUT: Duration = Duration::from_secs(20);
/// Prompts kept in memory by the TTS cache (greetings and menus repeat).
const TTS_CACHE_PROMPTS: usize = 512;
/// Recognition requests waiting, across calls, before new ones are refused.
const MAX_QUEUED: usize = 32;
/// A `PlaybackDone` this long before the audio we sent should have ended
/// belongs to an earlier prompt (it crossed our next `Play` in the channel).
const DONE_SLACK: Duration = Duration::from_millis(300);

#[derive(Debug, thiserror::Error)]
pub enum AssistantError {
    #[error("the assistant needs a [speech] section")]
    NoSpeech,
    #[error("prompts: {0}")]
    Language(#[from] LanguageError),
    #[error("speech model: {0}")]
    Model(#[from] crate::speech::models::ModelsError),
    #[error("recognition pool: {0}")]
    Pool(#[from] PoolError),
    #[error("speech synthesis: {0}")]
    Tts(#[from] TtsError),
    #[error("start-up task failed: {0}")]
    Join(String),
    #[error("recordings directory {0}: {1}")]
    Recordings(String, std::io::Error),
}

/// One of the clinic's languages, ready for calls.
struct Spoken {
    language: Arc<Language>,
    /// The clinic's words, so Whisper spells specialties right.
    initial_prompt: String,
}

/// What every call shares, built once at start-up.
pub struct Assistant {
    store: Store,
    config: Arc<Config>,
    /// The clinic's first language: greetings of unknown callers, the
    /// "lines busy" message.
    language: Arc<Language>,
    /// Every clinic language with prompts, by code (the first included).
    languages: BTreeMap<String, Spoken>,
    vocabulary: Arc<Vocabulary>,
    pool: Arc<RecognitionPool>,
    tts: Arc<dyn SpeechEngine>,
    /// Where blind transfers go: the first staff entry with a SIP URI.
    reception: Option<String>,
    /// Staff phones rung for a bridged transfer when the conversation's
    /// group is not configured: every `[[staff]]` (URI, else extension).
    staff: Vec<DialTarget>,
    next_key: AtomicU64,
    /// Live counters, shared with `/metrics`.
    metrics: Arc<Metrics>,
    /// Calls per caller ID (`[calls] max_per_caller`, `max_per_caller_per_hour`).
    callers: Arc<std::sync::Mutex<CallerLedger>>,
}

/// One counted call of a caller ID; given back when the call ends.
struct CallerSlot {
    ledger: Arc<std::sync::Mutex<CallerLedger>>,
    caller: String,
}

impl Drop for CallerSlot {
    fn drop(&mut self) {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner()).finish(&self.caller);
    }
}

// Calls share one assistant; two are "equal" only if they are the same one
// (`apps::App` compares applications).
impl PartialEq for Assistant {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}
impl Eq for Assistant {}

impl std::fmt::Debug for Assistant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assistant").field("language", &self.language.prompts.lang()).field("reception", &self.reception).finish()
    }
}

impl Assistant {
    /// Loads the prompts, the Whisper workers (each loads the model: a bad
    /// model fails here, not on the first caller) and the TTS engine.
    pub async fn start(config: Arc<Config>, store: Store, prompts_dir: &Path, metrics: Arc<Metrics>) -> Result<Assistant, AssistantError> {
        let speech = config.speech.clone().ok_or(AssistantError::NoSpeech)?;
        let lang = config.clinic.languages.first().cloned().unwrap_or_else(|| "es".into());
        let language = Arc::new(Language::load(prompts_dir, &lang)?);
        let mut languages = BTreeMap::new();
        languages.insert(lang.clone(), Spoken { language: language.clone(), initial_prompt: initial_prompt(&config, &lang) });
        for other in config.clinic.languages.iter().filter(|l| **l != lang) {
            match Language::load(prompts_dir, other) {
                Ok(l) => {
                    languages.insert(other.clone(), Spoken { language: Arc::new(l), initial_prompt: initial_prompt(&config, other) });
                }
                // The clinic still answers in its first language.
                Err(e) => {
                    tracing::warn!(language = %other, error = %e, "no prompts for a clinic language; its callers are answered in {lang}")
                }
            }
        }
        let model = crate::speech::models::installed_path(&speech.models_dir, &speech.model)?;
        let pool_cfg = PoolConfig {
            model,
            workers: speech.workers,
            threads_per_worker: speech.threads_per_worker,
            max_queued: MAX_QUEUED,
            guard: Default::default(),
            languages: config.clinic.languages.clone(),
        };
        let pool = tokio::task::spawn_blocking(move || RecognitionPool::start(pool_cfg))
            .await
            .map_err(|e| AssistantError::Join(e.to_string()))??;
        let mut espeak = EspeakConfig::default();
        for (l, (name, rate_wpm)) in &speech.voices {
            espeak.voices.insert(l.clone(), Voice { name: name.clone(), rate_wpm: *rate_wpm });
        }
        let tts = CachedEngine::new(Espeak::new(espeak), TTS_CACHE_PROMPTS, None)?;
        if config.calls.record_audio {
            let dir = config.calls.recordings_dir.clone();
            crate::private_files::create_dir(&dir).map_err(|e| AssistantError::Recordings(dir.display().to_string(), e))?;
        }
        let reception = config.staff.iter().find_map(|s| s.uri.clone());
        let staff = config.staff.iter().map(|s| transfer::member_target(s.uri.as_deref().unwrap_or(&s.extension))).collect();
        let callers = Arc::new(std::sync::Mutex::new(CallerLedger::new(config.calls.max_per_caller, config.calls.max_per_caller_per_hour)));
        Ok(Assistant {
            callers,
            languages,
            vocabulary: Arc::new(Vocabulary::from_config(&config)),
            store,
            config,
            language,
            pool: Arc::new(pool),
            tts: Arc::new(tts),
            reception,
            staff,
            next_key: AtomicU64::new(1),
            metrics,
        })
    }

    /// Answers one inbound call until it ends. `caller` is the From URI.
    /// `sip` places the staff legs of bridged transfers.
    pub async fn answer(self: Arc<Self>, handle: CallHandle, caller: String, sip: Option<SipHandle>, report: Report) {
        let load = Load { active_calls: self.metrics.active_calls(), recognition_queue: self.pool.queued() };
        let limits = Limits { max_active: self.config.calls.max_active, max_recognition_queue: self.config.calls.max_recognition_queue };
        if let Admission::Busy(reason) = admit(load, limits) {
            report(format!("BUSY call={} reason={reason:?} active={} queued={}", handle.id.0, load.active_calls, load.recognition_queue));
            self.metrics.call_refused_busy();
            return self.lines_busy(handle, &caller).await;
        }
        let number = caller_id(&caller);
        let _slot = match &number {
            Some(n) => {
                let admitted = self.callers.lock().unwrap_or_else(|e| e.into_inner()).start(std::time::Instant::now(), n.as_str());
                if let Err(reason) = admitted {
                    report(format!("BUSY call={} reason={reason:?}", handle.id.0));
                    self.metrics.call_refused_busy();
                    return self.lines_busy(handle, &caller).await;
                }
                Some(CallerSlot { ledger: self.callers.clone(), caller: n.as_str().to_string() })
            }
            // A withheld number: bounded by max_active alone.
            None => None,
        };
        let active = self.metrics.call_started(Instant::now());
        let lang = self.known_language(number.as_ref()).await;
        let ctx = self.context(Direction::Inbound, number, &lang);
        let (session, first) = Session::start(self.store.clone(), ctx, wall_now()).await;
        active.set_call_id(session.call_id());
        let key = self.next_key();
        report(format!("ASSISTANT call={} caller={} key={} language={lang}", handle.id.0, crate::phone::masked_uri(&caller), key.0));
        let (handle, recording) = super::recording::record_if_on(&self.config.calls, &self.store, session.call_id(), handle).await;
        // A clinic with several languages listens for the caller's first.
        let detect = self.languages.len() > 1;
        self.converse(key, handle, session, first, sip, None, report, (lang, detect), active).await;
        if let Some(r) = recording {
            let _ = r.await; // the file is complete before the call is over
        }
    }

    /// Runs an answered outbound call (see `super::dialer`) until it ends:
    /// the outreach conversation starts at once; with `detect_voicemail`,
    /// the first seconds of audio also go through the answering-machine
    /// detector, and on a machine the conversation stops and a short
    /// message (`voicemail_message`, nothing medical) is left after the
    /// greeting or beep. Outbound calls are not transferred (no staff leg,
    /// no REFER): the patient hears that the clinic will call again, and the
    /// call ends.
    pub async fn run_outreach(
        self: Arc<Self>,
        handle: CallHandle,
        outreach: Outreach,
        number: Option<E164>,
        detect_voicemail: bool,
        report: Report,
    ) -> OutreachResult {
        // In the patient's language when the clinic speaks it.
        let lang = Some(outreach.language_for(&self.config))
            .filter(|l| self.languages.contains_key(*l))
            .unwrap_or(self.default_lang())
            .to_string();
        let ctx = self.context(Direction::Outbound, number, &lang);
        let message = voicemail_message(&ctx);
        let offer = matches!(outreach, Outreach::Offer { .. });
        let appointment = outreach.appointment_id().map(str::to_string);
        let active = self.metrics.call_started(Instant::now());
        let (session, first) = Session::start_outreach(self.store.clone(), ctx, wall_now(), outreach).await;
        let call_id = session.call_id().map(str::to_string);
        active.set_call_id(call_id.as_deref());
        records::link_appointment(&self.store, call_id.as_deref(), appointment.as_deref()).await;
        let key = self.next_key();
        report(format!("OUTREACH call={} key={}", handle.id.0, key.0));
        let outbound = Outbound { detector: detect_voicemail.then(|| Screening::new(message)), left_message: false };
        let store = self.store.clone();
        let (result, left_message) = self.converse(key, handle, session, first, None, Some(outbound), report, (lang, false), active).await;
        if left_message {
            records::left_voicemail(&store, call_id.as_deref()).await;
        }
        match (left_message, result) {
            (true, _) if offer => OutreachResult::Offer(OfferOutcome::NoAnswer),
            (true, _) => OutreachResult::Reminder(CallOutcome::Voicemail),
            (false, Some(r)) => r,
            (false, None) if offer => OutreachResult::Offer(OfferOutcome::NoAnswer),
            (false, None) => OutreachResult::Reminder(CallOutcome::NoAnswer),
        }
    }

    fn next_key(&self) -> CallKey {
        CallKey(self.next_key.fetch_add(1, Ordering::Relaxed))
    }

    fn default_lang(&self) -> &str {
        self.language.prompts.lang()
    }

    fn spoken(&self, lang: &str) -> &Spoken {
        self.languages.get(lang).or_else(|| self.languages.get(self.default_lang())).expect("the first language is always loaded")
    }

    fn context(&self, direction: Direction, caller: Option<E164>, lang: &str) -> Context {
        let language = self.spoken(lang).language.clone();
        Context { config: self.config.clone(), language, vocabulary: self.vocabulary.clone(), direction, caller }
    }

    /// The preferred language of the patients on this number, when they
    /// agree on one the clinic speaks; else the clinic's first.
    async fn known_language(&self, number: Option<&E164>) -> String {
        let fallback = self.default_lang().to_string();
        let Some(number) = number else { return fallback };
        let patients = match self.store.patients_by_phone(number).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "patient lookup for the call's language failed");
                return fallback;
            }
        };
        let mut langs = patients.iter().map(|p| p.preferred_language.as_str());
        match langs.next() {
            Some(first) if langs.all(|l| l == first) && self.languages.contains_key(first) => first.to_string(),
            _ => fallback,
        }
    }

    /// The call loop shared by inbound and outbound calls: builds the
    /// [`Line`] around `session`, carries out its first actions and runs
    /// until the call ends. Returns the outreach result (outbound calls) and
    /// whether a voicemail message was left.
    async fn converse(
        self: Arc<Self>,
        key: CallKey,
        handle: CallHandle,
        session: Session,
        first: Vec<Action>,
        sip: Option<SipHandle>,
        outbound: Option<Outbound>,
        report: Report,
        (lang, detect_language): (String, bool),
        active: ActiveCall,
    ) -> (Option<OutreachResult>, bool) {
        let (tx, rx) = mpsc::channel(64);
        let endpointer = Endpointer::new(WebRtcVad::default(), EndpointConfig::default());
        let mut line = Line {
            assistant: self.clone(),
            key,
            handle,
            session,
            endpointer,
            tx,
            report,
            generation: 0,
            synthesizing: false,
            play_until: None,
            playing_interruptible: true,
            first_chunk_sent: false,
            then: Then::Listen,
            silence_at: None,
            too_long_at: Some(Instant::now() + self.config.calls.max_assistant),
            latency: None,
            latencies: Vec::new(),
            sip,
            staff: None,
            ring_cancel: None,
            outbound,
            early: None,
            lang,
            detect_language,
            active,
        };
        line.act(first).await;
        line.run(rx).await;
        self.pool.cancel_call(key);
        let left = line.outbound.as_ref().is_some_and(|o| o.left_message);
        (line.session.conversation().outreach_result(), left)
    }
}

impl Assistant {
    /// Saturated: "all our lines are busy; please call again in a few
    /// minutes", then hang up. No conversation, no recognition.
    /// The refusal is stored as an inbound call with outcome `busy`.
    async fn lines_busy(&self, handle: CallHandle, caller: &str) {
        let started = wall_now();
        self.say_lines_busy(handle).await;
        let lang = self.language.prompts.lang();
        records::record_refused(&self.store, caller_id(caller).as_ref(), lang, started, wall_now()).await;
    }

    async fn say_lines_busy(&self, mut handle: CallHandle) {
        let text = self.language.prompts.say("lines_busy", &[]);
        let (tts, lang) = (self.tts.clone(), self.language.prompts.lang().to_string());
        let rendered = tokio::task::spawn_blocking(move || {
            tts::sentences(tts.as_ref(), &text, &lang).filter_map(Result::ok).flatten().collect::<Vec<i16>>()
        })
        .await
        .unwrap_or_default();
        let length = Duration::from_micros(rendered.len() as u64 * 1_000_000 / u64::from(tts::RATE));
        let _ = handle.commands.send(CallCommand::Play(rendered)).await;
        // Until it has been played, or the caller leaves first.
        let deadline = Instant::now() + length + Duration::from_secs(1);
        loop {
            tokio::select! {
                ev = handle.events.recv() => match ev {
                    Some(CallEvent::PlaybackDone) => break,
                    Some(CallEvent::HangUp(_)) | None => return,
                    Some(_) => {}
                },
                _ = tokio::time::sleep_until(deadline.into()) => break,
            }
        }
        let _ = handle.commands.send(CallCommand::Hangup).await;
    }
}

/// The caller ID from a From URI (`sip:+34600222333@host;user=phone`,
/// `tel:+34…`): its user part, as E.164 when it is one (`+…`, `00…`, or a
/// long all-digit number that has lost its plus).
pub fn caller_id(from: &str) -> Option<E164> {
    let rest = from.trim().trim_start_matches('<');
    let rest = rest.strip_prefix("sips:").or_else(|| rest.strip_prefix("sip:")).or_else(|| rest.strip_prefix("tel:")).unwrap_or(rest);
    let user = rest.split(['@', ';', '>']).next().unwrap_or("");
    if let Ok(p) = E164::parse(user) {
        return Some(p);
    }
    // Trunks often send international numbers without the plus.
    if user.len() >= 11 && user.chars().all(|c| c.is_ascii_digit()) {
        return E164::parse(&format!("+{user}")).ok();
    }
    None
}

/// The clinic's name and its specialties in the call's language. Not the
/// providers' names: on short answers Whisper echoed them ("Sí, soy yo" →
/// "C, soy López, Dr. Sergio.", "No, gracias" → "López, Dr. Javier
/// Martína"); the conversation matches names fuzzily anyway.
fn initial_prompt(config: &Config, lang: &str) -> String {
    let mut words = vec![config.clinic.name.clone()];
    words.extend(config.specialties.iter().filter_map(|s| s.names.get(lang).and_then(|n| n.first()).cloned()));
    format!("{}.", words.join(", "))
}

/// The store works in whole seconds.
fn wall_now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

/// Everything a call task waits on.
enum Input {
    Call(Option<CallEvent>),
    /// From the bridged staff leg.
    Staff(Option<CallEvent>),
    Back(Back),
    Silence,
    /// `[calls] max_assistant_minutes` reached.
    TooLong,
}

/// Results coming back from blocking work.
enum Back {
    Heard {
        result: Result<Recognition, PoolError>,
        speech_end: Instant,
        /// Started at an early pause ([`EndpointEvent::Paused`]).
        early: bool,
    },
    /// One rendered sentence of reply `generation`.
    Spoken {
        generation: u64,
        pcm: Vec<i16>,
        interruptible: bool,
    },
    SpeechDone {
        generation: u64,
        error: Option<TtsError>,
    },
    /// How ringing the staff phones ended.
    Staff(Rung),
}

/// Recognition of an utterance started before its end was certain.
struct Early {
    /// Which utterance: the end of its last voiced frame.
    speech_end: Instant,
    result: Option<Result<Recognition, PoolError>>,
    /// The endpointer has since ended the utterance: use the result at once.
    ended: bool,
}

/// What happens once the current reply has been played.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Then {
    Listen,
    Hangup,
    Transfer(TransferGroup),
    /// Staff phones are ringing; the caller hears ring-back.
    Ringing,
    /// Hung up (or asked to): wait for the call to report its end.
    Done,
}

struct Line {
    assistant: Arc<Assistant>,
    key: CallKey,
    handle: CallHandle,
    session: Session,
    endpointer: Endpointer<WebRtcVad>,
    tx: mpsc::Sender<Back>,
    report: Report,
    /// Bumped for every reply and barge-in: older audio still being
    /// rendered is dropped when it arrives.
    generation: u64,
    synthesizing: bool,
    /// When the audio sent so far should finish playing.
    play_until: Option<Instant>,
    /// Whether what is playing may be cut off by the caller or a new reply.
    playing_interruptible: bool,
    first_chunk_sent: bool,
    then: Then,
    silence_at: Option<Instant>,
    /// When the conversation with the assistant must end.
    too_long_at: Option<Instant>,
    /// End of the caller's speech and when its transcript arrived, until
    /// the reply's first audio is sent.
    latency: Option<(Instant, Instant)>,
    latencies: Vec<Duration>,
    sip: Option<SipHandle>,
    /// The staff leg, once bridged.
    staff: Option<CallHandle>,
    /// Stops the staff phones ringing (the caller hung up).
    ring_cancel: Option<oneshot::Sender<()>>,
    /// Outbound calls only (`Assistant::run_outreach`).
    outbound: Option<Outbound>,
    /// Recognition started at the caller's last early pause.
    early: Option<Early>,
    /// The language the call is in now.
    lang: String,
    /// The caller's language is still open: recognition detects it among
    /// the clinic's languages until the caller has said a few words.
    detect_language: bool,
    /// This call in the list of calls in progress: what it is doing now.
    active: ActiveCall,
}

impl Line {
    fn report(&self, line: String) {
        (self.report)(line)
    }

    /// What was said on the call (a transcript, a reply, a summary): health
    /// data, so it reaches the log only when the clinic turned
    /// `[logging] transcripts` on. The event line beside it (`report`)
    /// carries ids, counts and timings only.
    fn transcript(&self, what: &str, text: &str) {
        if self.assistant.config.logging.transcripts {
            tracing::info!(target: "clinivox::transcript", call = self.handle.id.0, "{what} {text:?}");
        }
    }

    async fn run(&mut self, mut rx: mpsc::Receiver<Back>) {
        loop {
            let silence = self.silence_at;
            let input = tokio::select! {
                ev = self.handle.events.recv() => Input::Call(ev),
                ev = staff_event(&mut self.staff) => Input::Staff(ev),
                Some(b) = rx.recv() => Input::Back(b),
                _ = sleep_until(silence) => Input::Silence,
                _ = sleep_until(self.too_long_at) => Input::TooLong,
            };
            match input {
                Input::TooLong => self.too_long(),
                Input::Call(Some(CallEvent::Audio(frame))) => {
                    if self.outbound.as_ref().is_some_and(|o| o.detector.is_some()) {
                        self.screen(&frame).await;
                    }
                    if self.on_machine() {
                        continue; // an answering machine: the conversation is over
                    }
                    self.endpointer.handle_audio(Instant::now(), &frame[..]);
                    self.endpointing().await;
                }
                Input::Call(Some(CallEvent::Dtmf(_))) if self.on_machine() => {}
                Input::Call(Some(CallEvent::Dtmf(d))) => {
                    self.silence_at = None;
                    let out = self.session.dtmf(wall_now(), &d.to_string()).await;
                    self.act(out).await;
                }
                Input::Call(Some(CallEvent::PlaybackDone)) => self.playback_done().await,
                Input::Call(Some(CallEvent::TransferStatus(code))) => self.transfer_status(code).await,
                Input::Call(Some(CallEvent::HangUp(cause))) => return self.ended(format!("{cause:?}")).await,
                Input::Call(None) => return self.ended("call task gone".into()).await,
                Input::Call(Some(_)) => {}
                Input::Staff(Some(CallEvent::HangUp(_)) | None) => {
                    self.report(format!("STAFF-HANGUP call={}", self.handle.id.0));
                    self.staff = None;
                    self.hang_up().await;
                }
                Input::Staff(Some(_)) => {}
                Input::Back(Back::Staff(rung)) => self.rung(rung).await,
                Input::Back(Back::Heard { result, speech_end, early: false }) => self.heard(result, speech_end).await,
                Input::Back(Back::Heard { result, speech_end, early: true }) => self.heard_early(result, speech_end).await,
                Input::Back(Back::Spoken { generation, pcm, interruptible }) => self.spoken(generation, pcm, interruptible).await,
                Input::Back(Back::SpeechDone { generation, error }) => {
                    if let Some(e) = error {
                        tracing::warn!(error = %e, "speech synthesis failed; the rest of the reply is skipped");
                    }
                    if generation == self.generation {
                        self.synthesizing = false;
                        // Nothing was playable (all failed or empty).
                        if self.play_until.is_none() {
                            self.reply_finished().await;
                        }
                    }
                }
                Input::Silence => {
                    self.silence_at = None;
                    let out = self.session.silence(wall_now()).await;
                    self.act(out).await;
                }
            }
        }
    }

    /// Whenever the caller leaves, the record is completed (a no-op when
    /// the conversation already finished it).
    async fn ended(&mut self, cause: String) {
        // The caller left: release the staff side too.
        if let Some(c) = self.ring_cancel.take() {
            let _ = c.send(());
        }
        if let Some(staff) = self.staff.take() {
            let _ = staff.commands.send(CallCommand::Hangup).await;
        }
        self.session.hangup(wall_now()).await;
        let median = median(&mut self.latencies);
        self.report(format!(
            "ASSISTANT-END call={} cause={cause} turns_with_latency={} median_latency_ms={}",
            self.handle.id.0,
            self.latencies.len(),
            median.map(|d| d.as_millis().to_string()).unwrap_or_else(|| "-".into())
        ));
    }

    async fn endpointing(&mut self) {
        while let Some(ev) = self.endpointer.poll_event() {
            match ev {
                EndpointEvent::SpeechStarted { .. } => self.silence_at = None,
                EndpointEvent::BargeIn { latency, .. } => {
                    tracing::debug!(?latency, "caller barged in");
                    let _ = self.handle.commands.send(CallCommand::StopPlaying).await;
                    self.generation += 1;
                    self.synthesizing = false;
                    self.play_until = None;
                    self.endpointer.set_prompt(Prompt::Silent);
                    // The caller talks over a goodbye: end the call anyway.
                    if matches!(self.then, Then::Hangup | Then::Transfer(_)) {
                        self.reply_finished().await;
                    }
                }
                EndpointEvent::Paused { samples, speech_end } => {
                    self.early = Some(Early { speech_end, result: None, ended: false });
                    self.recognize(samples, speech_end, true).await;
                }
                EndpointEvent::UtteranceEnded { samples, speech_end, .. } => match self.early.take() {
                    // The caller said nothing more since the early pause:
                    // the recognition already under way is this utterance's.
                    Some(e) if e.speech_end == speech_end => match e.result {
                        Some(result) => self.heard(result, speech_end).await,
                        None => self.early = Some(Early { ended: true, ..e }),
                    },
                    _ => self.recognize(samples, speech_end, false).await,
                },
                EndpointEvent::Discarded { .. } => self.arm_silence(),
            }
        }
    }

    /// Carries out what the conversation asked for: all `Say`s of one batch
    /// become one reply, the rest is done once it has been played.
    async fn act(&mut self, actions: Vec<Action>) {
        let mut texts = Vec::new();
        let mut interruptible = true;
        let mut patience = None;
        for a in actions {
            match a {
                Action::Say { text, interruptible: i } => {
                    texts.push(text);
                    // A notice that must be heard whole protects the reply it is in.
                    interruptible &= i;
                }
                Action::ExpectLonger { reason } => {
                    patience = Some(match reason {
                        Patience::DateOfBirth => DOB_PATIENCE,
                        Patience::Name => NAME_PATIENCE,
                    })
                }
                Action::Transfer { group, summary } => {
                    tracing::info!(group = group.as_str(), "transfer to staff");
                    self.report(format!("TRANSFER call={} group={}", self.handle.id.0, group.as_str()));
                    self.transcript("TRANSFER summary", &summary);
                    self.then = Then::Transfer(group);
                }
                Action::Hangup => self.then = Then::Hangup,
                // The session executes store requests itself.
                Action::Store(_) => {}
            }
        }
        match patience {
            Some(p) => self.endpointer.set_patience(p),
            None if !texts.is_empty() => self.endpointer.reset_patience(),
            None => {}
        }
        if texts.is_empty() {
            if self.then != Then::Listen && self.play_until.is_none() && !self.synthesizing {
                self.reply_finished().await;
            } else {
                // E.g. one key of a date of birth: the caller may still go
                // quiet half-way, which the conversation must hear about.
                self.arm_silence();
            }
            return;
        }
        self.speak(texts, interruptible);
    }

    /// The conversation reached its longest: say so and hang up, unless
    /// staff are being rung or talking (then it is their call now).
    fn too_long(&mut self) {
        self.too_long_at = None;
        if self.staff.is_some() || matches!(self.then, Then::Ringing | Then::Done | Then::Hangup) {
            return;
        }
        self.report(format!("TOO_LONG call={}", self.handle.id.0));
        let text = self.assistant.spoken(&self.lang).language.prompts.say("call_too_long", &[]);
        self.then = Then::Hangup;
        self.speak(vec![text], false);
    }

    /// Renders a reply on a blocking thread, sentence by sentence.
    fn speak(&mut self, texts: Vec<String>, interruptible: bool) {
        self.silence_at = None;
        self.generation += 1;
        self.synthesizing = true;
        self.first_chunk_sent = false;
        let generation = self.generation;
        let (tts, tx) = (self.assistant.tts.clone(), self.tx.clone());
        let lang = self.lang.clone();
        for t in &texts {
            self.report(format!("SAY call={} chars={}", self.handle.id.0, t.chars().count()));
            self.transcript("SAY", t);
        }
        tokio::task::spawn_blocking(move || {
            let mut error = None;
            'reply: for text in &texts {
                for pcm in tts::sentences(tts.as_ref(), text, &lang) {
                    match pcm {
                        Ok(pcm) if pcm.is_empty() => {}
                        Ok(pcm) => {
                            // The call is gone: stop rendering.
                            if tx.blocking_send(Back::Spoken { generation, pcm, interruptible }).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            error = Some(e);
                            break 'reply;
                        }
                    }
                }
            }
            let _ = tx.blocking_send(Back::SpeechDone { generation, error });
        });
    }

    async fn spoken(&mut self, generation: u64, pcm: Vec<i16>, interruptible: bool) {
        if generation != self.generation {
            return; // superseded by a newer reply or a barge-in
        }
        let now = Instant::now();
        let len = Duration::from_micros(pcm.len() as u64 * 1_000_000 / u64::from(tts::RATE));
        let cmd = if self.first_chunk_sent {
            CallCommand::Enqueue(pcm)
        } else {
            self.first_chunk_sent = true;
            self.endpointer.set_prompt(Prompt::Playing { interruptible });
            if let Some((speech_end, heard_at)) = self.latency.take() {
                let total = now.saturating_duration_since(speech_end);
                self.latencies.push(total);
                self.session.record_timings(heard_at.saturating_duration_since(speech_end), total);
                self.assistant.metrics.observe_turn_latency(total);
                self.report(format!(
                    "LATENCY call={} total_ms={} asr_ms={} reply_ms={}",
                    self.handle.id.0,
                    total.as_millis(),
                    heard_at.saturating_duration_since(speech_end).as_millis(),
                    now.saturating_duration_since(heard_at).as_millis()
                ));
            }
            let protected = self.play_until.is_some_and(|t| t > now) && !self.playing_interruptible;
            self.playing_interruptible = interruptible;
            if protected {
                // A notice that must be heard whole (privacy, emergency)
                // is still playing: the reply follows it instead.
                CallCommand::Enqueue(pcm)
            } else {
                // A fresh reply replaces whatever was playing.
                self.play_until = Some(now);
                CallCommand::Play(pcm)
            }
        };
        let start = self.play_until.map_or(now, |t| t.max(now));
        self.play_until = Some(start + len);
        let _ = self.handle.commands.send(cmd).await;
    }

    async fn playback_done(&mut self) {
        let Some(until) = self.play_until else { return };
        // A stale `PlaybackDone` from a reply we have since replaced, or
        // the gap before the next sentence is enqueued: keep playing.
        if self.synthesizing || Instant::now() + DONE_SLACK < until {
            return;
        }
        self.play_until = None;
        self.endpointer.set_prompt(Prompt::Silent);
        self.reply_finished().await;
    }

    /// The reply has been heard (or cut off): do what comes after it.
    async fn reply_finished(&mut self) {
        match std::mem::replace(&mut self.then, Then::Listen) {
            Then::Listen => self.arm_silence(),
            Then::Hangup => self.hang_up().await,
            Then::Transfer(group) => self.transfer(group).await,
            Then::Ringing => self.then = Then::Ringing,
            Then::Done => self.then = Then::Done,
        }
    }

    async fn transfer_status(&mut self, code: u16) {
        tracing::debug!(code, "transfer progress");
        match code {
            // The REFER was accepted and the new leg answered: our part is over.
            200..=299 if code != 202 => {
                self.assistant.metrics.transfer(TransferResult::Answered);
                self.hang_up().await
            }
            300.. => {
                self.assistant.metrics.transfer(TransferResult::Failed);
                tracing::warn!(code, "transfer to reception failed");
                self.transfer_failed().await;
            }
            _ => {}
        }
    }

    async fn hang_up(&mut self) {
        self.then = Then::Done;
        self.silence_at = None;
        let _ = self.handle.commands.send(CallCommand::Hangup).await;
    }

    fn arm_silence(&mut self) {
        let quiet = self.play_until.is_none() && !self.synthesizing && !self.endpointer.is_speaking();
        if quiet && self.then == Then::Listen && !self.session.conversation().is_ended() {
            self.silence_at = Some(Instant::now() + SILENCE_TIMEOUT);
        }
    }
}

fn median(v: &mut [Duration]) -> Option<Duration> {
    v.sort();
    v.get(v.len() / 2).copied()
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::handover::ring_plan;
    use super::*;

    #[test]
    fn caller_id_from_the_from_uri() {
        let p = |s: &str| caller_id(s).map(|e| e.as_str().to_string());
        assert_eq!(p("sip:+34600222333@127.0.0.1"), Some("+34600222333".into()));
        assert_eq!(p("<sip:+34600222333@10.0.0.1:5060;user=phone>"), Some("+34600222333".into()));
        assert_eq!(p("tel:+34600222333"), Some("+34600222333".into()));
        assert_eq!(p("sip:0034600222333@trunk"), Some("+34600222333".into()));
        assert_eq!(p("sip:34600222333@trunk"), Some("+34600222333".into()));
        assert_eq!(p("sip:201@pbx"), None);
        assert_eq!(p("sip:anonymous@anonymous.invalid"), None);
        assert_eq!(p(""), None);
    }

    #[test]
    fn transfers_ring_the_configured_group() {
        let config = crate::testing::demo_config();
        let plan = ring_plan(&config, &[], TransferGroup::Reception);
        assert_eq!(plan.members, vec![DialTarget::Extension("201".into()), DialTarget::Extension("202".into())]);
        assert!(plan.all_at_once);
        // No emergency group in the demo: every staff phone, at once.
        let fallback = [DialTarget::Uri("sip:desk@192.0.2.9".into())];
        let plan = ring_plan(&config, &fallback, TransferGroup::Emergency);
        assert_eq!(plan.members, fallback.to_vec());
    }

    #[test]
    fn median_of_latencies() {
        let ms = Duration::from_millis;
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [ms(30), ms(10), ms(20)]), Some(ms(20)));
    }
}
