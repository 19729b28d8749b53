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
#[path = "assistant_line.rs"]
mod line;
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
