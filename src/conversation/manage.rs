//! The identified caller's existing appointments: hear them, confirm one,
//! cancel one (after a yes), or move one (the booking flow with the old
//! appointment attached). Several appointments are told apart by option
//! number, specialty, provider or day.

use chrono::NaiveDate;

use super::action::{Outcome, StoreReply, StoreRequest};
use super::booking::Want;
use super::machine::{Conversation, Heard, Input, State, Task};
use super::nlu::Slots;
use crate::store::{Appointment, AppointmentStatus};

impl Conversation {
    pub(super) fn appointments_loaded(&mut self, task: Task, hint: Slots, list: Vec<Appointment>) {
        let upcoming: Vec<Appointment> = list.into_iter().filter(|a| a.status.is_live()).collect();
        if upcoming.is_empty() {
            self.set_outcome(Outcome::Info);
            let text = self.p("no_appointments", &[]);
            self.say(text);
            return self.ask_anything_else();
        }
        if task == Task::Query {
            self.set_outcome(Outcome::Info);
            self.record_action(format!("told the caller their {} upcoming appointments", upcoming.len()));
            let text = self.list_appointments(&upcoming);
            self.say(text);
            return self.ask_anything_else();
        }
        // What the caller already said may single one out ("cancel the dermatologist").
        let hinted: Vec<Appointment> = upcoming.iter().filter(|a| fits(a, &hint, self)).cloned().collect();
        let candidates = if hinted.is_empty() { upcoming } else { hinted };
        if let [only] = candidates.as_slice() {
            return self.act(task, only.clone());
        }
        let list = self.list_appointments(&candidates);
        let q = self.p("which_appointment", &[]);
        self.state = State::ChooseAppointment { task, appointments: candidates };
        self.ask_after(list, q);
    }

    fn list_appointments(&self, list: &[Appointment]) -> String {
        if let [only] = list {
            let words = self.appointment_words(only);
            let args: Vec<(&str, &str)> = words.iter().map(|(k, v)| (*k, v.as_str())).collect();
            return self.p("one_appointment", &args);
        }
        let items: Vec<String> = list
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let mut words = self.appointment_words(a);
                words.push(("n", (i + 1).to_string()));
                let args: Vec<(&str, &str)> = words.iter().map(|(k, v)| (*k, v.as_str())).collect();
                self.p("appointment_item", &args)
            })
            .collect();
        format!("{} {}.", self.p("appointments_intro", &[("count", &list.len().to_string())]), items.join("; "))
    }

    fn appointment_words(&self, a: &Appointment) -> Vec<(&'static str, String)> {
        let (date, time) = self.spoken(a.starts_at);
        vec![
            ("specialty", self.ctx.specialty_name(&a.specialty_id)),
            ("provider", self.ctx.provider_name(&a.provider_id)),
            ("date", date),
            ("time", time),
        ]
    }

    pub(super) fn appointment_choice(&mut self, task: Task, appointments: Vec<Appointment>, input: Input) -> Heard {
        let by_number = input.choice().and_then(|n| n.checked_sub(1)).and_then(|i| appointments.get(i)).cloned();
        let by_words = input.slots().and_then(|s| {
            let fitting: Vec<&Appointment> = appointments.iter().filter(|a| fits(a, s, self)).collect();
            (fitting.len() == 1).then(|| fitting[0].clone())
        });
        match by_number.or(by_words) {
            Some(a) => {
                self.act(task, a);
                Heard::Understood
            }
            None => {
                self.state = State::ChooseAppointment { task, appointments };
                Heard::NotUnderstood
            }
        }
    }

    pub(super) fn act(&mut self, task: Task, a: Appointment) {
        let words = self.appointment_words(&a);
        let args: Vec<(&str, &str)> = words.iter().map(|(k, v)| (*k, v.as_str())).collect();
        match task {
            Task::Confirm if a.status == AppointmentStatus::Confirmed => {
                // Already confirmed: say so, no write needed.
                self.set_outcome(Outcome::Confirmed);
                let text = self.p("confirmed", &args);
                self.say(text);
                self.ask_anything_else();
            }
            Task::Confirm => {
                self.request(StoreRequest::Confirm { appointment_id: a.id.clone() });
                self.state = State::Acting { task, appointment: a };
            }
            Task::Cancel => {
                let q = self.p("ask_cancel", &args);
                self.state = State::ConfirmCancel { appointment: a };
                self.ask(q);
            }
            Task::Reschedule => {
                let want = Want { specialty: Some(a.specialty_id.clone()), moving: Some(a), ..Want::default() };
                self.next_booking_step(want);
            }
            Task::Query => {
                let text = self.list_appointments(std::slice::from_ref(&a));
                self.say(text);
                self.ask_anything_else();
            }
        }
    }

    pub(super) fn cancel_answer(&mut self, appointment: Appointment, input: Input) -> Heard {
        match input.yes_no() {
            Some(true) => {
                self.request(StoreRequest::Cancel { appointment_id: appointment.id.clone() });
                self.state = State::Acting { task: Task::Cancel, appointment };
            }
            Some(false) => {
                let text = self.p("not_cancelled", &[]);
                self.say(text);
                self.ask_anything_else();
            }
            None => {
                self.state = State::ConfirmCancel { appointment };
                return Heard::NotUnderstood;
            }
        }
        Heard::Understood
    }

    pub(super) fn acted(&mut self, task: Task, before: Appointment, reply: StoreReply) {
        let StoreReply::Appointment(a) = reply else {
            // The appointment changed under us (e.g. staff cancelled it).
            let text = self.p("technical_problem", &[]);
            self.say(text);
            self.set_outcome(Outcome::Failed);
            return self.transfer(super::action::TransferGroup::Reception);
        };
        let words = self.appointment_words(&a);
        let args: Vec<(&str, &str)> = words.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (outcome, key, verb) = match task {
            Task::Cancel => (Outcome::Cancelled, "cancelled", "cancelled"),
            _ => (Outcome::Confirmed, "confirmed", "confirmed"),
        };
        self.record_action(format!("{verb} appointment {} ({} with {}, {})", before.id, a.specialty_id, a.provider_id, a.starts_at_local));
        self.set_outcome(outcome);
        let text = self.p(key, &args);
        self.say(text);
        self.ask_anything_else();
    }
}

/// Whether what the caller said (specialty, provider, day) describes `a`;
/// an utterance naming none of them fits nothing.
fn fits(a: &Appointment, s: &Slots, c: &Conversation) -> bool {
    let tz = c.ctx.config.clinic.timezone;
    let day = s.date.as_deref().and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
    let mut said_any = false;
    let mut ok = true;
    if let Some(sp) = &s.specialty {
        said_any = true;
        ok &= *sp == a.specialty_id;
    }
    if let Some(p) = &s.provider {
        said_any = true;
        ok &= *p == a.provider_id;
    }
    if let Some(d) = day {
        said_any = true;
        ok &= a.starts_at.with_timezone(&tz).date_naive() == d;
    }
    said_any && ok
}
