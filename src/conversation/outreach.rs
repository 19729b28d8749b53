//! Outbound calls placed by the clinic: a reminder nobody answered
//! ([`Outreach::Confirm`]) or a freed slot offered to a waiting-list patient
//! ([`Outreach::Offer`]). Same machine as inbound calls, other opening:
//! greet with the clinic's name, ask for the patient by name, verify their
//! date of birth, and only then say what the call is about. Whoever else
//! answers hears the clinic's name and nothing more (no specialty, no day,
//! no provider), and is told we will call again. Once verified, the
//! appointment is confirmed, cancelled or moved with the manage and booking
//! flows; an offered slot is booked with the hold the refill job took.
//! [`Conversation::outreach_result`] tells the call layer how it went.

use chrono::{DateTime, Timelike, Utc};

use super::action::{Direction, Outcome, Patience, StoreReply, StoreRequest};
use super::context::Context;
use super::identify::{dob_from_digits, dob_from_slots};
use super::machine::{Conversation, Heard, Input, State, Task};
use super::nlu::Intent;
use crate::escalation::refill::OfferOutcome;
use crate::escalation::scheduler::CallOutcome;
use crate::store::{Appointment, Hold, Patient, WaitlistEntry};

/// Dates of birth that do not match before the call gives up.
const DOB_TRIES: u32 = 2;
/// Silent turns waited while the patient is fetched before giving up.
const WAIT_SILENCES: u32 = 4;
/// Bare "hello?"s answered by asking again rather than as misunderstandings.
const HELLOS: u32 = 2;

/// Why the clinic calls.
#[derive(Debug, Clone, PartialEq)]
pub enum Outreach {
    /// The patient did not answer the reminder for `appointment`: confirm,
    /// cancel or move it.
    Confirm { patient: Patient, appointment: Appointment },
    /// A slot freed up and is held (`hold`, for the offer's time box) for
    /// this waiting-list `entry`: offer it, and book it on a yes.
    Offer { patient: Patient, hold: Hold, entry: WaitlistEntry },
}

impl Outreach {
    pub fn patient(&self) -> &Patient {
        match self {
            Outreach::Confirm { patient, .. } | Outreach::Offer { patient, .. } => patient,
        }
    }

    /// The appointment the call is about: the unconfirmed one; none for an
    /// offer (the freed slot is not the patient's appointment yet).
    pub fn appointment_id(&self) -> Option<&str> {
        match self {
            Outreach::Confirm { appointment, .. } => Some(&appointment.id),
            Outreach::Offer { .. } => None,
        }
    }

    /// The patient's preferred language, as recorded.
    pub fn language(&self) -> &str {
        &self.patient().preferred_language
    }

    /// The language to load the call's [`Context`] in: the patient's when
    /// the clinic speaks it, else the clinic's first.
    pub fn language_for<'a>(&'a self, config: &'a crate::config::Config) -> &'a str {
        let own = self.language();
        match config.clinic.languages.iter().find(|l| *l == own) {
            Some(l) => l,
            None => config.clinic.languages.first().map(String::as_str).unwrap_or(own),
        }
    }
}

/// How an outbound call ended, in the terms of the job that placed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutreachResult {
    /// An escalation call ([`Outreach::Confirm`]). Wrong person and failed
    /// verification are both `WrongPerson`; a call that ended before any
    /// decision (hang-up, silence) is `NoAnswer`, retried per policy.
    Reminder(CallOutcome),
    /// A refill offer ([`Outreach::Offer`]). `Accepted` means the slot is
    /// already booked (or the patient's later appointment moved into it) by
    /// this call; anything short of a yes or no is `NoAnswer`.
    Offer(OfferOutcome),
}

/// The text left on an answering machine: the clinic's name and number,
/// nothing medical (anyone may hear it).
pub fn voicemail_message(ctx: &Context) -> String {
    let clinic = &ctx.config.clinic;
    // Digit by digit in groups: read whole, "+34911234567" is one huge number.
    ctx.language.prompts.say("voicemail", &[("clinic", &clinic.name), ("phone", &super::callback::spoken_digits(&clinic.phone))])
}

/// The outbound call's own state, beside the conversation's.
#[derive(Debug, Clone)]
pub(super) struct OutreachCall {
    pub job: Outreach,
    /// Date of birth confirmed: the call may now speak of the appointment.
    pub verified: bool,
    /// "Could they come to the phone?" was asked once already.
    asked_fetch: bool,
    dob_misses: u32,
    hellos: u32,
    wait_silences: u32,
    /// Set where the flow decides by itself (wrong person, offer answered).
    decided: Option<OutreachResult>,
    /// The last appointment write this call made.
    pub done: Option<Outcome>,
}

impl Conversation {
    /// Starts an outbound call to `outreach`'s patient: registers it, greets
    /// with the clinic's name and asks for the patient by name. `ctx.caller`
    /// should be the number dialled; the direction is always outbound.
    pub fn new_outreach(mut ctx: Context, now: DateTime<Utc>, outreach: Outreach) -> Conversation {
        ctx.direction = Direction::Outbound;
        if ctx.caller.is_none() {
            ctx.caller = outreach.patient().phones.first().and_then(|p| crate::phone::E164::parse(p).ok());
        }
        let mut c = Conversation::blank(ctx, now);
        let remote_number = c.ctx.caller.as_ref().map(|p| p.as_str().to_string()).unwrap_or_default();
        c.request(StoreRequest::StartCall { direction: Direction::Outbound, remote_number, language: c.ctx.lang().to_string() });
        c.wanted = Some(match &outreach {
            Outreach::Confirm { appointment, .. } => format!("outreach: unconfirmed appointment {}", appointment.id),
            Outreach::Offer { entry, .. } => format!("outreach: freed slot for waiting-list entry {}", entry.id),
        });
        c.outreach = Some(Box::new(OutreachCall {
            job: outreach,
            verified: false,
            asked_fetch: false,
            dob_misses: 0,
            hellos: 0,
            wait_silences: 0,
            decided: None,
            done: None,
        }));
        let hello = c.hello();
        let greeting = c.p("outreach_greeting", &[("hello", &hello), ("clinic", &c.ctx.config.clinic.name.clone())]);
        // How to stop these calls, before anything else is asked.
        let hint = c.p("outreach_opt_out_hint", &[]);
        c.say(format!("{greeting} {hint}"));
        c.ask_for_patient();
        c
    }

    /// "Do not call me again", or key 9 on a call the clinic placed (whoever
    /// answers the number may ask), or said by a verified patient on their
    /// own call: their contact consent is withdrawn, as an audited change,
    /// before the call goes on.
    pub(super) fn opt_out(&mut self) {
        let id = self.outreach.as_ref().map(|o| o.job.patient().id.clone()).or_else(|| self.patient.as_ref().map(|p| p.id.clone()));
        let Some(patient_id) = id else { return self.ask_how_can_i_help() };
        self.state = State::OptingOut;
        self.request(StoreRequest::OptOut { patient_id });
    }

    pub(super) fn opted_out(&mut self) {
        self.record_action("asked not to be called again: contact consent withdrawn".into());
        let text = self.p("opted_out", &[]);
        self.say(text);
        let Some(o) = self.outreach.as_ref() else { return self.ask_anything_else() };
        // What the call already did (confirmed, booked) stays its result.
        if o.done.is_none() && o.decided.is_none() {
            let offer = matches!(o.job, Outreach::Offer { .. });
            self.decide(if offer {
                OutreachResult::Offer(OfferOutcome::Declined)
            } else {
                OutreachResult::Reminder(CallOutcome::OptedOut)
            });
        }
        let bye = self.p("outreach_goodbye", &[]);
        self.say(bye);
        self.hangup_and_finish();
    }

    /// How the outbound call went, once it is decided; `None` for inbound
    /// calls and while nothing is decided yet. After the call has ended it
    /// is always `Some`.
    pub fn outreach_result(&self) -> Option<OutreachResult> {
        let o = self.outreach.as_ref()?;
        if let Some(r) = o.decided {
            return Some(r);
        }
        let offer = matches!(o.job, Outreach::Offer { .. });
        let acted = match o.done {
            Some(Outcome::Confirmed) => Some(CallOutcome::Confirmed),
            Some(Outcome::Cancelled) => Some(CallOutcome::Cancelled),
            Some(Outcome::Rescheduled) => Some(CallOutcome::Rescheduled),
            _ => None,
        };
        match (offer, acted) {
            (false, Some(c)) => Some(OutreachResult::Reminder(c)),
            _ if !self.is_ended() => None,
            (true, _) => Some(OutreachResult::Offer(OfferOutcome::NoAnswer)),
            (false, None) => Some(OutreachResult::Reminder(CallOutcome::NoAnswer)),
        }
    }

    /// An outbound call whose patient has not been verified yet: nothing
    /// may be disclosed and no inbound flow may start.
    pub(super) fn outreach_unverified(&self) -> bool {
        self.outreach.as_ref().is_some_and(|o| !o.verified)
    }

    pub(super) fn outreach_answer(&mut self, state: State, input: Input) -> Heard {
        match state {
            State::OutreachAskPerson => self.person_answer(input),
            State::OutreachAskFetch => self.fetch_answer(input),
            State::OutreachWaitPerson => {
                // Whoever speaks now is asked again who they are.
                let hello = self.p("outreach_greeting", &[("hello", &self.hello()), ("clinic", &self.ctx.config.clinic.name.clone())]);
                self.say(hello);
                self.ask_for_patient();
                Heard::Understood
            }
            State::OutreachAskDob { .. } => self.outreach_dob_answer(input),
            State::OutreachProposal => self.proposal_answer(input),
            other => {
                self.state = other;
                Heard::NotUnderstood
            }
        }
    }

    /// A silent turn while someone fetches the patient: keep waiting, up
    /// to [`WAIT_SILENCES`] turns, then try again another time.
    pub(super) fn outreach_wait_silence(&mut self) {
        let waited = self.outreach.as_mut().map(|o| {
            o.wait_silences += 1;
            o.wait_silences
        });
        if waited.unwrap_or(WAIT_SILENCES) >= WAIT_SILENCES {
            self.outreach_give_up("outreach_call_again", CallOutcome::NoAnswer);
        }
    }

    /// Keys of a date of birth, DDMMYYYY (or ended with `#`).
    pub(super) fn outreach_dob_typed(&mut self, digits: &str) {
        match dob_from_digits(digits, self.today()) {
            Some(dob) => self.check_outreach_dob(dob),
            None => {
                self.state = State::OutreachAskDob { digits: String::new() };
                let q = self.p("bad_dob", &[]);
                self.ask(q);
            }
        }
    }

    /// Ends an unverified call without saying why we called.
    pub(super) fn outreach_give_up(&mut self, key: &str, result: CallOutcome) {
        let text = self.p(key, &[]);
        self.say(text);
        self.decide_unreached(result);
        self.hangup_and_finish();
    }

    pub(super) fn offer_take(&mut self, list: Vec<Appointment>) {
        let Some(Outreach::Offer { hold, .. }) = self.outreach.as_ref().map(|o| o.job.clone()) else {
            return self.hangup_and_finish();
        };
        let specialty = self.provider_specialty(&hold.provider_id);
        // Like the refill job: a later appointment of the same specialty
        // moves into the slot, else the slot is booked anew.
        let later =
            list.into_iter().find(|a| a.status.is_live() && Some(&a.specialty_id) == specialty.as_ref() && a.starts_at > hold.starts_at);
        let hold_token = Some(hold.token.clone());
        match later {
            Some(a) => {
                self.request(StoreRequest::Reschedule {
                    appointment_id: a.id,
                    provider_id: hold.provider_id.clone(),
                    starts_at: hold.starts_at,
                    hold_token,
                });
                self.state = State::OutreachTaking { moving: true };
            }
            None => {
                let patient_id = self.patient.as_ref().map(|p| p.id.clone()).unwrap_or_default();
                self.request(StoreRequest::Book {
                    patient_id,
                    provider_id: hold.provider_id.clone(),
                    starts_at: hold.starts_at,
                    hold_token,
                });
                self.state = State::OutreachTaking { moving: false };
            }
        }
    }

    pub(super) fn offer_taken(&mut self, moving: bool, reply: StoreReply) {
        let StoreReply::Appointment(a) = reply else {
            // Taken by someone else, or the hold ran out.
            self.decide(OutreachResult::Offer(OfferOutcome::NoAnswer));
            let text = self.p("outreach_offer_gone", &[]);
            self.say(text);
            return self.hangup_and_finish();
        };
        let (date, time) = self.spoken(a.starts_at);
        let specialty = self.ctx.specialty_name(&a.specialty_id);
        let provider = self.ctx.provider_name(&a.provider_id);
        let (outcome, key, verb) =
            if moving { (Outcome::Rescheduled, "rescheduled", "moved") } else { (Outcome::Booked, "booked", "booked") };
        self.record_action(format!(
            "{verb} appointment {} from the waiting list ({} with {}, {})",
            a.id, a.specialty_id, a.provider_id, a.starts_at_local
        ));
        self.set_outcome(outcome);
        self.decide(OutreachResult::Offer(OfferOutcome::Accepted));
        let text = self.p(key, &[("specialty", &specialty), ("provider", &provider), ("date", &date), ("time", &time)]);
        self.say(text);
        self.ask_anything_else();
    }

    // ----- steps ------------------------------------------------------------

    fn ask_for_patient(&mut self) {
        let name = self.patient_called_name();
        self.state = State::OutreachAskPerson;
        let q = self.p("outreach_ask_person", &[("name", &name)]);
        self.ask(q);
    }

    fn person_answer(&mut self, input: Input) -> Heard {
        match input.yes_no() {
            Some(true) => {
                self.state = State::OutreachAskDob { digits: String::new() };
                self.expect_longer(Patience::DateOfBirth);
                let q = self.p("ask_dob_known", &[]);
                self.ask(q);
            }
            Some(false) if self.outreach.as_ref().is_some_and(|o| o.asked_fetch) => {
                self.outreach_give_up("outreach_call_again", CallOutcome::WrongPerson)
            }
            Some(false) => {
                if let Some(o) = self.outreach.as_mut() {
                    o.asked_fetch = true;
                }
                let name = self.patient_called_name();
                self.state = State::OutreachAskFetch;
                let q = self.p("outreach_ask_fetch", &[("name", &name)]);
                self.ask(q);
            }
            // "¿Diga?", "Hello?": they did not hear us; ask again.
            None if self.bare_hello(&input) => self.ask_for_patient(),
            None => {
                self.state = State::OutreachAskPerson;
                return Heard::NotUnderstood;
            }
        }
        Heard::Understood
    }

    /// A short utterance with no meaning, like a "hello?", at most
    /// [`HELLOS`] times a call.
    fn bare_hello(&mut self, input: &Input) -> bool {
        let Input::Said { text, u } = input else { return false };
        let short = u.intent == Intent::Unknown && text.split_whitespace().count() <= 3 && u.slots.name.is_none();
        match self.outreach.as_mut() {
            Some(o) if short && o.hellos < HELLOS => {
                o.hellos += 1;
                true
            }
            _ => false,
        }
    }

    fn fetch_answer(&mut self, input: Input) -> Heard {
        match input.yes_no() {
            Some(true) => {
                self.state = State::OutreachWaitPerson;
                let text = self.p("outreach_wait", &[]);
                self.say(text);
            }
            Some(false) => self.outreach_give_up("outreach_call_again", CallOutcome::WrongPerson),
            None => {
                self.state = State::OutreachAskFetch;
                return Heard::NotUnderstood;
            }
        }
        Heard::Understood
    }

    fn outreach_dob_answer(&mut self, input: Input) -> Heard {
        match input.slots().and_then(|s| dob_from_slots(s, self.today())) {
            Some(dob) => {
                self.check_outreach_dob(dob);
                Heard::Understood
            }
            None => {
                self.state = State::OutreachAskDob { digits: String::new() };
                Heard::Reask(self.p("bad_dob", &[]))
            }
        }
    }

    fn check_outreach_dob(&mut self, dob: chrono::NaiveDate) {
        let Some(o) = self.outreach.as_mut() else { return };
        if o.job.patient().date_of_birth == dob {
            o.verified = true;
            let patient = o.job.patient().clone();
            let first = patient.name.split_whitespace().next().unwrap_or_default().to_string();
            self.record_action(format!("verified patient {} on an outbound call", patient.id));
            self.patient = Some(patient);
            let thanks = self.p("verified", &[("name", &first)]);
            self.say(thanks);
            return self.propose();
        }
        o.dob_misses += 1;
        if o.dob_misses >= DOB_TRIES {
            return self.outreach_give_up("outreach_not_verified", CallOutcome::WrongPerson);
        }
        self.state = State::OutreachAskDob { digits: String::new() };
        self.expect_longer(Patience::DateOfBirth);
        let q = self.p("outreach_dob_mismatch", &[]);
        self.ask(q);
    }

    /// Verified: say what the call is about and ask.
    fn propose(&mut self) {
        let Some(job) = self.outreach.as_ref().map(|o| o.job.clone()) else { return };
        let (what, q) = match &job {
            Outreach::Confirm { appointment, .. } => {
                let (date, time) = self.spoken(appointment.starts_at);
                let specialty = self.ctx.specialty_name(&appointment.specialty_id);
                let provider = self.ctx.provider_name(&appointment.provider_id);
                let args = [("specialty", specialty.as_str()), ("provider", &provider), ("date", &date), ("time", &time)];
                (self.p("outreach_appointment", &args), self.p("outreach_confirm_question", &[]))
            }
            Outreach::Offer { hold, entry, .. } => {
                let (date, time) = self.spoken(hold.starts_at);
                let specialty = self.ctx.specialty_name(&entry.specialty_id);
                let provider = self.ctx.provider_name(&hold.provider_id);
                let args = [("specialty", specialty.as_str()), ("provider", &provider), ("date", &date), ("time", &time)];
                (self.p("outreach_offer", &args), self.p("outreach_offer_question", &[]))
            }
        };
        self.state = State::OutreachProposal;
        self.ask_after(what, q);
    }

    fn proposal_answer(&mut self, input: Input) -> Heard {
        let Some(job) = self.outreach.as_ref().map(|o| o.job.clone()) else { return Heard::NotUnderstood };
        match job {
            Outreach::Confirm { appointment, .. } => {
                let task = match (&input, input.intent()) {
                    (Input::Key('1'), _) | (_, Some(Intent::Yes | Intent::Confirm)) => Task::Confirm,
                    (Input::Key('2'), _) | (_, Some(Intent::Cancel | Intent::No)) => Task::Cancel,
                    (Input::Key('3'), _) | (_, Some(Intent::Reschedule)) => Task::Reschedule,
                    _ => {
                        self.state = State::OutreachProposal;
                        return Heard::NotUnderstood;
                    }
                };
                self.act(task, appointment);
            }
            Outreach::Offer { patient, .. } => match input.yes_no() {
                Some(true) => {
                    self.state = State::OutreachLoading;
                    self.request(StoreRequest::UpcomingAppointments { patient_id: patient.id });
                }
                Some(false) => {
                    self.decide(OutreachResult::Offer(OfferOutcome::Declined));
                    self.record_action("declined the offered slot".into());
                    let text = self.p("outreach_offer_declined", &[]);
                    self.say(text);
                    self.hangup_and_finish();
                }
                None => {
                    self.state = State::OutreachProposal;
                    return Heard::NotUnderstood;
                }
            },
        }
        Heard::Understood
    }

    // ----- helpers ----------------------------------------------------------

    fn decide(&mut self, r: OutreachResult) {
        if let Some(o) = self.outreach.as_mut() {
            o.decided = Some(r);
        }
    }

    /// Nobody verified: an escalation records `result`, an offer goes to
    /// the next patient.
    fn decide_unreached(&mut self, result: CallOutcome) {
        let offer = self.outreach.as_ref().is_some_and(|o| matches!(o.job, Outreach::Offer { .. }));
        self.decide(if offer { OutreachResult::Offer(OfferOutcome::NoAnswer) } else { OutreachResult::Reminder(result) });
    }

    /// "María López": first name and first surname, as people are asked for.
    fn patient_called_name(&self) -> String {
        let name = self.outreach.as_ref().map(|o| o.job.patient().name.clone()).unwrap_or_default();
        name.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    }

    /// "Buenos días" or "buenas tardes", by the clinic's clock.
    fn hello(&self) -> String {
        let key = match self.local_now().hour() {
            5..=11 => "outreach_hello_morning",
            12..=19 => "outreach_hello_afternoon",
            _ => "outreach_hello_evening",
        };
        self.p(key, &[])
    }

    fn provider_specialty(&self, provider_id: &str) -> Option<String> {
        self.ctx.config.providers.iter().find(|p| p.id == provider_id).map(|p| p.specialty.clone())
    }
}

#[cfg(test)]
#[path = "outreach_tests.rs"]
mod tests;
