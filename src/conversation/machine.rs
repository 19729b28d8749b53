//! The conversation's core: one [`State`] enum whose variants carry their own
//! data, the events that move it (`handle_*`) and the queue of actions the
//! driver drains (`poll_action`). No I/O and no clock: every event brings its
//! `now`, and everything the store knows arrives as a [`StoreReply`]. The
//! flows themselves live in `identify`, `booking`, `manage` and `info`;
//! outbound calls open with `outreach`.

use std::collections::VecDeque;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use super::action::{Action, Direction, Outcome, Patience, Speaker, StoreReply, StoreRequest, TransferGroup};
use super::booking::{Offer, Want};
use super::callback::{Callback, Memo};
use super::context::{Context, Language};
use super::nlu::{self, Intent, Slots, Understanding};
use crate::store::{Appointment, Patient};

/// Below this speech-recognition confidence an utterance is asked again
/// rather than acted on.
pub const MIN_CONFIDENCE: f64 = 0.35;

/// Consecutive turns not understood before a person takes over.
const MAX_MISUNDERSTOOD: u32 = 2;

/// A patient-specific request waiting for the caller to be identified.
#[derive(Debug, Clone)]
pub(super) enum Goal {
    Book(Want),
    Manage(Task, Slots),
}

/// What to do with one of the caller's existing appointments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Task {
    Confirm,
    Cancel,
    Reschedule,
    Query,
}

/// After a new patient's record is created.
#[derive(Debug, Clone)]
pub(super) enum Then {
    Book(Want, Offer),
    Waitlist(Want),
}

/// Where the conversation stands. Variants named `…ing` wait on a store reply.
#[derive(Debug, Clone)]
pub(super) enum State {
    /// Greeting said; waiting for the caller-ID look-up.
    Greeting,
    /// "How can I help?" or "anything else?".
    Listening,
    AskName {
        goal: Goal,
        dob: Option<NaiveDate>,
    },
    AskDob {
        goal: Goal,
        name: Option<String>,
        digits: String,
    },
    FindingPatient {
        goal: Goal,
        name: String,
        dob: NaiveDate,
    },
    /// Withdrawing the patient's consent to be called.
    OptingOut,
    /// Asking whether too many identity checks failed lately.
    CheckingIdentity {
        goal: Goal,
        check: super::identify::Check,
    },
    ConfirmNewPatient {
        want: Want,
        name: String,
        dob: NaiveDate,
    },
    OfferTransfer {
        group: TransferGroup,
    },
    AskSpecialty {
        want: Want,
    },
    AskWhen {
        want: Want,
    },
    Searching {
        want: Want,
        widened: bool,
        /// Searches whose every slot another caller held first.
        lost: u8,
    },
    Holding {
        want: Want,
        widened: bool,
        lost: u8,
    },
    Offering {
        want: Want,
        offers: Vec<Offer>,
    },
    ReadBack {
        want: Want,
        offer: Offer,
    },
    CreatingPatient {
        then: Then,
    },
    Booking {
        want: Want,
        offer: Offer,
    },
    OfferWaitlist {
        want: Want,
    },
    AddingToWaitlist {
        want: Want,
    },
    LoadingAppointments {
        task: Task,
        hint: Slots,
    },
    ChooseAppointment {
        task: Task,
        appointments: Vec<Appointment>,
    },
    ConfirmCancel {
        appointment: Appointment,
    },
    /// Taking a callback request (`callback.rs`).
    Callback(Box<Callback>),
    Acting {
        task: Task,
        appointment: Appointment,
    },
    /// Outbound: "am I speaking with …?" (see `outreach`).
    OutreachAskPerson,
    /// Outbound, someone else answered: "could they come to the phone?".
    OutreachAskFetch,
    /// Outbound: waiting for the patient to come to the phone.
    OutreachWaitPerson,
    /// Outbound: the patient's date of birth, spoken or keyed.
    OutreachAskDob {
        digits: String,
    },
    /// Outbound, verified: the appointment or the offer was stated.
    OutreachProposal,
    /// Outbound offer accepted: loading the patient's appointments.
    OutreachLoading,
    /// Outbound offer accepted: booking (or moving into) the held slot.
    OutreachTaking {
        moving: bool,
    },
    Ended,
}

/// One caller input, already understood.
#[derive(Debug, Clone)]
pub(super) enum Input {
    Said { text: String, u: Box<Understanding> },
    Key(char),
}

impl Input {
    pub(super) fn intent(&self) -> Option<Intent> {
        match self {
            Input::Said { u, .. } => Some(u.intent),
            Input::Key(_) => None,
        }
    }
    pub(super) fn slots(&self) -> Option<&Slots> {
        match self {
            Input::Said { u, .. } => Some(&u.slots),
            Input::Key(_) => None,
        }
    }
    /// Yes and no, spoken or as keys 1 and 2.
    pub(super) fn yes_no(&self) -> Option<bool> {
        match self {
            Input::Key('1') => Some(true),
            Input::Key('2') => Some(false),
            Input::Said { u, .. } => match u.intent {
                Intent::Yes | Intent::Confirm => Some(true),
                Intent::No => Some(false),
                _ => None,
            },
            Input::Key(_) => None,
        }
    }
    /// An option number, spoken ("la segunda") or keyed.
    pub(super) fn choice(&self) -> Option<usize> {
        match self {
            Input::Key(k) => k.to_digit(10).map(|d| d as usize),
            Input::Said { u, .. } => u.slots.choice.map(|c| c as usize),
        }
    }
}

/// Whether a state understood the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Heard {
    Understood,
    /// Counted as a misunderstanding; the caller hears an apology and the
    /// last question again.
    NotUnderstood,
    /// Counted as a misunderstanding, and this question (which carries its
    /// own help, such as "I did not get the date…") is asked instead of the
    /// generic apology.
    Reask(String),
}

/// One phone conversation with one caller. See the module docs of
/// [`super`] for the shape of the API.
#[derive(Debug)]
pub struct Conversation {
    pub(super) ctx: Context,
    pub(super) state: State,
    pub(super) actions: VecDeque<Action>,
    pub(super) now: DateTime<Utc>,
    /// The identified caller; nothing about appointments is said before.
    pub(super) patient: Option<Patient>,
    /// Patients registered on the caller's number.
    pub(super) on_this_number: Vec<Patient>,
    /// Identity checks failed too often lately: nothing is disclosed.
    pub(super) locked_out: bool,
    /// A caller not in the records, created just before their first write.
    pub(super) new_patient: Option<(String, NaiveDate)>,
    /// Tokens of slots currently held for this caller.
    pub(super) holds: Vec<String>,
    outcome: Option<Outcome>,
    misunderstood: u32,
    silences: u32,
    /// The caller used the keypad: read keypad options aloud from now on.
    pub(super) keypad: bool,
    /// The last question, repeated after silence or a misunderstanding.
    last_question: String,
    /// What the caller asked for, for the staff summary.
    pub(super) wanted: Option<String>,
    last_caller_text: Option<String>,
    /// The open question is "anything else?": keys 1 and 2 mean yes and no
    /// rather than the main menu.
    anything_else: bool,
    /// Set on calls the clinic places (`outreach`).
    pub(super) outreach: Option<Box<super::outreach::OutreachCall>>,
    pub(super) callback: Memo,
}

impl Conversation {
    /// Starts a call: registers it, greets, and looks the caller ID up.
    pub fn new(ctx: Context, now: DateTime<Utc>) -> Conversation {
        let mut c = Conversation::blank(ctx, now);
        let remote_number = c.ctx.caller.as_ref().map(|p| p.as_str().to_string()).unwrap_or_default();
        c.request(StoreRequest::StartCall { direction: c.ctx.direction, remote_number, language: c.ctx.lang().to_string() });
        let greeting = c.p("greeting", &[("clinic", &c.ctx.config.clinic.name.clone())]);
        c.say_fixed(greeting);
        // The call layer records the audio: say so before anything is asked,
        // and let nothing cut it short.
        if c.ctx.config.calls.record_audio && c.ctx.direction == Direction::Inbound {
            let notice = c.p("recording_notice", &[]);
            c.say_fixed(notice);
        }
        match c.ctx.caller.clone() {
            Some(phone) if c.ctx.direction == Direction::Inbound => {
                c.state = State::Greeting;
                c.request(StoreRequest::PatientsByPhone { phone: phone.as_str().to_string() });
            }
            _ => c.ask_how_can_i_help(),
        }
        c
    }

    /// A conversation that has said and asked nothing yet.
    pub(super) fn blank(ctx: Context, now: DateTime<Utc>) -> Conversation {
        Conversation {
            state: State::Listening,
            actions: VecDeque::new(),
            now,
            patient: None,
            on_this_number: Vec::new(),
            locked_out: false,
            new_patient: None,
            holds: Vec::new(),
            outcome: None,
            misunderstood: 0,
            silences: 0,
            keypad: false,
            last_question: String::new(),
            wanted: None,
            last_caller_text: None,
            anything_else: false,
            outreach: None,
            callback: Memo::default(),
            ctx,
        }
    }

    /// The caller said something (final ASR result, confidence 0–1).
    pub fn handle_utterance(&mut self, now: DateTime<Utc>, text: &str, confidence: f64) {
        self.now = now;
        let u = nlu::understand(text, &self.ctx.language.lexicon, &self.ctx.vocabulary, self.local_now());
        self.request(StoreRequest::RecordTurn {
            speaker: Speaker::Caller,
            text: text.to_string(),
            intent: Some(u.intent.key().to_string()),
            confidence: Some(confidence),
        });
        if self.is_waiting() {
            return; // barge-in while the store answers: the question is still open
        }
        self.silences = 0;
        self.last_caller_text = Some(text.to_string());
        // NaN counts as no confidence at all.
        if confidence.is_nan() || confidence < MIN_CONFIDENCE {
            let again = self.p("low_confidence", &[]);
            return self.misunderstood_with(again);
        }
        self.input(Input::Said { text: text.to_string(), u: Box::new(u) });
    }

    /// The caller pressed a key (`0`–`9`, `*`, `#`).
    pub fn handle_dtmf(&mut self, now: DateTime<Utc>, digit: char) {
        self.now = now;
        self.request(StoreRequest::RecordTurn { speaker: Speaker::Caller, text: format!("DTMF {digit}"), intent: None, confidence: None });
        if self.is_waiting() || !matches!(digit, '0'..='9' | '*' | '#') {
            return;
        }
        self.silences = 0;
        self.keypad = true;
        // A date of birth arrives one key at a time.
        if let State::AskDob { digits, .. } = &mut self.state {
            if digit.is_ascii_digit() {
                digits.push(digit);
            }
            if digits.len() >= 8 || digit == '#' {
                let typed = std::mem::take(digits);
                self.dob_typed(&typed);
            }
            return;
        }
        if let State::OutreachAskDob { digits } = &mut self.state {
            if digit.is_ascii_digit() {
                digits.push(digit);
            }
            if digits.len() >= 8 || digit == '#' {
                let typed = std::mem::take(digits);
                self.outreach_dob_typed(&typed);
            }
            return;
        }
        if self.callback_key(digit) {
            return;
        }
        // Announced in the greeting of every call the clinic places.
        if digit == '9' && self.outreach.is_some() && !matches!(self.state, State::OptingOut) {
            return self.opt_out();
        }
        self.input(Input::Key(digit));
    }

    /// The caller said nothing for the speech layer's silence timeout.
    pub fn handle_silence(&mut self, now: DateTime<Utc>) {
        self.now = now;
        if self.is_waiting() || matches!(self.state, State::Ended) {
            return;
        }
        if matches!(self.state, State::OutreachWaitPerson) {
            // Someone went to fetch the patient: silence is expected.
            return self.outreach_wait_silence();
        }
        self.silences += 1;
        if self.silences >= 2 {
            let bye = self.p("silence_goodbye", &[]);
            self.say(bye);
            self.actions.push_back(Action::Hangup);
            return self.finish(Outcome::Abandoned, None);
        }
        let mut text = format!("{} {}", self.p("reprompt", &[]), self.last_question);
        if matches!(self.state, State::Listening) {
            text = format!("{text} {}", self.p("keypad_menu", &[]));
        }
        self.say(text);
    }

    /// The caller hung up.
    pub fn handle_hangup(&mut self, now: DateTime<Utc>) {
        self.now = now;
        if matches!(self.state, State::Ended) {
            return;
        }
        self.finish(Outcome::Abandoned, None);
    }

    /// The answer to the last [`StoreRequest`] that expects one.
    pub fn handle_store_reply(&mut self, reply: StoreReply) {
        if let StoreReply::Failed(why) = &reply {
            if self.is_waiting() {
                tracing::warn!(error = %why, "store request failed during a call");
                let text = self.p("technical_problem", &[]);
                self.say(text);
                self.set_outcome(Outcome::Failed);
                return self.transfer(TransferGroup::Reception);
            }
        }
        let state = std::mem::replace(&mut self.state, State::Ended);
        match (state, reply) {
            (State::Greeting, StoreReply::Patients(found)) => {
                self.on_this_number = found;
                self.ask_how_can_i_help();
            }
            (State::FindingPatient { goal, name, dob }, StoreReply::Patients(found)) => self.patients_found(goal, name, dob, found),
            (State::CheckingIdentity { goal, check }, StoreReply::Locked(locked)) => self.identity_checked(goal, check, locked),
            (State::OptingOut, StoreReply::Done) => self.opted_out(),
            (State::Searching { want, widened, lost }, StoreReply::Slots(slots)) => self.slots_found(want, widened, lost, slots),
            (State::Holding { want, widened, lost }, StoreReply::Held(held)) => self.slots_held(want, widened, lost, held),
            (State::CreatingPatient { then }, StoreReply::Patient(p)) => self.patient_created(then, p),
            (State::Booking { want, offer }, reply) => self.booking_done(want, offer, reply),
            (State::AddingToWaitlist { want }, reply) => self.waitlist_done(want, reply),
            (State::LoadingAppointments { task, hint }, StoreReply::Appointments(list)) => self.appointments_loaded(task, hint, list),
            (State::Acting { task, appointment }, reply) => self.acted(task, appointment, reply),
            (State::OutreachLoading, StoreReply::Appointments(list)) => self.offer_take(list),
            (State::OutreachTaking { moving }, reply) => self.offer_taken(moving, reply),
            (State::Callback(cb), reply) => self.callback_reply(*cb, reply),
            (state, reply) => {
                // A reply nobody waits for (e.g. after the caller hung up).
                tracing::debug!(?reply, "store reply ignored");
                self.state = state;
            }
        }
    }

    /// The next thing to do, in order; `None` when the conversation waits
    /// for the caller or for a store reply.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// True once the call is over (hung up, transferred, or abandoned).
    /// The caller speaks another of the clinic's languages: from now on
    /// everything is understood and said in `language`.
    pub fn switch_language(&mut self, language: std::sync::Arc<Language>) {
        self.ctx.language = language;
    }

    /// The language the conversation speaks now.
    pub fn language(&self) -> &str {
        self.ctx.lang()
    }

    pub fn is_ended(&self) -> bool {
        matches!(self.state, State::Ended)
    }

    /// True while the conversation waits on a store reply.
    pub fn is_waiting(&self) -> bool {
        matches!(
            self.state,
            State::Greeting
                | State::FindingPatient { .. }
                | State::CheckingIdentity { .. }
                | State::OptingOut
                | State::Searching { .. }
                | State::Holding { .. }
                | State::CreatingPatient { .. }
                | State::Booking { .. }
                | State::AddingToWaitlist { .. }
                | State::LoadingAppointments { .. }
                | State::Acting { .. }
                | State::OutreachLoading
                | State::OutreachTaking { .. }
        ) || self.callback_saving()
    }

    /// Tokens of the slots held for this caller right now.
    pub fn held_tokens(&self) -> &[String] {
        &self.holds
    }

    // ----- dispatch ---------------------------------------------------------

    fn input(&mut self, input: Input) {
        // Some wishes win in every state.
        match input.intent() {
            Some(Intent::Emergency) => return self.emergency(),
            // On a call the clinic placed, whoever answers may stop them;
            // on their own call, a verified patient.
            Some(Intent::OptOut) if self.outreach.is_some() || self.patient.is_some() => return self.opt_out(),
            // Taking a callback is what happens when no person can be had.
            Some(Intent::Human) if !matches!(self.state, State::Callback(_)) => {
                self.wanted.get_or_insert_with(|| "speak to a person".into());
                let text = self.p("transfer", &[]);
                self.say(text);
                return self.transfer(TransferGroup::Reception);
            }
            Some(Intent::Goodbye) => return self.goodbye(),
            _ => {}
        }
        let state = std::mem::replace(&mut self.state, State::Ended);
        let top_level = matches!(state, State::Listening);
        let heard = self.in_state(state, input.clone());
        if heard == Heard::Understood {
            self.misunderstood = 0;
            return;
        }
        // A new request in the middle of a flow ("no, I want to cancel"):
        // leave the flow and start over with it.
        let fresh = matches!(
            input.intent(),
            Some(Intent::Book | Intent::Confirm | Intent::Cancel | Intent::Reschedule | Intent::Query | Intent::Hours | Intent::Location)
        );
        // Not before an outbound call's patient is verified: whoever answered
        // may not start anything on their behalf.
        if fresh && !top_level && !self.is_waiting() && !self.is_ended() && !self.outreach_unverified() {
            self.release_holds();
            if self.listening(input) == Heard::Understood {
                self.misunderstood = 0;
                return;
            }
        }
        match heard {
            Heard::Reask(question) => {
                self.last_question = question.clone();
                self.misunderstood_saying(question);
            }
            _ => {
                let sorry = self.p("not_understood", &[]);
                self.misunderstood_with(sorry);
            }
        }
    }

    fn in_state(&mut self, state: State, input: Input) -> Heard {
        match state {
            State::Listening => self.listening(input),
            State::AskName { goal, dob } => self.name_answer(goal, dob, input),
            State::AskDob { goal, name, .. } => self.dob_answer(goal, name, input),
            State::ConfirmNewPatient { want, name, dob } => self.new_patient_answer(want, name, dob, input),
            State::OfferTransfer { group } => self.transfer_answer(group, input),
            State::AskSpecialty { want } => self.specialty_answer(want, input),
            State::AskWhen { want } => self.when_answer(want, input),
            State::Offering { want, offers } => self.offer_answer(want, offers, input),
            State::ReadBack { want, offer } => self.readback_answer(want, offer, input),
            State::OfferWaitlist { want } => self.waitlist_answer(want, input),
            State::ChooseAppointment { task, appointments } => self.appointment_choice(task, appointments, input),
            State::ConfirmCancel { appointment } => self.cancel_answer(appointment, input),
            s @ (State::OutreachAskPerson
            | State::OutreachAskFetch
            | State::OutreachWaitPerson
            | State::OutreachAskDob { .. }
            | State::OutreachProposal) => self.outreach_answer(s, input),
            State::Callback(cb) => self.callback_answer(*cb, input),
            waiting => {
                self.state = waiting;
                Heard::Understood
            }
        }
    }

    /// Top level: what does the caller want?
    pub(super) fn listening(&mut self, input: Input) -> Heard {
        self.state = State::Listening;
        let after_task = std::mem::take(&mut self.anything_else);
        let intent = match &input {
            Input::Key('1') if after_task => Intent::Yes,
            Input::Key('2') if after_task => Intent::No,
            Input::Key(k) => match k {
                '1' => Intent::Book,
                '2' => Intent::Confirm,
                '3' => Intent::Cancel,
                '4' => Intent::Reschedule,
                '5' => Intent::Query,
                '6' => Intent::Hours,
                '7' => Intent::Location,
                '0' => Intent::Human,
                _ => {
                    self.anything_else = after_task;
                    return Heard::NotUnderstood;
                }
            },
            Input::Said { u, .. } => u.intent,
        };
        let slots = input.slots().cloned().unwrap_or_default();
        match intent {
            Intent::Book => {
                let mut want = Want::from_slots(&slots, self.today());
                if let Input::Said { text, .. } = &input {
                    want.earliest_if_said(text, &self.ctx.language.prompts);
                }
                self.start(Goal::Book(want));
            }
            Intent::Confirm => self.start(Goal::Manage(Task::Confirm, slots)),
            Intent::Cancel => self.start(Goal::Manage(Task::Cancel, slots)),
            Intent::Reschedule => self.start(Goal::Manage(Task::Reschedule, slots)),
            Intent::Query => self.start(Goal::Manage(Task::Query, slots)),
            Intent::Hours => {
                self.say_hours();
                self.ask_anything_else();
            }
            Intent::Location => {
                self.say_location();
                self.ask_anything_else();
            }
            Intent::Human => {
                self.wanted.get_or_insert_with(|| "speak to a person".into());
                let text = self.p("transfer", &[]);
                self.say(text);
                self.transfer(TransferGroup::Reception);
            }
            Intent::Emergency => self.emergency(),
            Intent::Yes => {
                self.ask_how_can_i_help();
                if self.keypad {
                    let menu = self.p("keypad_menu", &[]);
                    self.say(menu);
                }
            }
            Intent::No | Intent::Goodbye => self.goodbye(),
            Intent::Choose | Intent::OptOut | Intent::Unknown => {
                self.anything_else = after_task;
                return Heard::NotUnderstood;
            }
        }
        Heard::Understood
    }

    /// Begins a patient-specific request, identifying the caller first.
    fn start(&mut self, goal: Goal) {
        self.wanted = Some(self.describe(&goal));
        if self.patient.is_some() || self.new_patient.is_some() {
            self.proceed(goal);
        } else {
            self.identify(goal);
        }
    }

    /// Continues a request once the caller is identified.
    pub(super) fn proceed(&mut self, goal: Goal) {
        match goal {
            Goal::Book(want) => self.next_booking_step(want),
            Goal::Manage(task, hint) => match self.patient.clone() {
                Some(p) => {
                    self.state = State::LoadingAppointments { task, hint };
                    self.request(StoreRequest::UpcomingAppointments { patient_id: p.id });
                }
                // A just-registered patient has no appointments yet.
                None => {
                    let text = self.p("no_appointments", &[]);
                    self.say(text);
                    self.ask_anything_else();
                }
            },
        }
    }

    fn describe(&self, goal: &Goal) -> String {
        match goal {
            Goal::Book(w) => {
                let what = w.specialty.clone().or_else(|| w.provider.clone()).unwrap_or_default();
                format!("book {what}").trim().to_string()
            }
            Goal::Manage(t, _) => format!("{t:?}").to_lowercase(),
        }
    }

    // ----- endings ----------------------------------------------------------

    pub(super) fn emergency(&mut self) {
        self.release_holds();
        self.wanted = Some("possible emergency".into());
        let text = self.p("emergency", &[("emergency", &self.ctx.config.clinic.emergency_number.clone())]);
        self.say_fixed(text.clone());
        self.last_question = text;
        self.state = State::OfferTransfer { group: TransferGroup::Emergency };
    }

    fn transfer_answer(&mut self, group: TransferGroup, input: Input) -> Heard {
        match (group, input.yes_no()) {
            (TransferGroup::Emergency, Some(true)) => {
                let text = self.p("emergency_transfer", &[]);
                self.say_fixed(text);
                self.transfer(group);
            }
            (TransferGroup::Emergency, Some(false)) => {
                let text = self.p("emergency_decline", &[("emergency", &self.ctx.config.clinic.emergency_number.clone())]);
                self.say_fixed(text);
                self.actions.push_back(Action::Hangup);
                self.finish(Outcome::Info, None);
            }
            (TransferGroup::Reception, Some(true)) => {
                let text = self.p("transfer", &[]);
                self.say(text);
                self.transfer(group);
            }
            (TransferGroup::Reception, Some(false)) => self.ask_anything_else(),
            (group, None) => {
                self.state = State::OfferTransfer { group };
                return Heard::NotUnderstood;
            }
        }
        Heard::Understood
    }

    pub(super) fn transfer(&mut self, group: TransferGroup) {
        // Reception closed or unreachable: a callback request instead.
        if self.callback_instead(group) {
            return;
        }
        self.release_holds();
        let summary = self.summary();
        self.record_action(format!("transfer to {}: {summary}", group.as_str()));
        self.actions.push_back(Action::Transfer { group, summary: summary.clone() });
        self.set_outcome(Outcome::Transferred);
        self.finish(Outcome::Transferred, Some((group, summary)));
    }

    pub(super) fn goodbye(&mut self) {
        let key = if self.outreach.is_some() { "outreach_goodbye" } else { "goodbye" };
        let text = self.p(key, &[("clinic", &self.ctx.config.clinic.name.clone())]);
        self.say(text);
        self.hangup_and_finish();
    }

    /// Hangs up after what was said, closing the call record.
    pub(super) fn hangup_and_finish(&mut self) {
        self.actions.push_back(Action::Hangup);
        self.finish(Outcome::Abandoned, None);
    }

    /// Closes the call record; `fallback` is the outcome when nothing happened.
    pub(super) fn finish(&mut self, fallback: Outcome, transfer: Option<(TransferGroup, String)>) {
        self.release_holds();
        // A transfer that failed stays on the record whatever came after it.
        let transfer = transfer.or_else(|| self.callback.failed_transfer.clone());
        let outcome = self.outcome.unwrap_or(fallback);
        let (transfer_target, summary) = match transfer {
            Some((g, s)) => (Some(g.as_str().to_string()), Some(s)),
            None => (None, self.wanted.clone()),
        };
        self.request(StoreRequest::FinishCall {
            outcome,
            patient_id: self.patient.as_ref().map(|p| p.id.clone()),
            transfer_target,
            summary,
        });
        self.state = State::Ended;
    }

    /// One line for the staff member who picks up.
    pub(super) fn summary(&self) -> String {
        let wants = self.wanted.clone().unwrap_or_else(|| "unclear".into());
        let who = match (&self.patient, &self.new_patient) {
            (Some(p), _) => format!("{} (verified)", p.name),
            (None, Some((name, _))) => format!("{name} (new patient)"),
            (None, None) if self.locked_out => {
                "not identified (too many failed identity checks lately: verify before saying anything)".into()
            }
            (None, None) => "not identified".into(),
        };
        let from = self.ctx.caller.as_ref().map(|c| c.as_str().to_string()).unwrap_or_else(|| "unknown number".into());
        let said = self.last_caller_text.as_deref().map(|t| format!("; said \"{t}\"")).unwrap_or_default();
        format!("wants: {wants}; caller: {who}, {from}{said}")
    }

    pub(super) fn set_outcome(&mut self, o: Outcome) {
        if let Some(call) = self.outreach.as_mut().filter(|_| matches!(o, Outcome::Confirmed | Outcome::Cancelled | Outcome::Rescheduled)) {
            call.done = Some(o);
        }
        self.outcome = Some(self.outcome.map_or(o, |old| old.max(o)));
    }

    // ----- speaking ---------------------------------------------------------

    pub(super) fn p(&self, key: &str, args: &[(&str, &str)]) -> String {
        self.ctx.language.prompts.say(key, args)
    }

    pub(super) fn say(&mut self, text: String) {
        self.say_with(text, true);
    }

    /// Notices the caller must hear whole.
    pub(super) fn say_fixed(&mut self, text: String) {
        self.say_with(text, false);
    }

    fn say_with(&mut self, text: String, interruptible: bool) {
        self.request(StoreRequest::RecordTurn { speaker: Speaker::Assistant, text: text.clone(), intent: None, confidence: None });
        self.actions.push_back(Action::Say { text, interruptible });
    }

    /// Says a question and remembers it for reprompts.
    pub(super) fn ask(&mut self, text: String) {
        self.last_question = text.clone();
        self.say(text);
    }

    /// Says `prefix` then asks `question`, remembering only the question.
    pub(super) fn ask_after(&mut self, prefix: String, question: String) {
        self.last_question = question.clone();
        self.say(format!("{prefix} {question}"));
    }

    pub(super) fn expect_longer(&mut self, reason: Patience) {
        self.actions.push_back(Action::ExpectLonger { reason });
    }

    pub(super) fn ask_how_can_i_help(&mut self) {
        self.state = State::Listening;
        self.anything_else = false;
        let q = self.p("how_can_i_help", &[]);
        self.ask(q);
    }

    pub(super) fn ask_anything_else(&mut self) {
        self.state = State::Listening;
        self.anything_else = true;
        let mut q = self.p("anything_else", &[]);
        if self.keypad {
            q = format!("{q} {}", self.p("yes_no_keys", &[]));
        }
        self.ask(q);
    }

    fn misunderstood_with(&mut self, sorry: String) {
        let mut question = self.last_question.clone();
        if matches!(self.state, State::Listening) {
            question = format!("{question} {}", self.p("keypad_menu", &[]));
        }
        self.misunderstood_saying(format!("{sorry} {question}"));
    }

    /// Counts a misunderstanding: says `again`, or after too many hands the
    /// caller to reception (or ends an unverified outbound call).
    fn misunderstood_saying(&mut self, again: String) {
        self.misunderstood += 1;
        if self.misunderstood >= MAX_MISUNDERSTOOD && self.outreach_unverified() {
            // Nobody to hand an unverified outbound call to: try again later.
            return self.outreach_give_up("outreach_call_again", crate::escalation::scheduler::CallOutcome::NoAnswer);
        }
        if self.misunderstood >= MAX_MISUNDERSTOOD {
            let text = self.p("not_understood_transfer", &[]);
            self.say(text);
            return self.transfer(TransferGroup::Reception);
        }
        self.say(again);
    }

    // ----- store ------------------------------------------------------------

    pub(super) fn request(&mut self, r: StoreRequest) {
        self.actions.push_back(Action::Store(r));
    }

    /// A line in the transcript for something the assistant did.
    pub(super) fn record_action(&mut self, text: String) {
        self.request(StoreRequest::RecordTurn { speaker: Speaker::System, text, intent: None, confidence: None });
    }

    pub(super) fn release_holds(&mut self) {
        if !self.holds.is_empty() {
            let tokens = std::mem::take(&mut self.holds);
            self.request(StoreRequest::ReleaseHolds { tokens });
        }
    }

    // ----- time -------------------------------------------------------------

    pub(super) fn local_now(&self) -> NaiveDateTime {
        self.now.with_timezone(&self.ctx.config.clinic.timezone).naive_local()
    }

    pub(super) fn today(&self) -> NaiveDate {
        self.local_now().date()
    }

    /// "martes 24 de noviembre" and "9:15" for an instant, in clinic time.
    pub(super) fn spoken(&self, at: DateTime<Utc>) -> (String, String) {
        let local = at.with_timezone(&self.ctx.config.clinic.timezone).naive_local();
        let prompts = &self.ctx.language.prompts;
        (prompts.date(local.date()), prompts.time(local.time()))
    }
}
