//! Taking a callback request when no person can take the call: the clinic
//! is closed right now (by its opening hours and holidays), or the call
//! layer reports that the transfer was not answered
//! ([`Conversation::handle_transfer_failed`]). The caller gives a name
//! (skipped when identified), confirms the number to call (the caller ID,
//! or one typed on the keypad or said digit by digit) and the reason in one
//! utterance; the request is stored and the caller is told when to expect
//! the call: right away when the clinic is open, else from its next opening.

use std::collections::BTreeSet;

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime};

use super::action::{Action, Outcome, Patience, StoreReply, StoreRequest, TransferGroup};
use super::identify::spoken_name;
use super::machine::{Conversation, Heard, Input, State};
use super::nlu::Intent;
use crate::config::WeeklyHours;

/// A callback number: at least a short local number, at most E.164's 15 digits.
const MIN_DIGITS: usize = 6;
const MAX_DIGITS: usize = 15;
/// How far ahead the next opening is looked for.
const SEARCH_DAYS: i64 = 14;

/// Why nobody takes the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Why {
    Closed,
    NoAnswer,
}

/// Where the callback request stands; the state [`State::Callback`] carries it.
#[derive(Debug, Clone)]
pub(super) struct Callback {
    step: Step,
    name: Option<String>,
    phone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Name,
    ConfirmNumber,
    /// Keys typed so far.
    Number(String),
    Reason,
    /// Waiting for the store to save it.
    Saving,
}

impl Callback {
    pub(super) fn is_saving(&self) -> bool {
        self.step == Step::Saving
    }
}

/// What the conversation remembers about callbacks across states.
#[derive(Debug, Default)]
pub(super) struct Memo {
    /// A callback flow has begun: a second need for one gives up instead of looping.
    started: bool,
    /// The call layer could not reach reception.
    reception_unreachable: bool,
    /// The transfer that failed, kept on the call record whatever follows.
    pub(super) failed_transfer: Option<(TransferGroup, String)>,
}

impl Conversation {
    /// The call layer could not put the caller through (nobody answered the
    /// group, or no staff member is reachable): take a callback request.
    pub fn handle_transfer_failed(&mut self, now: chrono::DateTime<chrono::Utc>) {
        self.now = now;
        if self.callback.started {
            return self.callback_give_up();
        }
        self.callback.reception_unreachable = true;
        self.callback.failed_transfer = Some((TransferGroup::Reception, self.summary()));
        self.record_action("transfer failed: nobody answered".into());
        self.start_callback(Why::NoAnswer);
    }

    /// Called by `transfer`: true when the callback flow replaces a transfer
    /// to `group` (reception closed or unreachable).
    pub(super) fn callback_instead(&mut self, group: TransferGroup) -> bool {
        if group != TransferGroup::Reception {
            return false;
        }
        let closed = !self.clinic_open_at(self.local_now());
        if !closed && !self.callback.reception_unreachable {
            return false;
        }
        if self.callback.started {
            self.callback_give_up();
            return true;
        }
        // "I'll put you through" was just queued: it is no longer true.
        let announced = self.p("transfer", &[]);
        self.retract_say(&announced);
        self.start_callback(if closed { Why::Closed } else { Why::NoAnswer });
        true
    }

    pub(super) fn callback_answer(&mut self, mut cb: Callback, input: Input) -> Heard {
        match cb.step.clone() {
            // "A person, please" is no name (reception is what cannot be had).
            Step::Name if input.intent() == Some(Intent::Human) => return self.callback_not_understood(cb),
            Step::Name => match spoken_name(&input, &self.ctx.language.prompts) {
                Some(name) => {
                    cb.name = Some(name);
                    self.callback_ask_number(cb, None);
                }
                None => return self.callback_not_understood(cb),
            },
            Step::ConfirmNumber => match (input.yes_no(), said_number(&input)) {
                (_, Some(number)) => {
                    cb.phone = Some(number);
                    self.callback_ask_reason(cb);
                }
                (Some(true), None) => {
                    cb.phone = self.ctx.caller.as_ref().map(|c| c.as_str().to_string());
                    self.callback_ask_reason(cb);
                }
                (Some(false), None) => {
                    cb.step = Step::Number(String::new());
                    let q = self.p("callback_ask_number", &[]);
                    self.state = State::Callback(Box::new(cb));
                    self.ask(q);
                }
                (None, None) => return self.callback_not_understood(cb),
            },
            // Keys arrive through `callback_key`; here, spoken digits.
            Step::Number(_) => match said_number(&input) {
                Some(number) => {
                    cb.phone = Some(number);
                    self.callback_ask_reason(cb);
                }
                None => return self.callback_not_understood(cb),
            },
            Step::Reason => match &input {
                Input::Said { text, .. } if !text.trim().is_empty() => {
                    let reason = text.trim().to_string();
                    self.callback_save(cb, reason);
                }
                // No reason given: the keypad caller skips with '#'.
                Input::Key('#') => {
                    let reason = self.wanted.clone().unwrap_or_else(|| "not given".into());
                    self.callback_save(cb, reason);
                }
                _ => return self.callback_not_understood(cb),
            },
            Step::Saving => self.state = State::Callback(Box::new(cb)),
        }
        Heard::Understood
    }

    /// A key while typing the callback number; true when it was consumed.
    pub(super) fn callback_key(&mut self, digit: char) -> bool {
        let State::Callback(cb) = &mut self.state else { return false };
        let Step::Number(digits) = &mut cb.step else { return false };
        match digit {
            '0'..='9' => digits.push(digit),
            '*' => digits.clear(),
            _ => {}
        }
        if digit != '#' && digits.len() < MAX_DIGITS {
            return true;
        }
        let typed = std::mem::take(digits);
        let State::Callback(cb) = std::mem::replace(&mut self.state, State::Ended) else { return true };
        let mut cb = *cb;
        if (MIN_DIGITS..=MAX_DIGITS).contains(&typed.len()) {
            cb.phone = Some(typed);
            self.callback_ask_reason(cb);
        } else {
            self.callback_ask_number(cb, Some("callback_bad_number"));
        }
        true
    }

    /// The store's answer to saving the request.
    pub(super) fn callback_reply(&mut self, cb: Callback, reply: StoreReply) {
        if !cb.is_saving() {
            self.state = State::Callback(Box::new(cb));
            return;
        }
        if reply != StoreReply::Done {
            // The reply itself may hold patients: only the error text is logged.
            match &reply {
                StoreReply::Failed(e) => tracing::warn!(error = %e, "callback request not stored"),
                _ => tracing::warn!("callback request not stored: unexpected store reply"),
            }
            return self.callback_give_up();
        }
        let (_, when) = self.callback_promise();
        let number = spoken_digits(cb.phone.as_deref().unwrap_or_default());
        let stored = self.p("callback_stored", &[("number", &number), ("when", &when)]);
        let bye = self.p("goodbye", &[("clinic", &self.ctx.config.clinic.name.clone())]);
        self.record_action("callback request stored".into());
        self.say_fixed(format!("{stored} {bye}"));
        self.actions.push_back(Action::Hangup);
        self.set_outcome(Outcome::Callback);
        let transfer = self.callback.failed_transfer.clone();
        self.finish(Outcome::Callback, transfer);
    }

    pub(super) fn callback_saving(&self) -> bool {
        matches!(&self.state, State::Callback(cb) if cb.is_saving())
    }

    /// Whether the clinic is open at a clinic-local instant.
    pub(super) fn clinic_open_at(&self, t: NaiveDateTime) -> bool {
        let clinic = &self.ctx.config.clinic;
        open_at(&clinic.opening_hours, &clinic.holidays, t)
    }

    // ----- steps ------------------------------------------------------------

    fn start_callback(&mut self, why: Why) {
        self.release_holds();
        self.callback.started = true;
        let intro = self.p(
            match why {
                Why::Closed => "callback_closed",
                Why::NoAnswer => "callback_no_answer",
            },
            &[],
        );
        let cb = Callback { step: Step::Name, name: self.patient.as_ref().map(|p| p.name.clone()), phone: None };
        self.say(intro);
        if cb.name.is_some() {
            return self.callback_ask_number(cb, None);
        }
        self.state = State::Callback(Box::new(cb));
        self.expect_longer(Patience::Name);
        let q = self.p("callback_ask_name", &[]);
        self.ask(q);
    }

    fn callback_ask_number(&mut self, mut cb: Callback, sorry: Option<&str>) {
        let q = match &self.ctx.caller {
            Some(caller) if sorry.is_none() => {
                cb.step = Step::ConfirmNumber;
                self.p("callback_confirm_number", &[("number", &spoken_digits(caller.as_str()))])
            }
            _ => {
                cb.step = Step::Number(String::new());
                self.p("callback_ask_number", &[])
            }
        };
        self.state = State::Callback(Box::new(cb));
        match sorry {
            Some(key) => {
                let sorry = self.p(key, &[]);
                self.ask_after(sorry, q);
            }
            None => self.ask(q),
        }
    }

    fn callback_ask_reason(&mut self, mut cb: Callback) {
        cb.step = Step::Reason;
        self.state = State::Callback(Box::new(cb));
        self.expect_longer(Patience::Name);
        let q = self.p("callback_ask_reason", &[]);
        self.ask(q);
    }

    fn callback_save(&mut self, mut cb: Callback, reason: String) {
        let (promised, _) = self.callback_promise();
        let request = StoreRequest::SaveCallback {
            patient_id: self.patient.as_ref().map(|p| p.id.clone()),
            name: cb.name.clone().unwrap_or_default(),
            phone: cb.phone.clone().unwrap_or_default(),
            reason,
            language: self.ctx.lang().to_string(),
            promised,
        };
        cb.step = Step::Saving;
        self.state = State::Callback(Box::new(cb));
        self.request(request);
    }

    fn callback_not_understood(&mut self, cb: Callback) -> Heard {
        self.state = State::Callback(Box::new(cb));
        Heard::NotUnderstood
    }

    /// Nothing more can be done on this call: apologise and end it.
    fn callback_give_up(&mut self) {
        self.release_holds();
        let text = self.p("callback_sorry", &[]);
        self.say_fixed(text);
        self.actions.push_back(Action::Hangup);
        let transfer = self.callback.failed_transfer.clone();
        self.finish(Outcome::Abandoned, transfer);
    }

    /// When the caller will be called: stored (clinic-local "YYYY-MM-DD
    /// HH:MM") and spoken ("mañana a partir de las 9:00").
    fn callback_promise(&self) -> (String, String) {
        let now = self.local_now();
        let clinic = &self.ctx.config.clinic;
        let next = if self.clinic_open_at(now) { None } else { next_opening(&clinic.opening_hours, &clinic.holidays, now) };
        let Some(at) = next else {
            return (now.format("%Y-%m-%d %H:%M").to_string(), self.p("callback_when_soon", &[]));
        };
        let prompts = &self.ctx.language.prompts;
        let time = prompts.time(at.time());
        let spoken = match (at.date() - now.date()).num_days() {
            0 => self.p("callback_when_today", &[("time", &time)]),
            1 => self.p("callback_when_tomorrow", &[("time", &time)]),
            _ => self.p("callback_when_day", &[("date", &prompts.date(at.date())), ("time", &time)]),
        };
        (at.format("%Y-%m-%d %H:%M").to_string(), spoken)
    }

    /// Drops the last `Say` of exactly `text` still queued, with its transcript line.
    fn retract_say(&mut self, text: &str) {
        let said = |a: &Action| matches!(a, Action::Say { text: t, .. } if t == text);
        let recorded = |a: &Action| matches!(a, Action::Store(StoreRequest::RecordTurn { text: t, .. }) if t == text);
        if let Some(i) = self.actions.iter().rposition(said) {
            self.actions.remove(i);
            if let Some(j) = self.actions.iter().rposition(recorded) {
                self.actions.remove(j);
            }
        }
    }
}

/// A number said digit by digit ("seis cero cero…") or as groups.
fn said_number(input: &Input) -> Option<String> {
    let digits = input.slots()?.digits.clone()?;
    (MIN_DIGITS..=MAX_DIGITS).contains(&digits.len()).then_some(digits)
}

/// Digits to be read one by one, in groups of three from the end:
/// "3 4, 6 0 0, 1 1 1, 2 2 2".
pub(super) fn spoken_digits(number: &str) -> String {
    let digits: Vec<String> = number.chars().filter(char::is_ascii_digit).map(String::from).collect();
    let head = digits.len() % 3;
    let mut groups: Vec<String> = Vec::new();
    if head > 0 {
        groups.push(digits[..head].join(" "));
    }
    groups.extend(digits[head..].chunks(3).map(|c| c.join(" ")));
    groups.join(", ")
}

/// Whether `t` (clinic-local) falls in the opening hours and is not a holiday.
pub fn open_at(hours: &WeeklyHours, holidays: &BTreeSet<NaiveDate>, t: NaiveDateTime) -> bool {
    !holidays.contains(&t.date()) && hours.on(t.weekday()).iter().any(|r| r.start <= t.time() && t.time() < r.end)
}

/// The next clinic-local instant after `t` at which the clinic opens (the
/// start of an opening range on a day that is not a holiday).
pub fn next_opening(hours: &WeeklyHours, holidays: &BTreeSet<NaiveDate>, t: NaiveDateTime) -> Option<NaiveDateTime> {
    (0..=SEARCH_DAYS)
        .filter_map(|d| t.date().checked_add_signed(Duration::days(d)))
        .filter(|day| !holidays.contains(day))
        .find_map(|day| hours.on(day.weekday()).iter().map(|r| day.and_time(r.start)).find(|start| *start > t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TimeRange;

    fn hours() -> WeeklyHours {
        let r = |a: &str, b: &str| TimeRange { start: a.parse().unwrap(), end: b.parse().unwrap() };
        let mut w = WeeklyHours::default();
        for d in 0..4 {
            w.0[d] = vec![r("08:00", "14:00"), r("16:00", "20:00")];
        }
        w.0[4] = vec![r("08:00", "15:00")];
        w
    }

    fn at(s: &str) -> NaiveDateTime {
        s.parse().unwrap()
    }

    #[test]
    fn opening_hours_and_holidays() {
        let none = BTreeSet::new();
        assert!(open_at(&hours(), &none, at("2026-11-23T08:00:00")));
        assert!(!open_at(&hours(), &none, at("2026-11-23T14:00:00")), "the lunch break");
        assert!(!open_at(&hours(), &none, at("2026-11-28T10:00:00")), "Saturday");
        let holiday: BTreeSet<NaiveDate> = ["2026-11-23".parse().unwrap()].into();
        assert!(!open_at(&hours(), &holiday, at("2026-11-23T10:00:00")));
    }

    #[test]
    fn next_opening_skips_breaks_weekends_and_holidays() {
        let none = BTreeSet::new();
        assert_eq!(next_opening(&hours(), &none, at("2026-11-23T14:30:00")), Some(at("2026-11-23T16:00:00")));
        assert_eq!(next_opening(&hours(), &none, at("2026-11-23T21:00:00")), Some(at("2026-11-24T08:00:00")));
        assert_eq!(next_opening(&hours(), &none, at("2026-11-27T16:00:00")), Some(at("2026-11-30T08:00:00")), "Friday → Monday");
        let holiday: BTreeSet<NaiveDate> = ["2026-11-30".parse().unwrap()].into();
        assert_eq!(next_opening(&hours(), &holiday, at("2026-11-28T09:00:00")), Some(at("2026-12-01T08:00:00")));
        assert_eq!(next_opening(&WeeklyHours::default(), &none, at("2026-11-23T09:00:00")), None);
    }

    #[test]
    fn numbers_are_read_digit_by_digit() {
        assert_eq!(spoken_digits("+34600111222"), "3 4, 6 0 0, 1 1 1, 2 2 2");
        assert_eq!(spoken_digits("912"), "9 1 2");
        assert_eq!(spoken_digits("9123"), "9, 1 2 3");
    }
}
